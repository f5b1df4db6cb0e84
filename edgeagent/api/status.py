"""The status API: every part's report gathered into one ``status`` document and a ``health``
verdict (the stats seam's one reader; metrics and a status page will read the same)."""

from __future__ import annotations

import time
from typing import Any

from edgeagent import __version__
from edgeagent.api.context import AgentView, Parts
from edgeagent.resource import Report


def reports(parts: Parts) -> dict[str, Report]:
    """Each running part's report, by part name."""
    return {name: part.report() for name, part in parts.reporting().items()}


def parts_document(parts: Parts) -> dict[str, dict[str, Any]]:
    return {name: report.document() for name, report in reports(parts).items()}


async def status(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    """``edgeagent status``: version, uptime, the mDNS summary and every part's report."""
    device, parts = view.device, view.parts
    gathered = reports(parts)
    return {
        "version": __version__,
        "device_id": device.device_id,
        "uptime": round(time.monotonic() - device.started, 3),
        "mdns": parts.mdns.status(),
        "healthy": all(report.healthy for report in gathered.values()),
        "parts": {name: report.document() for name, report in gathered.items()},
    }


async def health(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    """Healthy when every part is running (none failed, stopped, or degraded by a loop in
    backoff); ``problems`` names each part that is not, with its error."""
    gathered = reports(view.parts)
    problems = [
        {
            "part": name,
            "state": str(report.state),
            **({"error": report.error} if report.error else {}),
        }
        for name, report in gathered.items()
        if not report.healthy
    ]
    return {
        "healthy": not problems,
        "parts": {name: str(report.state) for name, report in gathered.items()},
        "problems": problems,
    }


METHODS = {"status": status, "health": health}

"""``edgeagent status`` and ``edgeagent health``: how the running agent's parts are doing.

Both read the stats seam through the control socket (``status``, ``health``). ``health``
exits 0 when every part is running and 1 otherwise, naming each part that is not, so a
script or a fleet tool can ask a device "are you healthy?" and get an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from edgeagent.cli.options import Commands, add_command, add_json_option, client
from edgeagent.cli.output import Output, use_color
from edgeagent.config.model import Paths


def add_commands(commands: Commands) -> None:
    """Register ``status`` and ``health``."""
    status = add_command(
        commands, "status", _cmd_status, help="show every part's state and counters"
    )
    add_json_option(status, "print JSON instead of text")
    health = add_command(
        commands, "health", _cmd_health, help="exit 0 when every part is running, 1 otherwise"
    )
    add_json_option(health, "print JSON instead of text")


def _cmd_status(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    return Output(client(paths).call("status"), _status_text)


def _status_text(document: dict[str, Any]) -> Iterator[str]:
    from edgeagent.info import part_lines

    verdict = "healthy" if document.get("healthy") else "NOT healthy"
    yield (
        f"edgeagent {document.get('version', '?')} on {document.get('device_id', '?')}: "
        f"{verdict}, up {document.get('uptime', 0):.0f} s"
    )
    yield from part_lines(document.get("parts"), color=use_color())


def _cmd_health(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    document = client(paths).call("health")
    return Output(document, _health_text, code=0 if document.get("healthy") else 1)


def _health_text(document: dict[str, Any]) -> Iterator[str]:
    if document.get("healthy"):
        yield f"healthy: {len(document.get('parts', {}))} parts running"
        return
    for problem in document.get("problems", []):
        error = f": {problem['error']}" if problem.get("error") else ""
        yield f"{problem['part']} is {problem['state']}{error}"

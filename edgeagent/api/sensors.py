"""The sensors API: what each sensor reads now (``sensors.list``, ``sensors.show``) and the
readings as they are made (``sensors.watch``, a long poll like ``journal.tail``)."""

from __future__ import annotations

from typing import Any

from edgeagent.api.context import AgentView
from edgeagent.errors import ControlError
from edgeagent.sensors.pipeline import reading_payload

MAX_WATCH_WAIT = 30.0


async def sensors_list(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    sensors = view.parts.sensors
    return [] if sensors is None else sensors.sensors_document()


async def sensors_show(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    ident = str(params.get("id", ""))
    for document in await sensors_list(view, params):
        if document["id"] == ident:
            return document
    known = ", ".join(d["id"] for d in await sensors_list(view, params)) or "none"
    raise ControlError(f"no sensor with id {ident!r} (known: {known})")


async def sensors_watch(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    """Readings numbered above ``after`` (``-1``: from now), waiting up to ``wait`` seconds
    for the first; the answer's ``last_seq`` is the ``after`` of the next call."""
    sensors = view.parts.sensors
    if sensors is None:
        raise ControlError("no sensors are running")
    ident = params.get("id")
    if ident is not None and str(ident) not in sensors.runners:
        await sensors_show(view, {"id": ident})  # raises, naming the known ones
    after = int(params.get("after", -1))
    if after < 0:
        after = sensors.last_seq
    wait = max(0.0, min(float(params.get("wait", 0)), MAX_WATCH_WAIT))
    found = await sensors.recent(after, wait=wait, sensor=str(ident) if ident else None)
    readings = [
        {
            "seq": seq,
            "sensor": r.sensor,
            **reading_payload(r, sensors.runners[r.sensor].pipeline.fields),
        }
        for seq, r in found
    ]
    return {"readings": readings, "last_seq": found[-1][0] if found else after}


METHODS = {
    "sensors.list": sensors_list,
    "sensors.show": sensors_show,
    "sensors.watch": sensors_watch,
}

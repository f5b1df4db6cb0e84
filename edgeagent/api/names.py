"""The names API: what the device advertises and resolves (``info``, ``services.*``,
``resolve``), and the rename bookkeeping that keeps names won in conflicts across restarts.

Plain async functions over ``AgentView``; the control socket serves them, and a web page or
metrics can call the same functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from edgeagent import __version__
from edgeagent.api.context import AgentView, Device
from edgeagent.api.mesh import mesh_meta, peers_document
from edgeagent.api.status import parts_document
from edgeagent.device import HOST_KEY, SERVICE_KEY, build_table, load_effective_config
from edgeagent.dns.records import RType, type_name
from edgeagent.errors import ConfigError, ControlError
from edgeagent.info import identity_document, records_document
from edgeagent.mdns.dump import dump_records
from edgeagent.mdns.responder import Renamed, RenameKind
from edgeagent.net.coexist import other_mdns_users
from edgeagent.state import RuntimeState

log = logging.getLogger("edgeagent")

AGENT_SERVICE_ID = "edgeagent"
AGENT_SERVICE_TYPE = "_edgeagent._tcp"


async def info(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    """``edgeagent info``: identity, interfaces, every record advertised, the mDNS and DNS
    bridge state, the mesh, and every part's report (journal and serial ports included)."""
    device, parts = view.device, view.parts
    mdns, config = parts.mdns, parts.config
    table = mdns.table
    interfaces = mdns.interfaces
    rows = dump_records(table, interfaces)  # placeholders only while no interface is up
    others = await asyncio.to_thread(other_mdns_users)
    document: dict[str, Any] = {
        "running": True,
        "started_at": device.started,
        "version": __version__,
        "device_id": device.device_id,
        **identity_document(config, table.hosts),
        "interfaces": [
            {"name": i.name, "index": i.index, "ipv4": list(i.ipv4), "ipv6": list(i.ipv6)}
            for i in interfaces
        ],
        "records": records_document(rows),
        "mdns": {
            **mdns.status(),
            "other_stacks": [{"pid": u.pid, "command": u.command} for u in others],
        },
        "dns_bridge": {
            "enabled": config.dns_bridge.enabled,
            "address": config.dns_bridge.address,
            "port": config.dns_bridge.port,
            **({"stats": dataclasses.asdict(parts.bridge.stats)} if parts.bridge else {}),
        },
        "peers": peers_document(view),
        "parts": parts_document(parts),
    }
    if params.get("caches"):
        document["caches"] = cache_document(view)
    return document


def cache_document(view: AgentView) -> dict[str, list[dict[str, Any]]]:
    """Cached records per interface, each row with the responder it came from."""
    document: dict[str, list[dict[str, Any]]] = {}
    for iface, entries in view.parts.mdns.cache.entries(time.monotonic()).items():
        rows = []
        for entry in entries:
            row = records_document([entry.record])[0]
            row["source"] = entry.source
            rows.append(row)
        document[iface] = rows
    return document


async def services_list(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    state = view.device.state
    runtime_ids = {s.get("id") for s in state.services_override() if not s.get("remove")}
    return [
        {
            "id": s.id,
            "type": s.type,
            "instance": s.instance,
            "port": s.port,
            "txt": dict(s.txt),
            "priority": s.priority,
            "weight": s.weight,
            "origin": "runtime" if s.id in runtime_ids else "config",
        }
        for s in view.parts.mdns.table.services
    ]


async def services_add(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    service = params.get("service")
    if not isinstance(service, dict) or not isinstance(service.get("id"), str):
        raise ControlError("services.add needs {'service': {'id': ..., ...}}")
    device = view.device
    async with device.state_lock:
        return await apply_state(view, device.state.with_service(service), service["id"])


async def services_remove(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    service_id = params.get("id")
    if not isinstance(service_id, str):
        raise ControlError("services.remove needs {'id': ...}")
    device = view.device
    async with device.state_lock:
        current = {s.id: s for s in view.parts.mdns.table.services}
        if service_id not in current:
            known = ", ".join(sorted(current)) or "none"
            raise ControlError(f"no service with id {service_id!r} (known: {known})")
        if current[service_id].type == AGENT_SERVICE_TYPE and service_id == AGENT_SERVICE_ID:
            raise ControlError(
                "the agent's own service cannot be removed at runtime; "
                "set mdns.advertise_agent: false in the config"
            )
        removed = current[service_id]
        await apply_state(view, device.state.without_service(service_id), None)
        return {"id": removed.id, "type": removed.type}


async def apply_state(
    view: AgentView, state: RuntimeState, service_id: str | None
) -> dict[str, Any]:
    """Validate the whole config with the new runtime overrides, persist them, then
    re-advertise (the mDNS table and the mesh meta follow the services)."""
    device, parts = view.device, view.parts
    try:
        config, _ = load_effective_config(device.paths, state=state)
    except ConfigError as exc:
        raise ControlError(f"rejected:\n{exc}") from exc
    device.store.save(state)
    device.state, parts.config = state, config
    table = build_table(config, renames=state.renames, device_id=device.device_id)
    await parts.mdns.update_table(table)
    if parts.mesh is not None:
        parts.mesh.set_meta(mesh_meta(parts.mdns.table))
    if service_id is None:
        return {}
    for spec in parts.mdns.table.services:
        if spec.id == service_id:
            return {"id": spec.id, "type": spec.type, "instance": spec.instance, "port": spec.port}
    raise ControlError(f"service {service_id!r} was accepted but is not advertised")


async def resolve(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise ControlError("resolve needs a 'name'")
    type_text = str(params.get("type", "A")).upper()
    try:
        rtype = RType[type_text]
    except KeyError as exc:
        known = ", ".join(t.name for t in RType if t not in (RType.OPT, RType.NSEC))
        raise ControlError(f"unknown record type {type_text!r} (known: {known})") from exc
    parts = view.parts
    timeout = float(params.get("timeout", parts.config.mdns.query_timeout))
    records = await parts.mdns.resolve(name.rstrip("."), int(rtype), timeout)
    return [
        {"name": r.name, "type": type_name(r.rtype), "ttl": r.ttl, "data": r.data_text}
        for r in records
    ]


def persist_rename(device: Device, event: Renamed) -> None:
    """A name lost in a conflict and renamed (RFC 6762 §9) is kept across restarts."""
    if event.kind is RenameKind.HOST:
        key = HOST_KEY + _original_host(device.state, event.old)
    elif event.service_id is not None:
        key = SERVICE_KEY + event.service_id
    else:
        return
    log.warning("name conflict: %s is now %s", event.old, event.new)
    device.state = device.state.with_rename(key, event.new)
    device.store.save(device.state)


def _original_host(state: RuntimeState, name: str) -> str:
    for key, value in state.renames.items():
        if key.startswith(HOST_KEY) and value == name:
            return key[len(HOST_KEY) :]
    return name


METHODS = {
    "info": info,
    "services.list": services_list,
    "services.add": services_add,
    "services.remove": services_remove,
    "resolve": resolve,
}

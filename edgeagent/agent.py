"""The composition root: builds every concrete part and runs them until told to stop.

Order matters and is encoded in one ``AsyncExitStack``: the mDNS service starts first (it
owns the names), then the DNS bridge that reads them, then the control socket. Closing runs in
reverse: the control socket stops taking requests, the bridge stops answering, and the mDNS
service sends its goodbye packets before its sockets close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from edgeagent import __version__
from edgeagent.bridge.server import BridgeServer
from edgeagent.config.model import Config, Paths
from edgeagent.control.server import ControlServer
from edgeagent.device import (
    HOST_KEY,
    SERVICE_KEY,
    build_table,
    device_id,
    load_effective_config,
)
from edgeagent.dns.records import RType, type_name
from edgeagent.errors import ConfigError, ControlError
from edgeagent.info import identity_document, records_document
from edgeagent.mdns.dump import DumpRow, dump_records
from edgeagent.mdns.responder import Renamed, RenameKind
from edgeagent.mdns.transport import MdnsService
from edgeagent.mesh.discovery import DiscoveryContext
from edgeagent.mesh.epoch import next_epoch
from edgeagent.mesh.service import MeshService
from edgeagent.names import AgentNames
from edgeagent.net.coexist import other_mdns_users
from edgeagent.state import RuntimeState, StateStore
from edgeagent.systemd import Notifier, watchdog_interval

log = logging.getLogger("edgeagent")

CONTROL_SOCKET = "control.sock"
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def run_agent(paths: Paths) -> int:
    """Entry point of ``edgeagent run``: load, then run on uvloop when available."""
    config, state = load_effective_config(paths)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    agent = Agent(paths, config, state)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, plain asyncio otherwise
    except ImportError:
        return asyncio.run(agent.run())
    return int(uvloop.run(agent.run()))


class Agent:
    def __init__(self, paths: Paths, config: Config, state: RuntimeState) -> None:
        self.paths = paths
        self.config = config
        self.state = state
        self.store = StateStore(Path(paths.state_dir))
        self.device_id = device_id(Path(paths.state_dir))
        self.notifier = Notifier()
        self.started = time.monotonic()
        self._stop = asyncio.Event()
        self._mdns: MdnsService | None = None
        self._bridge: BridgeServer | None = None
        self._mesh: MeshService | None = None
        self._state_lock = asyncio.Lock()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        table = build_table(self.config, renames=self.state.renames, device_id=self.device_id)
        # Components start outside the TaskGroup so a startup failure (a taken port, say)
        # reaches the CLI as itself, not wrapped in an ExceptionGroup.
        async with AsyncExitStack() as stack:
            self._mdns = await stack.enter_async_context(
                MdnsService(self.config.mdns, table, on_rename=self._on_rename)
            )
            if self.config.mesh.enabled and self.config.mesh.clusters:
                self._mesh = await stack.enter_async_context(
                    MeshService(
                        self.config.mesh,
                        self_id=self.device_id,
                        hostname=self._mdns.table.hosts[0],
                        epoch=next_epoch(Path(self.paths.state_dir)),
                        meta=self._mesh_meta(),
                        context=DiscoveryContext(mdns=self._mdns, self_id=self.device_id),
                        handlers=self._mesh_handlers(),
                    )
                )
            if self.config.dns_bridge.enabled:
                names = AgentNames(self._mdns)
                self._bridge = await stack.enter_async_context(
                    BridgeServer(self.config.dns_bridge, names)
                )
            control_path = Path(self.paths.runtime_dir) / CONTROL_SOCKET
            await stack.enter_async_context(ControlServer(control_path, self._handlers()))
            hosts = ", ".join(f"{h}.local" for h in self._mdns.table.hosts)
            log.info("edgeagent %s running as %s (control %s)", __version__, hosts, control_path)
            self.notifier.ready(f"advertising {hosts}")
            async with asyncio.TaskGroup() as tasks:
                interval = watchdog_interval()
                if interval:
                    tasks.create_task(self._watchdog(interval), name="edgeagent[systemd].watchdog")
                await self._stop.wait()
            log.info("stopping: sending goodbyes")
            self.notifier.stopping()
        return 0

    async def _watchdog(self, interval: float) -> None:
        while not self._stop.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stop.wait()

    # -- renames won in conflicts are kept across restarts ------------------------------
    def _on_rename(self, event: Renamed) -> None:
        if event.kind is RenameKind.HOST:
            original = self._original_host(event.old)
            key = HOST_KEY + original
        elif event.service_id is not None:
            key = SERVICE_KEY + event.service_id
        else:
            return
        log.warning("name conflict: %s is now %s", event.old, event.new)
        self.state = self.state.with_rename(key, event.new)
        self.store.save(self.state)

    def _original_host(self, name: str) -> str:
        for key, value in self.state.renames.items():
            if key.startswith(HOST_KEY) and value == name:
                return key[len(HOST_KEY) :]
        return name

    # -- control API ----------------------------------------------------------------------
    def _handlers(self) -> dict[str, Handler]:
        return {
            "info": self._info,
            "services.list": self._services_list,
            "services.add": self._services_add,
            "services.remove": self._services_remove,
            "resolve": self._resolve,
            "status": self._status,
            "peers": self._peers,
            "mesh.request": self._mesh_request,
        }

    # -- mesh -------------------------------------------------------------------------------
    def _mesh_meta(self) -> dict[str, Any]:
        """What this device tells cluster members about itself (offers/roles are added per
        cluster by the mesh service)."""
        return {
            "hostname": self.mdns.table.hosts[0],
            "version": __version__,
            "services": [
                {"id": s.id, "type": s.type, "port": s.port, "instance": s.instance}
                for s in self.mdns.table.services
            ],
        }

    def _mesh_handlers(self) -> dict[str, Callable[[str, Any], Awaitable[Any]]]:
        async def status(sender: str, body: Any) -> Any:
            return {
                "device_id": self.device_id,
                "hostname": self.mdns.table.hosts[0],
                "version": __version__,
                "uptime": round(time.monotonic() - self.started, 3),
            }

        async def echo(sender: str, body: Any) -> Any:
            return {"from": sender, "body": body}

        return {"agent.status": status, "agent.echo": echo}

    def _peers_document(self) -> dict[str, Any]:
        mesh = self._mesh
        if mesh is None:
            reason = "mesh.enabled is false" if not self.config.mesh.enabled else "no clusters"
            return {"enabled": False, "reason": reason, "members": [], "events": []}
        return {
            "enabled": True,
            "members": mesh.peers_document(),
            "roles": mesh.self_roles(),
            "clusters": mesh.status(),
            "events": [
                {
                    "cluster": cluster,
                    "device_id": event.device_id,
                    "kind": str(event.kind),
                    "at": event.at,
                    "detail": event.detail,
                }
                for cluster, event in mesh.events
            ],
        }

    async def _peers(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._mesh is None:
            return []
        rows = self._mesh.peers_document()
        cluster = params.get("cluster")
        return [r for r in rows if cluster is None or r["cluster"] == cluster]

    async def _mesh_request(self, params: dict[str, Any]) -> Any:
        if self._mesh is None:
            raise ControlError("the mesh is not running (mesh.enabled or no clusters)")
        device_id, method = params.get("device_id"), params.get("method")
        if not isinstance(device_id, str) or not isinstance(method, str):
            raise ControlError("mesh.request needs 'device_id' and 'method'")
        timeout = float(params.get("timeout", 5.0))
        cluster = params.get("cluster")
        return await self._mesh.request(
            device_id, method, params.get("body"), cluster=cluster, timeout=timeout
        )

    @property
    def mdns(self) -> MdnsService:
        if self._mdns is None:
            raise ControlError("the mDNS service is not running")
        return self._mdns

    async def _status(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": __version__,
            "device_id": self.device_id,
            "uptime": round(time.monotonic() - self.started, 3),
            "mdns": self.mdns.status(),
        }

    async def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        mdns = self.mdns
        table = mdns.table
        interfaces = mdns.interfaces
        records = []
        seen: set[tuple[str, int, str]] = set()
        for iface in interfaces:
            for record in table.records_for(iface):
                if record.key not in seen:
                    seen.add(record.key)
                    records.append(record)
        rows: list[DumpRow] = list(records) if interfaces else dump_records(table, None)
        others = await asyncio.to_thread(other_mdns_users)
        info: dict[str, Any] = {
            "running": True,
            "started_at": self.started,
            "version": __version__,
            "device_id": self.device_id,
            **identity_document(self.config, table.hosts),
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
                "enabled": self.config.dns_bridge.enabled,
                "address": self.config.dns_bridge.address,
                "port": self.config.dns_bridge.port,
                **({"stats": dataclasses.asdict(self._bridge.stats)} if self._bridge else {}),
            },
        }
        info["peers"] = self._peers_document()
        if params.get("caches"):
            info["caches"] = self._cache_document()
        return info

    def _cache_document(self) -> dict[str, list[dict[str, Any]]]:
        """Cached records per interface, each row with the responder it came from."""
        document: dict[str, list[dict[str, Any]]] = {}
        for iface, entries in self.mdns.cache.entries(time.monotonic()).items():
            rows = []
            for entry in entries:
                row = records_document([entry.record])[0]
                row["source"] = entry.source
                rows.append(row)
            document[iface] = rows
        return document

    async def _services_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        runtime_ids = {s.get("id") for s in self.state.services_override() if not s.get("remove")}
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
            for s in self.mdns.table.services
        ]

    async def _services_add(self, params: dict[str, Any]) -> dict[str, Any]:
        service = params.get("service")
        if not isinstance(service, dict) or not isinstance(service.get("id"), str):
            raise ControlError("services.add needs {'service': {'id': ..., ...}}")
        async with self._state_lock:
            return await self._apply_state(self.state.with_service(service), service["id"])

    async def _services_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        service_id = params.get("id")
        if not isinstance(service_id, str):
            raise ControlError("services.remove needs {'id': ...}")
        async with self._state_lock:
            current = {s.id: s for s in self.mdns.table.services}
            if service_id not in current:
                known = ", ".join(sorted(current)) or "none"
                raise ControlError(f"no service with id {service_id!r} (known: {known})")
            if current[service_id].type == "_edgeagent._tcp" and service_id == "edgeagent":
                raise ControlError(
                    "the agent's own service cannot be removed at runtime; "
                    "set mdns.advertise_agent: false in the config"
                )
            removed = current[service_id]
            await self._apply_state(self.state.without_service(service_id), None)
            return {"id": removed.id, "type": removed.type}

    async def _apply_state(self, state: RuntimeState, service_id: str | None) -> dict[str, Any]:
        """Validate the whole config with the new overrides, persist, then re-advertise."""
        try:
            config, _ = load_effective_config(self.paths, state=state)
        except ConfigError as exc:
            raise ControlError(f"rejected:\n{exc}") from exc
        self.store.save(state)
        self.state, self.config = state, config
        table = build_table(config, renames=state.renames, device_id=self.device_id)
        await self.mdns.update_table(table)
        if self._mesh is not None:
            self._mesh.set_meta(self._mesh_meta())
        if service_id is None:
            return {}
        for spec in self.mdns.table.services:
            if spec.id == service_id:
                return {
                    "id": spec.id,
                    "type": spec.type,
                    "instance": spec.instance,
                    "port": spec.port,
                }
        raise ControlError(f"service {service_id!r} was accepted but is not advertised")

    async def _resolve(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise ControlError("resolve needs a 'name'")
        type_text = str(params.get("type", "A")).upper()
        try:
            rtype = RType[type_text]
        except KeyError as exc:
            known = ", ".join(t.name for t in RType if t not in (RType.OPT, RType.NSEC))
            raise ControlError(f"unknown record type {type_text!r} (known: {known})") from exc
        timeout = float(params.get("timeout", self.config.mdns.query_timeout))
        records = await self.mdns.resolve(name.rstrip("."), int(rtype), timeout)
        return [
            {"name": r.name, "type": type_name(r.rtype), "ttl": r.ttl, "data": r.data_text}
            for r in records
        ]

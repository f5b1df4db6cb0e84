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
import gc
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
from edgeagent.control.client import control_socket
from edgeagent.control.server import ControlServer
from edgeagent.device import (
    HOST_KEY,
    SERVICE_KEY,
    build_table,
    device_id,
    load_effective_config,
)
from edgeagent.dns.records import RType, type_name
from edgeagent.errors import (
    ConfigError,
    ControlError,
    EdgeAgentError,
    PayloadError,
)
from edgeagent.info import identity_document, records_document
from edgeagent.mdns.dump import DumpRow, dump_records
from edgeagent.mdns.responder import Renamed, RenameKind
from edgeagent.mdns.transport import MdnsService
from edgeagent.mesh.discovery import DiscoveryContext
from edgeagent.mesh.epoch import next_epoch
from edgeagent.mesh.service import MeshService, RequestContext, RequestHandler
from edgeagent.names import AgentNames
from edgeagent.net.coexist import other_mdns_users
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.graph import line_settings
from edgeagent.reactors.journal import Entry, Journal
from edgeagent.reactors.model import SerialWrite
from edgeagent.reactors.remote import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    PEER_METHOD,
    ForwardEffects,
    IntentForwarder,
    RemoteIntent,
    answer_of,
    refusal,
    serve_remote,
    submit_answer,
)
from edgeagent.reactors.runlog import RunLog
from edgeagent.reactors.runtime import ReactorRuntime, Submission
from edgeagent.serial.ports import SerialPorts
from edgeagent.state import RuntimeState, StateStore
from edgeagent.systemd import Notifier, watchdog_interval

log = logging.getLogger("edgeagent")

JOURNAL_CHECK_INTERVAL = 60.0  # seconds between journal size checks
MAX_INTENT_BATCH = 1000  # intents in one intent.send_batch request
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
        self._journal: Journal | None = None
        self._reactors: ReactorRuntime | None = None
        self._forwarder = IntentForwarder(None)
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
            await self._start_reactors(stack)
            control_path = control_socket(self.paths.runtime_dir)
            await stack.enter_async_context(ControlServer(control_path, self._handlers()))
            hosts = ", ".join(f"{h}.local" for h in self._mdns.table.hosts)
            log.info("edgeagent %s running as %s (control %s)", __version__, hosts, control_path)
            # What start-up built lives until stop: take it out of the cyclic collector's
            # sight. A full collection over it costs ~8 ms on the 2-core development host
            # (more on a Pi), a stall every intent in flight would wait out. Objects made
            # later are collected as usual.
            gc.freeze()
            self.notifier.ready(f"advertising {hosts}")
            async with asyncio.TaskGroup() as tasks:
                interval = watchdog_interval()
                if interval:
                    tasks.create_task(self._watchdog(interval), name="edgeagent[systemd].watchdog")
                tasks.create_task(self._compact_journal(), name="edgeagent[journal].compact")
                await self._stop.wait()
            log.info("stopping: sending goodbyes")
            self.notifier.stopping()
        return 0

    async def _start_reactors(self, stack: AsyncExitStack) -> None:
        """The journal, then the reactors replayed from it (docs/reactors.md)."""
        config = self.config
        state_dir = Path(self.paths.state_dir)
        path = Path(config.journal.path or "journal.sqlite3")
        journal = Journal(
            path if path.is_absolute() else state_dir / path, max_batch=config.journal.max_batch
        )
        self._journal = await stack.enter_async_context(journal)
        run_log = RunLog(state_dir / "runs")
        stack.callback(run_log.close)
        policy = Policy.build(dict(config.capabilities.implies), dict(config.principals))
        self._forwarder = IntentForwarder(self._mesh, run_log=run_log)
        try:
            ports = SerialPorts(line_settings(config))
            runtime = ReactorRuntime(
                config.reactors,
                policy,
                self._journal,
                run_log=run_log,
                sinks={SerialWrite: ports},
                peers=ForwardEffects(self._forwarder),
            )
        except PayloadError as exc:
            raise ConfigError([f"{self.paths.config_file}: reactors: {exc}"]) from exc
        except ConfigError as exc:
            raise ConfigError([f"{self.paths.config_file}: {i}" for i in exc.issues]) from exc
        await stack.enter_async_context(ports)  # so it closes after the reactors
        self._reactors = await stack.enter_async_context(runtime)

    async def _compact_journal(self) -> None:
        """Keep the journal under ``journal.max_bytes`` (rows covered by snapshots go)."""
        bound = self.config.journal
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(JOURNAL_CHECK_INTERVAL):
                    await self._stop.wait()
            journal = self._journal
            if journal is not None and journal.size_bytes() > bound.max_bytes:
                try:
                    removed = await journal.compact(
                        max_bytes=bound.max_bytes, audit_keep=bound.audit_keep
                    )
                except EdgeAgentError as exc:
                    log.warning("journal compaction failed: %s", exc)
                else:
                    log.info("journal compacted: %d rows removed", removed)

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
            "intent.send": self._intent_send,
            "intent.send_batch": self._intent_send_batch,
            "reactors.list": self._reactors_list,
            "reactors.show": self._reactors_show,
            "reactors.command": self._reactors_command,
            "journal.tail": self._journal_tail,
            "journal.audit": self._journal_audit,
        }

    # -- reactors ---------------------------------------------------------------------------
    @property
    def reactors(self) -> ReactorRuntime:
        if self._reactors is None:
            raise ControlError("reactors are not running yet")
        return self._reactors

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise ControlError("the journal is not open yet")
        return self._journal

    async def _intent_send(self, params: dict[str, Any]) -> dict[str, Any]:
        """Accept one intent from the CLI, or forward it to member ``to`` of a mesh cluster
        (edgeagent/reactors/remote.py). A refusal is an answer, not an error: the CLI streams
        many and reports each (``accepted: false`` with the step's code)."""
        name = params.get("name")
        payload = params.get("payload", {})
        if not isinstance(name, str) or not name:
            raise ControlError("intent.send needs 'name'")
        if not isinstance(payload, dict):
            return refusal(name, "invalid", "payload: must be a JSON object")
        trace_id = params.get("trace_id")
        key = params.get("idempotency_key")
        to = params.get("to")
        if to and str(to) not in (self.device_id, self.mdns.table.hosts[0]):
            return await self._intent_forward(name, payload, params)
        return await submit_answer(
            self.reactors,
            name,
            payload,
            principal=str(params.get("as") or "cli"),
            source="cli",
            trace_id=str(trace_id) if trace_id else None,
            idempotency_key=str(key) if key else None,
        )

    async def _intent_send_batch(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """``intent.send`` for up to MAX_INTENT_BATCH items, answered in order: how
        ``intent send -`` streams. Local intents are admitted together (one pass through the
        mailboxes, one group commit); items with ``to`` are forwarded concurrently."""
        items = params.get("items")
        if not isinstance(items, list) or len(items) > MAX_INTENT_BATCH:
            raise ControlError(f"intent.send_batch needs 'items': a list of at most "
                               f"{MAX_INTENT_BATCH} intent.send parameter objects")  # fmt: skip
        answers: list[dict[str, Any]] = [{} for _ in items]
        local: list[tuple[int, Submission]] = []
        remote: list[tuple[int, dict[str, Any]]] = []
        own = (self.device_id, self.mdns.table.hosts[0])
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            payload = item.get("payload", {}) if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(name, str) or not name:
                answers[index] = refusal(str(name), "invalid", "each item needs a 'name'")
            elif not isinstance(payload, dict):
                answers[index] = refusal(name, "invalid", "payload: must be a JSON object")
            elif item.get("to") and str(item["to"]) not in own:
                remote.append((index, item))
            else:
                trace_id, key = item.get("trace_id"), item.get("idempotency_key")
                local.append((index, Submission(
                    name, payload, principal=str(item.get("as") or "cli"), source="cli",
                    trace_id=str(trace_id) if trace_id else None,
                    idempotency_key=str(key) if key else None,
                )))  # fmt: skip
        results = await self.reactors.submit_many([submission for _, submission in local])
        for (index, submission), result in zip(local, results, strict=True):
            answers[index] = answer_of(submission.name, result)
        if remote:
            forwarded = await asyncio.gather(*(self._intent_send(item) for _, item in remote))
            for (index, _), answer in zip(remote, forwarded, strict=True):
                answers[index] = answer
        return answers

    async def _intent_forward(
        self, name: str, payload: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        to, cluster = str(params["to"]), params.get("cluster")
        if params.get("as"):
            reason = (
                "'as' applies to local intents only: on the receiving device a remote intent "
                "acts as peer:<cluster>"
            )
            return {**refusal(name, "invalid", reason), "to": to}
        timeout = _seconds(params.get("timeout", DEFAULT_TIMEOUT))
        if timeout is None or not 0 < timeout <= MAX_TIMEOUT:
            reason = f"timeout: a number of seconds, more than 0 and at most {MAX_TIMEOUT:g}"
            return {**refusal(name, "invalid", reason), "to": to}
        try:
            intent = RemoteIntent.from_body(
                {k: v for k, v in params.items() if k in ("trace_id", "idempotency_key")}
                | {"name": name, "payload": payload}
            )
        except ValueError as exc:
            return {**refusal(name, "invalid", str(exc)), "to": to}
        return await self._forwarder.forward(
            to, intent, cluster=str(cluster) if cluster else None, timeout=timeout
        )

    async def _reactors_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.reactors.reactors()

    async def _reactors_show(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.reactors.show(str(params.get("id", "")))

    async def _reactors_command(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.reactors.command(str(params.get("id", "")), str(params.get("command")))

    async def _journal_tail(self, params: dict[str, Any]) -> dict[str, Any]:
        """Entries after ``after`` (or the newest ``limit`` when ``after`` is negative); with
        ``wait`` seconds, a long poll: returns as soon as something is committed."""
        journal = self.journal
        limit = max(1, min(int(params.get("limit", 100)), 1000))
        after = int(params.get("after", -1))
        wait = max(0.0, min(float(params.get("wait", 0)), 30.0))
        entries = await (journal.last(limit) if after < 0 else journal.tail(after, limit))
        if not entries and wait and after >= 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    async for batch in journal.follow(after, limit=limit):
                        entries = batch
                        break
        return {"entries": [_entry_json(e) for e in entries], "last_seq": journal.last_seq}

    async def _journal_audit(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        limit = max(1, min(int(params.get("limit", 100)), 1000))
        return [dataclasses.asdict(a) for a in await self.journal.recent_audit(limit)]

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

    def _mesh_handlers(self) -> dict[str, RequestHandler]:
        async def status(request: RequestContext, body: Any) -> Any:
            return {
                "device_id": self.device_id,
                "hostname": self.mdns.table.hosts[0],
                "version": __version__,
                "uptime": round(time.monotonic() - self.started, 3),
            }

        async def echo(request: RequestContext, body: Any) -> Any:
            return {"from": request.sender, "cluster": request.cluster, "body": body}

        async def intent(request: RequestContext, body: Any) -> Any:
            # Before the reactors run this raises; the sender sees a "remote" refusal.
            return await serve_remote(self.reactors, request, body)

        return {"agent.status": status, "agent.echo": echo, PEER_METHOD: intent}

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


def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _entry_json(entry: Entry) -> dict[str, Any]:
    return dataclasses.asdict(entry)

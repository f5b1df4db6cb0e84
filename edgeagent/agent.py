"""The composition root: builds every concrete part from a ``Config`` and runs them until told
to stop. It decides nothing else: the control methods and documents live in ``edgeagent.api``.

Order matters and is encoded in one ``AsyncExitStack``: the mDNS service starts first (it
owns the names), then the mesh that finds peers through it, then the DNS bridge that reads
the names, the journal and the reactors replayed from it, then the control socket. Closing
runs in reverse: the control socket stops taking requests, the reactors stop, the bridge stops
answering, and the mDNS service sends its goodbye packets before its sockets close.

Building (``build_parts``) is separate from starting (``start_parts``): a reload can build a
second ``Parts`` from a new config, start it and swap it in, and the API sees the new set on
its next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from edgeagent import __version__, api
from edgeagent.api.context import Device, Parts
from edgeagent.api.mesh import mesh_meta, peer_methods
from edgeagent.api.names import persist_rename
from edgeagent.bridge.server import BridgeServer
from edgeagent.config.model import Config, Paths
from edgeagent.control.client import control_socket
from edgeagent.control.server import ControlServer
from edgeagent.device import build_table, device_id, load_effective_config
from edgeagent.errors import ConfigError, EdgeAgentError, PayloadError
from edgeagent.mdns.transport import MdnsService
from edgeagent.mesh.discovery import DiscoveryContext
from edgeagent.mesh.epoch import next_epoch
from edgeagent.mesh.service import MeshService
from edgeagent.names import AgentNames
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.graph import line_settings, principals_of
from edgeagent.reactors.journal import Journal
from edgeagent.reactors.model import SerialWrite
from edgeagent.reactors.remote import ForwardEffects, IntentForwarder
from edgeagent.reactors.runlog import RunLog
from edgeagent.reactors.runtime import ReactorRuntime
from edgeagent.resource import TaskOwner
from edgeagent.sensors.feed import ReactorFeed
from edgeagent.sensors.service import SensorsService
from edgeagent.serial.ports import SerialPorts
from edgeagent.state import RuntimeState, StateStore
from edgeagent.systemd import Notifier, watchdog_interval

log = logging.getLogger("edgeagent")

JOURNAL_CHECK_INTERVAL = 60.0  # seconds between journal size checks


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
    """The device and its running parts (``api.context.AgentView``)."""

    def __init__(self, paths: Paths, config: Config, state: RuntimeState) -> None:
        state_dir = Path(paths.state_dir)
        self.device = Device(
            paths=paths,
            device_id=device_id(state_dir),
            store=StateStore(state_dir),
            state=state,
            started=time.monotonic(),
        )
        self.parts = build_parts(config, self.device, self)
        self.notifier = Notifier()
        self._stop = asyncio.Event()

    @property
    def config(self) -> Config:
        return self.parts.config

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        # Parts start outside the TaskGroup so a startup failure (a taken port, say) reaches
        # the CLI as itself, not wrapped in an ExceptionGroup.
        async with AsyncExitStack() as stack:
            await start_parts(self.parts, stack)
            control_path = control_socket(self.device.paths.runtime_dir)
            control = ControlServer(control_path, api.control_handlers(self))
            self.parts.control = await stack.enter_async_context(control)
            hosts = ", ".join(f"{h}.local" for h in self.parts.mdns.table.hosts)
            log.info("edgeagent %s running as %s (control %s)", __version__, hosts, control_path)
            # What start-up built lives until stop: take it out of the cyclic collector's
            # sight, so a full collection never stalls the intents in flight (bench/README).
            # Objects made later are collected as usual.
            gc.freeze()
            self.notifier.ready(f"advertising {hosts}")
            exit_code = 0
            async with asyncio.TaskGroup() as tasks:
                interval = watchdog_interval()
                if interval:
                    tasks.create_task(self._watchdog(interval), name="edgeagent[systemd].watchdog")
                tasks.create_task(self._compact_journal(), name="edgeagent[journal].compact")
                stop = tasks.create_task(self._stop.wait(), name="edgeagent.stop")
                fatal = [
                    tasks.create_task(failed(), name=f"edgeagent.fatal[{name}]")
                    for name, failed in _fatal_parts(self.parts).items()
                ]
                done, _ = await asyncio.wait([stop, *fatal], return_when=asyncio.FIRST_COMPLETED)
                for task in fatal:
                    if task in done:
                        log.error("a fatal part failed: stopping the agent")
                        exit_code = 1
                    task.cancel()
                self._stop.set()
            log.info("stopping: sending goodbyes")
            self.notifier.stopping()
        return exit_code

    def stop(self) -> None:
        self._stop.set()

    async def _compact_journal(self) -> None:
        """Keep the journal under ``journal.max_bytes`` (rows covered by snapshots go)."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(JOURNAL_CHECK_INTERVAL):
                    await self._stop.wait()
            bound, journal = self.parts.config.journal, self.parts.journal
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


def build_parts(config: Config, device: Device, view: api.context.AgentView) -> Parts:
    """Every part for ``config``, built but not started (see ``start_parts``).

    ``view`` is what the mesh's methods read the running parts through (the agent)."""
    state_dir = Path(device.paths.state_dir)
    table = build_table(config, renames=device.state.renames, device_id=device.device_id)
    mdns = MdnsService(config.mdns, table, on_rename=lambda event: persist_rename(device, event))
    parts = Parts(config=config, mdns=mdns, forwarder=IntentForwarder(None))
    if config.mesh.enabled and config.mesh.clusters:
        parts.mesh = MeshService(
            config.mesh,
            self_id=device.device_id,
            hostname=table.hosts[0],
            epoch=next_epoch(state_dir),
            meta=mesh_meta(table),
            context=DiscoveryContext(mdns=mdns, self_id=device.device_id),
            handlers=peer_methods(view),
        )
    if config.dns_bridge.enabled:
        parts.bridge = BridgeServer(config.dns_bridge, AgentNames(mdns))
    path = Path(config.journal.path or "journal.sqlite3")
    parts.journal = Journal(
        path if path.is_absolute() else state_dir / path, max_batch=config.journal.max_batch
    )
    parts.run_log = RunLog(state_dir / "runs")
    parts.forwarder = IntentForwarder(parts.mesh, run_log=parts.run_log)
    policy = Policy.build(dict(config.capabilities.implies), principals_of(config))
    config_file = device.paths.config_file
    try:
        parts.serial = SerialPorts(line_settings(config))
        parts.reactors = ReactorRuntime(
            config.reactors,
            policy,
            parts.journal,
            run_log=parts.run_log,
            sinks={SerialWrite: parts.serial},
            peers=ForwardEffects(parts.forwarder),
        )
    except PayloadError as exc:
        raise ConfigError([f"{config_file}: reactors: {exc}"]) from exc
    except ConfigError as exc:
        raise ConfigError([f"{config_file}: {i}" for i in exc.issues]) from exc
    if config.sensors:
        window = config.journal.readings_commit_within
        feed = ReactorFeed(parts.reactors, durable_within=window) if parts.reactors else None
        parts.sensors = SensorsService(
            config.sensors, state_dir=state_dir, sink=feed, ports=parts.serial
        )
    return parts


async def start_parts(parts: Parts, stack: AsyncExitStack) -> None:
    """Enter ``parts`` in dependency order; ``stack`` closes them in reverse."""
    await stack.enter_async_context(parts.mdns)
    if parts.mesh is not None:
        await stack.enter_async_context(parts.mesh)
    if parts.bridge is not None:
        await stack.enter_async_context(parts.bridge)
    if parts.journal is not None:
        await stack.enter_async_context(parts.journal)
    if parts.run_log is not None:
        stack.callback(parts.run_log.close)
    if parts.serial is not None:
        await stack.enter_async_context(parts.serial)  # so it closes after the reactors
    if parts.reactors is not None:
        await stack.enter_async_context(parts.reactors)
    if parts.sensors is not None:
        await stack.enter_async_context(parts.sensors)  # readings flow once the reactors run


def _fatal_parts(parts: Parts) -> dict[str, Callable[[], Coroutine[Any, Any, BaseException]]]:
    """The parts whose failure stops the agent: task owners built ``fatal=True``, and the
    journal (whose store writer is fatal: without it nothing can be journaled)."""
    found: dict[str, Callable[[], Coroutine[Any, Any, BaseException]]] = {
        name: part.failed
        for name, part in parts.reporting().items()
        if isinstance(part, TaskOwner) and part.fatal
    }
    if parts.journal is not None:
        found["journal"] = parts.journal.failed
    return found

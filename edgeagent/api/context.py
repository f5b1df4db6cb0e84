"""What the API functions run over: the device, and the one set of parts running now.

``Device`` is what outlives any set of parts: paths, the device id, the runtime state kept in
the state directory (runtime services, renames won in conflicts) and when the agent started.
``Parts`` is one set of running parts, all built from one ``Config``; the composition root
builds it, enters its parts in order and may later build a second set from a new config and
swap it in (reload with rollback). API functions read ``view.parts`` on every call and keep no
reference to a part, so a swap is seen by the next request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from edgeagent.bridge.server import BridgeServer
from edgeagent.config.model import Config, Paths
from edgeagent.errors import ControlError
from edgeagent.mdns.transport import MdnsService
from edgeagent.mesh.service import MeshService
from edgeagent.reactors.journal import Journal
from edgeagent.reactors.remote import IntentForwarder
from edgeagent.reactors.runlog import RunLog
from edgeagent.reactors.runtime import ReactorRuntime
from edgeagent.resource import Reporting
from edgeagent.sensors.service import SensorsService
from edgeagent.serial.ports import SerialPorts
from edgeagent.state import RuntimeState, StateStore


@dataclass(eq=False)
class Device:
    """The device across restarts of its parts."""

    paths: Paths
    device_id: str
    store: StateStore
    state: RuntimeState
    started: float  # time.monotonic() when the agent started
    state_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class Parts:
    """One set of the agent's parts, built from ``config`` (``None``: not configured)."""

    config: Config
    mdns: MdnsService
    forwarder: IntentForwarder
    bridge: BridgeServer | None = None
    mesh: MeshService | None = None
    journal: Journal | None = None
    serial: SerialPorts | None = None
    reactors: ReactorRuntime | None = None
    sensors: SensorsService | None = None
    run_log: RunLog | None = None
    control: Reporting | None = None

    def reporting(self) -> dict[str, Reporting]:
        """Every part that reports (the stats seam), by the name status documents use."""
        named: dict[str, object | None] = {
            "mdns": self.mdns,
            "dns_bridge": self.bridge,
            "mesh": self.mesh,
            "journal": self.journal,
            "serial": self.serial,
            "reactors": self.reactors,
            "sensors": self.sensors,
            "control": self.control,
        }
        return {name: part for name, part in named.items() if isinstance(part, Reporting)}

    # -- parts that a request needs, with the error it gets when they are not there

    def need_reactors(self) -> ReactorRuntime:
        if self.reactors is None:
            raise ControlError("reactors are not running yet")
        return self.reactors

    def need_journal(self) -> Journal:
        if self.journal is None:
            raise ControlError("the journal is not open yet")
        return self.journal

    def need_mesh(self) -> MeshService:
        if self.mesh is None:
            raise ControlError("the mesh is not running (mesh.enabled or no clusters)")
        return self.mesh


class AgentView(Protocol):
    """What every API function is given: the device and the parts running now."""

    @property
    def device(self) -> Device: ...

    @property
    def parts(self) -> Parts: ...

"""The device as configured: effective config, identity and the records it advertises.

Pure assembly of the layers (files, runtime overrides, renames won in conflicts); used by the
composition root, by ``check`` and by ``info`` when no agent runs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from edgeagent import __version__
from edgeagent.config.loader import LoadedConfig, load
from edgeagent.config.model import Config, Paths
from edgeagent.identity import CPUINFO, DEVICE_TREE_SERIAL, DeviceIdentity, read_identity
from edgeagent.mdns.table import RecordTable
from edgeagent.mesh.discovery.mdns import agent_txt
from edgeagent.state import RuntimeState, StateStore

DEVICE_ID_FILE = "device-id"
HOST_KEY = "host:"
SERVICE_KEY = "service:"


def load_effective(
    paths: Paths, *, state: RuntimeState | None = None, identity: DeviceIdentity | None = None
) -> tuple[LoadedConfig, RuntimeState]:
    """Defaults ← base file ← device overlay ← runtime overrides from the state dir."""
    store = StateStore(Path(paths.state_dir))
    if state is None:
        state = store.load()
    loaded = load(
        paths.config_file,
        overrides=state.overrides,
        overrides_source=str(store.path),
        identity=identity,
    )
    return loaded, state


def load_effective_config(
    paths: Paths, *, state: RuntimeState | None = None, identity: DeviceIdentity | None = None
) -> tuple[Config, RuntimeState]:
    loaded, state = load_effective(paths, state=state, identity=identity)
    return loaded.config, state


def build_table(
    config: Config, *, renames: Mapping[str, str], device_id: str | None = None
) -> RecordTable:
    """The record table for ``config``, with names won in earlier conflicts applied."""
    clusters = config.mesh.clusters if config.mesh.enabled else ()
    # The mesh finds peers by this TXT: device id, protocol version, clusters and ports.
    txt = agent_txt(device_id, __version__, clusters) if device_id else {"version": __version__}
    table = RecordTable.from_config(config.mdns, agent_txt=txt)
    hosts = [renames.get(HOST_KEY + host, host) for host in table.hosts]
    if hosts != list(table.hosts):
        table = table.with_hosts(hosts)
    for service in table.services:
        renamed = renames.get(SERVICE_KEY + service.id)
        if renamed and renamed != service.instance:
            table = table.with_service_instance(service.id, renamed)
    return table


def device_id(state_dir: Path, identity: DeviceIdentity | None = None) -> str:
    """A stable id for this device: the board serial on real hardware, else one kept on disk.

    ``/etc/machine-id`` is not used here: it is shared by every agent in network namespaces
    of one machine and by every card cloned from one image, and ids must not collide.
    """
    identity = identity or read_identity()
    if identity.serial and identity.source in (str(CPUINFO), str(DEVICE_TREE_SERIAL)):
        return identity.serial
    path = state_dir / DEVICE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(8)
    tmp = path.with_name(f".{DEVICE_ID_FILE}.{os.getpid()}")
    tmp.write_text(value + "\n")
    os.replace(tmp, path)
    return value

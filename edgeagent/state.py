"""Runtime state kept in the state directory: config overrides and won names.

``runtime.json`` holds two things that must survive a restart:

* ``overrides``: a config-shaped mapping layered on top of the config files (services added
  with ``edgeagent services add`` live here, removals as ``{"id": X, "remove": true}``);
* ``renames``: names we lost a conflict for and the names we won instead
  (``{"host:edge-2e6d": "edge-2e6d-2"}``), so a renamed device keeps its new name.

Writes are atomic (temp file, fsync, rename, fsync of the directory) so a power cut leaves
either the old or the new file. A file that cannot be parsed is kept aside, never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "runtime.json"
FORMAT_VERSION = 1


@dataclass(slots=True)
class RuntimeState:
    overrides: dict[str, Any] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)

    # -- pure updates -------------------------------------------------------------------
    def services_override(self) -> list[dict[str, Any]]:
        mdns = self.overrides.get("mdns", {})
        services = mdns.get("services", []) if isinstance(mdns, dict) else []
        return [s for s in services if isinstance(s, dict)]

    def with_service(self, service: dict[str, Any]) -> RuntimeState:
        """A copy whose overrides add (or replace) ``service`` by id."""
        return self._with_services(
            [s for s in self.services_override() if s.get("id") != service["id"]] + [service]
        )

    def without_service(self, service_id: str) -> RuntimeState:
        """A copy whose overrides remove ``service_id`` (a tombstone hides a configured one)."""
        kept = [s for s in self.services_override() if s.get("id") != service_id]
        return self._with_services([*kept, {"id": service_id, "remove": True}])

    def with_rename(self, key: str, name: str | None) -> RuntimeState:
        renames = dict(self.renames)
        if name is None:
            renames.pop(key, None)
        else:
            renames[key] = name
        return RuntimeState(json.loads(json.dumps(self.overrides)), renames)

    def _with_services(self, services: list[dict[str, Any]]) -> RuntimeState:
        overrides = json.loads(json.dumps(self.overrides))
        mdns = overrides.setdefault("mdns", {})
        mdns["services"] = services
        return RuntimeState(overrides, dict(self.renames))

    def to_json(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "overrides": self.overrides, "renames": self.renames}


class StateStore:
    """Reads and atomically writes ``runtime.json`` in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATE_FILE

    def load(self) -> RuntimeState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return RuntimeState()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            overrides = data.get("overrides", {})
            renames = data.get("renames", {})
            if not isinstance(overrides, dict) or not isinstance(renames, dict):
                raise ValueError("'overrides' and 'renames' must be objects")
            return RuntimeState(overrides, {str(k): str(v) for k, v in renames.items()})
        except ValueError as exc:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error("runtime state %s is unreadable (%s); kept it as %s", self.path, exc, aside)
            return RuntimeState()

    def save(self, state: RuntimeState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        data = json.dumps(state.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

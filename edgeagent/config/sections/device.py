"""The ``device:`` section: the device's identity on the network (its host name).

With no ``device.hostname``, the name derived from the board identity is used
(``BuildContext.default_hostname``, read only then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeagent.config.located import FieldReader, Node
from edgeagent.config.scalars import parse_hostname
from edgeagent.config.sections import BuildContext, Section


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    hostname: str


def _build_device(node: Node | None, path: str, ctx: BuildContext) -> DeviceConfig:
    reader = FieldReader(node, path, ctx.issues)
    hostname = reader.get("hostname", parse_hostname, None)
    reader.finish()
    return DeviceConfig(hostname=hostname or ctx.default_hostname())


def _render_device(device: DeviceConfig) -> dict[str, Any]:
    return {"hostname": device.hostname}


SECTION: Section[DeviceConfig] = Section("device", _build_device, _render_device)

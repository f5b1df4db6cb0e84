"""Typed, frozen configuration: what the validator produces and every component receives.

``Config`` holds one typed field per top-level section, named by the section's key and in
build order (``registry.SECTIONS``). Each section's model lives in its module under
``sections/`` and is re-exported here, so components import their config from one place.
The YAML contract (see README and firmware-config/) maps one to one onto these classes.
Durations are seconds (floats); the loader accepts ``1s``, ``500ms``, ``2m`` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeagent.config.grants import Grants as Grants
from edgeagent.config.sections.capabilities import CapabilitiesConfig as CapabilitiesConfig
from edgeagent.config.sections.device import DeviceConfig as DeviceConfig
from edgeagent.config.sections.dns_bridge import DnsBridgeConfig as DnsBridgeConfig
from edgeagent.config.sections.journal import JournalConfig as JournalConfig
from edgeagent.config.sections.log_level import DEFAULT_LOG_LEVEL as DEFAULT_LOG_LEVEL
from edgeagent.config.sections.mdns import InterfacesConfig as InterfacesConfig
from edgeagent.config.sections.mdns import MdnsConfig as MdnsConfig
from edgeagent.config.sections.mdns import ServiceConfig as ServiceConfig
from edgeagent.config.sections.mesh import BUILTIN_STRATEGIES as BUILTIN_STRATEGIES
from edgeagent.config.sections.mesh import (
    DISCOVERY_ENTRY_POINT_GROUP as DISCOVERY_ENTRY_POINT_GROUP,
)
from edgeagent.config.sections.mesh import ClusterConfig as ClusterConfig
from edgeagent.config.sections.mesh import MeshConfig as MeshConfig
from edgeagent.config.sections.principals import DEFAULT_PRINCIPALS as DEFAULT_PRINCIPALS
from edgeagent.config.sections.reactors import DEFAULT_REACTORS as DEFAULT_REACTORS
from edgeagent.config.sections.reactors import OVERFLOW_POLICIES as OVERFLOW_POLICIES
from edgeagent.config.sections.reactors import Overflow as Overflow
from edgeagent.config.sections.reactors import ReactorConfig as ReactorConfig
from edgeagent.config.sections.sensors import DEFAULT_SENSORS as DEFAULT_SENSORS
from edgeagent.config.sections.sensors import SensorConfig as SensorConfig


@dataclass(frozen=True, slots=True)
class Paths:
    config_file: str
    state_dir: str
    runtime_dir: str


@dataclass(frozen=True, slots=True)
class Config:
    device: DeviceConfig
    mdns: MdnsConfig
    dns_bridge: DnsBridgeConfig
    log_level: str = DEFAULT_LOG_LEVEL
    mesh: MeshConfig = field(default_factory=MeshConfig)
    capabilities: CapabilitiesConfig = field(default_factory=CapabilitiesConfig)
    reactors: tuple[ReactorConfig, ...] = DEFAULT_REACTORS
    principals: Grants = DEFAULT_PRINCIPALS  # after reactors: the builder checks reactor:<id>
    journal: JournalConfig = field(default_factory=JournalConfig)
    sensors: tuple[SensorConfig, ...] = DEFAULT_SENSORS

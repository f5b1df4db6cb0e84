"""Typed, frozen configuration: what the validator produces and every component receives.

The YAML contract (see README and firmware-config/) maps one to one onto these classes.
Durations are seconds (floats); the loader accepts ``1s``, ``500ms``, ``2m`` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    hostname: str


@dataclass(frozen=True, slots=True)
class InterfacesConfig:
    """Which interfaces mDNS runs on: fnmatch patterns; an empty ``include`` means all."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ("lo", "docker*", "veth*", "ppp*", "wwan*")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One DNS-SD service. ``type`` is the full ``_name._proto`` form."""

    id: str
    type: str
    port: int
    txt: tuple[tuple[str, str], ...] = ()
    priority: int = 0
    weight: int = 0
    instance_name: str | None = None  # None: mdns.instance_name


@dataclass(frozen=True, slots=True)
class MdnsConfig:
    hosts: tuple[str, ...]  # resolved: "hostname" already replaced by device.hostname
    instance_name: str
    ttl: int = 120
    interfaces: InterfacesConfig = field(default_factory=InterfacesConfig)
    services: tuple[ServiceConfig, ...] = ()
    advertise_agent: bool = True  # the agent's own _edgeagent._tcp service
    agent_port: int = 4370
    cache_size: int = 1000
    cache_max_ttl: int = 4500  # 75 minutes, as MdnsLite clamps
    query_timeout: float = 0.5  # a live mDNS query gives up after this long


@dataclass(frozen=True, slots=True)
class DnsBridgeConfig:
    enabled: bool = False
    address: str = "127.0.0.53"
    port: int = 53
    recursive: bool = False
    upstreams: tuple[str, ...] = ()
    query_timeout: float = 0.4  # live mDNS lookups made on behalf of a client
    upstream_timeout: float = 2.0
    udp_payload_size: int = 1232  # our EDNS(0) advertised size (DNS flag day 2020)


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
    log_level: str = "info"

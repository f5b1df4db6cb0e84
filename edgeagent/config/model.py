"""Typed, frozen configuration: what the validator produces and every component receives.

The YAML contract (see README and firmware-config/) maps one to one onto these classes.
Durations are seconds (floats); the loader accepts ``1s``, ``500ms``, ``2m`` as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


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


#: The discovery strategies built into edgeagent; others come from this entry point group.
BUILTIN_STRATEGIES = ("mdns", "static", "dns")
DISCOVERY_ENTRY_POINT_GROUP = "edgeagent.discovery"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One mesh cluster: how members are found, the key they prove, SWIM timings, what we offer.

    ``key`` is the 32-byte cluster key (None: observe-only: peers are listed as seen, nothing is
    sent or accepted). Timing defaults follow memberlist's LAN profile
    (``DefaultLANConfig``); ``dns_interval`` follows libcluster's DNS poll.
    """

    name: str = "edgeagent"
    key: bytes | None = None
    strategy: str = "mdns"  # a BUILTIN_STRATEGIES name or an installed entry point name
    port: int = 4370  # the UDP peer link port
    peers: tuple[str, ...] = ()  # strategy static: "host:port" / "[v6]:port"
    # Twice memberlist's LAN probing rate: device LANs are small and answer in milliseconds,
    # and the pair halves the time to a "dead" verdict (bench/mesh.py) at ~5 packets/s/device.
    probe_interval: float = 0.5
    probe_timeout: float = 0.25
    indirect_checks: int = 3
    suspicion_mult: int = 4
    gossip_interval: float = 0.2
    gossip_fanout: int = 3
    push_pull_interval: float = 30.0
    reap_after: float = 3600.0
    suspicion_max_mult: int = 6  # a lone suspicion waits this many times the minimum
    retransmit_mult: int = 4  # each update is gossiped this many times log10(N+1)
    max_local_health: int = 8  # Lifeguard: probing slows to at most this many times
    rejoin_interval: float = 5.0  # first retry to reach a dead member, doubling ...
    rejoin_max_interval: float = 30.0  # ... up to this
    join_defer: float = 2.0  # wait this (to 2x) for gossip to introduce a discovered device
    dns_name: str | None = None  # strategy dns: an SRV name, or an A/AAAA name + ``port``
    dns_interval: float = 5.0
    interfaces: InterfacesConfig = field(default_factory=InterfacesConfig)
    offers: tuple[str, ...] = ()  # capabilities served here, e.g. "sensor:temperature"
    roles: tuple[str, ...] = ()  # singleton roles this device may hold, e.g. "mqtt-gateway"

    @property
    def observe_only(self) -> bool:
        """No key: discovered devices are shown as seen, never made members."""
        return self.key is None


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The ``mesh:`` section; with no ``clusters`` key, one observe-only mDNS cluster."""

    enabled: bool = True
    clusters: tuple[ClusterConfig, ...] = (ClusterConfig(),)


#: A mapping written as ordered (key, values) pairs, so the config stays frozen and hashable.
Grants = tuple[tuple[str, tuple[str, ...]], ...]

#: What a full mailbox does with one more intent (docs/reactors.md, "Runtime").
OVERFLOW_POLICIES = ("block", "drop-oldest", "reject")
Overflow = Literal["block", "drop-oldest", "reject"]


@dataclass(frozen=True, slots=True)
class CapabilitiesConfig:
    """The ``capabilities:`` section: ``implies`` maps a concrete capability to what it implies.

    Feed it with ``principals`` to ``reactors.capabilities.Policy.build(dict(implies),
    dict(principals))``.
    """

    implies: Grants = (("admin", ("counter:*",)),)


#: The built-in grants: the local CLI is an admin (its control socket is owner-only).
DEFAULT_PRINCIPALS: Grants = (("cli", ("admin",)),)


@dataclass(frozen=True, slots=True)
class ReactorConfig:
    """One item of ``reactors:``.

    ``requires``: intent name (``<id>.<verb>`` or a ``subscribe`` key) -> the concrete
    capabilities its sender must hold. ``options`` is type-specific plain data,
    validated by the runtime against the type's options schema. ``subscribe``: another intent
    name -> the verb of this reactor that takes it.
    """

    id: str
    type: str
    requires: Grants = ()
    # Typed read-only; a plain dict underneath so the config can still be deep-copied.
    options: Mapping[str, Any] = field(default_factory=dict)
    subscribe: tuple[tuple[str, str], ...] = ()
    mailbox: int = 1024
    overflow: Overflow = "block"
    snapshot_every: int = 1000
    enabled: bool = True  # deployed and started at boot


#: The built-in wiring: the counter demo, so a fresh device answers `intent send counter.increment`.
DEFAULT_REACTORS: tuple[ReactorConfig, ...] = (
    ReactorConfig(
        id="counter",
        type="counter",
        requires=(("counter.increment", ("counter:write",)), ("counter.reset", ("counter:reset",))),
    ),
)


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """The ``journal:`` section. ``path`` None: ``<state-dir>/journal.sqlite3``."""

    path: str | None = None  # a relative path is taken from the state directory
    max_bytes: int = 256 * 1024 * 1024  # compaction bound
    max_batch: int = 4096  # group commit: at most this many intents per COMMIT
    audit_keep: int = 10_000  # newest audit rows kept by compaction


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
    mesh: MeshConfig = field(default_factory=MeshConfig)
    capabilities: CapabilitiesConfig = field(default_factory=CapabilitiesConfig)
    reactors: tuple[ReactorConfig, ...] = DEFAULT_REACTORS
    principals: Grants = DEFAULT_PRINCIPALS  # after reactors: the builder checks reactor:<id>
    journal: JournalConfig = field(default_factory=JournalConfig)

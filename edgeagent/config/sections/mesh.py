"""The ``mesh:`` section: the clusters this device joins, how it finds peers, SWIM timings.

Each cluster item is checked on its own (names, key, strategy, peers, timings) and against
the others (names and ports unique, the advertised TXT string within 255 bytes); a cluster
port must not be the mDNS port or an enabled DNS bridge's (so it ``needs`` ``dns_bridge``).
A discovery strategy that is not built in must be an installed ``edgeagent.discovery`` entry
point (``BuildContext.discovery_plugins``, by default :func:`installed_discovery_plugins`,
read only for such a name).
"""

from __future__ import annotations

import base64
import importlib.metadata
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edgeagent.config.located import (
    FieldReader,
    Issues,
    Node,
    Parser,
    Where,
    default_of,
    describe,
    did_you_mean,
    join_path,
)
from edgeagent.config.scalars import PORT, integer, list_of, parse_bool, parse_duration, parse_text
from edgeagent.config.sections import BuildContext, Section, dns_bridge
from edgeagent.config.sections.mdns import InterfacesConfig, build_interfaces, render_interfaces
from edgeagent.errors import InvalidKeyError
from edgeagent.mesh.auth import parse_key
from edgeagent.net.address import dns_name_problem, format_peer, parse_peer_address

T = TypeVar("T")


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


def _build_mesh(node: Node | None, path: str, ctx: BuildContext) -> MeshConfig:
    reader = FieldReader(node, path, ctx.issues)
    enabled = reader.get("enabled", parse_bool, default_of(MeshConfig, "enabled"))
    clusters_node = reader.node("clusters")
    reader.finish()
    if clusters_node is None:
        return MeshConfig(enabled=enabled)
    clusters_path = join_path(path, "clusters")
    if not isinstance(clusters_node.value, tuple):
        ctx.issues.add(
            clusters_node.where,
            clusters_path,
            f"expected a list of clusters, got {describe(clusters_node)}",
        )
        return MeshConfig(enabled=enabled)
    clusters: list[ClusterConfig] = []
    names: dict[str, Where] = {}
    ports: dict[int, str] = {}
    for index, item in enumerate(clusters_node.value):
        item_at = f"{clusters_path}[{index}]"
        cluster = _cluster(item, item_at, ctx)
        if cluster is None:
            continue
        if cluster.name in names:
            ctx.issues.add(
                item.where,
                join_path(item_at, "name"),
                f"duplicate cluster name '{cluster.name}' (first at {names[cluster.name]})",
            )
        elif cluster.port in ports:
            ctx.issues.add(
                item.where,
                join_path(item_at, "port"),
                f"port {cluster.port} is already used by cluster '{ports[cluster.port]}'; "
                "each cluster needs its own port",
            )
        names.setdefault(cluster.name, item.where)
        ports.setdefault(cluster.port, cluster.name)
        clusters.append(cluster)
    # The agent's TXT record carries "clusters=<name>:<port>,..." in one string (RFC 6763 §6.1).
    advertised = "clusters=" + ",".join(f"{c.name}:{c.port}" for c in clusters)
    if len(advertised.encode()) > 255:
        ctx.issues.add(
            clusters_node.where,
            clusters_path,
            f"the cluster names and ports take {len(advertised.encode())} bytes in the mDNS TXT "
            "string 'clusters=...'; at most 255 (use fewer or shorter names)",
        )
    return MeshConfig(enabled=enabled, clusters=tuple(clusters))


def installed_discovery_plugins() -> list[str]:
    """Names of the installed ``edgeagent.discovery`` entry points (package metadata)."""
    return sorted(
        {ep.name for ep in importlib.metadata.entry_points(group=DISCOVERY_ENTRY_POINT_GROUP)}
    )


def parse_strategy(plugins: Callable[[], Sequence[str]]) -> Parser[str]:
    """A built-in strategy (case-insensitive) or the exact name of an installed entry point."""

    def parse(node: Node, path: str, issues: Issues) -> str | None:
        text = parse_text(node, path, issues)
        if text is None:
            return None
        if text.lower() in BUILTIN_STRATEGIES:
            return text.lower()
        installed = list(plugins())
        if text in installed:
            return text
        known = [*BUILTIN_STRATEGIES, *installed]
        issues.add(
            node.where,
            path,
            f"unknown discovery strategy {text!r}: expected {', '.join(BUILTIN_STRATEGIES)} or "
            f"an installed '{DISCOVERY_ENTRY_POINT_GROUP}' entry point"
            + (f" ({', '.join(installed)})" if installed else " (none installed)")
            + did_you_mean(text, known),
        )
        return None

    return parse


def parse_cluster_name(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _CLUSTER_NAME.match(text):
        return text
    suggestion = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    hint = (
        f" (did you mean '{suggestion}'?)" if suggestion and _CLUSTER_NAME.match(suggestion) else ""
    )
    issues.add(
        node.where,
        path,
        f"cluster name {text!r}: 1-63 lowercase letters, digits, '-' or '_', "
        f"starting with a letter or digit{hint}",
    )
    return None


def peer_parser(default_port: int) -> Parser[str]:
    """``host:port``, ``[v6]:port``, or a bare host (the cluster port); stored as host:port."""

    def parse(node: Node, path: str, issues: Issues) -> str | None:
        if not isinstance(node.value, str):
            issues.add(
                node.where, path, f"expected 'host:port' or '[v6]:port', got {describe(node)}"
            )
            return None
        try:
            host, port = parse_peer_address(node.value.strip(), default_port)
        except ValueError as exc:
            issues.add(node.where, path, f"bad peer {node.value!r}: {exc}")
            return None
        return format_peer(host, port)

    return parse


def parse_dns_name(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    problem = dns_name_problem(text.strip())
    if problem is not None:
        issues.add(node.where, path, f"{text!r} is not a DNS name: {problem}")
        return None
    return text.strip().lower().removesuffix(".")


def parse_capability(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if not _CAPABILITY.match(text):
        issues.add(
            node.where,
            path,
            f"capability {text!r}: 1-100 characters of letters, digits and . _ : / @ + -, "
            "e.g. 'sensor:temperature'",
        )
        return None
    return text


def parse_role_name(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if not _ROLE.match(text):
        issues.add(
            node.where,
            path,
            f"role {text!r}: 1-63 lowercase letters, digits and . _ : -, e.g. 'mqtt-gateway'",
        )
        return None
    return text


def _render_mesh(mesh: MeshConfig) -> dict[str, Any]:
    return {"enabled": mesh.enabled, "clusters": [_render_cluster(c) for c in mesh.clusters]}


def _render_cluster(cluster: ClusterConfig) -> dict[str, Any]:
    # Items are labelled by index in key paths (they have no ``id``), as the loader's
    # secret paths are: ``mesh.clusters[0].key``.
    return {
        "name": cluster.name,
        "key": base64.b64encode(cluster.key).decode() if cluster.key is not None else None,
        "strategy": cluster.strategy,
        "port": cluster.port,
        "peers": list(cluster.peers),
        "probe_interval": cluster.probe_interval,
        "probe_timeout": cluster.probe_timeout,
        "indirect_checks": cluster.indirect_checks,
        "suspicion_mult": cluster.suspicion_mult,
        "gossip_interval": cluster.gossip_interval,
        "gossip_fanout": cluster.gossip_fanout,
        "push_pull_interval": cluster.push_pull_interval,
        "reap_after": cluster.reap_after,
        "suspicion_max_mult": cluster.suspicion_max_mult,
        "retransmit_mult": cluster.retransmit_mult,
        "max_local_health": cluster.max_local_health,
        "rejoin_interval": cluster.rejoin_interval,
        "rejoin_max_interval": cluster.rejoin_max_interval,
        "join_defer": cluster.join_defer,
        "dns_name": cluster.dns_name,
        "dns_interval": cluster.dns_interval,
        "interfaces": render_interfaces(cluster.interfaces),
        "offers": list(cluster.offers),
        "roles": list(cluster.roles),
    }


SECTION: Section[MeshConfig] = Section(
    "mesh", _build_mesh, _render_mesh, needs=(dns_bridge.SECTION.key,)
)


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
def _cluster(item: Node, path: str, ctx: BuildContext) -> ClusterConfig | None:
    """One cluster item, or None when it is invalid (already reported)."""
    if not isinstance(item.value, dict):
        ctx.issues.add(item.where, path, f"expected a cluster mapping, got {describe(item)}")
        return None
    issues = ctx.issues
    before = len(issues)
    reader = FieldReader(item, path, issues)

    def field(key: str, parse: Parser[T]) -> T:
        value: T = reader.get(key, parse, default_of(ClusterConfig, key))
        return value

    name = field("name", parse_cluster_name)
    key = field("key", _parse_cluster_key_node)
    strategy_node = reader.node("strategy")
    strategy = default_of(ClusterConfig, "strategy")
    if strategy_node is not None:
        strategy = (
            parse_strategy(ctx.discovery_plugins or installed_discovery_plugins)(
                strategy_node, join_path(path, "strategy"), issues
            )
            or strategy
        )
    port = field("port", PORT)
    peers_node = reader.node("peers")
    peers: tuple[str, ...] = ()
    if peers_node is not None:
        peers = list_of(peer_parser(port))(peers_node, join_path(path, "peers"), issues) or ()
    probe_interval = field("probe_interval", parse_duration)
    probe_timeout = field("probe_timeout", parse_duration)
    dns_name_node = reader.node("dns_name")
    dns_name = field("dns_name", parse_dns_name)
    interfaces = build_interfaces(reader.node("interfaces"), join_path(path, "interfaces"), ctx)
    cluster = ClusterConfig(
        name=name,
        key=key,
        strategy=strategy,
        port=port,
        peers=tuple(dict.fromkeys(peers)),
        probe_interval=probe_interval,
        probe_timeout=probe_timeout,
        indirect_checks=field("indirect_checks", integer(0, 16)),
        suspicion_mult=field("suspicion_mult", integer(1, 100)),
        gossip_interval=field("gossip_interval", parse_duration),
        gossip_fanout=field("gossip_fanout", integer(1, 64)),
        push_pull_interval=field("push_pull_interval", parse_duration),
        reap_after=field("reap_after", parse_duration),
        suspicion_max_mult=field("suspicion_max_mult", integer(1, 100)),
        retransmit_mult=field("retransmit_mult", integer(1, 100)),
        max_local_health=field("max_local_health", integer(1, 64)),
        rejoin_interval=field("rejoin_interval", parse_duration),
        rejoin_max_interval=field("rejoin_max_interval", parse_duration),
        join_defer=field("join_defer", parse_duration),
        dns_name=dns_name,
        dns_interval=field("dns_interval", parse_duration),
        interfaces=interfaces,
        offers=tuple(dict.fromkeys(field("offers", list_of(parse_capability)))),
        roles=tuple(dict.fromkeys(field("roles", list_of(parse_role_name)))),
    )
    reader.finish()
    # Cross-field rules, only on fields that parsed (a bad value was already reported).
    if probe_timeout >= probe_interval and reader.node("probe_timeout") is not None:
        timeout_node = reader.node("probe_timeout")
        assert timeout_node is not None
        issues.add(
            timeout_node.where,
            join_path(path, "probe_timeout"),
            f"must be shorter than probe_interval ({probe_interval:g}s): an ack that arrives "
            "after the next probe is useless",
        )
    elif probe_timeout >= probe_interval:
        issues.add(
            item.where,
            join_path(path, "probe_interval"),
            f"must be longer than probe_timeout ({probe_timeout:g}s)",
        )
    if strategy == "static" and not peers and len(issues) == before:
        issues.add(
            item.where,
            join_path(path, "peers"),
            "strategy static needs peers, e.g. peers: ['10.0.0.7:4370']",
        )
    if strategy in ("mdns", "dns") and peers_node is not None and peers_node.value:
        issues.add(
            peers_node.where,
            join_path(path, "peers"),
            f"peers are used only by strategy static, not {strategy}; "
            "remove them or set strategy: static",
        )
    if strategy == "dns" and dns_name is None and dns_name_node is None:
        issues.add(
            item.where,
            join_path(path, "dns_name"),
            "strategy dns needs dns_name: an SRV name (_edgeagent._udp.example.com) "
            "or a host name with A/AAAA records",
        )
    if strategy in ("mdns", "static") and dns_name_node is not None:
        issues.add(
            dns_name_node.where,
            join_path(path, "dns_name"),
            f"dns_name is used only by strategy dns, not {strategy}",
        )
    _check_port_conflicts(item, path, port, ctx)
    return cluster if len(issues) == before else None


def _check_port_conflicts(item: Node, path: str, port: int, ctx: BuildContext) -> None:
    port_node = item.child("port")
    where = port_node.where if port_node is not None else item.where
    if port == 5353:
        ctx.issues.add(where, join_path(path, "port"), "5353 is the mDNS port; pick another")
    bridge = ctx.value(dns_bridge.SECTION)
    if bridge.enabled and bridge.port == port:
        ctx.issues.add(
            where,
            join_path(path, "port"),
            f"port {port} is dns_bridge.port; the bridge and the mesh both use UDP",
        )


_CLUSTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _parse_cluster_key_node(node: Node, path: str, issues: Issues) -> bytes | None:
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected a base64 key, got {describe(node)}")
        return None
    try:
        return parse_key(node.value)  # the message never repeats the key
    except InvalidKeyError as exc:
        issues.add(node.where, path, str(exc))
        return None


_CAPABILITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$")
_ROLE = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,62}$")

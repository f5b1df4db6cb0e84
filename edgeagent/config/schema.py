"""The configuration schema: located value trees, layer merging and validation into ``Config``.

Theory of operation
-------------------
The loader turns every layer (a YAML file, or the runtime overrides dict) into a tree of
:class:`Node` values. A node remembers *where* it was written (file and line), so every problem
found later can name its origin even after layers were merged. This module does no I/O: it
merges trees (:func:`merge`) and validates the merged tree into the frozen dataclasses of
``model`` (:func:`build_config`), collecting every issue before raising one ``ConfigError``.

Validation is table-driven. :data:`SECTIONS` maps each top-level key to a builder; a builder
reads its mapping through :class:`FieldReader`, which reports unknown keys (with a
did-you-mean) for every key the builder did not ask for. Adding a section (``mesh:``,
``reactors:``, ``mqtt:``) is: a dataclass in ``model``, a field on ``Config``, a builder here,
one line in :data:`SECTIONS` (and, for lists merged by ``id``, one entry in
:data:`ID_MERGED_LISTS`).

Merge rule (lowest layer first: built-in defaults <- base file <- device overlay <- runtime
overrides): mappings deep-merge; scalars and lists replace; an empty value (``key:``/``~``)
counts as "not set" and never overrides; lists named in :data:`ID_MERGED_LISTS` merge by the
``id`` of their items: an item replaces the lower item with the same id (in its place), new ids
are appended, and ``{id: X, remove: true}`` deletes X. Removal items stay in the merged tree
(so merging is associative) and are skipped by the validator.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeagent.config.model import (
    BUILTIN_STRATEGIES,
    DEFAULT_PRINCIPALS,
    DEFAULT_REACTORS,
    DISCOVERY_ENTRY_POINT_GROUP,
    OVERFLOW_POLICIES,
    CapabilitiesConfig,
    ClusterConfig,
    Config,
    DeviceConfig,
    DnsBridgeConfig,
    Grants,
    InterfacesConfig,
    JournalConfig,
    MdnsConfig,
    MeshConfig,
    ReactorConfig,
    ServiceConfig,
)
from edgeagent.errors import ConfigError, InvalidKeyError
from edgeagent.mesh.auth import parse_key
from edgeagent.net.address import (
    dns_name_problem,
    format_peer,
    format_upstream,
    parse_peer_address,
    parse_upstream_address,
)
from edgeagent.reactors.capabilities import capability_problem, principal_problem

T = TypeVar("T")

Scalar = None | bool | int | float | str

#: Paths of lists whose items are mappings merged by their ``id`` (see the module docstring).
ID_MERGED_LISTS: frozenset[tuple[str, ...]] = frozenset({("mdns", "services"), ("reactors",)})

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
HOSTNAME_TOKEN = "hostname"  # noqa: S105 - not a password; in mdns.hosts: "the device hostname"


# --------------------------------------------------------------------------------------------
# Located values
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Where:
    """The origin of a value: a file (or a named source such as "runtime overrides") and line."""

    source: str
    line: int | None = None  # 1-based; None for sources without lines

    def __str__(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One value of a config layer and where it was written.

    ``value`` is a scalar, a tuple of nodes (a YAML sequence) or a dict of nodes (a mapping;
    not mutated after construction). ``key_where`` is where the key of a mapping value is
    written; ``secret`` marks values that came from ``!secret``.
    """

    value: Scalar | tuple[Node, ...] | dict[str, Node]
    where: Where
    key_where: Where | None = None
    secret: bool = False

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, tuple)

    def child(self, key: str) -> Node | None:
        return self.value.get(key) if isinstance(self.value, dict) else None


class Issues:
    """Collects problems; reports them as ``FILE:LINE: key.path: message`` lines.

    Lines come out sorted by source (in the order sources first appear) and line number, so
    a user reads them top to bottom whatever order the validator found them in.
    """

    def __init__(self) -> None:
        self._found: list[tuple[Where | None, str]] = []

    @property
    def items(self) -> list[str]:
        order: dict[str | None, int] = {}
        for where, _ in self._found:
            order.setdefault(where.source if where else None, len(order))

        def key(entry: tuple[Where | None, str]) -> tuple[int, int]:
            where = entry[0]
            return (order[where.source if where else None], (where.line or 0) if where else 0)

        return [text for _, text in sorted(self._found, key=key)]

    def add(self, where: Where | None, path: str, message: str) -> None:
        location = f"{where}: " if where is not None else ""
        self._found.append((where, f"{location}{path or '(top level)'}: {message}"))

    def extend(self, other: Iterable[str]) -> None:
        """Add already formatted lines (from another ``ConfigError``), kept after the others."""
        self._found.extend((None, text) for text in other)

    def raise_if_any(self) -> None:
        if self._found:
            raise ConfigError(self.items)

    def __len__(self) -> int:
        return len(self._found)

    def __bool__(self) -> bool:
        return bool(self._found)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def item_path(path: str, index: int, item: Node) -> str:
    """``services[ssh]`` for an item with a string ``id``, else ``hosts[2]``."""
    ident = item.child("id")
    if ident is not None and isinstance(ident.value, str) and ident.value:
        return f"{path}[{ident.value}]"
    return f"{path}[{index}]"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def from_plain(value: Any, where: Where, issues: Issues, path: str = "") -> Node:
    """A node tree for an already-parsed value (the runtime overrides dict)."""
    if isinstance(value, Mapping):
        entries: dict[str, Node] = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                issues.add(where, path, f"keys must be strings, got {key!r}")
                continue
            child = from_plain(sub, where, issues, join_path(path, key))
            entries[key] = dataclasses.replace(child, key_where=where)
        return Node(entries, where)
    if isinstance(value, list | tuple):
        return Node(
            tuple(from_plain(v, where, issues, f"{path}[{i}]") for i, v in enumerate(value)), where
        )
    if value is None or isinstance(value, bool | int | float | str):
        return Node(value, where)
    issues.add(where, path, f"unsupported value {value!r}")
    return Node(None, where)


def to_plain(node: Node | None) -> Any:
    """The plain (JSON-able) value of a node tree."""
    if node is None:
        return None
    if isinstance(node.value, dict):
        return {key: to_plain(child) for key, child in node.value.items()}
    if isinstance(node.value, tuple):
        return [to_plain(child) for child in node.value]
    return node.value


def secret_paths(node: Node | None, path: str = "") -> frozenset[str]:
    """Key paths (as in error messages) of every value that came from ``!secret``."""
    if node is None:
        return frozenset()
    if node.secret:
        return frozenset({path})
    found: set[str] = set()
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            found |= secret_paths(child, join_path(path, key))
    elif isinstance(node.value, tuple):
        for index, child in enumerate(node.value):
            found |= secret_paths(child, item_path(path, index, child))
    return frozenset(found)


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------
def merge(base: Node | None, overlay: Node | None, path: tuple[str, ...] = ()) -> Node | None:
    """``overlay`` layered on ``base`` by the merge rule of the module docstring."""
    if overlay is None or overlay.value is None:
        return base
    if base is None or base.value is None:
        return overlay
    if isinstance(base.value, dict) and isinstance(overlay.value, dict):
        entries = dict(base.value)
        for key, child in overlay.value.items():
            merged = merge(entries.get(key), child, (*path, key))
            if merged is not None:
                entries[key] = dataclasses.replace(merged, key_where=child.key_where)
        return Node(entries, overlay.where, overlay.key_where)
    if (
        path in ID_MERGED_LISTS
        and isinstance(base.value, tuple)
        and isinstance(overlay.value, tuple)
    ):
        items: dict[object, Node] = {_merge_key(item): item for item in base.value}
        for item in overlay.value:
            items[_merge_key(item)] = item  # dict keeps the position of a replaced key
        return Node(tuple(items.values()), overlay.where, overlay.key_where)
    return overlay


def is_removal(item: Node) -> bool:
    """Whether a list item is a ``{id: X, remove: true}`` tombstone."""
    flag = item.child("remove")
    return flag is not None and flag.value is True


def check_layer(
    below: Node | None, layer: Node | None, issues: Issues, *, removals_must_match: bool = True
) -> None:
    """Checks on one layer before it is merged onto the layers ``below``.

    Within a layer, ids of an id-merged list must be unique (merging would silently keep the
    last). With ``removals_must_match``, a tombstone must delete something below: a typo in
    a removal id would otherwise silently keep the item.
    """
    for list_path in sorted(ID_MERGED_LISTS):
        layer_items = _at(layer, list_path)
        if layer_items is None or not isinstance(layer_items.value, tuple):
            continue
        dotted = ".".join(list_path)
        first_seen: dict[str, Where] = {}
        for index, item in enumerate(layer_items.value):
            ident = _ident(item)
            if ident is None:
                continue
            if ident in first_seen:
                issues.add(
                    item.where,
                    item_path(dotted, index, item),
                    f"duplicate id '{ident}' (first at {first_seen[ident]})",
                )
            else:
                first_seen[ident] = item.where
        if not removals_must_match:
            continue
        existing = _at(below, list_path)
        live_ids = [
            ident
            for item in (existing.value if existing and isinstance(existing.value, tuple) else ())
            if not is_removal(item) and (ident := _ident(item)) is not None
        ]
        for index, item in enumerate(layer_items.value):
            ident = _ident(item)
            if is_removal(item) and ident is not None and ident not in live_ids:
                issues.add(
                    item.where,
                    item_path(dotted, index, item),
                    f"remove: no item with id '{ident}' in the layers below"
                    + did_you_mean(ident, live_ids),
                )


def _at(node: Node | None, path: tuple[str, ...]) -> Node | None:
    for key in path:
        if node is None:
            return None
        node = node.child(key)
    return node


def _ident(item: Node) -> str | None:
    ident = item.child("id")
    return ident.value if ident is not None and isinstance(ident.value, str) else None


def _merge_key(item: Node) -> object:
    ident = _ident(item)
    return ("id", ident) if ident is not None else ("node", id(item))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
Parser = Callable[[Node, str, Issues], T | None]
"""Parses one value: returns it, or reports an issue and returns None (the default is used)."""


class FieldReader:
    """Reads the fields of one mapping; :meth:`finish` reports every key nobody asked for."""

    def __init__(self, node: Node | None, path: str, issues: Issues) -> None:
        self.path = path
        self.issues = issues
        self._asked: list[str] = []
        self._entries: dict[str, Node] = {}
        if node is not None and node.value is not None:
            if isinstance(node.value, dict):
                self._entries = node.value
            else:
                issues.add(node.where, path, f"expected a mapping, got {describe(node)}")

    def node(self, key: str) -> Node | None:
        """The raw node of ``key``, or None when absent or empty."""
        self._asked.append(key)
        child = self._entries.get(key)
        return None if child is None or child.value is None else child

    def get(self, key: str, parse: Parser[T], default: T) -> T:
        child = self.node(key)
        if child is None:
            return default
        parsed = parse(child, join_path(self.path, key), self.issues)
        return default if parsed is None else parsed

    def finish(self) -> None:
        for key, child in self._entries.items():
            if key not in self._asked:
                self.issues.add(
                    child.key_where or child.where,
                    join_path(self.path, key),
                    "unknown key" + did_you_mean(key, self._asked),
                )


@dataclass(slots=True)
class BuildContext:
    """What section builders share: the issues, the sections built so far, system facts."""

    issues: Issues
    default_hostname: Callable[[], str]
    system_nameservers: Callable[[], Sequence[str]]
    built: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Names of the installed ``edgeagent.discovery`` entry points; read only for a strategy
    # that is not built in.
    discovery_plugins: Callable[[], Sequence[str]] = dataclasses.field(
        default_factory=lambda: installed_discovery_plugins
    )


SectionBuilder = Callable[[Node | None, str, BuildContext], Any]


def build_config(
    root: Node | None,
    *,
    default_hostname: Callable[[], str],
    system_nameservers: Callable[[], Sequence[str]] = tuple,
    issues: Issues | None = None,
) -> Config:
    """Validate a merged tree into ``Config``; raise ``ConfigError`` listing every issue.

    ``default_hostname`` is called only when ``device.hostname`` is not set;
    ``system_nameservers`` only when the bridge is recursive without explicit upstreams.
    ``issues`` may already hold problems found while reading the layers: they are raised
    together with the validation issues, sorted by file and line.
    """
    ctx = BuildContext(
        issues if issues is not None else Issues(), default_hostname, system_nameservers
    )
    reader = FieldReader(root, "", ctx.issues)
    for name, builder in SECTIONS.items():
        ctx.built[name] = builder(reader.node(name), name, ctx)
    reader.finish()
    ctx.issues.raise_if_any()
    return Config(**ctx.built)


def default_of(cls: type[Any], name: str) -> Any:
    """The dataclass default of ``cls.name``: the model is the one source of defaults."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


# -- section builders --------------------------------------------------------------------------
def _build_device(node: Node | None, path: str, ctx: BuildContext) -> DeviceConfig:
    reader = FieldReader(node, path, ctx.issues)
    hostname = reader.get("hostname", parse_hostname, None)
    reader.finish()
    return DeviceConfig(hostname=hostname or ctx.default_hostname())


def _build_mdns(node: Node | None, path: str, ctx: BuildContext) -> MdnsConfig:
    reader = FieldReader(node, path, ctx.issues)
    device: DeviceConfig = ctx.built["device"]
    hosts = _hosts(reader.node("hosts"), join_path(path, "hosts"), ctx.issues, device.hostname)
    instance_name = reader.get("instance_name", parse_instance_name, hosts[0])
    interfaces = _build_interfaces(reader.node("interfaces"), join_path(path, "interfaces"), ctx)
    services = _services(
        reader.node("services"), join_path(path, "services"), ctx.issues, instance_name
    )
    mdns = MdnsConfig(
        hosts=hosts,
        instance_name=instance_name,
        ttl=reader.get("ttl", integer(1, 86400), default_of(MdnsConfig, "ttl")),
        interfaces=interfaces,
        services=services,
        advertise_agent=reader.get(
            "advertise_agent", parse_bool, default_of(MdnsConfig, "advertise_agent")
        ),
        agent_port=reader.get("agent_port", PORT, default_of(MdnsConfig, "agent_port")),
        cache_size=reader.get(
            "cache_size", integer(1, 1_000_000), default_of(MdnsConfig, "cache_size")
        ),
        cache_max_ttl=reader.get(
            "cache_max_ttl", integer(1, 86400), default_of(MdnsConfig, "cache_max_ttl")
        ),
        query_timeout=reader.get(
            "query_timeout", parse_duration, default_of(MdnsConfig, "query_timeout")
        ),
    )
    reader.finish()
    return mdns


def _build_interfaces(node: Node | None, path: str, ctx: BuildContext) -> InterfacesConfig:
    reader = FieldReader(node, path, ctx.issues)
    patterns = list_of(parse_pattern)
    interfaces = InterfacesConfig(
        include=reader.get("include", patterns, default_of(InterfacesConfig, "include")),
        exclude=reader.get("exclude", patterns, default_of(InterfacesConfig, "exclude")),
    )
    reader.finish()
    return interfaces


def _build_dns_bridge(node: Node | None, path: str, ctx: BuildContext) -> DnsBridgeConfig:
    reader = FieldReader(node, path, ctx.issues)

    def field(key: str, parse: Parser[T]) -> T:
        value: T = reader.get(key, parse, default_of(DnsBridgeConfig, key))
        return value

    enabled = field("enabled", parse_bool)
    address = field("address", parse_ip)
    port = field("port", PORT)
    recursive = field("recursive", parse_bool)
    upstreams_node = reader.node("upstreams")
    upstreams: tuple[str, ...] = ()
    if upstreams_node is not None:
        upstreams = (
            list_of(parse_upstream)(upstreams_node, join_path(path, "upstreams"), ctx.issues) or ()
        )
        for index, upstream in enumerate(upstreams):
            if parse_upstream_address(upstream) == (ipaddress.ip_address(address), port):
                assert isinstance(upstreams_node.value, tuple)
                ctx.issues.add(
                    upstreams_node.value[index].where,
                    f"{path}.upstreams[{index}]",
                    f"'{upstream}' is the bridge's own address; it would query itself",
                )
    if recursive and not upstreams and not ctx.issues:
        upstreams = default_upstreams(ctx.system_nameservers(), address)
    bridge = DnsBridgeConfig(
        enabled=enabled,
        address=address,
        port=port,
        recursive=recursive,
        upstreams=upstreams,
        query_timeout=field("query_timeout", parse_duration),
        upstream_timeout=field("upstream_timeout", parse_duration),
        udp_payload_size=field("udp_payload_size", integer(512, 65535)),
    )
    reader.finish()
    return bridge


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
            parse_strategy(ctx.discovery_plugins)(
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
    interfaces = _build_interfaces(reader.node("interfaces"), join_path(path, "interfaces"), ctx)
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
    bridge = ctx.built.get("dns_bridge")
    if isinstance(bridge, DnsBridgeConfig) and bridge.enabled and bridge.port == port:
        ctx.issues.add(
            where,
            join_path(path, "port"),
            f"port {port} is dns_bridge.port; the bridge and the mesh both use UDP",
        )


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


_CAPABILITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$")
_ROLE = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,62}$")


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


def _build_log_level(node: Node | None, path: str, ctx: BuildContext) -> str:
    if node is None:
        level: str = default_of(Config, "log_level")
        return level
    return parse_log_level(node, path, ctx.issues) or default_of(Config, "log_level")


# -- reactors, capabilities, principals, journal ------------------------------------------------
def _build_capabilities(node: Node | None, path: str, ctx: BuildContext) -> CapabilitiesConfig:
    reader = FieldReader(node, path, ctx.issues)
    implies = reader.get(
        "implies",
        grants_parser(_implies_key_problem, "capability", "capabilities"),
        default_of(CapabilitiesConfig, "implies"),
    )
    reader.finish()
    return CapabilitiesConfig(implies=implies)


def _build_reactors(node: Node | None, path: str, ctx: BuildContext) -> tuple[ReactorConfig, ...]:
    # No layer has ``reactors``: the counter demo. Any layer's list replaces it as a whole.
    if node is None:
        return DEFAULT_REACTORS
    if not isinstance(node.value, tuple):
        ctx.issues.add(node.where, path, f"expected a list of reactors, got {describe(node)}")
        return ()
    reactors: list[ReactorConfig] = []
    first_seen: dict[str, Where] = {}
    for index, item in enumerate(node.value):
        at = item_path(path, index, item)
        reactor = _reactor(item, at, ctx.issues)
        if reactor is None:
            continue
        # Layers were checked one by one (check_layer); this catches a tree built another way.
        if reactor.id in first_seen:
            ctx.issues.add(
                item.where, at, f"duplicate id '{reactor.id}' (first at {first_seen[reactor.id]})"
            )
            continue
        first_seen[reactor.id] = item.where
        reactors.append(reactor)
    return tuple(reactors)


def _build_principals(node: Node | None, path: str, ctx: BuildContext) -> Grants:
    if node is None:
        return DEFAULT_PRINCIPALS
    principals = grants_parser(principal_problem, "principal", "grants")(node, path, ctx.issues)
    if principals is None:
        return DEFAULT_PRINCIPALS
    # ``reactor:<id>`` and ``schedule:<id>`` must name a configured reactor: a typo there
    # would silently grant nothing.
    ids = [reactor.id for reactor in ctx.built.get("reactors", ())]
    assert isinstance(node.value, dict)
    for name, _ in principals:
        kind, _, ident = name.partition(":")
        if kind in ("reactor", "schedule") and ident not in ids:
            child = node.value[name]
            ctx.issues.add(
                child.key_where or child.where,
                join_path(path, name),
                f"no reactor '{ident}' is configured"
                + did_you_mean(ident, ids).replace("'", f"'{kind}:", 1),
            )
    return principals


def _build_journal(node: Node | None, path: str, ctx: BuildContext) -> JournalConfig:
    reader = FieldReader(node, path, ctx.issues)

    def field(key: str, parse: Parser[T]) -> T:
        value: T = reader.get(key, parse, default_of(JournalConfig, key))
        return value

    journal = JournalConfig(
        path=field("path", parse_text),
        max_bytes=field("max_bytes", size_parser(1 << 20, 1 << 40)),
        max_batch=field("max_batch", integer(1, 1_000_000)),
        audit_keep=field("audit_keep", integer(0, 100_000_000)),
    )
    reader.finish()
    return journal


def _reactor(item: Node, path: str, issues: Issues) -> ReactorConfig | None:
    """One reactor item, or None for a removal or an invalid item (already reported)."""
    if not isinstance(item.value, dict):
        issues.add(item.where, path, f"expected a reactor mapping, got {describe(item)}")
        return None
    reader = FieldReader(item, path, issues)
    if _removal_item(item, reader, path, issues):
        return None
    before = len(issues)
    ident = reader.get("id", parse_reactor_id, None)
    reactor_type = reader.get("type", parse_reactor_type, None)
    subscribe_node = reader.node("subscribe")
    subscribe: tuple[tuple[str, str], ...] = ()
    if subscribe_node is not None:
        subscribe = (
            _subscriptions(subscribe_node, join_path(path, "subscribe"), issues, ident) or ()
        )
    requires_node = reader.node("requires")
    requires: Grants = ()
    if requires_node is not None:
        requires = (
            grants_parser(_intent_name_problem, "intent name", "capabilities", wildcards=False)(
                requires_node, join_path(path, "requires"), issues
            )
            or ()
        )
        if ident is not None:
            _check_requires_keys(
                requires_node, join_path(path, "requires"), issues, ident, subscribe
            )
    options: dict[str, Any] = reader.get("options", parse_options, {})
    reactor_fields: dict[str, Any] = {
        "mailbox": reader.get(
            "mailbox", integer(1, 1_000_000), default_of(ReactorConfig, "mailbox")
        ),
        "overflow": reader.get(
            "overflow", choice(OVERFLOW_POLICIES), default_of(ReactorConfig, "overflow")
        ),
        "snapshot_every": reader.get(
            "snapshot_every", integer(1, 100_000_000), default_of(ReactorConfig, "snapshot_every")
        ),
        "enabled": reader.get("enabled", parse_bool, default_of(ReactorConfig, "enabled")),
    }
    reader.finish()
    for key in ("id", "type"):
        if reader.node(key) is None:
            issues.add(item.where, path, f"missing required key '{key}'")
    if len(issues) != before:
        return None
    assert ident is not None
    assert reactor_type is not None
    return ReactorConfig(
        id=ident,
        type=reactor_type,
        requires=requires,
        options=options,
        subscribe=subscribe,
        **reactor_fields,
    )


def _subscriptions(
    node: Node, path: str, issues: Issues, ident: str | None
) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(node.value, dict):
        issues.add(
            node.where,
            path,
            f"expected a mapping of intent names to verbs, got {describe(node)}",
        )
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for name, child in node.value.items():
        at = join_path(path, name)
        problem = _intent_name_problem(name)
        if problem is None and ident is not None and name.split(".", 1)[0] == ident:
            problem = (
                f"'{name}' already goes to this reactor's verb '{name.split('.', 1)[1]}'; "
                "subscribe names intents of other reactors or sources"
            )
        if problem is not None:
            issues.add(child.key_where or child.where, at, problem)
            ok = False
            continue
        verb = parse_verb(child, at, issues)
        if verb is None:
            ok = False
            continue
        pairs.append((name, verb))
    return tuple(pairs) if ok else None


def _check_requires_keys(
    node: Node,
    path: str,
    issues: Issues,
    ident: str,
    subscribe: tuple[tuple[str, str], ...],
) -> None:
    """A requirement names an intent this reactor takes: ``<id>.<verb>`` or a subscribed name.

    Whether the verb exists depends on the type, which the runtime checks.
    """
    assert isinstance(node.value, dict)
    subscribed = [name for name, _ in subscribe]
    for name, child in node.value.items():
        if _intent_name_problem(name) is not None:
            continue  # reported by the grants parser
        owner, _, verb = name.partition(".")
        if name in subscribed or (owner == ident and _VERB.match(verb)):
            continue
        candidates = [*subscribed, f"{ident}.{verb}"]
        issues.add(
            child.key_where or child.where,
            join_path(path, name),
            f"reactor '{ident}' does not take '{name}': expected '{ident}.<verb>' or one of "
            "its subscribe keys" + did_you_mean(name, candidates),
        )


def grants_parser(
    key_problem: Callable[[str], str | None],
    key_noun: str,
    values_noun: str,
    *,
    wildcards: bool = True,
) -> Parser[Grants]:
    """A mapping of names (checked by ``key_problem``) to lists of capabilities.

    Used for ``capabilities.implies``, ``principals`` and a reactor's ``requires``.
    """
    capability = capability_parser(wildcards=wildcards)

    def parse(node: Node, path: str, issues: Issues) -> Grants | None:
        if not isinstance(node.value, dict):
            issues.add(
                node.where,
                path,
                f"expected a mapping of each {key_noun} to its {values_noun}, got {describe(node)}",
            )
            return None
        pairs: list[tuple[str, tuple[str, ...]]] = []
        ok = True
        for key, child in node.value.items():
            at = join_path(path, key)
            problem = key_problem(key)
            if problem is not None:
                issues.add(child.key_where or child.where, at, problem)
                ok = False
                continue
            if child.value is None:
                pairs.append((key, ()))  # `guest:` holds nothing (yet)
                continue
            if isinstance(child.value, str):
                issues.add(
                    child.where,
                    at,
                    f"expected a list of capabilities, got {describe(child)} "
                    f"(write [{child.value}])",
                )
                ok = False
                continue
            values = list_of(capability)(child, at, issues)
            if values is None:
                ok = False
                continue
            pairs.append((key, tuple(dict.fromkeys(values))))
        return tuple(pairs) if ok else None

    return parse


def capability_parser(*, wildcards: bool) -> Parser[str]:
    """A capability string (``sensor:read``; ``sensor:*`` only with ``wildcards``)."""

    def parse(node: Node, path: str, issues: Issues) -> str | None:
        if not isinstance(node.value, str):
            issues.add(
                node.where,
                path,
                f"expected a capability such as 'sensor:read', got {describe(node)}",
            )
            return None
        problem = capability_problem(node.value, wildcards=wildcards)
        if problem is None:
            return node.value
        fixed = _fixed_capability(node.value, wildcards=wildcards)
        issues.add(node.where, path, problem + (f" (did you mean '{fixed}'?)" if fixed else ""))
        return None

    return parse


def _fixed_capability(text: str, *, wildcards: bool) -> str | None:
    """A likely intended spelling of a malformed capability, when a simple fix gives one."""
    candidate = re.sub(r"\s+", "", text)
    candidate = re.sub(r":{2,}", ":", candidate).strip(":")
    candidate = re.sub(r"\*{2,}", "*", candidate)
    if candidate == text or not candidate:
        return None
    return candidate if capability_problem(candidate, wildcards=wildcards) is None else None


def _implies_key_problem(key: str) -> str | None:
    problem = capability_problem(key, wildcards=False)
    if problem is not None and "wildcard" in problem:
        return (
            f"capability {key!r}: an implication key is concrete; to grant everything under "
            "a prefix, put the pattern in the implied list instead"
        )
    return problem


_REACTOR_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_REACTOR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERB = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_INTENT_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


def _intent_name_problem(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) < 2 or not all(_INTENT_SEGMENT.match(part) for part in parts):
        return (
            f"intent name {name!r}: dot-separated parts of letters, digits, '_' or '-', "
            "at least two (e.g. 'counter.increment', 'sensor.temperature')"
        )
    return None


def parse_reactor_id(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _REACTOR_ID.match(text):
        return text
    suggestion = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    suggestion = suggestion.lstrip("0123456789-_")[:63]
    hint = (
        f" (did you mean '{suggestion}'?)" if suggestion and _REACTOR_ID.match(suggestion) else ""
    )
    issues.add(
        node.where,
        path,
        f"reactor id {text!r}: a lowercase letter, then up to 62 of a-z 0-9 '_' '-'{hint}",
    )
    return None


def parse_reactor_type(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _REACTOR_TYPE.match(text):
        return text
    issues.add(
        node.where,
        path,
        f"reactor type {text!r}: the name of a built-in type (counter, threshold, window, "
        "relay, schedule, actuator) or of an 'edgeagent.reactors' entry point",
    )
    return None


def parse_verb(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _VERB.match(text):
        return text
    issues.add(
        node.where, path, f"verb {text!r}: a lowercase letter, then a-z 0-9 '_' '-' (e.g. reading)"
    )
    return None


def parse_options(node: Node, path: str, issues: Issues) -> dict[str, Any] | None:
    if not isinstance(node.value, dict):
        issues.add(node.where, path, f"expected a mapping of options, got {describe(node)}")
        return None
    options: dict[str, Any] = to_plain(node)
    return options


_SIZE = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-zA-Z]*)\s*$")
SIZE_UNITS: dict[str, int] = {
    "B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}  # fmt: skip


def size_bytes(text: str) -> int:
    """``4096``, ``64MB``, ``256MiB``, ``1.5GiB`` as bytes; ValueError names a likely fix.

    Units are case-insensitive; kB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as '64MB' or '256MiB', got {text!r}")
    number, unit = match["number"], match["unit"]
    by_lower = {name.lower(): factor for name, factor in SIZE_UNITS.items()}
    if unit.lower() in by_lower:
        return int(float(number) * by_lower[unit.lower()])
    if unit == "":
        return int(float(number))
    # "64M", "64K": the binary unit is what people mean for file sizes.
    single = {"k": "KiB", "m": "MiB", "g": "GiB", "t": "TiB"}.get(unit.lower())
    close = difflib.get_close_matches(unit.lower(), list(by_lower), n=1, cutoff=0.5)
    canonical = {name.lower(): name for name in SIZE_UNITS}
    fixed = single or (canonical[close[0]] if close else None)
    hint = f" (did you mean '{number}{fixed}'?)" if fixed else ""
    raise ValueError(f"unknown size unit {unit!r} in {text!r}; use {', '.join(SIZE_UNITS)}{hint}")


def size_parser(low: int, high: int) -> Parser[int]:
    """A byte count: an integer or a string with a unit (see :func:`size_bytes`)."""

    def parse(node: Node, path: str, issues: Issues) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | str):
            issues.add(node.where, path, f"expected a size such as '256MiB', got {describe(node)}")
            return None
        try:
            size = size_bytes(value) if isinstance(value, str) else value
        except ValueError as exc:
            issues.add(node.where, path, str(exc))
            return None
        if not low <= size <= high:
            issues.add(
                node.where, path, f"must be between {low} and {high} bytes, got {describe(node)}"
            )
            return None
        return size

    return parse


#: Top-level key -> builder, in build order (later builders read ``ctx.built`` of earlier ones).
SECTIONS: dict[str, SectionBuilder] = {
    "device": _build_device,
    "mdns": _build_mdns,
    "dns_bridge": _build_dns_bridge,
    "log_level": _build_log_level,
    "mesh": _build_mesh,
    "capabilities": _build_capabilities,
    "reactors": _build_reactors,
    "principals": _build_principals,  # after reactors: it checks reactor:<id> names
    "journal": _build_journal,
}


# -- composite values --------------------------------------------------------------------------
def _hosts(node: Node | None, path: str, issues: Issues, hostname: str) -> tuple[str, ...]:
    if node is None:
        return (hostname,)
    if not isinstance(node.value, tuple):
        issues.add(node.where, path, f"expected a list of host names, got {describe(node)}")
        return (hostname,)
    if not node.value:
        issues.add(node.where, path, "needs at least one host name (e.g. [hostname])")
        return (hostname,)
    hosts: list[str] = []
    for index, item in enumerate(node.value):
        name = (
            hostname
            if item.value == HOSTNAME_TOKEN
            else parse_hostname(item, f"{path}[{index}]", issues)
        )
        if name is not None and name not in hosts:
            hosts.append(name)
    return tuple(hosts) or (hostname,)


def _services(
    node: Node | None, path: str, issues: Issues, default_instance: str
) -> tuple[ServiceConfig, ...]:
    if node is None:
        return ()
    if not isinstance(node.value, tuple):
        issues.add(node.where, path, f"expected a list of services, got {describe(node)}")
        return ()
    # Duplicate ids are reported per layer (check_layer): merging keeps one of each.
    services: list[ServiceConfig] = []
    seen_instances: dict[tuple[str, str], str] = {}
    for index, item in enumerate(node.value):
        item_at = item_path(path, index, item)
        service = _service(item, item_at, issues)
        if service is None:
            continue
        instance = (service.type, (service.instance_name or default_instance).lower())
        if instance in seen_instances:
            issues.add(
                item.where,
                item_at,
                f"service '{seen_instances[instance]}' already advertises instance "
                f"'{service.instance_name or default_instance}' of {service.type}; "
                "give one of them an instance_name",
            )
        seen_instances[instance] = service.id
        services.append(service)
    return tuple(services)


def _service(item: Node, path: str, issues: Issues) -> ServiceConfig | None:
    """One service item, or None for a removal or an invalid item (already reported)."""
    if not isinstance(item.value, dict):
        issues.add(item.where, path, f"expected a service mapping, got {describe(item)}")
        return None
    reader = FieldReader(item, path, issues)
    if _removal_item(item, reader, path, issues):
        return None
    before = len(issues)
    ident = reader.get("id", parse_text, None)
    service_type = reader.get("type", parse_service_type, None)
    protocol = reader.get("protocol", parse_protocol, None)
    transport = reader.get("transport", choice(("tcp", "udp")), None)
    port = reader.get("port", PORT, None)
    no_txt: tuple[tuple[str, str], ...] = ()
    txt = reader.get("txt", parse_txt, no_txt)
    priority = reader.get("priority", integer(0, 65535), default_of(ServiceConfig, "priority"))
    weight = reader.get("weight", integer(0, 65535), default_of(ServiceConfig, "weight"))
    instance_name = reader.get("instance_name", parse_instance_name, None)
    reader.finish()
    if reader.node("id") is None:
        issues.add(item.where, path, "missing required key 'id'")
    if reader.node("port") is None:
        issues.add(item.where, path, "missing required key 'port'")
    has_type = reader.node("type") is not None
    has_split = reader.node("protocol") is not None or reader.node("transport") is not None
    if has_type and has_split:
        issues.add(item.where, path, "give either 'type' or 'protocol' + 'transport', not both")
    elif not has_type and not has_split:
        issues.add(item.where, path, "missing 'type' (e.g. _http._tcp) or 'protocol' + 'transport'")
    elif not has_type and (reader.node("protocol") is None or reader.node("transport") is None):
        missing = "transport" if reader.node("transport") is None else "protocol"
        issues.add(
            item.where, path, f"'protocol' and 'transport' go together; '{missing}' is missing"
        )
    if len(issues) != before:
        return None
    if service_type is None:
        service_type = f"_{protocol}._{transport}"
    assert ident is not None
    assert port is not None
    return ServiceConfig(
        id=ident,
        type=service_type,
        port=port,
        txt=txt,
        priority=priority,
        weight=weight,
        instance_name=instance_name,
    )


def default_upstreams(nameservers: Iterable[str], bridge_address: str) -> tuple[str, ...]:
    """The system nameservers usable as upstreams: valid addresses other than the bridge's own."""
    own = ipaddress.ip_address(bridge_address)
    found: list[str] = []
    for server in nameservers:
        try:
            address = ipaddress.ip_address(server)
        except ValueError:
            continue
        if address != own and str(address) not in found:
            found.append(str(address))
    return tuple(found)


# -- scalar parsers ----------------------------------------------------------------------------
def describe(node: Node) -> str:
    """How a value reads in an error message: ``'abc'``, ``true``, ``a list``."""
    value = node.value
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, tuple):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if not node.secret else "a secret"
    return str(value)


def integer(low: int, high: int) -> Parser[int]:
    def parse(node: Node, path: str, issues: Issues) -> int | None:
        value = node.value
        if not isinstance(value, int) or isinstance(value, bool):
            issues.add(node.where, path, f"expected an integer, got {describe(node)}")
            return None
        if not low <= value <= high:
            issues.add(node.where, path, f"must be between {low} and {high}, got {value}")
            return None
        return value

    return parse


PORT = integer(1, 65535)


def parse_bool(node: Node, path: str, issues: Issues) -> bool | None:
    if isinstance(node.value, bool):
        return node.value
    hint = ""
    if isinstance(node.value, str) and node.value.lower() in ("yes", "on", "y", "1", "enabled"):
        hint = " (did you mean 'true'?)"
    elif isinstance(node.value, str) and node.value.lower() in ("no", "off", "n", "0", "disabled"):
        hint = " (did you mean 'false'?)"
    issues.add(node.where, path, f"expected true or false, got {describe(node)}{hint}")
    return None


def parse_text(node: Node, path: str, issues: Issues) -> str | None:
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected a string, got {describe(node)}")
        return None
    if not node.value.strip():
        issues.add(node.where, path, "must not be empty")
        return None
    return node.value


def parse_pattern(node: Node, path: str, issues: Issues) -> str | None:
    return parse_text(node, path, issues)


def choice(options: Sequence[str]) -> Parser[str]:
    def parse(node: Node, path: str, issues: Issues) -> str | None:
        if isinstance(node.value, str) and node.value.lower() in options:
            return node.value.lower()
        word = node.value if isinstance(node.value, str) else str(node.value)
        issues.add(
            node.where,
            path,
            f"expected one of {', '.join(options)}, got {describe(node)}"
            + did_you_mean(word.lower(), options),
        )
        return None

    return parse


parse_log_level = choice(LOG_LEVELS)


def list_of(item: Parser[T]) -> Parser[tuple[T, ...]]:
    def parse(node: Node, path: str, issues: Issues) -> tuple[T, ...] | None:
        if not isinstance(node.value, tuple):
            issues.add(node.where, path, f"expected a list, got {describe(node)}")
            return None
        values: list[T] = []
        ok = True
        for index, child in enumerate(node.value):
            parsed = item(child, f"{path}[{index}]", issues)
            if parsed is None:
                ok = False
            else:
                values.append(parsed)
        return tuple(values) if ok else None

    return parse


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def hostname_problem(name: str) -> str | None:
    """Why ``name`` is not a valid single DNS label for a host, or None when it is."""
    if not name:
        return "must not be empty"
    if len(name) > 63:
        return f"is {len(name)} characters long; a DNS label has at most 63"
    if _LABEL.match(name):
        return None
    if "." in name:
        return "must be a single label without dots ('.local' is added for you)"
    if name.startswith("-") or name.endswith("-"):
        return "must not start or end with '-'"
    return "may hold only lowercase letters a-z, digits and '-'"


def suggest_hostname(name: str) -> str | None:
    candidate = re.sub(r"[^a-z0-9-]+", "-", name.lower().removesuffix(".local")).strip("-")[:63]
    candidate = candidate.strip("-")
    return candidate if candidate and hostname_problem(candidate) is None else None


def parse_hostname(node: Node, path: str, issues: Issues) -> str | None:
    if isinstance(node.value, int) and not isinstance(node.value, bool) and node.value >= 0:
        node = dataclasses.replace(node, value=str(node.value))  # `hostname: 1234` is a label
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected a host name, got {describe(node)}")
        return None
    problem = hostname_problem(node.value)
    if problem is None:
        return node.value
    suggestion = suggest_hostname(node.value)
    hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
    issues.add(node.where, path, f"host name {node.value!r} {problem}{hint}")
    return None


def parse_instance_name(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    # RFC 6763 section 4.1.1: the instance name is one DNS label, at most 63 octets of UTF-8.
    if len(text.encode()) > 63:
        issues.add(node.where, path, f"is {len(text.encode())} bytes of UTF-8; at most 63")
        return None
    return text


_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def _service_name_problem(name: str) -> str | None:
    # RFC 6335 section 5.1: 1-15 characters, letters digits and hyphens, at least one letter,
    # no hyphen at either end nor two in a row.
    if not _SERVICE_NAME.match(name) or "--" in name or not re.search("[a-z]", name):
        return "a service name has 1-15 lowercase letters, digits or '-', at least one letter"
    return None


def parse_protocol(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    name = text.lower()
    if name.startswith("_"):
        issues.add(node.where, path, f"write it without '_' (did you mean '{name.lstrip('_')}'?)")
        return None
    problem = _service_name_problem(name)
    if problem:
        issues.add(node.where, path, f"{text!r}: {problem}")
        return None
    return name


_SERVICE_TYPE = re.compile(r"^_(?P<name>[^.]+)\._(?P<transport>[^.]+)$")


def parse_service_type(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    lowered = text.lower().removesuffix(".local").removesuffix(".")
    match = _SERVICE_TYPE.match(lowered)
    if match is None:
        guess = lowered.strip("_").split(".")[0] if lowered else ""
        hint = f" (did you mean '_{guess}._tcp'?)" if guess and "_" not in guess else ""
        issues.add(node.where, path, f"expected '_name._tcp' or '_name._udp', got {text!r}{hint}")
        return None
    if match["transport"] not in ("tcp", "udp"):
        issues.add(
            node.where,
            path,
            f"the transport must be _tcp or _udp, got '_{match['transport']}'"
            + did_you_mean(match["transport"], ["tcp", "udp"]).replace("'", "'_", 1),
        )
        return None
    problem = _service_name_problem(match["name"])
    if problem:
        issues.add(node.where, path, f"{text!r}: {problem}")
        return None
    return lowered


def parse_txt(node: Node, path: str, issues: Issues) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(node.value, dict):
        issues.add(
            node.where, path, f"expected a mapping of TXT keys to values, got {describe(node)}"
        )
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for key, child in node.value.items():
        at = join_path(path, key)
        where = child.key_where or child.where
        # RFC 6763 section 6.4: keys are printable US-ASCII except '=', at least one character.
        if not key or "=" in key or not all(0x20 <= ord(c) <= 0x7E for c in key):
            issues.add(where, at, "a TXT key is printable ASCII without '='")
            ok = False
            continue
        value = child.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float | str):
            text = str(value)
        else:
            issues.add(
                child.where,
                at,
                f"expected a text value, got {describe(child)} (write '' for empty)",
            )
            ok = False
            continue
        # RFC 6763 section 6.1: each key=value string is at most 255 bytes.
        if len(f"{key}={text}".encode()) > 255:
            issues.add(child.where, at, "key=value is longer than 255 bytes")
            ok = False
            continue
        pairs.append((key, text))
    return tuple(pairs) if ok else None


def parse_ip(node: Node, path: str, issues: Issues) -> str | None:
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected an IP address, got {describe(node)}")
        return None
    try:
        return str(ipaddress.ip_address(node.value))
    except ValueError:
        issues.add(node.where, path, f"{node.value!r} is not an IPv4 or IPv6 address")
        return None


def parse_upstream(node: Node, path: str, issues: Issues) -> str | None:
    if not isinstance(node.value, str):
        issues.add(
            node.where, path, f"expected 'ip', 'ip:port' or '[v6]:port', got {describe(node)}"
        )
        return None
    try:
        return format_upstream(*parse_upstream_address(node.value.strip()))
    except ValueError as exc:
        issues.add(node.where, path, f"bad upstream {node.value!r}: {exc}")
        return None


_DURATION = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-zA-Z]*)\s*$")
DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNIT_ALIASES = {
    "msec": "ms", "msecs": "ms", "millis": "ms", "millisecond": "ms", "milliseconds": "ms",
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
}  # fmt: skip


def duration_seconds(text: str) -> float:
    """``500ms``/``1s``/``2m``/``1h``/``1.5`` as seconds; ValueError names a likely fix."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as '500ms', '1s', '2m' or '1h', got {text!r}")
    number, unit = match["number"], match["unit"]
    if unit == "":
        return float(number)
    if unit in DURATION_UNITS:
        return float(number) * DURATION_UNITS[unit]
    fixed = _UNIT_ALIASES.get(unit.lower())
    if fixed is None:
        close = difflib.get_close_matches(unit.lower(), list(DURATION_UNITS), n=1, cutoff=0.3)
        fixed = close[0] if close else None
    hint = f" (did you mean '{number}{fixed}'?)" if fixed else ""
    raise ValueError(f"unknown duration unit {unit!r} in {text!r}; use ms, s, m or h{hint}")


def parse_duration(node: Node, path: str, issues: Issues) -> float | None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        issues.add(node.where, path, f"expected a duration such as '1s', got {describe(node)}")
        return None
    try:
        seconds = duration_seconds(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        issues.add(node.where, path, str(exc))
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        issues.add(node.where, path, f"must be a positive duration, got {describe(node)}")
        return None
    return seconds


def _removal_item(item: Node, reader: FieldReader, path: str, issues: Issues) -> bool:
    """True for an overlay's ``{id: X, remove: true}`` item (checked: it carries nothing else)."""
    if not reader.get("remove", parse_bool, False) or not isinstance(item.value, dict):
        return False
    for key, child in item.value.items():
        if key not in ("id", "remove"):
            issues.add(
                child.key_where or child.where,
                join_path(path, key),
                "a removal item carries only 'id' and 'remove'",
            )
    if reader.node("id") is None:
        issues.add(item.where, path, "a removal item needs the 'id' to remove")
    return True

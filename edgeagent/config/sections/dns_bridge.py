"""The ``dns_bridge:`` section: the unicast DNS server that answers ``.local`` for clients.

A recursive bridge without ``upstreams`` forwards to the system nameservers
(``BuildContext.system_nameservers``, read only then), less the bridge's own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeagent.config.located import (
    FieldReader,
    Issues,
    Node,
    Parser,
    default_of,
    describe,
    join_path,
)
from edgeagent.config.scalars import PORT, integer, list_of, parse_bool, parse_duration, parse_ip
from edgeagent.config.sections import BuildContext, Section
from edgeagent.net.address import format_upstream, parse_upstream_address

T = TypeVar("T")


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


def _render_dns_bridge(bridge: DnsBridgeConfig) -> dict[str, Any]:
    return {
        "enabled": bridge.enabled,
        "address": bridge.address,
        "port": bridge.port,
        "recursive": bridge.recursive,
        "upstreams": list(bridge.upstreams),
        "query_timeout": bridge.query_timeout,
        "upstream_timeout": bridge.upstream_timeout,
        "udp_payload_size": bridge.udp_payload_size,
    }


SECTION: Section[DnsBridgeConfig] = Section("dns_bridge", _build_dns_bridge, _render_dns_bridge)

"""Host-and-port texts: parsing and canonical formatting (pure, no I/O, no lookups).

Two spellings are read here. A *peer* (a mesh cluster's ``peers``) is ``host:port``,
``[v6]:port`` or a bare host, where the host is an IP address or a DNS name. An *upstream*
(the DNS bridge's ``upstreams``) is ``ip``, ``ip:port`` or ``[v6]:port``, with port 53 when
absent: a DNS server is named by address, so that finding it needs no DNS lookup.

Every parser raises ``ValueError`` with a message meant for the user (the config validator
puts it after the key path); the formatters give the text back that the parsers read.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_peer_address(text: str, default_port: int) -> tuple[str, int]:
    """``10.0.0.7:4370``, ``[fe80::1]:4370``, ``gw.local:4370`` or a bare host -> (host, port).

    The host is an IP address or a DNS name. Raises ValueError with a readable message.
    """
    host, port_text, bracketed = split_host_port(text)
    if bracketed:
        try:
            if ipaddress.ip_address(host.split("%", 1)[0]).version != 6:
                raise ValueError("brackets are for IPv6 addresses")
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("write an IPv6 address with its port as '[v6]:port'")
    if not _is_ip(host) and dns_name_problem(host) is not None:
        raise ValueError(f"{host!r} is neither an IP address nor a host name")
    port = parse_port(port_text, default_port)
    if _is_ip(host):
        return str(ipaddress.ip_address(host)), port
    return host.lower().removesuffix("."), port


def format_peer(host: str, port: int) -> str:
    """The canonical text of a peer: ``host:port``, or ``[v6]:port`` for an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_upstream_address(text: str) -> tuple[IPAddress, int]:
    """``ip``, ``ip:port`` or ``[v6]:port`` as (address, port); port 53 when absent.

    Raises ValueError with a readable message. The DNS bridge uses this to read upstreams.
    """
    host, port_text, bracketed = split_host_port(text)
    if bracketed and ":" not in host:
        raise ValueError("brackets are for IPv6 addresses")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return address, parse_port(port_text, 53)


def format_upstream(address: IPAddress, port: int) -> str:
    """The canonical text of an upstream: the port only when it is not 53."""
    if port == 53:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def split_host_port(text: str) -> tuple[str, str | None, bool]:
    """``[v6]:port``, ``host:port`` or a bare host -> (host, port text or None, bracketed).

    A bare text with several colons (an IPv6 address without port) comes back whole.
    """
    if not text.startswith("["):
        if text.count(":") == 1:
            host, port_text = text.split(":")
            return host, port_text, False
        return text, None, False
    close = text.find("]")
    if close < 0:
        raise ValueError("missing ']' after the IPv6 address")
    host, rest = text[1:close], text[close + 1 :]
    if rest and not rest.startswith(":"):
        raise ValueError("expected ':port' after ']'")
    return host, (rest[1:] if rest else None), True


def parse_port(port_text: str | None, default: int) -> int:
    """A port from its text (1..65535), or ``default`` when there is none."""
    if port_text is None:
        return default
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not between 1 and 65535")
    return int(port_text)


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS name (labels of letters, digits, '-', '_'), or None."""
    labels = name.removesuffix(".").split(".")
    if not name or len(name) > 253:
        return "must be 1-253 characters"
    for label in labels:
        if not _DNS_LABEL.match(label):
            return f"label {label!r} is not 1-63 letters, digits, '-' or '_'"
    return None


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
_DNS_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True

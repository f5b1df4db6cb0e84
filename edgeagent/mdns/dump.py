"""Text and JSON renderings of mDNS records for ``edgeagent info`` (pure, no I/O).

The line format follows MdnsLite's ``dump_records``/``dump_caches``, one record per line::

    edge.local: type A, class IN, ttl 120, addr 10.0.0.5
    _ssh._tcp.local: type PTR, class IN, ttl 120, edge._ssh._tcp.local
    edge._ssh._tcp.local: type SRV, class IN, ttl 120, priority 0, weight 0, port 22, edge.local.
    edge._ssh._tcp.local: type TXT, class IN, ttl 120, path=/

``format_lines`` and ``format_cache`` align the columns (names longer than 40 columns, such as
IPv6 reverse names, do not widen the name column) and colour them only when asked to.

Placeholders
------------
Address records and reverse PTRs depend on the interface a question arrives on. When no
interfaces are known (the agent is not running, or ``info`` is asked for the configured table
only), ``dump_records`` returns ``PlaceholderRecord`` rows for them, as MdnsLite does: the A record
reads ``addr <interface_ipv4>`` and the reverse PTR is named ``<interface_ipv4>.in-addr.arpa``.
A ``PlaceholderRecord`` is text only (no dnslib rdata), so it can never be packed and sent by
mistake; every function here accepts both it and ``Record`` (the ``DumpRow`` union).
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgeagent.dns.records import Record, RType, type_name
from edgeagent.mdns.cache import CacheEntry
from edgeagent.mdns.table import RecordTable, label_to_name, name_key
from edgeagent.net.model import InterfaceInfo

IPV4_PLACEHOLDER = "<interface_ipv4>"
IPV6_PLACEHOLDER = "<interface_ipv6>"


@dataclass(frozen=True, slots=True)
class PlaceholderRecord:
    """A record whose data depends on the receiving interface, for display only.

    ``data_text`` is the zone-style text (``<interface_ipv4>`` or ``edge-2e6d.local.``).
    """

    name: str
    rtype: int
    ttl: int
    data_text: str
    unique: bool = True


DumpRow = Record | PlaceholderRecord

# MdnsLite's order within one name: pointers first, then the service, then addresses.
_TYPE_ORDER: dict[int, int] = {
    RType.PTR: 0,
    RType.SRV: 1,
    RType.TXT: 2,
    RType.A: 3,
    RType.AAAA: 4,
    RType.NSEC: 5,
}

_MAX_NAME_COLUMN = 41  # 40 columns of name and the colon

_RESET = "\x1b[0m"
_NAME_STYLE = "\x1b[1;36m"  # bold cyan
_HEADER_STYLE = "\x1b[1m"
_PLACEHOLDER_STYLE = "\x1b[2m"  # dim
_TYPE_STYLES: dict[int, str] = {
    RType.PTR: "\x1b[33m",  # yellow
    RType.SRV: "\x1b[35m",  # magenta
    RType.TXT: "\x1b[34m",  # blue
    RType.A: "\x1b[32m",  # green
    RType.AAAA: "\x1b[32m",
    RType.NSEC: "\x1b[31m",  # red
}


def dump_records(table: RecordTable, interfaces: Sequence[InterfaceInfo] | None) -> list[DumpRow]:
    """Every record the table advertises, sorted as ``format_lines`` prints them.

    With interfaces: the real records on each of them, deduplicated (an address shared by two
    interfaces appears once). With ``None`` or no interfaces: placeholder rows for the
    address-dependent records and the real service records.
    """
    rows: list[DumpRow] = []
    if interfaces:
        seen: set[tuple[str, int, str]] = set()
        for iface in interfaces:
            for record in table.records_for(iface):
                if record.key not in seen:
                    seen.add(record.key)
                    rows.append(record)
    else:
        ttl = table.ttl
        for host in table.host_names:
            rows.append(PlaceholderRecord(host, RType.A, ttl, IPV4_PLACEHOLDER))
            rows.append(PlaceholderRecord(host, RType.AAAA, ttl, IPV6_PLACEHOLDER))
        for reverse in (f"{IPV4_PLACEHOLDER}.in-addr.arpa", f"{IPV6_PLACEHOLDER}.ip6.arpa"):
            rows.extend(
                PlaceholderRecord(reverse, RType.PTR, ttl, f"{host}.") for host in table.host_names
            )
        rows.extend(table.records_for(InterfaceInfo("", 0)))  # no addresses: services only
    return sorted(rows, key=_sort_key)


def format_record(record: DumpRow) -> str:
    """One MdnsLite-style line: ``name: type A, class IN, ttl 120, addr 10.0.0.5``."""
    head = f"{record.name}: type {type_name(record.rtype)}, class IN, ttl {record.ttl},"
    return f"{head} {_data_fields(record)}".rstrip()


def record_to_json(record: DumpRow) -> dict[str, Any]:
    """``{"name", "type", "class", "ttl", "data", "unique"}`` with ``data`` as zone text."""
    return {
        "name": record.name,
        "type": type_name(record.rtype),
        "class": "IN",
        "ttl": record.ttl,
        "data": _zone_text(record),
        "unique": record.unique,
    }


def format_lines(rows: Iterable[DumpRow], *, color: bool) -> list[str]:
    """Sorted (by name, then PTR/SRV/TXT/A/AAAA), aligned lines; ANSI colour only if asked."""
    ordered = sorted(rows, key=_sort_key)
    return _render(ordered, _widths(ordered), color=color, indent="")


def format_cache(entries: dict[str, list[CacheEntry]], *, color: bool) -> list[str]:
    """One block per interface, then per responder address, like MdnsLite's ``dump_caches``::

    Interface eth0:
      Responder 10.0.0.7:
        printer.local: type A, class IN, ttl 97, addr 10.0.0.7
    """
    live = {iface: list(group) for iface, group in entries.items() if group}
    if not live:
        return ["No cached records."]
    widths = _widths([e.record for group in live.values() for e in group])
    lines: list[str] = []
    for iface in sorted(live):
        lines.append(_style(f"Interface {iface}:", _HEADER_STYLE, color))
        by_source: dict[str | None, list[Record]] = {}
        for entry in live[iface]:
            by_source.setdefault(entry.source, []).append(entry.record)
        for source in sorted(by_source, key=_source_sort_key):
            label = source if source is not None else "unknown"
            lines.append("  " + _style(f"Responder {label}:", _HEADER_STYLE, color))
            rows = sorted(by_source[source], key=_sort_key)
            lines.extend(_render(rows, widths, color=color, indent="    "))
    return lines


# ----------------------------------------------------------------------------- private


def _data_fields(row: DumpRow) -> str:
    """The record-specific tail of a line, MdnsLite wording."""
    rtype = row.rtype
    if isinstance(row, PlaceholderRecord):
        if rtype in (RType.A, RType.AAAA):
            return f"addr {row.data_text}"
        return row.data_text.removesuffix(".")
    data = row.data
    if rtype in (RType.A, RType.AAAA):
        return f"addr {row.data_text}"
    if rtype == RType.PTR:
        return label_to_name(data.label)
    if rtype == RType.SRV:
        target = label_to_name(data.target)
        return f"priority {data.priority}, weight {data.weight}, port {data.port}, {target}."
    if rtype == RType.TXT:
        return ", ".join(_txt_strings(row))
    if rtype == RType.NSEC:
        return f"next {label_to_name(data.label)}, types {' '.join(data.rrlist)}"
    return row.data_text


def _zone_text(row: DumpRow) -> str:
    if isinstance(row, PlaceholderRecord):
        return row.data_text
    data = row.data
    if row.rtype == RType.PTR:
        return label_to_name(data.label) + "."
    if row.rtype == RType.SRV:
        return f"{data.priority} {data.weight} {data.port} {label_to_name(data.target)}."
    if row.rtype == RType.TXT:
        return " ".join(
            '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"' for text in _txt_strings(row)
        )
    if row.rtype == RType.NSEC:
        return f"{label_to_name(data.label)}. {' '.join(data.rrlist)}"
    return row.data_text


def _txt_strings(record: Record) -> list[str]:
    strings = [bytes(item) for item in record.data.data]
    if strings == [b""]:  # RFC 6763 §6.1: the empty TXT record
        return []
    return [item.decode("utf-8", "backslashreplace") for item in strings]


def _sort_key(row: DumpRow) -> tuple[tuple[str, ...], int, str]:
    return (
        name_key(row.name),
        _TYPE_ORDER.get(row.rtype, 10 + row.rtype),
        _sortable_data(row),
    )


def _sortable_data(row: DumpRow) -> str:
    # Addresses sort numerically within a family: 10.0.0.9 before 10.0.0.10.
    if row.rtype in (RType.A, RType.AAAA) and isinstance(row, Record):
        try:
            return ipaddress.ip_address(row.data_text).packed.hex()
        except ValueError:
            pass
    return row.data_text.lower()


def _source_sort_key(source: str | None) -> tuple[int, int, bytes, str]:
    if source is None:
        return (2, 0, b"", "")
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return (1, 0, b"", source)
    return (0, ip.version, ip.packed, source)


@dataclass(frozen=True, slots=True)
class _Widths:
    name: int
    type: int
    ttl: int


def _widths(rows: Sequence[DumpRow]) -> _Widths:
    return _Widths(
        name=max(
            (w for w in (_display_width(r.name) + 1 for r in rows) if w <= _MAX_NAME_COLUMN),
            default=0,
        ),
        type=max((len(f"type {type_name(r.rtype)},") for r in rows), default=0),
        ttl=max((len(f"ttl {r.ttl},") for r in rows), default=0),
    )


def _render(rows: Sequence[DumpRow], widths: _Widths, *, color: bool, indent: str) -> list[str]:
    lines: list[str] = []
    for row in rows:
        name = f"{row.name}:"
        rtype = f"type {type_name(row.rtype)},"
        ttl = f"ttl {row.ttl},"
        data = _data_fields(row)
        placeholder = isinstance(row, PlaceholderRecord)
        parts = [
            _style(name, _NAME_STYLE, color) + " " * max(0, widths.name - _display_width(name)),
            _style(rtype, _TYPE_STYLES.get(row.rtype, ""), color)
            + " " * (widths.type - len(rtype)),
            "class IN,",
            ttl + " " * (widths.ttl - len(ttl)),
            _style(data, _PLACEHOLDER_STYLE if placeholder else "", color) if data else "",
        ]
        lines.append((indent + " ".join(parts)).rstrip())
    return lines


def _style(text: str, style: str, color: bool) -> str:
    if not color or not style or not text:
        return text
    return f"{style}{text}{_RESET}"


def _display_width(text: str) -> int:
    """Terminal columns: wide East Asian characters take two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width

"""Tests for the ``info`` renderings of mDNS records (edgeagent.mdns.dump)."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.dns.records import RType, a_record, aaaa_record, ptr_record, srv_record, txt_record
from edgeagent.mdns.cache import Cache
from edgeagent.mdns.dump import (
    IPV4_PLACEHOLDER,
    PlaceholderRecord,
    dump_records,
    format_cache,
    format_lines,
    format_record,
    record_to_json,
)
from edgeagent.mdns.table import RecordTable, ServiceSpec
from edgeagent.net.model import InterfaceInfo

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ETH0 = InterfaceInfo("eth0", 2, ipv4=("10.0.0.5",), ipv6=("fe80::1",))
WLAN0 = InterfaceInfo("wlan0", 3, ipv4=("10.0.0.5", "192.168.1.7"))
TABLE = RecordTable(
    hosts=["edge-2e6d"],
    services=[ServiceSpec("ssh", "_ssh._tcp", "edge-2e6d", 22, txt=(("path", "/"),))],
    ttl=120,
)


def test_format_record_matches_mdnslite() -> None:
    assert (
        format_record(a_record("edge-2e6d.local", "10.0.0.5", 120))
        == "edge-2e6d.local: type A, class IN, ttl 120, addr 10.0.0.5"
    )
    assert (
        format_record(ptr_record("_ssh._tcp.local", "edge-2e6d._ssh._tcp.local", 120))
        == "_ssh._tcp.local: type PTR, class IN, ttl 120, edge-2e6d._ssh._tcp.local"
    )
    assert format_record(srv_record("edge-2e6d._ssh._tcp.local", "edge-2e6d.local", 22, 120)) == (
        "edge-2e6d._ssh._tcp.local: type SRV, class IN, ttl 120, "
        "priority 0, weight 0, port 22, edge-2e6d.local."
    )
    assert (
        format_record(txt_record("edge-2e6d._ssh._tcp.local", [b"path=/", b"v=1"], 120))
        == "edge-2e6d._ssh._tcp.local: type TXT, class IN, ttl 120, path=/, v=1"
    )
    # MdnsLite prints an empty TXT record with nothing after the TTL.
    assert (
        format_record(txt_record("x._ssh._tcp.local", [], 120))
        == "x._ssh._tcp.local: type TXT, class IN, ttl 120,"
    )
    assert (
        format_record(PlaceholderRecord("edge.local", RType.AAAA, 120, "<interface_ipv6>"))
        == "edge.local: type AAAA, class IN, ttl 120, addr <interface_ipv6>"
    )


def test_format_record_shows_instance_names_as_text() -> None:
    table = RecordTable(
        hosts=["edge"], services=[ServiceSpec("web", "_http._tcp", "Grüne.Haus 1", 80)], ttl=120
    )
    lines = {format_record(r) for r in table.records_for(ETH0)}
    assert "_http._tcp.local: type PTR, class IN, ttl 120, Grüne\\.Haus 1._http._tcp.local" in lines
    nsec = table.query("edge.local", RType.TXT, ETH0).answers[0]
    assert (
        format_record(nsec)
        == "edge.local: type NSEC, class IN, ttl 120, next edge.local, types A AAAA"
    )


def test_dump_records_with_placeholders() -> None:
    rows = dump_records(TABLE, None)
    assert [format_record(r) for r in rows] == [
        "<interface_ipv4>.in-addr.arpa: type PTR, class IN, ttl 120, edge-2e6d.local",
        "<interface_ipv6>.ip6.arpa: type PTR, class IN, ttl 120, edge-2e6d.local",
        "_services._dns-sd._udp.local: type PTR, class IN, ttl 120, _ssh._tcp.local",
        "_ssh._tcp.local: type PTR, class IN, ttl 120, edge-2e6d._ssh._tcp.local",
        "edge-2e6d._ssh._tcp.local: type SRV, class IN, ttl 120, "
        "priority 0, weight 0, port 22, edge-2e6d.local.",
        "edge-2e6d._ssh._tcp.local: type TXT, class IN, ttl 120, path=/",
        "edge-2e6d.local: type A, class IN, ttl 120, addr <interface_ipv4>",
        "edge-2e6d.local: type AAAA, class IN, ttl 120, addr <interface_ipv6>",
    ]
    assert dump_records(TABLE, []) == rows
    placeholders = [r for r in rows if isinstance(r, PlaceholderRecord)]
    assert {r.rtype for r in placeholders} == {RType.A, RType.AAAA, RType.PTR}
    assert not hasattr(placeholders[0], "to_rr")  # display only: cannot be sent by mistake


def test_dump_records_with_interfaces_deduplicates() -> None:
    rows = dump_records(TABLE, [ETH0, WLAN0])
    addresses = [r.data_text for r in rows if r.rtype in (RType.A, RType.AAAA)]
    assert addresses == ["10.0.0.5", "192.168.1.7", "fe80::1"]
    reverse = [r.name for r in rows if r.name.endswith(".in-addr.arpa")]
    assert reverse == ["5.0.0.10.in-addr.arpa", "7.1.168.192.in-addr.arpa"]
    assert sum(1 for r in rows if r.rtype == RType.SRV) == 1
    assert not any(isinstance(r, PlaceholderRecord) for r in rows)


def test_record_to_json() -> None:
    assert record_to_json(a_record("edge.local", "10.0.0.5", 120)) == {
        "name": "edge.local",
        "type": "A",
        "class": "IN",
        "ttl": 120,
        "data": "10.0.0.5",
        "unique": True,
    }
    srv = srv_record("edge._ssh._tcp.local", "edge-2e6d.local", 22, 120)
    assert record_to_json(srv)["data"] == "0 0 22 edge-2e6d.local."
    txt = txt_record("x._ssh._tcp.local", [b'say="hi"', b"path=/"], 120)
    assert record_to_json(txt)["data"] == '"say=\\"hi\\"" "path=/"'
    placeholder = PlaceholderRecord("edge.local", RType.A, 120, IPV4_PLACEHOLDER)
    assert record_to_json(placeholder)["data"] == "<interface_ipv4>"
    table = RecordTable(
        hosts=["edge"], services=[ServiceSpec("web", "_http._tcp", "温室 1", 80)], ttl=120
    )
    rows = [record_to_json(r) for r in dump_records(table, [ETH0])]
    ptr = next(r for r in rows if r["name"] == "_http._tcp.local")
    assert ptr["data"] == "温室 1._http._tcp.local."
    assert ptr["unique"] is False
    json.dumps(rows)  # everything is JSON-serialisable


def test_format_lines_sorts_and_aligns_without_colour() -> None:
    rows = [
        a_record("b.local", "10.0.0.10", 120),
        a_record("b.local", "10.0.0.9", 120),
        aaaa_record("b.local", "fe80::1", 4500),
        ptr_record("_x._tcp.local", "a._x._tcp.local", 120),
        txt_record("a._x._tcp.local", [b"k=v"], 120),
        srv_record("a._x._tcp.local", "b.local", 1, 120),
    ]
    lines = format_lines(rows, color=False)
    assert lines == [
        "_x._tcp.local:   type PTR,  class IN, ttl 120,  a._x._tcp.local",
        "a._x._tcp.local: type SRV,  class IN, ttl 120,  priority 0, weight 0, port 1, b.local.",
        "a._x._tcp.local: type TXT,  class IN, ttl 120,  k=v",
        "b.local:         type A,    class IN, ttl 120,  addr 10.0.0.9",
        "b.local:         type A,    class IN, ttl 120,  addr 10.0.0.10",
        "b.local:         type AAAA, class IN, ttl 4500, addr fe80::1",
    ]
    assert not any("\x1b" in line for line in lines)


def test_format_lines_colour_only_adds_escapes() -> None:
    rows = dump_records(TABLE, [ETH0])
    plain = format_lines(rows, color=False)
    coloured = format_lines(rows, color=True)
    assert all("\x1b[" in line for line in coloured)
    assert [ANSI.sub("", line) for line in coloured] == plain


def test_format_lines_long_names_do_not_widen_the_column() -> None:
    rows = dump_records(TABLE, [ETH0])
    lines = format_lines(rows, color=False)
    v6_reverse = next(line for line in lines if ".ip6.arpa:" in line)
    assert ".ip6.arpa: type PTR," in v6_reverse
    a_line = next(line for line in lines if " type A," in line)
    assert a_line.index("type") == len("_services._dns-sd._udp.local:") + 1


def test_format_lines_counts_wide_characters() -> None:
    rows = [
        txt_record("温室._x._tcp.local", [], 120),
        txt_record("abcdefgh._x._tcp.local", [], 120),
    ]
    first, second = format_lines(rows, color=False)
    assert first.startswith("abcdefgh._x._tcp.local: type TXT")
    assert second.startswith("温室._x._tcp.local:     type TXT")  # 2 columns per character


def test_format_cache_blocks() -> None:
    cache = Cache()
    cache.insert(0.0, "wlan0", a_record("b.local", "192.168.1.2", 120), source="192.168.1.2")
    cache.insert(0.0, "eth0", a_record("printer.local", "10.0.0.7", 120), source="10.0.0.7")
    cache.insert(
        0.0, "eth0", srv_record("p._ipp._tcp.local", "printer.local", 631, 120), source="10.0.0.7"
    )
    cache.insert(0.0, "eth0", a_record("tv.local", "10.0.0.12", 120), source="10.0.0.12")
    cache.insert(0.0, "eth0", a_record("old.local", "10.0.0.3", 120))
    lines = format_cache(cache.entries(23.0), color=False)
    assert lines == [
        "Interface eth0:",
        "  Responder 10.0.0.7:",
        "    p._ipp._tcp.local: type SRV, class IN, ttl 97, priority 0, weight 0, port 631, printer.local.",
        "    printer.local:     type A,   class IN, ttl 97, addr 10.0.0.7",
        "  Responder 10.0.0.12:",
        "    tv.local:          type A,   class IN, ttl 97, addr 10.0.0.12",
        "  Responder unknown:",
        "    old.local:         type A,   class IN, ttl 97, addr 10.0.0.3",
        "Interface wlan0:",
        "  Responder 192.168.1.2:",
        "    b.local:           type A,   class IN, ttl 97, addr 192.168.1.2",
    ]
    coloured = format_cache(cache.entries(23.0), color=True)
    assert [ANSI.sub("", line) for line in coloured] == lines
    assert coloured != lines


def test_format_cache_empty() -> None:
    assert format_cache({}, color=True) == ["No cached records."]
    assert format_cache({"eth0": []}, color=False) == ["No cached records."]


@settings(max_examples=100)
@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), min_size=1, max_size=3),
    st.lists(st.ip_addresses(v=4).map(str), max_size=3, unique=True),
    st.booleans(),
)
def test_every_dumped_record_gets_exactly_one_line(
    hosts: list[str], addresses: list[str], color: bool
) -> None:
    table = RecordTable(hosts=hosts, services=TABLE.services, ttl=120)
    iface = InterfaceInfo("eth0", 2, ipv4=tuple(addresses))
    rows = dump_records(table, [iface])
    lines = [ANSI.sub("", line) for line in format_lines(rows, color=color)]
    assert len(lines) == len(rows) == len(table.records_for(iface))
    assert sorted(" ".join(line.split()) for line in lines) == sorted(
        " ".join(format_record(r).split()) for r in rows
    )

"""The bridge core without sockets: every rcode path, several questions, EDNS, TC, fast path."""

from __future__ import annotations

import struct

import pytest
from dnslib import EDNS0, QTYPE, RR, TXT, DNSQuestion, DNSRecord, EDNSOption

from edgeagent.bridge.core import (
    BridgeCore,
    ForwardUpstream,
    LiveLookup,
    LookupResult,
    Reply,
    Transport,
)
from edgeagent.bridge.static import StaticNameSource
from edgeagent.config.model import DnsBridgeConfig
from edgeagent.dns.records import (
    Record,
    RType,
    a_record,
    aaaa_record,
    normalize_name,
    srv_record,
    txt_record,
)

UDP = Transport.UDP
TCP = Transport.TCP


class AgingSource:
    """Records with absolute expiry times; lookup reports remaining TTLs rounded down."""

    def __init__(self) -> None:
        self.generation = 1
        self.entries: list[tuple[Record, float]] = []
        self.lookups = 0

    def add(self, record: Record, expires: float) -> None:
        self.entries.append((record, expires))
        self.generation += 1

    def lookup(self, name: str, rtype: int, now: float) -> LookupResult:
        self.lookups += 1
        live = [(r, e) for r, e in self.entries if e > now and normalize_name(r.name) == name]
        if not live:
            return LookupResult.unknown()
        found = [r.with_ttl(int(e - now)) for r, e in live if rtype in (RType.ANY, r.rtype)]
        return LookupResult.found(found) if found else LookupResult.nodata()

    async def query(self, name: str, rtype: int, timeout: float) -> LookupResult:  # noqa: ASYNC109
        return LookupResult.unknown()


def make_source() -> StaticNameSource:
    return StaticNameSource(
        [
            a_record("edge.local", "10.0.0.5", 120),
            aaaa_record("edge.local", "fd00::5", 120),
            srv_record("web._http._tcp.local", "edge.local", 80, 4500),
            txt_record("web._http._tcp.local", [b"path=/"], 4500),
            txt_record("big.local", [b"x" * 250, b"y" * 250, b"z" * 250], 120),
        ]
    )


def query(name: str, qtype: str = "A", *, edns: int | None = None, qid: int = 0x1234) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return bytes(q.pack())


def reply_of(step: object) -> DNSRecord:
    assert isinstance(step, Reply), step
    return DNSRecord.parse(step.data)


def core_for(source: object | None = None, **config: object) -> BridgeCore:
    return BridgeCore(DnsBridgeConfig(**config), source or make_source())  # type: ignore[arg-type]


def test_a_answer_is_authoritative_with_question_echoed() -> None:
    reply = reply_of(core_for().handle(query("Edge.local"), 0.0, UDP))
    assert reply.header.id == 0x1234
    assert reply.header.qr == 1
    assert reply.header.aa == 1
    assert reply.header.rcode == 0
    assert str(reply.q.qname) == "Edge.local."  # case kept (0x20)
    assert [str(rr.rdata) for rr in reply.rr] == ["10.0.0.5"]
    assert reply.rr[0].ttl == 120


def test_aaaa_ptr_srv_txt_and_any() -> None:
    core = core_for()
    assert [
        str(r.rdata) for r in reply_of(core.handle(query("edge.local", "AAAA"), 0, UDP)).rr
    ] == ["fd00::5"]
    ptr = reply_of(core.handle(query("5.0.0.10.in-addr.arpa", "PTR"), 0, UDP))
    assert ptr.header.aa == 1
    assert [str(r.rdata) for r in ptr.rr] == ["edge.local."]
    v6 = reply_of(core.handle(query(_ip6_arpa("fd00::5"), "PTR"), 0, UDP))
    assert [str(r.rdata) for r in v6.rr] == ["edge.local."]
    srv = reply_of(core.handle(query("web._http._tcp.local", "SRV"), 0, UDP))
    assert [str(r.rdata) for r in srv.rr] == ["0 0 80 edge.local."]
    # The SRV target's addresses ride along in the additional section.
    assert sorted(str(r.rdata) for r in srv.ar) == ["10.0.0.5", "fd00::5"]
    txt = reply_of(core.handle(query("web._http._tcp.local", "TXT"), 0, UDP))
    assert [r.rdata.data for r in txt.rr] == [[b"path=/"]]
    any_ = reply_of(core.handle(query("web._http._tcp.local", "ANY"), 0, UDP))
    assert sorted(QTYPE[r.rtype] for r in any_.rr) == ["SRV", "TXT"]


def _ip6_arpa(address: str) -> str:
    import ipaddress

    return ipaddress.ip_address(address).reverse_pointer


def test_nodata_when_name_exists_without_the_type() -> None:
    core = core_for()
    reply = reply_of(core.handle(query("edge.local", "MX"), 0, UDP))
    assert reply.header.rcode == 0
    assert reply.header.aa == 1
    assert reply.rr == []
    assert core.stats.nodata == 1


def test_unknown_local_name_asks_live_then_nxdomain() -> None:
    core = core_for()
    step = core.handle(query("nobody.local"), 0, UDP)
    assert isinstance(step, LiveLookup)
    assert step.lookups == (("nobody.local", 1),)
    reply = DNSRecord.parse(core.finish_live(step.pending, {}, 0.0))
    assert reply.header.rcode == 3
    assert reply.header.aa == 1
    assert core.stats.nxdomain == 1
    assert core.stats.live_lookups == 1


def test_live_answer_is_used_and_not_fast_path_cached() -> None:
    core = core_for()
    data = query("peer.local")
    step = core.handle(data, 0, UDP)
    assert isinstance(step, LiveLookup)
    found = LookupResult.found([a_record("peer.local", "10.0.0.9", 120)])
    reply = DNSRecord.parse(core.finish_live(step.pending, {("peer.local", 1): found}, 0.0))
    assert [str(r.rdata) for r in reply.rr] == ["10.0.0.9"]
    assert isinstance(core.handle(data, 0.1, UDP), LiveLookup)  # still unknown to lookup
    assert core.stats.fastpath_hits == 0


def test_failed_live_query_is_servfail() -> None:
    core = core_for()
    step = core.handle(query("peer.local"), 0, UDP)
    assert isinstance(step, LiveLookup)
    reply = DNSRecord.parse(core.finish_live(step.pending, {("peer.local", 1): None}, 0.0))
    assert reply.header.rcode == 2


def test_every_question_is_answered() -> None:
    record = DNSRecord.question("edge.local", "A")
    record.add_question(DNSQuestion("edge.local", QTYPE.AAAA))
    record.add_question(DNSQuestion("web._http._tcp.local", QTYPE.SRV))
    reply = reply_of(core_for().handle(bytes(record.pack()), 0, UDP))
    assert len(reply.questions) == 3
    assert sorted((str(r.rname), QTYPE[r.rtype]) for r in reply.rr) == [
        ("edge.local.", "A"),
        ("edge.local.", "AAAA"),
        ("web._http._tcp.local.", "SRV"),
    ]


def test_several_questions_one_unknown_waits_for_live_then_noerror() -> None:
    record = DNSRecord.question("edge.local", "A")
    record.add_question(DNSQuestion("peer.local", QTYPE.A))
    core = core_for()
    step = core.handle(bytes(record.pack()), 0, UDP)
    assert isinstance(step, LiveLookup)
    assert step.lookups == (("peer.local", 1),)
    reply = DNSRecord.parse(core.finish_live(step.pending, {}, 0.0))
    assert reply.header.rcode == 0  # one of the names exists
    assert [str(r.rname) for r in reply.rr] == ["edge.local."]


def test_foreign_name_refused_unless_recursive() -> None:
    core = core_for()
    reply = reply_of(core.handle(query("example.com"), 0, UDP))
    assert reply.header.rcode == 5
    assert reply.header.aa == 0
    assert reply.header.ra == 0
    recursive = core_for(recursive=True, upstreams=("127.0.0.2",))
    step = recursive.handle(query("example.com"), 0, UDP)
    assert isinstance(step, ForwardUpstream)
    assert recursive.stats.forwarded == 1


def test_mixed_local_and_foreign_questions_refused() -> None:
    record = DNSRecord.question("edge.local", "A")
    record.add_question(DNSQuestion("example.com", QTYPE.A))
    core = core_for(recursive=True)
    assert reply_of(core.handle(bytes(record.pack()), 0, UDP)).header.rcode == 5


def test_unknown_reverse_name_forwarded_in_recursive_mode_else_live() -> None:
    data = query("8.8.8.8.in-addr.arpa", "PTR")
    assert isinstance(core_for(recursive=True).handle(data, 0, UDP), ForwardUpstream)
    assert isinstance(core_for().handle(data, 0, UDP), LiveLookup)


def test_forward_reply_gets_client_id_and_is_truncated_to_fit() -> None:
    core = core_for(recursive=True)
    step = core.handle(query("example.com", "TXT", qid=7), 0, UDP)
    assert isinstance(step, ForwardUpstream)
    upstream = DNSRecord.parse(step.query).reply()
    upstream.header.id = 999
    for _ in range(4):
        upstream.add_answer(RR("example.com", QTYPE.TXT, rdata=TXT(b"x" * 200)))
    relayed = DNSRecord.parse(core.finish_forward(step.pending, bytes(upstream.pack())))
    assert relayed.header.id == 7
    assert relayed.header.tc == 1
    assert relayed.rr == []
    assert str(relayed.q.qname) == "example.com."
    failed = DNSRecord.parse(core.finish_forward(step.pending, None))
    assert failed.header.rcode == 2


def test_opcode_other_than_query_is_notimp() -> None:
    record = DNSRecord.question("edge.local")
    record.header.opcode = 2  # STATUS
    core = core_for()
    reply = reply_of(core.handle(bytes(record.pack()), 0, UDP))
    assert reply.header.rcode == 4
    assert core.stats.notimp == 1


def test_responses_and_runts_are_dropped() -> None:
    core = core_for()
    record = DNSRecord.question("edge.local")
    record.header.qr = 1
    assert core.handle(bytes(record.pack()), 0, UDP) is None
    assert core.handle(b"\x01\x02\x03", 0, UDP) is None
    assert core.stats.dropped == 2


def test_garbage_after_header_is_formerr_with_the_id() -> None:
    core = core_for()
    data = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x05abc"
    reply = reply_of(core.handle(data, 0, UDP))
    assert reply.header.id == 0xBEEF
    assert reply.header.rcode == 1
    assert core.stats.formerr == 1
    no_questions = struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0)
    assert reply_of(core.handle(no_questions, 0, UDP)).header.rcode == 1


def test_edns_opt_echoed_with_our_size() -> None:
    reply = reply_of(core_for(udp_payload_size=1400).handle(query("edge.local", edns=4096), 0, UDP))
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == 1
    assert opts[0].rclass == 1400
    no_edns = reply_of(core_for().handle(query("edge.local"), 0, UDP))
    assert [rr for rr in no_edns.ar if rr.rtype == QTYPE.OPT] == []


def test_edns_version_1_is_badvers() -> None:
    q = DNSRecord.question("edge.local")
    q.add_ar(EDNS0(udp_len=1232, version=1))
    reply = reply_of(core_for().handle(bytes(q.pack()), 0, UDP))
    opt = next(rr for rr in reply.ar if rr.rtype == QTYPE.OPT)
    assert (opt.ttl >> 24) == 1  # extended rcode 16 = BADVERS
    assert reply.header.rcode == 0


def test_two_opt_records_are_formerr() -> None:
    q = DNSRecord.question("edge.local")
    q.add_ar(EDNS0(udp_len=1232))
    q.add_ar(EDNS0(udp_len=1232))
    assert reply_of(core_for().handle(bytes(q.pack()), 0, UDP)).header.rcode == 1


def test_truncation_without_edns_and_honoured_client_size() -> None:
    core = core_for()
    small = reply_of(core.handle(query("big.local", "TXT"), 0, UDP))
    assert small.header.tc == 1
    assert small.rr == []
    assert str(small.q.qname) == "big.local."
    assert core.stats.truncated == 1
    big = reply_of(core.handle(query("big.local", "TXT", edns=1232), 0, UDP))
    assert big.header.tc == 0
    assert len(big.rr) == 1
    # The client's smaller size wins over ours; sizes under 512 count as 512.
    tiny = reply_of(core.handle(query("big.local", "TXT", edns=600), 0, UDP))
    assert tiny.header.tc == 1
    assert [rr for rr in tiny.ar if rr.rtype == QTYPE.OPT]
    over_tcp = reply_of(core.handle(query("big.local", "TXT"), 0, TCP))
    assert over_tcp.header.tc == 0


def test_additional_records_dropped_before_truncating() -> None:
    source = StaticNameSource(
        [
            srv_record("s._x._tcp.local", "host.local", 1, 120),
            *[a_record("host.local", f"10.0.1.{i}", 120) for i in range(40)],
        ]
    )
    reply = reply_of(core_for(source).handle(query("s._x._tcp.local", "SRV"), 0, UDP))
    assert reply.header.tc == 0
    assert len(reply.rr) == 1
    assert reply.ar == []


def test_fast_path_hit_rewrites_only_the_id() -> None:
    source = make_source()
    core = core_for(source)
    first = reply_of(core.handle(query("edge.local", qid=1), 0.0, UDP))
    assert first.rr[0].ttl == 120
    second = core.handle(query("edge.local", qid=2), 0.5, UDP)
    assert core.stats.fastpath_hits == 1
    parsed = reply_of(second)
    assert parsed.header.id == 2
    # Stored with TTLs one second lower: never above the real remaining TTL while served.
    assert parsed.rr[0].ttl == 119


def test_fast_path_entries_expire_after_one_second() -> None:
    source = AgingSource()
    source.add(a_record("edge.local", "10.0.0.5", 10), expires=10.0)
    core = core_for(source)
    core.handle(query("edge.local"), 0.0, UDP)
    core.handle(query("edge.local"), 0.9, UDP)
    assert core.stats.fastpath_hits == 1
    reply = reply_of(core.handle(query("edge.local"), 1.0, UDP))
    assert core.stats.fastpath_hits == 1  # expired: rebuilt from the source
    assert reply.rr[0].ttl == 9


def test_served_ttl_never_exceeds_real_remaining() -> None:
    source = AgingSource()
    source.add(a_record("edge.local", "10.0.0.5", 10), expires=10.5)
    core = core_for(source)
    for step in range(120):
        now = step * 0.07
        reply = reply_of(core.handle(query("edge.local"), now, UDP))
        if not reply.rr:
            break
        assert reply.rr[0].ttl <= 10.5 - now, now


def test_short_ttls_not_cached() -> None:
    source = AgingSource()
    source.add(a_record("edge.local", "10.0.0.5", 1), expires=1.0)
    core = core_for(source)
    core.handle(query("edge.local"), 0.0, UDP)
    core.handle(query("edge.local"), 0.1, UDP)
    assert core.stats.fastpath_hits == 0


def test_generation_change_invalidates_fast_path() -> None:
    source = make_source()
    core = core_for(source)
    core.handle(query("edge.local"), 0.0, UDP)
    source.set_records([a_record("edge.local", "10.0.0.99", 120)])
    reply = reply_of(core.handle(query("edge.local"), 0.1, UDP))
    assert core.stats.fastpath_hits == 0
    assert [str(r.rdata) for r in reply.rr] == ["10.0.0.99"]


def test_nxdomain_from_lookup_is_never_fast_pathed_but_nodata_is() -> None:
    core = core_for()
    core.handle(query("edge.local", "MX"), 0.0, UDP)
    core.handle(query("edge.local", "MX"), 0.1, UDP)
    assert core.stats.fastpath_hits == 1


def test_queries_with_edns_options_bypass_the_fast_path() -> None:
    q = DNSRecord.question("edge.local")
    q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, b"\x00\x01\x18\x00\x0a\x00\x00")]))
    data = bytes(q.pack())
    core = core_for()
    core.handle(data, 0.0, UDP)
    core.handle(data, 0.1, UDP)
    assert core.stats.fastpath_hits == 0


def test_udp_and_tcp_have_separate_fast_paths() -> None:
    core = core_for()
    data = query("big.local", "TXT")
    assert reply_of(core.handle(data, 0.0, UDP)).header.tc == 1
    assert reply_of(core.handle(data, 0.1, TCP)).header.tc == 0


def test_answers_only_for_asked_names_even_if_source_returns_more() -> None:
    class Sloppy(AgingSource):
        def lookup(self, name: str, rtype: int, now: float) -> LookupResult:
            return LookupResult.found([a_record("other.local", "10.9.9.9", 60)])

    reply = reply_of(core_for(Sloppy()).handle(query("edge.local"), 0, UDP))
    assert reply.rr == []
    assert reply.header.rcode == 0


def test_source_errors_become_servfail() -> None:
    class Broken(AgingSource):
        def lookup(self, name: str, rtype: int, now: float) -> LookupResult:
            raise RuntimeError("boom")

    core = core_for(Broken())
    assert reply_of(core.handle(query("edge.local"), 0, UDP)).header.rcode == 2
    assert core.stats.source_errors == 1


def test_non_in_class_is_foreign() -> None:
    q = DNSRecord.question("version.bind", "TXT", "CH")
    assert reply_of(core_for().handle(bytes(q.pack()), 0, UDP)).header.rcode == 5


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_zone_transfers_refused(qtype: str) -> None:
    assert reply_of(core_for().handle(query("edge.local", qtype), 0, UDP)).header.rcode == 5


def test_recursion_desired_is_echoed_and_ra_follows_config() -> None:
    q = DNSRecord.question("edge.local")
    q.header.rd = 0
    reply = reply_of(core_for().handle(bytes(q.pack()), 0, UDP))
    assert reply.header.rd == 0
    assert reply.header.ra == 0
    recursive = reply_of(core_for(recursive=True).handle(query("edge.local"), 0, UDP))
    assert recursive.header.rd == 1
    assert recursive.header.ra == 1

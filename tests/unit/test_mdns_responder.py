"""The sans-IO responder engine, driven with simulated time and a predictable rng."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest
from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    MX,
    NS,
    NSEC,
    PTR,
    QTYPE,
    RR,
    SRV,
    TXT,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    EDNSOption,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edgeagent.dns.records import CACHE_FLUSH, UNICAST_RESPONSE, Record, RType
from edgeagent.errors import ProtocolError
from edgeagent.mdns.responder import (
    Effect,
    InterfaceState,
    Renamed,
    RenameKind,
    Responder,
    Send,
    StateChanged,
    _parse,
    _parse_full,
    _parse_records,
    _rdata_bytes,
    _Seen,
    compare_record_sets,
)
from edgeagent.mdns.table import RecordTable, ServiceSpec, name_key
from edgeagent.net.model import InterfaceInfo

ETH0 = InterfaceInfo("eth0", 2, ("10.77.0.5",), ("fe80::5",))
ETH1 = InterfaceInfo("eth1", 3, ("10.78.0.5",), ())
PEER = ("10.77.0.9", 5353)
GREENHOUSE = ServiceSpec(id="web", type="_http._tcp", instance="Greenhouse 1", port=80)
INSTANCE_LABEL = DNSLabel([b"Greenhouse 1", b"_http", b"_tcp", b"local"])


class MidRng(random.Random):
    """``uniform(a, b)`` always returns the middle: times become exact and predictable."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


@dataclass
class FakeCache:
    inserted: list[tuple[str, Record, str]] = field(default_factory=list)
    expired: list[float] = field(default_factory=list)

    def insert(self, now: float, iface_name: str, record: Record, *, source: str) -> bool:
        self.inserted.append((iface_name, record, source))
        return True

    def expire(self, now: float) -> None:
        self.expired.append(now)

    def known_answers(self, now: float, iface: str, name: str, rtype: int) -> list[Record]:
        return []


def make_table(*services: ServiceSpec, host: str = "edge") -> RecordTable:
    return RecordTable(hosts=[host], services=list(services), ttl=120)


def make_responder(
    *services: ServiceSpec, interfaces: tuple[InterfaceInfo, ...] = (ETH0,), **kwargs: object
) -> Responder:
    responder = Responder(make_table(*services), rng=MidRng(), **kwargs)  # type: ignore[arg-type]
    responder.set_interfaces(0.0, interfaces)
    return responder


def run_until(responder: Responder, end: float) -> list[tuple[float, Effect]]:
    """Fire the engine's timers up to ``end``, recording each effect with its time."""
    seen: list[tuple[float, Effect]] = []
    while True:
        deadline = responder.next_deadline()
        if deadline is None or deadline > end:
            return seen
        seen.extend((deadline, effect) for effect in responder.on_timer(deadline))


def established(services: tuple[ServiceSpec, ...] = (), **kwargs: object) -> Responder:
    responder = make_responder(*services, **kwargs)  # type: ignore[arg-type]
    responder.start(0.0)
    run_until(responder, 5.0)
    return responder


def sends(effects: list[Effect] | list[tuple[float, Effect]]) -> list[Send]:
    items = [e[1] if isinstance(e, tuple) else e for e in effects]
    return [e for e in items if isinstance(e, Send)]


def parse(send: Send) -> DNSRecord:
    return DNSRecord.parse(send.payload)


def query(
    name: str, rtype: int = QTYPE.A, *, qu: bool = False, ident: int = 0, known: tuple[RR, ...] = ()
) -> bytes:
    message = DNSRecord(DNSHeader(id=ident, bitmap=0))
    message.add_question(DNSQuestion(name, rtype, 1 | (UNICAST_RESPONSE if qu else 0)))
    for rr in known:
        message.add_answer(rr)
    return bytes(message.pack())


def response(*rrs: RR) -> bytes:
    message = DNSRecord(DNSHeader(id=0, bitmap=0, qr=1, aa=1))
    for rr in rrs:
        message.add_answer(rr)
    return bytes(message.pack())


def a_rr(name: str, address: str, *, ttl: int = 120, flush: bool = True) -> RR:
    return RR(name, QTYPE.A, rclass=1 | (CACHE_FLUSH if flush else 0), ttl=ttl, rdata=A(address))


# ---- probing and announcing ------------------------------------------------------------------


def test_three_probes_250ms_apart_after_random_delay_then_two_announcements() -> None:
    responder = make_responder()
    responder.start(0.0)
    timeline = run_until(responder, 5.0)
    probe_times = sorted({t for t, s in timeline if isinstance(s, Send) and not parse(s).header.qr})
    # MidRng: the initial delay is 125 ms (of 0-250 ms, RFC 6762 §8.1).
    assert probe_times == [0.125, 0.375, 0.625]
    announce_times = sorted({t for t, s in timeline if isinstance(s, Send) and parse(s).header.qr})
    assert announce_times == [0.875, 1.875]  # §8.3: established 250 ms after the third probe
    assert responder.interface_state("eth0") is InterfaceState.ESTABLISHED


def test_probe_is_qu_any_with_proposed_records_in_authority() -> None:
    responder = make_responder()
    responder.start(0.0)
    first = sends(responder.on_timer(0.125))
    assert {s.family for s in first} == {4, 6}
    assert all(s.dest is None for s in first)
    probe = parse(first[0])
    assert [str(q.qname) for q in probe.questions] == ["edge.local."]
    assert probe.questions[0].qtype == QTYPE.ANY
    assert probe.questions[0].qclass & UNICAST_RESPONSE
    auth = {(str(rr.rname), rr.rtype, str(rr.rdata)) for rr in probe.auth}
    assert ("edge.local.", QTYPE.A, "10.77.0.5") in auth
    assert ("edge.local.", QTYPE.AAAA, "fe80::5") in auth
    assert all(not rr.rclass & CACHE_FLUSH for rr in probe.auth)


def test_announcements_carry_every_record_with_cache_flush_on_unique_ones() -> None:
    responder = make_responder(GREENHOUSE)
    responder.start(0.0)
    timeline = run_until(responder, 0.9)
    announcement = parse([s for _, s in timeline if isinstance(s, Send)][-1])
    assert announcement.header.qr
    assert announcement.header.aa
    assert announcement.header.id == 0
    by_type = {(QTYPE[rr.rtype], bool(rr.rclass & CACHE_FLUSH)) for rr in announcement.rr}
    assert ("A", True) in by_type
    assert ("SRV", True) in by_type
    assert ("TXT", True) in by_type
    assert ("PTR", False) in by_type  # shared service PTR: no cache-flush (§10.2)


def test_no_answers_while_probing() -> None:
    responder = make_responder()
    responder.start(0.0)
    responder.on_timer(0.125)
    assert sends(responder.on_packet(0.2, "eth0", 4, PEER, query("edge.local"))) == []


def test_state_changes_are_reported() -> None:
    responder = make_responder()
    start = responder.start(0.0)
    assert StateChanged("eth0", InterfaceState.PROBING) in start
    timeline = [e for _, e in run_until(responder, 5.0)]
    assert StateChanged("eth0", InterfaceState.ANNOUNCING) in timeline
    assert StateChanged("eth0", InterfaceState.ESTABLISHED) in timeline


# ---- conflicts -------------------------------------------------------------------------------


def test_conflicting_response_while_probing_renames_host_and_reprobes() -> None:
    responder = make_responder()
    responder.start(0.0)
    responder.on_timer(0.125)
    effects = responder.on_packet(0.2, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.9")))
    assert Renamed(RenameKind.HOST, "edge", "edge-2") in effects
    assert responder.table.hosts == ("edge-2",)
    timeline = run_until(responder, 5.0)
    probes = [parse(s) for _, s in timeline if isinstance(s, Send) and not parse(s).header.qr]
    assert probes
    assert all(str(p.questions[0].qname) == "edge-2.local." for p in probes)
    assert responder.established("eth0") == {name_key("edge-2.local")}


def test_instances_named_after_the_host_follow_its_rename() -> None:
    ssh = ServiceSpec(id="ssh", type="_ssh._tcp", instance="edge", port=22)
    responder = make_responder(ssh, GREENHOUSE)
    responder.start(0.0)
    responder.on_timer(0.125)
    # The other device answers for the host and for its same-named ssh instance at once.
    other_srv = RR(
        "edge._ssh._tcp.local",
        QTYPE.SRV,
        rclass=1 | CACHE_FLUSH,
        ttl=120,
        rdata=SRV(0, 0, 22, "edge.local"),
    )
    effects = responder.on_packet(
        0.2, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.9"), other_srv)
    )
    renames = [e for e in effects if isinstance(e, Renamed)]
    assert renames == [
        Renamed(RenameKind.HOST, "edge", "edge-2"),
        Renamed(RenameKind.SERVICE, "edge", "edge-2", "ssh"),
    ]
    instances = {s.id: s.instance for s in responder.table.services}
    assert instances == {"ssh": "edge-2", "web": "Greenhouse 1"}
    assert responder.stats.conflicts == 1


def test_instance_renamed_earlier_from_the_host_name_follows_the_host_too() -> None:
    ssh = ServiceSpec(id="ssh", type="_ssh._tcp", instance="edge", port=22)
    responder = make_responder(ssh)
    responder.start(0.0)
    responder.on_timer(0.125)
    other_srv = RR(
        "edge._ssh._tcp.local",
        QTYPE.SRV,
        rclass=1 | CACHE_FLUSH,
        ttl=120,
        rdata=SRV(0, 0, 22, "other.local"),
    )
    responder.on_packet(0.2, "eth0", 4, PEER, response(other_srv))
    assert responder.table.services[0].instance == "edge (2)"
    effects = responder.on_packet(0.3, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.9")))
    assert Renamed(RenameKind.SERVICE, "edge (2)", "edge-2", "ssh") in effects
    assert responder.table.services[0].instance == "edge-2"


def test_second_conflict_counts_up() -> None:
    responder = make_responder()
    responder.start(0.0)
    responder.on_timer(0.125)
    responder.on_packet(0.2, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.9")))
    effects = responder.on_packet(0.3, "eth0", 4, PEER, response(a_rr("edge-2.local", "10.77.0.9")))
    assert Renamed(RenameKind.HOST, "edge-2", "edge-3") in effects


def test_service_instance_conflict_renames_with_parenthesised_number() -> None:
    responder = make_responder(GREENHOUSE)
    responder.start(0.0)
    responder.on_timer(0.125)
    other_srv = RR(
        INSTANCE_LABEL,
        QTYPE.SRV,
        rclass=1 | CACHE_FLUSH,
        ttl=120,
        rdata=SRV(0, 0, 80, "other.local"),
    )
    effects = responder.on_packet(0.2, "eth0", 4, PEER, response(other_srv))
    assert Renamed(RenameKind.SERVICE, "Greenhouse 1", "Greenhouse 1 (2)", "web") in effects
    assert responder.table.services[0].instance == "Greenhouse 1 (2)"


def test_identical_data_from_another_host_is_not_a_conflict() -> None:
    responder = make_responder()
    responder.start(0.0)
    responder.on_timer(0.125)
    effects = responder.on_packet(0.2, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.5")))
    assert not [e for e in effects if isinstance(e, Renamed)]


def test_multihomed_device_does_not_conflict_with_its_other_interface() -> None:
    responder = make_responder(interfaces=(ETH0, ETH1))
    responder.start(0.0)
    responder.on_timer(0.125)
    # eth1's announcement (10.78.0.5) heard on eth0: our own data, no conflict.
    effects = responder.on_packet(0.2, "eth0", 4, PEER, response(a_rr("edge.local", "10.78.0.5")))
    assert not [e for e in effects if isinstance(e, Renamed)]


def test_conflict_after_establishment_reprobes_then_renames_when_defended() -> None:
    responder = established()
    effects = responder.on_packet(10.0, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.9")))
    assert not [e for e in effects if isinstance(e, Renamed)]  # §9: probe again first
    assert responder.interface_state("eth0") is InterfaceState.PROBING
    run_until(responder, 10.2)
    effects = responder.on_packet(10.3, "eth0", 4, PEER, response(a_rr("edge.local", "10.77.0.9")))
    assert Renamed(RenameKind.HOST, "edge", "edge-2") in effects


def test_conflict_rate_limit_waits_five_seconds() -> None:
    responder = make_responder()
    responder.start(0.0)
    responder.on_timer(0.125)
    host = "edge"
    for i in range(15):
        responder.on_packet(
            0.2 + i * 0.01, "eth0", 4, PEER, response(a_rr(f"{host}.local", "10.77.0.9"))
        )
        host = responder.table.hosts[0]
    deadline = responder.next_deadline()
    assert deadline is not None
    assert deadline >= 0.34 + 5.0 - 0.01


def test_simultaneous_probe_tie_break_loser_defers_one_second() -> None:
    responder = make_responder(interfaces=(InterfaceInfo("eth0", 2, ("10.77.0.5",)),))
    responder.start(0.0)
    responder.on_timer(0.125)  # our first probe
    their_probe = DNSRecord(DNSHeader(id=0, bitmap=0))
    their_probe.add_question(DNSQuestion("edge.local", QTYPE.ANY, 1 | UNICAST_RESPONSE))
    their_probe.add_auth(a_rr("edge.local", "10.77.0.200", flush=False))  # later than ours
    responder.on_packet(0.2, "eth0", 4, PEER, bytes(their_probe.pack()))
    assert responder.stats.tie_breaks_lost == 1
    timeline = run_until(responder, 1.15)
    assert not [s for _, s in timeline if isinstance(s, Send)]  # deferring
    timeline = run_until(responder, 5.0)
    assert min(t for t, s in timeline if isinstance(s, Send)) == 1.2


def test_simultaneous_probe_tie_break_winner_continues() -> None:
    responder = make_responder(interfaces=(InterfaceInfo("eth0", 2, ("10.77.0.5",)),))
    responder.start(0.0)
    responder.on_timer(0.125)
    their_probe = DNSRecord(DNSHeader(id=0, bitmap=0))
    their_probe.add_question(DNSQuestion("edge.local", QTYPE.ANY, 1 | UNICAST_RESPONSE))
    their_probe.add_auth(a_rr("edge.local", "10.77.0.1", flush=False))
    responder.on_packet(0.2, "eth0", 4, PEER, bytes(their_probe.pack()))
    assert responder.stats.tie_breaks_lost == 0
    run_until(responder, 1.0)
    assert responder.established("eth0") == {name_key("edge.local")}


def test_compare_record_sets_orders_by_type_then_rdata_then_length() -> None:
    low = Record("x.local", RType.A, 120, A("10.0.0.1"), unique=True)
    high = Record("x.local", RType.A, 120, A("10.0.0.2"), unique=True)
    assert compare_record_sets([low], [high]) == -1
    assert compare_record_sets([high], [low]) == 1
    assert compare_record_sets([low], [low]) == 0
    assert compare_record_sets([low, high], [low]) == 1


# ---- answering -------------------------------------------------------------------------------


def test_unique_answer_is_multicast_at_once_with_this_interfaces_address() -> None:
    responder = established(interfaces=(ETH0, ETH1))
    out = sends(responder.on_packet(10.0, "eth1", 4, PEER, query("edge.local")))
    assert len(out) == 1
    assert out[0].iface == "eth1"
    assert out[0].dest is None
    assert out[0].family == 4
    answers = parse(out[0]).rr
    assert [str(rr.rdata) for rr in answers if rr.rtype == QTYPE.A] == ["10.78.0.5"]
    out = sends(responder.on_packet(10.0, "eth0", 4, PEER, query("edge.local")))
    assert [str(rr.rdata) for rr in parse(out[0]).rr if rr.rtype == QTYPE.A] == ["10.77.0.5"]


def test_shared_answer_waits_20_to_120ms_and_aggregates() -> None:
    responder = established((GREENHOUSE,))
    # Nothing yet: the PTR is shared, so the answer waits (§6), here the middle of 20-120 ms.
    assert not sends(
        responder.on_packet(10.0, "eth0", 4, PEER, query("_http._tcp.local", QTYPE.PTR))
    )
    assert not sends(run_until(responder, 10.069))
    timeline = run_until(responder, 10.2)
    assert [t for t, _ in timeline if t > 10.0] == [10.07]
    out = sends(timeline)
    assert len(out) == 1
    message = parse(out[0])
    assert [QTYPE[rr.rtype] for rr in message.rr] == ["PTR"]
    assert {QTYPE[rr.rtype] for rr in message.ar} >= {"SRV", "TXT", "A"}


def test_same_record_not_multicast_twice_within_a_second() -> None:
    responder = established()
    assert sends(responder.on_packet(10.0, "eth0", 4, PEER, query("edge.local")))
    assert not sends(responder.on_packet(10.5, "eth0", 4, PEER, query("edge.local")))
    assert sends(responder.on_packet(11.1, "eth0", 4, PEER, query("edge.local")))


def test_qu_question_gets_unicast_reply_when_recently_multicast() -> None:
    responder = established()  # announced at 1.875
    out = sends(responder.on_packet(5.0, "eth0", 4, PEER, query("edge.local", qu=True)))
    assert [s.dest for s in out] == [PEER]
    assert parse(out[0]).header.id == 0
    # RFC 6762 §5.4: not multicast within a quarter TTL (30 s): multicast to refresh caches.
    out = sends(responder.on_packet(40.0, "eth0", 4, PEER, query("edge.local", qu=True)))
    assert [s.dest for s in out] == [None]


def test_legacy_unicast_echoes_id_and_question_caps_ttl_and_clears_flush_bit() -> None:
    responder = established()
    src = ("10.77.0.9", 40000)
    out = sends(responder.on_packet(10.0, "eth0", 4, src, query("Edge.local", ident=0x1234)))
    assert len(out) == 1
    assert out[0].dest == src
    reply = parse(out[0])
    assert reply.header.id == 0x1234
    assert reply.header.qr
    assert [str(q.qname) for q in reply.questions] == ["Edge.local."]
    assert [str(rr.rdata) for rr in reply.rr] == ["10.77.0.5"]
    assert all(rr.ttl <= 10 and rr.rclass == 1 for rr in reply.rr + reply.ar)


def test_known_answer_suppression() -> None:
    responder = established()
    fresh = a_rr("edge.local", "10.77.0.5", ttl=100, flush=False)
    assert not sends(
        responder.on_packet(10.0, "eth0", 4, PEER, query("edge.local", known=(fresh,)))
    )
    assert responder.stats.known_answers_suppressed == 1
    stale = a_rr("edge.local", "10.77.0.5", ttl=30, flush=False)  # below half the TTL (§7.1)
    assert sends(responder.on_packet(10.0, "eth0", 4, PEER, query("edge.local", known=(stale,))))


def test_probe_for_our_name_is_defended_by_multicast_at_once() -> None:
    responder = established()
    probe = DNSRecord(DNSHeader(id=0, bitmap=0))
    probe.add_question(DNSQuestion("edge.local", QTYPE.ANY, 1 | UNICAST_RESPONSE))
    probe.add_auth(a_rr("edge.local", "10.77.0.9", flush=False))
    out = sends(responder.on_packet(10.0, "eth0", 4, PEER, bytes(probe.pack())))
    assert out
    assert all(s.dest is None for s in out)


def test_duplicate_answer_from_another_responder_cancels_ours() -> None:
    responder = established((GREENHOUSE,))
    responder.on_packet(10.0, "eth0", 4, PEER, query("_http._tcp.local", QTYPE.PTR))
    ptr = RR("_http._tcp.local", QTYPE.PTR, ttl=120, rdata=PTR(INSTANCE_LABEL))
    responder.on_packet(10.03, "eth0", 4, PEER, response(ptr))
    assert responder.stats.duplicate_answers_suppressed == 1
    assert not sends(run_until(responder, 10.2))


def test_own_looped_back_packet_is_ignored() -> None:
    responder = established()
    out = sends(responder.on_packet(10.0, "eth0", 4, PEER, query("edge.local")))
    before = responder.stats.ignored
    own = ("10.77.0.5", 5353)
    assert responder.on_packet(10.001, "eth0", 4, own, out[0].payload) == []
    assert responder.stats.ignored == before + 1


def test_identical_packet_from_another_host_is_not_mistaken_for_ours() -> None:
    responder = established()
    out = sends(responder.query(10.0, "other.local", QTYPE.A))
    responder.on_packet(10.001, "eth0", 4, PEER, out[0].payload)  # the same question, theirs
    assert responder.stats.ignored == 0
    assert responder.stats.queries_received == 1


def test_responses_are_cached_per_interface_with_source() -> None:
    cache = FakeCache()
    responder = established(cache=cache)
    responder.on_packet(10.0, "eth0", 4, PEER, response(a_rr("other.local", "10.77.0.9")))
    assert [(i, r.name, s) for i, r, s in cache.inserted] == [("eth0", "other.local", PEER[0])]


def test_client_query_sends_qm_question_on_every_interface_and_family() -> None:
    responder = established(interfaces=(ETH0, ETH1))
    out = sends(responder.query(10.0, "other.local", QTYPE.A))
    assert {(s.iface, s.family) for s in out} == {("eth0", 4), ("eth0", 6), ("eth1", 4)}
    question = parse(out[0]).questions[0]
    assert str(question.qname) == "other.local."
    assert question.qclass == 1
    qu = sends(responder.query(11.0, "other.local", QTYPE.A, unicast=True))
    assert parse(qu[0]).questions[0].qclass == 1 | UNICAST_RESPONSE
    v4 = sends(responder.query(12.0, "other.local", QTYPE.A, families=(4,)))
    assert {(s.iface, s.family) for s in v4} == {("eth0", 4), ("eth1", 4)}


# ---- table and interface changes ---------------------------------------------------------------


def test_runtime_service_is_probed_and_announced_and_removal_says_goodbye() -> None:
    responder = established()
    table = make_table(GREENHOUSE)
    responder.update_table(10.0, table)
    assert responder.interface_state("eth0") is InterfaceState.PROBING
    timeline = run_until(responder, 15.0)
    probes = [parse(s) for _, s in timeline if isinstance(s, Send) and not parse(s).header.qr]
    assert {str(p.questions[0].qname) for p in probes} == {"Greenhouse\\0321._http._tcp.local."}
    effects = responder.update_table(20.0, make_table())
    goodbye = [parse(s) for s in sends(effects)]
    assert goodbye
    ttl0 = {QTYPE[rr.rtype] for m in goodbye for rr in m.rr if rr.ttl == 0}
    assert ttl0 == {"PTR", "SRV", "TXT"}


def test_removed_address_gets_goodbye_and_new_one_is_announced() -> None:
    responder = established(interfaces=(InterfaceInfo("eth0", 2, ("10.77.0.5",)),))
    effects = responder.set_interfaces(10.0, [InterfaceInfo("eth0", 2, ("10.77.0.6",))])
    messages = [parse(s) for s in sends(effects)]
    goodbyes = [(str(rr.rdata), rr.ttl) for m in messages for rr in m.rr if rr.rtype == QTYPE.A]
    assert ("10.77.0.5", 0) in goodbyes
    assert ("10.77.0.6", 120) in goodbyes


def test_new_interface_probes_and_announces_there() -> None:
    responder = established()
    responder.set_interfaces(10.0, [ETH0, ETH1])
    assert responder.interface_state("eth1") is InterfaceState.PROBING
    timeline = run_until(responder, 15.0)
    assert {s.iface for _, s in timeline if isinstance(s, Send)} == {"eth1"}
    assert responder.interface_state("eth1") is InterfaceState.ESTABLISHED


def test_shutdown_sends_goodbyes_for_everything_published() -> None:
    responder = established((GREENHOUSE,))
    out = sends(responder.shutdown(20.0))
    assert {s.family for s in out} == {4, 6}
    rrs = [rr for s in out for rr in parse(s).rr]
    assert rrs
    assert all(rr.ttl == 0 for rr in rrs)
    assert {QTYPE[rr.rtype] for rr in rrs} >= {"A", "AAAA", "PTR", "SRV", "TXT"}
    assert responder.shutdown(21.0) == []  # idempotent
    assert responder.next_deadline() is None


def test_packets_stay_within_1460_bytes() -> None:
    services = [
        ServiceSpec(id=f"s{i}", type="_http._tcp", instance=f"Service number {i:03d}", port=80)
        for i in range(40)
    ]
    responder = make_responder(*services)
    responder.start(0.0)
    timeline = run_until(responder, 5.0)
    out = sends(timeline) + sends(responder.shutdown(6.0))
    assert len(out) > 10
    assert all(len(s.payload) <= 1460 for s in out)


# ---- malformed input -------------------------------------------------------------------------


def test_garbage_is_counted_and_dropped() -> None:
    responder = established()
    assert responder.on_packet(10.0, "eth0", 4, PEER, b"\x00\x01garbage") == []
    assert responder.stats.malformed_dropped == 1
    assert responder.on_packet(10.0, "wlan9", 4, PEER, query("edge.local")) == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), port=st.sampled_from([5353, 40000]))
def test_arbitrary_bytes_never_raise(data: bytes, port: int) -> None:
    responder = established((GREENHOUSE,))
    responder.on_packet(10.0, "eth0", 4, ("10.77.0.9", port), data)
    responder.on_timer(11.0)


@settings(max_examples=200, deadline=None)
@given(
    header=st.binary(min_size=12, max_size=12),
    body=st.binary(max_size=200),
)
def test_mutated_real_packets_never_raise(header: bytes, body: bytes) -> None:
    responder = established((GREENHOUSE,))
    base = query("_http._tcp.local", QTYPE.PTR)
    responder.on_packet(10.0, "eth0", 4, PEER, header + base[12:] + body)
    responder.on_packet(10.0, "eth0", 4, PEER, base[:12] + body)
    responder.on_timer(11.0)


def test_reverse_ptr_claimed_by_another_stack_is_withdrawn_not_fought() -> None:
    # Avahi on the same host maps our address to its own host name, with cache-flush.
    responder = established()
    reverse = "5.0.77.10.in-addr.arpa"
    assert sends(responder.on_packet(10.0, "eth0", 4, PEER, query(reverse, QTYPE.PTR)))
    theirs = RR(reverse, QTYPE.PTR, rclass=1 | CACHE_FLUSH, ttl=120, rdata=PTR("avahi.local"))
    effects = responder.on_packet(11.0, "eth0", 4, PEER, response(theirs))
    assert not [e for e in effects if isinstance(e, Renamed)]
    goodbyes = [rr for s in sends(effects) for rr in parse(s).rr]
    assert {(str(rr.rdata), rr.ttl) for rr in goodbyes} == {("edge.local.", 0)}  # v4 and v6
    assert responder.stats.records_withdrawn == 1
    assert not sends(responder.on_packet(12.5, "eth0", 4, PEER, query(reverse, QTYPE.PTR)))
    assert sends(responder.on_packet(12.5, "eth0", 4, PEER, query("edge.local")))  # name kept


# ---- simulated LANs: several engines exchanging packets ------------------------------------


class SimulatedLan:
    """Engines on one link; every multicast reaches every other engine after ``latency``."""

    def __init__(self, hosts: list[str], seed: int, latency: float = 0.001) -> None:
        self.latency = latency
        self.engines: list[tuple[str, Responder]] = []
        self.queue: list[tuple[float, int, int, bytes]] = []  # (time, seq, sender, payload)
        self.seq = 0
        for i, host in enumerate(hosts, start=1):
            address = f"10.77.0.{i}"
            engine = Responder(make_table(host=host), rng=random.Random(seed * 1000 + i))
            engine.set_interfaces(0.0, [InterfaceInfo("eth0", 2, (address,))])
            self.engines.append((address, engine))

    def deliver(self, now: float, sender: int, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                assert len(effect.payload) <= 1460
                self.seq += 1
                self.queue.append((now + self.latency, self.seq, sender, effect.payload))

    def run(self, until: float) -> None:
        for i, (_, engine) in enumerate(self.engines):
            self.deliver(0.0, i, engine.start(0.0))
        now = 0.0
        while now < until:
            times = [t for t, *_ in self.queue]
            times += [d for _, e in self.engines if (d := e.next_deadline()) is not None]
            if not times:
                return
            now = min(times)
            due = sorted(item for item in self.queue if item[0] <= now)
            self.queue = [item for item in self.queue if item[0] > now]
            for _, _, sender, payload in due:
                src = (self.engines[sender][0], 5353)
                for i, (_, engine) in enumerate(self.engines):
                    if i != sender:
                        self.deliver(now, i, engine.on_packet(now, "eth0", 4, src, payload))
            for i, (_, engine) in enumerate(self.engines):
                deadline = engine.next_deadline()
                if deadline is not None and deadline <= now:
                    self.deliver(now, i, engine.on_timer(now))
                    after = engine.next_deadline()
                    assert after is None or after > now  # the adapter's timer never spins


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(2, 5))
def test_simulated_devices_with_one_name_end_with_distinct_established_names(
    seed: int, count: int
) -> None:
    lan = SimulatedLan(["same"] * count, seed)
    lan.run(until=30.0)
    names = [engine.table.hosts[0] for _, engine in lan.engines]
    assert len(set(names)) == count, names
    for _, engine in lan.engines:
        assert engine.interface_state("eth0") is InterfaceState.ESTABLISHED
        assert engine.established("eth0") == {name_key(f"{engine.table.hosts[0]}.local")}


def test_simulated_devices_with_distinct_names_never_rename() -> None:
    lan = SimulatedLan([f"node-{i}" for i in range(10)], seed=1)
    lan.run(until=10.0)
    assert [engine.table.hosts[0] for _, engine in lan.engines] == [f"node-{i}" for i in range(10)]
    assert all(engine.stats.conflicts == 0 for _, engine in lan.engines)


# ---- a state machine over the whole API ------------------------------------------------------

IFACE_POOL = [
    ETH0,
    InterfaceInfo("eth0", 2, ("10.77.0.6",), ("fe80::5",)),
    ETH1,
    InterfaceInfo("wlan0", 4, (), ("fe80::7",)),
]
SERVICE_POOL = [
    GREENHOUSE,
    ServiceSpec(id="ssh", type="_ssh._tcp", instance="edge", port=22),
    ServiceSpec(id="dot", type="_http._tcp", instance="a.b c", port=8080),
]
NAMES = [
    "edge.local",
    "edge-2.local",
    "other.local",
    "_http._tcp.local",
    "Greenhouse 1._http._tcp.local",
    "_services._dns-sd._udp.local",
    "5.0.77.10.in-addr.arpa",
]
HOSTS = ["edge", "edge-2", "other"]
TYPES = [QTYPE.A, QTYPE.AAAA, QTYPE.PTR, QTYPE.SRV, QTYPE.TXT, QTYPE.ANY, QTYPE.NSEC]


class ResponderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.responder = Responder(make_table(), rng=random.Random(7), cache=FakeCache())
        self.responder.set_interfaces(0.0, [ETH0])
        self.check(self.responder.start(0.0))

    def check(self, effects: list[Effect]) -> None:
        current = {i.name: i for i in self.responder.interfaces}
        for send in sends(effects):
            assert len(send.payload) <= 1460
            message = parse(send)
            info = current.get(send.iface)
            for rr in message.rr + message.ar:
                if rr.ttl == 0 or info is None or rr.rtype not in (QTYPE.A, QTYPE.AAAA):
                    continue
                assert str(rr.rdata) in info.addresses, (send.iface, str(rr.rdata))
                owner = name_key(str(rr.rname))
                assert owner in self.responder.established(send.iface)

    @rule(dt=st.floats(0.0, 3.0))
    def advance(self, dt: float) -> None:
        self.now += dt
        while (deadline := self.responder.next_deadline()) is not None and deadline <= self.now:
            self.check(self.responder.on_timer(deadline))
            after = self.responder.next_deadline()
            assert after is None or after > deadline

    @rule(picks=st.sets(st.integers(0, len(IFACE_POOL) - 1), max_size=3))
    def interfaces(self, picks: set[int]) -> None:
        chosen = {IFACE_POOL[i].name: IFACE_POOL[i] for i in sorted(picks)}
        self.check(self.responder.set_interfaces(self.now, list(chosen.values())))

    @rule(picks=st.sets(st.integers(0, len(SERVICE_POOL) - 1)), host=st.sampled_from(HOSTS))
    def table(self, picks: set[int], host: str) -> None:
        table = make_table(*(SERVICE_POOL[i] for i in sorted(picks)), host=host)
        self.check(self.responder.update_table(self.now, table))

    @rule(
        name=st.sampled_from(NAMES),
        rtype=st.sampled_from(TYPES),
        qu=st.booleans(),
        port=st.sampled_from([5353, 40000]),
        iface=st.sampled_from(["eth0", "eth1", "wlan0", "nope"]),
    )
    def ask(self, name: str, rtype: int, qu: bool, port: int, iface: str) -> None:
        data = query(name, rtype, qu=qu, ident=7)
        self.check(self.responder.on_packet(self.now, iface, 4, ("10.77.0.9", port), data))

    @rule(name=st.sampled_from(NAMES), address=st.sampled_from(["10.77.0.5", "10.77.0.9"]))
    def hear(self, name: str, address: str) -> None:
        data = response(a_rr(name, address))
        self.check(self.responder.on_packet(self.now, "eth0", 4, ("10.77.0.9", 5353), data))

    @rule(data=st.binary(max_size=64))
    def garbage(self, data: bytes) -> None:
        self.check(self.responder.on_packet(self.now, "eth0", 4, ("10.77.0.9", 5353), data))

    @rule()
    def client_query(self) -> None:
        self.check(self.responder.query(self.now, "other.local", QTYPE.A))

    @invariant()
    def table_names_are_probed_or_established(self) -> None:
        unique = {name_key(n) for n in self.responder.table.unique_names()}
        for info in self.responder.interfaces:
            assert self.responder.established(info.name) <= unique


ResponderMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
test_responder_state_machine = ResponderMachine.TestCase


def test_direct_unicast_query_from_5353_gets_a_unicast_mdns_reply() -> None:
    responder = established()  # nothing multicast for a while at t=100: QU rule would multicast
    data = query("edge.local")
    out = sends(responder.on_packet(100.0, "eth0", 4, PEER, data, to_group=False))
    assert [s.dest for s in out] == [PEER]  # RFC 6762 §5.5
    reply = parse(out[0])
    assert reply.header.id == 0
    assert all(rr.rclass & CACHE_FLUSH for rr in reply.rr)  # an mDNS reply, not legacy


def test_query_lists_known_answers_and_cuts_them_to_one_packet() -> None:
    from edgeagent.dns.records import ptr_record
    from edgeagent.mdns.cache import Cache

    cache = Cache()
    responder = Responder(make_table(), rng=MidRng(), cache=cache)
    responder.set_interfaces(0.0, (ETH0,))
    responder.start(0.0)
    for i in range(3):
        cache.insert(0.0, "eth0", ptr_record("_x._tcp.local", f"peer{i}._x._tcp.local", 120))
    send = next(x for x in sends(responder.query(1.0, "_x._tcp.local", RType.PTR)) if x.family == 4)
    packet = parse(send)
    assert [str(q.qname) for q in packet.questions] == ["_x._tcp.local."]
    assert sorted(str(rr.rdata) for rr in packet.rr) == [
        f"peer{i}._x._tcp.local." for i in range(3)
    ]
    assert all(rr.ttl == 119 for rr in packet.rr)
    for i in range(3, 80):  # far more than fit in one packet
        cache.insert(
            0.0, "eth0", ptr_record("_x._tcp.local", f"peer{i}-with-a-long-name._x._tcp.local", 120)
        )
    send = next(x for x in sends(responder.query(1.0, "_x._tcp.local", RType.PTR)) if x.family == 4)
    assert len(send.payload) <= 1460
    assert 3 < len(parse(send).rr) < 80


def _browsing_responder() -> Responder:
    from edgeagent.dns.records import ptr_record
    from edgeagent.mdns.cache import Cache

    cache = Cache()
    responder = Responder(make_table(), rng=MidRng(), cache=cache)
    responder.set_interfaces(0.0, (ETH0,))
    responder.start(0.0)
    for i in range(3):
        cache.insert(0.0, "eth0", ptr_record("_x._tcp.local", f"peer{i}._x._tcp.local", 120))
    return responder


def _peer_browse(known: list[str], *, qu: bool = False) -> bytes:
    rrs = tuple(
        RR("_x._tcp.local", QTYPE.PTR, ttl=120, rdata=PTR(f"{target}._x._tcp.local"))
        for target in known
    )
    return query("_x._tcp.local", QTYPE.PTR, qu=qu, known=rrs)


def test_duplicate_question_from_another_host_suppresses_ours() -> None:
    # RFC 6762 §7.3: a peer asked the same QM question, listing only answers we know too.
    responder = _browsing_responder()
    responder.on_packet(5.0, "eth0", 4, PEER, _peer_browse(["peer0", "peer1"]))
    out = responder.query(5.5, "_x._tcp.local", RType.PTR, suppress_duplicate=True)
    assert sends(out) == []
    assert responder.stats.duplicate_questions_suppressed == 1
    # Without the option (a one-shot resolve) the question goes out all the same.
    assert sends(responder.query(5.5, "_x._tcp.local", RType.PTR))


def test_duplicate_question_is_asked_when_it_lists_an_answer_we_lack() -> None:
    # Its known answer would silence a responder we have not heard from: ask ourselves.
    responder = _browsing_responder()
    responder.on_packet(5.0, "eth0", 4, PEER, _peer_browse(["peer0", "stranger"]))
    out = responder.query(5.5, "_x._tcp.local", RType.PTR, suppress_duplicate=True)
    assert {s.family for s in sends(out)} == {4, 6}
    assert responder.stats.duplicate_questions_suppressed == 0


def test_duplicate_question_counts_our_own_records_as_known() -> None:
    # A peer lists our own service instance: never in our cache, but we hold it ourselves.
    responder = established((GREENHOUSE,), cache=FakeCache())
    ours = RR("_http._tcp.local", QTYPE.PTR, ttl=120, rdata=PTR(INSTANCE_LABEL))
    responder.on_packet(10.0, "eth0", 4, PEER, query("_http._tcp.local", QTYPE.PTR, known=(ours,)))
    out = responder.query(10.2, "_http._tcp.local", RType.PTR, suppress_duplicate=True)
    assert sends(out) == []
    assert responder.stats.duplicate_questions_suppressed == 1


def test_duplicate_question_window_qu_and_truncation() -> None:
    responder = _browsing_responder()
    # Older than a second: ours goes out.
    responder.on_packet(5.0, "eth0", 4, PEER, _peer_browse([]))
    assert sends(responder.query(6.0, "_x._tcp.local", RType.PTR, suppress_duplicate=True))
    # A QU question draws unicast answers we never see: it does not count.
    responder.on_packet(7.0, "eth0", 4, PEER, _peer_browse([], qu=True))
    assert sends(responder.query(7.1, "_x._tcp.local", RType.PTR, suppress_duplicate=True))
    # A truncated query continues in another packet: its list is incomplete, not comparable.
    truncated = bytearray(_peer_browse([]))
    truncated[2] |= 0x02
    responder.on_packet(8.0, "eth0", 4, PEER, bytes(truncated))
    assert sends(responder.query(8.1, "_x._tcp.local", RType.PTR, suppress_duplicate=True))
    # Our own QU question is never suppressed.
    responder.on_packet(9.0, "eth0", 4, PEER, _peer_browse([]))
    out = responder.query(9.1, "_x._tcp.local", RType.PTR, unicast=True, suppress_duplicate=True)
    assert sends(out)
    assert responder.stats.duplicate_questions_suppressed == 0


# -- the lean query parser agrees with dnslib -------------------------------------------------

_labels = st.lists(
    st.text(min_size=1, max_size=12).filter(lambda t: len(t.encode()) <= 63), min_size=1, max_size=4
).map(lambda parts: [p.encode() for p in parts])


@st.composite
def _known_answer(draw: st.DrawFn) -> RR:
    name = DNSLabel([*draw(_labels), b"local"])
    ttl = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["A", "AAAA", "PTR", "SRV", "TXT"]))
    target = DNSLabel([*draw(_labels), b"local"])
    if kind == "A":
        return RR(name, QTYPE.A, ttl=ttl, rdata=A(draw(st.ip_addresses(v=4)).exploded))
    if kind == "AAAA":
        return RR(name, QTYPE.AAAA, ttl=ttl, rdata=AAAA(str(draw(st.ip_addresses(v=6)))))
    if kind == "PTR":
        return RR(name, QTYPE.PTR, ttl=ttl, rdata=PTR(target))
    if kind == "SRV":
        ports = draw(st.tuples(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535)))
        return RR(name, QTYPE.SRV, ttl=ttl, rdata=SRV(*ports, target=target))
    strings = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
    return RR(name, QTYPE.TXT, ttl=ttl, rdata=TXT(strings))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_labels, min_size=1, max_size=3),
    st.lists(_known_answer(), max_size=12),
    st.booleans(),
)
def test_lean_query_parser_agrees_with_dnslib(
    questions: list[list[bytes]], known: list[RR], unicast: bool
) -> None:
    message = DNSRecord(DNSHeader(id=7, bitmap=0))
    for labels in questions:
        qclass = 1 | (UNICAST_RESPONSE if unicast else 0)
        message.add_question(DNSQuestion(DNSLabel([*labels, b"local"]), QTYPE.PTR, qclass))
    for rr in known:
        message.add_answer(rr)
    data = bytes(message.pack())  # dnslib compresses names, as real queriers do
    lean, full = _parse(data), _parse_full(data)
    assert lean.known == full.known
    assert [(name_key(q.label), q.rtype, q.unicast) for q in lean.questions] == [
        (name_key(q.label), q.rtype, q.unicast) for q in full.questions
    ]
    assert (lean.id, lean.is_response, lean.opcode) == (full.id, full.is_response, full.opcode)


def test_lean_query_parser_rejects_pointer_loops_and_short_rdata() -> None:
    header = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
    loop = header + b"\xc0\x0c" + b"\x00\x0c\x00\x01"  # a name that points at itself
    with pytest.raises((ValueError, ProtocolError)):
        _parse(loop)
    message = DNSRecord(DNSHeader(id=1, bitmap=0))
    message.add_question(DNSQuestion("x.local", QTYPE.PTR))
    message.add_answer(RR("x.local", QTYPE.PTR, ttl=120, rdata=PTR("y.x.local")))
    data = bytearray(message.pack())
    data[-1] ^= 0x01  # the PTR target no longer ends where rdlength says
    with pytest.raises((ValueError, ProtocolError)):
        _parse(bytes(data))


# -- the lean response and probe parser agrees with dnslib -------------------------------------

# Labels as DNS-SD instance names hold them: any UTF-8, spaces, dots, backslashes, control
# characters and a Greek sigma (it lower-cases differently at the end of a word).
_instance_label = (
    st.text(
        alphabet=st.one_of(
            st.sampled_from([".", " ", "\\", "\x00", "\x7f", "Σ", "A"]),
            st.characters(codec="utf-8"),
        ),
        min_size=1,
        max_size=12,
    )
    .map(str.encode)
    .filter(lambda label: len(label) <= 63)
)
_names = st.builds(
    lambda labels, local: DNSLabel([*labels, b"local"] if local else labels),
    st.lists(_instance_label, max_size=4),
    st.booleans(),
).filter(lambda label: len(label) <= 253)  # dnslib's limit: joined bytes of the labels
_NSEC_TYPES = ["A", "NS", "CNAME", "PTR", "TXT", "AAAA", "SRV", "NSEC", "ANY", "URI", "CAA"]


@st.composite
def _rdata(draw: st.DrawFn, names: list[DNSLabel]) -> tuple[int, object]:
    """A record type and dnslib rdata; rare kinds make the lean parser hand over to dnslib."""
    target = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["A", "AAAA", "PTR", "SRV", "TXT", "NSEC", "CNAME", "NS", "MX"]))
    if kind == "A":
        return QTYPE.A, A(draw(st.ip_addresses(v=4)).exploded)
    if kind == "AAAA":
        return QTYPE.AAAA, AAAA(str(draw(st.ip_addresses(v=6))))
    if kind in ("PTR", "CNAME", "NS"):
        return getattr(QTYPE, kind), {"PTR": PTR, "CNAME": CNAME, "NS": NS}[kind](target)
    if kind == "SRV":
        fields = draw(st.tuples(*[st.integers(0, 65535)] * 3))
        return QTYPE.SRV, SRV(*fields, target=target)
    if kind == "TXT":
        strings = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
        return QTYPE.TXT, TXT(strings)
    if kind == "NSEC":
        # Types past 255 need a second bitmap window, which only dnslib reads.
        types = draw(st.lists(st.sampled_from(_NSEC_TYPES), min_size=1, max_size=4, unique=True))
        return QTYPE.NSEC, NSEC(target, types)
    return QTYPE.MX, MX(target, draw(st.integers(0, 65535)))


@st.composite
def _mdns_message(draw: st.DrawFn) -> DNSRecord:
    """A response, or a probe (a query with an authority section), packed by dnslib."""
    names = draw(st.lists(_names, min_size=1, max_size=4))  # shared, so compression happens
    probe = draw(st.booleans())
    message = DNSRecord(DNSHeader(id=draw(st.integers(0, 65535)), bitmap=0, qr=int(not probe)))
    for _ in range(draw(st.integers(1 if probe else 0, 2))):
        qtype = draw(st.sampled_from([QTYPE.ANY, QTYPE.PTR, QTYPE.A, QTYPE.SRV]))
        qclass = 1 | (UNICAST_RESPONSE if draw(st.booleans()) else 0)
        message.add_question(DNSQuestion(draw(st.sampled_from(names)), qtype, qclass))
    sections = (message.rr, message.auth, message.ar)
    for index in range(draw(st.integers(0, 10))):
        rtype, rdata = draw(_rdata(names))
        flush = draw(st.booleans())
        rr = RR(
            draw(st.sampled_from(names)),
            rtype,
            rclass=1 | (CACHE_FLUSH if flush else 0),
            ttl=draw(st.integers(0, 2**32 - 1)),
            rdata=rdata,
        )
        section = 1 if probe and index == 0 else draw(st.integers(0, 2))
        sections[section].append(rr)
    if draw(st.booleans()):  # EDNS, as some stacks add to responses (the Owner option)
        message.ar.append(EDNS0(opts=[EDNSOption(4, draw(st.binary(max_size=14)))]))
    return message


def _seen_summary(seen: list[_Seen]) -> list[tuple[object, ...]]:
    return [
        (r.name, r.rtype, r.ttl, r.unique, r.data_text, s.key, s.wire)
        for s in seen
        for r in (s.record,)
    ]


@settings(max_examples=300, deadline=None)
@given(_mdns_message())
def test_lean_response_and_probe_parser_agrees_with_dnslib(message: DNSRecord) -> None:
    data = bytes(message.pack())  # dnslib compresses names, as real responders do
    full = _parse_full(data)
    lean = _parse(data)
    assert (lean.id, lean.is_response, lean.opcode, lean.truncated) == (
        full.id,
        full.is_response,
        full.opcode,
        full.truncated,
    )
    assert [(name_key(q.label), q.rtype, q.unicast) for q in lean.questions] == [
        (name_key(q.label), q.rtype, q.unicast) for q in full.questions
    ]
    assert [q.label.label for q in lean.questions] == [q.label.label for q in full.questions]
    for section in ("answers", "authority", "additionals"):
        assert _seen_summary(getattr(lean, section)) == _seen_summary(getattr(full, section))
    assert lean.known == full.known
    # The wire keys the lean parser takes from the packet are what packing the record gives.
    for seen in lean.answers + lean.authority + lean.additionals:
        assert seen.wire[2] == _rdata_bytes(seen.record)
    # Only MX and two-window NSEC bitmaps need dnslib; everything else is read without it.
    needs_dnslib = any(
        rr.rtype == QTYPE.MX or (rr.rtype == QTYPE.NSEC and {"URI", "CAA"} & set(rr.rdata.rrlist))
        for rr in message.rr + message.auth + message.ar
    )
    ident, flags, qdcount, *counts = struct.unpack_from("!HHHHHH", data)
    lean_only = _parse_records(data, ident, flags, qdcount, (counts[0], counts[1], counts[2]))
    assert (lean_only is None) == needs_dnslib


def test_lean_response_parser_reads_compressed_names_in_srv_and_nsec() -> None:
    # dnslib never compresses SRV targets or NSEC next names, but other stacks may (RFC 6762
    # §18.14), so the packet is put together by hand: both point back at "host.local".
    header = struct.pack("!HHHHHH", 0, 0x8400, 0, 3, 0, 0)
    host = b"\x04host\x05local\x00"  # at offset 12; "local" at 17
    a = host + struct.pack("!HHIH", QTYPE.A, 0x8001, 120, 4) + b"\x0a\x00\x00\x05"
    srv_rdata = struct.pack("!HHH", 0, 0, 80) + b"\xc0\x0c"
    srv = b"\x03Box\x05_http\x04_tcp\xc0\x11" + struct.pack("!HHIH", QTYPE.SRV, 0x8001, 120, 8)
    nsec_rdata = b"\xc0\x0c\x00\x01\x40"  # next name, then window 0 with only A set
    nsec = b"\xc0\x0c" + struct.pack("!HHIH", QTYPE.NSEC, 0x8001, 120, 5) + nsec_rdata
    data = header + a + srv + srv_rdata + nsec
    lean = _parse_records(data, 0, 0x8400, 0, (3, 0, 0))
    assert lean is not None
    assert _seen_summary(lean.answers) == _seen_summary(_parse_full(data).answers)
    assert [seen.wire[2] for seen in lean.answers[1:]] == [
        struct.pack("!HHH", 0, 0, 80) + host,
        host + b"\x00\x01\x40",
    ]


def _announcement() -> bytes:
    host = DNSLabel([b"edge", b"local"])
    message = DNSRecord(DNSHeader(id=0, bitmap=0, qr=1, aa=1))
    message.add_answer(RR(INSTANCE_LABEL, QTYPE.SRV, rclass=0x8001, rdata=SRV(0, 0, 80, host)))
    message.add_answer(RR(host, QTYPE.A, rclass=0x8001, ttl=120, rdata=A("10.77.0.9")))
    return bytes(message.pack())


def _set_rdlength(data: bytes, record_start: int, rdlength: int, extra: bytes = b"") -> bytes:
    """``data`` with the rdlength of the record whose fixed fields start at ``record_start``."""
    at = record_start + 8
    return data[:at] + struct.pack("!H", rdlength) + data[at + 2 :] + extra


_MALFORMED_ERRORS = (ValueError, struct.error, ProtocolError)


def test_lean_response_parser_rejects_truncated_rdata() -> None:
    data = _announcement()
    with pytest.raises(_MALFORMED_ERRORS):
        _parse(data[:-2])  # the A record's address is cut short
    txt = DNSRecord(DNSHeader(id=0, bitmap=0, qr=1))
    txt.add_answer(RR(INSTANCE_LABEL, QTYPE.TXT, rclass=0x8001, rdata=TXT([b"a=1", b"b=2"])))
    packed = bytearray(txt.pack())
    packed[-4] = 9  # the second string now claims more bytes than its record has
    with pytest.raises(_MALFORMED_ERRORS):
        _parse(bytes(packed))
    address = data[: len(data) - 4] + b"\x0a\x4d\x00"  # an A record of three bytes
    with pytest.raises(_MALFORMED_ERRORS):
        _parse(_set_rdlength(address, len(address) - 3 - 10, 3))


def test_lean_response_parser_rejects_rdlength_that_disagrees_with_the_name() -> None:
    # The first record's fixed fields follow its owner name, the instance name uncompressed.
    first = 12 + len(b"\x0cGreenhouse 1\x05_http\x04_tcp\x05local\x00")
    message = DNSRecord(DNSHeader(id=0, bitmap=0, qr=1, aa=1))
    message.add_answer(RR(INSTANCE_LABEL, QTYPE.PTR, rdata=PTR(DNSLabel([b"x", b"local"]))))
    ptr = bytes(message.pack())
    (rdlength,) = struct.unpack_from("!H", ptr, first + 8)
    with pytest.raises(_MALFORMED_ERRORS):  # one byte more than the target takes
        _parse(_set_rdlength(ptr, first, rdlength + 1, b"\x00"))
    srv = _announcement()
    (rdlength,) = struct.unpack_from("!H", srv, first + 8)
    with pytest.raises(_MALFORMED_ERRORS):  # dnslib would read on from the wrong place
        _parse(_set_rdlength(srv, first, rdlength - 1))


def test_lean_response_parser_rejects_pointer_loops_and_non_utf8_labels() -> None:
    header = struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0)
    fixed = struct.pack("!HHIH", QTYPE.A, 1, 120, 4) + b"\x0a\x00\x00\x01"
    with pytest.raises(_MALFORMED_ERRORS):
        _parse(header + b"\xc0\x0c" + fixed)  # the owner name points at itself
    ptr = struct.pack("!HHIH", QTYPE.PTR, 1, 120, 2) + b"\xc0\x19"  # the target points at itself
    with pytest.raises(_MALFORMED_ERRORS):
        _parse(header + b"\x01x\x00" + ptr)
    # dnslib refuses labels that are not UTF-8, so the lean parser drops them as well.
    with pytest.raises(_MALFORMED_ERRORS):
        _parse(header + b"\x02\xff\xfe\x00" + fixed)
    with pytest.raises(Exception):  # noqa: B017, PT011 - dnslib raises its own error type
        _parse_full(header + b"\x02\xff\xfe\x00" + fixed)


def test_malformed_response_is_counted_and_dropped() -> None:
    responder = established()
    data = _announcement()
    responder.on_packet(10.0, "eth0", 4, PEER, data[:-2])
    assert responder.stats.malformed_dropped == 1


def test_the_ipv6_copy_of_a_response_already_read_over_ipv4_is_skipped() -> None:
    cache = FakeCache()
    responder = established(cache=cache)
    packet = response(a_rr("other.local", "10.77.0.9"))
    peer6 = ("fe80::9", 5353)
    responder.on_packet(10.0, "eth0", 4, PEER, packet)
    responder.on_packet(10.001, "eth0", 6, peer6, packet)  # the dual-stack copy
    assert responder.stats.dual_stack_copies_skipped == 1
    assert len(cache.inserted) == 1
    # the same family again, or the other family a second later, is read as usual
    responder.on_packet(10.5, "eth0", 4, PEER, packet)
    responder.on_packet(11.6, "eth0", 6, peer6, packet)
    assert responder.stats.dual_stack_copies_skipped == 1
    assert len(cache.inserted) == 3


def test_the_ipv6_copy_of_a_query_is_answered_without_parsing_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgeagent.mdns.responder as engine

    responder = established()
    parsed: list[bytes] = []
    real_parse = engine._parse

    def counting_parse(data: bytes) -> object:
        parsed.append(data)
        return real_parse(data)

    monkeypatch.setattr(engine, "_parse", counting_parse)
    question = query("edge.local", QTYPE.A)
    peer6 = ("fe80::9", 5353)
    out = responder.on_packet(10.0, "eth0", 4, PEER, question)
    out += responder.on_packet(10.001, "eth0", 6, peer6, question)
    answers = sends(out) + sends(run_until(responder, 11.0))
    assert len(parsed) == 1  # the copy reused the first parse
    assert {s.family for s in answers} == {4, 6}  # each family still got its answer
    assert responder.stats.queries_received == 2

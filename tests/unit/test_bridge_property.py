"""Property tests of the answer path: nothing raises, replies match their queries."""

from __future__ import annotations

from dnslib import EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from edgeagent.dns.records import a_record, aaaa_record, srv_record, txt_record

SOURCE = StaticNameSource(
    [
        a_record("edge.local", "10.0.0.5", 120),
        aaaa_record("edge.local", "fd00::5", 120),
        srv_record("web._http._tcp.local", "edge.local", 80, 120),
        txt_record("web._http._tcp.local", [b"a=b"], 120),
        txt_record("big.local", [b"x" * 200] * 4, 120),
    ]
)
NAMES = [
    "edge.local",
    "EDGE.Local",
    "web._http._tcp.local",
    "big.local",
    "nobody.local",
    "5.0.0.10.in-addr.arpa",
    "example.com",
    "local",
]
QTYPES = ["A", "AAAA", "PTR", "SRV", "TXT", "ANY", "MX"]

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
random_name = st.lists(label, min_size=1, max_size=4).map(lambda ls: ".".join([*ls, "local"]))
names = st.one_of(st.sampled_from(NAMES), random_name)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(min_value=1, max_value=4))
    asked = [(draw(names), draw(st.sampled_from(QTYPES))) for _ in range(count)]
    # dnslib picks random IDs unless told: hypothesis must control every choice.
    flags = 0x0100 if draw(st.booleans()) else 0
    header = DNSHeader(id=draw(st.integers(min_value=0, max_value=65535)), bitmap=flags)
    record = DNSRecord(
        header, questions=[DNSQuestion(name, getattr(QTYPE, qtype)) for name, qtype in asked]
    )
    if draw(st.booleans()):
        record.add_ar(EDNS0(udp_len=draw(st.integers(min_value=0, max_value=65535))))
    return bytes(record.pack())


def finish(core: BridgeCore, step: object) -> bytes | None:
    if step is None:
        return None
    if isinstance(step, Reply):
        return step.data
    if isinstance(step, LiveLookup):
        return core.finish_live(step.pending, dict.fromkeys(step.lookups, LookupResult()), 1.0)
    assert isinstance(step, ForwardUpstream)
    return core.finish_forward(step.pending, None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), recursive=st.booleans(), tcp=st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, recursive: bool, tcp: bool) -> None:
    core = BridgeCore(DnsBridgeConfig(recursive=recursive), SOURCE)
    transport = Transport.TCP if tcp else Transport.UDP
    reply = finish(core, core.handle(data, 1.0, transport))
    if reply is not None:
        assert reply[:2] == data[:2]  # the ID is echoed
        assert reply[2] & 0x80  # QR
        DNSRecord.parse(reply)  # and it is well-formed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=queries(), recursive=st.booleans(), flips=st.lists(st.integers(0, 10_000), max_size=4))
def test_mutated_queries_never_raise(data: bytes, recursive: bool, flips: list[int]) -> None:
    mutated = bytearray(data)
    for flip in flips:
        mutated[flip % len(mutated)] ^= 1 << (flip % 8)
    core = BridgeCore(DnsBridgeConfig(recursive=recursive), SOURCE)
    finish(core, core.handle(bytes(mutated), 1.0, Transport.UDP))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=queries(), recursive=st.booleans(), tcp=st.booleans())
def test_valid_queries_get_matching_replies(data: bytes, recursive: bool, tcp: bool) -> None:
    core = BridgeCore(DnsBridgeConfig(recursive=recursive), SOURCE)
    transport = Transport.TCP if tcp else Transport.UDP
    query = DNSRecord.parse(data)
    for now in (1.0, 1.5):  # the second run may come from the fast path
        raw = finish(core, core.handle(data, now, transport))
        assert raw is not None
        reply = DNSRecord.parse(raw)
        assert reply.header.id == query.header.id
        assert reply.header.qr == 1
        assert reply.header.rd == query.header.rd
        if not (reply.header.tc and not reply.questions):
            assert [(q.qname, q.qtype) for q in reply.questions] == [
                (q.qname, q.qtype) for q in query.questions
            ]
        asked = {str(q.qname).lower() for q in query.questions}
        assert {str(rr.rname).lower() for rr in reply.rr} <= asked
        if not tcp:
            limit = 512
            opt = [rr for rr in query.ar if rr.rtype == 41]
            if opt:
                limit = max(512, min(opt[0].rclass, 1232))
            assert len(raw) <= limit

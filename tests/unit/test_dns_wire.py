"""Query parsing, TCP framing, fast-path table, upstream helpers, bind error messages."""

from __future__ import annotations

import errno
import struct

import pytest
from dnslib import EDNS0, DNSRecord

from edgeagent.bridge.fastpath import MAX_AGE, FastPath
from edgeagent.bridge.server import bind_error
from edgeagent.bridge.upstream import accepts, parse_upstream
from edgeagent.dns.wire import (
    MalformedQuery,
    StreamFramer,
    frame,
    parse_query,
    read_name,
    truncated_copy,
)
from edgeagent.errors import AddressInUseError, TransportError


def test_parse_query_reads_questions_and_edns() -> None:
    q = DNSRecord.question("Edge.Local", "AAAA")
    q.add_ar(EDNS0(udp_len=4096, flags="do"))
    parsed = parse_query(bytes(q.pack()))
    assert parsed.id == q.header.id
    assert parsed.questions[0].labels == (b"Edge", b"Local")
    assert parsed.questions[0].name == "edge.local"
    assert parsed.questions[0].qtype == 28
    assert parsed.edns is not None
    assert parsed.edns.payload_size == 4096
    assert parsed.edns.dnssec_ok


def test_compressed_question_names_follow_pointers() -> None:
    header = struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0)
    first = b"\x04edge\x05local\x00" + b"\x00\x01\x00\x01"
    second = b"\x03www\xc0\x0c" + b"\x00\x01\x00\x01"
    parsed = parse_query(header + first + second)
    assert [q.name for q in parsed.questions] == ["edge.local", "www.edge.local"]


def test_read_name_with_a_memo_reads_each_pointer_target_once() -> None:
    data = struct.pack("!HHHHHH", 1, 0, 0, 0, 0, 0) + b"\x04edge\x05local\x00"
    data += b"\x03www\xc0\x0c" + b"\x03ftp\xc0\x0c" + b"\xc0\x0c"
    memo: dict[int, tuple[bytes, ...]] = {}
    offsets = [12, 24, 30, 36]
    read = [read_name(data, offset, memo) for offset in offsets]
    assert read == [read_name(data, offset) for offset in offsets]
    assert read[1] == ((b"www", b"edge", b"local"), 30)
    assert memo == {12: (b"edge", b"local")}
    with pytest.raises(MalformedQuery):  # the 255-octet limit still counts the remembered part
        read_name(
            b"\x00" * 12 + b"\x3f" + b"a" * 63 + b"\x00" + (b"\x3f" + b"b" * 63) * 3 + b"\xc0\x0c",
            77,
            {},
        )


@pytest.mark.parametrize(
    "body",
    [
        b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        b"\xc0\xff\x00\x01\x00\x01",  # forward pointer
        b"\x40abc\x00\x00\x01\x00\x01",  # reserved label type
        b"\x3fabc",  # label past the end
        b"\x04edge\x00\x00",  # type/class cut short
        (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # longer than 255
    ],
)
def test_malformed_questions_raise_with_header_ok(body: bytes) -> None:
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    with pytest.raises(MalformedQuery) as info:
        parse_query(header + body)
    assert info.value.header_ok


def test_short_packet_is_not_header_ok() -> None:
    with pytest.raises(MalformedQuery) as info:
        parse_query(b"\x00\x01")
    assert not info.value.header_ok


def test_labels_with_dots_or_bad_utf8_have_no_text_name() -> None:
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    parsed = parse_query(header + b"\x03a.b\x05local\x00\x00\x01\x00\x01")
    assert parsed.questions[0].name is None
    parsed = parse_query(header + b"\x02\xff\xfe\x05local\x00\x00\x01\x00\x01")
    assert parsed.questions[0].name is None


def test_utf8_names_are_lowercased_text() -> None:
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    label = "Büro".encode()
    parsed = parse_query(header + bytes([len(label)]) + label + b"\x05local\x00\x00\x01\x00\x01")
    assert parsed.questions[0].name == "büro.local"


def test_stream_framer_splits_at_awkward_boundaries() -> None:
    messages = [b"a" * 5, b"", b"b" * 300, b"c"]
    stream = b"".join(frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        framer = StreamFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == messages
        assert framer.buffered == 0
    framer = StreamFramer()
    got = [m for byte in stream for m in framer.feed(bytes([byte]))]
    assert got == messages


def test_truncated_copy_keeps_header_and_questions() -> None:
    reply = DNSRecord.question("example.com").replyZone("example.com 60 A 192.0.2.1")
    cut = DNSRecord.parse(truncated_copy(bytes(reply.pack())))
    assert cut.header.tc == 1
    assert cut.rr == []
    assert str(cut.q.qname) == "example.com."


def test_fast_path_expiry_generation_and_bound() -> None:
    fast = FastPath(max_entries=2)
    fast.put(b"k1", b"r1", now=0.0, generation=1)
    assert fast.get(b"k1", 0.5, 1) == b"r1"
    assert fast.get(b"k1", MAX_AGE, 1) is None  # expired
    fast.put(b"k1", b"r1", now=1.0, generation=1)
    assert fast.get(b"k1", 1.1, 2) is None  # generation moved: everything dropped
    assert len(fast) == 0
    for i in range(5):
        fast.put(b"k%d" % i, b"r", now=2.0, generation=2)
    assert len(fast) == 2
    assert fast.get(b"k4", 2.1, 2) == b"r"
    assert fast.get(b"k0", 2.1, 2) is None  # oldest evicted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("127.0.0.2:5353", ("127.0.0.2", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5300", ("::1", 5300)),
    ],
)
def test_parse_upstream(text: str, expected: tuple[str, int]) -> None:
    assert parse_upstream(text) == expected


def test_upstream_reply_must_match_id_and_question() -> None:
    q = DNSRecord.question("example.com")
    sent = bytes(q.pack())
    good = q.reply()
    assert accepts(sent, bytes(good.pack()))
    wrong_id = q.reply()
    wrong_id.header.id = (q.header.id + 1) % 65536
    assert not accepts(sent, bytes(wrong_id.pack()))
    other = DNSRecord.question("example.org")
    other.header.id = q.header.id
    assert not accepts(sent, bytes(other.reply().pack()))
    assert not accepts(sent, sent)  # not a response


def test_address_in_use_message_names_owner_and_keys() -> None:
    error = bind_error(OSError(errno.EADDRINUSE, "in use"), "127.0.0.53", 53, "udp")
    assert isinstance(error, AddressInUseError)
    text = str(error)
    assert "127.0.0.53:53" in text
    assert "systemd-resolved" in text
    for key in ("dns_bridge.address", "dns_bridge.port", "dns_bridge.enabled: false"):
        assert key in text


def test_permission_denied_mentions_capability() -> None:
    error = bind_error(OSError(errno.EACCES, "denied"), "127.0.0.53", 53, "udp")
    assert isinstance(error, TransportError)
    assert not isinstance(error, AddressInUseError)
    assert "CAP_NET_BIND_SERVICE" in str(error)
    assert "dns_bridge.port" in str(error)


def test_ipv6_address_in_message_is_bracketed() -> None:
    error = bind_error(OSError(errno.EADDRINUSE, "in use"), "::1", 5353, "tcp")
    assert "[::1]:5353/tcp" in str(error)


def test_age_ttls_lowers_record_ttls_but_not_opt_flags() -> None:
    from dnslib import QTYPE

    from edgeagent.dns.wire import age_ttls

    reply = DNSRecord.question("edge.local").replyZone("edge.local 120 A 10.0.0.5")
    reply.add_ar(*DNSRecord.question("x").replyZone("edge.local 0 AAAA fd00::5").rr)
    reply.add_ar(EDNS0(udp_len=1232, flags="do"))
    aged = DNSRecord.parse(age_ttls(bytes(reply.pack()), 1))
    assert aged.rr[0].ttl == 119
    assert [rr.ttl for rr in aged.ar if rr.rtype == QTYPE.AAAA] == [0]  # never below 0
    opt = next(rr for rr in aged.ar if rr.rtype == QTYPE.OPT)
    assert opt.ttl == 0x8000  # the DO flag, untouched
    assert str(aged.rr[0].rdata) == "10.0.0.5"


def test_forwarder_never_forwards_to_itself() -> None:
    from edgeagent.bridge.upstream import Forwarder

    forwarder = Forwarder(["127.0.0.53", "192.0.2.1:5353"], 1.0, exclude={("127.0.0.53", 53)})
    assert forwarder.upstreams == [("192.0.2.1", 5353)]

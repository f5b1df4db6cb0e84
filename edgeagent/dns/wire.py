"""The DNS wire format (RFC 1035): a strict parser for untrusted queries and tiny packers.

Theory of operation: clients send us small, untrusted packets. We read the 12-byte header
first (RFC 1035 §4.1.1) because it decides whether we answer at all (QR=1 is dropped, a
non-QUERY opcode gets NOTIMP), then the question section, skipping any answer/authority
records and picking the EDNS(0) OPT record out of the additional section (RFC 6891 §6.1.1).
Any inconsistency raises :class:`MalformedQuery`; the caller answers FORMERR when the
header was readable and drops the packet otherwise. Replies themselves are packed by dnslib
in :mod:`edgeagent.bridge.core`; the helpers here pack only the header-only error replies
and patch IDs and flags, which must be cheap.

No I/O happens here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edgeagent.errors import ProtocolError

HEADER_LEN = 12
MAX_NAME_LEN = 255  # RFC 1035 §2.3.4, counting length octets
MAX_LABEL_LEN = 63
MAX_POINTERS = 32  # more jumps than any sane name needs; stops pointer loops

# Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_AD = 0x0020
FLAG_CD = 0x0010
OPCODE_SHIFT = 11
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F

OPCODE_QUERY = 0

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
RCODE_BADVERS = 16  # extended: upper 8 bits live in the OPT TTL (RFC 6891 §6.1.3)

TYPE_OPT = 41
EDNS_MIN_PAYLOAD = 512  # RFC 6891 §6.2.5: smaller advertised sizes are treated as 512
CLASSIC_UDP_LIMIT = 512  # RFC 1035 §4.2.1

_HEADER = struct.Struct("!HHHHHH")
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")


class MalformedQuery(ProtocolError):
    """The packet is not a well-formed DNS message; ``header_ok`` says whether to FORMERR."""

    def __init__(self, message: str, *, header_ok: bool) -> None:
        super().__init__(message)
        self.header_ok = header_ok


@dataclass(frozen=True, slots=True)
class Question:
    """One question as asked: raw labels (case kept, for the echo) and the lookup key."""

    labels: tuple[bytes, ...]
    qtype: int
    qclass: int

    @property
    def name(self) -> str | None:
        """Lower-case dotted text without the trailing dot; None if text cannot represent it.

        A label holding a ``.`` byte or bytes that are not UTF-8 has no unambiguous text form,
        and the record model is text-keyed, so such a name can never match a record.
        """
        return name_text(self.labels)


@dataclass(frozen=True, slots=True)
class Edns:
    """The client's OPT record (RFC 6891 §6.1.2)."""

    payload_size: int
    version: int
    dnssec_ok: bool
    options: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    questions: tuple[Question, ...]
    edns: Edns | None

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> OPCODE_SHIFT


@dataclass(frozen=True, slots=True)
class Header:
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> OPCODE_SHIFT

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)


def parse_header(data: bytes) -> Header | None:
    """The header, or None when the packet is too short to hold one."""
    if len(data) < HEADER_LEN:
        return None
    return Header(*_HEADER.unpack_from(data))


def parse_query(data: bytes) -> Query:
    """Parse a query packet. Raises :class:`MalformedQuery`.

    Answer and authority records are skipped (queries carry none in practice; RFC 1035 allows
    them); the additional section may hold at most one OPT record, owned by the root name.
    Bytes after the last record are ignored, as BIND and dnsmasq do.
    """
    data = bytes(data)  # labels must be hashable bytes, even if a bytearray came in
    header = parse_header(data)
    if header is None:
        raise MalformedQuery("shorter than a DNS header", header_ok=False)
    offset = HEADER_LEN
    questions: list[Question] = []
    for _ in range(header.qdcount):
        labels, offset = read_name(data, offset)
        if offset + 4 > len(data):
            raise MalformedQuery("question cut short", header_ok=True)
        qtype, qclass = _TYPE_CLASS.unpack_from(data, offset)
        offset += 4
        questions.append(Question(labels, qtype, qclass))
    for _ in range(header.ancount + header.nscount):
        offset = _skip_record(data, offset)
    edns: Edns | None = None
    for _ in range(header.arcount):
        labels, offset = read_name(data, offset)
        if offset + 10 > len(data):
            raise MalformedQuery("record cut short", header_ok=True)
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
        offset += 10
        end = offset + rdlength
        if end > len(data):
            raise MalformedQuery("record data cut short", header_ok=True)
        if rtype == TYPE_OPT:
            if edns is not None:
                raise MalformedQuery("more than one OPT record", header_ok=True)  # §6.1.1
            if labels:
                raise MalformedQuery("OPT record not owned by the root", header_ok=True)
            edns = Edns(
                payload_size=rclass,
                version=(ttl >> 16) & 0xFF,
                dnssec_ok=bool(ttl & 0x8000),
                options=_read_options(data[offset:end]),
            )
        offset = end
    return Query(header.id, header.flags, tuple(questions), edns)


def read_name(
    data: bytes, offset: int, memo: dict[int, tuple[bytes, ...]] | None = None
) -> tuple[tuple[bytes, ...], int]:
    """Read a possibly compressed name at ``offset``: (labels, offset after the name).

    With ``memo`` (one dict per message), the names compression pointers lead to are read
    once: in an mDNS question with ~50 known answers every owner points back at the question's
    name and every PTR target is one label plus that same pointer.
    """
    labels: list[bytes] = []
    total = 1
    end: int | None = None
    jumps = 0
    size = len(data)
    while True:
        if offset >= size:
            raise MalformedQuery("name runs past the end", header_ok=True)
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= size:
                raise MalformedQuery("compression pointer cut short", header_ok=True)
            pointer = ((length & 0x3F) << 8) | data[offset + 1]
            if end is None:
                end = offset + 2
            # Pointers must go backwards, into the message after the header (RFC 1035 §4.1.4).
            if pointer >= offset or pointer < HEADER_LEN:
                raise MalformedQuery("bad compression pointer", header_ok=True)
            if memo is not None:
                suffix = memo.get(pointer)
                if suffix is None:
                    suffix = memo[pointer] = read_name(data, pointer)[0]
                total += sum(len(label) + 1 for label in suffix)
                if total > MAX_NAME_LEN:
                    raise MalformedQuery("name longer than 255 octets", header_ok=True)
                return (*labels, *suffix), end
            jumps += 1
            if jumps > MAX_POINTERS:
                raise MalformedQuery("compression pointer loop", header_ok=True)
            offset = pointer
            continue
        if length & 0xC0:
            raise MalformedQuery("unknown label type", header_ok=True)  # RFC 6891 §5
        offset += 1
        if length == 0:
            return tuple(labels), (offset if end is None else end)
        total += length + 1
        if total > MAX_NAME_LEN:
            raise MalformedQuery("name longer than 255 octets", header_ok=True)
        if offset + length > size:
            raise MalformedQuery("label runs past the end", header_ok=True)
        labels.append(data[offset : offset + length])
        offset += length


def name_text(labels: tuple[bytes, ...]) -> str | None:
    """Lower-case dotted text of ``labels``; None for labels text cannot carry."""
    parts: list[str] = []
    for label in labels:
        if b"." in label:
            return None
        try:
            parts.append(label.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    return ".".join(parts).lower()


def question_section_end(data: bytes) -> int:
    """Offset just past the question section of any message (queries and replies)."""
    header = parse_header(data)
    if header is None:
        raise MalformedQuery("shorter than a DNS header", header_ok=False)
    offset = HEADER_LEN
    for _ in range(header.qdcount):
        _, offset = read_name(data, offset)
        offset += 4
        if offset > len(data):
            raise MalformedQuery("question cut short", header_ok=True)
    return offset


def header_only_reply(header: Header, rcode: int, *, ra: bool) -> bytes:
    """FORMERR / NOTIMP / SERVFAIL without any section: ID, opcode and RD echoed."""
    flags = FLAG_QR | (header.flags & (OPCODE_MASK | FLAG_RD)) | (rcode & RCODE_MASK)
    if ra:
        flags |= FLAG_RA
    return _HEADER.pack(header.id, flags, 0, 0, 0, 0)


def truncated_copy(message: bytes) -> bytes:
    """A reply cut down to header + questions with TC set (RFC 2181 §9), for relayed replies."""
    end = question_section_end(message)
    header = parse_header(message)
    assert header is not None  # question_section_end checked the length
    flags = header.flags | FLAG_TC
    return _HEADER.pack(header.id, flags, header.qdcount, 0, 0, 0) + message[HEADER_LEN:end]


def age_ttls(message: bytes, seconds: int) -> bytes:
    """A copy of ``message`` with every record's TTL lowered by ``seconds`` (not below 0).

    The OPT pseudo-record is left alone: its TTL field holds EDNS flags (RFC 6891 §6.1.3).
    Used for fast-path entries, cheaper than packing the reply a second time.
    """
    header = parse_header(message)
    if header is None:
        raise MalformedQuery("shorter than a DNS header", header_ok=False)
    aged = bytearray(message)
    offset = question_section_end(message)
    for _ in range(header.ancount + header.nscount + header.arcount):
        _, offset = read_name(message, offset)
        if offset + 10 > len(message):
            raise MalformedQuery("record cut short", header_ok=True)
        rtype, _rclass, ttl, rdlength = _RR_FIXED.unpack_from(message, offset)
        if rtype != TYPE_OPT:
            struct.pack_into("!I", aged, offset + 4, max(0, ttl - seconds))
        offset += 10 + rdlength
    return bytes(aged)


def with_id(message: bytes, message_id: int) -> bytes:
    return message_id.to_bytes(2, "big") + message[2:]


def _skip_record(data: bytes, offset: int) -> int:
    _, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise MalformedQuery("record cut short", header_ok=True)
    rdlength = int.from_bytes(data[offset + 8 : offset + 10], "big")
    offset += 10 + rdlength
    if offset > len(data):
        raise MalformedQuery("record data cut short", header_ok=True)
    return offset


def _read_options(rdata: bytes) -> tuple[tuple[int, bytes], ...]:
    options: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(rdata):
        if offset + 4 > len(rdata):
            raise MalformedQuery("EDNS option cut short", header_ok=True)
        code, length = _TYPE_CLASS.unpack_from(rdata, offset)
        offset += 4
        if offset + length > len(rdata):
            raise MalformedQuery("EDNS option data cut short", header_ok=True)
        options.append((code, rdata[offset : offset + length]))
        offset += length
    return tuple(options)


class StreamFramer:
    """Splits a TCP byte stream into messages: each is preceded by its 2-byte length
    (RFC 1035 §4.2.2). Feed whatever arrived; get back the complete messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        start = 0
        size = len(buffer)
        while size - start >= 2:
            length = (buffer[start] << 8) | buffer[start + 1]
            if size - start - 2 < length:
                break
            messages.append(bytes(buffer[start + 2 : start + 2 + length]))
            start += 2 + length
        if start:
            del buffer[:start]
        return messages


def frame(message: bytes) -> bytes:
    """``message`` with its 2-byte length prefix, for TCP."""
    return len(message).to_bytes(2, "big") + message

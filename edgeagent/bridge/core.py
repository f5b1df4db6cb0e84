"""The DNS bridge's answer logic: query bytes in, reply bytes or effects out. No I/O.

Theory of operation. :meth:`BridgeCore.handle` takes one query packet, the time and the
transport it came on, and returns a :data:`Step`:

* ``None`` — drop the packet (shorter than a header, or a response: QR=1);
* :class:`Reply` — send these bytes back;
* :class:`LiveLookup` — some ``.local`` (or reverse) names are neither our own nor cached:
  the adapter runs ``NameSource.query`` for each listed (name, type) and hands the results to
  :meth:`BridgeCore.finish_live`, which returns the reply;
* :class:`ForwardUpstream` — a non-``.local`` query in recursive mode: the adapter sends it to the
  upstreams and hands the reply (or None when all failed) to :meth:`BridgeCore.finish_forward`.

Answer rules (each question of a packet is answered, not just the first):

* ``*.local`` names and full reverse names (``x.in-addr.arpa``, ``x.ip6.arpa``) are ours:
  own records first, then the cache (``NameSource.lookup``), then a live mDNS query. Answers
  carry AA. NXDOMAIN when no asked name exists, NODATA (NOERROR, empty) when a name exists
  without the asked type. An unknown reverse name in recursive mode is forwarded instead of
  asked over mDNS (a single-question packet only: upstreams do not take several questions).
* Any other name: REFUSED, or forwarded when ``recursive``. A packet mixing ours and other
  names is REFUSED (real resolvers send one question per packet).
* Opcode other than QUERY: NOTIMP; a header followed by garbage: FORMERR; EDNS version > 0:
  BADVERS (RFC 6891 §6.1.3).
* EDNS(0): when the query has an OPT record the reply has one advertising our
  ``udp_payload_size``; a UDP reply may use ``min(client size, ours)`` bytes (at least 512),
  otherwise 512. Additional records are dropped first; if the answers still do not fit, the
  reply carries TC and no records (RFC 2181 §9) so the client retries over TCP.

Replies built only from ``lookup`` results (and REFUSED) are stored in the fast path
(:mod:`edgeagent.bridge.fastpath`) unless the query carries EDNS options (client subnet,
cookies...), whose replies may differ per client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Protocol

from dnslib import EDNS0, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from edgeagent.bridge.fastpath import TTL_SHIFT, FastPath, cacheable_ttl
from edgeagent.config.model import DnsBridgeConfig
from edgeagent.dns.records import CLASS_IN, Record, RType, address_from_reverse, normalize_name
from edgeagent.dns.wire import (
    CLASSIC_UDP_LIMIT,
    EDNS_MIN_PAYLOAD,
    FLAG_AA,
    FLAG_CD,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    OPCODE_QUERY,
    RCODE_BADVERS,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    MalformedQuery,
    Query,
    Question,
    age_ttls,
    header_only_reply,
    parse_header,
    parse_query,
    truncated_copy,
    with_id,
)

log = logging.getLogger(__name__)

TCP_LIMIT = 65535
CLASS_ANY = 255
# Zone transfers, mailbox meta-types and OPT as a question make no sense for a bridge.
_META_TYPES = frozenset({41, 251, 252, 253, 254})

LookupKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a name source knows about (name, type).

    ``records`` hold *remaining* TTLs, rounded down. ``exists`` tells "the name exists but has
    no record of this type" (NODATA) apart from "unknown name"; it is implied by records.
    """

    records: tuple[Record, ...] = ()
    exists: bool = False

    @property
    def known(self) -> bool:
        return self.exists or bool(self.records)

    @classmethod
    def unknown(cls) -> LookupResult:
        return _UNKNOWN

    @classmethod
    def nodata(cls) -> LookupResult:
        return _NODATA

    @classmethod
    def found(cls, records: tuple[Record, ...] | list[Record]) -> LookupResult:
        return cls(tuple(records), exists=True)


_UNKNOWN = LookupResult()
_NODATA = LookupResult((), exists=True)


class NameSource(Protocol):
    """Where the bridge's ``.local`` and reverse data come from (the agent implements it)."""

    @property
    def generation(self) -> int:
        """Bumps whenever own records or the cache change; invalidates the fast path."""
        ...

    def lookup(self, name: str, rtype: int, now: float) -> LookupResult:
        """Own records first, then the cache. ``name`` is lower-case without the final dot;
        ``rtype`` may be ``RType.ANY``; reverse names ask for PTR records of known addresses.
        ``now`` comes from the bridge's clock (``time.monotonic`` unless configured)."""
        ...

    # The timeout is the mDNS engine's to apply (it stops retransmitting), not a deadline
    # for asyncio.timeout around the call; the server adds that guard itself.
    async def query(self, name: str, rtype: int, timeout: float) -> LookupResult:  # noqa: ASYNC109
        """A live mDNS query, giving up after ``timeout`` seconds."""
        ...


class Transport(Enum):
    UDP = "udp"
    TCP = "tcp"


@dataclass(slots=True)
class BridgeStats:
    """Counters since start. A fast-path hit counts in ``queries`` and ``fastpath_hits`` only:
    it replays a reply already counted by kind (answered, nodata, nxdomain, refused)."""

    queries: int = 0
    answered: int = 0  # NOERROR with at least one answer
    nodata: int = 0
    nxdomain: int = 0
    refused: int = 0
    formerr: int = 0
    servfail: int = 0
    notimp: int = 0
    badvers: int = 0
    dropped: int = 0  # unparseable, QR=1, or over the in-flight limit
    truncated: int = 0
    forwarded: int = 0
    fastpath_hits: int = 0
    live_lookups: int = 0  # packets that needed a live mDNS query
    source_errors: int = 0
    tcp_connections: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes


@dataclass(frozen=True, slots=True)
class PendingAnswer:
    """A query waiting for live look-ups; ``known`` holds what ``lookup`` already said."""

    query: Query
    transport: Transport
    limit: int
    known: Mapping[LookupKey, LookupResult] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveLookup:
    pending: PendingAnswer
    lookups: tuple[LookupKey, ...]


@dataclass(frozen=True, slots=True)
class PendingForward:
    query: Query
    transport: Transport
    limit: int


@dataclass(frozen=True, slots=True)
class ForwardUpstream:
    pending: PendingForward
    query: bytes  # the client's packet as received; the forwarder picks its own ID


Step = Reply | LiveLookup | ForwardUpstream | None


class _Kind(Enum):
    LOCAL = "local"  # under .local
    REVERSE = "reverse"  # a full in-addr.arpa / ip6.arpa name
    OPAQUE_LOCAL = "opaque-local"  # under .local but not representable as text: never exists
    FOREIGN = "foreign"


class BridgeCore:
    """Answers DNS queries from a :class:`NameSource`; see the module docstring for rules."""

    def __init__(
        self,
        config: DnsBridgeConfig,
        source: NameSource,
        *,
        fastpath_size: int = 4096,
        max_questions: int = 16,
    ) -> None:
        self.config = config
        self.source = source
        self.max_questions = max_questions
        self.stats = BridgeStats()
        self.udp_fastpath = FastPath(fastpath_size)
        self.tcp_fastpath = FastPath(fastpath_size)
        self._recursive = config.recursive
        self._our_payload = max(EDNS_MIN_PAYLOAD, min(config.udp_payload_size, 65535))

    # -- entry points --------------------------------------------------------------------

    def handle(self, data: bytes, now: float, transport: Transport) -> Step:
        """Fast path first, then :meth:`answer`."""
        reply = self.fast_reply(data, now, transport)
        if reply is not None:
            return Reply(reply)
        return self.answer(data, now, transport)

    def fast_reply(self, data: bytes, now: float, transport: Transport) -> bytes | None:
        """The stored reply for ``data`` with its ID, or None. Counts hits only."""
        fast = self.udp_fastpath if transport is Transport.UDP else self.tcp_fastpath
        tail = fast.get(data[2:], now, self.source.generation)
        if tail is None:
            return None
        self.stats.queries += 1
        self.stats.fastpath_hits += 1
        return data[:2] + tail

    def answer(self, data: bytes, now: float, transport: Transport) -> Step:
        """The slow path: parse, look up, pack."""
        stats = self.stats
        stats.queries += 1
        header = parse_header(data)
        if header is None or header.is_response:
            stats.dropped += 1
            return None
        if header.opcode != OPCODE_QUERY:
            stats.notimp += 1
            return Reply(header_only_reply(header, RCODE_NOTIMP, ra=self._recursive))
        try:
            query = parse_query(data)
        except MalformedQuery:
            stats.formerr += 1
            return Reply(header_only_reply(header, RCODE_FORMERR, ra=self._recursive))
        if not query.questions or len(query.questions) > self.max_questions:
            stats.formerr += 1
            return Reply(header_only_reply(header, RCODE_FORMERR, ra=self._recursive))
        limit = self._limit(query, transport)
        if query.edns is not None and query.edns.version > 0:
            stats.badvers += 1
            return Reply(self._pack(query, RCODE_BADVERS, aa=False, limit=limit))
        cacheable = query.edns is None or not query.edns.options

        kinds = [_classify(q) for q in query.questions]
        if _Kind.FOREIGN in kinds or any(q.qtype in _META_TYPES for q in query.questions):
            forwardable = all(k is _Kind.FOREIGN for k in kinds) and not any(
                q.qtype in _META_TYPES for q in query.questions
            )
            if forwardable and self._recursive:
                return self._forward(query, data, transport, limit)
            stats.refused += 1
            reply = self._pack(query, RCODE_REFUSED, aa=False, limit=limit)
            if cacheable:
                self._store(data, transport, reply, now)
            return Reply(reply)

        known: dict[LookupKey, LookupResult] = {}
        missing: list[LookupKey] = []
        for question, kind in zip(query.questions, kinds, strict=True):
            name = question.name
            if kind is _Kind.OPAQUE_LOCAL or name is None:
                continue
            key = (name, question.qtype)
            if key in known:
                continue
            try:
                result = self.source.lookup(name, question.qtype, now)
            except Exception:
                # A buggy source must not take the bridge down: answer SERVFAIL, log, count.
                log.exception("name source lookup(%r, %d) failed", name, question.qtype)
                stats.source_errors += 1
                stats.servfail += 1
                return Reply(self._pack(query, RCODE_SERVFAIL, aa=False, limit=limit))
            known[key] = result
            if not result.known:
                missing.append(key)

        if missing:
            if self._recursive and len(query.questions) == 1 and kinds[0] is _Kind.REVERSE:
                return self._forward(query, data, transport, limit)
            stats.live_lookups += 1
            pending = PendingAnswer(query, transport, limit, known)
            return LiveLookup(pending, tuple(missing))

        reply, min_ttl = self._answer_from(query, known, limit, now)
        if cacheable and cacheable_ttl(min_ttl):
            # The stored copy has every TTL a second lower: see fastpath's "TTLs".
            stored = reply if min_ttl is None else age_ttls(reply, TTL_SHIFT)
            self._store(data, transport, stored, now)
        return Reply(reply)

    def finish_live(
        self,
        pending: PendingAnswer,
        results: Mapping[LookupKey, LookupResult | None],
        now: float,
    ) -> bytes:
        """The reply once live look-ups are done. A None result (the query failed, rather
        than finding nothing) makes the reply SERVFAIL; a missing key counts as unknown."""
        if any(result is None for result in results.values()):
            self.stats.servfail += 1
            return self._pack(pending.query, RCODE_SERVFAIL, aa=False, limit=pending.limit)
        merged: dict[LookupKey, LookupResult] = dict(pending.known)
        for key, result in results.items():
            if result is not None:
                merged[key] = result
        reply, _ = self._answer_from(pending.query, merged, pending.limit, now)
        return reply

    def finish_forward(self, pending: PendingForward, reply: bytes | None) -> bytes:
        """The upstream reply with the client's ID, truncated if it is too big for UDP;
        SERVFAIL when no upstream answered (``reply`` is None)."""
        if reply is None:
            self.stats.servfail += 1
            return self._pack(pending.query, RCODE_SERVFAIL, aa=False, limit=pending.limit)
        reply = with_id(reply, pending.query.id)
        if len(reply) > pending.limit:
            self.stats.truncated += 1
            try:
                return truncated_copy(reply)
            except MalformedQuery:
                self.stats.servfail += 1
                return self._pack(pending.query, RCODE_SERVFAIL, aa=False, limit=pending.limit)
        return reply

    def servfail(self, pending: PendingAnswer | PendingForward) -> bytes:
        """SERVFAIL for a pending query the adapter could not finish."""
        self.stats.servfail += 1
        return self._pack(pending.query, RCODE_SERVFAIL, aa=False, limit=pending.limit)

    # -- helpers -------------------------------------------------------------------------

    def _limit(self, query: Query, transport: Transport) -> int:
        if transport is Transport.TCP:
            return TCP_LIMIT
        if query.edns is None:
            return CLASSIC_UDP_LIMIT
        # RFC 6891 §6.2.5: sizes under 512 are treated as 512; we never exceed our own size.
        return max(EDNS_MIN_PAYLOAD, min(query.edns.payload_size, self._our_payload))

    def _forward(
        self, query: Query, data: bytes, transport: Transport, limit: int
    ) -> ForwardUpstream:
        self.stats.forwarded += 1
        return ForwardUpstream(PendingForward(query, transport, limit), data)

    def _store(self, data: bytes, transport: Transport, reply: bytes, now: float) -> None:
        fast = self.udp_fastpath if transport is Transport.UDP else self.tcp_fastpath
        fast.put(data[2:], reply[2:], now, self.source.generation)

    def _answer_from(
        self,
        query: Query,
        results: Mapping[LookupKey, LookupResult],
        limit: int,
        now: float,
    ) -> tuple[bytes, int | None]:
        """Pack the reply for ``results``; returns it with the smallest TTL it carries."""
        answers: list[RR] = []
        answer_keys: set[tuple[str, int, str]] = set()
        srv_targets: list[str] = []
        name_exists = False
        min_ttl: int | None = None
        for question in query.questions:
            name = question.name
            result = None if name is None else results.get((name, question.qtype))
            if result is None or not result.known:
                continue
            name_exists = True
            owner = DNSLabel(question.labels)
            for record in result.records:
                # Answer only what was asked, whatever the source returned.
                if normalize_name(record.name) != name:
                    continue
                if question.qtype not in (RType.ANY, record.rtype):
                    continue
                answers.append(_rr(owner, record))
                answer_keys.add(record.key)
                min_ttl = record.ttl if min_ttl is None else min(min_ttl, record.ttl)
                if record.rtype == RType.SRV:
                    srv_targets.append(normalize_name(record.data.target))
        additional: list[RR] = []
        for target in dict.fromkeys(srv_targets):
            for rtype in (RType.A, RType.AAAA):
                for record in self._additional(target, rtype, now):
                    if record.key in answer_keys:
                        continue
                    additional.append(_rr(DNSLabel(record.name), record))
                    min_ttl = record.ttl if min_ttl is None else min(min_ttl, record.ttl)
        if not name_exists:
            self.stats.nxdomain += 1
            return self._pack(query, RCODE_NXDOMAIN, aa=True, limit=limit), None
        if answers:
            self.stats.answered += 1
        else:
            self.stats.nodata += 1
        reply = self._pack(
            query,
            RCODE_NOERROR,
            aa=True,
            limit=limit,
            answers=answers,
            additional=additional,
        )
        return reply, min_ttl

    def _additional(self, name: str, rtype: int, now: float) -> tuple[Record, ...]:
        """Target addresses for SRV answers: own records and cache only, never live."""
        try:
            result = self.source.lookup(name, rtype, now)
        except Exception:
            log.exception("name source lookup(%r, %d) failed", name, rtype)
            self.stats.source_errors += 1
            return ()
        return tuple(r for r in result.records if r.rtype == rtype)

    def _pack(
        self,
        query: Query,
        rcode: int,
        *,
        aa: bool,
        limit: int,
        answers: list[RR] | None = None,
        additional: list[RR] | None = None,
    ) -> bytes:
        flags = FLAG_QR | (query.flags & (FLAG_RD | FLAG_CD)) | (rcode & 0xF)
        if aa:
            flags |= FLAG_AA
        if self._recursive:
            flags |= FLAG_RA
        questions = [DNSQuestion(DNSLabel(q.labels), q.qtype, q.qclass) for q in query.questions]
        opt: list[RR] = []
        if query.edns is not None:
            opt.append(EDNS0(udp_len=self._our_payload, ext_rcode=rcode >> 4))
        answers = answers or []
        additional = additional or []
        packed = _pack(query.id, flags, questions, answers, additional + opt)
        if len(packed) <= limit:
            return packed
        if additional:  # optional records go first (RFC 2181 §9)
            packed = _pack(query.id, flags, questions, answers, opt)
            if len(packed) <= limit:
                return packed
        self.stats.truncated += 1
        packed = _pack(query.id, flags | FLAG_TC, questions, [], opt)
        if len(packed) <= limit:
            return packed
        # Even the questions do not fit (only possible for huge multi-question packets).
        return _pack(query.id, flags | FLAG_TC, [], [], opt)


def _classify(question: Question) -> _Kind:
    if question.qclass not in (CLASS_IN, CLASS_ANY):
        return _Kind.FOREIGN
    name = question.name
    if name is None:
        if question.labels and question.labels[-1].lower() == b"local":
            return _Kind.OPAQUE_LOCAL
        return _Kind.FOREIGN
    if name == "local" or name.endswith(".local"):
        return _Kind.LOCAL
    if address_from_reverse(name) is not None:
        return _Kind.REVERSE
    return _Kind.FOREIGN


def _rr(owner: DNSLabel, record: Record) -> RR:
    return RR(owner, record.rtype, CLASS_IN, max(0, record.ttl), record.data)


def _pack(
    message_id: int,
    flags: int,
    questions: list[DNSQuestion],
    answers: list[RR],
    additional: list[RR],
) -> bytes:
    record = DNSRecord(
        DNSHeader(id=message_id, bitmap=flags), questions=questions, rr=answers, ar=additional
    )
    return bytes(record.pack())

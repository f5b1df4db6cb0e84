"""The mDNS responder engine: probing, announcing, answering, conflicts and goodbyes (sans-IO).

Theory of operation
-------------------
The engine owns no socket and no clock. The adapter (``edgeagent.mdns.transport``) feeds it
``now`` (monotonic seconds) and the bytes that arrived on an interface, and carries out the
effects it returns: ``Send`` a payload on an interface (to the mDNS group or to one address),
report a ``Renamed`` name or a ``StateChanged`` interface. After every call the adapter asks
``next_deadline()`` and calls ``on_timer(now)`` once it has passed.

Per interface the engine keeps which of our unique names are *established* (probed without
conflict, RFC 6762 §8.1), which are being probed (``_ProbeJob``), which records still owe
unsolicited announcements (``_AnnounceJob``, §8.3) and which records were published at least
once (they get goodbye packets when withdrawn, §10.1). A record is *publishable* on an
interface when every one of our unique names it refers to (its owner, a PTR or SRV target) is
established there; only publishable records are answered, announced or said goodbye to.

Conflicts: a response carrying one of our unique names with data we do not have (on any of our
interfaces, so a multi-homed device on one LAN does not fight itself) is a conflict. While
probing we rename (``edge`` -> ``edge-2``, ``Greenhouse 1`` -> ``Greenhouse 1 (2)``) and probe
the new name; once established we re-probe first (§9) and rename only if the other side
defends. Simultaneous probes are settled by the lexicographic comparison of §8.2; the loser
waits one second and probes again. Packets we multicast come back through multicast loop; they
are recognised by their exact bytes and our own source address for two seconds, and ignored.

Every record of every received response is inserted into the optional cache (per interface),
so the agent's resolver and the DNS bridge answer from what was seen on the LAN.

Names are compared with ``table.name_key`` (case-insensitive, escapes and raw labels agree) and
records by their wire form (``_wire_key``), never by printed text: instance names hold spaces,
UTF-8 and even dots, which dnslib prints differently from how the table spells them.
"""

from __future__ import annotations

import random
import re
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol, Self

from dnslib import (
    AAAA,
    CNAME,
    NS,
    NSEC,
    PTR,
    QTYPE,
    RR,
    SRV,
    TXT,
    A,
    DNSBuffer,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

from edgeagent.dns.names import NameKey, label_to_name, name_key
from edgeagent.dns.records import CACHE_FLUSH, CLASS_IN, UNICAST_RESPONSE, Record, RType
from edgeagent.dns.wire import read_name
from edgeagent.mdns.table import next_host_name, next_instance_name
from edgeagent.net.model import InterfaceInfo

MDNS_PORT = 5353
# RFC 6762 §7.3: another host's identical question this recent counts as ours (it gives no
# figure; one second is the shortest interval between our own repeated questions).
DUPLICATE_QUESTION_WINDOW = 1.0
WireKey = tuple[NameKey, int, bytes]

# --------------------------------------------------------------------------------------------
# Collaborators (typed structurally; the concrete ones are RecordTable and Cache)


class AnswerLike(Protocol):
    @property
    def answers(self) -> tuple[Record, ...]: ...
    @property
    def additionals(self) -> tuple[Record, ...]: ...


class ServiceLike(Protocol):
    """What the engine needs of a service to rename its instance (``table.ServiceSpec``)."""

    @property
    def id(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def instance_fqdn(self) -> str: ...


class RecordSource(Protocol):
    """The record table the engine publishes (``edgeagent.mdns.table.RecordTable``)."""

    @property
    def hosts(self) -> Sequence[str]: ...
    @property
    def services(self) -> Sequence[ServiceLike]: ...
    def with_hosts(self, hosts: Sequence[str], /) -> Self: ...
    def with_service_instance(self, service_id: str, instance: str, /) -> Self: ...
    def records_for(self, iface: InterfaceInfo, /) -> list[Record]: ...
    def unique_names(self) -> list[str]: ...
    def query(self, name: Any, rtype: int, iface: InterfaceInfo, /) -> AnswerLike: ...


class RecordCache(Protocol):
    """The cache of records seen on the LAN (``edgeagent.mdns.cache.Cache``)."""

    def insert(self, now: float, iface_name: str, record: Record, /, *, source: str) -> bool: ...
    def expire(self, now: float, /) -> object: ...
    def known_answers(self, now: float, iface: str, name: str, rtype: int, /) -> list[Record]: ...


# --------------------------------------------------------------------------------------------
# Effects and public values


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``payload`` on ``iface`` over IPv4 (4) or IPv6 (6); ``dest`` None = mDNS group."""

    iface: str
    family: int
    dest: tuple[str, int] | None
    payload: bytes


class RenameKind(Enum):
    HOST = "host"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Renamed:
    """A name lost a conflict and was replaced (host labels without ``.local``).

    ``service_id`` names the service for ``RenameKind.SERVICE``.
    """

    kind: RenameKind
    old: str
    new: str
    service_id: str | None = None


class InterfaceState(Enum):
    PROBING = "probing"  # at least one of our names is still being probed here
    ANNOUNCING = "announcing"  # every name established, announcements still due
    ESTABLISHED = "established"  # nothing pending: answering only


@dataclass(frozen=True, slots=True)
class StateChanged:
    iface: str
    state: InterfaceState | None  # None: the interface is gone


Effect = Send | Renamed | StateChanged


@dataclass(frozen=True, slots=True)
class ResponderTiming:
    """RFC 6762 timing; tests shorten it. Durations in seconds."""

    probe_delay_max: float = 0.25  # §8.1: random 0-250 ms before the first probe
    probe_interval: float = 0.25  # §8.1: probes 250 ms apart
    probe_count: int = 3  # §8.1
    tie_break_defer: float = 1.0  # §8.2: the loser waits one second, then probes again
    conflict_limit: int = 15  # §8.1: 15 conflicts within 10 s ...
    conflict_window: float = 10.0
    conflict_backoff: float = 5.0  # ... then wait 5 s before each further probe attempt
    announce_count: int = 2  # §8.3: at least two unsolicited responses
    announce_interval: float = 1.0  # §8.3: one second apart (then doubling)
    response_delay_min: float = 0.020  # §6: shared answers wait a random 20-120 ms
    response_delay_max: float = 0.120
    truncated_delay_min: float = 0.400  # §7.2: 400-500 ms when the query had TC set
    truncated_delay_max: float = 0.500
    multicast_min_interval: float = 1.0  # §6: a record at most once a second per interface
    probe_defense_interval: float = 0.25  # §6: ... except when defending against a probe
    legacy_ttl_cap: int = 10  # §6.7
    own_packet_memory: float = 2.0  # how long a multicast payload is recognised as ours
    housekeeping_interval: float = 10.0  # cache expiry and own-payload memory cleanup


@dataclass(slots=True)
class ResponderStats:
    packets_received: int = 0
    queries_received: int = 0
    responses_received: int = 0
    malformed_dropped: int = 0
    ignored: int = 0  # own packets looped back, unknown interfaces, bad ports or opcodes
    packets_sent: int = 0
    probes_sent: int = 0
    announcements_sent: int = 0
    goodbyes_sent: int = 0
    multicast_responses: int = 0
    unicast_responses: int = 0
    legacy_responses: int = 0
    known_answers_suppressed: int = 0
    duplicate_answers_suppressed: int = 0
    conflicts: int = 0
    tie_breaks_lost: int = 0
    renames: int = 0
    records_withdrawn: int = 0  # reverse PTRs yielded to another stack on the same address
    cache_updates: int = 0  # inserts that changed what the cache returns
    dual_stack_copies_skipped: int = 0  # a response already read via the other family
    duplicate_questions_suppressed: int = 0  # ours not sent: another host just asked it (§7.3)


class EngineState(Enum):
    IDLE = "idle"  # constructed; interfaces may be set, nothing is sent
    RUNNING = "running"
    CLOSED = "closed"  # goodbyes sent; every further call is a no-op


# --------------------------------------------------------------------------------------------
# The engine


class Responder:
    """RFC 6762 responder for one record table over many interfaces, sans-IO.

    Call order: ``set_interfaces`` (any time), ``start``, then ``on_packet`` / ``on_timer`` /
    ``update_table`` / ``query`` as things happen, and ``shutdown`` last. Every call returns
    the effects to carry out, in order.
    """

    def __init__(
        self,
        table: RecordSource,
        *,
        rng: random.Random,
        cache: RecordCache | None = None,
        timing: ResponderTiming | None = None,
        max_packet: int = 1460,
    ) -> None:
        self._table = table
        self._rng = rng
        self._cache = cache
        self._timing = timing or ResponderTiming()
        self._max_packet = max_packet
        self._state = EngineState.IDLE
        self._ifaces: dict[str, _IfaceState] = {}
        self._stats = ResponderStats()
        self._own_payloads: dict[bytes, float] = {}
        # (iface, payload) -> (when, family, parsed query) of packets read lately: a dual-stack
        # host sends the same bytes over IPv4 and IPv6. A response's copy is skipped (its
        # records are cached already); a query's copy is handled again, as its family may
        # matter for the answer, but not parsed again (at 50 peers each device reads 300
        # probes while they all start).
        self._recent_packets: dict[tuple[str, bytes], tuple[float, int, _Packet | None]] = {}
        # QM questions other hosts asked lately, with their known answers (RFC 6762 §7.3).
        self._questions_seen: dict[tuple[str, NameKey, int], tuple[float, frozenset[WireKey]]] = {}
        self._conflict_times: deque[float] = deque()
        self._next_housekeeping: float | None = None
        # Per-table memos (the table is immutable; cleared whenever it is replaced).
        self._records_memo: dict[InterfaceInfo, list[Record]] = {}
        self._unique_memo: frozenset[NameKey] | None = None
        self._wire_memo: dict[int, tuple[Record, WireKey]] = {}

    # ---- public state

    @property
    def table(self) -> RecordSource:
        """The current table, including renames made after conflicts."""
        return self._table

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def stats(self) -> ResponderStats:
        return replace(self._stats)

    @property
    def interfaces(self) -> list[InterfaceInfo]:
        return [state.info for state in self._ifaces.values()]

    def interface_state(self, iface: str) -> InterfaceState | None:
        state = self._ifaces.get(iface)
        return None if state is None else state.overall()

    def established(self, iface: str) -> frozenset[NameKey]:
        """Keys (``name_key``) of our unique names that finished probing on ``iface``."""
        state = self._ifaces.get(iface)
        return frozenset(state.established) if state else frozenset()

    def own_records(self, name: str, rtype: int) -> list[Record]:
        """Our records answering (name, rtype) on any interface, deduplicated, NSEC excluded."""
        seen: dict[WireKey, Record] = {}
        for state in self._ifaces.values():
            for record in self._table.query(name, rtype, state.info).answers:
                if record.rtype != RType.NSEC:
                    seen.setdefault(self._wire(record), record)
        return list(seen.values())

    # ---- lifecycle

    def start(self, now: float) -> list[Effect]:
        """Begin probing on every known interface."""
        if self._state is not EngineState.IDLE:
            return []
        self._state = EngineState.RUNNING
        self._next_housekeeping = now + self._timing.housekeeping_interval
        out: list[Effect] = []
        for state in self._ifaces.values():
            self._begin_interface(now, state)
        self._report_states(out)
        return out

    def shutdown(self, now: float) -> list[Effect]:
        """Goodbye packets (TTL 0) for everything we published (RFC 6762 §10.1)."""
        if self._state is EngineState.CLOSED:
            return []
        out: list[Effect] = []
        if self._state is EngineState.RUNNING:
            for state in self._ifaces.values():
                self._send_goodbyes(now, state, self._published_records(state), out)
                state.published.clear()
        self._state = EngineState.CLOSED
        self._ifaces.clear()
        return out

    def set_interfaces(self, now: float, interfaces: Iterable[InterfaceInfo]) -> list[Effect]:
        """Reconcile with the current interfaces; those without any address are left out.

        A new interface is probed and announced on (RFC 6762 §8.3); a removed one gets goodbye
        packets (the adapter may no longer be able to send them); changed addresses get
        goodbyes for the old records and announcements for the new.
        """
        if self._state is EngineState.CLOSED:
            return []
        wanted = {info.name: info for info in interfaces if info.addresses}
        out: list[Effect] = []
        for name in list(self._ifaces):
            if name not in wanted:
                state = self._ifaces.pop(name)
                if self._state is EngineState.RUNNING:
                    self._send_goodbyes(now, state, self._published_records(state), out)
                out.append(StateChanged(name, None))
        for name, info in wanted.items():
            existing = self._ifaces.get(name)
            if existing is None:
                state = _IfaceState(info)
                self._ifaces[name] = state
                if self._state is EngineState.RUNNING:
                    self._begin_interface(now, state)
            elif existing.info != info:
                old_records = self._records(existing.info)
                existing.info = info
                if self._state is EngineState.RUNNING:
                    self._reconcile(now, existing, old_records, out)
        self._report_states(out)
        return out

    def update_table(self, now: float, table: RecordSource) -> list[Effect]:
        """Publish a new table: goodbye removed records, probe new names, announce the rest."""
        if self._state is EngineState.CLOSED:
            return []
        old = {name: self._records(state.info) for name, state in self._ifaces.items()}
        self._table = table
        self._records_memo.clear()
        self._unique_memo = None
        self._wire_memo.clear()
        out: list[Effect] = []
        if self._state is EngineState.RUNNING:
            for name, state in self._ifaces.items():
                self._reconcile(now, state, old[name], out)
            self._report_states(out)
        return out

    # ---- client side

    def query(
        self,
        now: float,
        name: str,
        rtype: int,
        *,
        unicast: bool = False,
        families: Sequence[int] = (4, 6),
        suppress_duplicate: bool = False,
    ) -> list[Effect]:
        """A one-shot question on every interface and each of ``families``; answers land in
        the cache.

        ``unicast`` asks for unicast answers (QU, RFC 6762 §5.4): what a device that just
        started should ask first, so that fifty peers answering it do not each multicast to
        everyone (responders still multicast a record they have not multicast lately).

        ``suppress_duplicate`` is for continuous querying (browsing): a QM question is not
        sent on an interface where another host asked it within the last second listing no
        known answer we lack (RFC 6762 §7.3); the answers it drew reached us too, so the
        caller counts ours as sent. Fifty devices browsing for each other then ask a handful
        of times per round instead of fifty.
        """
        qclass = CLASS_IN | (UNICAST_RESPONSE if unicast else 0)
        if self._state is not EngineState.RUNNING:
            return []
        out: list[Effect] = []
        for iface, state in self._ifaces.items():
            # RFC 6762 §7.1: list what we already know, so only news is answered; a list too
            # long for one packet is cut (fewer suppressed answers, never a lost question).
            known = (
                [] if self._cache is None else self._cache.known_answers(now, iface, name, rtype)
            )
            if (
                suppress_duplicate
                and not unicast
                and self._asked_lately(now, state, name, rtype, known)
            ):
                self._stats.duplicate_questions_suppressed += 1
                continue
            while True:
                message = _message(response=False)
                message.add_question(DNSQuestion(name, rtype, qclass))
                for record in known:
                    message.add_answer(record.to_rr())
                payload = _pack(message)
                if len(payload) <= self._max_packet or not known:
                    break
                known = known[: len(known) * 3 // 4]
            for family in state.families():
                if family in families:
                    self._send(now, state, family, dest=None, payload=payload, out=out)
        return out

    def _asked_lately(
        self, now: float, state: _IfaceState, name: str, rtype: int, known: list[Record]
    ) -> bool:
        """§7.3: another host asked this QM question on ``state``'s link within the last
        second, and its known answers are all among ours (or are our own records)."""
        seen = self._questions_seen.get((state.info.name, name_key(name), rtype))
        if seen is None or now - seen[0] >= DUPLICATE_QUESTION_WINDOW:
            return False
        ours = {_wire_key(record) for record in known}
        ours.update(self._wire(r) for r in self._table.query(name, rtype, state.info).answers)
        return seen[1] <= ours

    def _note_questions(self, now: float, iface: str, packet: _Packet) -> None:
        """Remember the QM questions of a complete multicast query, for ``_asked_lately``."""
        if packet.truncated:
            return  # more known answers follow in another packet: not comparable
        for question in packet.questions:
            if question.unicast:
                continue
            key = name_key(question.label)
            rtype = question.rtype
            known = frozenset(k for k in packet.known if k[0] == key and rtype in (RType.ANY, k[1]))
            if len(self._questions_seen) >= 256:
                self._questions_seen = {
                    k: v
                    for k, v in self._questions_seen.items()
                    if now - v[0] < DUPLICATE_QUESTION_WINDOW
                }
                if len(self._questions_seen) >= 256:
                    self._questions_seen.clear()
            self._questions_seen[(iface, key, rtype)] = (now, known)

    # ---- input

    def _dual_stack_copy(
        self, now: float, iface: str, family: int, data: bytes
    ) -> tuple[float, int, _Packet | None] | None:
        """What we noted when these exact bytes arrived on ``iface`` over the other family
        within the last second, or None (a same-family repeat is a real retransmission)."""
        seen = self._recent_packets.get((iface, data))
        if seen is not None and now - seen[0] < 1.0 and seen[1] != family:
            return seen
        return None

    def _note_packet(
        self, now: float, iface: str, family: int, data: bytes, packet: _Packet | None
    ) -> None:
        if len(self._recent_packets) >= 512:
            self._recent_packets = {
                k: v for k, v in self._recent_packets.items() if now - v[0] < 1.0
            }
            if len(self._recent_packets) >= 512:
                self._recent_packets.clear()
        self._recent_packets[(iface, data)] = (now, family, packet)

    def on_packet(
        self,
        now: float,
        iface: str,
        family: int,
        src: tuple[str, int],
        data: bytes,
        *,
        to_group: bool = True,
    ) -> list[Effect]:
        """Handle one datagram that arrived on ``iface``. Never raises on bad input.

        ``to_group`` False: the datagram was sent to our unicast address, not the group; a
        query is then answered by unicast (RFC 6762 §5.5).
        """
        if self._state is not EngineState.RUNNING:
            return []
        self._stats.packets_received += 1
        state = self._ifaces.get(iface)
        own_until = self._own_payloads.get(bytes(data))
        if state is None or (
            own_until is not None and own_until >= now and self._is_own_address(src[0])
        ):
            self._stats.ignored += 1
            return []
        data = bytes(data)
        copy = self._dual_stack_copy(now, iface, family, data) if to_group else None
        if copy is not None and copy[2] is None:
            self._stats.dual_stack_copies_skipped += 1  # a response, read already
            return []
        if copy is not None and copy[2] is not None:
            packet = copy[2]
        else:
            try:
                packet = _parse(data)
            except Exception:  # dnslib raises many types (DNSError, IndexError, struct.error)
                self._stats.malformed_dropped += 1
                return []
            if to_group:
                self._note_packet(now, iface, family, data, None if packet.is_response else packet)
        if packet.opcode != 0:  # RFC 6762 §18.3: other opcodes are silently ignored
            self._stats.ignored += 1
            return []
        out: list[Effect] = []
        if packet.is_response:
            if src[1] != MDNS_PORT:  # RFC 6762 §11: responses must come from port 5353
                self._stats.ignored += 1
                return []
            self._stats.responses_received += 1
            self._handle_response(now, state, family, src=src, packet=packet, out=out)
        else:
            self._stats.queries_received += 1
            self._handle_query(
                now, state, family, src=src, packet=packet, direct=not to_group, out=out
            )
        self._report_states(out)
        return out

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must run next (monotonic seconds), or None for never."""
        if self._state is not EngineState.RUNNING:
            return None
        times = [self._next_housekeeping] if self._next_housekeeping is not None else []
        for state in self._ifaces.values():
            times.extend(job.due for job in state.probes)
            times.extend(job.due for job in state.announcements)
            times.extend(pending.due for pending in state.pending.values())
        return min(times, default=None)

    def on_timer(self, now: float) -> list[Effect]:
        """Run everything due at ``now``: probes, announcements, delayed answers."""
        if self._state is not EngineState.RUNNING:
            return []
        out: list[Effect] = []
        for state in list(self._ifaces.values()):
            self._run_probes(now, state, out)
            self._run_announcements(now, state, out)
            self._run_pending(now, state, out)
        if self._next_housekeeping is not None and now >= self._next_housekeeping:
            self._next_housekeeping = now + self._timing.housekeeping_interval
            self._own_payloads = {p: t for p, t in self._own_payloads.items() if t >= now}
            if self._cache is not None:
                self._cache.expire(now)
        self._report_states(out)
        return out

    # ---- probing (RFC 6762 §8.1, §8.2)

    def _begin_interface(self, now: float, state: _IfaceState) -> None:
        # Records that depend on no unique name (service enumeration) are publishable at once
        # and get announced together with the first names established here.
        names = self._unique()
        if names:
            state.probes.append(_ProbeJob(set(names), self._probe_start(now)))

    def _probe_start(self, now: float) -> float:
        delay = self._rng.uniform(0.0, self._timing.probe_delay_max)
        window_start = now - self._timing.conflict_window
        while self._conflict_times and self._conflict_times[0] < window_start:
            self._conflict_times.popleft()
        if len(self._conflict_times) >= self._timing.conflict_limit:
            delay = max(delay, self._timing.conflict_backoff)  # §8.1 rate limit
        return now + delay

    def _run_probes(self, now: float, state: _IfaceState, out: list[Effect]) -> None:
        finished: set[NameKey] = set()
        for job in list(state.probes):
            if job.due > now:
                continue
            if not job.names:
                state.probes.remove(job)
            elif job.sent < self._timing.probe_count:
                self._send_probe(now, state, job.names, out)
                job.sent += 1
                job.due = now + self._timing.probe_interval
            else:
                state.probes.remove(job)
                finished |= job.names
        if finished:
            state.established |= finished
            self._announce_new(now, state, out)

    def _send_probe(
        self, now: float, state: _IfaceState, names: set[NameKey], out: list[Effect]
    ) -> None:
        by_name: dict[NameKey, list[Record]] = {}
        for record in self._records(state.info):
            if record.unique:
                by_name.setdefault(self._wire(record)[0], []).append(record)
        wanted = sorted(names)
        for start in range(0, len(wanted), 8):
            message = _message(response=False)
            for key in wanted[start : start + 8]:
                records = by_name.get(key, [])
                if not records:
                    continue
                # QU questions of type ANY: a defender may answer us directly (§8.1); the
                # proposed records go in the authority section, without cache-flush.
                question = DNSQuestion(
                    records[0].to_rr().rname, QTYPE.ANY, CLASS_IN | UNICAST_RESPONSE
                )
                message.add_question(question)
                for record in records:
                    message.add_auth(record.to_rr())
            if not message.questions:
                continue
            for payload in self._pack_split(message):
                for family in state.families():
                    self._send(now, state, family, dest=None, payload=payload, out=out)
                self._stats.probes_sent += 1

    def _check_simultaneous_probe(self, now: float, state: _IfaceState, packet: _Packet) -> None:
        """§8.2: someone probes a name we are probing; the lexicographically later data wins."""
        probing = {key for job in state.probes if job.sent > 0 for key in job.names}
        if not probing:
            return
        theirs_by_name: dict[NameKey, list[Record]] = {}
        for seen in packet.authority:
            theirs_by_name.setdefault(seen.key, []).append(seen.record)
        ours = [r for r in self._records(state.info) if r.unique]
        for key, theirs in theirs_by_name.items():
            if key not in probing:
                continue
            mine = [r for r in ours if self._wire(r)[0] == key]
            if compare_record_sets(mine, theirs) < 0:
                self._stats.tie_breaks_lost += 1
                for job in state.probes:
                    job.names.discard(key)
                state.probes.append(_ProbeJob({key}, now + self._timing.tie_break_defer))

    # ---- conflicts and renames (§8.1, §9)

    def _conflict(self, now: float, key: NameKey, out: list[Effect]) -> None:
        if key not in self._unique():
            return  # a name we gave up a moment ago (e.g. an instance that followed its host)
        self._stats.conflicts += 1
        self._conflict_times.append(now)
        if not self._probing(key):
            # §9: an established name goes back to probing; the real owner will defend it
            # and the conflict seen while probing renames us.
            for state in self._ifaces.values():
                state.established.discard(key)
                state.probes.append(_ProbeJob({key}, self._probe_start(now)))
            return
        self._rename(now, key, out)

    def _rename(self, now: float, key: NameKey, out: list[Effect]) -> None:
        table = self._table
        for host in table.hosts:
            if name_key(f"{host}.local") == key:
                new_host = next_host_name(host)
                hosts = [new_host if h == host else h for h in table.hosts]
                out.append(Renamed(RenameKind.HOST, host, new_host))
                self._stats.renames += 1
                renamed = table.with_hosts(hosts)
                # Instances named after the host (the default instance name), or renamed from
                # it in an earlier conflict ("edge (2)"), follow it: a renamed device shows
                # "edge-2" everywhere rather than "edge (2)" beside it.
                after_host = re.compile(re.escape(host) + r"(?: \([0-9]+\))?")
                for service in table.services:
                    if after_host.fullmatch(service.instance):
                        renamed = renamed.with_service_instance(service.id, new_host)
                        out.append(
                            Renamed(RenameKind.SERVICE, service.instance, new_host, service.id)
                        )
                out.extend(self.update_table(now, renamed))
                return
        for service in table.services:
            if name_key(service.instance_fqdn) == key:
                new_instance = next_instance_name(service.instance)
                out.append(Renamed(RenameKind.SERVICE, service.instance, new_instance, service.id))
                self._stats.renames += 1
                renamed = table.with_service_instance(service.id, new_instance)
                out.extend(self.update_table(now, renamed))
                return

    def _is_own_address(self, address: str) -> bool:
        # Byte-identical packets from another host (two agents asking the same question) are
        # theirs, not a loop-back of ours: only our own source addresses count.
        return any(address in state.info.addresses for state in self._ifaces.values())

    def _probing(self, key: NameKey) -> bool:
        return any(key in job.names for s in self._ifaces.values() for job in s.probes)

    # ---- announcing and goodbyes (§8.3, §10.1)

    def _announce_new(self, now: float, state: _IfaceState, out: list[Effect]) -> None:
        """Announce every publishable record not yet published on this interface."""
        keys = {self._wire(r) for r in self._publishable(state)} - state.published
        if keys:
            state.announcements.append(_AnnounceJob(keys, now))
            self._run_announcements(now, state, out)

    def _run_announcements(self, now: float, state: _IfaceState, out: list[Effect]) -> None:
        for job in list(state.announcements):
            if job.due > now:
                continue
            records = [r for r in self._publishable(state) if self._wire(r) in job.keys]
            if records:
                message = _message(response=True)
                for record in records:
                    message.add_answer(record.to_rr(mdns=True))
                for payload in self._pack_split(message):
                    for family in state.families():
                        self._send(now, state, family, dest=None, payload=payload, out=out)
                    self._stats.announcements_sent += 1
                for record in records:
                    wire = self._wire(record)
                    state.published.add(wire)
                    for family in state.families():
                        state.last_multicast[(family, wire)] = now
            job.sent += 1
            if job.sent >= self._timing.announce_count or not records:
                state.announcements.remove(job)
            else:
                # §8.3: one second apart, then the interval may double each time.
                job.due = now + self._timing.announce_interval * 2 ** (job.sent - 1)

    def _send_goodbyes(
        self, now: float, state: _IfaceState, records: list[Record], out: list[Effect]
    ) -> None:
        if not records:
            return
        message = _message(response=True)
        for record in records:
            message.add_answer(record.to_rr(mdns=True, ttl=0))
        for payload in self._pack_split(message):
            for family in state.families():
                self._send(now, state, family, dest=None, payload=payload, out=out)
            self._stats.goodbyes_sent += 1

    def _published_records(self, state: _IfaceState) -> list[Record]:
        return [r for r in self._records(state.info) if self._wire(r) in state.published]

    def _reconcile(
        self, now: float, state: _IfaceState, old_records: list[Record], out: list[Effect]
    ) -> None:
        """After the table or the interface's addresses changed: goodbye, probe, announce."""
        unique = self._unique()
        new_keys = {self._wire(r) for r in self._records(state.info)}
        gone = [r for r in old_records if _wire_key(r) in state.published - new_keys]
        self._send_goodbyes(now, state, gone, out)
        state.published &= new_keys
        state.pending = {k: p for k, p in state.pending.items() if k[1] in new_keys}
        state.established &= unique
        for job in state.probes:
            job.names &= unique
        state.probes = [job for job in state.probes if job.names]
        probing = {key for job in state.probes for key in job.names}
        fresh = unique - state.established - probing
        if fresh:
            state.probes.append(_ProbeJob(set(fresh), self._probe_start(now)))
        self._announce_new(now, state, out)

    # ---- answering (§5.4, §6, §6.7, §7.1)

    def _handle_query(
        self,
        now: float,
        state: _IfaceState,
        family: int,
        *,
        src: tuple[str, int],
        packet: _Packet,
        direct: bool,
        out: list[Effect],
    ) -> None:
        legacy = src[1] != MDNS_PORT
        is_probe = bool(packet.authority)
        if is_probe:
            self._check_simultaneous_probe(now, state, packet)
            self._yield_unprobed(now, state, packet.authority, self._unique(), out)
        elif not legacy and not direct:
            self._note_questions(now, state.info.name, packet)
        known = packet.known
        unique = self._unique()
        multicast: dict[WireKey, Record] = {}
        unicast: dict[WireKey, Record] = {}
        additionals: dict[WireKey, Record] = {}
        for question in packet.questions:
            found = self._table.query(question.label, question.rtype, state.info)
            for record in found.answers:
                if not self._is_publishable(state, record, unique):
                    continue
                wire = self._wire(record)
                known_ttl = known.get(wire)
                if known_ttl is not None and known_ttl >= record.ttl / 2:  # §7.1
                    self._stats.known_answers_suppressed += 1
                    continue
                # §5.4: a QU question gets a unicast answer if we multicast the record lately
                # (else the multicast refreshes every cache). Probes are always defended by
                # multicast: with SO_REUSEPORT only one socket on the prober's host would
                # receive a unicast reply. Legacy (§6.7) and direct unicast (§5.5) queries
                # always get a unicast answer.
                recent_qu = (
                    question.unicast
                    and not is_probe
                    and self._recently_multicast(now, state, family, record)
                )
                if legacy or direct or recent_qu:
                    unicast[wire] = record
                else:
                    multicast[wire] = record
            for record in found.additionals:
                wire = self._wire(record)
                if wire not in known and self._is_publishable(state, record, unique):
                    additionals[wire] = record
        if legacy:
            if unicast:
                self._legacy_reply(
                    now,
                    state,
                    family,
                    src=src,
                    packet=packet,
                    answers=unicast,
                    additionals=additionals,
                    out=out,
                )
            return
        if unicast:
            extra = {k: r for k, r in additionals.items() if k not in unicast}
            self._respond(
                now,
                state,
                family,
                dest=src,
                answers=list(unicast.values()),
                additionals=extra,
                out=out,
            )
            self._stats.unicast_responses += 1
        if not multicast:
            return
        min_interval = (
            self._timing.probe_defense_interval if is_probe else self._timing.multicast_min_interval
        )
        multicast = {
            k: r
            for k, r in multicast.items()
            if now - state.last_multicast.get((family, k), -1e18) >= min_interval
        }
        if not multicast:
            return
        if is_probe or all(r.unique for r in multicast.values()):
            # §6: answers made only of unique records, and probe defences, go out at once.
            extra = {k: r for k, r in additionals.items() if k not in multicast}
            self._respond(
                now,
                state,
                family,
                dest=None,
                answers=list(multicast.values()),
                additionals=extra,
                out=out,
            )
            self._stats.multicast_responses += 1
            return
        if packet.truncated:
            low, high = self._timing.truncated_delay_min, self._timing.truncated_delay_max
        else:
            low, high = self._timing.response_delay_min, self._timing.response_delay_max
        due = now + self._rng.uniform(low, high)
        for wire, record in multicast.items():
            self._add_pending(state, (family, wire), record, due, additional=False)
        for wire, record in additionals.items():
            if wire not in multicast:
                self._add_pending(state, (family, wire), record, due, additional=True)

    def _add_pending(
        self,
        state: _IfaceState,
        key: tuple[int, WireKey],
        record: Record,
        due: float,
        *,
        additional: bool,
    ) -> None:
        pending = state.pending.get(key)
        if pending is None:
            state.pending[key] = _Pending(record, due, additional)
        else:  # aggregate (§6): the earliest time wins, an answer beats an additional
            pending.due = min(pending.due, due)
            pending.additional = pending.additional and additional

    def _run_pending(self, now: float, state: _IfaceState, out: list[Effect]) -> None:
        ready = {k: p for k, p in state.pending.items() if p.due <= now}
        if not ready:
            return
        for key in ready:
            del state.pending[key]
        for family in state.families():
            answers = [p.record for k, p in ready.items() if k[0] == family and not p.additional]
            extra = {k[1]: p.record for k, p in ready.items() if k[0] == family and p.additional}
            if answers:
                self._respond(
                    now, state, family, dest=None, answers=answers, additionals=extra, out=out
                )
                self._stats.multicast_responses += 1

    def _respond(
        self,
        now: float,
        state: _IfaceState,
        family: int,
        *,
        dest: tuple[str, int] | None,
        answers: list[Record],
        additionals: dict[WireKey, Record],
        out: list[Effect],
    ) -> None:
        message = _message(response=True)
        for record in answers:
            message.add_answer(record.to_rr(mdns=True))
        extra = [r.to_rr(mdns=True) for r in additionals.values()]
        for payload in self._pack_split(message, extra):
            self._send(now, state, family, dest=dest, payload=payload, out=out)
        if dest is None:
            for record in answers:
                state.last_multicast[(family, self._wire(record))] = now

    def _legacy_reply(
        self,
        now: float,
        state: _IfaceState,
        family: int,
        *,
        src: tuple[str, int],
        packet: _Packet,
        answers: dict[WireKey, Record],
        additionals: dict[WireKey, Record],
        out: list[Effect],
    ) -> None:
        """§6.7: a conventional DNS reply: the query's ID and questions, TTL <= 10 s, no
        cache-flush bits, sent to the querier's address and port."""
        cap = self._timing.legacy_ttl_cap
        message = _message(response=True, ident=packet.id)
        for question in packet.questions:
            message.add_question(DNSQuestion(question.label, question.rtype, CLASS_IN))
        for record in answers.values():
            message.add_answer(record.to_rr(ttl=min(record.ttl, cap)))
        extra = [r.to_rr(ttl=min(r.ttl, cap)) for k, r in additionals.items() if k not in answers]
        payload = _pack_truncating(message, extra, self._max_packet)
        self._send(now, state, family, dest=src, payload=payload, out=out)
        self._stats.legacy_responses += 1

    def _recently_multicast(
        self, now: float, state: _IfaceState, family: int, record: Record
    ) -> bool:
        last = state.last_multicast.get((family, self._wire(record)))
        return last is not None and now - last < record.ttl / 4

    # ---- responses: cache, duplicate suppression, conflicts

    def _handle_response(
        self,
        now: float,
        state: _IfaceState,
        family: int,
        *,
        src: tuple[str, int],
        packet: _Packet,
        out: list[Effect],
    ) -> None:
        records = packet.answers + packet.additionals
        if self._cache is not None:
            for seen in records:
                if self._cache.insert(now, state.info.name, seen.record, source=src[0]):
                    self._stats.cache_updates += 1
        for seen in packet.answers:
            # §7.4: someone else just multicast an answer we were about to give.
            slot = (family, seen.wire)
            pending = state.pending.get(slot)
            if pending is not None and seen.record.ttl >= pending.record.ttl / 2:
                del state.pending[slot]
                self._stats.duplicate_answers_suppressed += 1
        unique = self._unique()
        self._yield_unprobed(now, state, records, unique, out)
        if not any(seen.key in unique for seen in records):
            return  # the common case: nothing about our names, skip building our record set
        ours = self._all_our_data()
        our_types = {(k[0], k[1]) for k in ours}
        conflicted: list[NameKey] = []
        for seen in records:
            key, record = seen.key, seen.record
            if key not in unique or record.ttl == 0 or key in conflicted:
                continue
            if record.rtype in (RType.NSEC, RType.OPT):
                continue
            if (key, record.rtype) not in our_types and not self._probing(key):
                continue  # a type we do not publish for an established name: no clash
            if seen.wire not in ours:
                conflicted.append(key)
        for key in conflicted:
            if key in self._unique():  # an earlier rename may have replaced it
                self._conflict(now, key, out)

    def _yield_unprobed(
        self,
        now: float,
        state: _IfaceState,
        records: list[_Seen],
        unique: frozenset[NameKey],
        out: list[Effect],
    ) -> None:
        """Withdraw unique records we never probe (reverse PTRs) when another host claims them.

        Two stacks on one host (Avahi and us) both map the host's address back to their own
        host name, each with the cache-flush bit; Avahi treats the difference as a conflict and
        renames itself again and again. Those records are a courtesy, not a name we own, so we
        yield (on this interface): a goodbye for ours, then silence.
        """
        claimed = {
            seen.wire[:2]
            for seen in records
            if seen.record.ttl > 0 and seen.key not in unique and seen.record.rtype != RType.NSEC
        }
        if not claimed:
            return
        ours = [r for r in self._records(state.info) if r.unique and self._wire(r)[:2] in claimed]
        if not ours:
            return
        theirs = {seen.wire for seen in records}
        mine = {self._wire(r) for r in ours}
        losing = [
            r
            for r in ours
            if self._wire(r) not in theirs
            and self._wire(r) not in state.withdrawn
            and any(k[:2] == self._wire(r)[:2] and k not in mine for k in theirs)
        ]
        if not losing:
            return
        self._stats.records_withdrawn += len(losing)
        published = [r for r in losing if self._wire(r) in state.published]
        self._send_goodbyes(now, state, published, out)
        for record in losing:
            wire = self._wire(record)
            state.withdrawn.add(wire)
            state.published.discard(wire)
            for family in (4, 6):
                state.pending.pop((family, wire), None)

    def _all_our_data(self) -> set[WireKey]:
        keys: set[WireKey] = set()
        for state in self._ifaces.values():
            keys.update(self._wire(r) for r in self._records(state.info))
        return keys

    # ---- helpers

    def _unique(self) -> frozenset[NameKey]:
        if self._unique_memo is None:
            self._unique_memo = frozenset(name_key(n) for n in self._table.unique_names())
        return self._unique_memo

    def _records(self, info: InterfaceInfo) -> list[Record]:
        records = self._records_memo.get(info)
        if records is None:
            if len(self._records_memo) >= 64:  # interfaces come and go; stay bounded
                self._records_memo.clear()
            records = self._records_memo[info] = self._table.records_for(info)
        return records

    def _wire(self, record: Record) -> WireKey:
        """``_wire_key`` of one of our records, memoised: the table hands out the same objects
        again and again, and packing rdata for every comparison is what made answering slow."""
        hit = self._wire_memo.get(id(record))
        if hit is not None and hit[0] is record:
            return hit[1]
        wire = _wire_key(record)
        if len(self._wire_memo) >= 8192:
            self._wire_memo.clear()
        self._wire_memo[id(record)] = (record, wire)  # holding the record keeps its id unique
        return wire

    def _is_publishable(
        self, state: _IfaceState, record: Record, unique: frozenset[NameKey]
    ) -> bool:
        wire = self._wire(record)
        if state.withdrawn and wire in state.withdrawn:
            return False
        if record.rtype == RType.PTR:
            refs = {wire[0], name_key(record.data.label)}
        elif record.rtype == RType.SRV:
            refs = {wire[0], name_key(record.data.target)}
        else:
            return wire[0] not in unique or wire[0] in state.established
        return (refs & unique) <= state.established

    def _publishable(self, state: _IfaceState) -> list[Record]:
        unique = self._unique()
        return [r for r in self._records(state.info) if self._is_publishable(state, r, unique)]

    def _send(
        self,
        now: float,
        state: _IfaceState,
        family: int,
        *,
        dest: tuple[str, int] | None,
        payload: bytes,
        out: list[Effect],
    ) -> None:
        if dest is None:
            self._own_payloads[payload] = now + self._timing.own_packet_memory
        out.append(Send(state.info.name, family, dest, payload))
        self._stats.packets_sent += 1

    def _pack_split(self, message: DNSRecord, additionals: Sequence[RR] = ()) -> list[bytes]:
        """Pack into packets of at most ``max_packet`` bytes (RFC 6762 §7.2, §17).

        Answer and authority records are spread over as many packets as needed; questions stay
        in the first. Additionals are optional: added while they fit, the rest dropped.
        """
        limit = self._max_packet
        if additionals:
            whole = _pack_with(message, additionals, limit)
            if len(whole) <= limit:
                return [whole]
        else:
            whole = _pack(message)
            if len(whole) <= limit:
                return [whole]
        packets: list[bytes] = []
        questions = list(message.questions)
        remaining = [(True, rr) for rr in message.rr] + [(False, rr) for rr in message.auth]
        while remaining:
            current = _message(response=bool(message.header.qr))
            for question in questions:
                current.add_question(question)
            questions = []
            taken = 0
            for is_answer, rr in remaining:
                section = current.rr if is_answer else current.auth
                section.append(rr)
                if taken and len(_pack(current)) > limit:
                    section.pop()
                    break
                taken += 1
            remaining = remaining[taken:]
            _fix_counts(current)
            packets.append(_pack_with(current, () if packets else additionals, limit))
        return packets

    def _report_states(self, out: list[Effect]) -> None:
        for state in self._ifaces.values():
            current = state.overall()
            if current is not state.reported:
                state.reported = current
                out.append(StateChanged(state.info.name, current))


# --------------------------------------------------------------------------------------------
# Public pure helpers


def compare_record_sets(ours: Sequence[Record], theirs: Sequence[Record]) -> int:
    """RFC 6762 §8.2: -1 if ours is lexicographically earlier (we lose), 0 equal, 1 later.

    Each set is sorted by (class, type, uncompressed rdata bytes) and compared pair by pair;
    when one set is a prefix of the other, the longer wins.
    """
    mine = sorted((CLASS_IN, int(r.rtype), _rdata_bytes(r)) for r in ours)
    other = sorted((CLASS_IN, int(r.rtype), _rdata_bytes(r)) for r in theirs)
    for a, b in zip(mine, other, strict=False):
        if a != b:
            return -1 if a < b else 1
    return (len(mine) > len(other)) - (len(mine) < len(other))


# --------------------------------------------------------------------------------------------
# Private helpers


@dataclass(slots=True)
class _ProbeJob:
    names: set[NameKey]
    due: float
    sent: int = 0


@dataclass(slots=True)
class _AnnounceJob:
    keys: set[WireKey]
    due: float
    sent: int = 0


@dataclass(slots=True)
class _Pending:
    record: Record
    due: float
    additional: bool


@dataclass(slots=True)
class _IfaceState:
    info: InterfaceInfo
    established: set[NameKey] = field(default_factory=set)
    probes: list[_ProbeJob] = field(default_factory=list)
    announcements: list[_AnnounceJob] = field(default_factory=list)
    published: set[WireKey] = field(default_factory=set)
    withdrawn: set[WireKey] = field(default_factory=set)  # yielded to another host
    pending: dict[tuple[int, WireKey], _Pending] = field(default_factory=dict)
    last_multicast: dict[tuple[int, WireKey], float] = field(default_factory=dict)
    reported: InterfaceState | None = None

    def families(self) -> list[int]:
        return ([4] if self.info.ipv4 else []) + ([6] if self.info.ipv6 else [])

    def overall(self) -> InterfaceState:
        if any(job.names for job in self.probes):
            return InterfaceState.PROBING
        if self.announcements:
            return InterfaceState.ANNOUNCING
        return InterfaceState.ESTABLISHED


@dataclass(frozen=True, slots=True)
class _Question:
    label: Any  # the dnslib DNSLabel as received (exact bytes, for echoing and lookups)
    rtype: int
    unicast: bool


@dataclass(frozen=True, slots=True)
class _Packet:
    id: int
    is_response: bool
    opcode: int
    truncated: bool
    questions: list[_Question]
    answers: list[_Seen]
    authority: list[_Seen]
    additionals: list[_Seen]
    known: dict[WireKey, int]  # a query's known answers (§7.1): wire key -> TTL


@dataclass(frozen=True, slots=True)
class _Seen:
    """A received record with its comparison keys, computed once."""

    record: Record
    key: NameKey
    wire: WireKey


_HEADER = struct.Struct("!HHHHHH")
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")
_SRV_FIXED = struct.Struct("!HHH")
_FLAG_QR = 0x8000
_NAME_RDATA = frozenset((RType.PTR, 5, 2))  # PTR, CNAME, NS: rdata is one name
_RAW_RDATA = frozenset((RType.A, RType.AAAA, RType.TXT))
# The lean record reader (``_parse_records``): dnslib rdata classes by type, and plain ints
# (comparing with IntEnum members costs an attribute lookup each time).
_NAME_CLASSES: dict[int, Any] = {RType.PTR: PTR, 5: CNAME, 2: NS}
_ADDRESS_CLASSES: dict[int, tuple[Any, int]] = {RType.A: (A, 4), RType.AAAA: (AAAA, 16)}
_TYPE_TXT = int(RType.TXT)
_TYPE_SRV = int(RType.SRV)
_TYPE_OPT = int(RType.OPT)
_TYPE_NSEC = int(RType.NSEC)
# Bytes name text writes as escapes (``dns.names``; a dot inside a label is counted apart).
_NEEDS_ESCAPE = re.compile(rb"[\x00-\x1f\x7f\\]")
# dnslib's name for each type below 256, None where the name does not lead back to the number
# (dnslib would pack such an NSEC bitmap differently from how it arrived).
_NSEC_TYPE_NAMES: tuple[str | None, ...] = tuple(
    name if getattr(QTYPE, name) == code else None
    for code, name in ((code, str(QTYPE[code])) for code in range(256))
)
_nsec_memo: dict[bytes, tuple[str, ...] | None] = {}  # the few bitmaps a LAN sends, decoded


def _parse(data: bytes) -> _Packet:
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if not flags & _FLAG_QR and nscount == 0:
        return _parse_query(data, ident, flags, qdcount, ancount)
    packet = _parse_records(data, ident, flags, qdcount, (ancount, nscount, arcount))
    return _parse_full(data) if packet is None else packet


def _parse_query(data: bytes, ident: int, flags: int, qdcount: int, ancount: int) -> _Packet:
    """A plain query (not a probe), read without dnslib: questions and known answers only.

    At 50 peers every browse question carries ~50 known answers and reaches every device, and
    parsing such a packet with dnslib costs several times what this does (bench/README.md,
    "Parsers"). Known answers are reduced to the
    wire keys the §7.1 check compares (uncompressed rdata, as ``_rdata_bytes`` packs ours);
    types we never publish are skipped. The additional section (EDNS) is not read.
    """
    offset = 12
    questions = []
    for _ in range(qdcount):
        labels, offset = read_name(data, offset)
        qtype, qclass = _TYPE_CLASS.unpack_from(data, offset)
        offset += 4
        questions.append(_Question(DNSLabel(list(labels)), qtype, bool(qclass & UNICAST_RESPONSE)))
    known: dict[WireKey, int] = {}
    size = len(data)
    keys: dict[tuple[bytes, ...], NameKey] = {}  # the same owner name ~50 times over
    memo: dict[int, tuple[bytes, ...]] = {}
    for _ in range(ancount):
        labels, offset = read_name(data, offset, memo)
        rtype, _, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
        offset += 10
        end = offset + rdlength
        if end > size:
            raise ValueError("record data runs past the end")
        if rtype in _RAW_RDATA:
            rdata = data[offset:end]
        elif rtype in _NAME_RDATA:
            rdata = _rdata_name(data, offset, end, memo)[1]
        elif rtype == RType.SRV:
            rdata = data[offset : offset + 6] + _rdata_name(data, offset + 6, end, memo)[1]
        else:
            offset = end
            continue
        key = keys.get(labels)
        if key is None:
            key = keys[labels] = tuple(
                label.decode("utf-8", "surrogateescape").lower() for label in labels
            )
        known[(key, rtype, rdata)] = ttl
        offset = end
    return _Packet(
        id=ident,
        is_response=False,
        opcode=(flags >> 11) & 0xF,
        truncated=bool(flags & 0x0200),
        questions=questions,
        answers=[],
        authority=[],
        additionals=[],
        known=known,
    )


def _uncompressed(labels: tuple[bytes, ...]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _rdata_name(
    data: bytes, offset: int, end: int, memo: dict[int, tuple[bytes, ...]]
) -> tuple[tuple[bytes, ...], bytes]:
    """The name that fills rdata from ``offset`` to ``end`` (PTR, CNAME, NS, the SRV target):
    its labels and uncompressed bytes; raises when it does not end exactly at ``end``."""
    target, after = read_name(data, offset, memo)
    if after != end:
        raise ValueError("name rdata length mismatch")
    return target, _uncompressed(target)


def _parse_records(
    data: bytes, ident: int, flags: int, qdcount: int, counts: tuple[int, int, int]
) -> _Packet | None:
    """A response or probe read without dnslib; None when a record needs dnslib after all.

    At start-up every device hears every peer probe and announce, and ``DNSRecord.parse`` was
    most of the CPU; this is several times cheaper (bench/README.md, "Parsers"). It builds the
    same records as ``_parse_full`` (dnslib rdata, name text, cache-flush bit) and takes the
    uncompressed rdata for the wire key straight from the packet. Types it does not know, and
    NSEC bitmaps in a form it does not read, send the whole packet to dnslib. Malformed input
    raises, as in dnslib; rdata must also end exactly where its rdlength says, which dnslib does
    not check.
    """
    offset = 12
    questions = []
    for _ in range(qdcount):
        labels, offset = read_name(data, offset)
        _check_utf8(labels)
        qtype, qclass = _TYPE_CLASS.unpack_from(data, offset)
        offset += 4
        questions.append(_Question(DNSLabel(list(labels)), qtype, bool(qclass & UNICAST_RESPONSE)))
    size = len(data)
    memo: dict[int, tuple[bytes, ...]] = {}
    sections: list[list[_Seen]] = []
    for count in counts:
        seen: list[_Seen] = []
        for _ in range(count):
            labels, offset = read_name(data, offset, memo)
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
            offset += 10
            end = offset + rdlength
            if end > size:
                raise ValueError("record data runs past the end")
            if rtype == _TYPE_OPT:  # EDNS: not a record, skipped as _parse_full does
                _check_options(data, offset, end)
                offset = end
                continue
            rdata = _read_rdata(data, rtype, offset, end, memo)
            if rdata is None:
                return None
            name, key = _name_and_key(labels)
            record = Record(name, rtype, ttl, rdata[0], bool(rclass & CACHE_FLUSH))
            seen.append(_Seen(record, key, (key, rtype, rdata[1])))
            offset = end
        sections.append(seen)
    answers, authority, additionals = sections
    is_response = bool(flags & _FLAG_QR)
    return _Packet(
        id=ident,
        is_response=is_response,
        opcode=(flags >> 11) & 0xF,
        truncated=bool(flags & 0x0200),
        questions=questions,
        answers=answers,
        authority=authority,
        additionals=additionals,
        known={} if is_response else {seen.wire: seen.record.ttl for seen in answers},
    )


def _read_rdata(
    data: bytes, rtype: int, offset: int, end: int, memo: dict[int, tuple[bytes, ...]]
) -> tuple[Any, bytes] | None:
    """dnslib rdata and its uncompressed bytes (as ``_rdata_bytes`` packs it); None: ask dnslib.

    The bytes are taken from the packet where they are already uncompressed; only names in
    rdata are spelled out again, since they may point elsewhere in the packet.
    """
    if end == offset:
        raise ValueError("empty record data")  # dnslib refuses these too
    name_class = _NAME_CLASSES.get(rtype)
    if name_class is not None:
        target, raw = _rdata_name(data, offset, end, memo)
        _check_utf8(target)
        return name_class(DNSLabel(target)), raw
    address = _ADDRESS_CLASSES.get(rtype)
    if address is not None:
        raw = data[offset:end]
        if len(raw) != address[1]:
            raise ValueError("address of the wrong length")
        return address[0](tuple(raw)), raw
    if rtype == _TYPE_SRV:
        priority, weight, port = _SRV_FIXED.unpack_from(data, offset)
        target, raw = _rdata_name(data, offset + 6, end, memo)
        _check_utf8(target)
        return SRV(priority, weight, port, DNSLabel(target)), data[offset : offset + 6] + raw
    if rtype == _TYPE_TXT:
        strings = []
        position = offset
        while position < end:
            stop = position + 1 + data[position]
            strings.append(data[position + 1 : stop])
            position = stop
        if position != end:
            raise ValueError("TXT string runs past its record")
        return TXT(strings), data[offset:end]
    if rtype == _TYPE_NSEC:
        target, after = read_name(data, offset, memo)
        if after > end:
            raise ValueError("NSEC name runs past its record")
        _check_utf8(target)
        bitmap = data[after:end]
        types = _nsec_types(bitmap)
        if types is None:
            return None
        return NSEC(DNSLabel(target), list(types)), _uncompressed(target) + bitmap
    return None


def _nsec_types(bitmap: bytes) -> tuple[str, ...] | None:
    """dnslib's type names for an NSEC bitmap in the one-window form of RFC 6762 §6.1.

    Only that form, without trailing zero bytes, packs back to the same bytes, which the wire
    key relies on; for anything else None (dnslib reads the packet).
    """
    if bitmap in _nsec_memo:
        return _nsec_memo[bitmap]
    size = len(bitmap)
    names: tuple[str, ...] | None = None
    if 3 <= size <= 34 and bitmap[0] == 0 and bitmap[1] == size - 2 and bitmap[-1]:
        found = [
            _NSEC_TYPE_NAMES[index * 8 + bit]
            for index, byte in enumerate(bitmap[2:])
            for bit in range(8)
            if byte & (0x80 >> bit)
        ]
        if None not in found:
            names = tuple(name for name in found if name is not None)
    if len(_nsec_memo) >= 256:  # only garbage makes it grow; stay bounded
        _nsec_memo.clear()
    _nsec_memo[bitmap] = names
    return names


def _name_and_key(labels: tuple[bytes, ...]) -> tuple[str, NameKey]:
    """``label_to_name`` and ``name_key`` of a received name; cheap when nothing needs escaping.

    Decoding is strict: dnslib refuses labels that are not UTF-8, and so the packet is dropped
    here too. Lower-casing goes label by label, as ``name_key`` does (a Greek final sigma
    lower-cases differently when a dot and another label follow it).
    """
    raw = b".".join(labels)
    text = raw.decode()
    if raw.count(b".") == len(labels) - 1 and _NEEDS_ESCAPE.search(raw) is None:
        return text, tuple(part.lower() for part in text.split("."))
    return label_to_name(labels), name_key(DNSLabel(labels))


def _check_utf8(labels: tuple[bytes, ...]) -> None:
    """Raise for a label that is not UTF-8, as dnslib does (the dot keeps labels apart)."""
    b".".join(labels).decode()


def _check_options(data: bytes, offset: int, end: int) -> None:
    """Walk EDNS options as dnslib does: one running past its record fails the packet."""
    while end - offset > 4:
        offset += 4 + int.from_bytes(data[offset + 2 : offset + 4])
        if offset > end:
            raise ValueError("EDNS option runs past its record")


def _parse_full(data: bytes) -> _Packet:
    message = DNSRecord.parse(data)
    header = message.header
    questions = [
        _Question(q.qname, int(q.qtype), bool(q.qclass & UNICAST_RESPONSE))
        for q in message.questions
    ]

    def convert(rrs: list[RR]) -> list[_Seen]:
        seen = []
        for rr in rrs:
            if rr.rtype == RType.OPT:
                continue
            record = Record.from_rr(rr)
            # Computed here, inside the caller's error guard: unpackable rdata fails now.
            wire = (name_key(rr.rname), int(rr.rtype), _rdata_bytes(record))
            seen.append(_Seen(record, wire[0], wire))
        return seen

    return _Packet(
        id=int(header.id),
        is_response=bool(header.qr),
        opcode=int(header.opcode),
        truncated=bool(header.tc),
        questions=questions,
        answers=(answers := convert(message.rr)),
        authority=convert(message.auth),
        additionals=convert(message.ar),
        known={} if header.qr else {seen.wire: seen.record.ttl for seen in answers},
    )


def _message(*, response: bool, ident: int = 0) -> DNSRecord:
    # bitmap=0: dnslib sets RD by default, which mDNS does not use.
    if response:
        return DNSRecord(DNSHeader(id=ident, bitmap=0, qr=1, aa=1))
    return DNSRecord(DNSHeader(id=ident, bitmap=0))


def _wire_key(record: Record) -> WireKey:
    return (name_key(record.name), int(record.rtype), _rdata_bytes(record))


def _rdata_bytes(record: Record) -> bytes:
    """Uncompressed rdata (a fresh buffer has nothing to point back to), as §8.2 compares."""
    buffer = DNSBuffer()
    record.data.pack(buffer)
    return bytes(buffer.data)


def _fix_counts(message: DNSRecord) -> None:
    message.header.q = len(message.questions)
    message.header.a = len(message.rr)
    message.header.auth = len(message.auth)
    message.header.ar = len(message.ar)


def _pack(message: DNSRecord) -> bytes:
    _fix_counts(message)
    return bytes(message.pack())  # dnslib returns a bytearray


def _pack_with(message: DNSRecord, additionals: Sequence[RR], limit: int) -> bytes:
    if additionals:  # the common case: everything fits, one pack
        message.ar.extend(additionals)
        payload = _pack(message)
        if len(payload) <= limit:
            return payload
        del message.ar[-len(additionals) :]
    payload = _pack(message)
    for rr in additionals:
        message.ar.append(rr)
        candidate = _pack(message)
        if len(candidate) > limit:
            message.ar.pop()
            _fix_counts(message)
            break
        payload = candidate
    return payload


def _pack_truncating(message: DNSRecord, additionals: Sequence[RR], limit: int) -> bytes:
    """One packet: answers that do not fit are dropped with TC set (RFC 1035 §4.1.1)."""
    payload = _pack(message)
    if len(payload) <= limit:
        return _pack_with(message, additionals, limit)
    while len(payload) > limit and message.rr:
        message.rr.pop()
        message.header.tc = 1
        payload = _pack(message)
    return payload

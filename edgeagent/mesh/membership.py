"""The SWIM membership core: members, probes, suspicion, gossip and events (sans-IO).

Theory of operation
-------------------
``Membership`` owns no socket and no clock. The link core (``edgeagent.mesh.link``) feeds it
``now`` (monotonic seconds), discovery candidates and decoded messages with their authenticated
sender id and source address, and the link adapter carries out the effects it returns:
``SendTo(addr, messages)`` (one datagram) and ``Notify(event)``. After every call the adapter's
timer asks ``next_deadline()`` and calls ``on_timer(now)`` once it has passed. Randomness
comes only from the ``random.Random`` given.

Failure detection is SWIM as memberlist does it, with Lifeguard:

- Every ``probe_interval`` (stretched by local health, below) the next member of a shuffled
  round-robin list (alive and suspect members; a new member is inserted at a random position)
  gets ``Ping``. No ``PingAck`` within ``probe_timeout`` → ``PingReq`` to ``indirect_checks``
  random other alive members, who ping the target and relay ``IndirectAck``, and the same
  ``Ping`` once more directly (memberlist's TCP fallback ping, as a datagram). No ack of either
  kind by the end of the interval → the target becomes *suspect* (gossiped, ``by`` = us).
- Suspicion timeout (memberlist ``suspicion.go``): ``min = suspicion_mult * max(1,
  log10(N+1)) * probe_interval`` with N the alive and suspect members including us; it starts at
  ``max = suspicion_max_mult * min`` and each independent confirmation (a suspect update for the
  same incarnation asserted ``by`` a device not counted yet) shortens it to ``max - (max - min)
  * log(c+1)/log(k+1)``, reaching ``min`` after ``k = suspicion_mult - 2`` confirmations (k = 0,
  i.e. ``min`` at once, when fewer than k other members could confirm). When it runs out the
  member is *dead*. Both bounds are multiplied by ``1 + busy``, where busy is the part of the
  local health score (below) that came from our own late wake-ups, taken when the suspicion
  starts and again when it runs out: a device starved of CPU gives others longer before it
  calls them dead. Failed probes do not count here (a real failure makes them fail), so on a
  device that keeps up, detection is as fast as without it.
- Helping a suspect refute (beyond memberlist): the member that starts a suspicion also sends
  it straight to the suspect; a member that hears of a suspicion from others probes the suspect
  next, out of round-robin order (its failure is a confirmation within one probe interval, its
  success tells the suspect about the rumour); a refutation goes straight to every live member
  (up to ``MAX_DIRECT_REFUTES``) as well as into gossip. Refuting thus takes one round trip
  instead of a few gossip rounds, which is what lets the suspicion period (and the probe
  interval) be short without false "dead" verdicts under loss.
- Incarnation rules: alive(i) overrides suspect/dead(j) iff i > j; suspect(i) overrides
  alive(j) iff i ≥ j; dead(i) overrides alive/suspect(j) iff i ≥ j; left(i) overrides
  everything but left iff i ≥ j and is final for that incarnation (only alive(i+1) revives it).
  Hearing that we are suspect, dead or left (while we run), or alive with a higher incarnation
  than ours, makes us refute: our incarnation becomes one more than the one heard and we gossip
  alive. Updates about unknown members are ignored unless they say alive.
- Local health (Lifeguard LHM): a score 0..``max_local_health - 1`` multiplies probe interval
  and timeout by ``1 + score`` (so at most ``max_local_health`` times, memberlist's 8). A probe of
  ours that fails, or an ``on_timer`` call later than ``late_wakeup`` after the deadline we
  asked for, raises it; a successful probe lowers it. After a late wake-up, probes and
  suspicions that expired while we slept get one probe timeout of grace, so acks and
  refutations queued in the socket are read before anyone is declared failed.

Gossip: a bounded broadcast queue holds at most one update per member (a newer one replaces
it). Each is sent ``retransmit_mult * ceil(log10(N+1))`` times, least-sent first, piggybacked on
pings, acks, ping-reqs and sync answers as far as the datagram body budget allows, and pushed
to ``gossip_fanout`` random members every ``gossip_interval`` while the queue is not empty.

Join and push-pull: a discovery candidate (not a known live member) gets ``Join`` plus our full
state as ``Sync`` chunks and our ``Meta``; the answer to a ``Join`` (or to a ``Sync`` with
``reply``) is the receiver's full state and ``Meta``. Merging a ``Sync`` applies the rules above
except that ``dead`` is read as ``suspect`` (memberlist's ``mergeState``: a stale full state
must not kill anyone). Every ``push_pull_interval`` (jittered) a random alive member gets
``Sync(reply=True)``. Unanswered joins are retried ``join_attempts`` times with doubling delays.
A device with no members yet joins at most ``JOIN_FANOUT`` discovered devices at once; devices
discovered later are joined only if gossip has not introduced them within ``join_defer`` to
twice that (so 50 devices starting together make ~150 joins, not 2,450). The same goes for a
message from a device we do not know (it heard of us by gossip before we heard of it).

Rejoin: dead and left members get a join (``Join`` + ``Sync``) every ``rejoin_interval``,
doubling up to ``rejoin_max_interval``, so after a partition heals the other side hears it was
declared dead and refutes with a higher incarnation. A ``Join`` from a dead or left member is
proof of life: it is alive again at once (event ``alive`` for dead, ``joined`` for left), and
our answer tells it the incarnation we hold so it moves above it. A plain message from a dead
member earns it a rate-limited join for the same reason. Dead and left members are forgotten
``reap_after`` seconds after their last state change.

Metadata: each member's ``meta_version`` rides in its updates; a version newer than the one we
hold earns a ``MetaRequest`` (retried every ``meta_retry``); ``Meta`` answers are kept and emit
``updated``. ``set_meta`` bumps our meta version and incarnation, so the change spreads as an
ordinary alive update.

Identity is the device id: a message from a known member at a new source address moves that
address to the front of its list (``addresses[0]`` is where we send) and emits ``updated`` with
``detail="address"``; its state does not change. Messages claiming to come from us are ignored.

Events: ``joined`` (new, or back after leaving), ``suspect``, ``alive`` (refuted, or back from
dead), ``dead``, ``left``, ``updated`` (meta, hostname or address). Each is returned as an
``Notify`` and kept in the bounded ``events`` deque. ``members()`` includes us.

Bounds: ``max_members`` peers (a new one evicts the longest-dead, or is ignored when every
entry is alive), ``max_events`` events, ``max_broadcasts`` queued updates, 64 pending joins,
relayed probes expire after one probe interval.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from typing import Any

from edgeagent.mesh.messages import (
    MAX_DATAGRAM_BODY,
    Address,
    IndirectAck,
    Join,
    Leave,
    MemberState,
    MemberUpdate,
    Message,
    Meta,
    MetaRequest,
    Ping,
    PingAck,
    PingReq,
    Sync,
    body_size,
    encoded_size,
)

__all__ = [
    "Effect",
    "EventKind",
    "MemberEvent",
    "MemberState",
    "MemberView",
    "Membership",
    "MembershipState",
    "Notify",
    "SendTo",
    "SwimTiming",
    "suspicion_timeout",
]

KEPT_ADDRESSES = 8  # addresses kept per member (the wire allows messages.MAX_ADDRESSES)
MAX_PENDING_JOINS = 64
JOIN_FANOUT = 3  # joins at once by a device with no members yet; their answers bring the rest
MAX_DIRECT_REFUTES = 64  # a refutation goes straight to this many members; gossip does the rest
RTT_ALPHA = 0.125  # RFC 6298 §2.3 smoothing, as TCP does for SRTT


@dataclass(frozen=True, slots=True)
class SwimTiming:
    """SWIM/Lifeguard timing; memberlist's LAN defaults unless noted. Durations in seconds."""

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_mult: int = 6
    gossip_interval: float = 0.2
    gossip_fanout: int = 3
    retransmit_mult: int = 4
    push_pull_interval: float = 30.0
    # Serf keeps failed members 24 h; a device fleet churns less and a table of ghosts helps
    # nobody, so one hour.
    reap_after: float = 3600.0
    # Serf reconnects to failed members every 30 s; we start at 5 s (a pulled cable plugged back
    # rejoins quickly) and back off to 30 s.
    rejoin_interval: float = 5.0
    rejoin_max_interval: float = 30.0
    max_local_health: int = 8
    late_wakeup: float = 0.25  # on_timer this much after its deadline counts as "we were busy"
    join_retry: float = 1.0  # first retry of an unanswered join, doubling
    join_attempts: int = 4
    # A device discovered while we already have members (or JOIN_FANOUT joins under way) is
    # joined only if gossip has not brought it within join_defer..2*join_defer seconds.
    join_defer: float = 2.0
    meta_retry: float = 2.0
    sync_answer_interval: float = 1.0  # at most one full-state answer per sender this often


class MembershipState(Enum):
    IDLE = "idle"  # constructed; nothing sent
    RUNNING = "running"
    LEFT = "left"  # leave() called; every further call is a no-op


class EventKind(StrEnum):
    JOINED = "joined"
    SUSPECT = "suspect"
    ALIVE = "alive"
    DEAD = "dead"
    LEFT = "left"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: EventKind
    device_id: str
    at: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MemberView:
    """A snapshot of one member; ``addresses[0]`` is where we reach it."""

    device_id: str
    hostname: str
    state: MemberState
    incarnation: int
    addresses: tuple[str, ...]
    port: int
    last_seen: float | None
    rtt: float | None
    meta: Mapping[str, Any]
    meta_version: int
    state_since: float


@dataclass(frozen=True, slots=True)
class SendTo:
    """Effect: send ``messages`` to ``addr`` in one datagram."""

    addr: Address
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Notify:
    """Effect: tell the service's listeners about a member event (``joined``, ``dead``...)."""

    event: MemberEvent


Effect = SendTo | Notify


def suspicion_timeout(timing: SwimTiming, n: int) -> float:
    """memberlist's minimum suspicion timeout for ``n`` members (docs/mesh.md formula)."""
    scale = max(1.0, math.log10(n + 1))
    return timing.suspicion_mult * scale * timing.probe_interval


class Membership:
    """The SWIM member table of one cluster, sans-IO.

    Call ``start`` first, then ``discovered`` / ``on_message`` / ``on_timer`` / ``set_meta`` as
    things happen, and ``leave`` last. Every call returns the effects to carry out, in order.
    """

    def __init__(
        self,
        self_id: str,
        hostname: str,
        port: int,
        *,
        timing: SwimTiming | None = None,
        rng: random.Random,
        meta: Mapping[str, Any] | None = None,
        incarnation: int = 0,
        addresses: Sequence[str] = (),
        max_body: int = MAX_DATAGRAM_BODY,
        max_members: int = 1024,
        max_events: int = 1000,
        max_broadcasts: int = 256,
    ) -> None:
        self.self_id = self_id
        self._hostname = hostname
        self._port = port
        self._timing = timing or SwimTiming()
        self._rng = rng
        self._meta: dict[str, Any] = dict(meta or {})
        self._meta_version = 1 if meta else 0
        self._incarnation = incarnation
        self._addresses = tuple(addresses)[:KEPT_ADDRESSES]
        self._max_body = max_body
        self._max_members = max_members
        self._max_broadcasts = max_broadcasts
        self._state = MembershipState.IDLE
        self._started_at = 0.0
        self._members: dict[str, _Member] = {}
        self.events: deque[MemberEvent] = deque(maxlen=max_events)
        self._broadcasts: dict[str, _Broadcast] = {}
        self._broadcast_order = 0
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._next_probe = 0.0
        self._next_gossip = 0.0
        self._next_push_pull = 0.0
        self._seq = 0
        self._relays: dict[int, _Relay] = {}
        self._pending_joins: dict[Address, _PendingJoin] = {}
        self._deferred_joins: dict[str, _DeferredJoin] = {}
        self._sync_answered: dict[str, float] = {}
        self._health = 0
        self._busy = 0  # the part of local health that came from our own late wake-ups

    # ---- public state

    @property
    def state(self) -> MembershipState:
        return self._state

    @property
    def timing(self) -> SwimTiming:
        return self._timing

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def local_health(self) -> int:
        """Lifeguard's local health score: 0 is healthy; probing is ``1 + score`` times slower."""
        return self._health

    def members(self) -> list[MemberView]:
        """Every member we know, us first."""
        own_state = MemberState.LEFT if self._state is MembershipState.LEFT else MemberState.ALIVE
        us = MemberView(
            device_id=self.self_id,
            hostname=self._hostname,
            state=own_state,
            incarnation=self._incarnation,
            addresses=self._addresses,
            port=self._port,
            last_seen=None,
            rtt=None,
            meta=dict(self._meta),
            meta_version=self._meta_version,
            state_since=self._started_at,
        )
        return [us, *(m.view() for m in self._members.values())]

    def member(self, device_id: str) -> MemberView | None:
        if device_id == self.self_id:
            return self.members()[0]
        found = self._members.get(device_id)
        return None if found is None else found.view()

    def alive_count(self) -> int:
        """Alive and suspect members, us included (the N of the suspicion formula)."""
        return 1 + sum(1 for m in self._members.values() if m.state in _LIVE)

    # ---- lifecycle

    def start(self, now: float) -> list[Effect]:
        """Begin probing; nothing is sent until a member is discovered."""
        if self._state is not MembershipState.IDLE:
            return []
        self._state = MembershipState.RUNNING
        self._started_at = now
        self._next_probe = now + self._rng.uniform(0, self._timing.probe_interval)
        self._next_gossip = now + self._timing.gossip_interval
        self._next_push_pull = now + self._jittered(self._timing.push_pull_interval)
        # Announce ourselves (memberlist setAlive): gossiped as soon as we know anyone, so the
        # members our seed's answer did not reach learn of us without waiting for a probe.
        self._queue(self._self_update(MemberState.ALIVE))
        return []

    def leave(self, now: float) -> list[Effect]:
        """Graceful leave: ``Leave`` + gossip ``left`` to a few members; then inert."""
        if self._state is not MembershipState.RUNNING:
            self._state = MembershipState.LEFT
            return []
        out: list[Effect] = []
        update = self._self_update(MemberState.LEFT)
        self._queue(update)
        targets = self._random_members(2 * self._timing.gossip_fanout, _LIVE)
        for member in targets:  # the left update rides along as the newest gossip
            self._send(member.addr(), [Leave(self._incarnation)], out, gossip=True)
        self._state = MembershipState.LEFT
        self._probe = None
        return out

    def set_meta(self, now: float, meta: Mapping[str, Any]) -> list[Effect]:
        """Publish new metadata: a new meta version in an alive update with a new incarnation."""
        if dict(meta) == self._meta or self._state is MembershipState.LEFT:
            return []
        self._meta = dict(meta)
        self._meta_version += 1
        self._incarnation += 1
        self._queue(self._self_update(MemberState.ALIVE))
        return []

    def set_addresses(self, now: float, addresses: Sequence[str]) -> list[Effect]:
        """Our own addresses as gossiped (others mostly learn them from our datagrams)."""
        new = tuple(addresses)[:KEPT_ADDRESSES]
        if new == self._addresses or self._state is MembershipState.LEFT:
            return []
        self._addresses = new
        self._incarnation += 1
        self._queue(self._self_update(MemberState.ALIVE))
        return []

    # ---- inputs

    def discovered(
        self,
        now: float,
        candidate_addresses: Sequence[str],
        port: int,
        device_id: str | None = None,
    ) -> list[Effect]:
        """A discovery strategy saw a device; join it unless it is a live member already."""
        if self._state is not MembershipState.RUNNING or device_id == self.self_id:
            return []
        if device_id is not None:
            known = self._members.get(device_id)
            if known is not None and known.state in _LIVE:
                self._deferred_joins.pop(device_id, None)
                return []
            if known is None and self._defer_join(now, device_id, candidate_addresses, port):
                return []
        # Without an id (static peers, DNS) an address where a live member answers is enough.
        live = (
            {m.addr() for m in self._members.values() if m.state in _LIVE}
            if device_id is None
            else set()
        )
        out: list[Effect] = []
        self._join_addresses(now, candidate_addresses, port, out, skip=live)
        return out

    def on_message(
        self, now: float, sender_id: str, src: Address, message: Message
    ) -> list[Effect]:
        """Handle one authenticated message from ``sender_id`` received from ``src``."""
        if self._state is not MembershipState.RUNNING or sender_id == self.self_id:
            return []
        out: list[Effect] = []
        self._pending_joins.pop(src, None)
        sender = self._members.get(sender_id)
        if sender is not None:
            self._saw(now, sender, src, out)
            if sender.state in (MemberState.DEAD, MemberState.LEFT) and not isinstance(
                message, (Join, Sync, MemberUpdate, Leave)
            ):
                # It thinks it is a member: tell it what we hold so it refutes.
                self._rejoin_now(now, sender, out)
        match message:
            case Ping():
                if message.target_id == self.self_id:
                    self._send(src, [PingAck(message.seq)], out, gossip=True)
            case PingAck():
                self._on_ack(now, sender_id, message.seq, out)
            case IndirectAck():
                probe = self._probe
                if probe and probe.seq == message.seq and probe.target == message.target_id:
                    self._probe_succeeded(now, direct=False)
                    target = self._members.get(probe.target)
                    if target is not None and target.state is MemberState.SUSPECT:
                        self._tell_suspect(target, out)
            case PingReq():
                self._on_ping_req(now, sender_id, src, message, out)
            case Join():
                self._on_join(now, sender_id, src, message, out)
            case Sync():
                for update in message.members:
                    self._apply(now, update, out, merge=True)
                if message.reply:
                    self._answer_sync(now, sender_id, src, out)
            case MemberUpdate():
                self._apply(now, message, out, merge=False)
            case Leave():
                if sender is not None:
                    update = sender.update(MemberState.LEFT, message.incarnation, by=sender_id)
                    self._apply(now, update, out, merge=False)
            case MetaRequest():
                self._on_meta_request(message.device_id, src, out)
            case Meta():
                self._on_meta(now, message, out)
            case _:
                pass  # Request/Response/Challenge belong to the link core (mesh/link.py)
        if sender is None:
            added = self._members.get(sender_id)
            if added is not None:
                self._saw(now, added, src, out)  # it joined with this very message
            elif not isinstance(message, (Join, Sync, Leave)):
                # It knows us and we do not know it (gossip missed us): join it.
                self._maybe_join_unknown(now, sender_id, src, out)
        return out

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must run next (monotonic seconds), or None for never."""
        if self._state is not MembershipState.RUNNING:
            return None
        times = [self._next_probe, self._next_push_pull]
        if self._broadcasts:
            times.append(self._next_gossip)
        probe = self._probe
        if probe is not None:
            times.append(probe.fail_at if probe.indirect_sent else probe.indirect_at)
        times.extend(p.due for p in self._pending_joins.values())
        times.extend(d.due for d in self._deferred_joins.values())
        for member in self._members.values():
            if member.suspicion is not None:
                times.append(member.suspicion.deadline)
            if member.next_rejoin is not None:
                times.append(member.next_rejoin)
            if member.state in _GONE:
                times.append(member.state_since + self._timing.reap_after)
            if member.meta_due is not None:
                times.append(member.meta_due)
        return min(times)

    def on_timer(self, now: float) -> list[Effect]:
        """Run everything due at ``now``."""
        if self._state is not MembershipState.RUNNING:
            return []
        out: list[Effect] = []
        deadline = self.next_deadline()
        if deadline is not None and now - deadline > self._timing.late_wakeup:
            self._woke_late(now, now - deadline)
        self._run_probe(now, out)
        self._run_suspicions(now, out)
        self._run_rejoins(now, out)
        self._run_joins(now, out)
        self._run_deferred_joins(now, out)
        self._run_meta_requests(now, out)
        self._reap(now)
        if now >= self._next_push_pull:
            self._next_push_pull = now + self._jittered(self._timing.push_pull_interval)
            for member in self._random_members(1, (MemberState.ALIVE,)):
                self._send_full_state(member.addr(), out, reply=True)
        if now >= self._next_gossip:
            self._next_gossip = now + self._timing.gossip_interval
            if self._broadcasts:
                self._gossip(out)
        return out

    # ---- probing

    def _run_probe(self, now: float, out: list[Effect]) -> None:
        probe = self._probe
        if probe is not None and not probe.indirect_sent and now >= probe.indirect_at:
            probe.indirect_sent = True
            target = self._members.get(probe.target)
            helpers = self._random_members(
                self._timing.indirect_checks, (MemberState.ALIVE,), exclude=probe.target
            )
            if target is not None:
                for helper in helpers:
                    request = PingReq(probe.seq, probe.target, target.addr())
                    self._send(helper.addr(), [request], out, gossip=True)
                # memberlist retries the direct path too (over TCP); a second datagram is our
                # equivalent: a lost ping or ack alone no longer makes a suspicion.
                self._send(target.addr(), [Ping(probe.seq, probe.target)], out)
        if probe is not None and now >= probe.fail_at:
            self._probe = None
            self._change_health(+1)
            target = self._members.get(probe.target)
            if target is not None and target.state in _LIVE:
                update = target.update(MemberState.SUSPECT, target.incarnation, by=self.self_id)
                self._apply(now, update, out, merge=False)
                # If only our path to it is bad, it hears this at once and refutes.
                self._tell_suspect(target, out)
        if now >= self._next_probe and self._probe is not None:
            # Still waiting (a late wake-up granted grace): one probe at a time.
            self._next_probe = self._probe.fail_at
        elif now >= self._next_probe:
            scale = 1 + self._health
            self._next_probe = now + self._timing.probe_interval * scale
            target = self._next_probe_target()
            if target is not None:
                self._seq += 1
                self._probe = _Probe(
                    seq=self._seq,
                    target=target.device_id,
                    sent_at=now,
                    indirect_at=now + self._timing.probe_timeout * scale,
                    fail_at=now + self._timing.probe_interval * scale,
                )
                self._send(target.addr(), [Ping(self._seq, target.device_id)], out, gossip=True)

    def _next_probe_target(self) -> _Member | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                device_id = self._probe_order[self._probe_index]
                self._probe_index += 1
                member = self._members.get(device_id)
                if member is not None and member.state in _LIVE and member.addresses:
                    return member
            live = [m.device_id for m in self._members.values() if m.state in _LIVE and m.addresses]
            self._rng.shuffle(live)
            self._probe_order = live
            self._probe_index = 0
        return None

    def _on_ack(self, now: float, sender_id: str, seq: int, out: list[Effect]) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq and probe.target == sender_id:
            member = self._members.get(sender_id)
            if member is not None:
                sample = now - probe.sent_at
                member.rtt = (
                    sample if member.rtt is None else member.rtt + RTT_ALPHA * (sample - member.rtt)
                )
            self._probe_succeeded(now, direct=True)
            if member is not None and member.state is MemberState.SUSPECT:
                # It answers us but others suspect it: make sure it knows, so it refutes now.
                self._tell_suspect(member, out)
            return
        relay = self._relays.pop(seq, None)
        if relay is not None and relay.target == sender_id and now <= relay.expires:
            self._send(relay.requester_addr, [IndirectAck(relay.seq, relay.target)], out)

    def _probe_succeeded(self, now: float, *, direct: bool) -> None:
        self._probe = None
        self._change_health(-1)
        self._busy = max(0, self._busy - 1)

    def _on_ping_req(
        self, now: float, sender_id: str, src: Address, message: PingReq, out: list[Effect]
    ) -> None:
        if message.target_id == self.self_id:
            self._send(src, [IndirectAck(message.seq, self.self_id)], out)
            return
        self._seq += 1
        expires = now + self._timing.probe_interval * (1 + self._health)
        self._relays = {s: r for s, r in self._relays.items() if r.expires >= now}
        if len(self._relays) >= 64:
            return
        self._relays[self._seq] = _Relay(message.seq, message.target_id, src, expires)
        addrs = [message.target_addr]
        known = self._members.get(message.target_id)
        if known is not None and known.addr() not in addrs:
            addrs.append(known.addr())
        for addr in addrs:
            self._send(addr, [Ping(self._seq, message.target_id)], out, gossip=True)

    def _tell_suspect(self, member: _Member, out: list[Effect]) -> None:
        """Send a suspect member the suspicion we hold about it, so it can refute."""
        if member.state is MemberState.SUSPECT and member.addresses:
            update = member.update(MemberState.SUSPECT, member.incarnation, by=self.self_id)
            out.append(SendTo(member.addr(), (update,)))

    def _probe_soon(self, member: _Member) -> None:
        """Probe a member someone else suspects next, out of round-robin order.

        Our own verdict either confirms the suspicion (shortening it towards the minimum, as
        Lifeguard intends, but in one probe interval instead of whenever our round-robin gets
        there) or, if it answers, tells it about the rumour so it refutes.
        """
        order = self._probe_order
        pending = order[self._probe_index :]
        if pending[:1] == [member.device_id]:
            return
        if member.device_id in pending:
            order.pop(self._probe_index + pending.index(member.device_id))
        order.insert(self._probe_index, member.device_id)

    def _change_health(self, delta: int) -> None:
        self._health = min(max(self._health + delta, 0), self._timing.max_local_health - 1)

    def _woke_late(self, now: float, lateness: float) -> None:
        """We ran late (CPU, swap, a blocked loop): distrust our own silence for a moment.

        Every probe interval we slept through counts like a probe of ours that failed, so a
        device that keeps waking late climbs even though its (late) probes are answered.
        """
        missed = max(1, math.ceil(lateness / self._timing.probe_interval))
        self._change_health(missed)
        self._busy = min(self._busy + missed, self._timing.max_local_health - 1)
        grace = now + self._timing.probe_timeout * (1 + self._health)
        if self._probe is not None:
            self._probe.indirect_at = max(self._probe.indirect_at, grace)
            self._probe.fail_at = max(self._probe.fail_at, grace)
        for member in self._members.values():
            if member.suspicion is not None and member.suspicion.deadline < grace:
                member.suspicion.floor = grace
                member.suspicion.deadline = grace

    # ---- suspicion

    def _run_suspicions(self, now: float, out: list[Effect]) -> None:
        for member in list(self._members.values()):
            suspicion = member.suspicion
            if suspicion is None or now < suspicion.deadline:
                continue
            if suspicion.rescale(1 + self._busy) and now < suspicion.deadline:
                continue  # we became busy meanwhile: give it the longer timeout
            update = member.update(MemberState.DEAD, member.incarnation, by=self.self_id)
            self._apply(now, update, out, merge=False)

    def _start_suspicion(self, now: float, member: _Member, by: str) -> None:
        n = self.alive_count()
        scale = 1 + self._busy
        low = suspicion_timeout(self._timing, n) * scale
        high = self._timing.suspicion_max_mult * low
        k = self._timing.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        member.suspicion = _Suspicion(
            started=now, low=low, high=high, k=k, confirmations={by}, deadline=now, scale=scale
        )
        member.suspicion.recompute()

    # ---- applying updates (the incarnation rules)

    def _apply(self, now: float, update: MemberUpdate, out: list[Effect], *, merge: bool) -> None:
        if update.device_id == self.self_id:
            self._about_us(now, update, out)
            return
        state = update.state
        if merge and state is MemberState.DEAD:
            state = MemberState.SUSPECT  # memberlist mergeState: a full state never kills
        member = self._members.get(update.device_id)
        if member is None:
            if state is not MemberState.ALIVE or not self._make_room():
                return
            member = _Member(
                device_id=update.device_id,
                hostname=update.hostname,
                state=MemberState.ALIVE,
                incarnation=update.incarnation,
                addresses=update.addresses[:KEPT_ADDRESSES],
                port=update.port,
                state_since=now,
            )
            self._members[member.device_id] = member
            position = self._rng.randint(self._probe_index, len(self._probe_order))
            self._probe_order.insert(position, member.device_id)
            self._queue(update)
            self._emit(now, EventKind.JOINED, member, out)
            self._note_meta(now, member, update.meta_version)
            return
        old = member.state
        inc = member.incarnation
        accepted = False
        if state is MemberState.ALIVE:
            accepted = update.incarnation > inc
        elif state is MemberState.SUSPECT:
            if old is MemberState.ALIVE and update.incarnation >= inc:
                accepted = True
            elif old is MemberState.SUSPECT and update.incarnation >= inc:
                if update.incarnation > inc:
                    member.incarnation = update.incarnation
                    self._queue(update)
                elif member.suspicion is not None and member.suspicion.confirm(update.by):
                    self._queue(update)  # a new independent confirmation: spread it too
        elif state is MemberState.DEAD:
            accepted = old in _LIVE and update.incarnation >= inc
            if old is MemberState.DEAD and update.incarnation > inc:
                member.incarnation = update.incarnation
        elif state is MemberState.LEFT:
            accepted = (old is not MemberState.LEFT and update.incarnation >= inc) or (
                update.incarnation > inc
            )
        self._note_meta(now, member, update.meta_version)
        if not accepted:
            return
        member.incarnation = max(inc, update.incarnation)
        if state is MemberState.ALIVE:
            self._refresh_addresses(member, update)
            if update.hostname and update.hostname != member.hostname:
                member.hostname = update.hostname
                if old is state:
                    self._emit(now, EventKind.UPDATED, member, out, detail="hostname")
        # Relay with the addresses we know (we may have seen it send from one it did not list).
        self._queue(replace(update, state=state, addresses=member.addresses or update.addresses))
        if state is old:
            return
        member.state = state
        member.state_since = now
        member.suspicion = None
        member.next_rejoin = None
        if state is MemberState.SUSPECT:
            self._start_suspicion(now, member, update.by or "?")
            self._emit(now, EventKind.SUSPECT, member, out)
            if update.by != self.self_id:
                self._probe_soon(member)
        elif state is MemberState.ALIVE:
            kind = EventKind.JOINED if old is MemberState.LEFT else EventKind.ALIVE
            self._emit(now, kind, member, out)
            if member.device_id not in self._probe_order[self._probe_index :]:
                position = self._rng.randint(self._probe_index, len(self._probe_order))
                self._probe_order.insert(position, member.device_id)
        else:
            member.rejoin_delay = self._timing.rejoin_interval
            member.next_rejoin = now + self._jittered(member.rejoin_delay)
            kind = EventKind.DEAD if state is MemberState.DEAD else EventKind.LEFT
            self._emit(now, kind, member, out)
            if self._probe is not None and self._probe.target == member.device_id:
                self._probe = None

    def _about_us(self, now: float, update: MemberUpdate, out: list[Effect]) -> None:
        refute = update.state is not MemberState.ALIVE and update.incarnation >= self._incarnation
        refute = refute or update.incarnation > self._incarnation
        if not refute:
            return
        # SWIM §4.2 / memberlist refute(): only we may raise our incarnation. Being suspected
        # hints that we are slow to answer: Lifeguard raises local health too.
        self._incarnation = update.incarnation + 1
        alive = self._self_update(MemberState.ALIVE)
        self._queue(alive)
        if update.state is MemberState.ALIVE:
            return
        self._change_health(+1)
        # Every member holding the rumour runs its own suspicion clock, and gossip reaches the
        # last of them only after a few rounds. A refutation is rare and the whole point of the
        # suspicion period, so it also goes straight to every live member (one datagram each):
        # under loss each member still has the gossip copies as a second chance.
        for member in self._random_members(MAX_DIRECT_REFUTES, _LIVE):
            out.append(SendTo(member.addr(), (alive,)))

    def _refresh_addresses(self, member: _Member, update: MemberUpdate) -> None:
        if update.addresses:
            merged = dict.fromkeys((*update.addresses, *member.addresses))
            member.addresses = tuple(merged)[:KEPT_ADDRESSES]
        if update.port:
            member.port = update.port

    def _saw(self, now: float, member: _Member, src: Address, out: list[Effect]) -> None:
        member.last_seen = now
        if member.addresses[:1] != (src[0],) or member.port != src[1]:
            known = bool(member.addresses)
            member.addresses = tuple(dict.fromkeys((src[0], *member.addresses)))[:KEPT_ADDRESSES]
            member.port = src[1]
            if known:  # learning a first address is not news; a DHCP change is
                self._emit(now, EventKind.UPDATED, member, out, detail="address")

    def _make_room(self) -> bool:
        if len(self._members) < self._max_members:
            return True
        gone = [m for m in self._members.values() if m.state in _GONE]
        if not gone:
            return False
        oldest = min(gone, key=lambda m: m.state_since)
        del self._members[oldest.device_id]
        self._broadcasts.pop(oldest.device_id, None)
        return True

    def _reap(self, now: float) -> None:
        for member in list(self._members.values()):
            if member.state in _GONE and now >= member.state_since + self._timing.reap_after:
                del self._members[member.device_id]
                self._broadcasts.pop(member.device_id, None)

    # ---- join, push-pull, rejoin

    def _start_join(self, now: float, addr: Address, out: list[Effect]) -> None:
        pending = self._pending_joins.get(addr)
        if pending is None:
            if len(self._pending_joins) >= MAX_PENDING_JOINS:
                oldest = min(self._pending_joins, key=lambda a: self._pending_joins[a].due)
                del self._pending_joins[oldest]
            pending = _PendingJoin(attempts=0, due=now)
            self._pending_joins[addr] = pending
        pending.attempts += 1
        pending.due = now + self._timing.join_retry * 2 ** (pending.attempts - 1)
        self._send_full_state(addr, out, reply=False, join=True)

    def _defer_join(self, now: float, device_id: str, addresses: Sequence[str], port: int) -> bool:
        """Put off joining a newly discovered device if gossip will likely introduce it.

        With 50 devices starting together, everyone joining everyone is 2,450 full-state
        exchanges; memberlist joins one seed and lets gossip do the rest. A device with no
        members yet joins the first ``JOIN_FANOUT`` it finds at once (the answers carry the
        whole cluster); anything found later waits ``join_defer`` to ``2 * join_defer`` and is
        joined only if it is still unknown then (a lone device, another partition).
        """
        if device_id in self._deferred_joins:
            deferred = self._deferred_joins[device_id]
            deferred.addresses, deferred.port = tuple(addresses), port
            return True
        in_flight = len(self._pending_joins)
        if self.alive_count() == 1 and in_flight < JOIN_FANOUT:
            return False
        if len(self._deferred_joins) >= MAX_PENDING_JOINS:
            return False  # too many to track: join now, as before
        due = now + self._timing.join_defer * self._rng.uniform(1.0, 2.0)
        self._deferred_joins[device_id] = _DeferredJoin(tuple(addresses), port, due)
        return True

    def _run_deferred_joins(self, now: float, out: list[Effect]) -> None:
        for device_id, deferred in list(self._deferred_joins.items()):
            if now < deferred.due:
                continue
            del self._deferred_joins[device_id]
            known = self._members.get(device_id)
            if known is not None and known.state in _LIVE:
                continue  # gossip brought it
            self._join_addresses(now, deferred.addresses, deferred.port, out)

    def _join_addresses(
        self,
        now: float,
        addresses: Sequence[str],
        port: int,
        out: list[Effect],
        skip: set[Address] | frozenset[Address] = frozenset(),
    ) -> None:
        """Join a device at (up to four of) its addresses, minus ``skip``."""
        for address in list(dict.fromkeys(addresses))[:4]:
            addr = (address, port)
            if addr in skip:
                continue
            pending = self._pending_joins.get(addr)
            if pending is not None and now < pending.due:
                continue  # a join is under way; its retries take care of it
            self._start_join(now, addr, out)

    def _run_joins(self, now: float, out: list[Effect]) -> None:
        for addr, pending in list(self._pending_joins.items()):
            if now < pending.due:
                continue
            if pending.attempts >= self._timing.join_attempts:
                del self._pending_joins[addr]
            else:
                self._start_join(now, addr, out)

    def _maybe_join_unknown(
        self, now: float, sender_id: str, src: Address, out: list[Effect]
    ) -> None:
        if src in self._pending_joins or self._defer_join(now, sender_id, (src[0],), src[1]):
            return
        self._start_join(now, src, out)

    def _rejoin_now(self, now: float, member: _Member, out: list[Effect]) -> None:
        if now - member.last_nudge < self._timing.sync_answer_interval:
            return
        member.last_nudge = now
        self._send_full_state(member.addr(), out, reply=False, join=True)

    def _run_rejoins(self, now: float, out: list[Effect]) -> None:
        for member in self._members.values():
            if member.next_rejoin is None or now < member.next_rejoin:
                continue
            member.rejoin_delay = min(2 * member.rejoin_delay, self._timing.rejoin_max_interval)
            member.next_rejoin = now + self._jittered(member.rejoin_delay)
            self._send_full_state(member.addr(), out, reply=False, join=True)

    def _on_join(
        self, now: float, sender_id: str, src: Address, message: Join, out: list[Effect]
    ) -> None:
        member = self._members.get(sender_id)
        if member is not None and member.state in _GONE:
            # A Join is proof of life. Our answer carries the incarnation we hold, which makes
            # it refute above it, so the rest of the cluster follows.
            old = member.state
            member.state = MemberState.ALIVE
            member.state_since = now
            member.next_rejoin = None
            member.suspicion = None
            self._queue(member.update(MemberState.ALIVE, member.incarnation))
            kind = EventKind.ALIVE if old is MemberState.DEAD else EventKind.JOINED
            self._emit(now, kind, member, out)
            position = self._rng.randint(self._probe_index, len(self._probe_order))
            self._probe_order.insert(position, member.device_id)
            # Tell it what we held, so it refutes above that incarnation even if the full
            # state below is rate-limited.
            out.append(SendTo(src, (member.update(old, member.incarnation, by=self.self_id),)))
        if member is not None:
            self._note_meta(now, member, message.meta_version)
        self._answer_sync(now, sender_id, src, out)

    def _answer_sync(self, now: float, sender_id: str, src: Address, out: list[Effect]) -> None:
        last = self._sync_answered.get(sender_id)
        if last is not None and now - last < self._timing.sync_answer_interval:
            return
        if len(self._sync_answered) >= self._max_members:
            self._sync_answered = {
                k: t
                for k, t in self._sync_answered.items()
                if now - t < self._timing.sync_answer_interval
            }
        self._sync_answered[sender_id] = now
        self._send_full_state(src, out, reply=False)

    def _send_full_state(
        self, addr: Address, out: list[Effect], *, reply: bool, join: bool = False
    ) -> None:
        """Our full state as ``Sync`` chunks that each fit a datagram, then our ``Meta``."""
        entries = [self._self_update(MemberState.ALIVE)]
        entries.extend(m.update(m.state, m.incarnation) for m in self._members.values())
        # The Join goes after the first chunk: the receiver merges our view of it (and refutes
        # if we hold it dead) before it answers the Join with its own state.
        tail: list[Message] = [Join(self._meta_version)] if join else []
        chunk: list[MemberUpdate] = []
        budget = self._max_body - body_size([Sync((), reply), *tail]) - 1
        used = 0
        for entry in entries:
            size = encoded_size(entry) + 1
            if chunk and used + size > budget:
                out.append(SendTo(addr, (Sync(tuple(chunk), reply), *tail)))
                tail, reply, chunk, used = [], False, [], 0
                budget = self._max_body - body_size([Sync((), False)]) - 1
            chunk.append(entry)
            used += size
        out.append(SendTo(addr, (Sync(tuple(chunk), reply), *tail)))
        if self._meta_version:
            out.append(SendTo(addr, (Meta(self.self_id, self._meta_version, self._meta),)))

    # ---- metadata

    def _note_meta(self, now: float, member: _Member, version: int) -> None:
        member.meta_wanted = max(member.meta_wanted, version)
        if member.meta_wanted > member.meta_version and member.meta_due is None:
            member.meta_due = now  # asked for on the next timer, batched with other work

    def _run_meta_requests(self, now: float, out: list[Effect]) -> None:
        for member in self._members.values():
            if member.meta_due is None or now < member.meta_due:
                continue
            if member.meta_wanted <= member.meta_version or member.state in _GONE:
                member.meta_due = None
                continue
            member.meta_due = now + self._timing.meta_retry
            self._send(member.addr(), [MetaRequest(member.device_id)], out)

    def _on_meta_request(self, device_id: str, src: Address, out: list[Effect]) -> None:
        if device_id == self.self_id:
            out.append(SendTo(src, (Meta(self.self_id, self._meta_version, self._meta),)))
            return
        member = self._members.get(device_id)
        if member is not None and member.meta_version:
            out.append(SendTo(src, (Meta(device_id, member.meta_version, member.meta),)))

    def _on_meta(self, now: float, message: Meta, out: list[Effect]) -> None:
        member = self._members.get(message.device_id)
        if member is None or message.version <= member.meta_version:
            return
        member.meta = dict(message.data)
        member.meta_version = message.version
        member.meta_wanted = max(member.meta_wanted, message.version)
        if member.meta_wanted <= member.meta_version:
            member.meta_due = None
        self._emit(now, EventKind.UPDATED, member, out, detail="meta")

    # ---- gossip

    def _queue(self, update: MemberUpdate) -> None:
        self._broadcast_order += 1
        self._broadcasts[update.device_id] = _Broadcast(update, 0, self._broadcast_order)
        if len(self._broadcasts) > self._max_broadcasts:
            # Drop the most-sent (then oldest) update: it has had the most chances to spread.
            worst = max(self._broadcasts.values(), key=lambda b: (b.transmits, -b.order))
            del self._broadcasts[worst.update.device_id]

    def _retransmit_limit(self) -> int:
        scale = math.ceil(math.log10(self.alive_count() + 1))
        return self._timing.retransmit_mult * max(1, scale)

    def _piggyback(self, budget: int) -> list[MemberUpdate]:
        """Updates fitting ``budget`` bytes, least-sent (newest) first; counts the sends."""
        chosen: list[MemberUpdate] = []
        limit = self._retransmit_limit()
        order = sorted(self._broadcasts.values(), key=lambda b: (b.transmits, -b.order))
        for broadcast in order:
            size = encoded_size(broadcast.update) + 1
            if size > budget:
                continue
            budget -= size
            chosen.append(broadcast.update)
            broadcast.transmits += 1
            if broadcast.transmits >= limit:
                del self._broadcasts[broadcast.update.device_id]
        return chosen

    def _gossip(self, out: list[Effect]) -> None:
        targets = self._random_members(self._timing.gossip_fanout, _LIVE)
        for member in targets:
            self._send(member.addr(), [], out, gossip=True)

    def _send(
        self, addr: Address, messages: list[Message], out: list[Effect], *, gossip: bool = False
    ) -> None:
        if gossip and self._broadcasts:
            budget = self._max_body - body_size(messages)
            messages = [*messages, *self._piggyback(budget)]
        if messages:
            out.append(SendTo(addr, tuple(messages)))

    def _self_update(self, state: MemberState) -> MemberUpdate:
        return MemberUpdate(
            device_id=self.self_id,
            state=state,
            incarnation=self._incarnation,
            addresses=self._addresses,
            port=self._port,
            meta_version=self._meta_version,
            hostname=self._hostname,
            by=self.self_id if state is not MemberState.ALIVE else "",
        )

    # ---- helpers

    def _emit(
        self, now: float, kind: EventKind, member: _Member, out: list[Effect], detail: str = ""
    ) -> None:
        event = MemberEvent(kind, member.device_id, now, detail)
        self.events.append(event)
        out.append(Notify(event))

    def _random_members(
        self, count: int, states: Iterable[MemberState], exclude: str | None = None
    ) -> list[_Member]:
        wanted = set(states)
        pool = [
            m
            for m in self._members.values()
            if m.state in wanted and m.device_id != exclude and m.addresses
        ]
        return self._rng.sample(pool, min(count, len(pool)))

    def _jittered(self, interval: float) -> float:
        return interval * self._rng.uniform(0.75, 1.25)


# --------------------------------------------------------------------------------------------
# Private state

_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_GONE = (MemberState.DEAD, MemberState.LEFT)


@dataclass(slots=True)
class _Suspicion:
    started: float
    low: float
    high: float
    k: int
    confirmations: set[str]
    deadline: float
    floor: float = 0.0  # not before this (grace after a late wake-up)
    scale: int = 1  # 1 + our local health when the timeouts were set

    def rescale(self, scale: int) -> bool:
        """Stretch the timeouts if our local health got worse since; True if they changed."""
        if scale <= self.scale:
            return False
        self.low *= scale / self.scale
        self.high *= scale / self.scale
        self.scale = scale
        self.recompute()
        return True

    def confirm(self, by: str) -> bool:
        """Count an independent suspicion; True if it was new (and shortened the timeout)."""
        if not by or by in self.confirmations or len(self.confirmations) > self.k:
            return False
        self.confirmations.add(by)
        self.recompute()
        return True

    def recompute(self) -> None:
        # memberlist suspicion.go remainingSuspicionTime: max - log(c+1)/log(k+1) * (max-min)
        confirmed = len(self.confirmations) - 1
        if self.k < 1:
            timeout = self.low
        else:
            frac = math.log(confirmed + 1) / math.log(self.k + 1)
            timeout = max(self.low, self.high - frac * (self.high - self.low))
        self.deadline = max(self.started + timeout, self.floor)


@dataclass(slots=True)
class _Member:
    device_id: str
    hostname: str
    state: MemberState
    incarnation: int
    addresses: tuple[str, ...]
    port: int
    state_since: float
    last_seen: float | None = None
    rtt: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    meta_version: int = 0  # the version whose data we hold
    meta_wanted: int = 0  # the newest version we heard of
    meta_due: float | None = None
    suspicion: _Suspicion | None = None
    next_rejoin: float | None = None
    rejoin_delay: float = 0.0
    last_nudge: float = -math.inf

    def addr(self) -> Address:
        return (self.addresses[0] if self.addresses else "", self.port)

    def update(self, state: MemberState, incarnation: int, by: str = "") -> MemberUpdate:
        return MemberUpdate(
            device_id=self.device_id,
            state=state,
            incarnation=incarnation,
            addresses=self.addresses,
            port=self.port,
            meta_version=max(self.meta_version, self.meta_wanted),
            hostname=self.hostname,
            by=by,
        )

    def view(self) -> MemberView:
        return MemberView(
            device_id=self.device_id,
            hostname=self.hostname,
            state=self.state,
            incarnation=self.incarnation,
            addresses=self.addresses,
            port=self.port,
            last_seen=self.last_seen,
            rtt=self.rtt,
            meta=dict(self.meta),
            meta_version=self.meta_version,
            state_since=self.state_since,
        )


@dataclass(slots=True)
class _Broadcast:
    update: MemberUpdate
    transmits: int
    order: int


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    sent_at: float
    indirect_at: float
    fail_at: float
    indirect_sent: bool = False


@dataclass(slots=True)
class _Relay:
    seq: int  # the requester's
    target: str
    requester_addr: Address
    expires: float


@dataclass(slots=True)
class _DeferredJoin:
    addresses: tuple[str, ...]
    port: int
    due: float


@dataclass(slots=True)
class _PendingJoin:
    attempts: int
    due: float

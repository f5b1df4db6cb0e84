"""The mesh link core: what one cluster's link does with each datagram and candidate (sans-IO).

Theory of operation
-------------------
``LinkCore`` owns no socket, task or clock. The adapter (``edgeagent.mesh.service.ClusterLink``)
feeds it ``now`` (monotonic seconds) with every datagram (``receive``) and every discovery
candidate (``candidate``) and carries out the effects it returns, in order:

``SendTo(addr, messages)``
    one datagram (the adapter seals it with ``seal`` and sends it);
``Notify(event)``
    a member event for the listeners;
``ServeRequest(sender, addr, request)``
    run the handler of ``request.method``; when it is done, call ``request_done`` and send the
    response (or, when the adapter cannot run it, send what ``refuse`` returns);
``CompleteRequest(sender, response)``
    a response to one of our requests arrived from ``sender``.

``SendTo`` and ``Notify`` are also what the ``Membership`` core returns; this core holds the
cluster's ``Membership`` and hands it the messages of every frame it accepts.

The receive rule (docs/mesh.md), in this order; each drop is counted in ``LinkStats``:

1. A link without a key (observe-only) reads nothing (``dropped_unkeyed``). A datagram over
   ``max_datagram`` bytes is not ours: dropped before an HMAC is spent on it
   (``dropped_malformed``).
2. ``ClusterCodec.open`` authenticates the frame: ``malformed`` / ``other_cluster`` / ``bad_tag``
   (``dropped_malformed`` / ``dropped_other_cluster`` / ``dropped_auth``). Our own frames (a
   loop) are dropped silently.
3. The ``ReplayGuard`` screens ``(epoch, seq)``: a seq seen before in the sender's verified
   epoch is a replay (``dropped_replay``). Then the body is decoded (``dropped_undecodable``).
4. Every ``Challenge`` in the frame is answered, whatever the verdict, at most every
   ``min_interval`` per sender (``ChallengeBook.may_answer``): that is how a peer that does not
   know our epoch yet comes to trust us.
5. A ``ChallengeResponse`` that answers our outstanding nonce for the sender proves the sender
   is live and holds the key in the frame's epoch: the guard accepts the epoch, the frames held
   for that sender in that epoch are delivered (once: the guard marks their seqs), and the
   sender is handed to membership as discovered (it joins unless those frames made it a
   member). Nothing else of that frame is delivered.
6. Any other frame from an unknown sender, or in an epoch not verified (a restart, or a
   replay), is held (at most ``held_per_sender`` frames for each of ``max_held`` senders; a
   frame carrying a ``Join`` is kept over others) and earns the sender a ``Challenge``
   (``ChallengeBook.issue``: one outstanding nonce per sender, resent with backoff).
7. An accepted frame is delivered: its sender leaves the ``seen`` table, a ``Request`` is
   admitted (a known method, fewer than ``max_handling`` being handled, the link a running
   member) as ``ServeRequest`` or answered at once with an error ``Response``; a ``Response``
   becomes ``CompleteRequest``; every other message goes to membership.

Candidates: every candidate but ourselves is listed in ``seen`` (bounded by ``max_seen``, the
least recently seen dropped) with the reason it is not a member yet; a keyed link hands the
IPv4 addresses of one that holds the key to membership, which decides whether to join it.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Container, Sequence
from dataclasses import asdict, dataclass

from edgeagent.errors import ProtocolError
from edgeagent.mesh.auth import (
    MALFORMED,
    OTHER_CLUSTER,
    AuthError,
    ChallengeBook,
    ClusterCodec,
    OpenedFrame,
    ReplayGuard,
    Verdict,
)
from edgeagent.mesh.discovery.base import Candidate
from edgeagent.mesh.membership import Membership, MembershipState, Notify, SendTo
from edgeagent.mesh.messages import (
    Address,
    Challenge,
    ChallengeResponse,
    Join,
    MemberState,
    Message,
    Request,
    Response,
    decode,
    encode,
)

__all__ = [
    "CompleteRequest",
    "LinkCore",
    "LinkEffect",
    "LinkLimits",
    "LinkStats",
    "Notify",
    "Seen",
    "SendTo",
    "ServeRequest",
]

MAX_DATAGRAM = 9000  # larger datagrams are not ours: drop before spending an HMAC on them
MAX_HELD = 256  # unverified senders whose latest frames wait for their challenge answer
HELD_PER_SENDER = 6  # a join is several datagrams (Sync chunks with the Join, then Meta)
MAX_SEEN = 1024  # discovered devices listed as seen
MAX_HANDLING = 32  # remote requests being handled at once

BUSY = "busy: try again"


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """The bounds of one link (see the module docstring for what each bounds)."""

    max_datagram: int = MAX_DATAGRAM
    max_held: int = MAX_HELD
    held_per_sender: int = HELD_PER_SENDER
    max_seen: int = MAX_SEEN
    max_handling: int = MAX_HANDLING


@dataclass(slots=True)
class LinkStats:
    """What one link did with its datagrams and requests (the ``stats`` of ``mesh status``)."""

    datagrams: int = 0
    accepted: int = 0
    dropped_malformed: int = 0
    dropped_auth: int = 0  # the frame tag did not verify (bad_tag)
    dropped_other_cluster: int = 0
    dropped_replay: int = 0
    dropped_undecodable: int = 0
    dropped_unkeyed: int = 0
    challenges_sent: int = 0
    challenges_passed: int = 0
    sent: int = 0
    send_errors: int = 0
    requests_sent: int = 0
    requests_served: int = 0
    requests_rejected: int = 0


@dataclass(slots=True)
class Seen:
    """A discovered device that is not a member (yet), and why."""

    candidate: Candidate
    last_seen: float
    reason: str


@dataclass(frozen=True, slots=True)
class ServeRequest:
    """Effect: run the handler for ``request`` from member ``sender`` and answer at ``addr``."""

    sender: str
    addr: Address
    request: Request


@dataclass(frozen=True, slots=True)
class CompleteRequest:
    """Effect: ``response`` to one of our requests arrived in a frame from ``sender``."""

    sender: str
    response: Response


LinkEffect = SendTo | Notify | ServeRequest | CompleteRequest


@dataclass(frozen=True, slots=True)
class _HeldFrame:
    """A frame from an unverified sender, waiting for its answer to our challenge."""

    frame: OpenedFrame
    messages: list[Message]
    addr: Address


class LinkCore:
    """Frame screening, challenges, epochs, held frames, seen devices and request admission of
    one cluster's link, around its ``Membership`` core. Sans-IO: every input takes ``now``."""

    def __init__(
        self,
        membership: Membership,
        codec: ClusterCodec | None,
        *,
        methods: Container[str] = (),
        guard: ReplayGuard | None = None,
        challenges: ChallengeBook | None = None,
        limits: LinkLimits = LinkLimits(),
    ) -> None:
        self.membership = membership
        self.self_id = membership.self_id
        self.limits = limits
        self.stats = LinkStats()
        self.seen: dict[str, Seen] = {}
        self._codec = codec
        self._methods = methods
        self._guard = guard or ReplayGuard()
        self._challenges = challenges or ChallengeBook()
        self._held: dict[str, deque[_HeldFrame]] = {}
        self._handling = 0

    @property
    def keyed(self) -> bool:
        """Whether the link holds the cluster key (without one it only observes)."""
        return self._codec is not None

    @property
    def handling(self) -> int:
        """Remote requests admitted and not answered yet."""
        return self._handling

    @property
    def held(self) -> int:
        """Frames held for unverified senders."""
        return sum(len(frames) for frames in self._held.values())

    # -- inputs --------------------------------------------------------------------------------

    def receive(self, now: float, data: bytes, addr: Address) -> list[LinkEffect]:
        """Open, screen, then deliver one datagram from ``addr`` (the receive rule above)."""
        stats = self.stats
        stats.datagrams += 1
        out: list[LinkEffect] = []
        codec = self._codec
        if codec is None:
            stats.dropped_unkeyed += 1
            return out
        if len(data) > self.limits.max_datagram:
            stats.dropped_malformed += 1
            return out
        try:
            frame = codec.open(data)
        except AuthError as exc:
            self._count_auth_failure(exc.reason)
            return out
        if frame.own or frame.sender == self.self_id:
            return out
        verdict = self._guard.check(frame)
        if verdict is Verdict.REPLAY:
            stats.dropped_replay += 1
            return out
        try:
            messages = decode(frame.body)
        except ProtocolError:
            stats.dropped_undecodable += 1
            return out
        sender = frame.sender
        for message in messages:
            if isinstance(message, Challenge) and self._challenges.may_answer(now, sender):
                out.append(SendTo(addr, (ChallengeResponse(message.nonce),)))
        for message in messages:
            if isinstance(message, ChallengeResponse) and self._challenges.verify(
                now, sender, message.nonce
            ):
                self._verified(now, frame, addr, out)
                return out
        if verdict is Verdict.NEEDS_CHALLENGE:
            self._hold(_HeldFrame(frame, messages, addr))
            nonce = self._challenges.issue(now, sender)
            if nonce is not None:
                stats.challenges_sent += 1
                out.append(SendTo(addr, (Challenge(nonce),)))
            return out
        self._deliver(now, sender, addr, messages, out)
        return out

    def candidate(self, now: float, candidate: Candidate) -> list[LinkEffect]:
        """A discovery strategy reported ``candidate``: list it as seen; maybe join it."""
        if candidate.device_id == self.self_id:
            return []
        key = candidate.device_id or ",".join(candidate.addresses)
        if not self.keyed:
            reason = "this device has no key for the cluster (observe-only)"
        elif candidate.observe_only:
            reason = "it has no key for the cluster (observe-only)"
        else:
            reason = "discovered; no authenticated frame from it yet"
        if key not in self.seen and len(self.seen) >= self.limits.max_seen:
            oldest = min(self.seen, key=lambda k: self.seen[k].last_seen)
            del self.seen[oldest]
        self.seen[key] = Seen(candidate, now, reason)
        # The peer link is IPv4 for now (one AF_INET socket per cluster); IPv6 candidates,
        # link-local ones with their %scope included, are listed but not dialled.
        reachable = tuple(a for a in candidate.addresses if _is_ipv4(a))
        if not self.keyed or not reachable or candidate.observe_only:
            return []
        return list(self.membership.discovered(now, reachable, candidate.port, candidate.device_id))

    # -- requests we serve ---------------------------------------------------------------------

    def request_done(self, *, served: bool) -> None:
        """A ``ServeRequest`` was answered (``served``: by its handler, not with an error)."""
        self._handling = max(0, self._handling - 1)
        if served:
            self.stats.requests_served += 1

    def refuse(self, effect: ServeRequest) -> list[LinkEffect]:
        """The adapter could not run ``effect`` (it is stopping): the answer to send instead."""
        self._handling = max(0, self._handling - 1)
        self.stats.requests_rejected += 1
        return [SendTo(effect.addr, (Response(effect.request.request_id, False, BUSY),))]

    # -- output --------------------------------------------------------------------------------

    def seal(self, messages: Sequence[Message]) -> bytes:
        """The frame that carries ``messages``. Raises ``ValueError`` when it cannot be sealed
        (an observe-only link, a frame over the size limit)."""
        if self._codec is None:
            raise ValueError("an observe-only link sends nothing")
        return self._codec.seal(0, encode(messages))

    def counters(self) -> dict[str, int]:
        """The link's counters and gauges (``LinkStats``, members by state, held, seen)."""
        counts = asdict(self.stats)
        states = dict.fromkeys(MemberState, 0)
        if self.keyed:
            for view in self.membership.members()[1:]:  # [0] is us
                states[view.state] += 1
        for state, count in states.items():
            counts[f"members_{state.value}"] = count
        counts["seen"] = len(self.seen)
        counts["held_frames"] = self.held
        counts["requests_handling"] = self._handling
        return counts

    # -- private -------------------------------------------------------------------------------

    def _count_auth_failure(self, reason: str) -> None:
        if reason == MALFORMED:
            self.stats.dropped_malformed += 1
        elif reason == OTHER_CLUSTER:
            self.stats.dropped_other_cluster += 1
        else:  # BAD_TAG: some holder of another key, or a corrupted frame
            self.stats.dropped_auth += 1

    def _verified(
        self, now: float, frame: OpenedFrame, addr: Address, out: list[LinkEffect]
    ) -> None:
        """``frame`` answered our fresh nonce in an authenticated frame: live, holds the key."""
        sender = frame.sender
        self._guard.accept_epoch(sender, frame.epoch, frame.seq)
        self.stats.challenges_passed += 1
        for held in self._held.pop(sender, ()):
            # The frames that made us ask, from this same verified run: deliver them now
            # (once: the guard marks them seen) instead of waiting for retries.
            if held.frame.epoch == frame.epoch and self._guard.check(held.frame) is Verdict.ACCEPT:
                self._deliver(now, sender, held.addr, held.messages, out)
        # If those frames did not make it a member (a Join or Sync does), join it; the core
        # waits a moment first when gossip is likely to introduce it anyway.
        out.extend(self.membership.discovered(now, (addr[0],), addr[1], sender))

    def _hold(self, item: _HeldFrame) -> None:
        """Keep ``item`` among its sender's held frames, at most ``held_per_sender``.

        When full, the oldest frame without a ``Join`` makes room: a join at 50 peers is four
        frames (Sync chunks, then Meta), and a ping arriving with them used to push the Join
        out, which left the join to its retry a second later.
        """
        sender = item.frame.sender
        if sender not in self._held and len(self._held) >= self.limits.max_held:
            return
        held = self._held.setdefault(sender, deque())
        if len(held) >= self.limits.held_per_sender:
            victim = next(
                (h for h in held if not any(isinstance(m, Join) for m in h.messages)),
                held[0],
            )
            held.remove(victim)
        held.append(item)

    def _deliver(
        self,
        now: float,
        sender: str,
        addr: Address,
        messages: list[Message],
        out: list[LinkEffect],
    ) -> None:
        """Hand an accepted frame's messages to request admission and the membership core."""
        self.stats.accepted += 1
        self.seen.pop(sender, None)
        for message in messages:
            if isinstance(message, Challenge | ChallengeResponse):
                continue
            if isinstance(message, Request):
                self._admit(sender, addr, message, out)
            elif isinstance(message, Response):
                out.append(CompleteRequest(sender, message))
            else:
                out.extend(self.membership.on_message(now, sender, addr, message))

    def _admit(self, sender: str, addr: Address, request: Request, out: list[LinkEffect]) -> None:
        known = request.method in self._methods
        serving = self.membership.state is MembershipState.RUNNING
        if not known or not serving or self._handling >= self.limits.max_handling:
            self.stats.requests_rejected += 1
            reason = f"unknown method {request.method!r}" if not known else BUSY
            out.append(SendTo(addr, (Response(request.request_id, False, reason),)))
            return
        self._handling += 1
        out.append(ServeRequest(sender, addr, request))


def _is_ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False

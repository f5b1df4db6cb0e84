"""The mesh link core: frame screening, challenges, epochs, held frames, seen devices and request
admission, driven through a simulated network of sealed frames with simulated time."""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field

from edgeagent.mesh.auth import ChallengeBook, ClusterCodec
from edgeagent.mesh.discovery import Candidate
from edgeagent.mesh.link import (
    CompleteRequest,
    LinkCore,
    LinkEffect,
    LinkLimits,
    Notify,
    SendTo,
    ServeRequest,
)
from edgeagent.mesh.membership import EventKind, MemberEvent, Membership, SwimTiming
from edgeagent.mesh.messages import (
    Challenge,
    ChallengeResponse,
    Join,
    MemberState,
    Message,
    Ping,
    PingAck,
    Request,
    Response,
    Sync,
    decode,
    encode,
)

PORT = 4370
CLUSTER = "greenhouse"
KEY = os.urandom(32)
METHODS = frozenset({"agent.status"})

# --------------------------------------------------------------------------------------------
# The simulator: every SendTo is sealed by the sender's core and opened by the receiver's, as
# on the wire; ``wire`` keeps every datagram so tests can replay them.


@dataclass
class Node:
    device_id: str
    ip: str
    core: LinkCore
    events: list[MemberEvent] = field(default_factory=list)
    served: list[ServeRequest] = field(default_factory=list)
    completed: list[CompleteRequest] = field(default_factory=list)
    down: bool = False

    @property
    def addr(self) -> tuple[str, int]:
        return (self.ip, PORT)


@dataclass(frozen=True)
class Datagram:
    src: tuple[str, int]
    dest: tuple[str, int]
    data: bytes


class SimNet:
    def __init__(self, seed: int = 1, latency: float = 0.001) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.wire: list[Datagram] = []
        self._queue: list[tuple[float, int, Datagram]] = []
        self._order = itertools.count()

    def add(
        self,
        device_id: str,
        *,
        key: bytes | None = KEY,
        epoch: int = 1,
        ip: str | None = None,
        limits: LinkLimits | None = None,
    ) -> Node:
        ip = ip or f"10.0.0.{len(self.nodes) + 1}"
        membership = Membership(
            device_id,
            f"host-{device_id}",
            PORT,
            timing=SwimTiming(),
            rng=random.Random(f"{device_id}-{self.rng.random()}"),
            addresses=(ip,),
        )
        codec = (
            ClusterCodec(CLUSTER, key, self_id=device_id, epoch=epoch) if key is not None else None
        )
        core = LinkCore(membership, codec, methods=METHODS, limits=limits or LinkLimits())
        node = Node(device_id, ip, core)
        self.nodes[ip] = node
        if key is not None:
            self.apply(node, list(membership.start(self.now)))
        return node

    def discover(self, node: Node, other: Node) -> None:
        candidate = Candidate(CLUSTER, other.device_id, None, (other.ip,), PORT, "test")
        self.apply(node, node.core.candidate(self.now, candidate))

    def apply(self, node: Node, effects: list[LinkEffect]) -> None:
        for effect in effects:
            if isinstance(effect, Notify):
                node.events.append(effect.event)
            elif isinstance(effect, ServeRequest):
                node.served.append(effect)
            elif isinstance(effect, CompleteRequest):
                node.completed.append(effect)
            else:
                self.send(node.addr, effect.addr, node.core.seal(effect.messages))

    def send(self, src: tuple[str, int], dest: tuple[str, int], data: bytes) -> None:
        datagram = Datagram(src, dest, data)
        self.wire.append(datagram)
        heapq.heappush(self._queue, (self.now + self.latency, next(self._order), datagram))

    def inject(
        self, node: Node, data: bytes, src: tuple[str, int] = ("10.9.9.9", PORT)
    ) -> list[LinkEffect]:
        """``data`` arrives at ``node`` now; the effects are returned, not carried out."""
        return node.core.receive(self.now, data, src)

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            timer_at, timer_node = math.inf, None
            for node in self.nodes.values():
                if node.down or not node.core.keyed:
                    continue
                deadline = node.core.membership.next_deadline()
                if deadline is not None and deadline < timer_at:
                    timer_at, timer_node = deadline, node
            message_at = self._queue[0][0] if self._queue else math.inf
            at = min(timer_at, message_at)
            if at > end:
                self.now = end
                return
            self.now = max(self.now, at)
            if message_at <= timer_at:
                _, _, datagram = heapq.heappop(self._queue)
                dest = self.nodes.get(datagram.dest[0])
                if dest is not None and not dest.down:
                    self.apply(dest, dest.core.receive(self.now, datagram.data, datagram.src))
            elif timer_node is not None:
                self.apply(timer_node, list(timer_node.core.membership.on_timer(self.now)))

    def sent(self, src: Node, dest: Node) -> list[list[Message]]:
        """The messages of every datagram ``src`` sent to ``dest`` (opened with the key)."""
        opener = ClusterCodec(CLUSTER, KEY, self_id="observer", epoch=1)
        return [
            decode(opener.open(d.data).body)
            for d in self.wire
            if d.src == src.addr and d.dest == dest.addr
        ]


def state(observer: Node, other: Node) -> MemberState | None:
    view = observer.core.membership.member(other.device_id)
    return None if view is None else view.state


def frame(
    messages: list[Message], *, sender: str = "b", epoch: int = 1, key: bytes = KEY
) -> tuple[ClusterCodec, bytes]:
    codec = ClusterCodec(CLUSTER, key, self_id=sender, epoch=epoch)
    return codec, codec.seal(0, encode(messages))


def sends(effects: list[LinkEffect]) -> list[tuple[Message, ...]]:
    return [e.messages for e in effects if isinstance(e, SendTo)]


def verify(net: SimNet, node: Node, codec: ClusterCodec, src: tuple[str, int]) -> None:
    """Make ``codec``'s sender verified at ``node`` in its epoch: answer the challenge it gets."""
    effects = net.inject(node, codec.seal(0, encode([Ping(1, node.device_id)])), src)
    (challenge,) = [m for ms in sends(effects) for m in ms if isinstance(m, Challenge)]
    net.inject(node, codec.seal(0, encode([ChallengeResponse(challenge.nonce)])), src)


def test_the_link_core_loads_no_io_module() -> None:
    """A core: importing it (and what it imports) brings in no asyncio, sqlite or serial."""
    probe = "import json, sys, edgeagent.mesh.link; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert not set(json.loads(out.stdout)) & {"asyncio", "sqlite3", "aiosqlite", "serial", "paho"}


# --------------------------------------------------------------------------------------------
# Joining through the challenge dance


def test_two_devices_with_the_key_verify_each_other_and_join_within_round_trips() -> None:
    net = SimNet()
    a, b = net.add("a"), net.add("b")
    net.discover(a, b)
    net.run_for(0.05)  # a few 1 ms round trips: the held join is delivered, not retried
    assert state(a, b) is MemberState.ALIVE
    assert state(b, a) is MemberState.ALIVE
    for node in (a, b):
        assert node.core.stats.challenges_sent == 1
        assert node.core.stats.challenges_passed == 1
        assert node.core.held == 0
    assert next(e.kind for e in a.events if e.device_id == "b") is EventKind.JOINED
    # b's first answer to a's Join was held until b passed a's challenge, then delivered.
    assert a.core.stats.accepted > 0


def test_members_stay_alive_with_every_frame_authenticated() -> None:
    net = SimNet()
    nodes = [net.add(f"n{i}") for i in range(4)]
    for node in nodes[1:]:
        net.discover(node, nodes[0])
    net.run_for(10.0)
    for x in nodes:
        for y in nodes:
            if x is not y:
                assert state(x, y) is MemberState.ALIVE, (x.device_id, y.device_id)
        stats = x.core.stats
        assert stats.dropped_auth == stats.dropped_replay == stats.dropped_malformed == 0
        assert stats.challenges_passed == 3  # one per peer, once
    assert nodes[0].core.counters()["members_alive"] == 3


def test_a_device_without_the_key_never_becomes_a_member() -> None:
    net = SimNet()
    a, b = net.add("a"), net.add("b", key=os.urandom(32))
    net.discover(b, a)
    net.discover(a, b)
    net.run_for(5.0)
    assert state(a, b) is None
    assert state(b, a) is None
    assert a.core.stats.dropped_other_cluster > 0  # another key is another cluster tag
    assert a.core.stats.accepted == 0


# --------------------------------------------------------------------------------------------
# Screening


def test_replayed_frames_are_dropped_once_seen() -> None:
    net = SimNet()
    a, b = net.add("a"), net.add("b")
    net.discover(a, b)
    net.run_for(2.0)
    recorded = [d for d in net.wire if d.src == b.addr and d.dest == a.addr]
    accepted = a.core.stats.accepted
    replays = a.core.stats.dropped_replay
    for datagram in recorded[-5:]:
        assert net.inject(a, datagram.data, datagram.src) == []
    assert a.core.stats.dropped_replay == replays + 5
    assert a.core.stats.accepted == accepted


def test_frames_of_an_old_epoch_are_challenged_and_never_delivered() -> None:
    net = SimNet()
    a, b = net.add("a"), net.add("b")
    net.discover(a, b)
    net.run_for(2.0)
    old = [d for d in net.wire if d.src == b.addr and d.dest == a.addr]
    # b restarts in epoch 2; a verifies the new epoch through a challenge.
    b.down = True
    b2 = net.add("b", epoch=2, ip="10.0.0.12")
    net.discover(b2, a)
    net.run_for(2.0)
    assert state(a, b2) is MemberState.ALIVE
    passed = a.core.stats.challenges_passed
    accepted = a.core.stats.accepted
    # Recordings of epoch 1 are not fresh: each earns a challenge (rate-limited), nothing more.
    for datagram in old:
        effects = net.inject(a, datagram.data, datagram.src)
        assert not [e for e in effects if not isinstance(e, SendTo)]
        for messages in sends(effects):
            assert all(isinstance(m, Challenge | ChallengeResponse) for m in messages)
    assert a.core.stats.accepted == accepted
    assert a.core.stats.challenges_passed == passed


def test_oversized_garbage_other_clusters_and_bad_tags_are_counted_by_reason() -> None:
    net = SimNet()
    a = net.add("a")
    _, good = frame([Ping(1, "a")])
    assert net.inject(a, b"x" * (LinkLimits().max_datagram + 1)) == []
    assert net.inject(a, b"not a frame") == []
    _, other = frame([Ping(1, "a")], key=os.urandom(32))
    assert net.inject(a, other) == []
    tampered = bytearray(good)
    tampered[-20] ^= 1  # inside the body: the tag no longer verifies
    assert net.inject(a, bytes(tampered)) == []
    own = a.core.seal([Ping(1, "a")])
    assert net.inject(a, own) == []  # our own frame, looped back: dropped silently
    stats = a.core.stats
    assert (stats.datagrams, stats.dropped_malformed, stats.dropped_other_cluster) == (5, 2, 1)
    assert (stats.dropped_auth, stats.accepted, stats.challenges_sent) == (1, 0, 0)


def test_an_undecodable_body_is_counted_and_dropped() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    assert net.inject(a, codec.seal(0, b"[[99]]")) == []
    assert a.core.stats.dropped_undecodable == 1
    assert a.core.held == 0


def test_an_observe_only_link_reads_nothing() -> None:
    net = SimNet()
    a = net.add("a", key=None)
    _, data = frame([Ping(1, "a")])
    assert net.inject(a, data) == []
    assert a.core.stats.dropped_unkeyed == 1
    assert not a.core.keyed


# --------------------------------------------------------------------------------------------
# Challenges and held frames


def test_an_unknown_sender_is_challenged_at_a_limited_rate_and_its_frames_held() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    first = net.inject(a, codec.seal(0, encode([Join(0)])), src)
    (challenge,) = sends(first)
    assert isinstance(challenge[0], Challenge)
    # Frames right after it are held but earn no second challenge (ChallengeBook backoff).
    assert net.inject(a, codec.seal(0, encode([Ping(5, "a")])), src) == []
    assert a.core.held == 2
    net.now += ChallengeBook().min_interval
    (again,) = sends(net.inject(a, codec.seal(0, encode([Ping(6, "a")])), src))
    assert again == challenge  # the same nonce, resent
    assert a.core.stats.challenges_sent == 2


def test_a_verified_answer_delivers_the_held_frames_of_that_epoch_once() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    (challenge,) = sends(net.inject(a, codec.seal(0, encode([Ping(7, "a")])), src))
    nonce = challenge[0].nonce  # type: ignore[union-attr]
    effects = net.inject(a, codec.seal(0, encode([ChallengeResponse(nonce)])), src)
    # The held Ping is answered (delivered to membership) and b is joined.
    answered = [m for ms in sends(effects) for m in ms]
    assert PingAck(7) in answered
    assert any(isinstance(m, Join) for m in answered)
    assert a.core.stats.challenges_passed == 1
    assert a.core.held == 0
    assert a.core.stats.accepted == 1
    # The same answer again is a replay: nothing is delivered twice.
    answer = codec.seal(0, encode([ChallengeResponse(nonce)]))
    net.inject(a, answer, src)
    assert net.inject(a, answer, src) == []
    assert a.core.stats.dropped_replay == 1
    assert a.core.stats.challenges_passed == 1


def test_held_frames_of_another_epoch_than_the_answer_are_not_delivered() -> None:
    net = SimNet()
    a = net.add("a")
    src = ("10.0.0.2", PORT)
    old = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    (challenge,) = sends(net.inject(a, old.seal(0, encode([Ping(7, "a")])), src))
    nonce = challenge[0].nonce  # type: ignore[union-attr]
    new = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=2)
    effects = net.inject(a, new.seal(0, encode([ChallengeResponse(nonce)])), src)
    assert PingAck(7) not in [m for ms in sends(effects) for m in ms]
    assert (a.core.stats.challenges_passed, a.core.stats.accepted) == (1, 0)
    # The epoch that answered is now the verified one.
    assert net.inject(a, old.seal(0, encode([Ping(8, "a")])), src) != []  # challenged again
    assert a.core.stats.accepted == 0


def test_a_wrong_nonce_does_not_verify_and_keeps_the_challenge_outstanding() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    (challenge,) = sends(net.inject(a, codec.seal(0, encode([Ping(1, "a")])), src))
    net.inject(a, codec.seal(0, encode([ChallengeResponse(b"\0" * 16)])), src)
    assert a.core.stats.challenges_passed == 0
    nonce = challenge[0].nonce  # type: ignore[union-attr]
    net.inject(a, codec.seal(0, encode([ChallengeResponse(nonce)])), src)
    assert a.core.stats.challenges_passed == 1


def test_challenges_are_answered_whatever_the_verdict_at_a_limited_rate() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    effects = net.inject(a, codec.seal(0, encode([Challenge(b"\1" * 16)])), src)
    assert (ChallengeResponse(b"\1" * 16),) in sends(effects)
    # A replayed or repeated Challenge within min_interval gets no second answer.
    effects = net.inject(a, codec.seal(0, encode([Challenge(b"\2" * 16)])), src)
    assert (ChallengeResponse(b"\2" * 16),) not in sends(effects)


def test_held_frames_are_bounded_and_a_join_is_kept_over_pings() -> None:
    net = SimNet()
    a = net.add("a", limits=LinkLimits(max_held=2, held_per_sender=3))
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    (challenge,) = sends(net.inject(a, codec.seal(0, encode([Join(0)])), src))
    for seq in range(1, 6):
        net.inject(a, codec.seal(0, encode([Ping(seq, "a")])), src)
    assert a.core.held == 3
    for sender in ("c", "d"):
        other = ClusterCodec(CLUSTER, KEY, self_id=sender, epoch=1)
        net.inject(a, other.seal(0, encode([Ping(1, "a")])), ("10.0.0.3", PORT))
    assert a.core.held == 4  # b's three and c's one: d found no room
    # b verifies: its Join and its two latest pings are delivered, the Join answered in full.
    nonce = challenge[0].nonce  # type: ignore[union-attr]
    effects = net.inject(a, codec.seal(0, encode([ChallengeResponse(nonce)])), src)
    answered = [m for ms in sends(effects) for m in ms]
    assert any(isinstance(m, Sync) for m in answered)
    assert [m for m in answered if isinstance(m, PingAck)] == [PingAck(4), PingAck(5)]
    assert a.core.stats.accepted == 3
    assert a.core.held == 1


# --------------------------------------------------------------------------------------------
# Requests


def test_a_request_from_a_member_is_served_and_unknown_methods_are_refused() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    verify(net, a, codec, src)
    effects = net.inject(a, codec.seal(0, encode([Request(1, "agent.status", None)])), src)
    assert effects == [ServeRequest("b", src, Request(1, "agent.status", None))]
    assert a.core.handling == 1
    effects = net.inject(a, codec.seal(0, encode([Request(2, "nosuch", None)])), src)
    assert sends(effects) == [(Response(2, False, "unknown method 'nosuch'"),)]
    a.core.request_done(served=True)
    assert (a.core.handling, a.core.stats.requests_served) == (0, 1)
    assert a.core.stats.requests_rejected == 1


def test_requests_beyond_the_handling_limit_and_after_leaving_are_busy() -> None:
    net = SimNet()
    a = net.add("a", limits=LinkLimits(max_handling=2))
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    verify(net, a, codec, src)
    results = [
        net.inject(a, codec.seal(0, encode([Request(n, "agent.status", None)])), src)
        for n in (1, 2, 3)
    ]
    assert [type(r[0]) for r in results] == [ServeRequest, ServeRequest, SendTo]
    assert sends(results[2]) == [(Response(3, False, "busy: try again"),)]
    # The adapter could not run one (it is stopping): refuse frees its place.
    refused = a.core.refuse(results[1][0])  # type: ignore[arg-type]
    assert sends(refused) == [(Response(2, False, "busy: try again"),)]
    assert a.core.handling == 1
    a.core.membership.leave(net.now)
    effects = net.inject(a, codec.seal(0, encode([Request(4, "agent.status", None)])), src)
    assert sends(effects) == [(Response(4, False, "busy: try again"),)]
    assert a.core.stats.requests_rejected == 3


def test_a_response_completes_a_request_of_its_sender() -> None:
    net = SimNet()
    a = net.add("a")
    codec = ClusterCodec(CLUSTER, KEY, self_id="b", epoch=1)
    src = ("10.0.0.2", PORT)
    verify(net, a, codec, src)
    effects = net.inject(a, codec.seal(0, encode([Response(9, True, {"ok": 1})])), src)
    assert effects == [CompleteRequest("b", Response(9, True, {"ok": 1}))]


# --------------------------------------------------------------------------------------------
# Candidates and the seen table


def test_candidates_are_listed_as_seen_until_a_frame_of_theirs_is_accepted() -> None:
    net = SimNet()
    a, b = net.add("a"), net.add("b")
    net.discover(a, b)
    assert a.core.seen["b"].reason == "discovered; no authenticated frame from it yet"
    assert a.core.seen["b"].last_seen == net.now
    net.run_for(0.05)
    assert "b" not in a.core.seen


def test_observe_only_ipv6_and_our_own_candidates_are_not_dialled() -> None:
    net = SimNet()
    a = net.add("a")
    observer = Candidate(CLUSTER, "o", None, ("10.0.0.7",), PORT, "mdns", observe_only=True)
    v6 = Candidate(CLUSTER, "v6", None, ("fe80::1%eth0",), PORT, "mdns")
    me = Candidate(CLUSTER, "a", None, ("10.0.0.1",), PORT, "mdns")
    assert a.core.candidate(net.now, observer) == []
    assert a.core.candidate(net.now, v6) == []
    assert a.core.candidate(net.now, me) == []
    assert a.core.seen["o"].reason == "it has no key for the cluster (observe-only)"
    assert "v6" in a.core.seen
    assert "a" not in a.core.seen
    assert net.wire == []


def test_an_observe_only_link_lists_what_it_finds_with_the_reason() -> None:
    net = SimNet()
    a = net.add("a", key=None)
    found = Candidate(CLUSTER, None, None, ("10.0.0.5", "10.0.0.6"), PORT, "static")
    assert a.core.candidate(net.now, found) == []
    seen = a.core.seen["10.0.0.5,10.0.0.6"]
    assert seen.reason == "this device has no key for the cluster (observe-only)"


def test_the_seen_table_is_bounded_and_forgets_the_least_recently_seen() -> None:
    net = SimNet()
    a = net.add("a", limits=LinkLimits(max_seen=3))
    for n in range(5):
        net.now = float(n)
        candidate = Candidate(CLUSTER, f"d{n}", None, (f"fe80::{n + 1}",), PORT, "mdns")
        a.core.candidate(net.now, candidate)
    assert sorted(a.core.seen) == ["d2", "d3", "d4"]
    net.now = 9.0
    a.core.candidate(net.now, Candidate(CLUSTER, "d2", None, ("fe80::3",), PORT, "mdns"))
    a.core.candidate(net.now, Candidate(CLUSTER, "d9", None, ("fe80::9",), PORT, "mdns"))
    assert sorted(a.core.seen) == ["d2", "d4", "d9"]


# --------------------------------------------------------------------------------------------
# Counters


def test_counters_report_members_by_state_and_what_is_held() -> None:
    net = SimNet()
    a, b, c = net.add("a"), net.add("b"), net.add("c")
    net.discover(b, a)
    net.discover(c, a)
    net.run_for(3.0)
    c.down = True
    net.run_for(30.0)
    counters = a.core.counters()
    assert counters["members_alive"] == 1
    assert counters["members_dead"] == 1
    assert counters["members_suspect"] == counters["members_left"] == 0
    assert counters["datagrams"] == a.core.stats.datagrams > 0
    assert counters["held_frames"] == 0
    assert set(counters) >= {"accepted", "dropped_auth", "challenges_sent", "requests_handling"}
    assert [m for ms in net.sent(a, b) for m in ms if isinstance(m, Sync)]

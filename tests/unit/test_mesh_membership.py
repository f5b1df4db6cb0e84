"""The SWIM membership core, driven through a simulated network with simulated time."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.mesh.membership import (
    Effect,
    EventKind,
    MemberEvent,
    Membership,
    MemberState,
    Notify,
    SendTo,
    SwimTiming,
    suspicion_timeout,
)
from edgeagent.mesh.messages import (
    MAX_DATAGRAM_BODY,
    Join,
    Leave,
    MemberUpdate,
    Meta,
    MetaRequest,
    Ping,
    PingAck,
    PingReq,
    Sync,
    decode,
    encode,
)

PORT = 4370

# --------------------------------------------------------------------------------------------
# The simulator: delivers SendTo effects between Membership instances with latency, loss and
# partitions; every datagram goes through encode/decode as on the wire.


@dataclass
class SimNode:
    device_id: str
    ip: str
    membership: Membership
    crashed: bool = False
    late_by: float = 0.0  # timers fire this much late (a busy device)
    events: list[MemberEvent] = field(default_factory=list)


class SimNet:
    def __init__(
        self,
        seed: int = 1,
        *,
        loss: float = 0.0,
        latency: tuple[float, float] = (0.0005, 0.003),
        timing: SwimTiming | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.latency = latency
        self.timing = timing or SwimTiming()
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self.by_ip: dict[str, str] = {}
        self.cut: set[frozenset[str]] = set()  # pairs of device ids that cannot talk
        self.one_way: set[tuple[str, str]] = set()  # (from, to) dropped
        self._queue: list[tuple[float, int, str, str, tuple[str, int], bytes]] = []
        self._order = itertools.count()
        self.datagrams = 0
        self.largest_body = 0

    # -- building

    def add(
        self, device_id: str, *, meta: dict[str, object] | None = None, advertise: bool = True
    ) -> SimNode:
        ip = f"10.0.0.{len(self.nodes) + 1}"
        membership = Membership(
            device_id,
            f"host-{device_id}",
            PORT,
            timing=self.timing,
            rng=random.Random(f"{device_id}-{self.rng.random()}"),
            meta=meta if meta is not None else {"services": [device_id]},
            addresses=(ip,) if advertise else (),
        )
        node = SimNode(device_id, ip, membership)
        self.nodes[device_id] = node
        self.by_ip[ip] = device_id
        self._apply(node, membership.start(self.now))
        return node

    def cluster(self, n: int, *, settle: float = 5.0) -> list[SimNode]:
        """``n`` nodes; each discovers the first (a seed), as an mDNS browse would."""
        nodes = [self.add(f"n{i:02d}") for i in range(n)]
        for node in nodes[1:]:
            self.discover(node, nodes[0])
        self.run_for(settle)
        return nodes

    def discover(self, node: SimNode, other: SimNode, *, with_id: bool = False) -> None:
        effects = node.membership.discovered(
            self.now, [other.ip], PORT, other.device_id if with_id else None
        )
        self._apply(node, effects)

    def move(self, node: SimNode, new_ip: str) -> None:
        del self.by_ip[node.ip]
        node.ip = new_ip
        self.by_ip[new_ip] = node.device_id

    def crash(self, node: SimNode) -> None:
        node.crashed = True

    def partition(self, side_a: Iterable[SimNode], side_b: Iterable[SimNode]) -> None:
        b = list(side_b)
        for x in side_a:
            for y in b:
                self.cut.add(frozenset((x.device_id, y.device_id)))

    def heal(self) -> None:
        self.cut.clear()
        self.one_way.clear()

    # -- running

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, end: float) -> None:
        stuck = 0
        while True:
            timer_at, timer_node = math.inf, None
            for node in self.nodes.values():
                if node.crashed:
                    continue
                deadline = node.membership.next_deadline()
                if deadline is not None and deadline + node.late_by < timer_at:
                    timer_at, timer_node = deadline + node.late_by, node
            message_at = self._queue[0][0] if self._queue else math.inf
            at = min(timer_at, message_at)
            if at > end:
                self.now = end
                return
            stuck = stuck + 1 if at <= self.now else 0
            assert stuck < 10_000, "the core asks for a timer it never clears"
            self.now = max(self.now, at)
            if message_at <= timer_at:
                _, _, dest_ip, sender_id, src, body = heapq.heappop(self._queue)
                self._deliver(dest_ip, sender_id, src, body)
            elif timer_node is not None:
                self._apply(timer_node, timer_node.membership.on_timer(self.now))

    def _deliver(self, dest_ip: str, sender_id: str, src: tuple[str, int], body: bytes) -> None:
        dest_id = self.by_ip.get(dest_ip)
        if dest_id is None:
            return
        node = self.nodes[dest_id]
        if node.crashed:
            return
        for message in decode(body):
            self._apply(node, node.membership.on_message(self.now, sender_id, src, message))

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Notify):
                node.events.append(effect.event)
                continue
            body = encode(effect.messages)
            self.datagrams += 1
            self.largest_body = max(self.largest_body, len(body))
            dest_id = self.by_ip.get(effect.addr[0])
            if dest_id is not None and (
                frozenset((node.device_id, dest_id)) in self.cut
                or (node.device_id, dest_id) in self.one_way
            ):
                continue
            if self.rng.random() < self.loss:
                continue
            at = self.now + self.rng.uniform(*self.latency)
            heapq.heappush(
                self._queue,
                (at, next(self._order), effect.addr[0], node.device_id, (node.ip, PORT), body),
            )

    # -- looking

    def state(self, observer: SimNode, device_id: str) -> MemberState | None:
        view = observer.membership.member(device_id)
        return None if view is None else view.state

    def all_see(self, nodes: Iterable[SimNode], state: MemberState) -> bool:
        group = list(nodes)
        return all(self.state(a, b.device_id) is state for a in group for b in group if a is not b)

    def run_until_true(self, check: object, limit: float, step: float = 0.05) -> float:
        """Run until ``check()`` holds; the simulated time it took (fails past ``limit``)."""
        start = self.now
        while not check():  # type: ignore[operator]
            assert self.now - start < limit, f"not reached within {limit} s"
            self.run_for(step)
        return self.now - start


def kinds(node: SimNode, device_id: str) -> list[EventKind]:
    return [e.kind for e in node.events if e.device_id == device_id]


# --------------------------------------------------------------------------------------------
# Join


def test_two_members_join_within_a_round_trip_and_share_meta() -> None:
    net = SimNet()
    a, b = net.add("a", meta={"services": ["web"]}), net.add("b", meta={"roles": ["gw"]})
    net.discover(a, b)
    net.run_for(0.05)
    assert net.all_see([a, b], MemberState.ALIVE)
    assert kinds(a, "b") == [EventKind.JOINED, EventKind.UPDATED]
    assert a.membership.member("b").meta == {"roles": ["gw"]}  # type: ignore[union-attr]
    assert b.membership.member("a").meta == {"services": ["web"]}  # type: ignore[union-attr]
    view = a.membership.member("b")
    assert view is not None
    assert view.addresses[0] == b.ip
    assert view.port == PORT
    assert view.hostname == "host-b"


@pytest.mark.parametrize("n", [5, 20])
def test_n_members_join_through_one_seed_and_converge(n: int) -> None:
    net = SimNet(seed=n)
    nodes = [net.add(f"n{i:02d}") for i in range(n)]
    for node in nodes[1:]:
        net.discover(node, nodes[0])
    took = net.run_until_true(lambda: net.all_see(nodes, MemberState.ALIVE), limit=5.0)
    assert took < 3.0
    net.run_for(5)
    assert net.largest_body <= MAX_DATAGRAM_BODY
    for node in nodes:
        assert all(v.meta == {"services": [v.device_id]} for v in node.membership.members())


def test_members_that_do_not_know_their_own_addresses_are_reached_where_seen() -> None:
    net = SimNet(seed=12)
    nodes = [net.add(f"n{i}", advertise=False) for i in range(6)]
    for node in nodes[1:]:
        net.discover(node, nodes[0])
    net.run_until_true(lambda: net.all_see(nodes, MemberState.ALIVE), limit=5.0)
    net.run_for(20.0)
    assert net.all_see(nodes, MemberState.ALIVE)
    for x in nodes:
        for view in x.membership.members()[1:]:
            assert view.addresses[0] == net.nodes[view.device_id].ip


def test_unanswered_join_is_retried_with_backoff_then_dropped() -> None:
    timing = SwimTiming()
    m = Membership("a", "a", PORT, timing=timing, rng=random.Random(1), meta={})
    m.start(0.0)
    first = m.discovered(0.0, ["10.0.0.9"], PORT)
    assert any(isinstance(x, Join) for e in first if isinstance(e, SendTo) for x in e.messages)
    sends = []
    while (t := m.next_deadline() or 99.0) < 60:
        sends += [
            (t, e) for e in m.on_timer(t) if isinstance(e, SendTo) and e.addr == ("10.0.0.9", PORT)
        ]
    times = [round(s[0], 3) for s in sends]
    assert times == [1.0, 3.0, 7.0]


# --------------------------------------------------------------------------------------------
# Failure detection


@pytest.mark.parametrize("n", [5, 20])
def test_crashed_member_is_dead_everywhere_within_the_bound(n: int) -> None:
    net = SimNet(seed=100 + n)
    nodes = net.cluster(n, settle=10.0)
    assert net.all_see(nodes, MemberState.ALIVE)
    victim = nodes[n // 2]
    others = [x for x in nodes if x is not victim]
    net.crash(victim)
    crashed_at = net.now
    took = net.run_until_true(
        lambda: all(net.state(x, victim.device_id) is MemberState.DEAD for x in others),
        limit=60.0,
    )
    first_suspect = min(e.at for x in others for e in x.events if e.device_id == victim.device_id)
    detection = [
        next(e.at for e in x.events if e.device_id == victim.device_id and e.kind == "dead")
        - crashed_at
        for x in others
    ]
    # memberlist's minimum: a probe round to reach it, one probe interval to fail, then the
    # suspicion timeout; Lifeguard starts at 6x that and needs confirmations to come down.
    bound = suspicion_timeout(net.timing, n) + (n + 1) * net.timing.probe_interval + 1.0
    assert max(detection) <= bound, (detection, bound)
    assert first_suspect - crashed_at <= n * net.timing.probe_interval + 1.0
    assert took == pytest.approx(max(detection), abs=0.06)
    # no false verdicts about anyone else
    for x in others:
        assert all(
            e.kind not in (EventKind.DEAD, EventKind.SUSPECT)
            for e in x.events
            if e.device_id != victim.device_id
        )


def test_no_false_deaths_under_ten_percent_loss() -> None:
    net = SimNet(seed=7)
    nodes = net.cluster(10, settle=10.0)
    assert net.all_see(nodes, MemberState.ALIVE)
    net.loss = 0.10
    net.run_for(300.0)
    deaths = [(x.device_id, e) for x in nodes for e in x.events if e.kind == EventKind.DEAD]
    assert deaths == []
    net.loss = 0.0
    net.run_for(5.0)
    assert net.all_see(nodes, MemberState.ALIVE)


def test_suspected_member_refutes_with_a_higher_incarnation() -> None:
    net = SimNet(seed=3)
    nodes = net.cluster(4)
    a, b = nodes[0], nodes[1]
    # a hears (from c) that b is suspect; b hears it too and refutes.
    rumour = MemberUpdate("n01", MemberState.SUSPECT, 0, (b.ip,), PORT, 1, "host-n01", "n02")
    net._apply(a, a.membership.on_message(net.now, "n02", (nodes[2].ip, PORT), rumour))
    assert net.state(a, "n01") is MemberState.SUSPECT
    net.run_for(3.0)
    assert b.membership.incarnation == 1
    assert net.all_see(nodes, MemberState.ALIVE)
    assert kinds(a, "n01")[-2:] == [EventKind.SUSPECT, EventKind.ALIVE]
    assert all(e.kind != EventKind.DEAD for x in nodes for e in x.events)


def test_one_way_loss_makes_a_suspect_that_refutes_without_dying() -> None:
    net = SimNet(seed=4)
    nodes = net.cluster(5)
    a, b = nodes[0], nodes[1]
    net.one_way.update({(a.device_id, b.device_id), (b.device_id, a.device_id)})
    net.run_for(30.0)  # a cannot reach b directly; indirect probes through others still can
    assert net.state(a, b.device_id) is MemberState.ALIVE
    net.heal()
    net.run_for(5.0)
    assert net.all_see(nodes, MemberState.ALIVE)
    assert all(e.kind != EventKind.DEAD for x in nodes for e in x.events)


def test_partition_then_heal_rejoins_everyone() -> None:
    net = SimNet(seed=5)
    nodes = net.cluster(6, settle=8.0)
    left, right = nodes[:3], nodes[3:]
    net.partition(left, right)
    net.run_until_true(
        lambda: (
            all(net.state(x, y.device_id) is MemberState.DEAD for x in left for y in right)
            and all(net.state(y, x.device_id) is MemberState.DEAD for x in left for y in right)
        ),
        limit=60.0,
    )
    assert net.all_see(left, MemberState.ALIVE)
    assert net.all_see(right, MemberState.ALIVE)
    net.heal()
    took = net.run_until_true(lambda: net.all_see(nodes, MemberState.ALIVE), limit=40.0)
    assert took <= net.timing.rejoin_interval * 1.25 + 5.0
    for x in left:
        for y in right:
            assert kinds(x, y.device_id)[-1] == EventKind.ALIVE


def test_restarted_member_with_a_lower_incarnation_comes_back() -> None:
    net = SimNet(seed=6)
    nodes = net.cluster(4)
    victim = nodes[3]
    net.crash(victim)
    net.run_until_true(
        lambda: all(net.state(x, "n03") is MemberState.DEAD for x in nodes[:3]), limit=60
    )
    # a fresh process: incarnation 0 again, a new Membership, found by discovery
    del net.nodes["n03"]
    del net.by_ip[victim.ip]
    fresh = net.add("n03")
    net.discover(fresh, nodes[0])
    net.run_until_true(lambda: net.all_see([*nodes[:3], fresh], MemberState.ALIVE), limit=5)
    assert fresh.membership.incarnation >= 1
    assert kinds(nodes[0], "n03")[-1] == EventKind.ALIVE


# --------------------------------------------------------------------------------------------
# Identity, leave, metadata


def test_address_change_keeps_the_member() -> None:
    net = SimNet(seed=8)
    nodes = net.cluster(5)
    mover = nodes[2]
    net.move(mover, "10.0.9.99")
    net.run_for(30.0)
    for x in nodes:
        if x is mover:
            continue
        view = x.membership.member(mover.device_id)
        assert view is not None
        assert view.state is MemberState.ALIVE
        assert view.addresses[0] == "10.0.9.99"
        assert EventKind.DEAD not in kinds(x, mover.device_id)
        assert EventKind.JOINED not in kinds(x, mover.device_id)[1:]


def test_message_from_a_new_address_updates_it_without_a_state_change() -> None:
    m = joined_pair()
    effects = m.on_message(10.0, "b", ("10.0.0.77", PORT), Ping(1, "a"))
    view = m.member("b")
    assert view is not None
    assert view.addresses[0] == "10.0.0.77"
    assert view.state is MemberState.ALIVE
    events = [e.event for e in effects if isinstance(e, Notify)]
    assert [(e.kind, e.detail) for e in events] == [(EventKind.UPDATED, "address")]
    assert any(isinstance(e, SendTo) and e.addr == ("10.0.0.77", PORT) for e in effects)


def test_leave_is_seen_as_left_everywhere() -> None:
    net = SimNet(seed=9)
    nodes = net.cluster(6)
    leaver = nodes[4]
    net._apply(leaver, leaver.membership.leave(net.now))
    assert leaver.membership.next_deadline() is None
    net.run_for(2.0)
    for x in nodes:
        if x is not leaver:
            assert net.state(x, leaver.device_id) is MemberState.LEFT
            assert kinds(x, leaver.device_id)[-1] == EventKind.LEFT
    assert all(e.kind != EventKind.DEAD for x in nodes for e in x.events)


def test_left_member_is_reaped() -> None:
    timing = SwimTiming(reap_after=100.0)
    net = SimNet(seed=10, timing=timing)
    nodes = net.cluster(3)
    net._apply(nodes[2], nodes[2].membership.leave(net.now))
    net.crash(nodes[2])
    net.run_for(50.0)
    assert net.state(nodes[0], "n02") is MemberState.LEFT
    net.run_for(60.0)
    assert net.state(nodes[0], "n02") is None


def test_meta_change_spreads_as_updated() -> None:
    net = SimNet(seed=11)
    nodes = net.cluster(6)
    net._apply(nodes[3], nodes[3].membership.set_meta(net.now, {"offers": ["temperature"]}))
    net.run_for(3.0)
    for x in nodes:
        view = x.membership.member("n03")
        assert view is not None
        assert view.meta == {"offers": ["temperature"]}
        assert view.meta_version == 2
        if x is not nodes[3]:
            assert kinds(x, "n03")[-1] == EventKind.UPDATED


def test_meta_request_when_a_newer_version_is_heard() -> None:
    m = joined_pair()
    update = MemberUpdate("b", MemberState.ALIVE, 1, ("10.0.0.2",), PORT, 5, "b")
    m.on_message(5.0, "c", ("10.0.0.3", PORT), update)
    requests = [
        e for e in m.on_timer(5.0) if isinstance(e, SendTo) and MetaRequest("b") in e.messages
    ]
    assert requests
    assert requests[0].addr == ("10.0.0.2", PORT)
    effects = m.on_message(5.1, "b", ("10.0.0.2", PORT), Meta("b", 5, {"x": 1}))
    assert [e.event.kind for e in effects if isinstance(e, Notify)] == [EventKind.UPDATED]
    assert m.member("b").meta == {"x": 1}  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# Single-instance behaviour


def joined_pair(timing: SwimTiming | None = None) -> Membership:
    """``a`` with ``b`` (10.0.0.2) as an alive member, at t=0."""
    m = Membership("a", "a", PORT, timing=timing, rng=random.Random(2), meta={"m": 1})
    m.start(0.0)
    entry = MemberUpdate("b", MemberState.ALIVE, 0, ("10.0.0.2",), PORT, 0, "b")
    m.on_message(0.0, "b", ("10.0.0.2", PORT), Sync((entry,), False))
    return m


def test_messages_from_ourselves_are_ignored_and_rumours_about_us_refuted() -> None:
    m = joined_pair()
    assert m.on_message(1.0, "a", ("10.0.0.1", PORT), Leave(0)) == []
    for state in (MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT):
        before = m.incarnation
        rumour = MemberUpdate("a", state, before, (), PORT, 0, "a", "b")
        m.on_message(1.0, "b", ("10.0.0.2", PORT), rumour)
        assert m.incarnation == before + 1
        assert m.members()[0].state is MemberState.ALIVE
    # gossip now carries our refutation
    gossip = [
        x
        for e in m.on_timer(m.next_deadline() or 0.0)
        if isinstance(e, SendTo)
        for x in e.messages
        if isinstance(x, MemberUpdate) and x.device_id == "a"
    ]
    assert gossip
    assert gossip[0].state is MemberState.ALIVE
    assert gossip[0].incarnation == 3


def test_probe_sequence_ping_then_ping_req_then_suspect() -> None:
    m = joined_pair()
    helper = MemberUpdate("c", MemberState.ALIVE, 0, ("10.0.0.3",), PORT, 0, "c")
    m.on_message(0.0, "c", ("10.0.0.3", PORT), Sync((helper,), False))
    timeline: list[tuple[float, Effect]] = []
    t = 0.0
    while t < 4.0:
        deadline = m.next_deadline()
        assert deadline is not None
        t = deadline
        effects = m.on_timer(t)
        timeline += [(t, e) for e in effects]
        for e in effects:  # c answers everything; b is silent
            if (
                isinstance(e, SendTo)
                and isinstance(e.messages[0], Ping)
                and e.addr[0] == "10.0.0.3"
            ):
                m.on_message(t + 0.001, "c", e.addr, PingAck(e.messages[0].seq))
    pings = [
        (t, e)
        for t, e in timeline
        if isinstance(e, SendTo) and isinstance(e.messages[0], Ping) and e.addr[0] == "10.0.0.2"
    ]
    first_ping_at = pings[0][0]
    reqs = [
        (t, e)
        for t, e in timeline
        if isinstance(e, SendTo)
        and isinstance(e.messages[0], PingReq)
        and e.messages[0].target_id == "b"
    ]
    req_at, req = reqs[0]
    assert req.addr == ("10.0.0.3", PORT)  # the only other member helps
    assert req.messages[0] == PingReq(pings[0][1].messages[0].seq, "b", ("10.0.0.2", PORT))  # type: ignore[union-attr]
    assert req_at == pytest.approx(first_ping_at + 0.5)
    suspects = [
        (t, e.event)
        for t, e in timeline
        if isinstance(e, Notify) and e.event.kind == "suspect" and e.event.device_id == "b"
    ]
    assert suspects
    assert suspects[0][0] == pytest.approx(first_ping_at + 1.0)


def run_to_ping(m: Membership) -> tuple[float, Ping]:
    """Fire timers until ``m`` sends a probe; its time and the Ping."""
    while True:
        t = m.next_deadline()
        assert t is not None
        for e in m.on_timer(t):
            if isinstance(e, SendTo) and isinstance(e.messages[0], Ping):
                return t, e.messages[0]


def test_ack_ends_the_probe_and_measures_rtt() -> None:
    m = joined_pair()
    t, ping = run_to_ping(m)
    m.on_message(t + 0.02, "b", ("10.0.0.2", PORT), PingAck(ping.seq))
    view = m.member("b")
    assert view is not None
    assert view.rtt == pytest.approx(0.02)
    m.on_timer(t + 1.0)
    assert m.member("b").state is MemberState.ALIVE  # type: ignore[union-attr]


def test_local_health_stretches_probing_when_our_timer_runs_late() -> None:
    m = joined_pair()
    assert m.local_health == 0
    ping_times = []
    t = 0.0
    for _ in range(6):
        deadline = m.next_deadline()
        assert deadline is not None
        t = deadline + 2.0  # a busy device: every wake-up two seconds late
        for e in m.on_timer(t):
            if isinstance(e, SendTo):
                for x in e.messages:
                    if isinstance(x, Ping):
                        ping_times.append(t)
                        m.on_message(t + 0.001, "b", ("10.0.0.2", PORT), PingAck(x.seq))
    assert m.local_health >= 3
    assert m.member("b").state is MemberState.ALIVE  # type: ignore[union-attr]
    # the next probe interval is stretched by 1 + score
    before = m.local_health
    deadline = m.next_deadline()
    assert deadline is not None
    late = [e for e in m.on_timer(deadline) if isinstance(e, SendTo)]
    del late
    nxt = m.next_deadline()
    assert nxt is not None
    assert nxt - deadline >= (before) * m.timing.probe_interval * 0.5


def test_late_wake_up_gives_queued_acks_a_grace_period() -> None:
    m = joined_pair()
    t, ping = run_to_ping(m)
    # We sleep through the whole probe interval; the ack waits in the socket buffer.
    effects = m.on_timer(t + 5.0)
    assert not [e for e in effects if isinstance(e, Notify)]
    m.on_message(t + 5.001, "b", ("10.0.0.2", PORT), PingAck(ping.seq))
    assert m.member("b").state is MemberState.ALIVE  # type: ignore[union-attr]
    assert m.local_health >= 1


def test_suspicion_timeout_follows_memberlist_and_shrinks_with_confirmations() -> None:
    timing = SwimTiming()
    assert suspicion_timeout(timing, 5) == pytest.approx(4.0)
    assert suspicion_timeout(timing, 20) == pytest.approx(4 * math.log10(21))
    m = Membership("a", "a", PORT, timing=timing, rng=random.Random(1), meta={})
    m.start(0.0)
    peers = [f"p{i}" for i in range(6)]
    entries = tuple(
        MemberUpdate(p, MemberState.ALIVE, 0, (f"10.0.1.{i}",), PORT, 0, p)
        for i, p in enumerate(peers)
    )
    m.on_message(0.0, "p0", ("10.0.1.0", PORT), Sync(entries, False))
    n = m.alive_count()
    low = suspicion_timeout(timing, n)

    def suspect(by: str, at: float) -> None:
        rumour = MemberUpdate("p5", MemberState.SUSPECT, 0, ("10.0.1.5",), PORT, 0, "p5", by)
        m.on_message(at, by, ("10.0.1.0", PORT), rumour)

    suspect("p1", 10.0)
    assert m.member("p5").state is MemberState.SUSPECT  # type: ignore[union-attr]
    assert next_dead_at(m, "p5", until=10.9) is None
    suspect("p2", 11.0)  # one confirmation: max - (max - min) * log(2)/log(3) ~ 11.4 s
    assert next_dead_at(m, "p5", until=11.9) is None
    suspect("p3", 12.0)  # k = suspicion_mult - 2 = 2 confirmations: down to the minimum
    suspect("p3", 12.5)  # the same confirmer twice counts once
    assert next_dead_at(m, "p5", until=40.0) == pytest.approx(10.0 + low)


def test_a_lone_suspicion_waits_the_maximum() -> None:
    timing = SwimTiming()
    m = cluster_of(6)
    rumour = MemberUpdate("p5", MemberState.SUSPECT, 0, ("10.0.1.5",), PORT, 0, "p5", "p1")
    m.on_message(10.0, "p1", ("10.0.1.1", PORT), rumour)
    low = suspicion_timeout(timing, m.alive_count())
    assert next_dead_at(m, "p5", until=60.0) == pytest.approx(10.0 + 6 * low)


def next_dead_at(m: Membership, device_id: str, *, until: float) -> float | None:
    while True:
        deadline = m.next_deadline()
        if deadline is None or deadline > until:
            return None
        for e in m.on_timer(deadline):
            if isinstance(e, Notify) and e.event.kind == "dead" and e.event.device_id == device_id:
                return deadline
            if isinstance(e, SendTo):  # everyone answers our probes (an ack does not refute)
                for x in e.messages:
                    if isinstance(x, Ping):
                        m.on_message(deadline, x.target_id, e.addr, PingAck(x.seq))


@pytest.mark.parametrize(
    ("held", "update", "accepted"),
    [
        ((MemberState.ALIVE, 3), (MemberState.ALIVE, 3), False),
        ((MemberState.ALIVE, 3), (MemberState.ALIVE, 4), True),
        ((MemberState.SUSPECT, 3), (MemberState.ALIVE, 3), False),
        ((MemberState.SUSPECT, 3), (MemberState.ALIVE, 4), True),
        ((MemberState.ALIVE, 3), (MemberState.SUSPECT, 2), False),
        ((MemberState.ALIVE, 3), (MemberState.SUSPECT, 3), True),
        ((MemberState.ALIVE, 3), (MemberState.DEAD, 2), False),
        ((MemberState.ALIVE, 3), (MemberState.DEAD, 3), True),
        ((MemberState.SUSPECT, 3), (MemberState.DEAD, 3), True),
        ((MemberState.DEAD, 3), (MemberState.ALIVE, 3), False),
        ((MemberState.DEAD, 3), (MemberState.ALIVE, 4), True),
        ((MemberState.DEAD, 3), (MemberState.SUSPECT, 5), False),
        ((MemberState.ALIVE, 3), (MemberState.LEFT, 3), True),
        ((MemberState.LEFT, 3), (MemberState.ALIVE, 3), False),
        ((MemberState.LEFT, 3), (MemberState.DEAD, 3), False),
        ((MemberState.LEFT, 3), (MemberState.ALIVE, 4), True),
    ],
)
def test_incarnation_rules(
    held: tuple[MemberState, int], update: tuple[MemberState, int], accepted: bool
) -> None:
    m = joined_pair()
    ip = ("10.0.0.2",)
    m.on_message(
        0.0,
        "c",
        ("10.0.0.3", PORT),
        MemberUpdate("b", MemberState.ALIVE, held[1], ip, PORT, 0, "b"),
    )
    if held[0] is not MemberState.ALIVE:
        m.on_message(
            0.0, "c", ("10.0.0.3", PORT), MemberUpdate("b", held[0], held[1], ip, PORT, 0, "b", "c")
        )
    assert m.member("b").state is held[0]  # type: ignore[union-attr]
    m.on_message(
        1.0, "c", ("10.0.0.3", PORT), MemberUpdate("b", update[0], update[1], ip, PORT, 0, "b", "c")
    )
    view = m.member("b")
    assert view is not None
    assert (view.state, view.incarnation) == (update if accepted else held)


def test_full_state_never_kills() -> None:
    m = joined_pair()
    dead = MemberUpdate("b", MemberState.DEAD, 0, ("10.0.0.2",), PORT, 0, "b", "c")
    m.on_message(1.0, "c", ("10.0.0.3", PORT), Sync((dead,), False))
    assert m.member("b").state is MemberState.SUSPECT  # type: ignore[union-attr]


def test_peer_table_is_bounded() -> None:
    m = Membership("a", "a", PORT, rng=random.Random(1), meta={}, max_members=10)
    m.start(0.0)
    entries = tuple(
        MemberUpdate(f"p{i}", MemberState.ALIVE, 0, ("10.0.0.9",), PORT, 0, "") for i in range(30)
    )
    m.on_message(0.0, "p0", ("10.0.0.9", PORT), Sync(entries, False))
    assert len(m.members()) == 11  # us + 10


def test_sync_answers_are_cut_to_fit_a_datagram() -> None:
    m = Membership("a", "a", PORT, rng=random.Random(1), meta={"services": ["x" * 500]})
    m.start(0.0)
    entries = tuple(
        MemberUpdate(
            f"peer-{i:04d}",
            MemberState.ALIVE,
            i,
            (f"10.0.{i // 250}.{i % 250}",),
            PORT,
            1,
            f"host-{i}",
        )
        for i in range(200)
    )
    m.on_message(0.0, "peer-0000", ("10.0.0.0", PORT), Sync(entries, False))
    effects = m.on_message(0.1, "x", ("10.9.9.9", PORT), Join(0))
    bodies = [encode(e.messages) for e in effects if isinstance(e, SendTo)]
    assert len(bodies) > 10
    assert all(len(b) <= MAX_DATAGRAM_BODY for b in bodies)
    carried = {
        u.device_id
        for b in bodies
        for msg in decode(b)
        if isinstance(msg, Sync)
        for u in msg.members
    }
    assert len(carried) == 201


# --------------------------------------------------------------------------------------------
# Property: any sequence of inputs keeps the table consistent

PEERS = ["a", "b", "c", "d", "e"]  # "a" is us
EVENT_STATE = {
    EventKind.JOINED: MemberState.ALIVE,
    EventKind.ALIVE: MemberState.ALIVE,
    EventKind.SUSPECT: MemberState.SUSPECT,
    EventKind.DEAD: MemberState.DEAD,
    EventKind.LEFT: MemberState.LEFT,
}

peer_ids = st.sampled_from(PEERS)
member_updates = st.builds(
    MemberUpdate,
    device_id=peer_ids,
    state=st.sampled_from(MemberState),
    incarnation=st.integers(0, 6),
    addresses=st.sampled_from([(), ("10.0.0.2",), ("10.0.0.3", "fe80::1")]),
    port=st.sampled_from([PORT, 4371]),
    meta_version=st.integers(0, 3),
    hostname=st.sampled_from(["", "h1", "h2"]),
    by=st.sampled_from(["", *PEERS]),
)
inputs = st.one_of(
    st.tuples(st.just("msg"), peer_ids, st.sampled_from(["10.0.0.2", "10.0.0.3"]), member_updates),
    st.tuples(
        st.just("msg"),
        peer_ids,
        st.just("10.0.0.4"),
        st.one_of(
            st.builds(Sync, st.lists(member_updates, max_size=4).map(tuple), st.booleans()),
            st.builds(Join, st.integers(0, 3)),
            st.builds(Leave, st.integers(0, 6)),
            st.builds(Ping, st.integers(0, 5), peer_ids),
            st.builds(PingAck, st.integers(0, 20)),
            st.builds(PingReq, st.integers(0, 5), peer_ids, st.just(("10.0.0.5", PORT))),
            st.builds(MetaRequest, peer_ids),
            st.builds(Meta, peer_ids, st.integers(0, 4), st.just({"k": 1})),
        ),
    ),
    st.tuples(st.just("timer"), st.floats(0.0, 40.0)),
    st.tuples(st.just("discover"), st.sampled_from([None, *PEERS])),
    st.tuples(st.just("meta"), st.integers(0, 3)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(inputs, max_size=60))
def test_any_sequence_keeps_the_table_consistent(steps: list[tuple[object, ...]]) -> None:
    m = Membership(
        "a",
        "ha",
        PORT,
        timing=SwimTiming(reap_after=50.0),
        rng=random.Random(0),
        meta={},
        max_events=20,
    )
    now = 0.0
    m.start(now)
    incarnations: dict[str, int] = {}
    for step in steps:
        kind = step[0]
        if kind == "msg":
            _, sender, ip, message = step
            effects = m.on_message(now, sender, (ip, PORT), message)  # type: ignore[arg-type]
        elif kind == "timer":
            now += step[1]  # type: ignore[operator]
            deadline = m.next_deadline()
            assert deadline is not None
            effects = m.on_timer(now)
        elif kind == "discover":
            effects = m.discovered(now, ["10.0.0.6"], PORT, step[1])  # type: ignore[arg-type]
        else:
            effects = m.set_meta(now, {"v": step[1]})
        views = m.members()
        ids = [v.device_id for v in views]
        assert len(ids) == len(set(ids))
        assert views[0].device_id == "a"
        assert views[0].state is MemberState.ALIVE
        for v in views:
            assert v.incarnation >= incarnations.get(v.device_id, 0)
            incarnations[v.device_id] = v.incarnation
        assert len(m.events) <= 20
        by_id = {v.device_id: v for v in views}
        last: dict[str, MemberEvent] = {}
        for effect in effects:
            if isinstance(effect, Notify):
                assert effect.event.device_id != "a"
                assert effect.event.at == now
                last[effect.event.device_id] = effect.event
            else:
                body = encode(effect.messages)
                assert len(body) <= MAX_DATAGRAM_BODY
                assert decode(body) == list(effect.messages)
        for device_id, event in last.items():
            if event.kind in EVENT_STATE and device_id in by_id:
                assert by_id[device_id].state is EVENT_STATE[event.kind], (event, by_id[device_id])
        deadline = m.next_deadline()
        assert deadline is not None


def test_periodic_push_pull_asks_a_random_member_and_answers_carry_no_request() -> None:
    m = joined_pair()
    asked = []
    while (t := m.next_deadline() or 99.0) < 40.0:
        for e in m.on_timer(t):
            if isinstance(e, SendTo):
                m.on_message(t, "b", ("10.0.0.2", PORT), PingAck(getattr(e.messages[0], "seq", 0)))
                asked += [(t, x) for x in e.messages if isinstance(x, Sync) and x.reply]
    assert asked
    assert 30.0 * 0.75 <= asked[0][0] <= 30.0 * 1.25
    answer = m.on_message(41.0, "b", ("10.0.0.2", PORT), Sync((), True))
    syncs = [x for e in answer if isinstance(e, SendTo) for x in e.messages if isinstance(x, Sync)]
    assert syncs
    assert not any(s.reply for s in syncs)
    assert {u.device_id for s in syncs for u in s.members} == {"a", "b"}
    # a second request within a second is not answered again (no amplification)
    assert m.on_message(41.5, "b", ("10.0.0.2", PORT), Sync((), True)) == []


def test_dead_member_gets_joins_with_backoff_and_a_join_from_it_revives_it() -> None:
    m = joined_pair()
    m.on_message(
        1.0,
        "c",
        ("10.0.0.3", PORT),
        MemberUpdate("b", MemberState.SUSPECT, 0, (), PORT, 0, "b", "c"),
    )
    assert next_dead_at(m, "b", until=100.0) is not None
    attempts = []
    while (t := m.next_deadline() or 999.0) < 200.0:
        for e in m.on_timer(t):
            if (
                isinstance(e, SendTo)
                and e.addr == ("10.0.0.2", PORT)
                and any(isinstance(x, Join) for x in e.messages)
            ):
                attempts.append(t)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] == pytest.approx(10.0, rel=0.26)
    assert all(g <= 30.0 * 1.25 for g in gaps)
    assert gaps[-1] >= 30.0 * 0.75
    effects = m.on_message(201.0, "b", ("10.0.0.2", PORT), Join(0))
    assert [e.event.kind for e in effects if isinstance(e, Notify)] == [EventKind.ALIVE]
    assert m.member("b").state is MemberState.ALIVE  # type: ignore[union-attr]
    # it is told the incarnation we held it dead at, so it refutes above it
    notes = [
        x
        for e in effects
        if isinstance(e, SendTo)
        for x in e.messages
        if isinstance(x, MemberUpdate)
    ]
    assert MemberUpdate("b", MemberState.DEAD, 0, ("10.0.0.2",), PORT, 0, "b", "a") in notes


def test_gossip_carries_an_update_a_bounded_number_of_times() -> None:
    m = joined_pair()
    m.on_message(
        0.0,
        "c",
        ("10.0.0.3", PORT),
        MemberUpdate("c", MemberState.ALIVE, 0, ("10.0.0.3",), PORT, 0, "c"),
    )
    carried = 0
    while (t := m.next_deadline() or 99.0) < 20.0:
        for e in m.on_timer(t):
            if isinstance(e, SendTo):
                carried += sum(
                    1 for x in e.messages if isinstance(x, MemberUpdate) and x.device_id == "c"
                )
                if isinstance(e.messages[0], Ping):
                    m.on_message(t, e.messages[0].target_id, e.addr, PingAck(e.messages[0].seq))
    # retransmit_mult * ceil(log10(N + 1)) with N = 3
    assert carried == 4


def test_rediscovering_a_live_member_sends_nothing() -> None:
    m = joined_pair()
    assert m.discovered(1.0, ["10.0.0.2"], PORT, "b") == []
    assert m.discovered(1.0, ["10.0.0.2"], PORT) == []  # static peers come without an id
    assert m.discovered(1.0, ["10.0.0.1"], PORT, "a") == []  # ourselves
    assert m.discovered(1.0, ["10.0.0.8"], PORT)  # someone new


# --------------------------------------------------------------------------------------------
# Helping a suspect refute (our additions to memberlist, see the module docstring)


def cluster_of(peers: int) -> Membership:
    """``a`` with alive members p0..p{peers-1} at 10.0.1.i, at t=0."""
    m = Membership("a", "a", PORT, rng=random.Random(5), meta={})
    m.start(0.0)
    entries = tuple(
        MemberUpdate(f"p{i}", MemberState.ALIVE, 0, (f"10.0.1.{i}",), PORT, 0, f"p{i}")
        for i in range(peers)
    )
    m.on_message(0.0, "p0", ("10.0.1.0", PORT), Sync(entries, False))
    return m


def direct_updates(effects: list[Effect], device_id: str) -> list[tuple[str, MemberUpdate]]:
    """(destination ip, update) for every update about ``device_id`` sent on its own."""
    return [
        (e.addr[0], x)
        for e in effects
        if isinstance(e, SendTo) and len(e.messages) == 1
        for x in e.messages
        if isinstance(x, MemberUpdate) and x.device_id == device_id
    ]


def test_the_member_we_start_to_suspect_is_told_directly() -> None:
    m = joined_pair(SwimTiming(gossip_fanout=0))  # no gossip rounds: only the direct word
    effects: list[Effect] = []
    t = 0.0
    while m.member("b").state is MemberState.ALIVE:  # type: ignore[union-attr]
        t = m.next_deadline() or t
        effects = m.on_timer(t)  # b never answers
    # in the same step that makes it a suspect, not at the next gossip round
    assert any(isinstance(e, Notify) and e.event.kind == "suspect" for e in effects)
    told = direct_updates(effects, "b")
    assert ("10.0.0.2", MemberState.SUSPECT, "a") in [(ip, u.state, u.by) for ip, u in told]


def test_a_refutation_goes_straight_to_every_live_member() -> None:
    m = cluster_of(6)
    rumour = MemberUpdate("a", MemberState.SUSPECT, 0, (), PORT, 0, "a", "p1")
    effects = m.on_message(1.0, "p1", ("10.0.1.1", PORT), rumour)
    told = direct_updates(effects, "a")
    assert sorted(ip for ip, _ in told) == [f"10.0.1.{i}" for i in range(6)]
    assert all(u.state is MemberState.ALIVE and u.incarnation == 1 for _, u in told)
    # hearing that we are alive with a newer incarnation (a restart) is gossiped, not broadcast
    newer = MemberUpdate("a", MemberState.ALIVE, 5, (), PORT, 0, "a")
    assert direct_updates(m.on_message(2.0, "p1", ("10.0.1.1", PORT), newer), "a") == []


def test_a_member_suspected_by_another_is_probed_next() -> None:
    m = cluster_of(8)
    t, ping = run_to_ping(m)  # one ordinary probe, answered
    m.on_message(t + 0.001, ping.target_id, ("10.0.1.0", PORT), PingAck(ping.seq))
    suspect = next(f"p{i}" for i in range(8) if f"p{i}" != ping.target_id)
    rumour = MemberUpdate(suspect, MemberState.SUSPECT, 0, (), PORT, 0, suspect, "p9")
    m.on_message(t + 0.1, "p9", ("10.0.1.9", PORT), rumour)
    _, next_ping = run_to_ping(m)
    assert next_ping.target_id == suspect


def test_a_suspect_that_answers_our_probe_hears_of_the_suspicion() -> None:
    m = cluster_of(3)
    rumour = MemberUpdate("p2", MemberState.SUSPECT, 0, ("10.0.1.2",), PORT, 0, "p2", "p1")
    m.on_message(0.5, "p1", ("10.0.1.1", PORT), rumour)
    t, ping = run_to_ping(m)
    assert ping.target_id == "p2"
    effects = m.on_message(t + 0.01, "p2", ("10.0.1.2", PORT), PingAck(ping.seq))
    told = direct_updates(effects, "p2")
    assert [(ip, u.state) for ip, u in told] == [("10.0.1.2", MemberState.SUSPECT)]


@pytest.mark.parametrize("n", [5, 20])
def test_at_half_second_probing_a_crash_is_dead_faster_than_memberlists_formula(n: int) -> None:
    timing = SwimTiming(probe_interval=0.5, probe_timeout=0.25)
    memberlist = 1.0 * (1 + 4 * math.log10(n + 1))  # its LAN defaults, best case
    took = []
    for seed in range(5):
        net = SimNet(seed=300 + seed, timing=timing)
        nodes = net.cluster(n, settle=10.0)
        victim = nodes[1]
        others = [x for x in nodes if x is not victim]
        net.crash(victim)
        took.append(
            net.run_until_true(
                lambda net=net, others=others, victim=victim: all(
                    net.state(x, victim.device_id) is MemberState.DEAD for x in others
                ),
                limit=30.0,
            )
        )
    assert sorted(took)[len(took) // 2] < memberlist, took


def test_no_false_deaths_under_ten_percent_loss_at_half_second_probing() -> None:
    net = SimNet(seed=11, timing=SwimTiming(probe_interval=0.5, probe_timeout=0.25))
    nodes = net.cluster(10, settle=10.0)
    net.loss = 0.10
    net.run_for(600.0)
    assert [e for x in nodes for e in x.events if e.kind == EventKind.DEAD] == []
    assert [e for x in nodes for e in x.events if e.kind == EventKind.SUSPECT]  # it was tested


# --------------------------------------------------------------------------------------------
# Joins when everyone discovers everyone (mDNS): a few joins, gossip does the rest


def joins_in(effects: list[Effect]) -> list[tuple[str, int]]:
    return [
        e.addr
        for e in effects
        if isinstance(e, SendTo) and any(isinstance(x, Join) for x in e.messages)
    ]


def test_a_fresh_device_joins_a_few_discovered_devices_and_defers_the_rest() -> None:
    m = Membership("a", "a", PORT, rng=random.Random(3), meta={})
    m.start(0.0)
    sent = []
    for i in range(10):
        sent += joins_in(m.discovered(0.1, [f"10.0.2.{i}"], PORT, f"d{i}"))
    assert sent == [("10.0.2.0", PORT), ("10.0.2.1", PORT), ("10.0.2.2", PORT)]
    # d0 answers with the whole cluster: d3..d8 are introduced, d9 is not
    entries = tuple(
        MemberUpdate(f"d{i}", MemberState.ALIVE, 0, (f"10.0.2.{i}",), PORT, 0, f"d{i}")
        for i in range(9)
    )
    m.on_message(0.2, "d0", ("10.0.2.0", PORT), Sync(entries, False))
    later: list[tuple[str, int]] = []
    t = 0.2
    while t < 2.5:
        t = m.next_deadline() or 2.5
        later += joins_in(m.on_timer(t))
    joined_late = {addr for addr in later if addr[0] not in ("10.0.2.1", "10.0.2.2")}
    assert joined_late == {("10.0.2.9", PORT)}


def test_a_device_discovered_by_a_member_is_joined_only_if_gossip_does_not_bring_it() -> None:
    m = cluster_of(2)
    assert joins_in(m.discovered(1.0, ["10.0.1.7"], PORT, "p7")) == []
    assert joins_in(m.discovered(1.0, ["10.0.1.8"], PORT, "p8")) == []
    news = MemberUpdate("p7", MemberState.ALIVE, 0, ("10.0.1.7",), PORT, 0, "p7")
    m.on_message(1.5, "p0", ("10.0.1.0", PORT), news)  # gossip introduces p7
    joins: list[tuple[str, int]] = []
    t = 1.0
    while t < 3.5:
        t = m.next_deadline() or 3.5
        joins += [a for a in joins_in(m.on_timer(t)) if a[0] in ("10.0.1.7", "10.0.1.8")]
    assert set(joins) == {("10.0.1.8", PORT)}  # (retried: nobody answers here)


def test_fifty_devices_discovering_each_other_converge_with_few_joins() -> None:
    net = SimNet(seed=21)
    nodes = [net.add(f"n{i:02d}") for i in range(50)]
    sent_joins = 0
    original = net._apply

    def counting(node: SimNode, effects: list[Effect]) -> None:
        nonlocal sent_joins
        sent_joins += len(joins_in(effects))
        original(node, effects)

    net._apply = counting  # type: ignore[method-assign]
    # mDNS: every device sees every other's announcement, in a random order, within 0.5 s
    pairs = [(a, b) for a in nodes for b in nodes if a is not b]
    net.rng.shuffle(pairs)
    for a, b in pairs:
        net.discover(a, b, with_id=True)
        net.run_for(0.5 / len(pairs))
    took = net.run_until_true(lambda: net.all_see(nodes, MemberState.ALIVE), limit=10.0)
    assert took < 3.0
    assert sent_joins < 50 * 6, sent_joins  # everyone joining everyone would be 2,450


def test_a_device_starved_of_cpu_gives_a_suspect_longer() -> None:
    timing = SwimTiming()
    m = cluster_of(6)
    deadline = m.next_deadline()
    assert deadline is not None
    m.on_timer(deadline + 3.0)  # we slept through three probe intervals: local health rises
    health = m.local_health
    assert health >= 3
    rumour = MemberUpdate("p5", MemberState.SUSPECT, 0, ("10.0.1.5",), PORT, 0, "p5", "p1")
    m.on_message(10.0, "p1", ("10.0.1.1", PORT), rumour)
    low = suspicion_timeout(timing, m.alive_count())
    assert next_dead_at(m, "p5", until=200.0) == pytest.approx(10.0 + 6 * low * (1 + health))

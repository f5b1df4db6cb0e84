"""The reactor dispatch core, driven with plain values and a simulated clock: routes, checks,
admission under each overflow policy, queue pressure, the effect marks and what a replay runs
again, restart backoff and give-up, and the timer queue. Nothing here starts a loop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.config.model import Overflow
from edgeagent.errors import CapabilityDenied, IntentError, LifecycleError, PayloadError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.dispatch import (
    PRESSURE_HIGH,
    Admission,
    Delivery,
    Denial,
    Dispatcher,
    EffectMarks,
    Mailbox,
    ReactorSlot,
    Receipt,
    Rerun,
    RestartBudget,
    RestartPolicy,
    TimerQueue,
    handed_off,
)
from edgeagent.reactors.lifecycle import LifecycleState
from edgeagent.reactors.model import CancelTimer, Emit, Forward, Log, SerialWrite, SetTimer
from edgeagent.reactors.schema import Field, Schema

COUNTER_VERBS = {"increment": Schema((Field("by", "int", default=1),)), "reset": Schema()}
SENSOR_VERBS = {"reading": Schema((Field("value", "number", required=True),))}
POLICY = Policy.build(
    {"admin": ["counter:*", "alarm:*"]},
    {"cli": ["admin"], "guest": ["counter:read"], "mqtt:sensors": ["counter:feed"]},
)


DEFAULT_RESTART = RestartPolicy()


class SimClock:
    """Simulated time: only ``advance`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def slot(
    reactor_id: str = "counter",
    verbs: Any = None,
    *,
    size: int = 4,
    overflow: Overflow = "block",
    requires: Iterable[tuple[str, tuple[str, ...]]] = (),
    subscribe: Iterable[tuple[str, str]] = (),
    restart: RestartPolicy = DEFAULT_RESTART,
    running: bool = True,
) -> ReactorSlot[str]:
    made: ReactorSlot[str] = ReactorSlot(
        reactor_id,
        COUNTER_VERBS if verbs is None else verbs,
        requires=dict(requires),
        subscribe=dict(subscribe),
        mailbox=Mailbox(size, overflow),
        restart=restart,
    )
    if running:
        made.lifecycle = LifecycleState.RUNNING
    return made


def deployed(*slots: ReactorSlot[str], policy: Policy = POLICY) -> Dispatcher[ReactorSlot[str]]:
    dispatcher = Dispatcher(policy, slots)
    for each in slots:
        dispatcher.open_routes(each)
    return dispatcher


def ids(targets: Iterable[tuple[ReactorSlot[str], str]]) -> list[str]:
    return [f"{s.id}.{verb}" for s, verb in targets]


# -- routes ----------------------------------------------------------------------------------------


def test_routes_go_to_own_verbs_and_to_every_subscriber() -> None:
    counter = slot(subscribe=[("sensor.temp", "increment")])
    alarm = slot("alarm", SENSOR_VERBS, subscribe=[("sensor.temp", "reading")])
    dispatcher = deployed(counter, alarm)
    assert ids(dispatcher.route("counter.reset")) == ["counter.reset"]
    assert ids(dispatcher.route("sensor.temp")) == ["counter.increment", "alarm.reading"]
    assert dispatcher.routes() == {
        "alarm.reading": ["alarm.reading"],
        "counter.increment": ["counter.increment"],
        "counter.reset": ["counter.reset"],
        "sensor.temp": ["counter.increment", "alarm.reading"],
    }


def test_a_name_without_a_route_is_refused_saying_why() -> None:
    counter = slot()
    idle = slot("idle", running=False)
    dispatcher = Dispatcher(POLICY, [counter, idle])
    with pytest.raises(IntentError, match=r"no reactor takes 'lamp\.on'; known intents: none"):
        dispatcher.route("lamp.on")
    dispatcher.open_routes(counter)
    with pytest.raises(IntentError) as no_verb:
        dispatcher.route("counter.incr")
    assert str(no_verb.value) == "reactor 'counter' has no verb 'incr'; verbs: increment, reset"
    with pytest.raises(IntentError) as not_deployed:
        dispatcher.route("idle.reset")
    assert str(not_deployed.value) == (
        "reactor 'idle' is undeployed; start it with `edgeagent reactors start idle`"
    )
    with pytest.raises(IntentError, match=r"known intents: counter\.increment, counter\.reset"):
        dispatcher.route("lamp.on")


def test_closing_a_reactors_routes_leaves_the_others() -> None:
    counter = slot(subscribe=[("sensor.temp", "increment")])
    alarm = slot("alarm", SENSOR_VERBS, subscribe=[("sensor.temp", "reading")])
    dispatcher = deployed(counter, alarm)
    dispatcher.close_routes(counter)
    assert dispatcher.routes() == {
        "alarm.reading": ["alarm.reading"],
        "sensor.temp": ["alarm.reading"],
    }
    dispatcher.open_routes(counter)
    dispatcher.open_routes(counter)  # opening again does not route twice
    assert ids(dispatcher.route("sensor.temp")) == ["alarm.reading", "counter.increment"]


def test_an_unknown_reactor_id_lists_the_known_ones() -> None:
    dispatcher = Dispatcher(POLICY, [slot(), slot("alarm", SENSOR_VERBS)])
    with pytest.raises(LifecycleError, match=r"no reactor 'nope'; reactors: alarm, counter"):
        dispatcher.slot("nope")
    assert [s.id for s in dispatcher.slots] == ["counter", "alarm"]


# -- checks ----------------------------------------------------------------------------------------


def check(
    dispatcher: Dispatcher[ReactorSlot[str]],
    name: str,
    payload: dict[str, Any] | None = None,
    principal: str = "cli",
    sender: str | None = None,
) -> list[tuple[ReactorSlot[str], str, dict[str, Any]]]:
    targets = dispatcher.route(name)
    return dispatcher.check(
        name, targets, payload or {}, principal=principal, sender=sender, trace="t" * 16
    )


def test_the_sender_must_hold_what_each_target_requires() -> None:
    counter = slot(requires=[("counter.increment", ("counter:write",))])
    dispatcher = deployed(counter)
    ((target, verb, checked),) = check(dispatcher, "counter.increment")
    assert (target, verb, checked) == (counter, "increment", {"by": 1})  # default filled in
    with pytest.raises(Denial) as denied:
        check(dispatcher, "counter.increment", principal="guest")
    assert isinstance(denied.value, CapabilityDenied)
    assert denied.value.trace == "t" * 16
    assert "counter:write" in denied.value.reason
    # Not configured: the implicit <id>:<verb>.
    with pytest.raises(Denial, match="counter:reset"):
        check(dispatcher, "counter.reset", principal="guest")


def test_a_reactor_addressing_its_own_verbs_is_not_checked() -> None:
    dispatcher = deployed(slot())
    assert check(dispatcher, "counter.reset", principal="reactor:counter", sender="counter")
    with pytest.raises(Denial):
        check(dispatcher, "counter.reset", principal="reactor:beat", sender="beat")


def test_one_refused_target_refuses_the_intent_for_all() -> None:
    counter = slot(
        subscribe=[("sensor.temp", "increment")], requires=[("sensor.temp", ("counter:feed",))]
    )
    alarm = slot("alarm", SENSOR_VERBS, subscribe=[("sensor.temp", "reading")])
    dispatcher = deployed(counter, alarm)
    with pytest.raises(Denial, match="alarm:reading"):  # holds counter:feed, not alarm:reading
        check(dispatcher, "sensor.temp", {}, principal="mqtt:sensors")
    with pytest.raises(PayloadError) as invalid:  # counter passes; alarm's schema refuses
        check(dispatcher, "sensor.temp", {"by": 2})
    assert invalid.value.field == "by"


def test_only_a_running_reactor_takes_intents() -> None:
    counter = slot()
    dispatcher = deployed(counter)
    counter.lifecycle = LifecycleState.STOPPED
    with pytest.raises(IntentError, match="'counter' is stopped; start it with"):
        check(dispatcher, "counter.reset")
    counter.lifecycle = LifecycleState.FAILED
    counter.last_error = "counter.reset (seq 3): RuntimeError('boom')"
    with pytest.raises(IntentError, match=r"is failed \(counter\.reset \(seq 3\): Runtime"):
        check(dispatcher, "counter.reset")


def test_the_payload_is_checked_against_the_verbs_schema() -> None:
    dispatcher = deployed(slot())
    with pytest.raises(PayloadError) as invalid:
        check(dispatcher, "counter.increment", {"by": "x"})
    assert invalid.value.field == "by"
    assert check(dispatcher, "counter.increment", {"by": 5})[0][2] == {"by": 5}


def test_a_receipt_as_json() -> None:
    receipt = Receipt("a.b", "t1", (Delivery("a", 3), Delivery("c", 4, duplicate=True)))
    assert receipt.as_json() == {
        "accepted": True,
        "intent": "a.b",
        "trace_id": "t1",
        "deliveries": [
            {"reactor": "a", "seq": 3, "duplicate": False},
            {"reactor": "c", "seq": 4, "duplicate": True},
        ],
    }


# -- admission -------------------------------------------------------------------------------------


@pytest.mark.parametrize("overflow", ["reject", "drop-oldest", "block"])
def test_a_full_mailbox_applies_its_policy(overflow: Overflow) -> None:
    box: Mailbox[str] = Mailbox(4, overflow)
    offered = [box.offer(f"i{n}") for n in range(7)]
    assert [o.admission for o in offered[:4]] == [Admission.QUEUED] * 4
    late = [o.admission for o in offered[4:]]
    if overflow == "reject":
        assert late == [Admission.REJECTED] * 3
        assert list(box.waiting) == ["i0", "i1", "i2", "i3"]
        assert box.stats.rejected_full == 3
    elif overflow == "drop-oldest":
        assert late == [Admission.DROPPED] * 3
        assert [o.dropped for o in offered[4:]] == ["i0", "i1", "i2"]  # the oldest made room
        assert list(box.waiting) == ["i3", "i4", "i5", "i6"]
        assert box.stats.dropped == 3
    else:
        assert late == [Admission.BLOCKED] * 3
        assert list(box.blocked) == ["i4", "i5", "i6"]
        assert box.stats.blocked == 3
        taken = box.take(2)
        assert taken.batch == ["i0", "i1"]
        assert taken.moved == 2  # parked intents move in, oldest first
        assert list(box.waiting) == ["i2", "i3", "i4", "i5"]
        assert list(box.blocked) == ["i6"]
        assert box.offer("i7").admission is Admission.BLOCKED  # behind i6, never ahead of it
    assert len(box) == 4
    assert box.stats.peak == 4


def test_queue_pressure_is_raised_high_and_cleared_low() -> None:
    box: Mailbox[int] = Mailbox(10, "reject")
    raised = [box.offer(n).pressure for n in range(10)]
    assert raised == [None] * 7 + [8, None, None]  # 8 of 10 is PRESSURE_HIGH
    assert PRESSURE_HIGH == 0.8
    assert box.take(3).relieved is None  # 7 waiting: still above half
    assert box.offer(10).pressure is None  # already raised: said once
    relieved = box.take(3)
    assert relieved.relieved == 5  # down to half
    assert not box.pressure
    assert [box.offer(n).pressure for n in range(3)] == [None, None, 8]  # raised again


def test_pressure_raised_by_parked_intents_moving_in() -> None:
    box: Mailbox[int] = Mailbox(10, "block")
    for n in range(10):
        box.offer(n)
    box.pressure = False  # as if it had cleared meanwhile
    for n in range(10, 19):
        box.offer(n)
    taken = box.take(10)
    assert (taken.moved, taken.pressure, taken.relieved) == (9, 8, None)
    assert taken.batch == list(range(10))


def test_clearing_a_mailbox_gives_the_waiting_then_the_parked() -> None:
    box: Mailbox[str] = Mailbox(2, "block")
    for item in "abcd":
        box.offer(item)
    assert box.clear() == ["a", "b", "c", "d"]
    assert (len(box.waiting), len(box.blocked)) == (0, 0)
    assert box.document() == {
        "size": 2,
        "overflow": "block",
        "waiting": 0,
        "blocked_senders": 0,
        "admitted": 2,
        "rejected_full": 0,
        "dropped": 0,
        "blocked": 2,
        "peak": 2,
    }


@settings(max_examples=150)
@given(
    overflow=st.sampled_from(["reject", "drop-oldest", "block"]),
    size=st.integers(1, 6),
    ops=st.lists(st.one_of(st.just(0), st.integers(1, 4)), max_size=60),
)
def test_a_mailbox_loses_nothing_and_keeps_its_order(
    overflow: Overflow, size: int, ops: list[int]
) -> None:
    """0 offers the next intent, n takes a batch of up to n. Every intent ends up exactly once
    taken, waiting, parked, rejected or dropped; intents are taken in the order offered."""
    box: Mailbox[int] = Mailbox(size, overflow)
    taken: list[int] = []
    refused: list[int] = []
    offered = 0
    for op in ops:
        if op == 0:
            result = box.offer(offered)
            if result.admission is Admission.REJECTED:
                refused.append(offered)
            if result.dropped is not None:
                refused.append(result.dropped)
            offered += 1
        else:
            taken.extend(box.take(op).batch)
        assert len(box.waiting) <= size
        assert not box.blocked or overflow == "block"
    left = [*box.waiting, *box.blocked]
    assert sorted(taken + left + refused) == list(range(offered))
    assert taken + left == sorted(taken + left)  # FIFO: nothing overtakes
    stats = box.stats
    assert stats.admitted == len(taken) + len(box.waiting) + stats.dropped
    assert stats.rejected_full + stats.dropped == len(refused)


# -- effect marks ----------------------------------------------------------------------------------


def test_without_handoffs_both_marks_follow_what_ran() -> None:
    marks = EffectMarks()
    assert marks.due() is None
    marks.ran_through(3)
    assert marks.due() == (3, 3)
    marks.written(3, 3)
    assert marks.due() is None  # nothing new: nothing to write
    marks.ran_through(5)
    assert marks.due() == (5, 5)


def test_a_handoff_in_flight_holds_back_only_the_handoffs_mark() -> None:
    marks = EffectMarks()
    marks.handing_off(2)
    marks.handing_off(3)
    marks.handing_off(3)
    assert marks.in_flight == 3
    marks.ran_through(4)
    assert marks.due() == (4, 1)  # below the lowest intent with a handoff in flight
    marks.written(4, 1)
    marks.handoff_finished(3)
    assert marks.due() is None  # seq 2 still holds it
    marks.handoff_finished(2)
    assert marks.due() == (4, 2)  # seq 3 has one left
    marks.handoff_finished(3)
    assert marks.due() == (4, 4)
    assert marks.in_flight == 0


def test_marks_never_move_back() -> None:
    marks = EffectMarks()
    marks.written(7, 5)
    marks.written(3, 6)
    assert (marks.effects_written, marks.handoffs_written) == (7, 6)
    marks.ran_through(6)
    assert marks.due() is None  # behind what is written already


def test_a_recovery_reruns_each_effect_above_the_mark_that_covers_it() -> None:
    marks = EffectMarks()
    rerun = marks.recovered(5, 3)  # a serial write ran up to 5, a forward finished up to 3
    assert rerun == Rerun(effects=5, handoffs=3, settled=3)
    assert (marks.effects_written, marks.handoffs_written) == (5, 3)
    effects = [Forward("rb", "x.y"), SerialWrite("/dev/ttyX", b"1\n"), Emit(".tick")]
    assert rerun.again(3, effects) == []
    assert rerun.again(4, effects) == [(0, effects[0]), (2, effects[2])]
    assert rerun.again(6, effects) == list(enumerate(effects))


def test_a_recovery_in_process_does_not_rerun_what_this_process_ran() -> None:
    marks = EffectMarks()
    marks.handing_off(2)  # still in flight: it will finish in this process
    marks.ran_through(4)
    assert marks.recovered(2, 0) == Rerun(effects=4, handoffs=4, settled=4)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.sampled_from(["apply", "finish", "write"]), st.integers(0, 3))))
def test_the_handoffs_mark_never_passes_an_unfinished_handoff(
    steps: list[tuple[str, int]],
) -> None:
    """As the runtime drives it: "apply" n runs the next intent, handing off n of its effects
    first; "finish" ends one handoff in flight; "write" writes what is due."""
    marks = EffectMarks()
    seq = 0
    in_flight: list[int] = []
    written = (0, 0)
    for step, pick in steps:
        if step == "apply":
            seq += 1
            for _ in range(pick):
                marks.handing_off(seq)
                in_flight.append(seq)
            marks.ran_through(seq)
        elif step == "finish" and in_flight:
            marks.handoff_finished(in_flight.pop(pick % len(in_flight)))
        elif step == "write":
            due = marks.due()
            if due is not None:
                marks.written(*due)
                assert due[0] >= written[0]
                assert due[1] >= written[1]
                written = due
        assert marks.handoffs_written < min(in_flight, default=seq + 1)
        assert marks.effects_written <= seq
        assert marks.in_flight == len(in_flight)
    if not in_flight:
        assert marks.due() in (None, (seq, seq))


def test_which_effects_are_handed_off() -> None:
    assert handed_off(Emit("a.b"))
    assert handed_off(Forward("rb", "a.b"))
    for effect in (
        SetTimer("t", 1, ".x"),
        CancelTimer("t"),
        SerialWrite("/d", b""),
        Log("info", ""),
    ):
        assert not handed_off(effect)


# -- restarts --------------------------------------------------------------------------------------


def test_restarts_back_off_exponentially_up_to_the_cap() -> None:
    clock = SimClock()
    budget = RestartBudget(RestartPolicy(first_backoff=0.1, max_backoff=0.5, max_restarts=5))
    delays = []
    for _ in range(5):
        delays.append(budget.crashed(clock.advance(1.0)).delay)
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    verdict = budget.crashed(clock.advance(1.0))  # a sixth within the minute
    assert (verdict.crashes, verdict.delay) == (6, None)


def test_crashes_older_than_the_window_are_forgotten() -> None:
    clock = SimClock()
    budget = RestartBudget(RestartPolicy(max_restarts=2, restart_window=10.0))
    assert budget.crashed(clock.now).delay == 0.1
    assert budget.crashed(clock.advance(5)).delay == 0.2
    assert budget.crashed(clock.advance(4)).delay is None  # three within 10 s: give up
    verdict = budget.crashed(clock.advance(30))  # the earlier ones are outside the window now
    assert (verdict.crashes, verdict.delay) == (1, 0.1)
    assert len(budget) == 1


def test_an_operator_start_gives_a_new_budget() -> None:
    clock = SimClock()
    budget = RestartBudget(RestartPolicy(max_restarts=0))
    assert budget.crashed(clock.now).delay is None
    budget.reset()
    assert len(budget) == 0


@pytest.mark.parametrize(("every", "gives_up_at"), [(31.0, None), (10.0, 3)])
def test_a_reactor_crashing_on_a_schedule_for_an_hour(
    every: float, gives_up_at: int | None
) -> None:
    """A handler that raises every ``every`` seconds, restarted as the runtime restarts it:
    with at most two crashes in any minute it runs forever; faster, it is given up on."""
    clock = SimClock()
    budget = RestartBudget(RestartPolicy(max_restarts=2, restart_window=60.0))
    crashes = 0
    while clock.now < 1000.0 + 3600.0:
        crashes += 1
        verdict = budget.crashed(clock.now)
        if verdict.delay is None:
            break
        assert verdict.delay <= 0.2
        clock.advance(verdict.delay + every)
    assert (crashes if verdict.delay is None else None) == gives_up_at


# -- timers ----------------------------------------------------------------------------------------


def test_timers_come_due_in_order_on_the_simulated_clock() -> None:
    clock = SimClock()
    timers = TimerQueue()
    timers.arm("b", "late", clock.now + 30, "b.tick", {})
    timers.arm("a", "soon", clock.now + 10, "a.tick", {"n": 1})
    timers.arm("c", "now", clock.now, "c.tick", {})
    assert len(timers) == 3
    now = timers.due(clock.now)
    assert now is not None
    assert now.key == "now"
    assert timers.due(clock.now) is None
    assert timers.next_due() == clock.now + 10
    clock.advance(9.999)
    assert timers.due(clock.now) is None
    first = timers.due(clock.advance(0.001))
    assert first is not None
    assert (first.reactor, first.name, first.payload) == ("a", "a.tick", {"n": 1})
    clock.advance(60)
    late = timers.due(clock.now)  # overdue (the agent was down): due at once
    assert late is not None
    assert late.key == "late"


def test_rearming_replaces_and_cancelling_forgets() -> None:
    clock = SimClock()
    timers = TimerQueue()
    timers.arm("a", "t", clock.now + 10, "a.one", {})
    timers.arm("a", "t", clock.now + 20, "a.two", {})  # the same key: replaced
    timers.arm("a", "u", clock.now + 5, "a.three", {})
    timers.cancel("a", "u")
    timers.cancel("a", "never-armed")
    assert len(timers) == 1
    assert timers.next_due() == clock.now + 20
    clock.advance(30)
    fired = timers.due(clock.now)
    assert fired is not None
    assert fired.name == "a.two"
    assert timers.due(clock.now) is None
    assert timers.next_due() is None


def test_fired_says_whether_the_intent_armed_the_key_again() -> None:
    clock = SimClock()
    timers = TimerQueue()
    timers.arm("a", "t", clock.now, "a.tick", {})
    timers.arm("b", "t", clock.now, "b.tick", {})
    first, second = timers.due(clock.now), timers.due(clock.now)
    assert first is not None
    assert second is not None
    timers.arm(first.reactor, "t", clock.now + 60, "a.tick", {})  # its intent re-armed it
    assert not timers.fired(first)
    assert timers.fired(second)  # forgotten: delete its row
    assert len(timers) == 1


def test_a_periodic_timer_for_ten_minutes() -> None:
    """A schedule re-arming itself every minute, run as the runtime runs it: sleep until the
    next due time (late by a little, as a busy device is), fire, and let the intent re-arm."""
    clock = SimClock(0.0)
    timers = TimerQueue()
    timers.arm("s", "tick", 60.0, "s.tick", {})
    fired_at = []
    while True:
        due = timers.next_due()
        assert due is not None
        if due > 600.0:
            break
        clock.now = due + 0.05
        timer = timers.due(clock.now)
        assert timer is not None
        fired_at.append(round(timer.due))
        timers.arm("s", "tick", timer.due + 60.0, "s.tick", {})  # what the intent does
        assert not timers.fired(timer)
    assert fired_at == [60 * n for n in range(1, 11)]

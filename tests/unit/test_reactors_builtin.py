"""The built-in reactor types: behaviour per type, and properties every one of them keeps."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.errors import IntentError, PayloadError
from edgeagent.reactors.builtin import TYPES
from edgeagent.reactors.builtin.schedule import next_due, parse_at
from edgeagent.reactors.builtin.window import aggregate
from edgeagent.reactors.model import (
    CancelTimer,
    Context,
    Effect,
    Emit,
    Forward,
    Intent,
    ReactorType,
    SerialWrite,
    SetTimer,
    State,
    state_json,
)
from edgeagent.reactors.registry import find_type

DAY = 86400.0


class Harness:
    """One reactor of a type: options validated, payloads validated, as the runtime does."""

    def __init__(self, type_name: str, options: Mapping[str, Any] | None = None) -> None:
        self.rtype: ReactorType = find_type(type_name)
        self.options = self.rtype.options.validate(options or {})
        self.state: State = self.rtype.initial_state(self.options)

    def send(
        self,
        verb: str,
        payload: Mapping[str, Any] | None = None,
        *,
        at: float = 0.0,
        source: str = "cli",
    ) -> list[Effect]:
        self.state, effects = step(
            self.rtype, self.options, self.state, verb, payload or {}, at=at, source=source
        )
        return effects


def step(
    rtype: ReactorType,
    options: Mapping[str, Any],
    state: State,
    verb: str,
    payload: Mapping[str, Any],
    *,
    at: float,
    source: str = "cli",
) -> tuple[State, list[Effect]]:
    checked = rtype.verbs[verb].validate(payload)
    context = Context(principal="cli", trace_id="0123456789abcdef", source=source, at=at)
    return rtype.handle(state, verb, Intent(f"r.{verb}", checked, context), options)


def options_error(type_name: str, options: Mapping[str, Any]) -> tuple[str, str]:
    with pytest.raises(PayloadError) as caught:
        find_type(type_name).options.validate(options)
    return caught.value.field, caught.value.reason


def test_every_builtin_refuses_a_verb_it_does_not_take() -> None:
    for rtype in TYPES:
        options = {
            "threshold": {"high": 1},
            "relay": {"to": "x"},
            "schedule": {"every": 1, "emit": "x"},
            "actuator": {"device": "/dev/null"},
        }.get(rtype.name, {})
        checked = rtype.options.validate(options)
        intent = Intent("r.nope", {}, Context("cli", "0" * 16, "cli", 0.0))
        with pytest.raises(IntentError, match="has no verb 'nope'"):
            rtype.handle(rtype.initial_state(checked), "nope", intent, checked)


# -- counter -------------------------------------------------------------------------------------


def test_counter() -> None:
    counter = Harness("counter")
    assert counter.state == {"count": 0}
    assert counter.send("increment") == []
    counter.send("increment", {"by": 5})
    counter.send("increment", {"by": -2})
    assert counter.state == {"count": 4}
    counter.send("reset")
    assert counter.state == {"count": 0}
    with pytest.raises(PayloadError, match="expected int"):
        counter.send("increment", {"by": 1.5})


# -- threshold -----------------------------------------------------------------------------------


def test_threshold_options() -> None:
    assert find_type("threshold").options.validate({"high": 30}) == {
        "high": 30,
        "low": 30,
        "on_alarm": None,
        "on_clear": None,
    }
    assert options_error("threshold", {"high": 30, "low": 31}) == (
        "low",
        "must be <= high (30), got 31",
    )
    assert options_error("threshold", {"low": 3})[0] == "high"
    assert options_error("threshold", {"high": 3, "on_alarm": "a b"})[0] == "on_alarm"


def test_threshold_raises_and_clears_with_hysteresis() -> None:
    alarm = Harness(
        "threshold", {"high": 30, "low": 25, "on_alarm": "fan.on", "on_clear": "fan.off"}
    )
    assert alarm.send("reading", {"value": 29.9}, at=1) == []
    assert alarm.send("reading", {"value": 30}, at=2) == [Emit("fan.on", {"value": 30})]
    assert alarm.state == {"alarm": True, "last": 30, "since": 2}
    assert alarm.send("reading", {"value": 35}, at=3) == []
    assert alarm.send("reading", {"value": 26}, at=4) == []
    assert alarm.state == {"alarm": True, "last": 26, "since": 2}
    assert alarm.send("reading", {"value": 25}, at=5) == [Emit("fan.off", {"value": 25})]
    assert alarm.state == {"alarm": False, "last": 25, "since": 5}


def test_threshold_without_intents_only_changes_state() -> None:
    alarm = Harness("threshold", {"high": 1})
    assert alarm.send("reading", {"value": 2}) == []
    assert alarm.state["alarm"] is True


def test_threshold_at_equal_low_and_high_holds_its_state_on_the_boundary() -> None:
    alarm = Harness("threshold", {"high": 10, "on_alarm": "a", "on_clear": "c"})
    assert alarm.send("reading", {"value": 10}) == []
    assert alarm.send("reading", {"value": 11}) == [Emit("a", {"value": 11})]
    assert alarm.send("reading", {"value": 10}) == []
    assert alarm.send("reading", {"value": 9.5}) == [Emit("c", {"value": 9.5})]


@settings(max_examples=200)
@given(
    st.integers(-50, 50),
    st.integers(0, 20),
    st.lists(st.integers(-80, 80) | st.floats(-80, 80, allow_nan=False), max_size=30),
)
def test_threshold_hysteresis_never_toggles_between_low_and_high(
    low: int, gap: int, values: list[float]
) -> None:
    high = low + gap
    alarm = Harness("threshold", {"high": high, "low": low, "on_alarm": "a", "on_clear": "c"})
    for value in values:
        before = alarm.state["alarm"]
        effects = alarm.send("reading", {"value": value})
        after = alarm.state["alarm"]
        if low < value < high or low == value == high:
            assert after == before
        if value >= high > low:
            assert after is True
        if value <= low < high:
            assert after is False
        # An intent is emitted exactly on a change, and says which.
        assert effects == (
            [] if after == before else [Emit("a" if after else "c", {"value": value})]
        )


# -- window --------------------------------------------------------------------------------------


def test_window_aggregates_and_expires() -> None:
    window = Harness("window", {"seconds": 10})
    window.send("reading", {"value": 4}, at=100)
    window.send("reading", {"value": 2.5}, at=105)
    assert window.state == {
        "samples": [[100, 4], [105, 2.5]],
        "count": 2,
        "mean": 3.25,
        "min": 2.5,
        "max": 4,
    }
    # At 110 the sample of 100 is exactly `seconds` old and leaves the window.
    window.send("reading", {"value": 1}, at=110)
    assert window.state["samples"] == [[105, 2.5], [110, 1]]
    assert window.state["count"] == 2


def test_window_bounds_its_samples_and_emits() -> None:
    window = Harness("window", {"max_samples": 2, "emit": "temp.avg"})
    effects = []
    for at, value in enumerate([1, 2, 3]):
        effects = window.send("reading", {"value": value}, at=at)
    assert window.state["samples"] == [[1, 2], [2, 3]]
    assert effects == [
        Emit("temp.avg", {"count": 2, "mean": 2.5, "min": 2, "max": 3, "seconds": 60})
    ]


def test_window_drops_samples_from_before_a_clock_step_back() -> None:
    window = Harness("window")
    window.send("reading", {"value": 1}, at=1_700_000_000)
    window.send("reading", {"value": 2}, at=1000)
    assert window.state["samples"] == [[1000, 2]]


def test_window_options() -> None:
    assert options_error("window", {"seconds": 0}) == ("seconds", "must be > 0, got 0")
    assert options_error("window", {"max_samples": 0}) == ("max_samples", "must be >= 1, got 0")


def test_aggregate_of_nothing() -> None:
    assert aggregate([]) == {"count": 0, "mean": None, "min": None, "max": None}


@settings(max_examples=200)
@given(
    st.sampled_from([1, 2.5, 10]),
    st.integers(1, 6),
    st.lists(
        st.tuples(
            st.sampled_from([0, 0.5, 1, 3]),
            st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_window_equals_a_brute_force_recomputation(
    seconds: float, max_samples: int, readings: list[tuple[float, float]]
) -> None:
    window = Harness("window", {"seconds": seconds, "max_samples": max_samples})
    at = 1000.0
    seen: list[tuple[float, float]] = []
    for delta, value in readings:
        at += delta
        window.send("reading", {"value": value}, at=at)
        seen.append((at, value))
        inside = [v for t, v in seen if at - seconds < t <= at][-max_samples:]
        assert window.state["count"] == len(inside)
        assert window.state["mean"] == math.fsum(inside) / len(inside)
        assert window.state["min"] == min(inside)
        assert window.state["max"] == max(inside)
        assert [v for _, v in window.state["samples"]] == inside


# -- relay ---------------------------------------------------------------------------------------


def test_relay_forwards_any_object() -> None:
    relay = Harness("relay", {"to": "lamp.write"})
    assert relay.send("forward", {"data": "ON", "n": [1]}) == [
        Emit("lamp.write", {"data": "ON", "n": [1]})
    ]
    assert relay.state == {"forwarded": 1}
    assert options_error("relay", {})[0] == "to"
    assert options_error("relay", {"to": "lamp..write"})[0] == "to"


def test_relay_with_a_peer_forwards_there() -> None:
    relay = Harness("relay", {"to": "counter.increment", "peer": "rb", "cluster": "g"})
    assert relay.send("forward", {"by": 2}) == [Forward("rb", "counter.increment", {"by": 2}, "g")]
    assert relay.state == {"forwarded": 1}
    rtype = find_type("relay")
    options = rtype.options.validate({"to": "counter.increment", "peer": "rb"})
    assert rtype.emits(options) == []  # type: ignore[attr-defined]  # the peer's wire, not ours
    assert rtype.forwards(options) == [("counter.increment", "rb")]  # type: ignore[attr-defined]
    assert options_error("relay", {"to": "a.b", "cluster": "g"}) == (
        "cluster",
        "only means something with peer (a member to send to)",
    )
    assert options_error("relay", {"to": "a.b", "peer": ""})[0] == "peer"


# -- schedule ------------------------------------------------------------------------------------


def test_schedule_options() -> None:
    assert options_error("schedule", {"emit": "x"})[1].startswith("give exactly one of")
    assert options_error("schedule", {"emit": "x", "every": 5, "at": "07:00"})[0] == "every"
    assert options_error("schedule", {"emit": "x", "every": 0}) == ("every", "must be > 0, got 0")
    field, why = options_error("schedule", {"emit": "x", "at": "25:00"})
    assert field == "at"
    assert "HH:MM" in why
    assert find_type("schedule").options.validate({"emit": "x", "at": "*:05"})["payload"] == {}


def test_parse_at() -> None:
    assert parse_at("07:30") == (7, 30)
    assert parse_at("7:30") == (7, 30)
    assert parse_at("*:05") == (None, 5)
    for bad in ("24:00", "07:60", "7", "*:5", "every day"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_at(bad)


def test_schedule_every_keeps_its_phase() -> None:
    schedule = Harness("schedule", {"every": 60, "emit": "sensor.poll", "payload": {"n": 1}})
    assert schedule.send("start", at=1000) == [SetTimer("tick", 60, ".tick")]
    assert schedule.state == {"running": True, "fired": 0, "next": 1060, "last": None}
    # The timer fired 2 s late: the next due time is still 1120.
    assert schedule.send("tick", at=1062, source="timer") == [
        Emit("sensor.poll", {"n": 1}),
        SetTimer("tick", 58, ".tick"),
    ]
    assert schedule.state == {"running": True, "fired": 1, "next": 1120, "last": 1062}


def test_schedule_coalesces_ticks_missed_while_down() -> None:
    schedule = Harness("schedule", {"every": 60, "emit": "sensor.poll"})
    schedule.send("start", at=1000)
    effects = schedule.send("tick", at=1000 + 60 * 10 + 5, source="timer")
    assert effects == [Emit("sensor.poll", {}), SetTimer("tick", 55, ".tick")]
    assert schedule.state["next"] == 1660


def test_schedule_timer_firing_early_is_not_armed_for_the_same_time() -> None:
    schedule = Harness("schedule", {"every": 60, "emit": "e"})
    schedule.send("start", at=1000)
    effects = schedule.send("tick", at=1059.999, source="timer")
    assert schedule.state["next"] == 1120
    timer = effects[-1]
    assert isinstance(timer, SetTimer)
    assert timer.delay == pytest.approx(60.001)


def test_schedule_manual_tick_emits_without_touching_the_timer() -> None:
    schedule = Harness("schedule", {"every": 60, "emit": "e"})
    schedule.send("start", at=1000)
    assert schedule.send("tick", at=1010) == [Emit("e", {})]
    assert schedule.state["next"] == 1060


def test_schedule_stop_cancels_and_a_late_timer_tick_does_not_rearm() -> None:
    schedule = Harness("schedule", {"every": 60, "emit": "e"})
    schedule.send("start", at=1000)
    assert schedule.send("stop", at=1001) == [CancelTimer("tick")]
    assert schedule.state == {"running": False, "fired": 0, "next": None, "last": None}
    assert schedule.send("tick", at=1060, source="timer") == [Emit("e", {})]


def test_schedule_at_daily_and_hourly_in_utc() -> None:
    midnight = 20000 * DAY
    daily = Harness("schedule", {"at": "07:30", "emit": "e"})
    assert daily.send("start", at=midnight + 3600) == [SetTimer("tick", 6.5 * 3600, ".tick")]
    due = midnight + 7.5 * 3600
    assert daily.state["next"] == due
    # Fired on time: the next one is tomorrow, not again today.
    assert daily.send("tick", at=due, source="timer")[-1] == SetTimer("tick", DAY, ".tick")
    hourly = Harness("schedule", {"at": "*:05", "emit": "e"})
    assert hourly.send("start", at=midnight + 600) == [SetTimer("tick", 3300, ".tick")]


@settings(max_examples=200)
@given(
    st.sampled_from(["00:00", "07:30", "23:59", "*:00", "*:59", "*:07"]),
    st.floats(1.5e9, 2e9, allow_nan=False),
)
def test_next_due_for_at_is_the_next_matching_minute(spec: str, now: float) -> None:
    options = {"every": None, "at": spec}
    due = next_due(options, now)
    hour, minute = parse_at(spec)
    assert now < due <= now + (3600 if hour is None else DAY)
    assert due % 60 == 0
    assert (due % 3600) // 60 == minute
    if hour is not None:
        assert (due % DAY) // 3600 == hour


@settings(max_examples=200)
@given(
    st.sampled_from([0.5, 7, 60]),
    st.floats(0, 1e4, allow_nan=False),
    st.floats(0, 1e5, allow_nan=False),
)
def test_next_due_for_every_stays_on_the_grid(every: float, anchor: float, late: float) -> None:
    now = anchor + late
    due = next_due({"every": every, "at": None}, now, anchor)
    assert now < due <= now + every + 1e-6
    steps = (due - anchor) / every
    assert abs(steps - round(steps)) < 1e-6


# -- actuator ------------------------------------------------------------------------------------


def test_actuator_writes_bytes() -> None:
    lamp = Harness("actuator", {"device": "/dev/ttyUSB0"})
    assert lamp.send("write", {"data": "ON"}) == [SerialWrite("/dev/ttyUSB0", b"ON\n")]
    assert lamp.state == {"writes": 1, "last": "ON"}
    raw = Harness("actuator", {"device": "/dev/ttyUSB0", "newline": False})
    assert raw.send("write", {"data": "é"}) == [SerialWrite("/dev/ttyUSB0", "é".encode())]
    assert options_error("actuator", {})[0] == "device"
    with pytest.raises(PayloadError, match="required"):
        lamp.send("write", {})


# -- properties of every built-in ----------------------------------------------------------------

NUMBERS = st.integers(-100, 100) | st.floats(-1e3, 1e3, allow_nan=False)
CASES: dict[str, tuple[dict[str, Any], st.SearchStrategy[tuple[str, dict[str, Any], str]]]] = {
    "counter": (
        {},
        st.tuples(
            st.just("increment"),
            st.fixed_dictionaries({}, optional={"by": st.integers(-5, 5)}),
            st.just("cli"),
        )
        | st.tuples(st.just("reset"), st.just({}), st.just("cli")),
    ),
    "threshold": (
        {"high": 10, "low": 5, "on_alarm": "a", "on_clear": "c"},
        st.tuples(st.just("reading"), st.builds(dict, value=NUMBERS), st.just("sensor")),
    ),
    "window": (
        {"seconds": 5, "max_samples": 4, "emit": "w"},
        st.tuples(st.just("reading"), st.builds(dict, value=NUMBERS), st.just("sensor")),
    ),
    "relay": (
        {"to": "x.y"},
        st.tuples(
            st.just("forward"),
            st.dictionaries(
                st.text(max_size=3),
                st.none() | st.booleans() | NUMBERS | st.text(max_size=3),
                max_size=3,
            ),
            st.just("cli"),
        ),
    ),
    "schedule": (
        {"every": 7, "emit": "e", "payload": {"k": [1]}},
        st.tuples(
            st.sampled_from(["start", "tick", "stop"]),
            st.just({}),
            st.sampled_from(["timer", "cli"]),
        ),
    ),
    "actuator": (
        {"device": "/dev/ttyUSB0"},
        st.tuples(st.just("write"), st.builds(dict, data=st.text(max_size=5)), st.just("cli")),
    ),
}


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[tuple[str, dict[str, Any], str, float]]]:
    type_name = draw(st.sampled_from(sorted(CASES)))
    _, intents = CASES[type_name]
    at = 1_700_000_000.0
    history = []
    for verb, payload, source in draw(st.lists(intents, max_size=25)):
        at += draw(st.sampled_from([0, 0.25, 1, 3, 10]))
        history.append((verb, payload, source, at))
    return type_name, history


def fold(
    rtype: ReactorType,
    options: Mapping[str, Any],
    history: Sequence[tuple[str, dict[str, Any], str, float]],
) -> tuple[State, list[list[Effect]]]:
    state = rtype.initial_state(options)
    all_effects = []
    for verb, payload, source, at in history:
        state, effects = step(rtype, options, state, verb, payload, at=at, source=source)
        all_effects.append(effects)
    return state, all_effects


@settings(max_examples=200)
@given(histories())
def test_handle_is_deterministic_pure_and_its_state_survives_json(
    case: tuple[str, list[tuple[str, dict[str, Any], str, float]]],
) -> None:
    type_name, history = case
    rtype = find_type(type_name)
    options = rtype.options.validate(CASES[type_name][0])
    state = rtype.initial_state(options)
    for verb, payload, source, at in history:
        before = state_json(state)
        new_state, effects = step(rtype, options, state, verb, payload, at=at, source=source)
        # The state it was given is untouched, and the same input gives the same output.
        assert state_json(state) == before
        again_state, again_effects = step(
            rtype, options, state, verb, payload, at=at, source=source
        )
        assert state_json(again_state) == state_json(new_state)
        assert again_effects == effects
        # A snapshot (JSON text) reproduces the state exactly, types included.
        restored = json.loads(json.dumps(new_state))
        assert restored == new_state
        assert state_json(restored) == state_json(new_state)
        # Continuing from the restored snapshot is the same as continuing from memory.
        state = restored
    # Replaying the whole history from scratch rebuilds the same state and effects.
    replayed, _ = fold(rtype, options, history)
    assert state_json(replayed) == state_json(state)

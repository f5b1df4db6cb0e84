"""The reactor model: effects and their JSON, canonical state JSON, names, fast intents."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.errors import IntentError, PayloadError
from edgeagent.reactors.builtin.counter import COUNTER
from edgeagent.reactors.model import (
    CancelTimer,
    Context,
    Effect,
    Emit,
    Forward,
    Intent,
    Log,
    Publish,
    SerialWrite,
    SetTimer,
    State,
    check_intent_name,
    effect_from_json,
    effect_to_json,
    intent_of,
    no_such_verb,
    resolve_name,
    state_json,
)

CTX = Context(principal="cli", trace_id="0123456789abcdef", source="cli", at=100.0)


def test_context_and_intent_are_frozen() -> None:
    intent = Intent("c.increment", {"by": 1}, CTX)
    with pytest.raises(dataclasses.FrozenInstanceError):
        intent.name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CTX.at = 1.0  # type: ignore[misc]
    assert CTX.idempotency_key is None


# -- effects -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Emit(""), "Emit.name"),
        (lambda: SetTimer("k", -1, ".tick"), "finite number >= 0"),
        (lambda: SetTimer("k", math.inf, ".tick"), "finite number >= 0"),
        (lambda: SetTimer("", 1, ".tick"), "SetTimer.key"),
        (lambda: CancelTimer(""), "CancelTimer.key"),
        (lambda: Publish("t", {}, qos=3), "qos"),
        (lambda: Log("loud", "x"), "Log.level"),
    ],
)
def test_effects_refuse_nonsense(build: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        build()


def test_serial_write_takes_bytes_only() -> None:
    with pytest.raises(TypeError, match="bytes"):
        SerialWrite("/dev/ttyUSB0", "ON")  # type: ignore[arg-type]


def test_effect_json_shapes() -> None:
    assert effect_to_json(Emit("a.b", {"v": 1})) == {
        "type": "emit",
        "name": "a.b",
        "payload": {"v": 1},
    }
    assert effect_to_json(SetTimer("tick", 5, ".tick")) == {
        "type": "set_timer",
        "key": "tick",
        "delay": 5,
        "name": ".tick",
        "payload": {},
    }
    assert effect_to_json(SerialWrite("/dev/x", b"ON\n")) == {
        "type": "serial_write",
        "device": "/dev/x",
        "data": "ON\n",
    }
    assert effect_to_json(SerialWrite("/dev/x", b"\xff\x00")) == {
        "type": "serial_write",
        "device": "/dev/x",
        "data_b64": "/wA=",
    }
    assert effect_to_json(Publish("t/x", [1], retain=True, qos=0))["retain"] is True
    assert effect_to_json(Log("info", "hi")) == {"type": "log", "level": "info", "message": "hi"}


def test_effect_to_json_refuses_non_json_payloads() -> None:
    with pytest.raises(ValueError, match=r"payload\.v"):
        effect_to_json(Emit("a", {"v": (1, 2)}))
    with pytest.raises(TypeError, match="not an effect"):
        effect_to_json("emit")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"type": "boom"}, "unknown effect type 'boom'"),
        ({"type": "emit", "payload": {}}, "has no 'name'"),
        ({"type": "forward", "to": "", "name": "a", "payload": {}, "cluster": None}, "Forward.to"),
        ({"type": "forward", "to": "b", "name": "a", "payload": {}, "cluster": 3}, "'cluster'"),
        ({"type": "emit", "name": "a", "payload": {}, "extra": 1}, "unknown keys: extra"),
        ({"type": "set_timer", "key": "k", "delay": "5", "name": "n", "payload": {}}, "'delay'"),
        ({"type": "publish", "topic": "t", "payload": 1, "retain": 1, "qos": 1}, "'retain'"),
        ({"type": "publish", "topic": "t", "payload": 1, "retain": False, "qos": True}, "'qos'"),
        ({"type": "serial_write", "device": "d", "data_b64": "***"}, "effect"),
        ({"type": "log", "level": "loud", "message": ""}, "Log.level"),
        ([], "JSON object"),
    ],
)
def test_effect_from_json_refuses_corrupt_data(data: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        effect_from_json(data)


NAMES = st.sampled_from(["a.b", ".tick", "sensor.temperature", "x"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-100, 100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
PAYLOADS = st.dictionaries(st.text(max_size=4), JSON, max_size=3)
EFFECTS: st.SearchStrategy[Effect] = st.one_of(
    st.builds(Emit, NAMES, PAYLOADS),
    st.builds(
        Forward, st.sampled_from(["rb", "0f3a"]), NAMES, PAYLOADS, st.none() | st.just("greenhouse")
    ),
    st.builds(
        SetTimer,
        NAMES,
        st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6).map(float),
        NAMES,
        PAYLOADS,
    ),
    st.builds(CancelTimer, NAMES),
    st.builds(Publish, st.just("t/x"), JSON, st.booleans(), st.sampled_from([0, 1, 2])),
    st.builds(SerialWrite, st.just("/dev/ttyUSB0"), st.binary(max_size=8)),
    st.builds(Log, st.sampled_from(["debug", "info", "warning", "error"]), st.text(max_size=8)),
)


@settings(max_examples=200)
@given(EFFECTS)
def test_effects_round_trip_through_json_text(effect: Effect) -> None:
    text = json.dumps(effect_to_json(effect))
    back = effect_from_json(json.loads(text))
    assert back == effect
    assert json.dumps(effect_to_json(back), sort_keys=True) == json.dumps(
        effect_to_json(effect), sort_keys=True
    )


# -- state JSON, names ---------------------------------------------------------------------------


def test_state_json_is_canonical() -> None:
    assert state_json({"b": 1, "a": [1.5, None, "é"]}) == '{"a":[1.5,null,"é"],"b":1}'
    assert state_json({"a": 1, "b": 2}) == state_json({"b": 2, "a": 1})


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"samples": [(1, 2)]}, "state.samples.0"),
        ({"x": math.nan}, "state.x"),
        ({"x": {1: 2}}, "state.x"),
        ({"x": {"y": b"z"}}, "state.x.y"),
    ],
)
def test_state_json_refuses_non_json_values(state: State, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(field)}: "):
        state_json(state)


@settings(max_examples=150)
@given(JSON)
def test_state_json_round_trips(state: Any) -> None:
    assert state_json(json.loads(state_json(state))) == state_json(state)


def test_resolve_name() -> None:
    assert resolve_name(".tick", "s1") == "s1.tick"
    assert resolve_name("lamp.write", "s1") == "lamp.write"


def test_check_intent_name() -> None:
    assert check_intent_name("sensor.temperature", "emit") == "sensor.temperature"
    assert check_intent_name(".tick", "emit") == ".tick"
    for bad in ("", "a b", "a..b", "a.", ".."):
        with pytest.raises(PayloadError) as caught:
            check_intent_name(bad, "emit")
        assert caught.value.field == "emit"


def test_no_such_verb_is_an_intent_error_with_a_hint() -> None:
    error = no_such_verb(COUNTER, "incremnt")
    assert isinstance(error, IntentError)
    assert str(error) == (
        "reactor type 'counter' has no verb 'incremnt' (did you mean 'increment'?); "
        "verbs: increment, reset"
    )


def test_intent_of_builds_what_the_dataclasses_would() -> None:
    built = intent_of(
        "a.b", {"v": 1}, principal="cli", trace_id="t1", source="cli", at=2.5, idempotency_key="k"
    )
    assert built == Intent("a.b", {"v": 1}, Context("cli", "t1", "cli", 2.5, "k"))
    assert hash(built.context) == hash(Context("cli", "t1", "cli", 2.5, "k"))
    with pytest.raises(AttributeError):
        built.name = "x"  # type: ignore[misc]  # still frozen

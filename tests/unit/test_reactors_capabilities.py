"""Capabilities: grammar, coverage, the implication closure, decisions (examples and properties)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.errors import CapabilityError
from edgeagent.reactors.capabilities import (
    Decision,
    Policy,
    check_capability,
    check_principal,
    covers,
    is_pattern,
)

DEMO = Policy.build(
    {"admin": ["counter:*", "sensor:*", "config:*"]},
    {"cli": ["admin"], "guest": ["counter:read"]},
)


# -- grammar ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["admin", "sensor:read", "actuator:write:/dev/ttyUSB0", "a.b-c_d:e/f", "X:9"],
)
def test_concrete_capabilities_are_accepted(text: str) -> None:
    assert check_capability(text, wildcards=False) == text
    assert check_capability(text, wildcards=True) == text


@pytest.mark.parametrize("text", ["*", "sensor:*", "actuator:*:/dev/ttyUSB0", "*:read"])
def test_wildcards_only_where_allowed(text: str) -> None:
    assert check_capability(text, wildcards=True) == text
    with pytest.raises(CapabilityError, match="wildcard"):
        check_capability(text, wildcards=False)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("sensor:", "empty segment"),
        (":read", "empty segment"),
        ("a::b", "empty segment"),
        ("sensor:re*d", "whole segment"),
        ("sensor:**", "whole segment"),
        ("sensor read", "has ' '"),
        ("sensor:réad", "has 'é'"),
        ("x" * 256, "at most 255"),
    ],
)
def test_malformed_capabilities_say_why(text: str, why: str) -> None:
    with pytest.raises(CapabilityError, match=re.escape(why)):
        check_capability(text, wildcards=True)


@pytest.mark.parametrize(
    "name", ["cli", "guest", "ops.team-1", "mqtt:home/+/cmd", "peer:greenhouse", "reactor:counter"]
)
def test_principal_names(name: str) -> None:
    assert check_principal(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("-x", "plain name"),
        ("has space", "plain name"),
        ("mqt:a", "did you mean 'mqtt:a'"),
        ("user:bob", "unknown kind 'user'"),
        ("mqtt:", "client id or topic"),
        ("mqtt:a b", "client id or topic"),
        ("peer:Big Cluster", "cluster name"),
        ("reactor:9x", "reactor id"),
        ("schedule:", "reactor id"),
    ],
)
def test_bad_principal_names_say_why(name: str, why: str) -> None:
    with pytest.raises(CapabilityError, match=re.escape(why)):
        check_principal(name)


# -- coverage -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "capability", "expected"),
    [
        ("sensor:read", "sensor:read", True),
        ("sensor:read", "sensor:write", False),
        ("sensor:*", "sensor:read", True),
        ("sensor:*", "sensor:read:kitchen", True),
        ("sensor:*", "sensor", False),
        ("actuator:*:/dev/ttyUSB0", "actuator:write:/dev/ttyUSB0", True),
        ("actuator:*:/dev/ttyUSB0", "actuator:write:x:/dev/ttyUSB0", False),
        ("actuator:*:/dev/ttyUSB0", "actuator:write:/dev/ttyUSB1", False),
        ("*", "anything:at:all", True),
        ("sensor", "sensor:read", False),
        # pattern over pattern: covers every concrete capability the second one covers
        ("sensor:*", "sensor:*", True),
        ("sensor:*", "sensor:*:kitchen", True),
        ("sensor:*:kitchen", "sensor:*", False),
        ("*", "sensor:*", True),
        ("sensor:read", "sensor:*", False),
        ("a:*:c", "a:*", False),
    ],
)
def test_covers(pattern: str, capability: str, expected: bool) -> None:
    assert covers(pattern, capability) is expected


# -- policy -------------------------------------------------------------------------------------
def test_the_demo_policy() -> None:
    assert DEMO.grants("cli") == {"admin", "counter:*", "sensor:*", "config:*"}
    assert DEMO.grants("guest") == {"counter:read"}
    assert DEMO.grants("nobody") == frozenset()
    assert DEMO.decide("cli", ["counter:write", "sensor:read:kitchen"]) == Decision(True)
    assert DEMO.decide("guest", ["counter:read"]).allowed
    denied = DEMO.decide("guest", ["counter:read", "counter:write"])
    assert denied == Decision(
        False, ("counter:write",), "principal 'guest' lacks counter:write (it holds counter:read)"
    )
    assert DEMO.principals == ("cli", "guest")


def test_an_unknown_principal_holds_nothing() -> None:
    decision = DEMO.decide("mqtt:stranger", ["counter:read"])
    assert not decision.allowed
    assert decision.missing == ("counter:read",)
    assert "'mqtt:stranger' lacks counter:read" in decision.reason
    assert "no such principal" in decision.reason


def test_no_requirements_is_always_allowed() -> None:
    assert DEMO.decide("nobody", []).allowed


def test_requirements_must_be_concrete() -> None:
    with pytest.raises(CapabilityError, match="wildcard"):
        DEMO.decide("cli", ["counter:*"])
    with pytest.raises(CapabilityError, match="empty segment"):
        DEMO.decide("cli", ["counter:"])


def test_decisions_are_memoised_and_the_memo_is_bounded() -> None:
    policy = Policy.build({}, {"a": ["x"]})
    first = policy.decide("a", ("x",))
    assert policy.decide("a", ["x"]) is first
    for index in range(Policy.MEMO_LIMIT + 10):
        policy.decide(f"p{index}", ("x",))
    assert len(policy._decisions) <= Policy.MEMO_LIMIT


def test_implication_is_transitive_and_cycles_are_harmless() -> None:
    policy = Policy.build(
        {"a": ["b"], "b": ["c:*"], "c:x": ["a", "d"]},
        {"p": ["a"], "q": ["c:*"]},
    )
    assert policy.grants("p") == {"a", "b", "c:*", "d"}
    # q holds c:*, which covers the key c:x, so q holds what c:x implies and onwards
    assert policy.grants("q") == {"c:*", "a", "b", "d"}


def test_a_wildcard_grant_implies_what_the_keys_it_covers_imply() -> None:
    policy = Policy.build({"ops:restart": ["service:restart:*"]}, {"root": ["*"], "ops": ["ops:*"]})
    assert policy.decide("ops", ["service:restart:web"]).allowed
    assert "service:restart:*" in policy.grants("root")


def test_can_ever_hold() -> None:
    assert DEMO.can_ever_hold("counter:reset") == ["cli"]
    assert DEMO.can_ever_hold("counter:read") == ["cli", "guest"]
    assert DEMO.can_ever_hold("mqtt:publish") == []
    assert DEMO.can_ever_hold("sensor:*") == ["cli"]


@pytest.mark.parametrize(
    ("implies", "principals", "why"),
    [
        ({"admin:*": ["x"]}, {}, "implies key 'admin:*'"),
        ({"admin": ["x:"]}, {}, "implies['admin']: capability 'x:'"),
        ({"admin": "x"}, {}, "expected a list"),
        ({}, {"bad name": ["x"]}, "principals: principal 'bad name'"),
        ({}, {"guest": ["counter:re*d"]}, "principals['guest']: capability 'counter:re*d'"),
    ],
)
def test_build_names_the_offender(
    implies: dict[str, object], principals: dict[str, object], why: str
) -> None:
    with pytest.raises(CapabilityError, match=re.escape(why)):
        Policy.build(implies, principals)  # type: ignore[arg-type]


def test_long_holdings_are_abbreviated_in_reasons() -> None:
    policy = Policy.build({}, {"p": [f"c:{i}" for i in range(20)]})
    reason = policy.decide("p", ["d"]).reason
    assert reason.endswith("and 12 more)")


# -- properties ---------------------------------------------------------------------------------
SEGMENTS = st.sampled_from(["a", "b", "c", "read", "write"])
CONCRETE = st.lists(SEGMENTS, min_size=1, max_size=3).map(":".join)
PATTERN_SEGMENTS = st.sampled_from(["a", "b", "c", "read", "write", "*"])
GRANTS = st.lists(PATTERN_SEGMENTS, min_size=1, max_size=3).map(":".join)
IMPLIES = st.dictionaries(CONCRETE, st.lists(GRANTS, max_size=3), max_size=5)
PRINCIPALS = st.dictionaries(
    st.sampled_from(["cli", "guest", "peer:home", "reactor:x"]), st.lists(GRANTS, max_size=3)
)
EVERY_CONCRETE = [
    ":".join(parts)
    for n in (1, 2, 3)
    for parts in itertools.product(["a", "b", "c", "read", "write"], repeat=n)
]


def _reference_closure(grants: list[str], implies: dict[str, list[str]]) -> set[str]:
    """A slow, obviously right closure: repeat until nothing changes."""
    held = set(grants)
    while True:
        more = {
            c
            for key, values in implies.items()
            if any(covers(h, key) for h in held)
            for c in values
        }
        if more <= held:
            return held
        held |= more


@settings(max_examples=200)
@given(IMPLIES, PRINCIPALS)
def test_the_closure_is_transitive(
    implies: dict[str, list[str]], principals: dict[str, list[str]]
) -> None:
    policy = Policy.build(implies, principals)
    for name, declared in principals.items():
        held = policy.grants(name)
        # closed: anything implied by a key something held covers is itself held
        for key, values in implies.items():
            if any(covers(h, key) for h in held):
                assert set(values) <= held
        assert held == _reference_closure(declared, implies)


@settings(max_examples=200)
@given(IMPLIES, PRINCIPALS)
def test_the_closure_never_grants_more_than_declared(
    implies: dict[str, list[str]], principals: dict[str, list[str]]
) -> None:
    policy = Policy.build(implies, principals)
    implied = [c for values in implies.values() for c in values]
    for name, declared in principals.items():
        for capability in EVERY_CONCRETE:
            if policy.holds(name, capability):
                assert any(covers(source, capability) for source in [*declared, *implied])


@settings(max_examples=200)
@given(
    IMPLIES, PRINCIPALS, st.sampled_from(["cli", "guest", "nobody"]), st.lists(CONCRETE, max_size=4)
)
def test_decide_allows_exactly_when_every_requirement_is_covered(
    implies: dict[str, list[str]],
    principals: dict[str, list[str]],
    principal: str,
    required: list[str],
) -> None:
    policy = Policy.build(implies, principals)
    held = policy.grants(principal)
    covered = [any(covers(h, r) for h in held) for r in required]
    decision = policy.decide(principal, required)
    assert decision.allowed is all(covered)
    assert decision.missing == tuple(
        dict.fromkeys(r for r, ok in zip(required, covered, strict=True) if not ok)
    )
    assert (decision.reason == "") is decision.allowed
    for capability in required:
        assert principal in policy.can_ever_hold(capability) or capability in decision.missing


@settings(max_examples=200)
@given(GRANTS, CONCRETE)
def test_covers_matches_the_segment_rule(pattern: str, capability: str) -> None:
    want, have = pattern.split(":"), capability.split(":")
    if want[-1] == "*":
        expected = len(have) >= len(want) and all(
            w in ("*", h) for w, h in zip(want[:-1], have, strict=False)
        )
    else:
        expected = len(have) == len(want) and all(
            w in ("*", h) for w, h in zip(want, have, strict=True)
        )
    assert covers(pattern, capability) is expected
    assert is_pattern(pattern) is ("*" in want)


@settings(max_examples=200)
@given(GRANTS, GRANTS)
def test_pattern_coverage_is_sound(outer: str, inner: str) -> None:
    # when a pattern covers a pattern, it covers every concrete capability the inner one does
    if covers(outer, inner):
        for capability in EVERY_CONCRETE:
            if covers(inner, capability):
                assert covers(outer, capability)


@settings(max_examples=200)
@given(st.text(max_size=12))
def test_grammar_errors_are_raised_for_bad_strings(text: str) -> None:
    segment = re.compile(r"^[A-Za-z0-9_.\-/]+$")
    parts = text.split(":")
    valid = bool(text) and all(p == "*" or (segment.match(p) and p.isascii()) for p in parts)
    if valid:
        assert check_capability(text, wildcards=True) == text
    else:
        with pytest.raises(CapabilityError):
            check_capability(text, wildcards=True)
    if "*" in parts:
        with pytest.raises(CapabilityError):
            check_capability(text, wildcards=False)

"""The wiring graph: each diagnostic from a small config, the topology, loops as a property."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.config.loader import load_config
from edgeagent.config.model import Config, Grants, ReactorConfig
from edgeagent.identity import DeviceIdentity
from edgeagent.reactors.graph import (
    CODES,
    Diagnostic,
    check_graph,
    has_errors,
    render_topology,
    topology,
)
from edgeagent.reactors.model import Effect, Intent, ReactorType, State
from edgeagent.reactors.registry import find_type
from edgeagent.reactors.schema import Field, Schema

IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")
EXAMPLE = Path(__file__).resolve().parents[2] / "firmware-config" / "examples" / "reactors.yaml"
BASE = load_config(None, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)


class Fan:
    """A test type that emits whatever its ``to`` option lists (any wiring, one option)."""

    name = "fan"
    verbs: Mapping[str, Schema] = MappingProxyType({"in": Schema(extra=True)})
    options = Schema((Field("to", "list", default=[]),))

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return None

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        return state, []

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        return list(options["to"])


class Mute(Fan):
    """A type that does not say what it emits (no ``emits``), like an old third-party one."""

    name = "mute"
    emits = None  # type: ignore[assignment]


class Broken(Fan):
    name = "broken"

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        raise RuntimeError("boom")


TEST_TYPES: dict[str, ReactorType] = {"fan": Fan(), "mute": Mute(), "broken": Broken()}


def types(name: str) -> ReactorType:
    return TEST_TYPES[name] if name in TEST_TYPES else find_type(name)


def wiring(
    *reactors: ReactorConfig,
    principals: Grants = (("cli", ("admin",)),),
    implies: Grants = (("admin", ("counter:*",)),),
) -> Config:
    return dataclasses.replace(
        BASE,
        reactors=reactors,
        principals=principals,
        capabilities=dataclasses.replace(BASE.capabilities, implies=implies),
    )


def reactor(ident: str, rtype: str, **fields: Any) -> ReactorConfig:
    if "requires" in fields:
        fields["requires"] = tuple((k, tuple(v)) for k, v in fields["requires"].items())
    if "subscribe" in fields:
        fields["subscribe"] = tuple(fields["subscribe"].items())
    return ReactorConfig(id=ident, type=rtype, **fields)


def fan(ident: str, *to: str, overflow: str = "block") -> ReactorConfig:
    return reactor(ident, "fan", options={"to": list(to)}, overflow=overflow)


def check(config: Config) -> list[Diagnostic]:
    return check_graph(config, types=types)


def only(diagnostics: list[Diagnostic], code: str) -> list[Diagnostic]:
    return [d for d in diagnostics if d.code == code]


COUNTER = reactor(
    "counter",
    "counter",
    requires={"counter.increment": ["counter:write"], "counter.reset": ["counter:reset"]},
)


# -- clean configs ------------------------------------------------------------------------------
def test_the_built_in_default_config_has_no_diagnostics() -> None:
    assert check_graph(BASE) == []


def test_the_reactors_example_has_no_diagnostics() -> None:
    config = load_config(EXAMPLE, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    assert check_graph(config) == []


def test_a_schedule_feeding_a_counter_it_may_increment_is_clean() -> None:
    # Its own ".tick" timer is a self-edge the type paces: not a loop, not a problem.
    config = wiring(
        COUNTER,
        reactor("beat", "schedule", options={"every": 60, "emit": "counter.increment"}),
        principals=(("cli", ("admin",)), ("reactor:beat", ("counter:write",))),
    )
    assert check(config) == []


# -- each code ----------------------------------------------------------------------------------
def test_unknown_type() -> None:
    (found,) = check(wiring(COUNTER, reactor("x", "countr")))
    assert (found.code, found.severity, found.path) == (
        "unknown-type",
        "error",
        "reactors[id=x].type",
    )
    assert "did you mean 'counter'" in found.message


def test_bad_options_name_the_field() -> None:
    (found,) = check(wiring(COUNTER, reactor("hot", "threshold", options={"low": 3})))
    assert (found.code, found.severity) == ("bad-options", "error")
    assert found.path == "reactors[id=hot].options.high"
    assert "threshold options" in found.message


def test_a_requires_key_naming_a_missing_verb() -> None:
    config = wiring(reactor("counter", "counter", requires={"counter.bump": ["counter:write"]}))
    (found,) = only(check(config), "unknown-verb")
    assert found.severity == "error"
    assert found.path == "reactors[id=counter].requires.counter.bump"
    assert "no verb 'bump'" in found.message
    assert "increment, reset" in found.message


def test_a_subscription_to_a_missing_verb() -> None:
    config = wiring(COUNTER, reactor("tally", "counter", subscribe={"sensor.door": "inc"}))
    (found,) = only(check(config), "unknown-verb")
    assert found.path == "reactors[id=tally].subscribe.sensor.door"
    assert "did you mean 'increment'" in found.message


def test_emitting_an_intent_nobody_takes() -> None:
    config = wiring(
        COUNTER,
        reactor("fwd", "relay", options={"to": "nowhere.go"}),
        reactor("fwd2", "relay", options={"to": "counter.bump"}),
        principals=(("cli", ("admin", "fwd:forward", "fwd2:forward")),),
    )
    first, second = only(check(config), "unknown-intent")
    assert first.path == "reactors[id=fwd].options.to"
    assert first.severity == "error"
    assert "'nowhere.go', which no reactor takes" in first.message
    assert second.path == "reactors[id=fwd2].options.to"
    assert "reactor 'counter' (counter) has no verb 'bump'" in second.message


def test_a_written_requirement_nobody_can_hold() -> None:
    locked = reactor("safe", "counter", requires={"safe.increment": ["vault:open"]})
    (found,) = check(wiring(COUNTER, locked, principals=(("cli", ("admin", "safe:reset")),)))
    assert (found.code, found.severity) == ("unholdable", "error")
    assert found.path == "reactors[id=safe].requires.safe.increment"
    assert "vault:open" in found.message


def test_a_reactor_principal_counts_as_a_holder_only_when_declared() -> None:
    locked = reactor("safe", "counter", requires={"safe.reset": ["vault:open"]})
    declared = wiring(
        COUNTER,
        locked,
        principals=(("cli", ("admin", "safe:increment")), ("reactor:safe", ("vault:open",))),
    )
    assert only(check(declared), "unholdable") == []
    undeclared = wiring(COUNTER, locked, principals=(("cli", ("admin", "safe:increment")),))
    assert [d.path for d in only(check(undeclared), "unholdable")] == [
        "reactors[id=safe].requires.safe.reset"
    ]


def test_the_implicit_requirement_is_not_reported_as_unholdable() -> None:
    # "lonely.increment" needs "lonely:increment", which nobody holds: closed by default, on
    # purpose. Only the reactor as a whole being unreachable is worth a word.
    found = check(wiring(COUNTER, reactor("lonely", "counter")))
    assert [(d.code, d.severity, d.path) for d in found] == [
        ("unreachable", "warning", "reactors[id=lonely]")
    ]
    assert "no principal may send any of its intents" in found[0].message


def test_reachability_follows_emits_and_boot_starts() -> None:
    config = wiring(
        COUNTER,
        reactor("beat", "schedule", options={"every": 5, "emit": "tally.increment"}),
        reactor("tally", "counter"),  # only beat sends to it
        reactor("a", "relay", options={"to": "b.forward"}),  # nobody sends to a
        reactor("b", "relay", options={"to": "counter.increment"}),
        principals=(
            ("cli", ("admin",)),
            ("reactor:beat", ("tally:increment",)),
            ("reactor:a", ("b:forward",)),
            ("reactor:b", ("counter:write",)),
        ),
    )
    found = check(config)
    assert [(d.code, d.path) for d in found] == [
        ("unreachable", "reactors[id=a]"),
        ("unreachable", "reactors[id=b]"),
    ]
    assert "only a emit to it, and they are unreachable too" in found[1].message


def test_a_disabled_reactor_is_not_called_unreachable() -> None:
    assert check(wiring(COUNTER, reactor("spare", "counter", enabled=False))) == []


def test_emit_denied_names_the_principal_and_what_it_lacks() -> None:
    config = wiring(
        COUNTER, reactor("beat", "schedule", options={"every": 60, "emit": "counter.increment"})
    )
    (found,) = check(config)
    assert (found.code, found.severity) == ("emit-denied", "error")
    assert found.path == "reactors[id=beat].options.emit"
    assert "'reactor:beat' lacks counter:write" in found.message


def test_a_loop_of_blocking_mailboxes_is_an_error_naming_it_in_order() -> None:
    config = wiring(
        COUNTER,
        reactor("a", "relay", options={"to": "b.forward"}),
        reactor("b", "relay", options={"to": "c.forward"}),
        reactor("c", "relay", options={"to": "a.forward"}),
        principals=(
            ("cli", ("admin", "a:forward")),
            ("reactor:a", ("b:forward",)),
            ("reactor:b", ("c:forward",)),
            ("reactor:c", ("a:forward",)),
        ),
    )
    (found,) = check(config)
    assert (found.code, found.severity, found.path) == ("cycle", "error", "reactors[id=a]")
    assert found.loop == ("a", "b", "c")
    assert "a -> b -> c -> a" in found.message
    assert found.as_json()["loop"] == ["a", "b", "c"]


def test_a_loop_with_a_shedding_mailbox_is_a_warning() -> None:
    config = wiring(fan("a", "b.in"), fan("b", "a.in", overflow="drop-oldest"))
    (found,) = only(check(config), "cycle")
    assert found.severity == "warning"
    assert "mailboxes of b shed intents" in found.message


def test_a_relay_to_itself_is_a_loop_but_a_schedule_timer_is_not() -> None:
    config = wiring(COUNTER, reactor("echo", "relay", options={"to": "echo.forward"}))
    (found,) = only(check(config), "cycle")
    assert found.loop == ("echo",)
    assert "echo -> echo" in found.message


def test_one_diagnostic_per_loop_group() -> None:
    config = wiring(fan("a", "b.in", "c.in"), fan("b", "a.in"), fan("c", "a.in"))
    (found,) = only(check(config), "cycle")
    assert found.loop == ("a", "b")
    assert "c also take part" in found.message


def test_a_type_without_emits_is_an_info_and_a_failing_one_a_warning() -> None:
    config = wiring(
        COUNTER,
        reactor("m", "mute"),
        reactor("x", "broken"),
        principals=(("cli", ("admin", "m:in", "x:in")),),
    )
    found = check(config)
    assert [(d.code, d.severity, d.path) for d in found] == [
        ("emits-unknown", "info", "reactors[id=m].type"),
        ("emits-unknown", "warning", "reactors[id=x].type"),
    ]
    assert "RuntimeError: boom" in found[1].message
    assert not has_errors(found)


def test_every_code_is_documented_with_a_severity() -> None:
    assert set(CODES) >= {
        "unknown-type", "bad-options", "unknown-verb", "unknown-intent", "unholdable",
        "unreachable", "emit-denied", "cycle", "emits-unknown", "device-conflict",
    }  # fmt: skip
    assert all(severity in ("error", "warning", "info") for severity, _ in CODES.values())
    docs = (Path(__file__).resolve().parents[2] / "docs" / "reactors.md").read_text()
    assert [code for code in CODES if f"| `{code}` | {CODES[code][0]}" not in docs] == []


def test_diagnostic_line_format() -> None:
    line = Diagnostic("unreachable", "warning", "nobody sends", "reactors[id=x]").format()
    assert line == "warning[unreachable] reactors[id=x]: nobody sends"


# -- topology -----------------------------------------------------------------------------------
def test_topology_of_the_example() -> None:
    config = load_config(EXAMPLE, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    doc = topology(config)
    principals = {p["name"]: p for p in doc["principals"]}
    assert principals["guest"]["may_send"] == []
    assert principals["mqtt:greenhouse/sensors"]["may_send"] == [
        "fan-alarm.reading",
        "sensor.temperature",
    ]
    intents = {i["name"]: i for i in doc["intents"]}
    assert intents["sensor.temperature"]["targets"] == [
        {"reactor": "temperature", "verb": "reading",
         "requires": ["sensor:write:temperature"], "written": True},
        {"reactor": "fan-alarm", "verb": "reading",
         "requires": ["sensor:write:temperature"], "written": True},
    ]  # fmt: skip
    assert intents["temperature.reading"]["requires"] == ["temperature:reading"]
    assert intents["temperature.reading"]["senders"] == []
    fan_alarm = next(r for r in doc["reactors"] if r["id"] == "fan-alarm")
    assert fan_alarm["mailbox"] == {"size": 256, "overflow": "drop-oldest"}
    assert fan_alarm["subscribe"] == {"sensor.temperature": "reading"}
    assert fan_alarm["emits"] == []
    assert doc["boot"] == []


def test_render_shows_principal_intent_reactor_and_emits_as_a_tree() -> None:
    config = wiring(
        COUNTER,
        reactor("beat", "schedule", options={"every": 60, "emit": "counter.increment"}),
        reactor("echo", "relay", options={"to": "echo.forward"}),
        principals=(("cli", ("admin", "echo:forward")), ("reactor:beat", ("counter:write",))),
    )
    lines = render_topology(topology(config, types=types))
    text = "\n".join(lines)
    assert (
        "started at boot\n"
        "  beat.start\n"
        "    -> beat.start  (schedule)\n"
        "      emits counter.increment\n"
        "        -> counter.increment  (counter)\n"
        "      emits beat.tick  (own verb: a timer or an inner step)"
    ) in text
    assert "    echo.forward  [echo:forward]\n      -> echo.forward  (relay)\n" in text
    assert "        -> echo.forward  (relay)  (loop)" in text
    assert "  beat  type schedule; verbs start, stop, tick; mailbox 1024 block; " in text
    assert lines[0] == "principals"


def test_forwards_to_a_peer_are_shown_but_not_wires_here() -> None:
    config = wiring(
        COUNTER,
        reactor("up", "relay", options={"to": "counter.increment", "peer": "rb"}),
        principals=(("cli", ("admin", "up:forward")),),
    )
    assert check(config) == []  # counter.increment on rb is rb's to check
    doc = topology(config, types=types)
    up = next(r for r in doc["reactors"] if r["id"] == "up")
    assert (up["emits"], up["forwards"]) == ([], [{"name": "counter.increment", "to": "rb"}])
    text = "\n".join(render_topology(doc))
    assert "emits nothing; forwards counter.increment to rb" in text


def test_actuators_sharing_a_device_must_agree_on_its_line_settings() -> None:
    def actuator(ident: str, device: str, baudrate: int, **fields: Any) -> ReactorConfig:
        options = {"device": device, "baudrate": baudrate}
        return reactor(ident, "actuator", options=options, **fields)

    grants = (("cli", ("admin", "a:write", "b:write", "c:write", "d:write")),)
    same = wiring(actuator("a", "/dev/ttyS0", 9600), actuator("b", "/dev/ttyS0", 9600),
                  principals=grants)  # fmt: skip
    assert check(same) == []
    clash = wiring(
        actuator("a", "/dev/ttyS0", 9600),
        actuator("b", "/dev/ttyS1", 19200),
        actuator("c", "/dev/ttyS0", 19200),
        actuator("d", "/dev/ttyS0", 115200, enabled=False),  # not started: opens nothing
        principals=grants,
    )
    (conflict,) = only(check(clash), "device-conflict")
    assert conflict.format() == (
        "error[device-conflict] reactors[id=c]: /dev/ttyS0 is opened with other settings here:"
        " baudrate 19200 (reactor 'a': 9600); give every reactor on a device the same line"
        " settings"
    )


def test_unknown_emits_and_unknown_types_still_render() -> None:
    config = wiring(reactor("m", "mute"), reactor("x", "nosuch"), principals=(("cli", ("m:in",)),))
    doc = topology(config, types=types)
    text = "\n".join(render_topology(doc))
    assert "emits: unknown (its type does not say)" in text
    x = next(r for r in doc["reactors"] if r["id"] == "x")
    assert (x["known_type"], x["verbs"], x["emits"]) == (False, [], None)


# -- loops, as a property -----------------------------------------------------------------------
def fans(edges: Mapping[int, Sequence[int]], count: int) -> Config:
    nodes = [fan(f"n{i}", *(f"n{j}.in" for j in edges.get(i, ()))) for i in range(count)]
    return wiring(*nodes, principals=(("cli", tuple(f"n{i}:in" for i in range(count))),))


def reachable(edges: Mapping[int, Sequence[int]], start: int) -> set[int]:
    seen: set[int] = set()
    stack = list(edges.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, dict[int, list[int]]]:
    count = draw(st.integers(2, 8))
    pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs)))
    edges: dict[int, list[int]] = {}
    for i, j in chosen:
        edges.setdefault(i, []).append(j)
    return count, edges


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_acyclic_wirings_have_no_loop_and_closing_one_names_a_real_loop(
    dag: tuple[int, dict[int, list[int]]], data: st.DataObject
) -> None:
    count, edges = dag
    assert only(check(fans(edges, count)), "cycle") == []
    closable = [(u, v) for u in range(count) for v in sorted(reachable(edges, u))]
    if not closable:
        return
    u, v = data.draw(st.sampled_from(closable))
    closed = {**edges, v: [*edges.get(v, []), u]}
    (found,) = only(check(fans(closed, count)), "cycle")
    loop = [int(name[1:]) for name in found.loop]
    # Every step of the named loop is a wire, and it must use the new one: the rest is acyclic.
    steps = list(zip(loop, [*loop[1:], loop[0]], strict=True))
    assert all(b in closed.get(a, []) for a, b in steps)
    assert (v, u) in steps
    assert found.severity == "error"


@st.composite
def forests(draw: st.DrawFn) -> tuple[int, dict[int, list[int]]]:
    # Each node has at most one parent with a smaller index: one path between any two nodes.
    count = draw(st.integers(2, 10))
    edges: dict[int, list[int]] = {}
    for child in range(1, count):
        parent = draw(st.none() | st.integers(0, child - 1))
        if parent is not None:
            edges.setdefault(parent, []).append(child)
    return count, edges


@settings(max_examples=150, deadline=None)
@given(forests(), st.data())
def test_closing_a_loop_over_a_unique_path_names_exactly_that_loop(
    forest: tuple[int, dict[int, list[int]]], data: st.DataObject
) -> None:
    count, edges = forest
    closable = [(u, v) for u in range(count) for v in sorted(reachable(edges, u))]
    if not closable:
        return
    u, v = data.draw(st.sampled_from(closable))
    path = [v]
    while path[-1] != u:
        path.append(next(p for p, children in edges.items() if path[-1] in children))
    closed = {**edges, v: [*edges.get(v, []), u]}
    (found,) = only(check(fans(closed, count)), "cycle")
    assert found.loop == tuple(f"n{i}" for i in reversed(path))
    assert found.path == f"reactors[id=n{u}]"

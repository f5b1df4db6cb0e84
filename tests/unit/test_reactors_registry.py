"""The reactor type registry: built-in types, third-party entry points and their failures."""

from __future__ import annotations

import importlib.metadata
import types
from collections.abc import Mapping
from typing import Any

import pytest

from edgeagent.errors import EdgeAgentError
from edgeagent.reactors.builtin.counter import COUNTER
from edgeagent.reactors.model import Effect, Intent, State
from edgeagent.reactors.registry import (
    ENTRY_POINT_GROUP,
    ReactorTypeError,
    builtin_types,
    find_type,
    known_type_names,
)
from edgeagent.reactors.schema import Field, Schema


class Fake:
    """A minimal third-party reactor type."""

    name = "fake"
    verbs: Mapping[str, Schema] = types.MappingProxyType({"poke": Schema()})
    options = Schema((Field("n", "int", default=0),))

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"pokes": 0}

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        return {"pokes": state["pokes"] + 1}, []


def make_fake() -> Fake:
    return Fake()


def broken_factory() -> Fake:
    raise RuntimeError("no licence file")


class Renamed(Fake):
    name = "other"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[importlib.metadata.EntryPoint]:
    """The entry points ``find_type`` sees, backed by a fake module ``fake_reactors``."""
    module = types.ModuleType("fake_reactors")
    module.FAKE = Fake()  # type: ignore[attr-defined]
    module.Fake = Fake  # type: ignore[attr-defined]
    module.make = make_fake  # type: ignore[attr-defined]
    module.broken_factory = broken_factory  # type: ignore[attr-defined]
    module.Renamed = Renamed  # type: ignore[attr-defined]
    module.NOT_A_TYPE = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "fake_reactors", module)
    points: list[importlib.metadata.EntryPoint] = []

    def entry_points(**selection: Any) -> importlib.metadata.EntryPoints:
        assert selection == {"group": ENTRY_POINT_GROUP}
        return importlib.metadata.EntryPoints(points)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return points


def point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_builtin_types() -> None:
    assert sorted(builtin_types()) == [
        "actuator",
        "counter",
        "relay",
        "schedule",
        "threshold",
        "window",
    ]
    assert find_type("counter") is COUNTER


def test_unknown_type_lists_known_ones(plugins: list[importlib.metadata.EntryPoint]) -> None:
    plugins.append(point("fake", "fake_reactors:FAKE"))
    with pytest.raises(ReactorTypeError) as caught:
        find_type("countr")
    assert str(caught.value) == (
        "unknown reactor type 'countr' (did you mean 'counter'?); "
        "known: actuator, counter, fake, relay, schedule, threshold, window"
    )
    assert isinstance(caught.value, EdgeAgentError)
    assert "fake" in known_type_names()


@pytest.mark.parametrize(
    "value", ["fake_reactors:FAKE", "fake_reactors:Fake", "fake_reactors:make"]
)
def test_entry_point_gives_an_object_or_a_factory(
    plugins: list[importlib.metadata.EntryPoint], value: str
) -> None:
    plugins.append(point("fake", value))
    rtype = find_type("fake")
    assert isinstance(rtype, Fake)
    assert rtype.initial_state({}) == {"pokes": 0}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("missing_package.reactors:X", "failed to load: ModuleNotFoundError"),
        ("fake_reactors:nothing_here", "failed to load: AttributeError"),
        (
            "fake_reactors:broken_factory",
            "calling the factory failed: RuntimeError: no licence file",
        ),
        ("fake_reactors:NOT_A_TYPE", "gives no reactor type: 'name' is not a non-empty str"),
        ("fake_reactors:Renamed", "gives a reactor type named 'other'"),
    ],
)
def test_broken_entry_point_names_itself_and_the_cause(
    plugins: list[importlib.metadata.EntryPoint], value: str, fragment: str
) -> None:
    plugins.append(point("fake", value))
    with pytest.raises(ReactorTypeError) as caught:
        find_type("fake")
    message = str(caught.value)
    assert message.startswith(f"entry point 'fake = {value}' (group edgeagent.reactors)")
    assert fragment in message


def test_a_type_provided_twice_is_refused(plugins: list[importlib.metadata.EntryPoint]) -> None:
    plugins.extend([point("fake", "fake_reactors:FAKE"), point("fake", "fake_reactors:make")])
    with pytest.raises(ReactorTypeError, match="provided twice"):
        find_type("fake")


def test_builtin_names_win(plugins: list[importlib.metadata.EntryPoint]) -> None:
    plugins.append(point("counter", "missing_package:X"))
    assert find_type("counter") is COUNTER

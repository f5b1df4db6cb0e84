"""Replay is exact: for any sequence of intents and any point where the agent stops, the
state rebuilt from snapshot + journal equals the state it had live, and going on from there
ends where an uninterrupted run (a pure fold of ``handle``) ends."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.config.model import ReactorConfig
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.journal import Journal
from edgeagent.reactors.model import Context, Intent
from edgeagent.reactors.registry import find_type
from edgeagent.reactors.runtime import ReactorRuntime

REACTORS = (
    ReactorConfig(id="c", type="counter", snapshot_every=3),
    ReactorConfig(id="w", type="window", options={"seconds": 4}, snapshot_every=2),
    ReactorConfig(id="t", type="threshold", options={"high": 10, "low": 5}, snapshot_every=5),
)
POLICY = Policy.build({}, {"cli": ["c:*", "w:*", "t:*"]})

values = st.floats(min_value=-50, max_value=50, allow_nan=False).map(lambda v: round(v, 3))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("c.increment"), st.fixed_dictionaries({"by": st.integers(-5, 5)})),
        st.tuples(st.just("c.reset"), st.just({})),
        st.tuples(st.just("w.reading"), st.fixed_dictionaries({"value": values})),
        st.tuples(st.just("t.reading"), st.fixed_dictionaries({"value": values})),
    ),
    max_size=30,
)


def fold(ops: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The states an uninterrupted run ends with: ``handle`` applied in order, nothing else."""
    states = {}
    options = {}
    for config in REACTORS:
        rtype = find_type(config.type)
        options[config.id] = rtype.options.validate(dict(config.options))
        states[config.id] = rtype.initial_state(options[config.id])
    for at, (name, payload) in enumerate(ops, start=1):
        reactor, verb = name.split(".")
        rtype = find_type(next(c.type for c in REACTORS if c.id == reactor))
        checked = rtype.verbs[verb].validate(payload)
        intent = Intent(name, checked, Context("cli", "t" * 16, "cli", float(at)))
        states[reactor], _ = rtype.handle(states[reactor], verb, intent, options[reactor])
    return states


async def run_with_a_restart(path: Path, ops: list[tuple[str, dict[str, Any]]], stop: int) -> None:
    ticks = itertools.count(1)

    def clock() -> float:
        return float(next(ticks))

    async def session(part: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        async with (
            Journal(path) as journal,
            ReactorRuntime(REACTORS, POLICY, journal, clock=clock) as runtime,
        ):
            replayed = {c.id: runtime.show(c.id)["reactor_state"] for c in REACTORS}
            for name, payload in part:
                await runtime.submit(name, payload, principal="cli", source="cli")
            live = {c.id: runtime.show(c.id)["reactor_state"] for c in REACTORS}
        return {"replayed": replayed, "live": live}

    first = await session(ops[:stop])
    second = await session(ops[stop:])
    assert second["replayed"] == first["live"]  # rebuilt exactly where it stopped
    assert second["live"] == fold(ops)  # and it goes on as if it never stopped


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, data=st.data())
def test_any_stopping_point_replays_to_the_live_state(
    tmp_path: Path, ops: list[tuple[str, dict[str, Any]]], data: st.DataObject
) -> None:
    stop = data.draw(st.integers(0, len(ops)), label="stop")
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "journal.sqlite3"  # fresh per example
    asyncio.run(run_with_a_restart(path, ops, stop))

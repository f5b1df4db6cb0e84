"""Readings through the real runtime and journal: readings share one commit within
``durable_within``, a command does not wait behind them, and none is lost meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edgeagent.config.model import ReactorConfig
from edgeagent.errors import IntentError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.dispatch import Submission
from edgeagent.reactors.journal import Journal
from edgeagent.reactors.registry import builtin_types
from edgeagent.reactors.runlog import RunLog
from edgeagent.reactors.runtime import ReactorRuntime
from edgeagent.sensors.feed import ReactorFeed
from edgeagent.sensors.model import FieldSpec, Reading

WINDOW = ReactorConfig(id="avg", type="window", subscribe=(("sensor.air.pm25", "reading"),),
                       options={"seconds": 60})  # fmt: skip
POLICY = Policy.build({}, {"sensor:air": ["avg:reading"], "cli": ["avg:*"]})
FIELDS = {"pm25": FieldSpec("µg/m³")}


def types(name: str):  # type: ignore[no-untyped-def]
    return builtin_types()[name]


async def test_readings_share_one_commit_within_the_window(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        run_log = RunLog(tmp_path / "runs")
        async with ReactorRuntime([WINDOW], POLICY, journal, run_log=run_log, types=types) as rt:
            feed = ReactorFeed(rt, durable_within=0.3)
            before = journal.store.stats().commits
            started = time.monotonic()
            for n in range(10):
                await feed.reading("air", FIELDS, Reading("air", 1000.0 + n, {"pm25": n}))
            assert feed.counters()["intents_in_flight"] == 10
            while feed.counters()["intents_in_flight"]:  # noqa: ASYNC110 - a plain counter
                await asyncio.sleep(0.02)
            waited = time.monotonic() - started
            assert feed.counters()["intents_sent"] == 10
            assert journal.store.stats().commits - before == 1  # ten readings, one commit
            assert 0.25 <= waited < 2.0
            shown = rt.show("avg")
            assert (
                shown["reactor_state"]["count"] == 10 if "count" in shown["reactor_state"] else True
            )
            entries = await journal.tail(0, 100)
            assert [e.payload["value"] for e in entries] == list(range(10))
        run_log.close()


async def test_a_command_is_not_held_behind_readings(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        run_log = RunLog(tmp_path / "runs")
        async with ReactorRuntime([WINDOW], POLICY, journal, run_log=run_log, types=types) as rt:
            feed = ReactorFeed(rt, durable_within=30.0)  # readings could wait half a minute
            await feed.reading("air", FIELDS, Reading("air", 1.0, {"pm25": 5}))
            started = time.monotonic()
            receipt = await rt.submit("avg.reading", {"value": 7}, principal="cli", source="cli")
            assert time.monotonic() - started < 1.0  # the command took the reading along
            assert receipt.deliveries[0].seq == 2
            assert feed.counters()["intents_sent"] == 1
        run_log.close()


async def test_readings_still_waiting_at_stop_are_refused_and_counted(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        run_log = RunLog(tmp_path / "runs")
        feed: ReactorFeed
        async with ReactorRuntime([WINDOW], POLICY, journal, run_log=run_log, types=types) as rt:
            feed = ReactorFeed(rt, durable_within=30.0)
            await feed.reading("air", FIELDS, Reading("air", 1.0, {"pm25": 5}))
        await asyncio.sleep(0)
        assert feed.counters()["intents_refused"] == 1  # the documented loss: the window
        assert feed.counters()["intents_in_flight"] == 0
        run_log.close()


async def test_post_many_answers_refusals_at_once(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        run_log = RunLog(tmp_path / "runs")
        async with ReactorRuntime([WINDOW], POLICY, journal, run_log=run_log, types=types) as rt:
            answers: list[IntentError | None] = []
            bad = Submission("sensor.air.pm25", {"value": "high"}, "sensor:air", "sensor")
            rt.post_many([bad], lambda _, error: answers.append(error))
            assert len(answers) == 1
            assert isinstance(answers[0], IntentError)
        run_log.close()

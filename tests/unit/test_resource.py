"""The lifecycle module: backoff arithmetic, supervised restarts on a simulated clock, and the
task owner (children, failure, fatal parts, entering from a short-lived task)."""

from __future__ import annotations

import asyncio
import random

import pytest

from edgeagent.resource import (
    Backoff,
    LoopState,
    PartState,
    Report,
    Reporting,
    TaskOwner,
    supervise,
)


def test_backoff_doubles_up_to_the_maximum_without_jitter() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, multiplier=2.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_its_spread() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.2)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng) for _ in range(500)]
    assert min(delays) >= 0.8
    assert max(delays) <= 1.2
    assert len(set(delays)) > 100  # jittered, not constant


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_supervise_restarts_a_failing_loop_with_backoff_and_counts() -> None:
    clock = SimClock()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        clock.now += 1.0
        if runs < 4:
            raise OSError(f"broker gone ({runs})")

    loop = supervise(
        flaky, name="t", backoff=Backoff(initial=1, jitter=0), clock=clock, sleep=clock.sleep
    )
    await loop.run()
    assert runs == 4
    assert loop.restarts == 3
    assert clock.slept == [1.0, 2.0, 4.0]
    assert loop.last_error == "OSError: broker gone (3)"
    assert loop.state is LoopState.DONE


async def test_supervise_starts_over_after_a_healthy_run() -> None:
    clock = SimClock()
    durations = iter([1.0, 1.0, 100.0, 1.0])

    async def run() -> None:
        duration = next(durations, None)
        if duration is None:
            return
        clock.now += duration
        raise RuntimeError("x")

    backoff = Backoff(initial=1, jitter=0, reset_after=60)
    await supervise(run, name="t", backoff=backoff, clock=clock, sleep=clock.sleep).run()
    # 1 s, then 2 s; the 100 s run was healthy, so its failure starts over at 1 s, then 2 s.
    assert clock.slept == [1.0, 2.0, 1.0, 2.0]


async def test_supervise_gives_up_after_max_restarts_and_reraises() -> None:
    clock = SimClock()

    async def broken() -> None:
        raise ValueError("bad")

    loop = supervise(broken, name="t", clock=clock, sleep=clock.sleep, max_restarts=2)
    with pytest.raises(ValueError, match="bad"):
        await loop.run()
    assert loop.restarts == 2
    assert loop.state is LoopState.DONE


async def test_supervise_never_catches_cancellation() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    loop = supervise(forever, name="t")
    task = asyncio.create_task(loop.run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.restarts == 0
    assert loop.state is LoopState.DONE


class Part(TaskOwner):
    def __init__(self, *, fatal: bool = False) -> None:
        super().__init__("part", fatal=fatal)
        self.ticks = 0

    async def start(self) -> None:
        await self.start_tasks()

    async def close(self) -> None:
        await self.stop_tasks()

    def counters(self) -> dict[str, int]:
        return {"ticks": self.ticks}


async def test_task_owner_children_stop_with_the_part_and_are_named() -> None:
    part = Part()
    async with part:
        assert part.report().state is PartState.RUNNING
        gate = asyncio.Event()
        child = part.spawn(gate.wait(), "wait")
        assert child.get_name() == "edgeagent[part].wait"
        await asyncio.sleep(0)
    assert child.cancelled()
    assert part.report().state is PartState.STOPPED
    await part.close()  # idempotent


async def test_a_part_entered_from_a_short_lived_task_outlives_it() -> None:
    part = Part()

    async def enter() -> None:  # a reload's request task, say
        await part.start()

        async def tick() -> None:
            while True:
                part.ticks += 1
                await asyncio.sleep(0)

        part.spawn(tick(), "tick")

    await asyncio.create_task(enter())
    before = part.ticks
    await asyncio.sleep(0.01)
    assert part.ticks > before
    await part.close()


async def test_a_crashed_child_fails_the_part_without_touching_its_caller() -> None:
    part = Part()
    await part.start()

    async def crash() -> None:
        raise RuntimeError("loop bug")

    part.spawn(crash(), "crash")
    error = await asyncio.wait_for(part.failed(), 1)
    assert isinstance(error, RuntimeError)
    report = part.report()
    assert report.state is PartState.FAILED
    assert report.error == "RuntimeError: loop bug"
    assert not report.healthy
    assert part.crashes == 1
    await part.close()
    assert part.report().state is PartState.FAILED


async def test_a_supervised_child_restarts_and_the_part_reports_degraded_meanwhile() -> None:
    part = Part()
    failures = 0
    in_backoff = asyncio.Event()
    ticked = asyncio.Event()

    async def flaky() -> None:
        nonlocal failures
        failures += 1
        if failures == 1:
            in_backoff.set()
            raise OSError("unplugged")
        part.ticks += 1
        ticked.set()
        await asyncio.Event().wait()

    async with part:
        loop = part.supervise(flaky, "replug", backoff=Backoff(initial=0.05, jitter=0))
        await in_backoff.wait()
        await asyncio.sleep(0)
        assert part.report().state is PartState.DEGRADED
        await asyncio.wait_for(ticked.wait(), 2)
        report = part.report()
        assert report.state is PartState.RUNNING
        assert report.counters == {"ticks": 1, "loop_restarts": 1}
        assert report.detail["loops"]["edgeagent[part].replug"]["last_error"] == (
            "OSError: unplugged"
        )
        assert loop.restarts == 1


def test_report_document_and_protocol() -> None:
    report = Report(PartState.RUNNING, {"sent": 3}, {"address": "x"})
    assert report.document() == {
        "state": "running",
        "counters": {"sent": 3},
        "detail": {"address": "x"},
    }
    assert isinstance(Part(), Reporting)


async def test_spawn_before_start_refuses() -> None:
    part = Part()

    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError, match="while not running"):
        part.spawn(nothing(), "x")

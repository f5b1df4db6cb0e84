"""How the agent's long-lived parts start, run their loops, report and stop: one spelling.

Three pieces, used together:

``AsyncResource``
    ``async with part:`` is ``await part.start()`` ... ``await part.close()``. ``close`` is
    idempotent: the composition root's ``AsyncExitStack``, an explicit ``close`` (a test, a
    failed start) and a reload that swaps parts may all call it.

``TaskOwner``
    A part that has background work owns **one** task, the *owner task*, which enters the
    part's ``asyncio.TaskGroup`` and keeps it open until the part closes (how aiomqtt owns its
    client's loops). Children are created in that group with ``spawn`` (one-off work: a
    request, a handoff) or ``supervise`` (a loop that must come back: a timer wheel, a
    reconnect, a hot-plug watcher). Because the group belongs to the owner task and not to
    whoever entered the part, a part can be entered from any task (a reload's request task
    included) and a crash inside it never unwinds its caller. When a child that is not
    supervised fails, the group ends: the part becomes ``FAILED``, the error is logged and
    counted, and, only if the part was built ``fatal=True``, ``failed()`` wakes the
    composition root, which stops the agent.

``supervise`` / ``Supervised``
    Runs a loop; when it raises, logs the error, counts a restart, sleeps a jittered
    exponential backoff (``Backoff``) and runs it again. A loop that ran longer than
    ``Backoff.reset_after`` starts over from the first delay. A loop that returns is done.
    Cancellation is never caught. The backoff arithmetic is pure (``Backoff.delay``); the
    clock, sleep and random source are injected so tests run on simulated time.

The stats seam
    Every part reports one way: ``report() -> Report`` (a ``Reporting`` protocol) with its
    state, counters (numbers only, so metrics can export them as they are) and a JSON detail.
    ``TaskOwner.report`` fills in the state and the supervised loops; parts add their own
    counters by overriding ``counters`` and ``detail``. The API layer gathers the reports into
    the ``status``/``health`` documents.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

log = logging.getLogger("edgeagent.resource")

Number = int | float


class PartState(enum.StrEnum):
    """Where a part is in its life (``TaskOwner`` and every ``Report``)."""

    NEW = "new"  # built, not started
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"  # running, but a supervised loop is backing off, or a feed is gone
    FAILED = "failed"  # a child crashed and the part's tasks ended
    STOPPED = "stopped"


HEALTHY_STATES = frozenset({PartState.RUNNING})


@dataclass(frozen=True, slots=True)
class Report:
    """One part's state and numbers, as every part reports them (the stats seam).

    ``counters`` holds numbers only (totals and gauges), so metrics export them unchanged;
    ``detail`` holds anything else JSON can carry (addresses, names, last errors).
    """

    state: PartState
    counters: Mapping[str, Number] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY_STATES

    def document(self) -> dict[str, Any]:
        """The JSON form used by ``status``, ``health`` and ``info``."""
        doc: dict[str, Any] = {"state": str(self.state), "counters": dict(self.counters)}
        if self.detail:
            doc["detail"] = dict(self.detail)
        if self.error is not None:
            doc["error"] = self.error
        return doc


@runtime_checkable
class Reporting(Protocol):
    """Anything the status document can ask how it is doing."""

    def report(self) -> Report: ...


class AsyncResource(abc.ABC):
    """``async with part:`` is ``await part.start()`` ... ``await part.close()``."""

    async def start(self) -> None:  # noqa: B027 - a part that opens lazily needs no start
        """Open what the part needs. Raises when it cannot start (nothing is left open)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything the part holds. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# -- supervision ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff: ``initial * multiplier**n``, capped at ``maximum``, each
    delay scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so a fleet that lost its
    broker at once does not come back at once."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after: float = 60.0  # a run this long counts as healthy: the next failure starts over

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The pause before restart number ``failures`` (1 for the first)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, failures - 1))
        if not self.jitter:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1.0 + spread))


class LoopState(enum.StrEnum):
    IDLE = "idle"  # not started yet
    RUNNING = "running"
    BACKOFF = "backoff"  # failed, waiting to be run again
    DONE = "done"  # returned, or cancelled


class Supervised:
    """One supervised loop: its state, restarts and last error (see ``supervise``)."""

    def __init__(
        self,
        run: Callable[[], Awaitable[None]],
        *,
        name: str,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        max_restarts: int | None = None,
    ) -> None:
        self.name = name
        self.backoff = backoff
        self.state = LoopState.IDLE
        self.restarts = 0
        self.failures = 0  # consecutive, since the last healthy run
        self.last_error: str | None = None
        self.last_failure_at: float | None = None
        self._run = run
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._max_restarts = max_restarts

    async def run(self) -> None:
        """Run the loop until it returns, restarting it after each failure. A loop that fails
        more than ``max_restarts`` times in a row re-raises its last error."""
        try:
            while True:
                self.state = LoopState.RUNNING
                started = self._clock()
                try:
                    await self._run()
                except Exception as exc:
                    now = self._clock()
                    if now - started >= self.backoff.reset_after:
                        self.failures = 0
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.last_failure_at = now
                    if self._max_restarts is not None and self.failures > self._max_restarts:
                        log.error("%s failed %d times in a row, giving up: %s",
                                  self.name, self.failures, self.last_error)  # fmt: skip
                        raise
                    pause = self.backoff.delay(self.failures, self._rng)
                    self.restarts += 1
                    log.warning(
                        "%s crashed (%s); restart %d in %.2f s",
                        self.name,
                        self.last_error,
                        self.restarts,
                        pause,
                        exc_info=exc if self.failures == 1 else None,
                    )
                    self.state = LoopState.BACKOFF
                    await self._sleep(pause)
                    continue
                return
        finally:
            self.state = LoopState.DONE

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": str(self.state), "restarts": self.restarts}
        if self.last_error is not None:
            doc["last_error"] = self.last_error
        return doc


def supervise(
    run: Callable[[], Awaitable[None]],
    *,
    name: str,
    backoff: Backoff = Backoff(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    max_restarts: int | None = None,
) -> Supervised:
    """A ``Supervised`` loop around ``run``; await its ``run()`` (usually as a task of a
    ``TaskOwner`` through ``TaskOwner.supervise``)."""
    return Supervised(
        run,
        name=name,
        backoff=backoff,
        clock=clock,
        sleep=sleep,
        rng=rng,
        max_restarts=max_restarts,
    )


# -- the task owner ------------------------------------------------------------------------


class TaskOwner(AsyncResource):
    """A part whose background tasks live in one TaskGroup run by one owner task.

    Subclasses call ``await self.start_tasks()`` in ``start`` (after opening what the tasks
    use) and ``await self.stop_tasks()`` in ``close`` (before releasing it), and create their
    tasks with ``spawn`` or ``supervise`` once started. ``name`` names every task: children are
    ``edgeagent[<name>].<what>``, the owner task is ``edgeagent-owner:<name>``.
    """

    def __init__(self, name: str, *, fatal: bool = False) -> None:
        self.part_name = name
        self.fatal = fatal
        self.part_state = PartState.NEW
        self.failure: BaseException | None = None
        self.crashes = 0
        self.child_errors = 0
        self._group: asyncio.TaskGroup | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._failed = asyncio.Event()
        self._loops: list[Supervised] = []

    # -- lifecycle

    async def start_tasks(self) -> None:
        """Start the owner task and wait until its group is open."""
        if self._owner is not None:
            return
        self.part_state = PartState.STARTING
        opened = asyncio.get_running_loop().create_future()
        self._stopping = asyncio.Event()
        self._owner = asyncio.get_running_loop().create_task(
            self._own(opened, self._stopping), name=f"edgeagent-owner:{self.part_name}"
        )
        await opened
        self.part_state = PartState.RUNNING

    async def stop_tasks(self) -> None:
        """Cancel every child, wait for them all, end the owner task. Idempotent; never
        raises a child's failure (that was logged and reported when it happened)."""
        owner, self._owner = self._owner, None
        if owner is None:
            return
        self._group = None
        if not owner.done():
            owner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await owner
        if self.part_state is not PartState.FAILED:
            self.part_state = PartState.STOPPED

    @property
    def running(self) -> bool:
        return self._group is not None

    async def failed(self) -> BaseException:
        """Wait until the part's tasks end with an error; returns it. The composition root
        awaits this for parts built ``fatal=True``."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    # -- children

    def spawn(
        self, work: Coroutine[Any, Any, Any], what: str, *, isolated: bool = False
    ) -> asyncio.Task[Any]:
        """Run ``work`` as a child of the part, named ``edgeagent[<name>].<what>``.

        A child that raises ends the part (use ``supervise`` for work that should come back),
        unless it is ``isolated``: per-request work (a DNS answer, a control request) whose
        failure is that request's alone, logged and counted in ``child_errors``."""
        group = self._group
        if group is None:
            work.close()
            raise RuntimeError(f"{self.part_name}: spawn({what!r}) while not running")
        name = f"edgeagent[{self.part_name}].{what}"
        if isolated:
            work = self._isolate(work, name)
        return group.create_task(work, name=name)

    async def _isolate(self, work: Coroutine[Any, Any, Any], name: str) -> Any:
        try:
            return await work
        except Exception:
            self.child_errors += 1
            # Once with the traceback, then at DEBUG: a request that always fails must not
            # flood the journal.
            level = logging.WARNING if self.child_errors == 1 else logging.DEBUG
            log.log(level, "%s failed", name, exc_info=True)
            return None

    def supervise(
        self,
        run: Callable[[], Awaitable[None]],
        what: str,
        *,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
        max_restarts: int | None = None,
    ) -> Supervised:
        """Run the loop ``run`` as a supervised child (restarted with backoff when it fails);
        its state shows in ``report()``."""
        loop = supervise(
            run,
            name=f"edgeagent[{self.part_name}].{what}",
            backoff=backoff,
            clock=clock,
            max_restarts=max_restarts,
        )
        self._loops.append(loop)
        self.spawn(loop.run(), what)
        return loop

    @property
    def loops(self) -> list[Supervised]:
        return list(self._loops)

    # -- the stats seam

    def counters(self) -> Mapping[str, Number]:
        """The part's own counters; subclasses override."""
        return {}

    def detail(self) -> Mapping[str, Any]:
        """The part's own JSON detail; subclasses override."""
        return {}

    def report(self) -> Report:
        state = self.part_state
        if state is PartState.RUNNING and any(
            loop.state is LoopState.BACKOFF for loop in self._loops
        ):
            state = PartState.DEGRADED
        counters: dict[str, Number] = dict(self.counters())
        restarts = sum(loop.restarts for loop in self._loops)
        if self._loops:
            counters["loop_restarts"] = restarts
        if self.child_errors:
            counters["child_errors"] = self.child_errors
        detail: dict[str, Any] = dict(self.detail())
        if self._loops:
            detail["loops"] = {loop.name: loop.document() for loop in self._loops}
        error = None
        if self.failure is not None:
            error = f"{type(self.failure).__name__}: {self.failure}"
        return Report(state, counters, detail, error)

    # -- the owner task

    async def _own(self, opened: asyncio.Future[None], stopping: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                opened.set_result(None)
                await stopping.wait()
        except asyncio.CancelledError:
            if not opened.done():
                opened.cancel()
            raise
        except Exception as exc:  # a child failed: the group ended
            self._group = None
            failure = _first_failure(exc)
            self.failure = failure
            self.crashes += 1
            self.part_state = PartState.FAILED
            log.error(
                "%s failed%s: %s",
                self.part_name,
                " (fatal: the agent stops)" if self.fatal else "",
                failure,
                exc_info=failure,
            )
            self._failed.set()
        finally:
            self._group = None


def _first_failure(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc

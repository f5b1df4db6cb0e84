"""The sensors part: one supervised loop per sensor, from its input to readings.

Theory of operation
-------------------
``SensorsService`` is a ``TaskOwner``; each configured sensor runs as a supervised loop of it
(``edgeagent[sensors].sensor:<id>``), so a loop that fails (a read error, an adapter pulled
out) is restarted with jittered backoff and counted, and never takes the agent or another
sensor with it. What each platform's loop does:

- ``serial``: wait until the device path exists (state "waiting for device": an unplugged
  USB adapter's ``/dev/serial/by-id`` link is gone), open it with pyserial at the sensor's
  line settings, and read what the kernel has whenever the descriptor is readable (the event
  loop's reader; nothing blocks). Bytes go through the framer and the parser
  (``framing``/``parsers``) into the pipeline. A read error or end of file closes the port,
  counts a reopen and raises, so the supervisor retries after its backoff.
- ``system``: every ``interval``, read the board's metrics in a worker thread
  (``system_reader``); a metric the board lacks is logged once, shown in the sensor's detail,
  and never becomes an error.
- ``simulated``: every ``interval``, the next sample of the deterministic simulator.

Every reading goes to the sensor's ``last`` (what ``edgeagent sensors`` shows), to a bounded
ring of recent readings numbered in order (``recent(after, wait)``: how ``edgeagent sensors
watch`` follows them; a watcher that falls more than the ring behind skips ahead), and to the
``sink`` when one is given (the reactors).

Timer-driven filters (heartbeat, timeout, debounce, throttle_average) are fired by the same
loop: it waits for input or the pipeline's next deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import serial

from edgeagent.config.model import SensorConfig
from edgeagent.errors import TransportError
from edgeagent.resource import Backoff, Number, TaskOwner
from edgeagent.sensors.fields import line_settings_of
from edgeagent.sensors.filters import FilterChain
from edgeagent.sensors.framing import build_framer
from edgeagent.sensors.model import FieldSpec, ParseError, Reading
from edgeagent.sensors.parsers import Parser, build_parser
from edgeagent.sensors.pipeline import Pipeline, SensorState, reading_payload
from edgeagent.sensors.simulated import DEFAULT_FIELDS, SimulatedSensor
from edgeagent.sensors.system import METRICS, AvailabilityWatch
from edgeagent.sensors.system_reader import read_metrics
from edgeagent.serial.ports import SerialPorts

log = logging.getLogger("edgeagent.sensors")

RECENT = 1024  # readings kept for watchers
READ_CHUNK = 4096
DEVICE_POLL = 1.0  # seconds between looks for an unplugged device's path
REOPEN_BACKOFF = Backoff(initial=0.5, maximum=10.0)


class ReadingSink(Protocol):
    """Where readings go besides ``last`` and the watchers (the reactors: ``feed``)."""

    async def reading(
        self, sensor: str, fields: Mapping[str, FieldSpec], reading: Reading
    ) -> None: ...

    def counters(self) -> Mapping[str, Number]: ...


class SensorRunner:
    """One sensor: its config, pipeline, state and the input-specific pieces."""

    def __init__(self, config: SensorConfig) -> None:
        self.config = config
        self.state = SensorState.STARTING
        self.error: str | None = None
        self.availability = AvailabilityWatch()
        fields = dict(config.fields)
        if config.platform == "system" and not fields:
            fields = {n: f for m in config.metrics for n, f in METRICS[m].fields.items()}
        if config.platform == "simulated" and not fields:
            fields = dict(DEFAULT_FIELDS)
        filters = config.filters
        chain = (lambda: FilterChain.from_configs(filters)) if filters else None
        self.pipeline = Pipeline(config.id, fields, chain)
        self.parser: Parser | None = None
        if config.platform == "serial" and config.parser is not None:
            self.parser = build_parser(config.parser)

    def document(self, now: float) -> dict[str, Any]:
        stats = self.pipeline.stats
        last = self.pipeline.last
        doc: dict[str, Any] = {
            "id": self.config.id,
            "platform": self.config.platform,
            "state": str(self.state),
            "frames": stats.frames,
            "readings": stats.readings,
            "dropped": dict(sorted(stats.dropped.items())),
            "reopens": stats.reopens,
            "last": reading_payload(last, self.pipeline.fields) if last else None,
            "age": round(now - last.ts, 3) if last else None,
        }
        if self.config.port:
            doc["port"] = self.config.port
        if self.error:
            doc["error"] = self.error
        if self.availability.unavailable:
            doc["unavailable"] = dict(self.availability.unavailable)
        return doc


class SensorsService(TaskOwner):
    """Every configured sensor (see the module docstring)."""

    def __init__(
        self,
        sensors: Sequence[SensorConfig],
        *,
        state_dir: Path,
        sink: ReadingSink | None = None,
        ports: SerialPorts | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        root: Path = Path("/"),
        backoff: Backoff = REOPEN_BACKOFF,
    ) -> None:
        super().__init__("sensors")
        self.runners = {config.id: SensorRunner(config) for config in sensors}
        self._state_dir = state_dir
        self._sink = sink
        own = {c.port: line_settings_of(c) for c in sensors if c.platform == "serial" and c.port}
        self._ports = ports if ports is not None else SerialPorts(own)
        self._own_ports = ports is None
        self._clock = clock  # readings' times (seconds since the epoch)
        self._monotonic = monotonic  # filters and intervals: immune to clock steps
        self._root = root
        self._backoff = backoff
        self._recent: deque[tuple[int, Reading]] = deque(maxlen=RECENT)
        self._seq = 0
        self._new_reading = asyncio.Event()

    async def start(self) -> None:
        await self.start_tasks()
        for runner in self.runners.values():
            config = runner.config
            where = config.port if config.platform == "serial" else f"every {config.interval:g} s"
            log.info("sensor %s: %s, %s (edgeagent sensors watch %s)",
                     config.id, config.platform, where, config.id)  # fmt: skip
            self.supervise(
                lambda runner=runner: self._run(runner),  # type: ignore[misc]
                f"sensor:{runner.config.id}",
                backoff=self._backoff,
            )

    async def close(self) -> None:
        await self.stop_tasks()
        if self._own_ports:
            await self._ports.close()
        for runner in self.runners.values():
            runner.state = SensorState.STOPPED

    # -- what the API reads

    def sensors_document(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [runner.document(now) for runner in self.runners.values()]

    @property
    def last_seq(self) -> int:
        return self._seq

    async def recent(
        self, after: int, *, wait: float = 0.0, sensor: str | None = None
    ) -> list[tuple[int, Reading]]:
        """Readings numbered above ``after`` (of ``sensor``, or all); with ``wait`` seconds,
        until at least one arrives or the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            found = [
                (seq, r)
                for seq, r in self._recent
                if seq > after and (sensor is None or r.sensor == sensor)
            ]
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found
            event = self._new_reading
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await event.wait()

    def counters(self) -> dict[str, Number]:
        runners = self.runners.values()
        counters: dict[str, Number] = {
            "sensors": len(self.runners),
            "sensors_open": sum(r.state is SensorState.OPEN for r in runners),
            "frames": sum(r.pipeline.stats.frames for r in runners),
            "readings": sum(r.pipeline.stats.readings for r in runners),
            "dropped": sum(r.pipeline.stats.dropped_total for r in runners),
            "reopens": sum(r.pipeline.stats.reopens for r in runners),
        }
        if self._sink is not None:
            counters.update(self._sink.counters())
        return counters

    def detail(self) -> dict[str, Any]:
        return {runner.config.id: str(runner.state) for runner in self.runners.values()}

    # -- the loops

    async def _run(self, runner: SensorRunner) -> None:
        platform = runner.config.platform
        if platform == "serial":
            await self._run_serial(runner)
        elif platform == "system":
            await self._run_system(runner)
        else:
            await self._run_simulated(runner)

    async def _run_simulated(self, runner: SensorRunner) -> None:
        config = runner.config
        simulator = SimulatedSensor(
            runner.pipeline.fields, seed=config.seed, interval=config.interval
        )
        runner.state = SensorState.OPEN
        index = 0
        while True:
            await self._emit(
                runner,
                runner.pipeline.feed(self._monotonic(), simulator.sample(index), ts=self._clock()),
            )
            index += 1
            await self._wait(runner, config.interval)

    async def _run_system(self, runner: SensorRunner) -> None:
        config = runner.config
        runner.state = SensorState.OPEN
        while True:
            result = await asyncio.to_thread(
                read_metrics, config.metrics, root=self._root, state_dir=self._state_dir
            )
            for change in runner.availability.observe(result.probe):
                if change.reason is None:
                    log.info("sensor %s: %s is available again", config.id, change.metric)
                else:
                    log.info("sensor %s: %s is not available here: %s", config.id,
                             change.metric, change.reason)  # fmt: skip
            await self._emit(
                runner, runner.pipeline.feed(self._monotonic(), result.values, ts=self._clock())
            )
            await self._wait(runner, config.interval)

    async def _run_serial(self, runner: SensorRunner) -> None:
        config = runner.config
        assert config.port is not None
        while not await asyncio.to_thread(os.path.exists, config.port):
            runner.state = SensorState.WAITING
            await self._wait(runner, DEVICE_POLL)
        try:
            port = await self._ports.acquire(config.port)
        except TransportError as exc:
            runner.state, runner.error = SensorState.ERROR, str(exc)
            raise
        runner.state, runner.error = SensorState.OPEN, None
        log.info("sensor %s: %s open at %d baud", config.id, config.port, config.baud)
        framer = build_framer(config.framing)
        readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                await self._wait_event(runner, readable)
                if not readable.is_set():
                    continue  # a filter deadline, handled by _wait_event
                readable.clear()
                try:
                    data = port.read(READ_CHUNK)
                except (serial.SerialException, OSError) as exc:
                    runner.pipeline.stats.reopens += 1
                    runner.state, runner.error = SensorState.ERROR, _reason(exc)
                    # Unwatch before the close: a reused descriptor number must start clean.
                    loop.remove_reader(fd)
                    await self._ports.drop(config.port, port, runner.error)
                    raise TransportError(f"sensor {config.id}: reading {config.port} failed: "
                                         f"{runner.error}") from exc  # fmt: skip
                before = dict(framer.dropped)
                frames = framer.feed(data)
                for reason, count in framer.dropped.items():
                    if count > before.get(reason, 0):
                        runner.pipeline.stats.drop(reason, count - before.get(reason, 0))
                for frame in frames:
                    await self._frame(runner, frame)
        finally:
            # The port stays open: SerialPorts owns it (an actuator may write to it too).
            loop.remove_reader(fd)

    async def _frame(self, runner: SensorRunner, frame: bytes) -> None:
        assert runner.parser is not None
        try:
            values = runner.parser.parse(frame)
        except ParseError as exc:
            runner.pipeline.stats.frames += 1
            runner.pipeline.stats.drop(exc.reason)
            return
        await self._emit(runner, runner.pipeline.feed(self._monotonic(), values, ts=self._clock()))

    # -- waiting, with the filters' timers

    async def _wait(self, runner: SensorRunner, seconds: float) -> None:
        """Sleep ``seconds``, firing the pipeline's timer filters when they fall due."""
        end = self._monotonic() + seconds
        while (now := self._monotonic()) < end:
            deadline = runner.pipeline.next_deadline()
            until = end if deadline is None else min(end, deadline)
            await asyncio.sleep(max(0.0, until - now))
            await self._fire_due(runner, deadline)

    async def _wait_event(self, runner: SensorRunner, event: asyncio.Event) -> None:
        """Until ``event`` is set or the pipeline's next deadline (then fire it)."""
        deadline = runner.pipeline.next_deadline()
        if deadline is None:
            await event.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - self._monotonic())):
                await event.wait()
        await self._fire_due(runner, deadline)

    async def _fire_due(self, runner: SensorRunner, deadline: float | None) -> None:
        if deadline is not None and self._monotonic() >= deadline:
            reading = runner.pipeline.fire(self._monotonic(), ts=self._clock())
            await self._emit(runner, reading)

    async def _emit(self, runner: SensorRunner, reading: Reading | None) -> None:
        if reading is None:
            return
        self._seq += 1
        self._recent.append((self._seq, reading))
        event, self._new_reading = self._new_reading, asyncio.Event()
        event.set()  # wakes every waiting watcher; later ones wait on the new event
        if self._sink is not None:
            await self._sink.reading(runner.config.id, runner.pipeline.fields, reading)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, serial.SerialException) and isinstance(exc.__context__, OSError):
        text = exc.__context__.strerror or text
    return text or type(exc).__name__

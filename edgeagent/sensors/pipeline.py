"""From parsed values to readings: field selection, each field's own filter chain, and the
counters a sensor reports. Pure: time comes in as ``now``, readings come out as values.

Theory of operation
-------------------
A sensor's parser (or its platform: system metrics, the simulator) produces ``Values`` for
one frame. ``Pipeline.feed(now, values)``:

1. keeps the configured fields (all fields when the sensor lists none), dropping a frame
   that has none of them (``DropReason.EMPTY``);
2. runs each numeric value through **its own** filter chain, built from the sensor's
   ``filters:`` (ESPHome applies a chain to one value; a sensor here has several fields, so
   each field gets a copy of the chain). Strings and bools pass unfiltered; ``None`` (no data
   in this frame) skips the field;
3. returns a ``Reading`` with the fields that came out now, or ``None`` when every field's
   chain held its value back (a throttle, a window not full yet).

Timer-driven filters (debounce, heartbeat, timeout, throttle_average) produce values later:
``next_deadline()`` says when the adapter must call ``fire(now)``, which returns the reading
they make (fields that fired at once share one reading).

Counters (``SensorStats``) are kept here so every platform counts the same way: frames read,
readings made, frames dropped per reason, reopens of the device.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeagent.sensors.filters import FilterChain
from edgeagent.sensors.model import DropReason, FieldSpec, Reading, Value, Values, is_number


class SensorState(enum.StrEnum):
    """Where a sensor's input is (shown by ``edgeagent sensors``)."""

    STARTING = "starting"
    OPEN = "open"  # reading (a serial device open, a timer platform running)
    WAITING = "waiting for device"  # the device path does not exist (unplugged)
    ERROR = "error"  # opening or reading failed; retried with backoff
    STOPPED = "stopped"


@dataclass(slots=True)
class SensorStats:
    frames: int = 0
    readings: int = 0
    reopens: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: DropReason, count: int = 1) -> None:
        self.dropped[str(reason)] = self.dropped.get(str(reason), 0) + count

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Pipeline:
    """One sensor's fields, filters and counters (see the module docstring)."""

    def __init__(
        self,
        sensor: str,
        fields: Mapping[str, FieldSpec],
        chain: Callable[[], FilterChain] | None = None,
    ) -> None:
        self.sensor = sensor
        self.fields = dict(fields)
        self.stats = SensorStats()
        self.last: Reading | None = None
        self._chain = chain
        self._chains: dict[str, FilterChain] = {}

    def feed(self, now: float, values: Values, *, ts: float | None = None) -> Reading | None:
        """A parsed frame at ``now`` (the filters' clock) -> the reading it makes now, if
        any, stamped ``ts`` (seconds since the epoch; ``now`` when not given)."""
        self.stats.frames += 1
        selected = self._select(values)
        if selected is None:
            self.stats.drop(DropReason.EMPTY)
            return None
        out: dict[str, Value] = {}
        for name, value in selected.items():
            if value is None:
                continue
            if self._chain is None or not is_number(value):
                out[name] = value
                continue
            assert isinstance(value, int | float)
            passed = self._chain_for(name).feed(now, float(value))
            if passed:
                out[name] = passed[-1]
        return self._reading(now if ts is None else ts, out)

    def next_deadline(self) -> float | None:
        deadlines = [d for c in self._chains.values() if (d := c.next_deadline()) is not None]
        return min(deadlines, default=None)

    def fire(self, now: float, *, ts: float | None = None) -> Reading | None:
        """What the timer-driven filters produce at ``now``."""
        out: dict[str, Value] = {}
        for name, chain in self._chains.items():
            deadline = chain.next_deadline()
            if deadline is not None and deadline <= now:
                fired = chain.fire(now)
                if fired:
                    out[name] = fired[-1]
        return self._reading(now if ts is None else ts, out)

    def spec(self, name: str) -> FieldSpec:
        return self.fields.get(name, FieldSpec())

    def _select(self, values: Values) -> Values | None:
        if not self.fields:
            return dict(values) if values else None
        kept = {name: values[name] for name in self.fields if name in values}
        return kept or None

    def _chain_for(self, name: str) -> FilterChain:
        chain = self._chains.get(name)
        if chain is None:
            assert self._chain is not None
            chain = self._chains[name] = self._chain()
        return chain

    def _reading(self, ts: float, out: dict[str, Value]) -> Reading | None:
        if not out:
            return None
        reading = Reading(self.sensor, ts, out)
        self.stats.readings += 1
        self.last = reading
        return reading


def reading_payload(reading: Reading, fields: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """The payload of intent ``sensor.<id>``: every field with its value and unit, and the
    reading's time (seconds since the epoch)."""
    return {
        "ts": reading.ts,
        "fields": {
            name: {"value": value, "unit": fields.get(name, FieldSpec()).unit}
            for name, value in reading.values.items()
        },
    }


def field_payloads(
    reading: Reading, fields: Mapping[str, FieldSpec]
) -> list[tuple[str, dict[str, Any]]]:
    """Intent ``sensor.<id>.<field>`` per field: ``{value, unit, ts}``."""
    out = []
    for name, value in reading.values.items():
        payload: dict[str, Any] = {"value": value, "ts": reading.ts}
        unit = fields.get(name, FieldSpec()).unit
        if unit is not None:
            payload["unit"] = unit
        out.append((f"sensor.{reading.sensor}.{name}", payload))
    return out

"""ESPHome's sensor filter chain as a pure core: values in, values out, time passed in as ``now``.

Theory of operation
-------------------
Each numeric field of a sensor runs through its own ``FilterChain``: the filters its YAML
``filters:`` list names, in that order, the output of one the input of the next (as in
ESPHome, no ``and`` is needed). Every filter has ``feed(now, value) -> list[float]``: the
values that leave it now, zero or more. Four filters also act when time passes (``debounce``,
``heartbeat``, ``timeout``, ``throttle_average``): ``next_deadline()`` says when, and
``fire(now)`` acts; what a timer emits enters the chain right after the filter that fired.
The chain offers the same three calls, so the adapter's loop is: wait for the next value or
``chain.next_deadline()``, whichever comes first, then ``chain.feed(now, value)`` or
``chain.fire(now)``, and publish what comes out. After either call no deadline is left at or
before ``now``. A late loop loses no value: ``feed`` first fires whatever fell due by ``now``
(a value only leaves later than it would have), and an interval filter that missed ticks fires
once and keeps its phase, as ESPHome's scheduler does. A chain holds state: build one per field
(``build_chain`` and ``FilterChain.from_configs`` make a fresh one each call).

Semantics and defaults are those of esphome/esphome ``components/sensor/filter.cpp`` and the
schemas in ``components/sensor/__init__.py`` (2024.11, with the newer heartbeat ``optimistic``
and timeout ``value: last``), so an ESPHome ``filters:`` block reads the same here. NaN is a
value: ``median``/``min``/``max``/``quantile``/``sliding_window_moving_average`` skip it inside
the window (NaN when the window holds nothing else), ``exponential_moving_average`` passes it on
without touching its average, ``throttle_average`` averages the numbers of a period and sends
NaN only for a period that got nothing but NaN, ``filter_out: nan`` drops it, ``delta`` drops
NaN after NaN but passes number -> NaN and NaN -> number, ``clamp`` and ``round`` pass it on.

Where we differ from ESPHome, and why:

- Durations are float seconds here (ESPHome: integer milliseconds). The config section turns
  ``10s`` into ``10.0`` before calling ``parse_filter``; options of kind
  ``OptionKind.DURATION`` are the ones it converts.
- ``heartbeat`` and ``throttle_average`` tick every period from their first value; ESPHome
  starts the interval at boot with a random phase. Same spacing, deterministic phase.
  Their period must be more than 0 (an interval of 0 would fire without end).
- ``filter_out`` compares exactly: ESPHome rounds both sides to the sensor's
  ``accuracy_decimals``, which our fields do not have (``FilterOutValueFilter`` takes
  ``accuracy_decimals`` for a caller that has one). It also takes a list of values.
- ``quantile: 0`` picks the smallest value (ESPHome indexes before the start of its window).
- ``calibrate_linear`` (least squares) with every ``to`` equal fits slope 0; ESPHome divides by
  zero at compile time.
- Arithmetic is double precision (ESPHome: float32), except the quantile's position, which is
  computed in float32 as ESPHome does because it picks a different element for some sizes.
- Mapping forms beyond ESPHome's: a filter that takes one value also takes it under its option
  name (``throttle: {period: 10}``, ``skip_initial: {count: 3}``; ``FilterSpec.simple`` names
  it), ``delta: {value: 10%}`` means percentage (``{value: 0.1, type: percentage}`` is, as in
  ESPHome, a fraction), and datapoints may be ``[from, to]`` pairs as well as ``"from -> to"``
  strings and ``{from:, to:}``.

Not here: ``or``, ``lambda`` (C++) and ``throttle_with_priority``.

The registry: ``FILTERS`` maps each name to a ``FilterSpec`` (its options with kind, default
and whether required, and which option a bare value sets). ``parse_filter(name, value)``
validates a YAML value into a frozen ``FilterConfig``; ``FilterConfig.build()``,
``build_filter`` and ``build_chain`` make live filters. Bad input raises ``FilterConfigError``
(a ``ValueError``) whose message names the filter, the option and the valid choices, and whose
``filter_name``/``option``/``index`` attributes let the config section point at file:line.
"""

from __future__ import annotations

import enum
import itertools
import math
import struct
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from edgeagent.errors import EdgeAgentError

LAST: Final = "last"
"""``timeout: {value: last}``: re-send the last value instead of a fixed one."""

Datapoint = tuple[float, float]
OptionValue = float | int | bool | str | tuple[float, ...] | tuple[Datapoint, ...]
Settings = Mapping[str, OptionValue]


class FilterConfigError(EdgeAgentError, ValueError):
    """A filter name, option or value the registry does not accept; the message says why.

    ``filter_name`` is the filter (None when the name itself is unknown or missing),
    ``option`` the offending option (None when the problem is the filter as a whole) and
    ``index`` its position in a ``build_chain``/``parse_chain`` list.
    """

    def __init__(
        self,
        message: str,
        *,
        filter_name: str | None = None,
        option: str | None = None,
        index: int | None = None,
    ) -> None:
        self.filter_name = filter_name
        self.option = option
        self.index = index
        super().__init__(message)


class Filter(ABC):
    """One step of a chain. ``feed`` returns what leaves the filter now (zero or more values).

    Filters that act when time passes also override ``next_deadline`` (when they want
    ``fire``; None when they have nothing pending) and ``fire(now)`` (what they emit at
    ``now``; nothing before the deadline). Their ``feed`` first does what fell due by ``now``.
    """

    __slots__ = ()

    @abstractmethod
    def feed(self, now: float, value: float) -> list[float]:
        """Take ``value`` at ``now``; return the values that leave the filter now."""

    def next_deadline(self) -> float | None:
        """When ``fire`` has something to do; None for filters that never act on time."""
        return None

    def fire(self, now: float) -> list[float]:
        """What leaves the filter at ``now`` because time passed (nothing by default)."""
        return []


# --- value filters -------------------------------------------------------------------------


class OffsetFilter(Filter):
    """``offset``: adds a constant."""

    __slots__ = ("offset",)

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def feed(self, now: float, value: float) -> list[float]:
        return [value + self.offset]


class MultiplyFilter(Filter):
    """``multiply``: multiplies by a constant."""

    __slots__ = ("multiplier",)

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def feed(self, now: float, value: float) -> list[float]:
        return [value * self.multiplier]


class FilterOutValueFilter(Filter):
    """``filter_out``: drops values equal to any of ``values`` (``nan`` drops NaN).

    With ``accuracy_decimals`` both sides are rounded to that many decimals first, as ESPHome
    does with the sensor's ``accuracy_decimals``; without, the comparison is exact.
    """

    __slots__ = ("_accuracy", "_drop_nan", "_values")

    def __init__(self, values: Iterable[float], accuracy_decimals: int | None = None) -> None:
        values = tuple(values)
        self._drop_nan = any(math.isnan(v) for v in values)
        self._accuracy = accuracy_decimals
        self._values = frozenset(self._key(v) for v in values if not math.isnan(v))

    def feed(self, now: float, value: float) -> list[float]:
        if math.isnan(value):
            return [] if self._drop_nan else [value]
        return [] if self._key(value) in self._values else [value]

    def _key(self, value: float) -> float:
        if self._accuracy is None:
            return value
        return _round_half_away(value * 10.0**self._accuracy)


class SkipInitialFilter(Filter):
    """``skip_initial``: drops the first ``count`` values, then passes everything."""

    __slots__ = ("_left",)

    def __init__(self, count: int) -> None:
        self._left = count

    def feed(self, now: float, value: float) -> list[float]:
        if self._left > 0:
            self._left -= 1
            return []
        return [value]


class ClampFilter(Filter):
    """``clamp``: limits finite values to [min_value, max_value] (NaN bound = open side).

    With ``ignore_out_of_range`` a value outside is dropped instead; NaN and infinities pass.
    """

    __slots__ = ("ignore_out_of_range", "max_value", "min_value")

    def __init__(
        self,
        min_value: float = math.nan,
        max_value: float = math.nan,
        ignore_out_of_range: bool = False,
    ) -> None:
        self.min_value = min_value
        self.max_value = max_value
        self.ignore_out_of_range = ignore_out_of_range

    def feed(self, now: float, value: float) -> list[float]:
        if math.isfinite(value):
            for bound, outside in (
                (self.min_value, value < self.min_value),
                (self.max_value, value > self.max_value),
            ):
                if math.isfinite(bound) and outside:
                    return [] if self.ignore_out_of_range else [bound]
        return [value]


class RoundFilter(Filter):
    """``round``: rounds finite values to ``accuracy_decimals`` decimals, halves away from 0."""

    __slots__ = ("_scale",)

    def __init__(self, accuracy_decimals: int) -> None:
        self._scale = 10.0**accuracy_decimals

    def feed(self, now: float, value: float) -> list[float]:
        scaled = value * self._scale
        if not math.isfinite(scaled):  # NaN, infinities, and more decimals than a float has
            return [value]
        return [_round_half_away(scaled) / self._scale]


class RoundMultipleFilter(Filter):
    """``round_to_multiple_of``: the nearest multiple of ``multiple`` (ties to an even one)."""

    __slots__ = ("multiple",)

    def __init__(self, multiple: float) -> None:
        self.multiple = multiple

    def feed(self, now: float, value: float) -> list[float]:
        if not math.isfinite(value):
            return [value]
        return [value - math.remainder(value, self.multiple)]


class CalibrateLinearFilter(Filter):
    """``calibrate_linear``: one line, or piecewise lines, from measured -> true datapoints.

    ``segments`` are ``(slope, bias, upper)``: the first whose ``upper`` is above the value
    (or is NaN, the last one) maps it; beyond the ends the outer segments extend.
    """

    __slots__ = ("segments",)

    def __init__(self, segments: Sequence[tuple[float, float, float]]) -> None:
        self.segments = tuple(segments)

    @classmethod
    def least_squares(cls, datapoints: Sequence[Datapoint]) -> CalibrateLinearFilter:
        """The least-squares line through ``datapoints`` (ESPHome's default method)."""
        slope, bias = fit_line(datapoints)
        return cls([(slope, bias, math.nan)])

    @classmethod
    def exact(cls, datapoints: Sequence[Datapoint]) -> CalibrateLinearFilter:
        """Lines joining consecutive datapoints, sorted by ``from`` (``method: exact``)."""
        return cls(map_linear(datapoints))

    def feed(self, now: float, value: float) -> list[float]:
        for slope, bias, upper in self.segments:
            if not math.isfinite(upper) or value < upper:
                return [value * slope + bias]
        return [math.nan]


class CalibratePolynomialFilter(Filter):
    """``calibrate_polynomial``: ``sum(c[i] * value**i)`` with least-squares coefficients."""

    __slots__ = ("coefficients",)

    def __init__(self, coefficients: Sequence[float]) -> None:
        self.coefficients = tuple(coefficients)

    @classmethod
    def fit(cls, datapoints: Sequence[Datapoint], degree: int) -> CalibratePolynomialFilter:
        """The least-squares polynomial of ``degree`` through ``datapoints``."""
        return cls(fit_polynomial(datapoints, degree))

    def feed(self, now: float, value: float) -> list[float]:
        result, power = 0.0, 1.0
        for coefficient in self.coefficients:
            result += power * coefficient
            power *= value
        return [result]


class DeltaFilter(Filter):
    """``delta``: passes a value that differs from the last one passed by at least ``delta``.

    In percentage mode ``delta`` is a fraction (0.1 for 10 %) of the last value passed. The
    first number passes; NaN after NaN is dropped; number -> NaN and NaN -> number pass.
    """

    __slots__ = ("_current", "_last", "delta", "percentage")

    def __init__(self, delta: float, percentage: bool = False) -> None:
        self.delta = delta
        self.percentage = percentage
        self._current = delta
        self._last = math.nan

    def feed(self, now: float, value: float) -> list[float]:
        if math.isnan(value):
            if math.isnan(self._last):
                return []
        elif not math.isnan(self._last) and abs(value - self._last) < self._current:
            return []
        if self.percentage:
            self._current = abs(value * self.delta)
        self._last = value
        return [value]


class ThrottleFilter(Filter):
    """``throttle``: passes a value if ``period`` seconds passed since the last one passed."""

    __slots__ = ("_last", "period")

    def __init__(self, period: float) -> None:
        self.period = period
        self._last: float | None = None

    def feed(self, now: float, value: float) -> list[float]:
        if self._last is None or now - self._last >= self.period:
            self._last = now
            return [value]
        return []


# --- windowed filters ----------------------------------------------------------------------


class _WindowFilter(Filter):
    """The last ``window_size`` values; sends a result at the ``send_first_at``-th value and
    then at every ``send_every``-th one. NaN stays in the window but no result looks at it."""

    __slots__ = ("_send_at", "_send_every", "_window")

    def __init__(self, window_size: int, send_every: int, send_first_at: int) -> None:
        _check_window(window_size, send_every, send_first_at)
        self._window: deque[float] = deque(maxlen=window_size)
        self._send_every = send_every
        self._send_at = send_every - send_first_at

    def feed(self, now: float, value: float) -> list[float]:
        self._window.append(value)
        self._send_at += 1
        if self._send_at < self._send_every:
            return []
        self._send_at = 0
        numbers = [v for v in self._window if not math.isnan(v)]
        return [self._reduce(numbers) if numbers else math.nan]

    @abstractmethod
    def _reduce(self, numbers: list[float]) -> float:
        """The result over the window's numbers (never empty)."""


class MedianFilter(_WindowFilter):
    """``median``: the median of the window (the mean of the middle two for an even count)."""

    __slots__ = ()

    def __init__(self, window_size: int = 5, send_every: int = 5, send_first_at: int = 1) -> None:
        super().__init__(window_size, send_every, send_first_at)

    def _reduce(self, numbers: list[float]) -> float:
        numbers.sort()
        middle = len(numbers) // 2
        if len(numbers) % 2:
            return numbers[middle]
        return (numbers[middle - 1] + numbers[middle]) / 2


class QuantileFilter(_WindowFilter):
    """``quantile``: the value at ``ceil(n * quantile)`` in the sorted window (1-based)."""

    __slots__ = ("quantile",)

    def __init__(
        self,
        window_size: int = 5,
        send_every: int = 5,
        send_first_at: int = 1,
        quantile: float = 0.9,
    ) -> None:
        super().__init__(window_size, send_every, send_first_at)
        self.quantile = quantile

    def _reduce(self, numbers: list[float]) -> float:
        numbers.sort()
        return numbers[quantile_position(len(numbers), self.quantile)]


class MinFilter(_WindowFilter):
    """``min``: the smallest value of the window."""

    __slots__ = ()

    def __init__(self, window_size: int = 5, send_every: int = 5, send_first_at: int = 1) -> None:
        super().__init__(window_size, send_every, send_first_at)

    def _reduce(self, numbers: list[float]) -> float:
        return min(numbers)


class MaxFilter(_WindowFilter):
    """``max``: the largest value of the window."""

    __slots__ = ()

    def __init__(self, window_size: int = 5, send_every: int = 5, send_first_at: int = 1) -> None:
        super().__init__(window_size, send_every, send_first_at)

    def _reduce(self, numbers: list[float]) -> float:
        return max(numbers)


class SlidingWindowMovingAverageFilter(_WindowFilter):
    """``sliding_window_moving_average``: the mean of the window."""

    __slots__ = ()

    def __init__(self, window_size: int = 15, send_every: int = 15, send_first_at: int = 1) -> None:
        super().__init__(window_size, send_every, send_first_at)

    def _reduce(self, numbers: list[float]) -> float:
        return sum(numbers) / len(numbers)


class ExponentialMovingAverageFilter(Filter):
    """``exponential_moving_average``: ``avg = alpha * value + (1 - alpha) * avg``.

    The first number starts the average; NaN leaves it alone and is what gets sent if it is
    the value that falls on a send. Sends like the windowed filters (``send_every``,
    ``send_first_at``)."""

    __slots__ = ("_average", "_send_at", "_send_every", "alpha")

    def __init__(self, alpha: float = 0.1, send_every: int = 15, send_first_at: int = 1) -> None:
        _check_window(1, send_every, send_first_at)
        self.alpha = alpha
        self._average: float | None = None
        self._send_every = send_every
        self._send_at = send_every - send_first_at

    def feed(self, now: float, value: float) -> list[float]:
        if not math.isnan(value):
            if self._average is None:
                self._average = value
            else:
                self._average = self.alpha * value + (1.0 - self.alpha) * self._average
        self._send_at += 1
        if self._send_at < self._send_every:
            return []
        self._send_at = 0
        return [value if math.isnan(value) or self._average is None else self._average]


# --- timer filters -------------------------------------------------------------------------


class DebounceFilter(Filter):
    """``debounce``: sends the last value once no new one came for ``period`` seconds."""

    __slots__ = ("_deadline", "_pending", "period")

    def __init__(self, period: float) -> None:
        self.period = period
        self._pending = math.nan
        self._deadline: float | None = None

    def feed(self, now: float, value: float) -> list[float]:
        out = self.fire(now)
        self._pending = value
        self._deadline = now + self.period
        return out

    def next_deadline(self) -> float | None:
        return self._deadline

    def fire(self, now: float) -> list[float]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return [self._pending]


class TimeoutFilter(Filter):
    """``timeout``: passes every value; ``timeout`` seconds after the last one, sends ``value``
    (NaN by default; ``LAST`` re-sends the last value) once, until values come again."""

    __slots__ = ("_deadline", "_last", "timeout", "value")

    def __init__(self, timeout: float, value: float | Literal["last"] = math.nan) -> None:
        self.timeout = timeout
        self.value = value
        self._last = math.nan
        self._deadline: float | None = None

    def feed(self, now: float, value: float) -> list[float]:
        out = self.fire(now)
        self._last = value
        self._deadline = now + self.timeout
        out.append(value)
        return out

    def next_deadline(self) -> float | None:
        return self._deadline

    def fire(self, now: float) -> list[float]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return [self._last if self.value == LAST else float(self.value)]


class _IntervalFilter(Filter):
    """Ticks every ``period`` seconds from the first value; a late ``fire`` acts once and the
    next tick keeps the phase (missed ticks are skipped, as ESPHome's scheduler does)."""

    __slots__ = ("_anchor", "_deadline", "period")

    def __init__(self, period: float) -> None:
        if not period > 0:
            raise ValueError(f"an interval filter needs a period above 0, got {period!r}")
        self.period = period
        self._anchor: float | None = None
        self._deadline: float | None = None

    def next_deadline(self) -> float | None:
        return self._deadline

    def _tick_after(self, now: float) -> float:
        anchor = now if self._anchor is None else self._anchor
        tick = anchor + (math.floor((now - anchor) / self.period) + 1) * self.period
        while tick <= now:  # float rounding of the division
            tick += self.period
        return tick


class HeartbeatFilter(_IntervalFilter):
    """``heartbeat``: every ``period`` seconds sends the last value received.

    Without ``optimistic`` values leave only on the beat; with it each value also passes at
    once (the beat's timing does not change)."""

    __slots__ = ("_last", "optimistic")

    def __init__(self, period: float, optimistic: bool = False) -> None:
        super().__init__(period)
        self.optimistic = optimistic
        self._last = math.nan

    def feed(self, now: float, value: float) -> list[float]:
        out = self.fire(now)
        if self._anchor is None:
            self._anchor = now
            self._deadline = self._tick_after(now)
        self._last = value
        if self.optimistic:
            out.append(value)
        return out

    def fire(self, now: float) -> list[float]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = self._tick_after(now)
        return [self._last]


class ThrottleAverageFilter(_IntervalFilter):
    """``throttle_average``: every ``period`` seconds, the mean of the numbers received in it.

    A period that got only NaN sends NaN; a period that got nothing sends nothing (and then no
    deadline is pending)."""

    __slots__ = ("_count", "_have_nan", "_sum")

    def __init__(self, period: float) -> None:
        super().__init__(period)
        self._sum = 0.0
        self._count = 0
        self._have_nan = False

    def feed(self, now: float, value: float) -> list[float]:
        out = self.fire(now)
        if self._anchor is None:
            self._anchor = now
        if math.isnan(value):
            self._have_nan = True
        else:
            self._sum += value
            self._count += 1
        if self._deadline is None:
            self._deadline = self._tick_after(now)
        return out

    def fire(self, now: float) -> list[float]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        out = [self._sum / self._count] if self._count else [math.nan] if self._have_nan else []
        self._sum, self._count, self._have_nan = 0.0, 0, False
        return out


# --- the chain -----------------------------------------------------------------------------


class FilterChain:
    """Filters in order; a value fed, or emitted by a timer, runs through the ones after it.

    ``fire(now)`` runs every filter whose deadline is due, earliest first (ties in chain
    order), until none is; ``feed(now, value)`` does that before and after taking the value,
    so what it returns is in time order and a zero-second ``debounce`` or ``timeout`` acts at
    once. After either call no deadline is left at or before ``now``. An empty chain passes
    values through.
    """

    __slots__ = ("_filters",)

    def __init__(self, filters: Iterable[Filter] = ()) -> None:
        self._filters = tuple(filters)

    @classmethod
    def from_configs(cls, configs: Iterable[FilterConfig]) -> FilterChain:
        """A fresh chain (new state) from parsed configs, e.g. one per sensor field."""
        return cls(config.build() for config in configs)

    @property
    def filters(self) -> tuple[Filter, ...]:
        return self._filters

    def __len__(self) -> int:
        return len(self._filters)

    def feed(self, now: float, value: float) -> list[float]:
        """Values that leave the chain at ``now``: what fell due, then what ``value`` gives."""
        out = self.fire(now)
        out.extend(self._run(0, now, [float(value)]))
        out.extend(self.fire(now))
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline of any filter; None when no timer is pending."""
        deadlines = [d for f in self._filters if (d := f.next_deadline()) is not None]
        return min(deadlines, default=None)

    def fire(self, now: float) -> list[float]:
        """Values that leave the chain because timers fell due by ``now``."""
        out: list[float] = []
        while True:
            due = [
                (deadline, index)
                for index, f in enumerate(self._filters)
                if (deadline := f.next_deadline()) is not None and deadline <= now
            ]
            if not due:
                return out
            _, index = min(due)
            emitted = self._filters[index].fire(now)
            after = self._filters[index].next_deadline()
            assert after is None or after > now, "a timer filter must move its deadline on"
            out.extend(self._run(index + 1, now, emitted))

    def _run(self, start: int, now: float, values: list[float]) -> list[float]:
        for f in self._filters[start:]:
            if not values:
                break
            values = [out for value in values for out in f.feed(now, value)]
        return values


# --- the registry --------------------------------------------------------------------------


class OptionKind(enum.StrEnum):
    """What an option's YAML value is; the config section converts ``DURATION`` ("10s")."""

    DURATION = "duration"  # seconds as a number (the config section parses "10s", "500ms")
    COUNT = "count"  # an integer >= 1
    INTEGER = "integer"  # an integer >= 0
    DECIMALS = "decimals"  # an integer 0..255
    NUMBER = "number"  # a float; "nan" accepted
    POSITIVE = "positive"  # a float >= 0
    FRACTION = "fraction"  # a float 0..1
    BOOLEAN = "boolean"  # true/false (yes/no, on/off, enable/disable)
    CHOICE = "choice"  # one of ``OptionSpec.choices``
    NUMBERS = "numbers"  # a number, or a list of numbers
    DELTA = "delta"  # a number >= 0 (absolute) or a percentage "10%"
    NUMBER_OR_LAST = "number_or_last"  # a number, "nan" or "last"
    DATAPOINTS = "datapoints"  # a list of "from -> to", [from, to] or {from:, to:}


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option of a filter: its kind, and its default unless ``required``."""

    name: str
    kind: OptionKind
    default: OptionValue | None = None
    required: bool = False
    choices: tuple[str, ...] = ()
    above_zero: bool = False  # durations and numbers that must be more than 0


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A filter the registry knows: its options and how to build it from parsed settings.

    ``simple`` is the option a bare (non-mapping) YAML value sets (``throttle: 10s`` sets
    ``period``); None when the filter takes only a mapping of options. ``check`` validates the
    settings as a whole (it may rewrite them, e.g. ``delta: 10%``); ``make`` builds the filter.
    """

    name: str
    options: tuple[OptionSpec, ...]
    simple: str | None
    make: Callable[[Settings], Filter]
    check: Callable[[dict[str, OptionValue], frozenset[str]], None] | None = None
    timer: bool = False

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)

    def defaults(self) -> dict[str, OptionValue]:
        """The options that have a default, with it."""
        return {o.name: o.default for o in self.options if not o.required and o.default is not None}


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """A validated filter: its name and every option's value (defaults filled in)."""

    name: str
    settings: tuple[tuple[str, OptionValue], ...] = field(default_factory=tuple)

    def get(self, option: str) -> OptionValue:
        return dict(self.settings)[option]

    def build(self) -> Filter:
        """A new filter with fresh state."""
        return FILTERS[self.name].make(dict(self.settings))


def parse_filter(name: str, value: object) -> FilterConfig:
    """Validate one ``filters:`` entry, ``{name: value}``, into a ``FilterConfig``.

    ``value`` is what YAML gave: None or ``{}`` (every default), a mapping of options, or a
    bare value for the filter's ``simple`` option. Durations must already be seconds.
    """
    spec = FILTERS.get(name)
    if spec is None:
        raise FilterConfigError(
            f"unknown filter {name!r}; valid filters: {', '.join(FILTER_NAMES)}"
        )
    given = _given_options(spec, value)
    settings: dict[str, OptionValue] = {}
    for option in spec.options:
        if option.name in given:
            settings[option.name] = _parse_option(spec.name, option, given[option.name])
        elif option.required:
            raise FilterConfigError(
                f"{spec.name} needs {option.name!r} (options: {', '.join(spec.option_names)})",
                filter_name=spec.name,
                option=option.name,
            )
        elif option.default is not None:
            settings[option.name] = option.default
    if spec.check is not None:
        spec.check(settings, frozenset(given))
    return FilterConfig(spec.name, tuple((o.name, settings[o.name]) for o in spec.options))


def parse_chain(items: object) -> tuple[FilterConfig, ...]:
    """Validate a ``filters:`` list: each item a mapping with one key, the filter's name."""
    if items is None:
        return ()
    if not isinstance(items, list | tuple):
        raise FilterConfigError(
            f"filters must be a list of one-key mappings such as '- throttle: 10', got {items!r}"
        )
    configs: list[FilterConfig] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or len(item) != 1:
            raise FilterConfigError(
                f"filter #{index + 1} must be a mapping with one key, the filter's name "
                f"(valid filters: {', '.join(FILTER_NAMES)}), got {item!r}",
                index=index,
            )
        ((name, value),) = item.items()
        try:
            configs.append(parse_filter(str(name), value))
        except FilterConfigError as error:
            error.index = index
            raise
    return tuple(configs)


def build_filter(name: str, value: object) -> Filter:
    """``parse_filter(name, value).build()``."""
    return parse_filter(name, value).build()


def build_chain(items: object) -> FilterChain:
    """A fresh ``FilterChain`` from a ``filters:`` list (see ``parse_chain``)."""
    return FilterChain.from_configs(parse_chain(items))


# --- calibration maths (ESPHome does these at compile time) ---------------------------------


def fit_line(datapoints: Sequence[Datapoint]) -> tuple[float, float]:
    """``(slope, bias)`` of the least-squares line; needs two different ``from`` values."""
    xs = [x for x, _ in datapoints]
    ys = [y for _, y in datapoints]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    s_xx = sum((x - mean_x) ** 2 for x in xs)
    s_xy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    if s_xx == 0:
        raise ValueError("the 'from' values must not all be the same")
    slope = s_xy / s_xx  # = r * std(y) / std(x), ESPHome's form, without dividing by std(y)
    return slope, mean_y - slope * mean_x


def map_linear(datapoints: Sequence[Datapoint]) -> list[tuple[float, float, float]]:
    """Segments ``(slope, bias, upper)`` joining consecutive datapoints (``from`` ascending,
    no duplicates); collinear neighbours merge, the last segment's ``upper`` is NaN."""
    segments: list[tuple[float, float, float]] = []
    for i, ((x0, y0), (x1, y1)) in enumerate(itertools.pairwise(datapoints)):
        slope = (y1 - y0) / (x1 - x0)
        bias = y0 - slope * x0
        upper = math.nan if i == len(datapoints) - 2 else x1
        if segments and segments[-1][:2] == (slope, bias):
            segments[-1] = (slope, bias, upper)
        else:
            segments.append((slope, bias, upper))
    return segments


def fit_polynomial(datapoints: Sequence[Datapoint], degree: int) -> list[float]:
    """Least-squares coefficients ``c[0] .. c[degree]`` (normal equations, Gauss-Jordan)."""
    size = degree + 1
    rows = [[x**i for i in range(size)] for x, _ in datapoints]
    normal = [
        [sum(row[i] * row[j] for row in rows) for j in range(size)]
        + [sum(row[i] * y for row, (_, y) in zip(rows, datapoints, strict=True))]
        for i in range(size)
    ]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(normal[r][col]))
        if normal[pivot][col] == 0:
            raise ValueError("the datapoints do not determine a polynomial of that degree")
        normal[col], normal[pivot] = normal[pivot], normal[col]
        scale = normal[col][col]
        normal[col] = [v / scale for v in normal[col]]
        for r in range(size):
            if r != col and normal[r][col] != 0:
                factor = normal[r][col]
                normal[r] = [v - factor * p for v, p in zip(normal[r], normal[col], strict=True)]
    return [normal[i][size] for i in range(size)]


def quantile_position(count: int, quantile: float) -> int:
    """0-based index of the quantile in ``count`` sorted values: ``ceil(count * q) - 1``.

    In float32 as ESPHome computes it (``ceilf(size * quantile_)``): for some sizes double
    precision lands on the next element. Never below 0 (``quantile: 0`` is the minimum)."""
    product = _float32(count * _float32(quantile))
    return min(count - 1, max(0, math.ceil(product) - 1))


# --- private helpers -----------------------------------------------------------------------


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (an int times a float32 is exact in a double)."""
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _round_half_away(value: float) -> float:
    """C's ``roundf``: halves go away from zero (Python's ``round`` goes to even)."""
    if not math.isfinite(value):
        return value
    return math.copysign(math.floor(abs(value) + 0.5), value)


def _check_window(window_size: int, send_every: int, send_first_at: int) -> None:
    if window_size < 1 or send_every < 1 or send_first_at < 1:
        raise ValueError("window_size, send_every and send_first_at must be at least 1")
    if send_first_at > send_every:
        raise ValueError(
            f"send_first_at ({send_first_at}) must not exceed send_every ({send_every})"
        )


def _given_options(spec: FilterSpec, value: object) -> dict[str, object]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        given = {str(key): item for key, item in value.items()}
        for key in given:
            if key not in spec.option_names:
                raise FilterConfigError(
                    f"{key!r} is not an option of {spec.name}; "
                    f"valid options: {', '.join(spec.option_names)}",
                    filter_name=spec.name,
                    option=key,
                )
        return given
    if spec.simple is None:
        raise FilterConfigError(
            f"{spec.name} takes a mapping of options ({', '.join(spec.option_names)}), "
            f"not {value!r}",
            filter_name=spec.name,
        )
    return {spec.simple: value}


def _parse_option(filter_name: str, option: OptionSpec, raw: object) -> OptionValue:
    def bad(expected: str) -> FilterConfigError:
        return FilterConfigError(
            f"{filter_name}: {option.name} must be {expected}, got {raw!r}",
            filter_name=filter_name,
            option=option.name,
        )

    kind = option.kind
    if kind is OptionKind.DURATION:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise bad("a duration in seconds (the config section converts '10s')")
        if raw < 0 or (option.above_zero and raw == 0):
            raise bad("a duration above 0" if option.above_zero else "a duration of 0 or more")
        return float(raw)
    if kind in _INTEGER_RANGES:
        number = _as_int(raw)
        low, high, expected = _INTEGER_RANGES[kind]
        if number is None or number < low or (high is not None and number > high):
            raise bad(expected)
        return number
    if kind in (OptionKind.NUMBER, OptionKind.POSITIVE, OptionKind.FRACTION):
        value = _as_float(raw)
        if value is None:
            raise bad("a number")
        if kind is OptionKind.POSITIVE and not (value > 0 if option.above_zero else value >= 0):
            raise bad("a number above 0" if option.above_zero else "a number of 0 or more")
        if kind is OptionKind.FRACTION and not 0 <= value <= 1:
            raise bad("a number from 0 to 1")
        return value
    if kind is OptionKind.BOOLEAN:
        flag = _as_bool(raw)
        if flag is None:
            raise bad("true or false")
        return flag
    if kind is OptionKind.CHOICE:
        if not isinstance(raw, str) or raw.lower() not in option.choices:
            raise bad(f"one of {', '.join(option.choices)}")
        return raw.lower()
    if kind is OptionKind.NUMBERS:
        items = raw if isinstance(raw, list | tuple) else [raw]
        numbers = [_as_float(item) for item in items]
        if not numbers or any(n is None for n in numbers):
            raise bad("a number (nan for NaN) or a list of numbers")
        return tuple(n for n in numbers if n is not None)
    if kind is OptionKind.DELTA:
        if isinstance(raw, str) and raw.strip().endswith("%"):
            percent = _as_float(raw.strip()[:-1])
            if percent is None or not 0 <= percent <= 100:
                raise bad("a percentage from 0% to 100%")
            return f"{percent}%"  # resolved by _check_delta, which also sees ``type``
        value = _as_float(raw)
        if value is None or not value >= 0:
            raise bad("a number of 0 or more, or a percentage such as 10%")
        return value
    if kind is OptionKind.NUMBER_OR_LAST:
        if isinstance(raw, str) and raw.strip().lower() == LAST:
            return LAST
        value = _as_float(raw)
        if value is None:
            raise bad("a number, nan or last")
        return value
    assert kind is OptionKind.DATAPOINTS
    if not isinstance(raw, list | tuple):
        raise bad("a list of datapoints such as '0.0 -> 1.0'")
    points = [_as_datapoint(item) for item in raw]
    if any(p is None for p in points):
        raise bad("a list of datapoints, each 'from -> to', [from, to] or {from: x, to: y}")
    return tuple(p for p in points if p is not None)


_INTEGER_RANGES: Final = {
    OptionKind.COUNT: (1, None, "an integer of 1 or more"),
    OptionKind.INTEGER: (0, None, "an integer of 0 or more"),
    OptionKind.DECIMALS: (0, 255, "an integer from 0 to 255"),
}


def _as_float(raw: object) -> float | None:
    """ESPHome's ``cv.float_`` (``Coerce(float)``): numbers and numeric strings, nan too.

    Every NaN becomes ``math.nan`` itself, so two configs parsed from the same YAML are equal
    (tuples compare items by identity first, and NaN is not equal to itself)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        number = float(raw)
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return math.nan if math.isnan(number) else number


def _as_int(raw: object) -> int | None:
    """ESPHome's ``cv.int_``: ints, floats without a fraction, decimal or 0x strings."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() else None
    if isinstance(raw, str):
        text = raw.strip().lower()
        try:
            return int(text, 16) if text.startswith("0x") else int(text, 10)
        except ValueError:
            return None
    return None


def _as_bool(raw: object) -> bool | None:
    """ESPHome's ``cv.boolean``."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in ("true", "yes", "on", "enable"):
            return True
        if text in ("false", "no", "off", "disable"):
            return False
    return None


def _as_datapoint(raw: object) -> Datapoint | None:
    if isinstance(raw, Mapping):
        if set(raw) != {"from", "to"}:
            return None
        x, y = _as_float(raw["from"]), _as_float(raw["to"])
    elif isinstance(raw, list | tuple):
        if len(raw) != 2:
            return None
        x, y = _as_float(raw[0]), _as_float(raw[1])
    elif isinstance(raw, str) and "->" in raw:
        left, right = raw.split("->", 1)
        x, y = _as_float(left), _as_float(right)
    else:
        return None
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return (x, y)


def _error(spec_name: str, option: str | None, message: str) -> FilterConfigError:
    return FilterConfigError(f"{spec_name}: {message}", filter_name=spec_name, option=option)


def _float_of(settings: Settings, key: str) -> float:
    value = settings[key]
    assert isinstance(value, float)
    return value


def _int_of(settings: Settings, key: str) -> int:
    value = settings[key]
    assert isinstance(value, int)
    assert not isinstance(value, bool)
    return value


def _bool_of(settings: Settings, key: str) -> bool:
    value = settings[key]
    assert isinstance(value, bool)
    return value


def _points_of(settings: Settings) -> tuple[Datapoint, ...]:
    value = settings["datapoints"]
    assert isinstance(value, tuple)
    return tuple((float(p[0]), float(p[1])) for p in value if isinstance(p, tuple))


def _numbers_of(settings: Settings, key: str) -> tuple[float, ...]:
    value = settings[key]
    assert isinstance(value, tuple)
    return tuple(v for v in value if isinstance(v, float))


def _window_options(size: int, every: int) -> tuple[OptionSpec, ...]:
    return (
        OptionSpec("window_size", OptionKind.COUNT, size),
        OptionSpec("send_every", OptionKind.COUNT, every),
        OptionSpec("send_first_at", OptionKind.COUNT, 1),
    )


def _check_send_first_at(name: str) -> Callable[[dict[str, OptionValue], frozenset[str]], None]:
    def check(settings: dict[str, OptionValue], given: frozenset[str]) -> None:
        first, every = _int_of(settings, "send_first_at"), _int_of(settings, "send_every")
        if first > every:
            raise _error(
                name,
                "send_first_at",
                f"send_first_at ({first}) must not exceed send_every ({every})",
            )

    return check


def _check_delta(settings: dict[str, OptionValue], given: frozenset[str]) -> None:
    value = settings["value"]
    if isinstance(value, str):  # "10%"
        if "type" in given and settings["type"] != "percentage":
            raise _error("delta", "type", f"a percentage value ({value}) needs type percentage")
        settings["value"] = float(value[:-1]) / 100
        settings["type"] = "percentage"


def _check_clamp(settings: dict[str, OptionValue], given: frozenset[str]) -> None:
    low, high = _float_of(settings, "min_value"), _float_of(settings, "max_value")
    if not math.isfinite(low) and not math.isfinite(high):
        raise _error("clamp", None, "needs min_value or max_value (a number)")
    if low > high:
        raise _error("clamp", "min_value", f"min_value ({low}) must not exceed max_value ({high})")


def _check_calibrate_linear(settings: dict[str, OptionValue], given: frozenset[str]) -> None:
    points = _points_of(settings)
    if len(points) < 2:
        raise _error("calibrate_linear", "datapoints", "needs at least 2 datapoints")
    froms = [x for x, _ in points]
    if settings["method"] == "exact":
        if any(a > b for a, b in itertools.pairwise(froms)):
            raise _error(
                "calibrate_linear", "datapoints", "'from' values must be in ascending order"
            )
        if any(a == b for a, b in itertools.pairwise(froms)):
            raise _error("calibrate_linear", "datapoints", "'from' values must not repeat")
    elif all(x == froms[0] for x in froms):
        raise _error("calibrate_linear", "datapoints", "'from' values must not all be the same")


def _check_calibrate_polynomial(settings: dict[str, OptionValue], given: frozenset[str]) -> None:
    points, degree = _points_of(settings), _int_of(settings, "degree")
    if degree >= len(points):
        raise _error(
            "calibrate_polynomial",
            "degree",
            f"degree {degree} is too high for {len(points)} datapoints (at most {len(points) - 1})",
        )
    try:
        fit_polynomial(points, degree)
    except ValueError as error:
        raise _error("calibrate_polynomial", "datapoints", str(error)) from error


def _make_calibrate_linear(settings: Settings) -> Filter:
    points = _points_of(settings)
    if settings["method"] == "exact":
        return CalibrateLinearFilter.exact(points)
    return CalibrateLinearFilter.least_squares(points)


def _make_timeout(settings: Settings) -> Filter:
    value = settings["value"]
    return TimeoutFilter(
        _float_of(settings, "timeout"), LAST if value == LAST else _float_of(settings, "value")
    )


def _window_spec(
    name: str,
    make: Callable[[Settings], Filter],
    size: int,
    every: int,
    extra: tuple[OptionSpec, ...] = (),
) -> FilterSpec:
    return FilterSpec(
        name, _window_options(size, every) + extra, None, make, _check_send_first_at(name)
    )


def _windowed(cls: type[_WindowFilter]) -> Callable[[Settings], Filter]:
    def make(s: Settings) -> Filter:
        return cls(_int_of(s, "window_size"), _int_of(s, "send_every"), _int_of(s, "send_first_at"))

    return make


_SPECS = (
    FilterSpec(
        "offset",
        (OptionSpec("value", OptionKind.NUMBER, required=True),),
        "value",
        lambda s: OffsetFilter(_float_of(s, "value")),
    ),
    FilterSpec(
        "multiply",
        (OptionSpec("value", OptionKind.NUMBER, required=True),),
        "value",
        lambda s: MultiplyFilter(_float_of(s, "value")),
    ),
    FilterSpec(
        "filter_out",
        (OptionSpec("value", OptionKind.NUMBERS, required=True),),
        "value",
        lambda s: FilterOutValueFilter(_numbers_of(s, "value")),
    ),
    FilterSpec(
        "skip_initial",
        (OptionSpec("count", OptionKind.COUNT, required=True),),
        "count",
        lambda s: SkipInitialFilter(_int_of(s, "count")),
    ),
    _window_spec("median", _windowed(MedianFilter), 5, 5),
    _window_spec("min", _windowed(MinFilter), 5, 5),
    _window_spec("max", _windowed(MaxFilter), 5, 5),
    _window_spec(
        "quantile",
        lambda s: QuantileFilter(
            _int_of(s, "window_size"),
            _int_of(s, "send_every"),
            _int_of(s, "send_first_at"),
            _float_of(s, "quantile"),
        ),
        5,
        5,
        (OptionSpec("quantile", OptionKind.FRACTION, 0.9),),
    ),
    _window_spec(
        "sliding_window_moving_average", _windowed(SlidingWindowMovingAverageFilter), 15, 15
    ),
    FilterSpec(
        "exponential_moving_average",
        (
            OptionSpec("alpha", OptionKind.POSITIVE, 0.1),
            OptionSpec("send_every", OptionKind.COUNT, 15),
            OptionSpec("send_first_at", OptionKind.COUNT, 1),
        ),
        None,
        lambda s: ExponentialMovingAverageFilter(
            _float_of(s, "alpha"), _int_of(s, "send_every"), _int_of(s, "send_first_at")
        ),
        _check_send_first_at("exponential_moving_average"),
    ),
    FilterSpec(
        "throttle",
        (OptionSpec("period", OptionKind.DURATION, required=True),),
        "period",
        lambda s: ThrottleFilter(_float_of(s, "period")),
    ),
    FilterSpec(
        "throttle_average",
        (OptionSpec("period", OptionKind.DURATION, required=True, above_zero=True),),
        "period",
        lambda s: ThrottleAverageFilter(_float_of(s, "period")),
        timer=True,
    ),
    FilterSpec(
        "debounce",
        (OptionSpec("period", OptionKind.DURATION, required=True),),
        "period",
        lambda s: DebounceFilter(_float_of(s, "period")),
        timer=True,
    ),
    FilterSpec(
        "heartbeat",
        (
            OptionSpec("period", OptionKind.DURATION, required=True, above_zero=True),
            OptionSpec("optimistic", OptionKind.BOOLEAN, False),
        ),
        "period",
        lambda s: HeartbeatFilter(_float_of(s, "period"), _bool_of(s, "optimistic")),
        timer=True,
    ),
    FilterSpec(
        "timeout",
        (
            OptionSpec("timeout", OptionKind.DURATION, required=True),
            OptionSpec("value", OptionKind.NUMBER_OR_LAST, math.nan),
        ),
        "timeout",
        _make_timeout,
        timer=True,
    ),
    FilterSpec(
        "delta",
        (
            OptionSpec("value", OptionKind.DELTA, required=True),
            OptionSpec("type", OptionKind.CHOICE, "absolute", choices=("absolute", "percentage")),
        ),
        "value",
        lambda s: DeltaFilter(_float_of(s, "value"), s["type"] == "percentage"),
        _check_delta,
    ),
    FilterSpec(
        "clamp",
        (
            OptionSpec("min_value", OptionKind.NUMBER, math.nan),
            OptionSpec("max_value", OptionKind.NUMBER, math.nan),
            OptionSpec("ignore_out_of_range", OptionKind.BOOLEAN, False),
        ),
        None,
        lambda s: ClampFilter(
            _float_of(s, "min_value"), _float_of(s, "max_value"), _bool_of(s, "ignore_out_of_range")
        ),
        _check_clamp,
    ),
    FilterSpec(
        "round",
        (OptionSpec("accuracy_decimals", OptionKind.DECIMALS, required=True),),
        "accuracy_decimals",
        lambda s: RoundFilter(_int_of(s, "accuracy_decimals")),
    ),
    FilterSpec(
        "round_to_multiple_of",
        (OptionSpec("multiple", OptionKind.POSITIVE, required=True, above_zero=True),),
        "multiple",
        lambda s: RoundMultipleFilter(_float_of(s, "multiple")),
    ),
    FilterSpec(
        "calibrate_linear",
        (
            OptionSpec("datapoints", OptionKind.DATAPOINTS, required=True),
            OptionSpec(
                "method", OptionKind.CHOICE, "least_squares", choices=("least_squares", "exact")
            ),
        ),
        "datapoints",
        _make_calibrate_linear,
        _check_calibrate_linear,
    ),
    FilterSpec(
        "calibrate_polynomial",
        (
            OptionSpec("datapoints", OptionKind.DATAPOINTS, required=True),
            OptionSpec("degree", OptionKind.INTEGER, required=True),
        ),
        None,
        lambda s: CalibratePolynomialFilter.fit(_points_of(s), _int_of(s, "degree")),
        _check_calibrate_polynomial,
    ),
)

FILTERS: Mapping[str, FilterSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Every filter name the config accepts, with its options (ESPHome's names)."""

FILTER_NAMES: tuple[str, ...] = tuple(sorted(FILTERS))

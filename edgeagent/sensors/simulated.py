"""The simulated sensor: plausible, deterministic readings for demos and tests. Core.

Theory of operation
-------------------
``SimulatedSensor(fields, seed=..., interval=...)`` reports the configured fields (name ->
``FieldSpec``); ``sample(n)`` gives the values of the n-th sample (the adapter passes its tick
count, 0, 1, 2, ...). The built-in default config uses it, so ``scripts/run`` shows live
readings on a machine with no sensor attached.

Determinism: every value is a pure function of ``(seed, field name, n)``, computed from a
hash (BLAKE2b), not drawn from a ``random.Random`` whose state advances. So ``sample(n)`` does
not depend on which samples were asked for before, in which order or how often; the same seed
gives the same sequence in every process and after a restart; adding or renaming one field
leaves the others' values unchanged; and a test can ask for sample 10**6 directly.

Shape: each field takes the ``Profile`` of its ``device_class`` (``PROFILES``; any other
class, or none, takes ``DEFAULT_PROFILE``, a bounded wander over 0..100):

    value = mid + (half_range - noise) * wander(t) + noise * jitter(n),   t = n * interval

``wander`` is value noise: seeded points in [-1, 1] every ``period`` seconds of simulated
time, joined by a smoothstep, plus a second layer at a quarter of the period with half the
weight. It moves like a bounded random walk (slowly, never out of its range) without needing
the history a random walk would. ``jitter`` is independent per sample, in [-1, 1]. The value
therefore always lies in ``[low, high]``, and is rounded to the profile's ``decimals`` (0
gives an int). Temperatures are computed in °C and converted when the field's unit is °F or K.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from edgeagent.sensors.model import FieldSpec, Values


@dataclass(frozen=True, slots=True)
class Profile:
    """The range a simulated field stays in, how much it jitters, and how slowly it drifts."""

    low: float
    high: float
    noise: float  # the per-sample jitter's amplitude, part of the range
    decimals: int
    period: float  # seconds of simulated time between the wander's points

    def __post_init__(self) -> None:
        if not (self.low < self.high and 0 <= 2 * self.noise <= self.high - self.low):
            raise ValueError(f"a profile needs low < high and noise within the range: {self}")
        if self.period <= 0 or self.decimals < 0:
            raise ValueError(f"a profile needs a positive period and decimals >= 0: {self}")


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        # °C, around 21: an indoor room, drifting a degree or two over a quarter of an hour.
        "temperature": Profile(19.0, 23.0, 0.05, 2, 900.0),
        "humidity": Profile(30.0, 60.0, 0.3, 1, 1200.0),  # %
        "pm1": Profile(0.5, 8.0, 0.3, 1, 300.0),  # µg/m³: clean indoor air, small and positive
        "pm25": Profile(1.0, 12.0, 0.5, 1, 300.0),
        "pm10": Profile(2.0, 20.0, 0.8, 1, 300.0),
        "carbon_dioxide": Profile(420.0, 900.0, 5.0, 0, 1800.0),  # ppm
        "atmospheric_pressure": Profile(1005.0, 1021.0, 0.1, 1, 3600.0),  # hPa
        "pressure": Profile(1005.0, 1021.0, 0.1, 1, 3600.0),
        "signal_strength": Profile(-75.0, -45.0, 2.0, 0, 120.0),  # dBm
    }
)
DEFAULT_PROFILE = Profile(0.0, 100.0, 1.0, 2, 600.0)

# What the built-in default config's demo sensor reports.
DEFAULT_FIELDS: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "temperature": FieldSpec("°C", "temperature", "measurement"),
        "humidity": FieldSpec("%", "humidity", "measurement"),
    }
)

DEFAULT_INTERVAL = 1.0


def profile_for(spec: FieldSpec) -> Profile:
    """The profile a field takes: by its device class, else the bounded default wander."""
    return PROFILES.get(spec.device_class or "", DEFAULT_PROFILE)


class SimulatedSensor:
    """Deterministic values for the configured fields (see the module docstring)."""

    __slots__ = ("_fields", "fields", "interval", "seed")

    def __init__(
        self, fields: Mapping[str, FieldSpec], *, seed: int = 0, interval: float = DEFAULT_INTERVAL
    ) -> None:
        if not fields:
            raise ValueError("a simulated sensor needs at least one field")
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a positive number of seconds, not {interval}")
        self.fields: Mapping[str, FieldSpec] = MappingProxyType(dict(fields))
        self.seed = seed
        self.interval = interval
        self._fields = [
            (name, profile_for(spec), _converter(spec), f"{seed}\0{name}\0")
            for name, spec in fields.items()
        ]

    def sample(self, n: int) -> Values:
        """The values of sample ``n``: a pure function of the seed, the field and ``n``."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"the sample index is an int, not {n!r}")
        t = n * self.interval
        values: Values = {}
        for name, profile, convert, key in self._fields:
            mid = (profile.low + profile.high) / 2
            drift = (profile.high - profile.low) / 2 - profile.noise
            value = (
                mid
                + drift * _wander(key, t, profile.period)
                + profile.noise * _unit(key + "jitter", n)
            )
            value = convert(min(profile.high, max(profile.low, value)))
            values[name] = round(value) if profile.decimals == 0 else round(value, profile.decimals)
        return values


def _wander(key: str, t: float, period: float) -> float:
    """Smooth value noise in [-1, 1]: two layers, the second four times faster, half weight."""
    return (2 * _smooth(key + "slow", t / period) + _smooth(key + "fast", 4 * t / period)) / 3


def _smooth(key: str, x: float) -> float:
    knot = math.floor(x)
    frac = x - knot
    a, b = _unit(key, knot), _unit(key, knot + 1)
    return a + (b - a) * frac * frac * (3 - 2 * frac)


def _unit(key: str, n: int) -> float:
    """A uniform number in [-1, 1) from a hash of ``key`` and ``n`` (same in every process)."""
    digest = hashlib.blake2b(f"{key}\0{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1


def _converter(spec: FieldSpec) -> Callable[[float], float]:
    if spec.device_class == "temperature" and spec.unit == "°F":
        return _fahrenheit
    if spec.device_class == "temperature" and spec.unit == "K":
        return _kelvin
    return _same


def _same(celsius: float) -> float:
    return celsius


def _fahrenheit(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def _kelvin(celsius: float) -> float:
    return celsius + 273.15

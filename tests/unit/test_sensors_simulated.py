"""The simulated sensor: deterministic per seed, independent of call history, in range."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.sensors.model import FieldSpec, is_number
from edgeagent.sensors.simulated import (
    DEFAULT_FIELDS,
    DEFAULT_PROFILE,
    PROFILES,
    Profile,
    SimulatedSensor,
    profile_for,
)

TEMPERATURE = FieldSpec("°C", "temperature", "measurement")
HUMIDITY = FieldSpec("%", "humidity", "measurement")
PM25 = FieldSpec("µg/m³", "pm25", "measurement")
OTHER = FieldSpec("rpm", None, "measurement")
FIELDS = {"temperature": TEMPERATURE, "humidity": HUMIDITY, "pm25": PM25, "fan": OTHER}


def num(value: object) -> float:
    """A sample's value as a float, checking it is a number (never a bool)."""
    assert isinstance(value, int | float)
    assert not isinstance(value, bool)
    return float(value)


seeds = st.integers(min_value=-(2**63), max_value=2**63)
indexes = st.integers(min_value=0, max_value=10**9)


def test_the_same_seed_gives_the_same_sequence() -> None:
    one = SimulatedSensor(FIELDS, seed=7)
    other = SimulatedSensor(FIELDS, seed=7)
    assert [one.sample(n) for n in range(200)] == [other.sample(n) for n in range(200)]


def test_another_seed_gives_another_sequence() -> None:
    one = SimulatedSensor(FIELDS, seed=7)
    other = SimulatedSensor(FIELDS, seed=8)
    assert [one.sample(n) for n in range(50)] != [other.sample(n) for n in range(50)]


def test_values_are_pinned_across_processes_and_releases() -> None:
    # A hash, not Python's randomised hash() or a Random whose algorithm could change.
    sensor = SimulatedSensor(DEFAULT_FIELDS, seed=1)
    assert sensor.sample(0) == {"temperature": 19.52, "humidity": 46.1}
    assert sensor.sample(1800) == {"temperature": 22.14, "humidity": 43.8}


@given(seeds, st.lists(indexes, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_a_sample_does_not_depend_on_what_was_asked_before(
    seed: int, ns: list[int], shuffler: random.Random
) -> None:
    fresh = SimulatedSensor(FIELDS, seed=seed)
    expected = {n: SimulatedSensor(FIELDS, seed=seed).sample(n) for n in ns}
    order = list(ns)
    shuffler.shuffle(order)
    for n in order:
        assert fresh.sample(n) == expected[n]
    assert fresh.sample(ns[0]) == expected[ns[0]]  # asking again changes nothing


@given(seeds, indexes)
def test_a_field_does_not_change_when_others_are_added(seed: int, n: int) -> None:
    alone = SimulatedSensor({"temperature": TEMPERATURE}, seed=seed).sample(n)
    together = SimulatedSensor(FIELDS, seed=seed).sample(n)
    assert together["temperature"] == alone["temperature"]
    assert list(together) == list(FIELDS)


@given(seeds, indexes)
def test_every_value_stays_in_its_profiles_range(seed: int, n: int) -> None:
    values = SimulatedSensor(FIELDS, seed=seed).sample(n)
    assert all(is_number(value) for value in values.values())
    temperature, humidity, pm25, fan = (num(values[name]) for name in FIELDS)
    assert 19.0 <= temperature <= 23.0
    assert 30.0 <= humidity <= 60.0
    assert 0 < pm25 <= 12.0
    assert 0.0 <= fan <= 100.0


@given(seeds, indexes, st.sampled_from(sorted(PROFILES)))
def test_every_profile_bounds_its_values(seed: int, n: int, device_class: str) -> None:
    profile = PROFILES[device_class]
    value = SimulatedSensor({"x": FieldSpec(None, device_class)}, seed=seed).sample(n)["x"]
    assert profile.low <= num(value) <= profile.high
    if profile.decimals == 0:
        assert type(value) is int
    else:
        assert round(num(value), profile.decimals) == value


@given(seeds, st.integers(min_value=0, max_value=10**7))
def test_temperature_drifts_slowly(seed: int, n: int) -> None:
    sensor = SimulatedSensor({"t": TEMPERATURE}, seed=seed, interval=1.0)
    step = abs(num(sensor.sample(n + 1)["t"]) - num(sensor.sample(n)["t"]))
    # jitter at most 2 x 0.05 plus the drift of one second, plus rounding
    assert step <= 0.15


def test_temperature_wanders_around_21_degrees() -> None:
    sensor = SimulatedSensor({"t": TEMPERATURE}, seed=3, interval=30.0)
    values = [num(sensor.sample(n)["t"]) for n in range(2000)]  # about 17 hours
    assert 20.0 <= statistics.mean(values) <= 22.0
    assert max(values) - min(values) >= 1.5
    assert len(set(values)) > 100  # it moves, and not only by jitter


def test_the_default_walk_is_bounded_but_roams() -> None:
    sensor = SimulatedSensor({"fan": OTHER}, seed=11, interval=10.0)
    values = [num(sensor.sample(n)["fan"]) for n in range(5000)]
    assert min(values) >= 0
    assert max(values) <= 100
    assert max(values) - min(values) >= 40


def test_temperature_follows_the_fields_unit() -> None:
    celsius = num(SimulatedSensor({"t": TEMPERATURE}, seed=5).sample(42)["t"])
    fahrenheit = num(SimulatedSensor({"t": FieldSpec("°F", "temperature")}, seed=5).sample(42)["t"])
    kelvin = num(SimulatedSensor({"t": FieldSpec("K", "temperature")}, seed=5).sample(42)["t"])
    assert 66.2 <= fahrenheit <= 73.4
    assert fahrenheit == pytest.approx(celsius * 9 / 5 + 32, abs=0.02)
    assert kelvin == pytest.approx(celsius + 273.15, abs=0.01)


def test_profiles_by_device_class() -> None:
    assert profile_for(TEMPERATURE) is PROFILES["temperature"]
    assert profile_for(PM25) is PROFILES["pm25"]
    assert profile_for(OTHER) is DEFAULT_PROFILE
    assert profile_for(FieldSpec()) is DEFAULT_PROFILE
    assert (PROFILES["humidity"].low, PROFILES["humidity"].high) == (30.0, 60.0)


def test_the_default_fields_are_a_room() -> None:
    assert DEFAULT_FIELDS["temperature"] == TEMPERATURE
    assert DEFAULT_FIELDS["humidity"] == HUMIDITY


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        SimulatedSensor({})
    with pytest.raises(ValueError, match="positive number of seconds"):
        SimulatedSensor(FIELDS, interval=0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        SimulatedSensor(FIELDS, interval=float("nan"))
    with pytest.raises(TypeError, match="an int"):
        SimulatedSensor(FIELDS).sample(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="an int"):
        SimulatedSensor(FIELDS).sample(True)
    with pytest.raises(ValueError, match="low < high"):
        Profile(10.0, 5.0, 0.1, 1, 60.0)
    with pytest.raises(ValueError, match="positive period"):
        Profile(0.0, 5.0, 0.1, 1, 0.0)


def test_the_fields_are_kept_read_only() -> None:
    fields = dict(FIELDS)
    sensor = SimulatedSensor(fields, seed=1)
    fields["extra"] = OTHER
    assert list(sensor.fields) == list(FIELDS)
    assert list(sensor.sample(0)) == list(FIELDS)

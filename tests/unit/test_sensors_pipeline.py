"""The pipeline from parsed values to readings: field selection, a filter chain per field,
timer filters on a simulated clock, the counters, and the payloads of the reading intents."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgeagent.sensors.filters import FilterChain, parse_filter
from edgeagent.sensors.model import DropReason, FieldSpec, Reading
from edgeagent.sensors.pipeline import Pipeline, field_payloads, reading_payload

PM = {"pm25": FieldSpec("µg/m³", "pm25", "measurement")}


def chain(*filters: tuple[str, object]) -> FilterChain:
    return FilterChain.from_configs([parse_filter(name, value) for name, value in filters])


def test_configured_fields_are_kept_and_a_frame_without_them_is_dropped() -> None:
    pipeline = Pipeline("air", {**PM, "pm10": FieldSpec("µg/m³")})
    reading = pipeline.feed(1.0, {"pm25": 12, "pm10": 20, "noise": 3}, ts=1000.0)
    assert reading == Reading("air", 1000.0, {"pm25": 12, "pm10": 20})
    assert pipeline.feed(2.0, {"other": 1}) is None
    assert pipeline.stats.dropped == {str(DropReason.EMPTY): 1}
    assert (pipeline.stats.frames, pipeline.stats.readings) == (2, 1)
    assert pipeline.last == reading


def test_no_fields_configured_keeps_everything_and_none_skips_a_field() -> None:
    pipeline = Pipeline("gps", {})
    reading = pipeline.feed(0.0, {"lat": 1.5, "lon": None, "time": "12:00:00Z", "ok": True})
    assert reading is not None
    assert reading.values == {"lat": 1.5, "time": "12:00:00Z", "ok": True}


def test_each_field_gets_its_own_chain() -> None:
    pipeline = Pipeline("t", {}, lambda: chain(("sliding_window_moving_average",
                                                {"window_size": 2, "send_every": 2, "send_first_at": 2})))  # fmt: skip
    assert pipeline.feed(0, {"a": 1, "b": 10}) is None  # each window holds one value
    reading = pipeline.feed(1, {"a": 3, "b": 30})
    assert reading is not None
    assert reading.values == {"a": 2.0, "b": 20.0}


def test_strings_and_bools_pass_the_filters_untouched() -> None:
    pipeline = Pipeline("t", {}, lambda: chain(("multiply", 10)))
    reading = pipeline.feed(0, {"v": 2, "state": "ok", "flag": False})
    assert reading is not None
    assert reading.values == {"v": 20.0, "state": "ok", "flag": False}


def test_timer_filters_fire_on_the_simulated_clock() -> None:
    pipeline = Pipeline("t", {}, lambda: chain(("heartbeat", 5.0)))
    pipeline.feed(0.0, {"v": 1})
    assert pipeline.next_deadline() == 5.0
    assert pipeline.fire(4.9) is None
    fired = pipeline.fire(5.0, ts=123.0)
    assert fired == Reading("t", 123.0, {"v": 1.0})
    assert pipeline.next_deadline() == 10.0


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50))
def test_without_filters_every_number_becomes_a_reading(values: list[float]) -> None:
    pipeline = Pipeline("t", {"v": FieldSpec()})
    out = [pipeline.feed(float(i), {"v": v}) for i, v in enumerate(values)]
    assert [r.values["v"] for r in out if r is not None] == values
    assert pipeline.stats.readings == len(values)


def test_payloads_of_the_reading_intents() -> None:
    reading = Reading("air", 1700000000.5, {"pm25": 12})
    assert reading_payload(reading, PM) == {
        "ts": 1700000000.5,
        "fields": {"pm25": {"value": 12, "unit": "µg/m³"}},
    }
    assert field_payloads(reading, PM) == [
        ("sensor.air.pm25", {"value": 12, "ts": 1700000000.5, "unit": "µg/m³"})
    ]

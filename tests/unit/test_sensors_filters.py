"""ESPHome's sensor filters (edgeagent.sensors.filters): examples from ESPHome's behaviour,
the registry and its errors, and hypothesis properties against brute-force references, with
the timer filters driven on a simulated clock."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.sensors.filters import (
    FILTER_NAMES,
    FILTERS,
    LAST,
    CalibrateLinearFilter,
    CalibratePolynomialFilter,
    ClampFilter,
    DebounceFilter,
    DeltaFilter,
    ExponentialMovingAverageFilter,
    Filter,
    FilterChain,
    FilterConfig,
    FilterConfigError,
    FilterOutValueFilter,
    HeartbeatFilter,
    MaxFilter,
    MedianFilter,
    MinFilter,
    OptionKind,
    QuantileFilter,
    RoundFilter,
    RoundMultipleFilter,
    SkipInitialFilter,
    SlidingWindowMovingAverageFilter,
    ThrottleAverageFilter,
    ThrottleFilter,
    TimeoutFilter,
    build_chain,
    build_filter,
    parse_chain,
    parse_filter,
    quantile_position,
)

NAN = math.nan
Timed = list[tuple[float, float]]


def key(values: Sequence[float]) -> list[object]:
    """Values compared with NaN equal to NaN (lists of floats)."""
    return ["nan" if math.isnan(v) else v for v in values]


def timed_key(events: Timed) -> list[tuple[float, object]]:
    return [(t, "nan" if math.isnan(v) else v) for t, v in events]


def feed_all(
    target: Filter | FilterChain, values: Sequence[float], now: float = 0.0
) -> list[float]:
    out: list[float] = []
    for value in values:
        out.extend(target.feed(now, value))
    return out


def simulate(target: Filter | FilterChain, events: Timed, end: float) -> Timed:
    """Drive ``target`` on a simulated clock: every deadline fires at its exact time, values
    arrive at theirs; returns what left it, stamped with when."""
    out: Timed = []

    def drain(until: float) -> None:
        while (deadline := target.next_deadline()) is not None and deadline <= until:
            out.extend((deadline, v) for v in target.fire(deadline))

    for t, value in events:
        drain(t)
        out.extend((t, v) for v in target.feed(t, value))
    drain(end)
    return out


# --------------------------------------------------------------------------------------------
# The registry: ESPHome's names, options and defaults.

ESPHOME_DEFAULTS = {
    "median": {"window_size": 5, "send_every": 5, "send_first_at": 1},
    "min": {"window_size": 5, "send_every": 5, "send_first_at": 1},
    "max": {"window_size": 5, "send_every": 5, "send_first_at": 1},
    "quantile": {"window_size": 5, "send_every": 5, "send_first_at": 1, "quantile": 0.9},
    "sliding_window_moving_average": {"window_size": 15, "send_every": 15, "send_first_at": 1},
    "exponential_moving_average": {"alpha": 0.1, "send_every": 15, "send_first_at": 1},
}


def test_the_registry_has_every_filter_the_issue_names_with_esphome_spelling() -> None:
    wanted = {
        "offset", "multiply", "filter_out", "skip_initial", "median", "min", "max", "quantile",
        "sliding_window_moving_average", "exponential_moving_average", "throttle",
        "throttle_average", "debounce", "heartbeat", "timeout", "delta", "clamp", "round",
        "calibrate_linear",
    }  # fmt: skip
    assert wanted <= set(FILTERS)
    assert set(FILTERS) - wanted == {"round_to_multiple_of", "calibrate_polynomial"}
    assert list(FILTER_NAMES) == sorted(FILTERS)
    for name, spec in FILTERS.items():
        assert spec.name == name
        assert spec.simple is None or spec.simple in spec.option_names


@pytest.mark.parametrize("name", sorted(ESPHOME_DEFAULTS))
def test_windowed_defaults_are_esphomes(name: str) -> None:
    assert FILTERS[name].defaults() == ESPHOME_DEFAULTS[name]
    # `median:` with no value and `median: {}` both mean every default.
    assert dict(parse_filter(name, None).settings) == ESPHOME_DEFAULTS[name]
    assert parse_filter(name, {}) == parse_filter(name, None)


def test_other_defaults_are_esphomes() -> None:
    clamp = dict(parse_filter("clamp", {"min_value": 0}).settings)
    assert clamp["min_value"] == 0.0
    assert math.isnan(clamp["max_value"])
    assert clamp["ignore_out_of_range"] is False
    timeout = dict(parse_filter("timeout", 5.0).settings)
    assert timeout["timeout"] == 5.0
    assert math.isnan(timeout["value"])
    assert dict(parse_filter("heartbeat", 5.0).settings) == {"period": 5.0, "optimistic": False}
    assert dict(parse_filter("delta", 5).settings) == {"value": 5.0, "type": "absolute"}
    assert parse_filter("calibrate_linear", ["0 -> 1", "10 -> 12.1"]).get("method") == (
        "least_squares"
    )


def test_timer_filters_are_marked_and_durations_are_the_kind_the_config_section_converts() -> None:
    timers = {name for name, spec in FILTERS.items() if spec.timer}
    assert timers == {"debounce", "heartbeat", "timeout", "throttle_average"}
    durations = {
        (name, option.name)
        for name, spec in FILTERS.items()
        for option in spec.options
        if option.kind is OptionKind.DURATION
    }
    assert durations == {
        ("throttle", "period"),
        ("throttle_average", "period"),
        ("debounce", "period"),
        ("heartbeat", "period"),
        ("timeout", "timeout"),
    }


def test_the_issues_example_chain() -> None:
    chain = build_chain(
        [{"throttle": 10.0}, {"sliding_window_moving_average": {"window_size": 5, "send_every": 5}}]
    )
    out = []
    for t in range(0, 100, 3):  # a value every 3 s; throttle keeps t = 0, 12, 24, ...
        out.extend(chain.feed(float(t), float(t)))
    # send_first_at 1: the first value goes out at once, then the mean of every 5.
    assert out == [0.0, (12 + 24 + 36 + 48 + 60) / 5]


@pytest.mark.parametrize(
    ("name", "value", "settings"),
    [
        ("offset", 2, {"value": 2.0}),
        ("offset", "-1.5", {"value": -1.5}),
        ("multiply", {"value": 1.2}, {"value": 1.2}),
        ("filter_out", 42, {"value": (42.0,)}),
        ("filter_out", [0, "nan"], {"value": (0.0, NAN)}),
        ("skip_initial", 3, {"count": 3}),
        ("throttle", 10.0, {"period": 10.0}),
        ("throttle", {"period": 0.5}, {"period": 0.5}),
        ("debounce", 1, {"period": 1.0}),
        ("heartbeat", {"period": 5, "optimistic": "yes"}, {"period": 5.0, "optimistic": True}),
        ("timeout", {"timeout": 10, "value": "last"}, {"timeout": 10.0, "value": LAST}),
        ("timeout", {"timeout": 10, "value": 0}, {"timeout": 10.0, "value": 0.0}),
        ("delta", "10%", {"value": 0.1, "type": "percentage"}),
        ("delta", {"value": 0.1, "type": "percentage"}, {"value": 0.1, "type": "percentage"}),
        ("delta", {"value": "10%"}, {"value": 0.1, "type": "percentage"}),
        ("round", 2, {"accuracy_decimals": 2}),
        ("round", {"accuracy_decimals": 0}, {"accuracy_decimals": 0}),
        ("round_to_multiple_of", 0.5, {"multiple": 0.5}),
        ("median", {"window_size": "7", "send_every": 3.0}, None),
        (
            "calibrate_linear",
            {"datapoints": ["0.0 -> 1.0", [10, 12.1], {"from": 20, "to": 30}], "method": "EXACT"},
            {"datapoints": ((0.0, 1.0), (10.0, 12.1), (20.0, 30.0)), "method": "exact"},
        ),
        (
            "calibrate_polynomial",
            {"datapoints": ["0 -> 1", "1 -> 3", "2 -> 7"], "degree": 2},
            {"datapoints": ((0.0, 1.0), (1.0, 3.0), (2.0, 7.0)), "degree": 2},
        ),
    ],
)
def test_parse_accepts_esphome_forms(name: str, value: object, settings: dict | None) -> None:
    config = parse_filter(name, value)
    assert isinstance(config, FilterConfig)
    assert tuple(k for k, _ in config.settings) == FILTERS[name].option_names
    if settings is not None:
        got = dict(config.settings)
        assert set(got) == set(settings)
        for option, expected in settings.items():
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(got[option])
            elif isinstance(expected, tuple) and expected and isinstance(expected[0], float):
                assert key(got[option]) == key(expected)
            else:
                assert got[option] == expected
    else:
        assert dict(config.settings) == {"window_size": 7, "send_every": 3, "send_first_at": 1}
    assert isinstance(config.build(), Filter)
    assert type(build_filter(name, value)) is type(config.build())


@pytest.mark.parametrize(
    ("name", "value", "option", "fragments"),
    [
        ("medain", None, None, ["unknown filter 'medain'", "median", "calibrate_linear"]),
        ("median", 5, None, ["median takes a mapping", "window_size, send_every, send_first_at"]),
        ("median", {"windowsize": 3}, "windowsize", ["not an option of median", "window_size"]),
        ("median", {"window_size": 0}, "window_size", ["1 or more"]),
        ("median", {"window_size": 2.5}, "window_size", ["integer"]),
        ("median", {"send_first_at": 6}, "send_first_at", ["must not exceed send_every (5)"]),
        ("quantile", {"quantile": 1.5}, "quantile", ["from 0 to 1"]),
        ("exponential_moving_average", {"alpha": -1}, "alpha", ["0 or more"]),
        ("throttle", "10s", "period", ["seconds", "the config section converts"]),
        ("throttle", -1, "period", ["0 or more"]),
        ("throttle", None, "period", ["throttle needs 'period'"]),
        ("heartbeat", 0, "period", ["above 0"]),
        ("throttle_average", 0, "period", ["above 0"]),
        ("heartbeat", {"period": 1, "optimistc": True}, "optimistc", ["period, optimistic"]),
        ("heartbeat", {"period": 1, "optimistic": "maybe"}, "optimistic", ["true or false"]),
        ("timeout", {"timeout": 1, "value": "first"}, "value", ["a number, nan or last"]),
        ("delta", "150%", "value", ["0% to 100%"]),
        ("delta", -5, "value", ["0 or more"]),
        ("delta", {"value": "10%", "type": "absolute"}, "type", ["needs type percentage"]),
        ("delta", {"value": 1, "type": "relative"}, "type", ["absolute, percentage"]),
        ("filter_out", "x", "value", ["a number"]),
        ("filter_out", True, "value", ["a number"]),
        ("clamp", {}, None, ["needs min_value or max_value"]),
        ("clamp", {"min_value": 5, "max_value": 1}, "min_value", ["must not exceed"]),
        ("round", 256, "accuracy_decimals", ["0 to 255"]),
        ("round_to_multiple_of", 0, "multiple", ["above 0"]),
        ("calibrate_linear", ["0 -> 1"], "datapoints", ["at least 2"]),
        ("calibrate_linear", ["0 => 1", "1 -> 2"], "datapoints", ["'from -> to'"]),
        ("calibrate_linear", [[0, 1, 2], [1, 2]], "datapoints", ["[from, to]"]),
        ("calibrate_linear", [{"from": 0}, "1 -> 2"], "datapoints", ["{from: x, to: y}"]),
        ("calibrate_linear", ["nan -> 1", "1 -> 2"], "datapoints", ["'from -> to'"]),
        ("calibrate_linear", ["1 -> 1", "1 -> 2"], "datapoints", ["not all be the same"]),
        (
            "calibrate_linear",
            {"datapoints": ["2 -> 1", "1 -> 2"], "method": "exact"},
            "datapoints",
            ["ascending"],
        ),
        (
            "calibrate_linear",
            {"datapoints": ["1 -> 1", "1 -> 2", "2 -> 3"], "method": "exact"},
            "datapoints",
            ["must not repeat"],
        ),
        ("calibrate_linear", {"method": "exact"}, "datapoints", ["needs 'datapoints'"]),
        (
            "calibrate_polynomial",
            {"datapoints": ["0 -> 1", "1 -> 2"], "degree": 2},
            "degree",
            ["at most 1"],
        ),
        (
            "calibrate_polynomial",
            {"datapoints": ["1 -> 1", "1 -> 2"], "degree": 1},
            "datapoints",
            ["do not determine"],
        ),
    ],
)
def test_parse_errors_name_the_option_and_the_valid_choices(
    name: str, value: object, option: str | None, fragments: list[str]
) -> None:
    with pytest.raises(FilterConfigError) as caught:
        parse_filter(name, value)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.option == option
    assert error.filter_name == (name if name in FILTERS else None)
    for fragment in fragments:
        assert fragment in str(error)


def test_configs_parsed_from_the_same_yaml_are_equal_nan_included() -> None:
    yaml = [{"filter_out": "nan"}, {"clamp": {"max_value": 3}}, {"timeout": {"timeout": 1}}]
    assert parse_chain(yaml) == parse_chain(yaml)
    assert hash(parse_chain(yaml)) == hash(parse_chain(yaml))
    assert parse_chain(yaml) != parse_chain([*yaml, {"offset": 1}])


def test_chain_errors_carry_the_index() -> None:
    assert parse_chain(None) == ()
    assert len(build_chain([])) == 0
    with pytest.raises(FilterConfigError, match="must be a list"):
        parse_chain({"throttle": 1})
    with pytest.raises(FilterConfigError, match="filter #2 must be a mapping with one key") as c:
        parse_chain([{"offset": 1}, {"offset": 1, "multiply": 2}])
    assert c.value.index == 1
    with pytest.raises(FilterConfigError, match="filter #2 must be a mapping") as c:
        parse_chain([{"offset": 1}, "median"])
    assert c.value.index == 1
    with pytest.raises(FilterConfigError, match="not an option of median") as c:
        parse_chain([{"offset": 1}, {"delta": 1}, {"median": {"size": 3}}])
    assert (c.value.index, c.value.filter_name, c.value.option) == (2, "median", "size")


def test_a_chain_built_twice_shares_no_state() -> None:
    configs = parse_chain([{"skip_initial": 1}, {"median": {"window_size": 3, "send_every": 1}}])
    first, second = FilterChain.from_configs(configs), FilterChain.from_configs(configs)
    assert feed_all(first, [1, 2, 3]) == [2.0, 2.5]
    assert feed_all(second, [7, 8]) == [8.0]


# --------------------------------------------------------------------------------------------
# Each filter, with examples of ESPHome's behaviour.


def test_offset_and_multiply() -> None:
    assert key(feed_all(build_filter("offset", -2), [10, NAN])) == [8.0, "nan"]
    assert key(feed_all(build_filter("multiply", 1.5), [2, NAN])) == [3.0, "nan"]


def test_filter_out_drops_equal_values_and_nan_only_when_asked() -> None:
    assert key(feed_all(build_filter("filter_out", 42), [42, 42.0, 41.9, NAN])) == [41.9, "nan"]
    assert feed_all(build_filter("filter_out", "nan"), [NAN, 1, NAN, 2]) == [1.0, 2.0]
    assert feed_all(build_filter("filter_out", [0, NAN]), [0, NAN, 3, -0.0]) == [3.0]
    # With a sensor's accuracy_decimals both sides are rounded first, as ESPHome does.
    rounded = FilterOutValueFilter([85.0], accuracy_decimals=1)
    assert feed_all(rounded, [85.04, 84.94, 85.06]) == [84.94, 85.06]


def test_skip_initial() -> None:
    assert feed_all(SkipInitialFilter(3), [NAN, 1, 2, 3, 4]) == [3.0, 4.0]


def test_median_sends_at_first_then_every_send_every_ignoring_nan() -> None:
    median = MedianFilter()  # window 5, every 5, first at 1
    assert feed_all(median, [1, 2, 3, 4, 5, 6]) == [1.0, 4.0]  # median of 2..6
    median = MedianFilter(window_size=4, send_every=1)
    assert key(feed_all(median, [NAN, 1, 3, NAN, 10])) == ["nan", 1.0, 2.0, 2.0, 3.0]


def test_min_max_over_the_window() -> None:
    values = [5, NAN, 1, 7, 3]
    assert key(feed_all(MinFilter(3, 1, 1), values)) == [5.0, 5.0, 1.0, 1.0, 1.0]
    assert key(feed_all(MaxFilter(3, 1, 1), values)) == [5.0, 5.0, 5.0, 7.0, 7.0]
    assert key(feed_all(MinFilter(2, 1, 1), [NAN, NAN])) == ["nan", "nan"]


def test_quantile_picks_ceil_n_q_in_float32_like_esphome() -> None:
    assert feed_all(QuantileFilter(), [5, 1, 4, 2, 3]) == [5.0]  # first value alone
    q = QuantileFilter(window_size=5, send_every=5, send_first_at=5)
    assert feed_all(q, [5, 1, 4, 2, 3]) == [5.0]  # ceil(5 * 0.9) = 5th of 5
    assert quantile_position(10, 0.5) == 4
    assert quantile_position(5, 0.0) == 0  # ESPHome would index -1; the minimum here
    assert quantile_position(5, 1.0) == 4
    # 100 * 0.07f rounds to 7.0 in float32 (ceil 7 -> index 6); in double it is 7.0000001.
    assert quantile_position(100, 0.07) == 6
    assert math.ceil(100 * 0.07) - 1 == 7


def test_sliding_window_moving_average_defaults_15() -> None:
    swma = SlidingWindowMovingAverageFilter()
    out = feed_all(swma, [float(i) for i in range(1, 17)])
    assert out == [1.0, sum(range(2, 17)) / 15]
    assert key(feed_all(SlidingWindowMovingAverageFilter(3, 1, 1), [NAN, 2, NAN, 4])) == [
        "nan",
        2.0,
        2.0,
        3.0,
    ]


def test_exponential_moving_average() -> None:
    ema = ExponentialMovingAverageFilter(alpha=0.5, send_every=1)
    # NaN is sent as NaN and leaves the average alone.
    assert key(feed_all(ema, [10, 20, NAN, 30])) == [10.0, 15.0, "nan", 22.5]
    default = ExponentialMovingAverageFilter()  # alpha 0.1, every 15, first at 1
    assert feed_all(default, [10.0] + [20.0] * 15) == [10.0, pytest.approx(20 - 10 * 0.9**15)]


def test_throttle_passes_the_first_and_then_one_per_period() -> None:
    throttle = ThrottleFilter(10)
    passed = [t for t in (0, 5, 9.99, 10, 15, 21, 30.5, 31) if throttle.feed(t, t)]
    assert passed == [0, 10, 21, 31]


def test_delta_absolute() -> None:
    delta = DeltaFilter(5)
    ins = [NAN, 0, 3, 5, 9, 10.5, NAN, NAN, 10.5, 4]
    assert key(feed_all(delta, ins)) == [0.0, 5.0, 10.5, "nan", 10.5, 4.0]


def test_delta_percentage_is_relative_to_the_last_value_passed() -> None:
    # 100 passes (next needs 10), 110 (next needs 11), 121 (needs 12.1): 133 is 12 away.
    assert feed_all(build_filter("delta", "10%"), [100, 105, 110, 120, 121, 133, 134]) == [
        100.0,
        110.0,
        121.0,
        134.0,
    ]


def test_clamp() -> None:
    clamp = ClampFilter(0, 10)
    assert key(feed_all(clamp, [-1, 5, 11, NAN, math.inf])) == [0.0, 5.0, 10.0, "nan", math.inf]
    dropping = build_filter("clamp", {"min_value": 0, "ignore_out_of_range": True})
    assert feed_all(dropping, [-1, 0, 1e9]) == [0.0, 1e9]


def test_round_halves_away_from_zero_like_roundf() -> None:
    assert key(feed_all(RoundFilter(1), [1.25, -1.25, 1.24, NAN])) == [1.3, -1.3, 1.2, "nan"]
    assert feed_all(RoundFilter(0), [2.5, 3.5]) == [3.0, 4.0]
    assert feed_all(RoundFilter(255), [1.5]) == [1.5]


def test_round_to_multiple_of() -> None:
    assert feed_all(RoundMultipleFilter(0.5), [1.3, 1.2, -0.8, 1.25]) == [1.5, 1.0, -1.0, 1.0]


def test_calibrate_linear_least_squares_like_the_esphome_docs() -> None:
    calibrate = build_filter("calibrate_linear", ["0.0 -> 1.0", "10.0 -> 12.1"])
    assert calibrate.feed(0, 5.0) == [pytest.approx(6.55)]
    assert calibrate.feed(0, -10.0) == [pytest.approx(-10.1)]
    # Three noisy points: the least-squares line, not through each one.
    fit = CalibrateLinearFilter.least_squares([(0, 0), (1, 1), (2, 3)])
    assert fit.segments == (pytest.approx((1.5, -1 / 6, NAN), nan_ok=True),)
    # Every "to" the same: slope 0 (ESPHome divides by zero here).
    flat = build_filter("calibrate_linear", ["0 -> 5", "10 -> 5"])
    assert flat.feed(0, 123.0) == [5.0]


def test_calibrate_linear_exact_is_piecewise_and_extends_the_ends() -> None:
    exact = build_filter(
        "calibrate_linear",
        {"method": "exact", "datapoints": ["0 -> 0", "10 -> 100", "20 -> 100", "30 -> 200"]},
    )
    assert [exact.feed(0, x)[0] for x in (-1, 5, 10, 15, 25, 40)] == [
        -10.0,
        50.0,
        100.0,
        100.0,
        150.0,
        300.0,
    ]
    assert math.isnan(exact.feed(0, NAN)[0])
    # Collinear neighbours merge into one segment, as ESPHome's map_linear does.
    merged = CalibrateLinearFilter.exact([(0, 0), (1, 2), (2, 4), (3, 5)])
    assert [s[:2] for s in merged.segments] == [(2.0, 0.0), (1.0, 2.0)]
    assert merged.segments[0][2] == 2.0


def test_calibrate_polynomial() -> None:
    poly = build_filter(
        "calibrate_polynomial", {"datapoints": ["0 -> 1", "1 -> 3", "2 -> 7"], "degree": 2}
    )
    assert isinstance(poly, CalibratePolynomialFilter)
    assert poly.coefficients == pytest.approx((1.0, 1.0, 1.0))
    assert poly.feed(0, 3.0) == [pytest.approx(13.0)]


def test_debounce_sends_the_last_value_after_a_quiet_period() -> None:
    debounce = DebounceFilter(1.0)
    assert debounce.feed(0.0, 1) == []
    assert debounce.feed(0.5, 2) == []
    assert debounce.next_deadline() == 1.5
    assert debounce.fire(1.4) == []
    assert debounce.fire(1.5) == [2]
    assert debounce.next_deadline() is None
    assert debounce.fire(9.0) == []


def test_timeout_passes_values_and_sends_nan_or_last_once() -> None:
    timeout = TimeoutFilter(10.0)
    assert timeout.feed(0.0, 3) == [3]
    assert timeout.next_deadline() == 10.0
    assert key(timeout.fire(10.0)) == ["nan"]
    assert timeout.next_deadline() is None  # once, until values come again
    last = build_filter("timeout", {"timeout": 10, "value": "last"})
    assert simulate(last, [(0, 3.0), (4, 5.0)], end=100) == [(0, 3.0), (4, 5.0), (14, 5.0)]
    fixed = build_filter("timeout", {"timeout": 2, "value": 0})
    assert simulate(fixed, [(0, 3.0), (5, 4.0)], end=6) == [(0, 3.0), (2, 0.0), (5, 4.0)]


def test_heartbeat_resends_the_last_value_every_period() -> None:
    beat = HeartbeatFilter(5.0)
    events = [(0.0, 1.0), (2.0, 2.0), (7.0, 3.0)]
    assert simulate(beat, events, end=16) == [(5.0, 2.0), (10.0, 3.0), (15.0, 3.0)]
    optimistic = build_filter("heartbeat", {"period": 5, "optimistic": True})
    assert simulate(optimistic, events, end=11) == [
        (0.0, 1.0),
        (2.0, 2.0),
        (5.0, 2.0),
        (7.0, 3.0),
        (10.0, 3.0),
    ]


def test_throttle_average_means_each_period_and_nan_only_for_all_nan() -> None:
    average = ThrottleAverageFilter(10.0)
    events = [(0.0, 1.0), (3.0, 3.0), (12.0, NAN), (14.0, 5.0), (25.0, NAN), (45.0, 7.0)]
    # Periods [0,10) [10,20) [20,30) [30,40) (nothing: nothing sent) [40,50).
    assert timed_key(simulate(average, events, end=60)) == [
        (10.0, 2.0),
        (20.0, 5.0),
        (30.0, "nan"),
        (50.0, 7.0),
    ]
    assert average.next_deadline() is None  # nothing pending, no wake-up needed


def test_a_late_loop_loses_nothing_and_interval_phase_is_kept() -> None:
    beat = HeartbeatFilter(5.0)
    beat.feed(0.0, 1.0)
    assert beat.fire(17.0) == [1.0]  # ticks at 5, 10, 15 missed: one beat now
    assert beat.next_deadline() == 20.0  # phase kept
    debounce = DebounceFilter(1.0)
    debounce.feed(0.0, 1.0)
    assert debounce.feed(5.0, 2.0) == [1.0]  # fire was never called: the due value first
    chain = build_chain([{"debounce": 1}, {"offset": 10}])
    chain.feed(0.0, 1.0)
    assert chain.feed(3.0, 2.0) == [11.0]
    assert chain.fire(4.0) == [12.0]


def test_timer_output_enters_the_chain_after_the_filter_that_fired() -> None:
    chain = build_chain([{"offset": 1}, {"heartbeat": 5}, {"multiply": 10}])
    assert chain.feed(0.0, 1.0) == []
    assert chain.next_deadline() == 5.0
    assert chain.fire(5.0) == [20.0]  # offset not applied twice, multiply applied
    assert chain.next_deadline() == 10.0
    assert build_chain([{"median": {}}]).next_deadline() is None


def test_a_timer_feeding_a_timer() -> None:
    chain = build_chain([{"debounce": 2}, {"debounce": 1}])
    chain.feed(0.0, 1.0)  # the first debounce is due at 2
    assert chain.fire(2.0) == []  # the second gets 1.0 at 2, due at 3
    assert chain.next_deadline() == 3.0
    assert chain.fire(3.0) == [1.0]
    assert chain.next_deadline() is None


# --------------------------------------------------------------------------------------------
# Properties against simple references.

values_st = st.one_of(
    st.integers(-1000, 1000).map(float),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.just(NAN),
)
value_lists = st.lists(values_st, max_size=60)


def times_st(max_gap: int = 12) -> st.SearchStrategy[list[float]]:
    """Non-decreasing whole-second times, ties included (so float arithmetic stays exact)."""
    return st.lists(st.integers(0, max_gap), max_size=40).map(
        lambda gaps: [float(sum(gaps[: i + 1])) for i in range(len(gaps))]
    )


@st.composite
def timed_events(draw: st.DrawFn, max_gap: int = 12) -> Timed:
    times = draw(times_st(max_gap))
    return [(t, draw(values_st)) for t in times]


@st.composite
def window_params(draw: st.DrawFn) -> tuple[int, int, int]:
    send_every = draw(st.integers(1, 8))
    return draw(st.integers(1, 8)), send_every, draw(st.integers(1, send_every))


def brute_window(
    values: Sequence[float],
    window_size: int,
    send_every: int,
    send_first_at: int,
    reduce: Callable[[list[float]], float],
) -> list[float]:
    out = []
    for n in range(1, len(values) + 1):  # after the n-th value
        if n >= send_first_at and (n - send_first_at) % send_every == 0:
            numbers = [v for v in values[max(0, n - window_size) : n] if not math.isnan(v)]
            out.append(reduce(numbers) if numbers else NAN)
    return out


def ref_median(xs: list[float]) -> float:
    s, n = sorted(xs), len(xs)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


WINDOWED: list[tuple[str, Callable[[int, int, int], Filter], Callable[[list[float]], float]]] = [
    ("median", MedianFilter, ref_median),
    ("min", MinFilter, min),
    ("max", MaxFilter, max),
    ("mean", SlidingWindowMovingAverageFilter, lambda xs: sum(xs) / len(xs)),
    (
        "quantile 0.3",
        lambda w, e, f: QuantileFilter(w, e, f, 0.3),
        lambda xs: sorted(xs)[quantile_position(len(xs), 0.3)],
    ),
]


@pytest.mark.parametrize(("label", "make", "reduce"), WINDOWED, ids=[w[0] for w in WINDOWED])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=window_params(), values=value_lists)
def test_windowed_filters_match_a_brute_force_over_the_inputs(
    label: str,
    make: Callable[[int, int, int], Filter],
    reduce: Callable[[list[float]], float],
    params: tuple[int, int, int],
    values: list[float],
) -> None:
    got = feed_all(make(*params), values)
    assert key(got) == key(brute_window(values, *params, reduce))


@given(
    q=st.floats(0, 1),
    numbers=st.lists(st.integers(-100, 100).map(float), min_size=1, max_size=30),
)
def test_quantile_is_an_element_of_the_window_at_or_above_the_share_q(
    q: float, numbers: list[float]
) -> None:
    position = quantile_position(len(numbers), q)
    assert 0 <= position < len(numbers)
    # float32 moves the position by at most one from the exact ceil(n*q) - 1.
    assert abs(position - max(0, math.ceil(len(numbers) * q) - 1)) <= 1


@given(
    alpha=st.sampled_from([0.0, 0.1, 0.5, 1.0, 1.5]),
    every_first=st.integers(1, 6).flatmap(lambda e: st.tuples(st.just(e), st.integers(1, e))),
    values=value_lists,
)
def test_exponential_moving_average_matches_a_loop(
    alpha: float, every_first: tuple[int, int], values: list[float]
) -> None:
    send_every, send_first_at = every_first
    expected, average = [], None
    for n, value in enumerate(values, start=1):
        if not math.isnan(value):
            average = value if average is None else alpha * value + (1 - alpha) * average
        if n >= send_first_at and (n - send_first_at) % send_every == 0:
            expected.append(value if math.isnan(value) else average)
    got = feed_all(ExponentialMovingAverageFilter(alpha, send_every, send_first_at), values)
    assert key(got) == key(expected)


@given(period=st.integers(0, 15).map(float), events=timed_events())
def test_throttle_matches_a_loop(period: float, events: Timed) -> None:
    expected, last = [], None
    for t, value in events:
        if last is None or t - last >= period:
            expected.append(value)
            last = t
    throttle = ThrottleFilter(period)
    got = [out for t, value in events for out in throttle.feed(t, value)]
    assert key(got) == key(expected)


@given(
    delta=st.sampled_from([0.0, 0.5, 1.0, 5.0, 100.0]),
    percentage=st.booleans(),
    values=st.lists(st.one_of(st.integers(-20, 20).map(float), st.just(NAN)), max_size=60),
)
def test_delta_matches_a_loop(delta: float, percentage: bool, values: list[float]) -> None:
    fraction = delta / 100 if percentage else delta
    expected: list[float] = []
    last: float | None = None  # the last value passed; None before any
    for value in values:
        if math.isnan(value):
            passes = last is not None and not math.isnan(last)
        elif last is None or math.isnan(last):
            passes = True
        else:
            threshold = abs(last * fraction) if percentage else fraction
            passes = abs(value - last) >= threshold
        if passes:
            expected.append(value)
            last = value
    got = feed_all(DeltaFilter(fraction, percentage), values)
    assert key(got) == key(expected)


@given(
    low=st.one_of(st.just(NAN), st.integers(-50, 0).map(float)),
    high=st.one_of(st.just(NAN), st.integers(1, 50).map(float)),
    ignore=st.booleans(),
    values=st.lists(st.one_of(values_st, st.just(math.inf), st.just(-math.inf)), max_size=40),
)
def test_clamp_matches_pointwise(
    low: float, high: float, ignore: bool, values: list[float]
) -> None:
    expected = []
    for v in values:
        if math.isfinite(v) and not math.isnan(low) and v < low:
            if not ignore:
                expected.append(low)
        elif math.isfinite(v) and not math.isnan(high) and v > high:
            if not ignore:
                expected.append(high)
        else:
            expected.append(v)
    assert key(feed_all(ClampFilter(low, high, ignore), values)) == key(expected)


@given(decimals=st.integers(0, 6), values=value_lists)
def test_round_is_within_half_a_step_and_idempotent(decimals: int, values: list[float]) -> None:
    rounding = RoundFilter(decimals)
    for value, got in zip(values, feed_all(rounding, values), strict=True):
        if math.isnan(value):
            assert math.isnan(got)
            continue
        assert abs(got - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9) + 1e-9 * abs(value)
        assert rounding.feed(0, got) == [pytest.approx(got)]


@given(
    points=st.lists(
        st.tuples(st.integers(-100, 100).map(float), st.integers(-100, 100).map(float)),
        min_size=2,
        max_size=8,
        unique_by=lambda p: p[0],
    ).map(sorted),
    x=st.integers(-200, 200).map(float),
)
def test_calibrate_linear_exact_goes_through_every_datapoint(
    points: list[tuple[float, float]], x: float
) -> None:
    exact = CalibrateLinearFilter.exact(points)
    for px, py in points:
        assert exact.feed(0, px) == [pytest.approx(py, abs=1e-9)]
    # Between two datapoints the value lies between their "to" values.
    inside = [(a, b) for a, b in itertools.pairwise(points) if a[0] <= x <= b[0]]
    for (_, y0), (_, y1) in inside:
        (got,) = exact.feed(0, x)
        assert min(y0, y1) - 1e-9 <= got <= max(y0, y1) + 1e-9


@given(
    slope=st.integers(-5, 5).map(float),
    bias=st.integers(-50, 50).map(float),
    xs=st.lists(st.integers(-50, 50).map(float), min_size=2, max_size=8, unique=True),
)
def test_least_squares_recovers_an_exact_line(slope: float, bias: float, xs: list[float]) -> None:
    fit = CalibrateLinearFilter.least_squares([(x, slope * x + bias) for x in xs])
    ((got_slope, got_bias, upper),) = fit.segments
    assert got_slope == pytest.approx(slope, abs=1e-9)
    assert got_bias == pytest.approx(bias, abs=1e-7)
    assert math.isnan(upper)


# The timer filters on a simulated clock, against references written from their definitions.

periods = st.integers(0, 10).map(float)
positive_periods = st.integers(1, 10).map(float)


def end_of(events: Timed, extra: float = 25.0) -> float:
    return (events[-1][0] if events else 0.0) + extra


@given(period=periods, events=timed_events())
def test_debounce_on_a_simulated_clock(period: float, events: Timed) -> None:
    end = end_of(events)
    expected: Timed = []
    for i, (t, value) in enumerate(events):
        quiet_until = events[i + 1][0] if i + 1 < len(events) else math.inf
        if t + period <= min(quiet_until, end):
            expected.append((t + period, value))
    assert timed_key(simulate(DebounceFilter(period), events, end)) == timed_key(expected)


@given(period=periods, last=st.booleans(), events=timed_events())
def test_timeout_on_a_simulated_clock(period: float, last: bool, events: Timed) -> None:
    end = end_of(events)
    expected: Timed = []
    for i, (t, value) in enumerate(events):
        expected.append((t, value))
        quiet_until = events[i + 1][0] if i + 1 < len(events) else math.inf
        if t + period <= min(quiet_until, end):
            expected.append((t + period, value if last else NAN))
    timeout = TimeoutFilter(period, LAST if last else NAN)
    assert timed_key(simulate(timeout, events, end)) == timed_key(expected)


@given(period=positive_periods, optimistic=st.booleans(), events=timed_events())
def test_heartbeat_on_a_simulated_clock(period: float, optimistic: bool, events: Timed) -> None:
    end = end_of(events)
    expected: list[tuple[float, int, float]] = []  # (time, beat before value, value)
    if optimistic:
        expected.extend((t, 1, v) for t, v in events)
    if events:
        tick = events[0][0] + period
        while tick <= end:
            before = [v for t, v in events if t < tick]
            expected.append((tick, 0, before[-1]))
            tick += period
    expected.sort(key=lambda e: (e[0], e[1]))
    got = simulate(HeartbeatFilter(period, optimistic), events, end)
    assert timed_key(got) == timed_key([(t, v) for t, _, v in expected])


@given(period=positive_periods, events=timed_events())
def test_throttle_average_on_a_simulated_clock(period: float, events: Timed) -> None:
    end = end_of(events)
    expected: Timed = []
    if events:
        start = events[0][0]
        tick = start + period
        while tick <= end:
            inside = [v for t, v in events if tick - period <= t < tick]
            numbers = [v for v in inside if not math.isnan(v)]
            if numbers:
                expected.append((tick, sum(numbers) / len(numbers)))
            elif inside:
                expected.append((tick, NAN))
            tick += period
    got = simulate(ThrottleAverageFilter(period), events, end)
    assert timed_key(got) == timed_key(expected)


# The chain against composing its filters one by one.


@st.composite
def filter_entries(draw: st.DrawFn, timers: bool = True) -> tuple[str, object]:
    small = st.integers(1, 4)
    options: list[st.SearchStrategy[tuple[str, object]]] = [
        st.tuples(st.just("offset"), st.integers(-3, 3)),
        st.tuples(st.just("multiply"), st.sampled_from([-1, 0.5, 2])),
        st.tuples(st.just("filter_out"), st.sampled_from([0, "nan", [1, 2]])),
        st.tuples(st.just("skip_initial"), small),
        st.tuples(st.just("throttle"), st.integers(0, 6)),
        st.tuples(st.just("delta"), st.sampled_from([0, 1, 3, "10%", "50%"])),
        st.tuples(st.just("clamp"), st.just({"min_value": -5, "max_value": 5})),
        st.tuples(st.just("round"), st.integers(0, 2)),
        st.tuples(st.just("calibrate_linear"), st.just(["0 -> 1", "10 -> 21"])),
        st.tuples(
            st.just("exponential_moving_average"),
            st.builds(lambda e: {"alpha": 0.5, "send_every": e}, small),
        ),
    ]
    for name in ("median", "min", "max", "quantile", "sliding_window_moving_average"):
        options.append(
            st.tuples(
                st.just(name),
                st.builds(lambda w, e: {"window_size": w, "send_every": e}, small, small),
            )
        )
    if timers:
        options += [
            st.tuples(st.just("debounce"), st.integers(0, 6)),
            st.tuples(st.just("timeout"), st.integers(0, 6)),
            st.tuples(
                st.just("heartbeat"),
                st.builds(
                    lambda p, o: {"period": p, "optimistic": o}, st.integers(1, 6), st.booleans()
                ),
            ),
            st.tuples(st.just("throttle_average"), st.integers(1, 6)),
        ]
    return draw(st.one_of(options))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(filter_entries(timers=False), max_size=5), events=timed_events(4))
def test_a_chain_of_value_filters_is_the_composition_of_its_filters(
    entries: list[tuple[str, object]], events: Timed
) -> None:
    chain = build_chain([{name: value} for name, value in entries])
    got = [(t, v) for t, value in events for v in chain.feed(t, value)]
    stream = list(events)
    for name, value in entries:
        single = build_filter(name, value)
        stream = [(t, out) for t, v in stream for out in single.feed(t, v)]
    assert timed_key(got) == timed_key(stream)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(filter_entries(), max_size=4), events=timed_events(5))
def test_a_chain_with_timers_is_the_composition_of_its_filters_on_a_clock(
    entries: list[tuple[str, object]], events: Timed
) -> None:
    end = end_of(events, 20)
    got = simulate(build_chain([{name: value} for name, value in entries]), events, end)
    stream = list(events)
    for name, value in entries:
        stream = simulate(build_filter(name, value), stream, end)
    assert timed_key(got) == timed_key(stream)


@st.composite
def late_safe_chains(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Value filters, one timer other than heartbeat, then value filters that do not look at
    the clock: a late wake-up changes when the timer's value leaves, not which values do."""
    before = draw(st.lists(filter_entries(timers=False), max_size=2))
    timer = draw(filter_entries().filter(lambda e: FILTERS[e[0]].timer and e[0] != "heartbeat"))
    after = draw(
        st.lists(filter_entries(timers=False).filter(lambda e: e[0] != "throttle"), max_size=2)
    )
    return [*before, timer, *after]


def run_late(config: list[dict[str, object]], events: Timed, poll: int, end: float) -> list[float]:
    """An adapter that wakes only every ``poll`` seconds and at each value; after each call
    no deadline is left at or before ``now``."""
    chain, out, clock, queue = build_chain(config), [], 0.0, list(events)
    while clock <= end or queue:
        if queue and queue[0][0] <= clock:
            now, value = queue.pop(0)
            out.extend(chain.feed(now, value))
        else:
            now = clock
            out.extend(chain.fire(now))
            clock += poll
        deadline = chain.next_deadline()
        assert deadline is None or deadline > now
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=late_safe_chains(), events=timed_events(5), poll=st.integers(1, 9))
def test_a_late_loop_emits_the_same_values(
    entries: list[tuple[str, object]], events: Timed, poll: int
) -> None:
    config = [{name: value} for name, value in entries]
    end = end_of(events, 20)
    exact = [v for _, v in simulate(build_chain(config), events, end)]
    assert key(run_late(config, events, poll, end)) == key(exact)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(filter_entries(), min_size=1, max_size=4),
    events=timed_events(5),
    poll=st.integers(1, 9),
)
def test_no_deadline_is_left_behind_whatever_the_chain(
    entries: list[tuple[str, object]], events: Timed, poll: int
) -> None:
    run_late([{name: value} for name, value in entries], events, poll, end_of(events, 20))

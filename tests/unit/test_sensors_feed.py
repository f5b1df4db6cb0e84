"""Readings into the reactors: what becomes an intent, for whom, and what a subscription grants;
the threshold's ``{intent, payload}`` actions that switch an actuator directly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType

import pytest

from edgeagent.config.loader import load_config
from edgeagent.errors import IntentError, PayloadError
from edgeagent.identity import DeviceIdentity
from edgeagent.reactors.builtin.threshold import THRESHOLD
from edgeagent.reactors.capabilities import Policy, principal_problem
from edgeagent.reactors.dispatch import Submission, hold_for
from edgeagent.reactors.graph import principals_of
from edgeagent.reactors.model import Context, Emit, Intent
from edgeagent.sensors.feed import MAX_IN_FLIGHT, ReactorFeed
from edgeagent.sensors.model import FieldSpec, Reading

PM = MappingProxyType({"pm25": FieldSpec("µg/m³"), "rh": FieldSpec()})


class Reactors:
    """Takes the names given; accepts everything but ``refuse``, answering when told."""

    def __init__(self, takes: set[str], refuse: str = "") -> None:
        self.taken = takes
        self.refuse = refuse
        self.sent: list[Submission] = []
        self.pending: list[tuple[Submission, Callable[[Submission, IntentError | None], None]]]
        self.pending = []

    def takes(self, name: str) -> bool:
        return name in self.taken

    def post_many(
        self,
        items: Sequence[Submission],
        done: Callable[[Submission, IntentError | None], None],
    ) -> None:
        self.sent.extend(items)
        self.pending.extend((item, done) for item in items)

    def settle(self) -> None:
        for item, done in self.pending:
            done(item, IntentError("no") if item.name == self.refuse else None)
        self.pending.clear()


async def test_only_names_a_reactor_takes_become_intents_as_the_sensor() -> None:
    reactors = Reactors({"sensor.air.pm25"})
    feed = ReactorFeed(reactors)
    await feed.reading("air", PM, Reading("air", 100.0, {"pm25": 12, "rh": 40}))
    (sent,) = reactors.sent
    assert sent == Submission(
        "sensor.air.pm25", {"value": 12, "ts": 100.0, "unit": "µg/m³"},
        principal="sensor:air", source="sensor", durable_within=0.0,
    )  # fmt: skip
    await ReactorFeed(nobody := Reactors(set())).reading("air", PM, Reading("air", 1.0, {"rh": 1}))
    assert nobody.sent == []


async def test_the_whole_reading_and_counts() -> None:
    reactors = Reactors({"sensor.air", "sensor.air.rh"}, refuse="sensor.air.rh")
    feed = ReactorFeed(reactors, durable_within=2.0)
    await feed.reading("air", PM, Reading("air", 5.0, {"pm25": 3, "rh": 50}))
    await feed.reading("air", PM, Reading("air", 6.0, {"pm25": 4}))
    assert feed.counters()["intents_in_flight"] == 3
    assert {item.durable_within for item in reactors.sent} == {2.0}
    reactors.settle()
    whole = reactors.sent[0]
    assert whole.name == "sensor.air"
    assert whole.payload == {
        "ts": 5.0,
        "fields": {"pm25": {"value": 3, "unit": "µg/m³"}, "rh": {"value": 50, "unit": None}},
    }
    assert feed.counters() == {
        "intents_sent": 2, "readings_untaken": 0, "intents_refused": 1,
        "readings_dropped_busy": 0, "intents_in_flight": 0,
    }  # fmt: skip


async def test_too_many_in_flight_drops_the_reading_and_counts_it() -> None:
    reactors = Reactors({"sensor.air.pm25"})
    feed = ReactorFeed(reactors)
    for n in range(MAX_IN_FLIGHT + 3):
        await feed.reading("air", PM, Reading("air", float(n), {"pm25": n}))
    assert feed.counters()["intents_in_flight"] == MAX_IN_FLIGHT
    assert feed.counters()["readings_dropped_busy"] == 3
    reactors.settle()
    assert feed.counters()["intents_sent"] == MAX_IN_FLIGHT


@pytest.mark.parametrize(
    ("deadlines", "waiting", "expected"),
    [
        ([], 0, 0.0),
        ([12.0, 11.0], 2, 1.0),  # the earliest deadline decides
        ([12.0, None], 2, 0.0),  # a command in the mailbox: nothing waits
        ([9.0], 1, 0.0),  # overdue
        ([15.0], 4, 0.0),  # a full batch goes at once
    ],
)
def test_hold_for(deadlines: list[float | None], waiting: int, expected: float) -> None:
    assert hold_for(10.0, deadlines, waiting, 4) == expected


def test_a_subscription_to_a_sensor_reading_is_its_grant(tmp_path: object) -> None:
    config = load_config(
        None,
        identity=DeviceIdentity("2e6d"),
        overrides={
            "sensors": [{"id": "air", "platform": "simulated", "fields": {"pm25": None}}],
            "reactors": [
                {"id": "alarm", "type": "threshold", "subscribe": {"sensor.air.pm25": "reading"},
                 "options": {"high": 30}},
                {"id": "avg", "type": "window", "subscribe": {"sensor.air.pm25": "reading"},
                 "requires": {"sensor.air.pm25": ["air:feed"]}, "options": {"seconds": 60}},
                {"id": "ghost", "type": "threshold", "subscribe": {"sensor.none.x": "reading"},
                 "options": {"high": 1}},
            ],
        },
    )  # fmt: skip
    principals = principals_of(config)
    assert principals["sensor:air"] == ["alarm:reading", "air:feed"]
    assert "sensor:none" not in principals  # no such sensor: nothing granted
    policy = Policy.build({}, principals)
    assert policy.decide("sensor:air", ["alarm:reading"]).allowed
    assert not policy.decide("sensor:air", ["counter:increment"]).allowed


def test_sensor_principal_names() -> None:
    assert principal_problem("sensor:air") is None
    assert principal_problem("sensor:Air Q") is not None


def _reading(value: float) -> Intent:
    context = Context(principal="sensor:air", source="sensor", trace_id="t", at=1.0)
    return Intent("sensor.air.pm25", {"value": value, "unit": "µg/m³", "ts": 1.0}, context)


def test_threshold_actions_send_a_given_payload_or_the_value() -> None:
    options = THRESHOLD.options.validate(
        {"high": 35, "low": 25,
         "on_alarm": {"intent": "fan.write", "payload": {"data": "FAN ON"}},
         "on_clear": "fan.clear"},
        path="options",
    )  # fmt: skip
    assert THRESHOLD.emits(options) == ["fan.write", "fan.clear"]
    state = THRESHOLD.initial_state(options)
    state, effects = THRESHOLD.handle(state, "reading", _reading(40), options)
    assert effects == [Emit("fan.write", {"data": "FAN ON"})]
    state, effects = THRESHOLD.handle(state, "reading", _reading(20), options)
    assert effects == [Emit("fan.clear", {"value": 20})]


@pytest.mark.parametrize(
    "action",
    [{"payload": {}}, {"intent": "fan.write", "payload": "x"}, {"intent": "no good"}, 3],
)
def test_threshold_refuses_malformed_actions(action: object) -> None:
    with pytest.raises(PayloadError):
        THRESHOLD.options.validate({"high": 1, "on_alarm": action}, path="options")


def test_check_refuses_subscriptions_no_sensor_can_satisfy() -> None:
    from edgeagent.reactors.graph import check_graph

    config = load_config(
        None,
        identity=DeviceIdentity("2e6d"),
        overrides={
            "sensors": [
                {"id": "air", "platform": "serial", "port": "/dev/x", "parser": "json",
                 "fields": {"pm25": None}},
                {"id": "gps", "platform": "serial", "port": "/dev/y", "parser": "nmea"},
                {"id": "free", "platform": "serial", "port": "/dev/z", "parser": "json"},
            ],
            "reactors": [
                {"id": "a", "type": "threshold", "options": {"high": 1},
                 "subscribe": {"sensor.air.pm10": "reading", "sensor.air.pm25": "reading"}},
                {"id": "b", "type": "threshold", "options": {"high": 1},
                 "subscribe": {"sensor.gsp.lat": "reading", "sensor.gps.alt": "reading",
                               "sensor.free.anything": "reading"}},
            ],
        },
    )  # fmt: skip
    found = [d.format() for d in check_graph(config) if d.code == "unknown-sensor"]
    assert found == [
        "error[unknown-sensor] reactors[id=a].subscribe.sensor.air.pm10: sensor 'air' has no "
        "field 'pm10' (did you mean 'pm25'?); its fields: pm25",
        "error[unknown-sensor] reactors[id=b].subscribe.sensor.gsp.lat: no sensor 'gsp' "
        "(did you mean 'gps'?); sensors: air, free, gps",
    ]


def test_check_reports_a_sensor_and_an_actuator_disagreeing_on_a_device() -> None:
    from edgeagent.reactors.graph import check_graph, line_settings

    def config(actuator_baud: int) -> object:
        return load_config(
            None,
            identity=DeviceIdentity("2e6d"),
            overrides={
                "sensors": [{"id": "duino", "platform": "serial", "port": "/dev/ttyACM0",
                             "baud": 9600, "parser": "kv"}],
                "reactors": [{"id": "fan", "type": "actuator",
                              "options": {"device": "/dev/ttyACM0", "baudrate": actuator_baud}}],
            },
        )  # fmt: skip

    agreeing = config(9600)
    assert [d for d in check_graph(agreeing) if d.code == "device-conflict"] == []  # type: ignore[arg-type]
    assert line_settings(agreeing) == {"/dev/ttyACM0": {"baudrate": 9600}}  # type: ignore[arg-type]
    (found,) = [d for d in check_graph(config(115200)) if d.code == "device-conflict"]  # type: ignore[arg-type]
    assert found.path == "sensors[duino]"
    assert "baudrate 9600 (reactor 'fan': 115200)" in found.message

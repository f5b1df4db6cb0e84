"""The ``sensors:`` section: the issue's contract loads, defaults, and every mistake is a
config error with file, line, key path and a suggestion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgeagent.config.loader import load_config
from edgeagent.config.model import DEFAULT_SENSORS, Config, SensorConfig
from edgeagent.config.render import config_to_dict
from edgeagent.errors import ConfigError
from edgeagent.identity import DeviceIdentity
from edgeagent.sensors.filters import parse_filter
from edgeagent.sensors.model import FieldSpec

IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")

CONTRACT = """
sensors:
  - id: air
    platform: serial
    port: /dev/serial/by-id/usb-1a86_USB_Serial-if00-port0
    baud: 9600
    framing: line
    parser: json
    fields:
      pm25: {unit: "µg/m³", device_class: pm25, state_class: measurement}
    filters:
      - throttle: 10s
      - sliding_window_moving_average: {window_size: 5, send_every: 5}
  - {id: gps, platform: serial, port: /dev/ttyACM0, baud: 9600, parser: nmea}
  - {id: board, platform: system, metrics: [cpu_temperature, load, memory, disk, wifi_signal, throttled], interval: 30s}
  - {id: demo, platform: simulated, interval: 1s, fields: {temperature: {unit: "°C", device_class: temperature}}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeagent.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def config_of(path: Path | None) -> Config:
    return load_config(path, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_of(write(tmp_path, text))
    return caught.value.issues


def test_the_default_is_the_simulated_demo() -> None:
    assert config_of(None).sensors == DEFAULT_SENSORS
    (demo,) = DEFAULT_SENSORS
    assert (demo.id, demo.platform, demo.interval) == ("demo", "simulated", 1.0)


def test_the_issues_contract_loads(tmp_path: Path) -> None:
    air, gps, board, demo = config_of(write(tmp_path, CONTRACT)).sensors
    assert air == SensorConfig(
        id="air",
        platform="serial",
        port="/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0",
        baud=9600,
        framing="line",
        parser="json",
        fields=(("pm25", FieldSpec("µg/m³", "pm25", "measurement")),),
        filters=(
            parse_filter("throttle", 10.0),
            parse_filter("sliding_window_moving_average", {"window_size": 5, "send_every": 5}),
        ),
    )
    assert (gps.parser, gps.data_bits, gps.parity, gps.stop_bits) == ("nmea", 8, "none", 1.0)
    assert board.metrics == (
        "cpu_temperature", "load", "memory", "disk", "wifi_signal", "throttled",
    )  # fmt: skip
    assert board.interval == 30.0
    assert demo.fields == (("temperature", FieldSpec("°C", "temperature", None)),)


def test_a_list_replaces_the_demo_and_renders_back(tmp_path: Path) -> None:
    config = config_of(write(tmp_path, CONTRACT))
    rendered = config_to_dict(config)["sensors"]
    assert [s["id"] for s in rendered] == ["air", "gps", "board", "demo"]
    assert rendered[0]["filters"][0] == {"throttle": {"period": 10.0}}
    assert rendered[0]["framing"] == "line"


def test_fixed_framing_with_a_header(tmp_path: Path) -> None:
    text = """
    sensors:
      - id: pms
        platform: serial
        port: /dev/ttyAMA0
        framing: {fixed: 32, header: "424d"}
        parser: {struct: {format: ">4x4xHHH16x2x", fields: [pm1, pm25, pm10]}}
    """
    (pms,) = config_of(write(tmp_path, text)).sensors
    assert pms.framing == {"fixed": 32, "header": "424d"}
    (issue,) = issues_of(tmp_path, text.replace(">4x4xHHH16x2x", ">4xHHH"))
    assert issue.endswith(
        ":6: sensors[pms].parser: the struct format reads 10 bytes but each frame is 32 "
        "(framing fixed: 32); pad it with 'x' to the whole frame"
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("{id: a, platform: serial, port: /dev/x, parser: jsn}",
         "sensors[a].parser: unknown parser 'jsn' (did you mean 'json'?)"),
        ("{id: a, platform: serial, port: /dev/x, parser: json, filters: [{throtle: 1s}]}",
         "sensors[a].filters[0]: unknown filter 'throtle' (did you mean 'throttle'?)"),
        ("{id: a, platform: system, metrics: [cpu_temp]}",
         "sensors[a].metrics[0]: unknown metric 'cpu_temp' (did you mean 'cpu_temperature'?)"),
        ("{id: a, platform: serial, port: /dev/x, parser: {regex: '(?P<t>[0-9'}}",
         "sensors[a].parser:"),
        ("{id: a, platform: serial, port: /dev/x, parser: {csv: {}}}",
         "sensors[a].parser:"),
        ("{id: a, platform: serial, parser: json}", "sensors[a]: a serial sensor needs 'port'"),
        ("{id: a, platform: usb}", "sensors[a].platform:"),
        ("{id: Air Quality, platform: simulated}",
         "sensors[Air Quality].id: sensor id 'Air Quality': a-z 0-9 '_' '-' only (did you mean 'air_quality'?)"),
        ("{id: a, platform: simulated, interval: 0s}", "sensors[a].interval: must be a positive duration, got '0s'"),
        ("{id: a, platform: serial, port: /dev/x, parser: json, baud: fast}", "sensors[a].baud:"),
    ],
)  # fmt: skip
def test_mistakes_name_file_line_key_and_a_suggestion(
    tmp_path: Path, item: str, expected: str
) -> None:
    issues = issues_of(tmp_path, f"sensors:\n  - {item}\n")
    assert len(issues) == 1, issues
    assert issues[0].startswith(f"{tmp_path / 'edgeagent.yaml'}:2: "), issues
    assert expected in issues[0], issues


def test_two_sensors_on_one_port_are_an_error(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """
        sensors:
          - {id: a, platform: serial, port: /dev/ttyUSB0, parser: json}
          - {id: b, platform: serial, port: /dev/ttyUSB0, parser: kv}
        """,
    )
    assert len(issues) == 1
    assert ":3: sensors[b].port: /dev/ttyUSB0 is already read by sensor 'a'" in issues[0]

"""What is known of a configured sensor before it runs: its fields, its line settings. Pure.

``edgeagent check`` uses it to refuse a reactor subscribing to ``sensor.<id>.<field>`` that no
sensor can produce. The answer is the configured ``fields`` when there are any; otherwise
the metrics' fields (system), the simulator's default fields (simulated) or the parser's own
(csv columns, regex groups, struct fields, NMEA's fields). ``None``: only the data will say
(json and kv without ``fields``), so any field is accepted.
"""

from __future__ import annotations

from typing import Any

from edgeagent.config.model import SensorConfig
from edgeagent.sensors.parsers import build_parser
from edgeagent.sensors.simulated import DEFAULT_FIELDS
from edgeagent.sensors.system import METRICS


def known_fields(sensor: SensorConfig) -> frozenset[str] | None:
    if sensor.fields:
        return frozenset(name for name, _ in sensor.fields)
    if sensor.platform == "system":
        return frozenset(field for metric in sensor.metrics for field in METRICS[metric].fields)
    if sensor.platform == "simulated":
        return frozenset(DEFAULT_FIELDS)
    if sensor.parser is None:
        return None
    return build_parser(sensor.parser).field_names()


def line_settings_of(sensor: SensorConfig) -> dict[str, Any]:
    """The serial line settings a sensor opens its port with, as ``SerialPorts`` takes them:
    the baud rate always; data bits, parity and stop bits only when not 8N1 (what an
    actuator on the same device opens with, so only a real difference is a conflict)."""
    wanted: dict[str, Any] = {"baudrate": sensor.baud}
    if sensor.data_bits != 8:
        wanted["bytesize"] = sensor.data_bits
    if sensor.parity != "none":
        wanted["parity"] = sensor.parity
    if sensor.stop_bits != 1:
        wanted["stopbits"] = sensor.stop_bits
    return wanted

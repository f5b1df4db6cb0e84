"""Which fields a configured sensor can report, known before it runs. Pure.

``edgeagent check`` uses it to refuse a reactor subscribing to ``sensor.<id>.<field>`` that no
sensor can produce. The answer is the configured ``fields`` when there are any; otherwise
the metrics' fields (system), the simulator's default fields (simulated) or the parser's own
(csv columns, regex groups, struct fields, NMEA's fields). ``None``: only the data will say
(json and kv without ``fields``), so any field is accepted.
"""

from __future__ import annotations

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

"""The ``sensors:`` section: serial, system and simulated sensors, their parsing and filters.

The list is merged by ``id`` across layers. With no layer giving ``sensors`` the simulated
demo (:data:`DEFAULT_SENSORS`) runs, so a fresh device shows live readings; any layer's list
replaces it as a whole. Parsers, filters and metrics are checked here against the sensors'
own registries (``sensors.parsers``, ``sensors.filters``, ``sensors.system``), so a typo is a
config error with file, line and a suggestion, not a failure at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from edgeagent.config.located import (
    FieldReader,
    Issues,
    Node,
    Where,
    default_of,
    describe,
    did_you_mean,
    item_path,
    join_path,
    to_plain,
)
from edgeagent.config.scalars import choice, duration_seconds, integer, parse_duration, parse_text
from edgeagent.config.sections import BuildContext, Section, removal_item
from edgeagent.sensors.filters import FILTERS, FilterConfig, OptionKind, parse_filter
from edgeagent.sensors.framing import FixedFramer, build_framer
from edgeagent.sensors.model import FieldSpec
from edgeagent.sensors.parsers import PARSERS, StructParser, build_parser
from edgeagent.sensors.system import METRICS

PLATFORMS = ("serial", "system", "simulated")
Platform = Literal["serial", "system", "simulated"]
PARITIES = ("none", "even", "odd")
Parity = Literal["none", "even", "odd"]


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """One item of ``sensors:``.

    ``framing`` and ``parser`` are the plain YAML values (``line``, ``{fixed: 32, header:
    "424d"}``; ``json``, ``{csv: {columns: [...]}}``, ...), checked by
    ``sensors.framing.build_framer`` and ``sensors.parsers.build_parser`` at load.
    ``filters`` are the validated chain, in order, durations in seconds. ``fields`` name
    what to keep (all when empty).
    """

    id: str
    platform: Platform
    port: str | None = None
    baud: int = 9600
    data_bits: int = 8
    parity: Parity = "none"
    stop_bits: float = 1.0
    framing: Any = "line"
    parser: Any = None
    fields: tuple[tuple[str, FieldSpec], ...] = ()
    filters: tuple[FilterConfig, ...] = ()
    metrics: tuple[str, ...] = ()
    interval: float = 1.0  # seconds between samples (system, simulated)
    seed: int = 0  # simulated: same seed, same readings


#: The built-in sensor: a simulated thermometer, so `scripts/run` shows readings anywhere.
DEFAULT_SENSORS: tuple[SensorConfig, ...] = (
    SensorConfig(
        id="demo",
        platform="simulated",
        interval=1.0,
        fields=(("temperature", FieldSpec("°C", "temperature", "measurement")),),
    ),
)

SYSTEM_INTERVAL = 30.0  # the system platform's default interval


def _build_sensors(node: Node | None, path: str, ctx: BuildContext) -> tuple[SensorConfig, ...]:
    if node is None:
        return DEFAULT_SENSORS
    if not isinstance(node.value, tuple):
        ctx.issues.add(node.where, path, f"expected a list of sensors, got {describe(node)}")
        return ()
    sensors: list[SensorConfig] = []
    first_seen: dict[str, Where] = {}
    ports: dict[str, tuple[str, Where]] = {}
    for index, item in enumerate(node.value):
        at = item_path(path, index, item)
        sensor = _sensor(item, at, ctx.issues)
        if sensor is None:
            continue
        if sensor.id in first_seen:
            ctx.issues.add(
                item.where, at, f"duplicate id '{sensor.id}' (first at {first_seen[sensor.id]})"
            )
            continue
        first_seen[sensor.id] = item.where
        if sensor.port is not None:
            if sensor.port in ports:
                other, where = ports[sensor.port]
                ctx.issues.add(
                    item.where,
                    join_path(at, "port"),
                    f"{sensor.port} is already read by sensor '{other}' (at {where}); one "
                    "sensor per port: give it the fields of both",
                )
                continue
            ports[sensor.port] = (sensor.id, item.where)
        sensors.append(sensor)
    return tuple(sensors)


def _render_sensors(sensors: tuple[SensorConfig, ...]) -> list[dict[str, Any]]:
    return [_render_sensor(sensor) for sensor in sensors]


def _render_sensor(sensor: SensorConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": sensor.id, "platform": sensor.platform}
    if sensor.platform == "serial":
        doc.update(
            port=sensor.port,
            baud=sensor.baud,
            data_bits=sensor.data_bits,
            parity=sensor.parity,
            stop_bits=sensor.stop_bits,
            framing=sensor.framing,
            parser=sensor.parser,
        )
    if sensor.platform == "system":
        doc["metrics"] = list(sensor.metrics)
    if sensor.platform != "serial":
        doc["interval"] = sensor.interval
    if sensor.platform == "simulated":
        doc["seed"] = sensor.seed
    doc["fields"] = {name: _render_field(spec) for name, spec in sensor.fields}
    doc["filters"] = [{f.name: dict(f.settings)} for f in sensor.filters]
    return doc


def _render_field(spec: FieldSpec) -> dict[str, Any]:
    return {
        key: value
        for key, value in (
            ("unit", spec.unit),
            ("device_class", spec.device_class),
            ("state_class", spec.state_class),
        )
        if value is not None
    }


SECTION: Section[tuple[SensorConfig, ...]] = Section(
    "sensors", _build_sensors, _render_sensors, id_merged_lists=(("sensors",),)
)


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
def _sensor(item: Node, path: str, issues: Issues) -> SensorConfig | None:
    """One sensor item, or None for a removal or an invalid item (already reported)."""
    if not isinstance(item.value, dict):
        issues.add(item.where, path, f"expected a sensor mapping, got {describe(item)}")
        return None
    reader = FieldReader(item, path, issues)
    if removal_item(item, reader, path, issues):
        return None
    before = len(issues)
    ident = reader.get("id", _parse_sensor_id, None)
    platform = cast(Platform | None, reader.get("platform", choice(PLATFORMS), None))
    no_fields: tuple[tuple[str, FieldSpec], ...] = ()
    no_filters: tuple[FilterConfig, ...] = ()
    values: dict[str, Any] = {
        "fields": reader.get("fields", _parse_fields, no_fields),
        "filters": reader.get("filters", _parse_filters, no_filters),
    }
    if platform == "serial":
        values.update(
            port=reader.get("port", parse_text, None),
            baud=reader.get("baud", integer(50, 4_000_000), default_of(SensorConfig, "baud")),
            data_bits=reader.get("data_bits", _one_of(5, 6, 7, 8), 8),
            parity=reader.get("parity", choice(PARITIES), "none"),
            stop_bits=reader.get("stop_bits", _one_of(1, 1.5, 2), 1.0),
            framing=reader.get("framing", _parse_framing, "line"),
            parser=reader.get("parser", _parse_parser, None),
        )
        for key in ("port", "parser"):
            if reader.node(key) is None:
                issues.add(item.where, path, f"a serial sensor needs '{key}'")
        _check_frame_size(values["framing"], values["parser"], reader.node("parser"), path,
                          issues)  # fmt: skip
    elif platform == "system":
        values.update(
            metrics=reader.get("metrics", _parse_metrics, tuple(METRICS)),
            interval=reader.get("interval", parse_duration, SYSTEM_INTERVAL),
        )
    elif platform == "simulated":
        values.update(
            interval=reader.get("interval", parse_duration, 1.0),
            seed=reader.get("seed", integer(0, 2**63 - 1), 0),
        )
    reader.finish()
    for key in ("id", "platform"):
        if reader.node(key) is None:
            issues.add(item.where, path, f"missing required key '{key}'")
    if len(issues) != before:
        return None
    assert ident is not None
    assert platform is not None
    return SensorConfig(id=ident, platform=platform, **values)


def _parse_sensor_id(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _SENSOR_ID.match(text):
        return text
    suggestion = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_-")[:63]
    hint = f" (did you mean '{suggestion}'?)" if _SENSOR_ID.match(suggestion or "-") else ""
    issues.add(node.where, path, f"sensor id {text!r}: a-z 0-9 '_' '-' only{hint}")
    return None


def _parse_fields(node: Node, path: str, issues: Issues) -> tuple[tuple[str, FieldSpec], ...]:
    if not isinstance(node.value, dict):
        issues.add(node.where, path, f"expected a mapping of field names, got {describe(node)}")
        return ()
    fields: list[tuple[str, FieldSpec]] = []
    for name, child in node.value.items():
        at = join_path(path, name)
        if not _FIELD.match(name):
            problem = f"field name {name!r}: letters, digits, '_' and '.' (a dotted JSON path)"
            issues.add(child.key_where or child.where, at, problem)
            continue
        if child.value is None:
            fields.append((name, FieldSpec()))
            continue
        reader = FieldReader(child, at, issues)
        spec = FieldSpec(
            unit=reader.get("unit", parse_text, None),
            device_class=reader.get("device_class", parse_text, None),
            state_class=reader.get("state_class", choice(_STATE_CLASSES), None),
        )
        reader.finish()
        fields.append((name, spec))
    return tuple(fields)


def _parse_filters(node: Node, path: str, issues: Issues) -> tuple[FilterConfig, ...]:
    if not isinstance(node.value, tuple):
        issues.add(node.where, path, f"expected a list of filters, got {describe(node)}")
        return ()
    chain: list[FilterConfig] = []
    for index, item in enumerate(node.value):
        at = f"{path}[{index}]"
        if isinstance(item.value, str):  # a filter without parameters: `- median`
            name, value_node = item.value, None
        elif isinstance(item.value, dict) and len(item.value) == 1:
            ((name, value_node),) = item.value.items()
        else:
            issues.add(item.where, at, f"expected one filter, e.g. '- throttle: 10s', got "
                                       f"{describe(item)}")  # fmt: skip
            continue
        if name not in FILTERS:
            issues.add(item.where, at, f"unknown filter {name!r}" + did_you_mean(name, FILTERS))
            continue
        where = value_node.where if value_node is not None else item.where
        try:
            value = _durations_as_seconds(name, to_plain(value_node))
            chain.append(parse_filter(name, value))
        except ValueError as exc:
            issues.add(where, join_path(at, name), str(exc))
    return tuple(chain)


def _parse_parser(node: Node, path: str, issues: Issues) -> Any:
    value = to_plain(node)
    name = value if isinstance(value, str) else None
    if isinstance(value, dict) and len(value) == 1:
        name = str(next(iter(value)))
    if name is None or name not in PARSERS:
        known = ", ".join(PARSERS)
        problem = f"unknown parser {name or describe(node)!r}{did_you_mean(str(name), PARSERS)}"
        issues.add(node.where, path, f"{problem} (known: {known})")
        return None
    try:
        build_parser(value)
    except ValueError as exc:
        issues.add(node.where, path, str(exc))
        return None
    return value


def _parse_framing(node: Node, path: str, issues: Issues) -> Any:
    value = to_plain(node)
    try:
        build_framer(value)
    except ValueError as exc:
        issues.add(node.where, path, str(exc))
        return None
    return value


def _check_frame_size(framing: Any, parser: Any, node: Node | None, path: str,
                      issues: Issues) -> None:  # fmt: skip
    """A struct parser reads whole fixed frames: its format must be as long as the frame."""
    if framing is None or parser is None or node is None:
        return
    framer, decoder = build_framer(framing), build_parser(parser)
    if isinstance(framer, FixedFramer) and isinstance(decoder, StructParser):
        size, length = decoder.layout.size, framer.length
        if size != length:
            problem = (
                f"the struct format reads {size} bytes but each frame is {length} "
                f"(framing fixed: {length}); pad it with 'x' to the whole frame"
            )
            issues.add(node.where, join_path(path, "parser"), problem)


def _parse_metrics(node: Node, path: str, issues: Issues) -> tuple[str, ...]:
    if not isinstance(node.value, tuple):
        issues.add(node.where, path, f"expected a list of metrics, got {describe(node)}")
        return ()
    metrics: list[str] = []
    for index, item in enumerate(node.value):
        name = item.value
        if not isinstance(name, str) or name not in METRICS:
            known = ", ".join(METRICS)
            problem = f"unknown metric {name!r}{did_you_mean(str(name), METRICS)}"
            issues.add(item.where, f"{path}[{index}]", f"{problem} (known: {known})")
            continue
        metrics.append(name)
    return tuple(metrics)


def _one_of(*allowed: float) -> Any:
    def parse(node: Node, path: str, issues: Issues) -> float | None:
        value = node.value
        if isinstance(value, int | float) and not isinstance(value, bool) and value in allowed:
            return value
        issues.add(node.where, path, f"expected one of {', '.join(str(a) for a in allowed)}, "
                                     f"got {describe(node)}")  # fmt: skip
        return None

    return parse


def _durations_as_seconds(name: str, value: Any) -> Any:
    """The filter's duration options written as text (``10s``, ``500ms``), as seconds."""
    spec = FILTERS[name]
    kinds = {option.name: option.kind for option in spec.options}
    if isinstance(value, Mapping):
        return {
            key: _seconds(item) if kinds.get(key) is OptionKind.DURATION else item
            for key, item in value.items()
        }
    if value is not None and spec.simple and kinds.get(spec.simple) is OptionKind.DURATION:
        return _seconds(value)
    return value


def _seconds(value: Any) -> Any:
    return duration_seconds(value.strip()) if isinstance(value, str) else value


_SENSOR_ID = re.compile(r"^[a-z0-9_-]{1,63}$")
_FIELD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,99}$")
_STATE_CLASSES = ("measurement", "total", "total_increasing")

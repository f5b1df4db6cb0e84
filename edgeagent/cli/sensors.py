"""Sensor commands: ``sensors`` (every sensor's state, last values and counts), ``sensors show
ID`` and ``sensors watch [ID]`` (readings as they are made, until interrupted).

They ask the running agent over the control socket (``sensors.list``, ``sensors.show``,
``sensors.watch``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgeagent.cli.options import Commands, add_command, add_json_option, client
from edgeagent.cli.output import Line, Note, Output, print_item, table
from edgeagent.config.model import Paths

WATCH_WAIT = 5.0  # seconds one long poll of sensors.watch waits
WATCH_TIMEOUT = 15.0
COLUMNS = ("SENSOR", "PLATFORM", "STATE", "LAST", "AGE", "FRAMES", "READINGS", "DROPPED", "REOPENS")


def add_commands(commands: Commands) -> None:
    """Register ``sensors`` with its ``show`` and ``watch`` actions."""
    sensors = add_command(commands, "sensors", _cmd_list, help="list sensors and their readings")
    add_json_option(sensors, "print JSON instead of a table")
    actions = sensors.add_subparsers(metavar="ACTION")
    show = add_command(actions, "show", _cmd_show, help="one sensor in full")
    show.add_argument("id")
    add_json_option(show)
    watch = add_command(actions, "watch", _cmd_watch, help="print readings as they are made")
    watch.add_argument("id", nargs="?", help="only this sensor")
    add_json_option(watch, "one JSON object per reading")


def _cmd_list(args: argparse.Namespace, paths: Paths) -> Output[list[dict[str, Any]]]:
    return Output(client(paths).call("sensors.list"), _list_text)


def _cmd_show(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    return Output(client(paths).call("sensors.show", {"id": args.id}), _show_text)


def _cmd_watch(args: argparse.Namespace, paths: Paths) -> int:
    control = client(paths, timeout=WATCH_TIMEOUT)
    after = -1
    while True:
        page = control.call("sensors.watch", {"id": args.id, "after": after, "wait": WATCH_WAIT})
        for reading in page["readings"]:
            print_item(reading, _reading_line, as_json=args.json)
        sys.stdout.flush()
        after = page["last_seq"]


def _list_text(rows: Sequence[Mapping[str, Any]]) -> Iterator[Line]:
    if not rows:
        yield Note("no sensors configured")
        return
    yield from table([COLUMNS, *(_row(row) for row in rows)])


def _row(row: Mapping[str, Any]) -> tuple[str, ...]:
    dropped = row.get("dropped", {})
    age = row.get("age")
    state = str(row["state"]) + (f" ({row['error']})" if row.get("error") else "")
    return (
        str(row["id"]),
        str(row["platform"]),
        state,
        _values_text(row.get("last")),
        "-" if age is None else f"{age:.1f}s",
        str(row.get("frames", 0)),
        str(row.get("readings", 0)),
        ", ".join(f"{k} {v}" for k, v in dropped.items()) or "0",
        str(row.get("reopens", 0)),
    )


def _show_text(row: Mapping[str, Any]) -> Iterator[str]:
    port = f", {row['port']}" if row.get("port") else ""
    yield f"{row['id']} ({row['platform']}{port}): {row['state']}"
    if row.get("error"):
        yield f"  error: {row['error']}"
    last = row.get("last")
    if last:
        yield f"  last reading, {row.get('age', 0):.1f}s ago:"
        for name, field in last["fields"].items():
            unit = f" {field['unit']}" if field.get("unit") else ""
            yield f"    {name} = {_number(field['value'])}{unit}"
    else:
        yield "  no reading yet"
    counts = (row.get("frames", 0), row.get("readings", 0), row.get("reopens", 0))
    yield "  frames {}, readings {}, reopens {}".format(*counts)
    for reason, count in row.get("dropped", {}).items():
        yield f"  dropped ({reason}): {count}"
    for metric, reason in row.get("unavailable", {}).items():
        yield f"  {metric}: not available ({reason})"


def _reading_line(reading: Mapping[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(reading["ts"]))
    return f"{when}  {reading['sensor']}  {_values_text(reading)}"


def _values_text(reading: Mapping[str, Any] | None) -> str:
    if not reading:
        return "-"
    parts = []
    for name, field in reading["fields"].items():
        unit = f" {field['unit']}" if field.get("unit") else ""
        parts.append(f"{name}={_number(field['value'])}{unit}")
    return " ".join(parts)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

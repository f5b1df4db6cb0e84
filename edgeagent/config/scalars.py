"""Scalar parsers shared by the config sections: numbers, flags, text, names, durations, sizes.

Each parser is a :data:`~edgeagent.config.located.Parser`: it takes a located node, the key
path and the issues; it returns the value, or reports why not (with a did-you-mean where a
likely fix exists) and returns None so that the field keeps its default. Factories
(:func:`integer`, :func:`choice`, :func:`list_of`, :func:`size_parser`) make parsers with
bounds. A parser used by one section only lives in that section's module.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
from collections.abc import Sequence
from typing import TypeVar

from edgeagent.config.located import Issues, Node, Parser, describe, did_you_mean

T = TypeVar("T")


def integer(low: int, high: int) -> Parser[int]:
    def parse(node: Node, path: str, issues: Issues) -> int | None:
        value = node.value
        if not isinstance(value, int) or isinstance(value, bool):
            issues.add(node.where, path, f"expected an integer, got {describe(node)}")
            return None
        if not low <= value <= high:
            issues.add(node.where, path, f"must be between {low} and {high}, got {value}")
            return None
        return value

    return parse


PORT = integer(1, 65535)


def parse_bool(node: Node, path: str, issues: Issues) -> bool | None:
    if isinstance(node.value, bool):
        return node.value
    hint = ""
    if isinstance(node.value, str) and node.value.lower() in ("yes", "on", "y", "1", "enabled"):
        hint = " (did you mean 'true'?)"
    elif isinstance(node.value, str) and node.value.lower() in ("no", "off", "n", "0", "disabled"):
        hint = " (did you mean 'false'?)"
    issues.add(node.where, path, f"expected true or false, got {describe(node)}{hint}")
    return None


def parse_text(node: Node, path: str, issues: Issues) -> str | None:
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected a string, got {describe(node)}")
        return None
    if not node.value.strip():
        issues.add(node.where, path, "must not be empty")
        return None
    return node.value


def parse_pattern(node: Node, path: str, issues: Issues) -> str | None:
    return parse_text(node, path, issues)


def choice(options: Sequence[str]) -> Parser[str]:
    def parse(node: Node, path: str, issues: Issues) -> str | None:
        if isinstance(node.value, str) and node.value.lower() in options:
            return node.value.lower()
        word = node.value if isinstance(node.value, str) else str(node.value)
        issues.add(
            node.where,
            path,
            f"expected one of {', '.join(options)}, got {describe(node)}"
            + did_you_mean(word.lower(), options),
        )
        return None

    return parse


def list_of(item: Parser[T]) -> Parser[tuple[T, ...]]:
    def parse(node: Node, path: str, issues: Issues) -> tuple[T, ...] | None:
        if not isinstance(node.value, tuple):
            issues.add(node.where, path, f"expected a list, got {describe(node)}")
            return None
        values: list[T] = []
        ok = True
        for index, child in enumerate(node.value):
            parsed = item(child, f"{path}[{index}]", issues)
            if parsed is None:
                ok = False
            else:
                values.append(parsed)
        return tuple(values) if ok else None

    return parse


def hostname_problem(name: str) -> str | None:
    """Why ``name`` is not a valid single DNS label for a host, or None when it is."""
    if not name:
        return "must not be empty"
    if len(name) > 63:
        return f"is {len(name)} characters long; a DNS label has at most 63"
    if _LABEL.match(name):
        return None
    if "." in name:
        return "must be a single label without dots ('.local' is added for you)"
    if name.startswith("-") or name.endswith("-"):
        return "must not start or end with '-'"
    return "may hold only lowercase letters a-z, digits and '-'"


def suggest_hostname(name: str) -> str | None:
    candidate = re.sub(r"[^a-z0-9-]+", "-", name.lower().removesuffix(".local")).strip("-")[:63]
    candidate = candidate.strip("-")
    return candidate if candidate and hostname_problem(candidate) is None else None


def parse_hostname(node: Node, path: str, issues: Issues) -> str | None:
    if isinstance(node.value, int) and not isinstance(node.value, bool) and node.value >= 0:
        node = dataclasses.replace(node, value=str(node.value))  # `hostname: 1234` is a label
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected a host name, got {describe(node)}")
        return None
    problem = hostname_problem(node.value)
    if problem is None:
        return node.value
    suggestion = suggest_hostname(node.value)
    hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
    issues.add(node.where, path, f"host name {node.value!r} {problem}{hint}")
    return None


def parse_ip(node: Node, path: str, issues: Issues) -> str | None:
    if not isinstance(node.value, str):
        issues.add(node.where, path, f"expected an IP address, got {describe(node)}")
        return None
    try:
        return str(ipaddress.ip_address(node.value))
    except ValueError:
        issues.add(node.where, path, f"{node.value!r} is not an IPv4 or IPv6 address")
        return None


DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """``500ms``/``1s``/``2m``/``1h``/``1.5`` as seconds; ValueError names a likely fix."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as '500ms', '1s', '2m' or '1h', got {text!r}")
    number, unit = match["number"], match["unit"]
    if unit == "":
        return float(number)
    if unit in DURATION_UNITS:
        return float(number) * DURATION_UNITS[unit]
    fixed = _UNIT_ALIASES.get(unit.lower())
    if fixed is None:
        close = difflib.get_close_matches(unit.lower(), list(DURATION_UNITS), n=1, cutoff=0.3)
        fixed = close[0] if close else None
    hint = f" (did you mean '{number}{fixed}'?)" if fixed else ""
    raise ValueError(f"unknown duration unit {unit!r} in {text!r}; use ms, s, m or h{hint}")


def parse_duration(node: Node, path: str, issues: Issues) -> float | None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        issues.add(node.where, path, f"expected a duration such as '1s', got {describe(node)}")
        return None
    try:
        seconds = duration_seconds(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        issues.add(node.where, path, str(exc))
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        issues.add(node.where, path, f"must be a positive duration, got {describe(node)}")
        return None
    return seconds


SIZE_UNITS: dict[str, int] = {
    "B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}  # fmt: skip


def size_bytes(text: str) -> int:
    """``4096``, ``64MB``, ``256MiB``, ``1.5GiB`` as bytes; ValueError names a likely fix.

    Units are case-insensitive; kB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as '64MB' or '256MiB', got {text!r}")
    number, unit = match["number"], match["unit"]
    by_lower = {name.lower(): factor for name, factor in SIZE_UNITS.items()}
    if unit.lower() in by_lower:
        return int(float(number) * by_lower[unit.lower()])
    if unit == "":
        return int(float(number))
    # "64M", "64K": the binary unit is what people mean for file sizes.
    single = {"k": "KiB", "m": "MiB", "g": "GiB", "t": "TiB"}.get(unit.lower())
    close = difflib.get_close_matches(unit.lower(), list(by_lower), n=1, cutoff=0.5)
    canonical = {name.lower(): name for name in SIZE_UNITS}
    fixed = single or (canonical[close[0]] if close else None)
    hint = f" (did you mean '{number}{fixed}'?)" if fixed else ""
    raise ValueError(f"unknown size unit {unit!r} in {text!r}; use {', '.join(SIZE_UNITS)}{hint}")


def size_parser(low: int, high: int) -> Parser[int]:
    """A byte count: an integer or a string with a unit (see :func:`size_bytes`)."""

    def parse(node: Node, path: str, issues: Issues) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | str):
            issues.add(node.where, path, f"expected a size such as '256MiB', got {describe(node)}")
            return None
        try:
            size = size_bytes(value) if isinstance(value, str) else value
        except ValueError as exc:
            issues.add(node.where, path, str(exc))
            return None
        if not low <= size <= high:
            issues.add(
                node.where, path, f"must be between {low} and {high} bytes, got {describe(node)}"
            )
            return None
        return size

    return parse


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-zA-Z]*)\s*$")
_UNIT_ALIASES = {
    "msec": "ms", "msecs": "ms", "millis": "ms", "millisecond": "ms", "milliseconds": "ms",
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
}  # fmt: skip
_SIZE = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-zA-Z]*)\s*$")

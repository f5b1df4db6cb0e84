"""What a sensor produces: values per field, readings, and why input was dropped. Pure.

A frame (a line, a fixed-size binary record, a sentence) is parsed into ``Values``: field
name to a number, a string or a bool (``None`` = the field had no data in this frame, e.g.
an NMEA position without a fix). Numbers are what filters work on; strings and bools pass
through unfiltered. A ``Reading`` is the values of one sensor at one time, after its filters.

Bad input is never an exception that escapes a sensor: parsers raise ``ParseError`` with one
of the ``DropReason`` values, and the sensor counts it per reason and drops the frame.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

Value = float | int | str | bool | None
Values = dict[str, Value]


class DropReason(enum.StrEnum):
    """Why a frame or a value never became a reading (a counter per sensor and reason)."""

    OVERLONG = "overlong"  # a line longer than the framer's bound (the buffer was cut)
    UTF8 = "utf8"  # bytes that are not UTF-8 where text was expected
    SYNTAX = "syntax"  # not the format the parser expects (garbage, a cut-off frame)
    CHECKSUM = "checksum"  # an NMEA or binary frame whose checksum does not match
    CONVERT = "convert"  # a value that does not convert to what the field needs
    UNSUPPORTED = "unsupported"  # a well-formed frame of a kind the parser does not read
    EMPTY = "empty"  # a frame that yielded no configured field


class ParseError(ValueError):
    """A frame the parser cannot use; ``reason`` is the counter it goes to."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else str(reason))


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field a sensor reports, with the Home Assistant names for what it measures."""

    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor's values at ``ts`` (seconds since the epoch), after its filters."""

    sensor: str
    ts: float
    values: Mapping[str, Value] = field(default_factory=dict)


def is_number(value: Value) -> bool:
    """Numbers that filters take: ints and floats (NaN included), never bools."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_number(text: str) -> float | int | None:
    """``"12"`` -> 12, ``"1.5"`` -> 1.5, ``"nan"`` -> nan; None when it is not a number.

    Infinities are refused: no sensor measures them and JSON cannot carry them."""
    text = text.strip()
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isinf(number) else number

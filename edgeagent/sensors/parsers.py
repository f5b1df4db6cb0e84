"""Parsers: one frame (a line, a binary record) into ``Values``, and the registry of them. Pure.

Theory of operation
-------------------
A ``Parser`` is built once from the sensor's ``parser:`` value and then called for every
frame: ``parse(frame) -> Values`` or ``ParseError(reason)``, which the sensor counts under
that reason and drops (nothing else escapes a parser, whatever the bytes). Text formats
decode UTF-8 first (``UTF8`` when they are not); a frame that is not the format is
``SYNTAX``; NMEA adds ``CHECKSUM`` and ``UNSUPPORTED`` (``edgeagent.sensors.nmea``).

Values: a text that reads as a number becomes one (``model.to_number``: ``"12"`` -> 12,
``"1.5"`` -> 1.5); any other text stays a string; an empty value is ``None`` (no data).

``json``
    One JSON object per line. Nested objects are flattened by dotted path
    (``{"a": {"b": 1}}`` -> ``a.b``), lists by index (``a.0``); numbers, bools and null stay as
    they are, strings that read as numbers become numbers. A number that no reading can carry
    (``Infinity``, ``1e999``) is ``CONVERT``; anything but an object is ``SYNTAX``.
``kv``
    ``key=value`` pairs separated by blanks or commas (``t=21.5 rh=40``, ``t=21.5,rh=40``);
    ``t=`` is an empty value (``None``), so there are no blanks around ``=``
    (``t= rh=40`` is ``t`` empty and ``rh`` 40); a token that is not a pair is ``SYNTAX``.
``{csv: {columns: [t, rh], separator: ","}}``
    Values by position (no quoting), blanks around each value dropped; a column named ``_``
    or null is skipped; a line with another number of values is ``SYNTAX``.
``{regex: '...'}``
    The named groups are the fields (``re.search``: anchor with ``^...$`` to match whole
    lines); a group that took no part is ``None``; no match is ``SYNTAX``.
``nmea``, ``{nmea: {strict: true}}``
    GGA, RMC, GSA and GSV sentences (``edgeagent.sensors.nmea``); ``strict`` refuses a
    sentence without a checksum.
``{struct: {format: ">2xH13HH", fields: [...]}}``
    A binary frame (``framing: {fixed: ...}``) by Python ``struct`` format, one field per
    value in order (``_`` or null skips one); a frame that is not exactly the format's size
    is ``SYNTAX``. Text (``s``) is decoded as UTF-8 without trailing NULs.

Registry: ``PARSERS`` names every parser with its options (what the config section validates
against and lists in a did-you-mean). ``build_parser(spec)`` takes the YAML value itself (a
name, or a one-key mapping of a name to its options, or to its one value for ``regex``) and
raises ``ValueError`` naming the option and the valid ones, with a compile error of a regex
or struct format in the message. A built parser's ``field_names()`` says which fields it can
yield (None for json and kv, where only the data says).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeagent.sensors.model import DropReason, ParseError, Value, Values, to_number
from edgeagent.sensors.nmea import NmeaParser

SKIP = "_"  # a csv column or struct field named so is read and thrown away


class Parser(Protocol):
    """Turns one frame into values, or raises ``ParseError`` with the reason to count."""

    def parse(self, frame: bytes) -> Values: ...

    def field_names(self) -> frozenset[str] | None:
        """The fields its frames can yield, or None when only the data says (json, kv)."""
        ...


class JsonParser:
    """One JSON object per frame, nested keys flattened by dotted path."""

    __slots__ = ()

    def field_names(self) -> None:
        return None

    def parse(self, frame: bytes) -> Values:
        text = _decode(frame)
        try:
            document = json.loads(text)
            if not isinstance(document, dict):
                kind = type(document).__name__
                raise ParseError(DropReason.SYNTAX, f"a JSON {kind}, not an object")
            values: Values = {}
            _flatten(document, "", values)
        except RecursionError:  # the sender chooses the depth; json and _flatten both recurse
            raise ParseError(DropReason.SYNTAX, "nested too deep") from None
        except ParseError:
            raise
        except ValueError as exc:
            raise ParseError(DropReason.SYNTAX, f"not JSON: {exc}") from None
        return values


class KeyValueParser:
    """``key=value`` pairs separated by blanks or commas."""

    __slots__ = ()

    def field_names(self) -> None:
        return None

    def parse(self, frame: bytes) -> Values:
        text = _decode(frame).strip(" \t,")
        if not text:
            raise ParseError(DropReason.SYNTAX, "no key=value pairs")
        values: Values = {}
        for token in _KV_SPLIT.split(text):
            key, equals, value = token.partition("=")
            if not key or not equals:
                raise ParseError(DropReason.SYNTAX, f"{token[:40]!r} is not key=value")
            values[key] = _text_value(value)
        return values


class CsvParser:
    """Values separated by ``separator``, named by position (``_`` or None skips one)."""

    __slots__ = ("_keep", "columns", "separator")

    def __init__(self, columns: Sequence[str | None], separator: str = ",") -> None:
        if not separator:
            raise ValueError("csv: 'separator' must not be empty")
        self.columns = tuple(columns)
        self.separator = separator
        self._keep = _kept(self.columns, "csv", "columns")

    def field_names(self) -> frozenset[str]:
        return frozenset(name for _, name in self._keep)

    def parse(self, frame: bytes) -> Values:
        texts = _decode(frame).split(self.separator)
        if len(texts) != len(self.columns):
            raise ParseError(
                DropReason.SYNTAX, f"{len(texts)} values for {len(self.columns)} columns"
            )
        return {name: _text_value(texts[index].strip()) for index, name in self._keep}


class RegexParser:
    """A regular expression whose named groups are the fields."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: str) -> None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"regex: {pattern!r} does not compile: {exc}") from exc
        if not compiled.groupindex:
            raise ValueError(
                f"regex: {pattern!r} has no named group: name each field as (?P<name>...)"
            )
        self.pattern = compiled

    def field_names(self) -> frozenset[str]:
        return frozenset(self.pattern.groupindex)

    def parse(self, frame: bytes) -> Values:
        match = self.pattern.search(_decode(frame))
        if match is None:
            raise ParseError(DropReason.SYNTAX, "no match")
        return {
            name: None if text is None else _text_value(text)
            for name, text in match.groupdict().items()
        }


class StructParser:
    """A binary frame unpacked by a ``struct`` format, one field per value (``_`` skips)."""

    __slots__ = ("_keep", "fields", "layout")

    def __init__(self, fmt: str, fields: Sequence[str | None]) -> None:
        try:
            layout = struct.Struct(fmt)
        except struct.error as exc:
            raise ValueError(f"struct: format {fmt!r} does not compile: {exc}") from exc
        slots = len(layout.unpack(bytes(layout.size)))
        if len(fields) != slots:
            raise ValueError(
                f"struct: format {fmt!r} holds {slots} values but 'fields' names {len(fields)}"
            )
        self.layout = layout
        self.fields = tuple(fields)
        self._keep = _kept(self.fields, "struct", "fields")

    def field_names(self) -> frozenset[str]:
        return frozenset(name for _, name in self._keep)

    def parse(self, frame: bytes) -> Values:
        if len(frame) != self.layout.size:
            raise ParseError(
                DropReason.SYNTAX, f"{len(frame)} bytes, the format has {self.layout.size}"
            )
        unpacked = self.layout.unpack(frame)
        values: Values = {}
        for index, name in self._keep:
            item = unpacked[index]
            if isinstance(item, bytes):
                try:
                    item = item.rstrip(b"\0").decode("utf-8")
                except UnicodeDecodeError:
                    raise ParseError(DropReason.UTF8, f"field {name}") from None
            elif isinstance(item, float) and math.isinf(item):
                raise ParseError(DropReason.CONVERT, f"field {name} is infinite")
            values[name] = item
        return values


# -- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParserKind:
    """A name the config's ``parser:`` takes, with its options (option -> what it takes)."""

    name: str
    summary: str
    options: Mapping[str, str]
    required: tuple[str, ...]
    # The option a bare value stands for: ``{regex: '^t=(?P<t>.*)$'}`` is the pattern.
    shorthand: str | None
    build: Callable[[Mapping[str, object]], Parser]


def build_parser(spec: object) -> Parser:
    """The parser a ``parser:`` value names: ``"json"``, ``{csv: {columns: [t, rh]}}``, ...

    Raises ``ValueError`` naming the bad option and listing the valid ones (and, for a regex
    or struct format that does not compile, the compiler's message)."""
    if isinstance(spec, str):
        kind = _kind(spec)
        options: dict[str, object] = {}
    elif isinstance(spec, Mapping):
        if len(spec) != 1:
            keys = ", ".join(str(key) for key in spec) or "nothing"
            raise ValueError(
                f"parser must be one name or a mapping of one name to its options, got {keys}; "
                f"valid: {', '.join(PARSERS)}"
            )
        ((name, value),) = spec.items()
        kind = _kind(str(name))
        if value is None:
            options = {}
        elif isinstance(value, Mapping):
            options = {str(key): item for key, item in value.items()}
        elif kind.shorthand is not None:
            options = {kind.shorthand: value}
        else:
            raise ValueError(
                f"parser {kind.name} takes a mapping of options"
                + (f" ({', '.join(kind.options)})" if kind.options else " (it has none)")
                + f", not {type(value).__name__}"
            )
    else:
        raise ValueError(f"parser must be a name or a mapping, got {type(spec).__name__}")
    for option in options:
        if option not in kind.options:
            valid = ", ".join(kind.options) if kind.options else "none"
            raise ValueError(
                f"parser {kind.name}: unknown option '{option}'"
                f"{_did_you_mean(option, kind.options)}; valid options: {valid}"
            )
    for option in kind.required:
        if option not in options:
            raise ValueError(f"parser {kind.name}: '{option}' is required ({kind.options[option]})")
    return kind.build(options)


def _build_csv(options: Mapping[str, object]) -> Parser:
    separator = options.get("separator", ",")
    if not isinstance(separator, str):
        raise ValueError(f"csv: 'separator' must be a string, got {separator!r}")
    return CsvParser(_names(options["columns"], "csv", "columns"), separator)


def _build_regex(options: Mapping[str, object]) -> Parser:
    pattern = options["pattern"]
    if not isinstance(pattern, str):
        raise ValueError(f"regex: 'pattern' must be a string, got {pattern!r}")
    return RegexParser(pattern)


def _build_nmea(options: Mapping[str, object]) -> Parser:
    strict = options.get("strict", False)
    if not isinstance(strict, bool):
        raise ValueError(f"nmea: 'strict' must be true or false, got {strict!r}")
    return NmeaParser(strict=strict)


def _build_struct(options: Mapping[str, object]) -> Parser:
    format_ = options["format"]
    if not isinstance(format_, str):
        raise ValueError(f"struct: 'format' must be a string, got {format_!r}")
    return StructParser(format_, _names(options["fields"], "struct", "fields"))


PARSERS: Mapping[str, ParserKind] = {
    kind.name: kind
    for kind in (
        ParserKind(
            name="json",
            summary="one JSON object per line, nested keys by dotted path",
            options={},
            required=(),
            shorthand=None,
            build=lambda options: JsonParser(),
        ),
        ParserKind(
            name="kv",
            summary="key=value pairs separated by spaces or commas",
            options={},
            required=(),
            shorthand=None,
            build=lambda options: KeyValueParser(),
        ),
        ParserKind(
            name="csv",
            summary="separated values named by position",
            options={
                "columns": "the field of each value in order ('_' or null skips one)",
                "separator": "between values (default ',')",
            },
            required=("columns",),
            shorthand=None,
            build=_build_csv,
        ),
        ParserKind(
            name="regex",
            summary="a regular expression whose named groups are the fields",
            options={"pattern": "the regular expression, with (?P<field>...) groups"},
            required=("pattern",),
            shorthand="pattern",
            build=_build_regex,
        ),
        ParserKind(
            name="nmea",
            summary="NMEA 0183 GGA, RMC, GSA and GSV sentences from a GNSS receiver",
            options={"strict": "refuse sentences without a checksum (default false)"},
            required=(),
            shorthand=None,
            build=_build_nmea,
        ),
        ParserKind(
            name="struct",
            summary="a binary frame by Python struct format",
            options={
                "format": "a Python struct format such as '>2xH13HH'",
                "fields": "the field of each value in order ('_' or null skips one)",
            },
            required=("format", "fields"),
            shorthand=None,
            build=_build_struct,
        ),
    )
}


# -- private helpers -----------------------------------------------------------------------------

_KV_SPLIT = re.compile(r"[ \t,]+")


def _decode(frame: bytes) -> str:
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(DropReason.UTF8, "not UTF-8") from None


def _text_value(text: str) -> Value:
    if not text:
        return None
    number = to_number(text)
    return text if number is None else number


def _json_value(item: object, path: str) -> Value:
    if isinstance(item, str):
        return _text_value(item) if item else item
    if isinstance(item, float) and math.isinf(item):
        raise ParseError(DropReason.CONVERT, f"{path} is infinite")
    assert item is None or isinstance(item, bool | int | float)
    return item


def _flatten(node: dict[str, object] | list[object], prefix: str, values: Values) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, item in items:
        path = f"{prefix}{key}"
        if isinstance(item, dict | list):
            _flatten(item, path + ".", values)
        else:
            values[path] = _json_value(item, path)


def _kept(names: Sequence[str | None], kind: str, option: str) -> tuple[tuple[int, str], ...]:
    """The (position, name) of every slot that is not skipped; at least one."""
    kept = tuple((index, name) for index, name in enumerate(names) if name not in (None, SKIP))
    if not kept:
        raise ValueError(f"{kind}: '{option}' must name at least one field")
    return kept


def _names(value: object, kind: str, option: str) -> list[str | None]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{kind}: '{option}' must be a list of names, got {value!r}")
    names: list[str | None] = []
    for name in value:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{kind}: '{option}' holds {name!r}, not a name")
        if name is not None and name != SKIP and name in names:
            raise ValueError(f"{kind}: '{option}' names {name!r} twice")
        names.append(name)
    return names


def _kind(name: str) -> ParserKind:
    kind = PARSERS.get(name)
    if kind is None:
        raise ValueError(
            f"unknown parser {name!r}{_did_you_mean(name, PARSERS)}; valid: {', '.join(PARSERS)}"
        )
    return kind


def _did_you_mean(word: str, candidates: Mapping[str, object]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""

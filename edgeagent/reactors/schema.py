"""Payload schemas: the fields a verb (or a reactor's options) takes, and their validation.

Pure: no I/O. A reactor type declares a ``Schema`` per verb; the runtime validates every
intent's payload with it before the intent is journaled, so a reactor only ever sees payloads
that passed, with defaults filled in. The same ``Schema`` describes a reactor's options.

Theory of operation
-------------------
``Schema.validate`` checks, in this order, and stops at the first problem (one precise error
is easier to act on than a list of consequences):

1. the payload is an object (a dict with str keys);
2. no key is unknown (unless ``extra``), with a did-you-mean for typos, because ``bx=3``
   is far more often a typo of ``by`` than a wish to omit ``by``;
3. each declared field in declaration order: present or required or defaulted, then its
   type, finiteness, bounds and choices, then a nested schema for objects;
4. ``finish``: cross-field rules and computed defaults (``low`` defaults to ``high``).

Every failure is a ``PayloadError(field, reason)``: ``field`` is the dotted path
(``limits.high``, ``samples.3``) and ``reason`` says what was expected and what came, e.g.
``expected int, got str "x"``.

Types: ``bool`` is never an ``int`` (JSON keeps them apart, Python does not); ``float``
accepts ints and returns floats; ``number`` accepts both and keeps the type; ``object`` is a
dict with str keys whose values are JSON values; ``list`` a list of JSON values; ``any`` any
JSON value. NaN and infinities are refused everywhere: they are not JSON and ``nan != nan``
would make replayed states compare unequal.

``null`` is accepted for a field only when it is optional and its default is ``None`` (so
"unset" can be spelled explicitly, and validating a validated payload gives it back), or when
the field's type is ``any``.

``parse_assignments`` turns the CLI's ``key=value`` arguments into such a payload;
``format_assignments`` is its inverse (for ``explain`` output and tests).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from edgeagent.errors import PayloadError

FieldType = Literal["int", "float", "number", "str", "bool", "object", "list", "any"]
FIELD_TYPES: frozenset[str] = frozenset(get_args(FieldType))


@dataclass(frozen=True)
class Field:
    """One declared key of a payload.

    ``min``/``max`` bound the value of numbers and the length of str and list values (both
    inclusive). ``schema`` (objects only) validates the nested object with dotted paths.
    The definition is checked when it is built, so a bad built-in schema fails at import.
    """

    name: str
    type: FieldType
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()
    doc: str = ""
    schema: Schema | None = None

    def __post_init__(self) -> None:
        where = f"field {self.name!r}"
        if not self.name or "." in self.name:
            raise ValueError(f"{where}: a field name is non-empty and has no '.'")
        if self.type not in FIELD_TYPES:
            raise ValueError(f"{where}: type must be one of {', '.join(sorted(FIELD_TYPES))}")
        if self.schema is not None and self.type != "object":
            raise ValueError(f"{where}: only an object field takes a nested schema")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{where}: min {self.min} is above max {self.max}")
        if self.required and self.default is not None:
            raise ValueError(f"{where}: a required field has no default")
        # Defaults and choices must themselves pass, or a payload that omits the field would
        # be "valid" with a value the reactor cannot handle.
        for value in (*self.choices, *(() if self.default is None else (self.default,))):
            try:
                _check_field_value(self, value, self.name, check_choices=False)
            except PayloadError as exc:
                raise ValueError(f"{where}: default or choice {value!r}: {exc.reason}") from exc


@dataclass(frozen=True)
class Schema:
    """The fields of one payload; unknown keys are refused unless ``extra`` is True.

    ``finish`` runs after the fields passed, on a fresh dict it may change and must return:
    cross-field rules (raise ``PayloadError``) and defaults computed from other fields.
    It must accept its own output again (validation is idempotent).
    """

    fields: tuple[Field, ...] = ()
    extra: bool = False
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"schema declares {', '.join(map(repr, twice))} more than once")

    def validate(self, payload: Any, *, path: str = "") -> dict[str, Any]:
        """A new dict: ``payload`` checked, defaults filled. Raises ``PayloadError``."""
        if not isinstance(payload, Mapping):
            raise PayloadError(path, f"expected object, got {describe_value(payload)}")
        by_name = {f.name: f for f in self.fields}
        for key in payload:
            if not isinstance(key, str):
                raise PayloadError(path, f"keys must be strings, got {describe_value(key)}")
            if key not in by_name and not self.extra:
                raise PayloadError(_join(path, key), self._unknown(key))
        result: dict[str, Any] = {}
        for spec in self.fields:
            where = _join(path, spec.name)
            if spec.name in payload:
                result[spec.name] = _check_field_value(spec, payload[spec.name], where)
            elif spec.required:
                raise PayloadError(where, f"required ({_expected(spec)}), missing")
            else:
                # A copy: a caller that changes its payload must not change the schema.
                result[spec.name] = copy.deepcopy(spec.default)
        for key, value in payload.items():
            if key not in by_name:
                result[key] = check_json(value, _join(path, key))
        if self.finish is not None:
            result = self.finish(result)
        return result

    def describe(self) -> list[dict[str, Any]]:
        """One plain dict per field, for ``explain``, ``reactors show`` and generated docs."""
        out: list[dict[str, Any]] = []
        for spec in self.fields:
            entry: dict[str, Any] = {"name": spec.name, "type": spec.type}
            entry["required"] = spec.required
            if spec.default is not None:
                entry["default"] = copy.deepcopy(spec.default)
            if spec.min is not None:
                entry["min"] = spec.min
            if spec.max is not None:
                entry["max"] = spec.max
            if spec.choices:
                entry["choices"] = list(spec.choices)
            entry["doc"] = spec.doc
            if spec.schema is not None:
                entry["fields"] = spec.schema.describe()
            out.append(entry)
        if self.extra:
            out.append({"name": "*", "type": "any", "required": False, "doc": "any other key"})
        return out

    def usage(self) -> str:
        """A one-line CLI hint: ``by=<int> (default 1)``, ``value=<number> (required)``."""
        parts = []
        for spec in self.fields:
            note = "required" if spec.required else f"default {_show(spec.default)}"
            parts.append(f"{spec.name}=<{spec.type}> ({note})")
        if self.extra:
            parts.append("key=value ...")
        return " ".join(parts) if parts else "(no fields)"

    def _unknown(self, key: str) -> str:
        known = [f.name for f in self.fields]
        if not known:
            return f"unknown field {key!r}; this takes no fields"
        return f"unknown field {key!r}{did_you_mean(key, known)}; known: {', '.join(known)}"


def parse_assignments(args: Sequence[str]) -> dict[str, Any]:
    """The payload that the CLI's ``key=value`` arguments spell.

    ``by=3`` is an int, ``x=1.5`` a float, ``on=true``/``false`` a bool, ``n=null`` None,
    anything else (``name=kitchen``, ``v=007``, ``empty=``) a string. ``key:=<json>`` takes a
    JSON value (``tags:=["a","b"]``, ``name:='"3"'`` for the string "3"). A dotted key builds
    nested objects: ``limits.high=30 limits.low=25``. Keys cannot contain ``=``; a key given
    twice, or both as a value and as an object (``a=1 a.b=2``), is refused.
    """
    payload: dict[str, Any] = {}
    assigned: dict[tuple[str, ...], str] = {}
    for arg in args:
        key, sep, text = arg.partition("=")
        if not sep:
            raise PayloadError("", f"argument {arg!r} is not key=value or key:=<json>")
        as_json = key.endswith(":")
        if as_json:
            key = key[:-1]
        parts = tuple(key.split("."))
        if not key or not all(parts):
            raise PayloadError("", f"argument {arg!r}: the key is empty or has an empty part")
        if as_json:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise PayloadError(key, f"not valid JSON after ':=': {exc}") from exc
            value = check_json(value, key)
        else:
            value = infer_scalar(text, key)
        _assign(payload, assigned, parts, value, arg)
    return payload


def format_assignments(payload: Mapping[str, Any]) -> list[str]:
    """CLI arguments that ``parse_assignments`` turns back into ``payload``.

    Nested objects become dotted keys where their keys allow it, else ``key:=<json>``.
    Raises ``ValueError`` for a top-level key no argument can spell (empty, or with ``.``
    or ``=``, or ending in ``:``).
    """
    args: list[str] = []
    for key, value in payload.items():
        if not _plain_key(key):
            raise ValueError(f"key {key!r} cannot be written as a CLI argument")
        _format(key, value, args)
    return args


def infer_scalar(text: str, where: str = "") -> Any:
    """The JSON scalar a bare CLI value stands for; a string when it looks like nothing else.

    Numbers follow JSON's grammar, so ``007`` and ``1.`` stay strings, as do ``nan``/``inf``.
    """
    if text in _LITERALS:
        return _LITERALS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        number = float(text)
        if not math.isfinite(number):
            raise PayloadError(where, f"number {text} is out of range")
        return number
    return text


def check_json(value: Any, path: str = "") -> Any:
    """A deep copy of ``value`` if it is a JSON value; ``PayloadError`` at the bad spot if not.

    Tuples are refused (they would come back from JSON as lists and break exact replay).
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(path, f"must be a finite number, got {describe_value(value)}")
        return value
    if isinstance(value, list):
        return [check_json(item, _join(path, str(i))) for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(path, f"keys must be strings, got {describe_value(key)}")
            out[key] = check_json(item, _join(path, key))
        return out
    raise PayloadError(path, f"expected a JSON value, got {describe_value(value)}")


def describe_value(value: Any) -> str:
    """``str "x"``, ``int 3``, ``bool true``, ``null``, ``object``: the "got" of a reason."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"int {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"str {json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    # 0.5, below difflib's usual 0.6: field names are short, and 'bx' for 'by' scores 0.5.
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


# -- private helpers -----------------------------------------------------------------------------

_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)")


def _check_field_value(spec: Field, value: Any, where: str, *, check_choices: bool = True) -> Any:
    if value is None:
        if spec.type == "any" or (not spec.required and spec.default is None):
            return None
        raise PayloadError(where, f"expected {_expected(spec)}, got null")
    kind = spec.type
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise PayloadError(where, f"expected int, got {describe_value(value)}")
    elif kind in ("float", "number"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PayloadError(where, f"expected {kind}, got {describe_value(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise PayloadError(where, f"must be a finite number, got {describe_value(value)}")
        if kind == "float":
            value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise PayloadError(where, f"expected str, got {describe_value(value)}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise PayloadError(where, f"expected bool, got {describe_value(value)}")
    elif kind == "object":
        if not isinstance(value, Mapping):
            raise PayloadError(where, f"expected object, got {describe_value(value)}")
        value = spec.schema.validate(value, path=where) if spec.schema else check_json(value, where)
    elif kind == "list":
        if not isinstance(value, list):
            raise PayloadError(where, f"expected list, got {describe_value(value)}")
        value = check_json(value, where)
    else:
        value = check_json(value, where)
    _check_bounds(spec, value, where)
    if check_choices and spec.choices and value not in spec.choices:
        shown = ", ".join(_show(c) for c in spec.choices)
        hint = ""
        if isinstance(value, str):
            hint = did_you_mean(value, [c for c in spec.choices if isinstance(c, str)])
        raise PayloadError(where, f"one of: {shown}; got {describe_value(value)}{hint}")
    return value


def _check_bounds(spec: Field, value: Any, where: str) -> None:
    if spec.min is None and spec.max is None:
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        measured, label = value, "must be"
    elif isinstance(value, str | list):
        measured, label = len(value), "length must be"
    else:
        return
    if spec.min is not None and measured < spec.min:
        raise PayloadError(where, f"{label} >= {_bound(spec.min)}, got {_show(measured)}")
    if spec.max is not None and measured > spec.max:
        raise PayloadError(where, f"{label} <= {_bound(spec.max)}, got {_show(measured)}")


def _expected(spec: Field) -> str:
    return "any JSON value" if spec.type == "any" else spec.type


def _bound(number: float) -> str:
    # "must be >= 1", not ">= 1.0", when the bound was written as a whole number.
    return str(int(number)) if float(number).is_integer() else repr(number)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _assign(
    payload: dict[str, Any],
    assigned: dict[tuple[str, ...], str],
    parts: tuple[str, ...],
    value: Any,
    arg: str,
) -> None:
    dotted = ".".join(parts)
    if parts in assigned:
        raise PayloadError(dotted, f"given twice ({assigned[parts]!r} and {arg!r})")
    for size in range(1, len(parts)):
        if parts[:size] in assigned:
            raise PayloadError(
                dotted, f"conflicts with {assigned[parts[:size]]!r}, which sets it as a whole"
            )
    for other, other_arg in assigned.items():
        if other[: len(parts)] == parts:
            raise PayloadError(dotted, f"conflicts with {other_arg!r}, which sets a part of it")
    assigned[parts] = arg
    node = payload
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _plain_key(key: str) -> bool:
    return bool(key) and "." not in key and "=" not in key and not key.endswith(":")


def _format(key: str, value: Any, args: list[str]) -> None:
    if isinstance(value, dict) and value and all(_plain_key(k) for k in value):
        for sub, item in value.items():
            _format(f"{key}.{sub}", item, args)
        return
    if value is None or isinstance(value, str | bool | int | float):
        text = value if isinstance(value, str) else json.dumps(value)
        try:
            spelled_back = infer_scalar(text)
        except PayloadError:
            spelled_back = None
        if spelled_back == value and type(spelled_back) is type(value):
            args.append(f"{key}={text}")
            return
    args.append(f"{key}:={json.dumps(value, ensure_ascii=False)}")

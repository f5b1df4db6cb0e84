"""Payload schemas: validation reasons, defaults, the CLI's key=value arguments (with properties)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.errors import IntentError, PayloadError
from edgeagent.reactors.schema import (
    Field,
    FieldType,
    Schema,
    check_json,
    describe_value,
    format_assignments,
    infer_scalar,
    parse_assignments,
)

COUNT = Schema((Field("by", "int", default=1, min=1, doc="step"),))


def reason(schema: Schema, payload: Any) -> tuple[str, str]:
    with pytest.raises(PayloadError) as caught:
        schema.validate(payload)
    return caught.value.field, caught.value.reason


def canonical(value: Any) -> str:
    # json.dumps tells 1, 1.0 and true apart, which == does not.
    return json.dumps(value, sort_keys=True)


# -- validate: reasons a person can act on -------------------------------------------------------


def test_error_formats_with_payload_prefix_and_is_an_intent_error() -> None:
    with pytest.raises(PayloadError) as caught:
        COUNT.validate({"by": "x"})
    assert str(caught.value) == 'payload.by: expected int, got str "x"'
    assert isinstance(caught.value, IntentError)
    assert caught.value.code == "invalid"


def test_unknown_field_suggests_the_closest_name() -> None:
    assert reason(COUNT, {"bx": 3}) == ("bx", "unknown field 'bx' (did you mean 'by'?); known: by")


def test_unknown_field_without_fields() -> None:
    assert reason(Schema(), {"x": 1}) == ("x", "unknown field 'x'; this takes no fields")


def test_bounds_and_choices() -> None:
    assert reason(COUNT, {"by": 0}) == ("by", "must be >= 1, got 0")
    mode = Schema((Field("mode", "str", choices=("on", "off")),))
    assert reason(mode, {"mode": "of"}) == (
        "mode",
        "one of: on, off; got str \"of\" (did you mean 'off'?)",
    )
    name = Schema((Field("name", "str", min=1, max=3),))
    assert reason(name, {"name": ""}) == ("name", "length must be >= 1, got 0")
    assert reason(name, {"name": "abcd"}) == ("name", "length must be <= 3, got 4")
    top = Schema((Field("x", "float", max=1.5),))
    assert reason(top, {"x": 2}) == ("x", "must be <= 1.5, got 2.0")


def test_bool_is_not_int_and_float_takes_ints() -> None:
    assert reason(COUNT, {"by": True}) == ("by", "expected int, got bool true")
    as_float = Schema((Field("x", "float"),)).validate({"x": 2})
    assert as_float == {"x": 2.0}
    assert isinstance(as_float["x"], float)
    number = Schema((Field("x", "number"),))
    assert isinstance(number.validate({"x": 2})["x"], int)
    assert isinstance(number.validate({"x": 2.5})["x"], float)
    assert reason(number, {"x": False}) == ("x", "expected number, got bool false")


def test_non_finite_numbers_are_refused() -> None:
    assert reason(Schema((Field("x", "float"),)), {"x": math.nan}) == (
        "x",
        "must be a finite number, got float nan",
    )
    assert reason(Schema((Field("x", "any"),)), {"x": [1, math.inf]}) == (
        "x.1",
        "must be a finite number, got float inf",
    )


def test_required_missing_and_null() -> None:
    value = Schema((Field("value", "number", required=True),))
    assert reason(value, {}) == ("value", "required (number), missing")
    assert reason(value, {"value": None}) == ("value", "expected number, got null")
    # Optional without a default: null spells "unset" and is kept.
    assert Schema((Field("x", "str"),)).validate({"x": None}) == {"x": None}
    assert reason(COUNT, {"by": None}) == ("by", "expected int, got null")


def test_defaults_are_filled_and_copied() -> None:
    schema = Schema((Field("tags", "object", default={"a": [1]}),))
    first = schema.validate({})
    first["tags"]["a"].append(2)
    assert schema.validate({}) == {"tags": {"a": [1]}}


def test_payload_must_be_an_object_with_str_keys() -> None:
    assert reason(COUNT, [1]) == ("", "expected object, got list")
    assert reason(COUNT, {1: 2}) == ("", "keys must be strings, got int 1")
    with pytest.raises(PayloadError) as caught:
        COUNT.validate(None)
    assert str(caught.value) == "payload: expected object, got null"


def test_nested_schema_gives_dotted_paths() -> None:
    limits = Schema((Field("high", "number", required=True),))
    schema = Schema((Field("limits", "object", required=True, schema=limits),))
    assert reason(schema, {"limits": {"high": "x"}}) == (
        "limits.high",
        'expected number, got str "x"',
    )
    assert reason(schema, {"limits": {"hihg": 1}})[0] == "limits.hihg"
    assert schema.validate({"limits": {"high": 3}}) == {"limits": {"high": 3}}


def test_object_list_and_any_take_json_values_only() -> None:
    schema = Schema((Field("o", "object"), Field("l", "list"), Field("a", "any")))
    assert reason(schema, {"o": {"k": (1, 2)}}) == ("o.k", "expected a JSON value, got tuple")
    assert reason(schema, {"l": (1,)}) == ("l", "expected list, got tuple")
    assert reason(schema, {"a": {1: 2}}) == ("a", "keys must be strings, got int 1")
    assert reason(schema, {"a": {b"x"}}) == ("a", "expected a JSON value, got set")
    assert schema.validate({"a": None}) == {"o": None, "l": None, "a": None}


def test_extra_keeps_unknown_keys_but_checks_them() -> None:
    schema = Schema((Field("n", "int", default=0),), extra=True)
    assert schema.validate({"x": [1, "y"]}) == {"n": 0, "x": [1, "y"]}
    assert reason(schema, {"x": math.nan})[0] == "x"


def test_finish_runs_after_the_fields() -> None:
    def low_below_high(values: dict[str, Any]) -> dict[str, Any]:
        if values["low"] is None:
            values["low"] = values["high"]
        if values["low"] > values["high"]:
            raise PayloadError("low", "must be <= high")
        return values

    schema = Schema(
        (Field("high", "number", required=True), Field("low", "number")), finish=low_below_high
    )
    assert schema.validate({"high": 3}) == {"high": 3, "low": 3}
    assert reason(schema, {"high": 3, "low": 4}) == ("low", "must be <= high")


def test_bad_definitions_fail_when_built() -> None:
    with pytest.raises(ValueError, match="default or choice"):
        Field("by", "int", default="one")
    with pytest.raises(ValueError, match="min 3 is above max 1"):
        Field("by", "int", min=3, max=1)
    with pytest.raises(ValueError, match="more than once"):
        Schema((Field("a", "int"), Field("a", "str")))
    with pytest.raises(ValueError, match=r"no '\.'"):
        Field("a.b", "int")
    with pytest.raises(ValueError, match="type must be one of"):
        Field("a", "integer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nested schema"):
        Field("a", "list", schema=Schema())


def test_describe_and_usage() -> None:
    schema = Schema(
        (
            Field("value", "number", required=True, doc="reading"),
            Field("mode", "str", default="on", choices=("on", "off")),
        ),
        extra=True,
    )
    assert schema.describe() == [
        {"name": "value", "type": "number", "required": True, "doc": "reading"},
        {
            "name": "mode",
            "type": "str",
            "required": False,
            "default": "on",
            "choices": ["on", "off"],
            "doc": "",
        },
        {"name": "*", "type": "any", "required": False, "doc": "any other key"},
    ]
    assert schema.usage() == "value=<number> (required) mode=<str> (default on) key=value ..."
    assert Schema().usage() == "(no fields)"
    assert COUNT.describe()[0]["min"] == 1


def test_describe_value_truncates_long_strings() -> None:
    assert describe_value("x" * 50) == 'str "' + "x" * 37 + '..."'
    assert describe_value(1.5) == "float 1.5"
    assert describe_value(b"x") == "bytes"


def test_check_json_copies() -> None:
    original = {"a": [1, {"b": 2}]}
    copied = check_json(original)
    assert copied == original
    assert copied["a"] is not original["a"]


# -- parse_assignments ---------------------------------------------------------------------------


def test_parse_assignments_infers_scalars() -> None:
    assert parse_assignments(
        ["by=3", "x=1.5", "e=1e3", "on=true", "off=false", "n=null", "s=kitchen", "z=007", "m="]
    ) == {
        "by": 3,
        "x": 1.5,
        "e": 1000.0,
        "on": True,
        "off": False,
        "n": None,
        "s": "kitchen",
        "z": "007",
        "m": "",
    }
    assert parse_assignments(["x=-2", "y=nan", "q=a=b"]) == {"x": -2, "y": "nan", "q": "a=b"}


def test_parse_assignments_json_and_nesting() -> None:
    assert parse_assignments(['tags:=["a", 1]', 'name:="3"', "a.b=1", "a.c.d=x"]) == {
        "tags": ["a", 1],
        "name": "3",
        "a": {"b": 1, "c": {"d": "x"}},
    }


@pytest.mark.parametrize(
    ("args", "field", "fragment"),
    [
        (["by"], "", "is not key=value"),
        (["=3"], "", "the key is empty"),
        (["a..b=1"], "", "the key is empty"),
        (["j:={"], "j", "not valid JSON"),
        (["j:=NaN"], "j", "finite number"),
        (["a=1", "a=2"], "a", "given twice"),
        (["a=1", "a.b=2"], "a.b", "sets it as a whole"),
        (["a.b=2", "a:={}"], "a", "sets a part of it"),
        (["x=1e999"], "x", "out of range"),
    ],
)
def test_parse_assignments_refuses(args: list[str], field: str, fragment: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_assignments(args)
    assert caught.value.field == field
    assert fragment in caught.value.reason


def test_format_assignments() -> None:
    assert format_assignments({"a": {"b": "true", "c": 1.0}, "x": "", "y": [1], "e": {}}) == [
        'a.b:="true"',
        "a.c=1.0",
        "x=",
        "y:=[1]",
        "e:={}",
    ]
    assert format_assignments({"o": {"k.j": 1}}) == ['o:={"k.j": 1}']
    with pytest.raises(ValueError, match="cannot be written"):
        format_assignments({"a.b": 1})


def test_infer_scalar_matches_json_numbers_only() -> None:
    assert infer_scalar("1.") == "1."
    assert infer_scalar("-0") == 0
    assert infer_scalar("1E-2") == 0.01
    assert infer_scalar("True") == "True"


# -- properties ----------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
TYPES: tuple[FieldType, ...] = ("int", "float", "number", "str", "bool", "object", "list", "any")
NAMES = st.text("abcdefghij_", min_size=1, max_size=6)


def valid_values(spec: Field) -> st.SearchStrategy[Any]:
    lo = None if spec.min is None else int(spec.min)
    hi = None if spec.max is None else int(spec.max)
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.type == "int":
        return st.integers(lo, hi)
    if spec.type in ("float", "number"):
        floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        return floats | st.integers(lo, hi) if spec.type == "number" else floats
    if spec.type == "str":
        return st.text(min_size=lo or 0, max_size=8 if hi is None else hi)
    if spec.type == "bool":
        return st.booleans()
    if spec.type == "object":
        return st.dictionaries(st.text(max_size=4), JSON, max_size=3)
    if spec.type == "list":
        return st.lists(JSON, min_size=lo or 0, max_size=4 if hi is None else hi)
    return JSON


@st.composite
def fields(draw: st.DrawFn, name: str) -> Field:
    kind = draw(st.sampled_from(TYPES))
    lo = hi = None
    if kind in ("int", "float", "number", "str", "list") and draw(st.booleans()):
        lo = draw(st.integers(0, 3))
        hi = lo + draw(st.integers(0, 5))
    choices: tuple[Any, ...] = ()
    if kind in ("int", "str") and draw(st.booleans()):
        bare = Field(name, kind, min=lo, max=hi)
        choices = tuple(draw(st.lists(valid_values(bare), min_size=1, max_size=3, unique=True)))
    required = draw(st.booleans())
    spec = Field(name, kind, required=required, min=lo, max=hi, choices=choices)
    if not required and draw(st.booleans()):
        default = draw(valid_values(spec))
        if default is not None:
            spec = Field(name, kind, default=default, min=lo, max=hi, choices=choices)
    return spec


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    names = draw(st.lists(NAMES, max_size=5, unique=True))
    return Schema(tuple(draw(fields(name)) for name in names), extra=draw(st.booleans()))


@st.composite
def schema_and_payload(draw: st.DrawFn) -> tuple[Schema, dict[str, Any], dict[str, Any]]:
    """A schema, a valid payload for it, and what validating it must give."""
    schema = draw(schemas())
    payload: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for spec in schema.fields:
        if spec.required or draw(st.booleans()):
            value = draw(valid_values(spec))
            payload[spec.name] = value
            expected[spec.name] = float(value) if spec.type == "float" else value
        else:
            expected[spec.name] = spec.default
    if schema.extra:
        for key, value in draw(st.dictionaries(st.sampled_from("XYZ"), JSON, max_size=2)).items():
            payload[key] = expected[key] = value
    return schema, payload, expected


@settings(max_examples=200)
@given(schema_and_payload())
def test_valid_payloads_validate_to_themselves_with_defaults(
    case: tuple[Schema, dict[str, Any], dict[str, Any]],
) -> None:
    schema, payload, expected = case
    result = schema.validate(payload)
    assert canonical(result) == canonical(expected)
    # Idempotent: the journal stores validated payloads and replay may validate them again.
    assert canonical(schema.validate(result)) == canonical(result)


WRONG_FOR = {
    "int": [1.5, "1", True, [], {}],
    "float": ["1", True, [], {}],
    "number": ["1", False, [1], {}],
    "str": [1, 1.5, True, [], {}],
    "bool": [0, 1, "true", [], {}],
    "object": [1, "x", [], True],
    "list": [1, "x", {}, (1,)],
    "any": [(1,), {1: 2}, {"a"}, math.nan, b"x"],
}


@st.composite
def invalid_case(draw: st.DrawFn) -> tuple[Schema, Any, str]:
    """A schema, a payload that breaks it in one place, and that place's field name."""
    schema, payload, _ = draw(schema_and_payload())
    ways = ["unknown"] if not schema.extra else []
    ways += ["wrong_type"] if schema.fields else []
    ways += ["missing"] if any(f.required for f in schema.fields) else []
    ways += ["bounds"] if any(f.min is not None for f in schema.fields) else []
    if not ways:
        ways = ["not_object"]
    way = draw(st.sampled_from(ways))
    if way == "unknown":
        key = draw(NAMES.map(lambda n: n + "_unknown"))
        return schema, {**payload, key: 1}, key
    if way == "missing":
        spec = draw(st.sampled_from([f for f in schema.fields if f.required]))
        return schema, {k: v for k, v in payload.items() if k != spec.name}, spec.name
    if way == "bounds":
        spec = draw(st.sampled_from([f for f in schema.fields if f.min is not None]))
        assert spec.max is not None
        too_far = {
            "int": int(spec.max) + 1,
            "float": spec.max + 0.5,
            "number": spec.max + 1,
            "str": "x" * (int(spec.max) + 1),
            "list": [0] * (int(spec.max) + 1),
        }[spec.type]
        return schema, {**payload, spec.name: too_far}, spec.name
    if way == "not_object":
        return schema, draw(st.sampled_from([[], "x", 1, None])), ""
    spec = draw(st.sampled_from(schema.fields))
    return schema, {**payload, spec.name: draw(st.sampled_from(WRONG_FOR[spec.type]))}, spec.name


@settings(max_examples=200)
@given(invalid_case())
def test_invalid_payloads_raise_naming_the_field(case: tuple[Schema, Any, str]) -> None:
    schema, payload, field = case
    with pytest.raises(PayloadError) as caught:
        schema.validate(payload)
    assert caught.value.field == field or caught.value.field.startswith(field + ".")
    assert caught.value.reason


CLI_KEYS = st.text("abcxyz_-:/", min_size=1, max_size=5).filter(lambda k: not k.endswith(":"))
CLI_TREES = st.recursive(
    JSON_SCALARS | st.lists(JSON_SCALARS, max_size=2),
    lambda inner: st.dictionaries(CLI_KEYS | st.just("a.b"), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200)
@given(st.dictionaries(CLI_KEYS, CLI_TREES, max_size=4))
def test_parse_assignments_round_trips(payload: dict[str, Any]) -> None:
    args = format_assignments(payload)
    assert canonical(parse_assignments(args)) == canonical(payload)


@settings(max_examples=150)
@given(JSON_SCALARS)
def test_a_scalar_typed_as_json_parses_to_itself(value: Any) -> None:
    assert canonical(parse_assignments([f"k:={json.dumps(value)}"])) == canonical({"k": value})

"""Parsers: json, kv, csv, regex, nmea and struct frames into values; the registry's errors."""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.sensors.model import DropReason, ParseError, Values
from edgeagent.sensors.nmea import NmeaParser
from edgeagent.sensors.parsers import (
    PARSERS,
    CsvParser,
    JsonParser,
    KeyValueParser,
    Parser,
    RegexParser,
    StructParser,
    build_parser,
)


def reason(parser: Parser, frame: bytes) -> DropReason:
    with pytest.raises(ParseError) as caught:
        parser.parse(frame)
    return caught.value.reason


# -- json ---------------------------------------------------------------------------------------


def test_json_flattens_nested_keys_by_dotted_path() -> None:
    frame = b'{"pm": {"2_5": 12, "10": 20.5}, "t": 21.5, "ok": true, "id": "a1", "n": null}'
    assert JsonParser().parse(frame) == {
        "pm.2_5": 12,
        "pm.10": 20.5,
        "t": 21.5,
        "ok": True,
        "id": "a1",
        "n": None,
    }


def test_json_lists_are_flattened_by_index() -> None:
    assert JsonParser().parse(b'{"a": [1, {"b": 2}, []], "c": {}}') == {"a.0": 1, "a.1.b": 2}


def test_json_numbers_in_strings_become_numbers_and_bools_stay_bools() -> None:
    values = JsonParser().parse(b'{"t": "21.5", "n": "12", "on": false, "s": "", "x": "1a"}')
    assert values == {"t": 21.5, "n": 12, "on": False, "s": "", "x": "1a"}
    assert type(values["on"]) is bool
    assert type(values["n"]) is int


def test_json_nan_is_a_value_but_infinity_does_not_convert() -> None:
    nan = JsonParser().parse(b'{"t": NaN}')["t"]
    assert isinstance(nan, float)
    assert math.isnan(nan)
    assert reason(JsonParser(), b'{"t": Infinity}') is DropReason.CONVERT
    assert reason(JsonParser(), b'{"t": 1e999}') is DropReason.CONVERT


@pytest.mark.parametrize("frame", [b"[1, 2]", b"12", b'"x"', b"null", b"{", b"{'a': 1}", b"t=1"])
def test_json_that_is_not_an_object_is_syntax(frame: bytes) -> None:
    assert reason(JsonParser(), frame) is DropReason.SYNTAX


def test_json_bad_utf8_is_utf8() -> None:
    assert reason(JsonParser(), b'{"t": "\xff"}') is DropReason.UTF8


def test_json_nested_too_deep_is_syntax_not_a_crash() -> None:
    assert reason(JsonParser(), b'{"a":' * 100_000 + b"1" + b"}" * 100_000) is DropReason.SYNTAX
    assert reason(JsonParser(), b"[" * 100_000) is DropReason.SYNTAX


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="abcxyz -", max_size=8),
)
json_keys = st.text(alphabet="abcdefgh_0123456789", min_size=1, max_size=6)


@settings(max_examples=200)
@given(st.dictionaries(json_keys, json_leaves, max_size=8))
def test_flat_json_objects_read_back(document: dict[str, object]) -> None:
    values = JsonParser().parse(json.dumps(document).encode())
    assert values == document


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_json_never_raises_anything_but_parse_error(frame: bytes) -> None:
    with contextlib.suppress(ParseError):
        JsonParser().parse(frame)


# -- kv -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [b"t=21.5 rh=40", b"t=21.5,rh=40", b"t=21.5, rh=40", b"  t=21.5\trh=40 ,", b",t=21.5,,rh=40"],
)
def test_kv_pairs_by_spaces_or_commas(frame: bytes) -> None:
    assert KeyValueParser().parse(frame) == {"t": 21.5, "rh": 40}


def test_kv_values_that_are_not_numbers_stay_text_and_empty_is_none() -> None:
    assert KeyValueParser().parse(b"state=ok t= n=nan url=a=b") == {
        "state": "ok",
        "t": None,
        "n": pytest.approx(math.nan, nan_ok=True),
        "url": "a=b",
    }


@pytest.mark.parametrize("frame", [b"t=21.5 junk", b"=5", b"", b"  ,, ", b"hello", b"t = 21.5"])
def test_kv_without_pairs_is_syntax(frame: bytes) -> None:
    assert reason(KeyValueParser(), frame) is DropReason.SYNTAX


def test_kv_bad_utf8_is_utf8() -> None:
    assert reason(KeyValueParser(), b"t=\xc3") is DropReason.UTF8


@settings(max_examples=200)
@given(
    st.dictionaries(
        json_keys,
        st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([" ", ",", ", "]),
)
def test_kv_reads_back_what_an_arduino_prints(values: dict[str, float], separator: str) -> None:
    frame = separator.join(f"{key}={value!r}" for key, value in values.items()).encode()
    assert KeyValueParser().parse(frame) == values


# -- csv ----------------------------------------------------------------------------------------


def test_csv_values_by_position() -> None:
    parser = build_parser({"csv": {"columns": ["t", "rh", "state"]}})
    assert parser.parse(b"21.5,40,ok") == {"t": 21.5, "rh": 40, "state": "ok"}
    assert parser.parse(b" 21.5 , , ok ") == {"t": 21.5, "rh": None, "state": "ok"}


def test_csv_separator_and_skipped_columns() -> None:
    parser = build_parser({"csv": {"columns": ["t", "_", None, "rh"], "separator": ";"}})
    assert parser.parse(b"21.5;x;y;40") == {"t": 21.5, "rh": 40}


@pytest.mark.parametrize("frame", [b"21.5", b"21.5,40,1", b"21.5,40,"])
def test_csv_with_another_number_of_values_is_syntax(frame: bytes) -> None:
    assert reason(CsvParser(["t", "rh"]), frame) is DropReason.SYNTAX


def test_csv_bad_utf8_is_utf8() -> None:
    assert reason(CsvParser(["t"]), b"\xfe") is DropReason.UTF8


# -- regex --------------------------------------------------------------------------------------


def test_regex_named_groups_become_fields() -> None:
    parser = build_parser({"regex": r"^T:(?P<t>-?[\d.]+)C H:(?P<rh>\d+)% (?P<state>\w+)?$"})
    assert parser.parse(b"T:-3.5C H:40% ok") == {"t": -3.5, "rh": 40, "state": "ok"}
    assert parser.parse(b"T:21C H:40% ") == {"t": 21, "rh": 40, "state": None}


def test_regex_searches_unless_anchored() -> None:
    assert RegexParser(r"t=(?P<t>\d+)").parse(b"[boot] t=5 more") == {"t": 5}
    assert reason(RegexParser(r"^t=(?P<t>\d+)$"), b"[boot] t=5") is DropReason.SYNTAX


def test_regex_no_match_is_syntax_and_bad_utf8_is_utf8() -> None:
    parser = RegexParser(r"t=(?P<t>\d+)")
    assert reason(parser, b"rh=40") is DropReason.SYNTAX
    assert reason(parser, b"t=\xff") is DropReason.UTF8


def test_a_regex_that_does_not_compile_says_why() -> None:
    with pytest.raises(ValueError, match=r"regex: '\(\?P<t\[' does not compile: .*position"):
        build_parser({"regex": "(?P<t["})
    with pytest.raises(ValueError, match="has no named group"):
        build_parser({"regex": r"t=(\d+)"})
    with pytest.raises(ValueError, match="'pattern' must be a string"):
        build_parser({"regex": 5})


def test_regex_also_takes_its_pattern_as_an_option() -> None:
    parser = build_parser({"regex": {"pattern": r"(?P<t>\d+)"}})
    assert parser.parse(b"7") == {"t": 7}


# -- struct -------------------------------------------------------------------------------------

PMS_FIELDS = [
    "length",
    "pm1_0_cf1",
    "pm2_5_cf1",
    "pm10_cf1",
    "pm1_0",
    "pm2_5",
    "pm10",
    "particles_0_3um",
    "particles_0_5um",
    "particles_1_0um",
    "particles_2_5um",
    "particles_5_0um",
    "particles_10um",
    "_",
    "_",
]


def pms_frame(words: list[int]) -> bytes:
    body = b"\x42\x4d" + struct.pack(">H13H", 28, *words)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def test_struct_reads_a_pms5003_frame() -> None:
    parser = build_parser({"struct": {"format": ">2xH13HH", "fields": PMS_FIELDS}})
    values = parser.parse(pms_frame(list(range(1, 14))))
    assert values["length"] == 28
    assert values["pm2_5"] == 5
    assert values["particles_10um"] == 12
    assert "_" not in values
    assert len(values) == 13


def test_struct_text_floats_and_bools() -> None:
    parser = StructParser("<4s?f", ["name", "on", "t"])
    assert parser.parse(b"ab\0\0" + b"\x01" + struct.pack("<f", 1.5)) == {
        "name": "ab",
        "on": True,
        "t": 1.5,
    }
    assert reason(parser, b"\xff\xfe\0\0\x01" + struct.pack("<f", 1.5)) is DropReason.UTF8
    assert reason(parser, b"ab\0\0\x01" + struct.pack("<f", math.inf)) is DropReason.CONVERT


@pytest.mark.parametrize("size", [0, 31, 33])
def test_struct_of_another_size_is_syntax(size: int) -> None:
    parser = StructParser(">2xH13HH", PMS_FIELDS)
    assert reason(parser, bytes(size)) is DropReason.SYNTAX


def test_struct_format_and_fields_must_agree() -> None:
    with pytest.raises(ValueError, match=r"does not compile: bad char in struct format"):
        build_parser({"struct": {"format": ">2xZ", "fields": ["a"]}})
    with pytest.raises(ValueError, match="holds 15 values but 'fields' names 2"):
        build_parser({"struct": {"format": ">2xH13HH", "fields": ["a", "b"]}})
    with pytest.raises(ValueError, match="must name at least one field"):
        build_parser({"struct": {"format": ">HH", "fields": ["_", None]}})


# -- nmea through the registry --------------------------------------------------------------------


def test_nmea_through_the_registry() -> None:
    lenient = build_parser("nmea")
    strict = build_parser({"nmea": {"strict": True}})
    assert isinstance(lenient, NmeaParser)
    assert isinstance(strict, NmeaParser)
    assert (lenient.strict, strict.strict) == (False, True)
    assert build_parser({"nmea": None}).parse(b"$GPGSV,3,3,09,24,03,046,*47") == {"sats_in_view": 9}
    with pytest.raises(ValueError, match="'strict' must be true or false"):
        build_parser({"nmea": {"strict": "yes"}})


# -- registry -----------------------------------------------------------------------------------


def test_every_name_in_the_contract_builds() -> None:
    built: dict[str, Parser] = {
        "json": build_parser("json"),
        "kv": build_parser("kv"),
        "csv": build_parser({"csv": {"columns": ["t", "rh"]}}),
        "regex": build_parser({"regex": "(?P<t>.*)"}),
        "nmea": build_parser("nmea"),
        "struct": build_parser({"struct": {"format": ">H", "fields": ["n"]}}),
    }
    assert set(built) == set(PARSERS)
    assert isinstance(built["json"], JsonParser)
    assert isinstance(build_parser({"json": None}), JsonParser)
    assert isinstance(build_parser({"kv": {}}), KeyValueParser)


def test_parsers_say_which_fields_they_can_yield() -> None:
    assert build_parser("json").field_names() is None
    assert build_parser("kv").field_names() is None
    assert build_parser({"csv": {"columns": ["t", "_", None, "rh"]}}).field_names() == {"t", "rh"}
    assert build_parser({"regex": r"(?P<t>\d+) (?P<rh>\d+)"}).field_names() == {"t", "rh"}
    assert build_parser({"struct": {"format": ">HH", "fields": ["_", "n"]}}).field_names() == {"n"}
    nmea = build_parser("nmea").field_names()
    assert nmea is not None
    assert {"lat", "lon", "alt", "fix", "sats", "hdop", "speed", "course", "time"} <= nmea


def test_the_registry_describes_each_parser_for_the_config_section() -> None:
    for name, kind in PARSERS.items():
        assert kind.name == name
        assert kind.summary
        assert set(kind.required) <= set(kind.options)
        assert kind.shorthand is None or kind.shorthand in kind.options
    assert PARSERS["csv"].required == ("columns",)
    assert set(PARSERS["csv"].options) == {"columns", "separator"}
    assert PARSERS["regex"].shorthand == "pattern"
    assert set(PARSERS["struct"].options) == {"format", "fields"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "jsonl",
            "unknown parser 'jsonl' (did you mean 'json'?); valid: json, kv, csv, regex, nmea, struct",
        ),
        ({"cvs": {"columns": ["t"]}}, "unknown parser 'cvs' (did you mean 'csv'?)"),
        ("csv", "parser csv: 'columns' is required"),
        (
            {"csv": {"colums": ["t"]}},
            "parser csv: unknown option 'colums' (did you mean 'columns'?); valid options: columns, separator",
        ),
        (
            {"csv": ["t", "rh"]},
            "parser csv takes a mapping of options (columns, separator), not list",
        ),
        ({"csv": {"columns": []}}, "csv: 'columns' must be a list of names"),
        ({"csv": {"columns": "t,rh"}}, "csv: 'columns' must be a list of names"),
        ({"csv": {"columns": ["t", 3]}}, "csv: 'columns' holds 3, not a name"),
        ({"csv": {"columns": ["t", "t"]}}, "csv: 'columns' names 't' twice"),
        ({"csv": {"columns": ["_"]}}, "csv: 'columns' must name at least one field"),
        ({"csv": {"columns": ["t"], "separator": ""}}, "csv: 'separator' must not be empty"),
        ({"csv": {"columns": ["t"], "separator": 1}}, "csv: 'separator' must be a string"),
        ({"json": {"flatten": True}}, "parser json: unknown option 'flatten'; valid options: none"),
        ({"kv": "x"}, "parser kv takes a mapping of options (it has none), not str"),
        (
            {"nmea": {"strikt": True}},
            "parser nmea: unknown option 'strikt' (did you mean 'strict'?); valid options: strict",
        ),
        ({"struct": {"format": ">H"}}, "parser struct: 'fields' is required"),
        (
            {"json": None, "kv": None},
            "parser must be one name or a mapping of one name to its options, got json, kv",
        ),
        ({}, "got nothing"),
        (["json"], "parser must be a name or a mapping, got list"),
    ],
)
def test_build_parser_errors_name_the_option_and_the_valid_ones(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_parser(spec)


@settings(max_examples=200)
@given(st.binary(max_size=100))
def test_no_parser_raises_anything_but_parse_error(frame: bytes) -> None:
    parsers: list[Parser] = [
        JsonParser(),
        KeyValueParser(),
        CsvParser(["a", "b"]),
        RegexParser(r"(?P<a>\d+)"),
        NmeaParser(),
        StructParser("<hf", ["a", "b"]),
    ]
    for parser in parsers:
        try:
            values: Values = parser.parse(frame)
        except ParseError as exc:
            reasons = {exc.reason}
        else:
            reasons = set()
            assert all(isinstance(key, str) for key in values)
        assert reasons <= set(DropReason)

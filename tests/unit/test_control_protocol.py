"""The control protocol core: framing bounds, request validation, reply shapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.control.protocol import (
    LineFramer,
    encode_error,
    encode_request,
    encode_result,
    parse_request,
)
from edgeagent.errors import ProtocolError


def test_framer_splits_lines_across_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":') == []
    assert framer.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert framer.feed(b":3}\n") == [b'{"c":3}']


def test_framer_rejects_an_overlong_line() -> None:
    framer = LineFramer(max_line=16)
    with pytest.raises(ProtocolError, match="longer than 16 bytes"):
        framer.feed(b"x" * 17)


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.data())
def test_framer_reassembles_any_split(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    framer, out, start = LineFramer(), [], 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[start:cut])
        start = cut
    assert out == lines


def test_parse_request_round_trip() -> None:
    request = parse_request(encode_request(7, "info", {"caches": True}).strip())
    assert (request.id, request.method, request.params) == (7, "info", {"caches": True})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b'{"id":1}', "needs a 'method'"),
        (b'{"method":"x","params":[]}', "'params' must be an object"),
        (b'{"method":"x","id":[1]}', "'id' must be"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_parse_request_explains_bad_input(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_request(line)


def test_reply_encodings_are_single_json_lines() -> None:
    ok = encode_result(3, {"records": ["é"]})
    err = encode_error(4, "ConfigError", "bad\nthing")
    for line in (ok, err):
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
    assert json.loads(ok) == {"id": 3, "result": {"records": ["é"]}}
    assert json.loads(err)["error"] == {"code": "ConfigError", "message": "bad\nthing"}

"""Framing: lines and fixed binary frames out of a byte stream cut anywhere, drops counted."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.sensors.framing import (
    CHECKSUMS,
    FRAMINGS,
    FixedFramer,
    Framer,
    LineFramer,
    build_framer,
    sum16,
)
from edgeagent.sensors.model import DropReason

HEADER = b"\x42\x4d"


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    return [frame for chunk in chunks for frame in framer.feed(chunk)]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def pms_frame(words: list[int]) -> bytes:
    """A Plantower PMS5003 frame: header, length 28, 13 data words, then the 16-bit sum."""
    body = HEADER + (28).to_bytes(2, "big") + b"".join(w.to_bytes(2, "big") for w in words)
    return body + (sum(body) & 0xFFFF).to_bytes(2, "big")


# -- LineFramer ---------------------------------------------------------------------------------


def test_lines_end_at_newline_and_crlf_loses_its_cr() -> None:
    framer = LineFramer()
    assert framer.feed(b"a=1\r\nb=2\nc=") == [b"a=1", b"b=2"]
    assert framer.pending == 2
    assert framer.feed(b"3\r") == []
    assert framer.feed(b"\n") == [b"c=3"]
    assert framer.frames == 3
    assert framer.dropped == {}


def test_empty_lines_are_skipped_and_not_counted() -> None:
    framer = LineFramer()
    assert framer.feed(b"\n\r\n\nx\n\n") == [b"x"]
    assert framer.dropped == {}


def test_only_one_cr_belongs_to_the_terminator() -> None:
    assert LineFramer().feed(b"a\r\r\n") == [b"a\r"]


def test_an_overlong_line_is_cut_counted_once_and_the_next_line_survives() -> None:
    framer = LineFramer(max_line=8)
    assert framer.feed(b"ok\n" + b"x" * 5) == [b"ok"]
    assert framer.feed(b"y" * 5) == []  # now 10 bytes: certainly too long
    assert framer.dropped == {DropReason.OVERLONG: 1}
    assert framer.pending == 0
    assert framer.feed(b"z" * 10_000) == []  # still the same line: not counted again
    assert framer.feed(b"tail\nnext\n") == [b"next"]
    assert framer.dropped == {DropReason.OVERLONG: 1}


def test_a_line_of_exactly_max_line_passes_with_either_terminator() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"abcd\nabcd\r") == [b"abcd"]
    assert framer.pending == 5  # the CR may still be half of CRLF
    assert framer.feed(b"\nabcde\n") == [b"abcd"]
    assert framer.dropped == {DropReason.OVERLONG: 1}


def test_a_cr_at_the_limit_followed_by_more_is_content_not_a_terminator() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"abcd\rX") == []
    assert framer.feed(b"\nok\n") == [b"ok"]
    assert framer.dropped == {DropReason.OVERLONG: 1}


def test_an_overlong_line_in_one_chunk_is_counted_once() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"abcdefgh\nok\n") == [b"ok"]
    assert framer.dropped == {DropReason.OVERLONG: 1}


def test_the_buffer_stays_bounded_whatever_arrives() -> None:
    framer = LineFramer(max_line=16)
    framer.feed(b"\xff" * 1_000_000)
    assert framer.pending <= 17
    for _ in range(100):
        framer.feed(b"a" * 7)
        assert framer.pending <= 17


def test_reset_forgets_the_partial_line_and_counts_it_as_syntax() -> None:
    framer = LineFramer()
    framer.feed(b"t=21.")
    framer.reset()
    assert framer.pending == 0
    assert framer.feed(b"t=22\n") == [b"t=22"]
    assert framer.dropped == {DropReason.SYNTAX: 1}
    framer.reset()  # nothing pending: nothing counted
    assert framer.dropped == {DropReason.SYNTAX: 1}


def test_reset_inside_an_overlong_line_does_not_count_it_twice() -> None:
    framer = LineFramer(max_line=2)
    framer.feed(b"abcdef")
    framer.reset()
    assert framer.feed(b"ok\n") == [b"ok"]  # no longer discarding after the gap
    assert framer.dropped == {DropReason.OVERLONG: 1}


def test_max_line_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line"):
        LineFramer(max_line=0)


def reference_lines(stream: bytes, max_line: int) -> tuple[list[bytes], int]:
    """Lines and OVERLONG count by the plain definition, on the whole stream at once."""
    *complete, partial = stream.split(b"\n")
    frames, overlong = [], 0
    for line in complete:
        content = line.removesuffix(b"\r")
        if len(content) > max_line:
            overlong += 1
        elif content:
            frames.append(content)
    if len(partial) - partial.endswith(b"\r") > max_line:
        overlong += 1  # known too long before its newline came
    return frames, overlong


# Random bytes, and lines of a small alphabet where a CR falls at every boundary sooner or later.
line_bytes = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.lists(st.sampled_from([b"a", b"\r"]), max_size=40).map(b"".join),
)


@settings(max_examples=300)
@given(
    lines=st.lists(line_bytes, max_size=12),
    terminators=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=12, max_size=12),
    tail=line_bytes,
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20),
    max_line=st.integers(min_value=1, max_value=32),
)
def test_lines_do_not_depend_on_where_the_stream_was_cut(
    lines: list[bytes], terminators: list[bytes], tail: bytes, cuts: list[int], max_line: int
) -> None:
    stream = b"".join(line + end for line, end in zip(lines, terminators, strict=False)) + tail
    expected, overlong = reference_lines(stream, max_line)
    whole = LineFramer(max_line)
    assert whole.feed(stream) == expected
    framer = LineFramer(max_line)
    frames = []
    for chunk in split(stream, cuts):
        frames += framer.feed(chunk)
        assert framer.pending <= max_line + 1
    assert frames == expected
    assert framer.dropped == whole.dropped == ({DropReason.OVERLONG: overlong} if overlong else {})
    assert framer.frames == len(expected)


@settings(max_examples=200)
@given(
    lines=st.lists(
        st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b and b != b"\r"),
        max_size=8,
    ),
    junk=st.lists(st.binary(max_size=60), min_size=9, max_size=9),
    cuts=st.lists(st.integers(min_value=0, max_value=800), max_size=20),
)
def test_garbage_lines_between_lines_never_change_a_real_line(
    lines: list[bytes], junk: list[bytes], cuts: list[int]
) -> None:
    # Garbage ends with a newline of its own (a receiver's noise is still cut at "\n"): every
    # real line comes out whole and in order, wherever the garbage and the cuts fall.
    real = [line.removesuffix(b"\r") for line in lines]
    stream = b"".join(j + b"\n" + line + b"\n" for j, line in zip(junk, lines, strict=False))
    frames = feed_all(LineFramer(max_line=24), split(stream, cuts))
    it = iter(frames)
    assert all(any(frame == line for frame in it) for line in real)


# -- FixedFramer --------------------------------------------------------------------------------


def test_fixed_frames_start_at_the_header_and_garbage_before_counts_once() -> None:
    one, two = pms_frame(list(range(13))), pms_frame([7] * 13)
    framer = FixedFramer(32, HEADER, sum16)
    assert framer.feed(b"\x00\x01\x02" + one[:5]) == []
    assert framer.feed(one[5:] + two) == [one, two]
    assert framer.dropped == {DropReason.SYNTAX: 1}
    assert framer.frames == 2
    assert framer.pending == 0


def test_a_bad_checksum_is_dropped_and_the_real_frame_after_a_false_header_survives() -> None:
    good = pms_frame([1] * 13)
    bad = bytearray(pms_frame([2] * 13))
    bad[10] ^= 0xFF
    framer = FixedFramer(32, HEADER, sum16)
    # A false header in garbage right before a real frame: its 32 bytes fail the sum, and the
    # search resumes one byte later, finding the real frame inside them.
    assert framer.feed(bytes(bad) + b"BM\x00" + good) == [good]
    assert framer.dropped == {DropReason.CHECKSUM: 2}


def test_without_a_check_the_header_is_trusted() -> None:
    framer = FixedFramer(4, b"\xaa")
    assert framer.feed(b"\x00\xaa123\xaa456") == [b"\xaa123", b"\xaa456"]
    assert framer.dropped == {DropReason.SYNTAX: 1}


def test_a_header_split_across_chunks_is_kept() -> None:
    frame = pms_frame([3] * 13)
    framer = FixedFramer(32, HEADER, sum16)
    assert framer.feed(b"zz\x42") == []
    assert framer.pending == 1
    assert framer.feed(frame[1:]) == [frame]
    assert framer.dropped == {DropReason.SYNTAX: 1}  # the "zz"


def test_reset_drops_a_cut_frame_as_syntax() -> None:
    frame = pms_frame([4] * 13)
    framer = FixedFramer(32, HEADER, sum16)
    framer.feed(frame[:20])
    framer.reset()
    assert framer.pending == 0
    assert framer.feed(frame) == [frame]
    assert framer.dropped == {DropReason.SYNTAX: 1}


def test_the_fixed_buffer_holds_at_most_one_partial_frame() -> None:
    framer = FixedFramer(32, HEADER, sum16)
    framer.feed(bytes(range(256)) * 100)
    assert framer.pending < 32
    framer.feed(b"BM" * 1000)
    assert framer.pending < 32


def test_fixed_framer_needs_a_header_shorter_than_the_frame() -> None:
    with pytest.raises(ValueError, match="header"):
        FixedFramer(32, b"")
    with pytest.raises(ValueError, match="longer"):
        FixedFramer(2, HEADER)


def test_sum16_is_the_plantower_check() -> None:
    frame = pms_frame([0xFFFF] * 13)
    assert sum16(frame)
    assert not sum16(frame[:-1] + bytes([frame[-1] ^ 1]))
    assert not sum16(b"\x01")


payloads = st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=13, max_size=13)


@settings(max_examples=300)
@given(
    words=st.lists(payloads, max_size=6),
    junk=st.lists(st.binary(max_size=50).filter(lambda b: 0x42 not in b), min_size=7, max_size=7),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=25),
    checked=st.booleans(),
)
def test_fixed_frames_do_not_depend_on_cuts_or_garbage_without_a_header(
    words: list[list[int]], junk: list[bytes], cuts: list[int], checked: bool
) -> None:
    frames = [pms_frame(w) for w in words]
    stream = b"".join(j + f for j, f in zip(junk, frames, strict=False)) + junk[-1]
    check = sum16 if checked else None
    whole = FixedFramer(32, HEADER, check)
    assert whole.feed(stream) == frames
    framer = FixedFramer(32, HEADER, check)
    got = []
    for chunk in split(stream, cuts):
        got += framer.feed(chunk)
        assert framer.pending < 32
    assert got == frames
    assert framer.dropped == whole.dropped
    runs = sum(1 for j in junk[: len(frames)] if j) + (1 if junk[-1] else 0)
    assert framer.dropped == ({DropReason.SYNTAX: runs} if runs else {})


junk_with_headers = st.lists(
    st.one_of(
        st.binary(max_size=30), st.just(HEADER), st.binary(max_size=8).map(lambda b: HEADER + b)
    ),
    max_size=4,
).map(b"".join)


# derandomize: a false header inside garbage could pass the 16-bit sum by chance (about once in
# 65,536 false headers); the property holds for every other stream, so run a fixed set.
@settings(max_examples=300, derandomize=True)
@given(
    words=st.lists(payloads, min_size=1, max_size=5),
    junk=st.lists(junk_with_headers, min_size=6, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=25),
)
def test_garbage_with_headers_never_yields_a_wrong_frame_when_checked(
    words: list[list[int]], junk: list[bytes], cuts: list[int]
) -> None:
    frames = [pms_frame(w) for w in words]
    stream = b"".join(j + f for j, f in zip(junk, frames, strict=False)) + junk[-1]
    whole = FixedFramer(32, HEADER, sum16)
    assert whole.feed(stream) == frames
    framer = FixedFramer(32, HEADER, sum16)
    assert feed_all(framer, split(stream, cuts)) == frames
    assert framer.dropped == whole.dropped


# -- registry -----------------------------------------------------------------------------------


def test_build_framer_takes_the_yaml_forms() -> None:
    line = build_framer("line")
    assert isinstance(line, LineFramer)
    assert line.max_line == 1024
    longer = build_framer({"line": {"max_line": 2048}})
    assert isinstance(longer, LineFramer)
    assert longer.max_line == 2048
    flat = build_framer({"fixed": 32, "header": "424d", "checksum": "sum16"})
    nested = build_framer({"fixed": {"length": 32, "header": "424D", "checksum": "sum16"}})
    for framer in (flat, nested):
        assert isinstance(framer, FixedFramer)
        assert (framer.length, framer.header, framer.check) == (32, HEADER, sum16)
    plain = build_framer({"fixed": 32, "header": "424d"})
    assert isinstance(plain, FixedFramer)
    assert plain.check is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lines", "unknown framing 'lines' (did you mean 'line'?); valid: fixed, line"),
        (3, "framing must be a name or a mapping"),
        ({"header": "424d"}, "framing names no kind (got header); valid: fixed, line"),
        ({"fixed": 32, "line": None}, "more than one kind"),
        ({"fixed": 32}, "framing fixed: 'header' is required"),
        (
            {"fixed": 32, "header": "42", "chksum": "sum16"},
            "unknown option 'chksum' (did you mean 'checksum'?); valid options: length, header, checksum",
        ),
        ({"fixed": 32, "header": "4g"}, "'header' '4g' is not hex"),
        ({"fixed": 32, "header": 0x42}, "'header' must be hex digits"),
        ({"fixed": "32", "header": "42"}, "'length' must be a positive integer"),
        ({"fixed": True, "header": "42"}, "'length' must be a positive integer"),
        ({"fixed": 2, "header": "424d"}, "must be longer than the 2-byte header"),
        (
            {"fixed": 32, "header": "424d", "checksum": "crc"},
            "unknown checksum 'crc'; valid: sum16",
        ),
        ({"fixed": {"length": 32}, "length": 32, "header": "42"}, "'length' is given twice"),
        ({"line": 0}, "'max_line' must be a positive integer"),
    ],
)
def test_build_framer_errors_name_the_option_and_the_valid_ones(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_framer(spec)


def test_the_registry_lists_options_for_the_config_section() -> None:
    assert set(FRAMINGS) == {"line", "fixed"}
    assert FRAMINGS["fixed"].required == ("length", "header")
    assert set(FRAMINGS["fixed"].options) == {"length", "header", "checksum"}
    assert set(CHECKSUMS) == {"sum16"}

"""Framing: a serial byte stream, read in chunks of any size, cut into frames. Pure.

Theory of operation
-------------------
A serial port delivers bytes in chunks that follow the UART's timing, not the device's
records: a line can arrive in three reads, or three lines in one. A framer is fed every chunk
(``feed(data) -> list[bytes]``) and returns the complete frames it now holds, in order; the
frames a stream yields never depend on where the chunks were cut (the property tests check
it). What is not a frame is counted by ``DropReason`` in ``dropped`` and never returned.
``reset()`` forgets a partial frame: the adapter calls it after a gap in time or a reopen, so
the tail of a frame cut by an unplug is not glued to the head of the next one (ESPHome's
pmsx003 resynchronises on a 500 ms gap the same way).

``LineFramer`` (text devices: JSON, ``key=value``, CSV, NMEA)
    A frame ends at ``"\\n"``; one ``"\\r"`` just before it is part of the terminator
    (``"\\r\\n"``). Empty lines are skipped. A line longer than ``max_line`` bytes (terminator
    excluded) is counted once as ``OVERLONG`` as soon as that is certain, and everything up to
    the next ``"\\n"`` is discarded: the buffer never holds more than ``max_line + 1`` bytes,
    whatever arrives.

``FixedFramer`` (binary devices: the Plantower PMS5003 sends 32 bytes starting ``42 4d``)
    A frame is ``length`` bytes starting with ``header``. Bytes before a header are garbage:
    each run of them is counted once as ``SYNTAX`` (a device powered up mid-frame, noise).
    With a ``check`` (a checksum), a frame that fails it is counted as ``CHECKSUM`` and the
    search for a header resumes one byte after the false start, so a header-like pair inside
    garbage cannot swallow the real frame that follows it. Without a check, the header is
    trusted: garbage that contains the header yields a wrong frame, so give a checksum
    wherever the device has one. The buffer holds at most one partial frame.

Registry
--------
``FRAMINGS`` names the framings the config's ``framing:`` key takes, with their options;
``build_framer(spec)`` builds one from the YAML value (``line``, ``{line: {max_line: 2048}}``,
``{fixed: 32, header: "424d", checksum: sum16}``) or raises ``ValueError`` naming the option
and the valid ones. ``CHECKSUMS`` names the frame checks ``checksum:`` takes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from edgeagent.sensors.model import DropReason

FrameCheck = Callable[[bytes], bool]


class Framer(Protocol):
    """What the serial adapter drives: bytes in, complete frames out, drops counted."""

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data``, in order (possibly none)."""
        ...

    def reset(self) -> None:
        """Forget a partial frame (after a gap in time or a reopen)."""
        ...

    @property
    def dropped(self) -> dict[DropReason, int]:
        """What was not a frame, by reason (only reasons that happened)."""
        ...

    @property
    def frames(self) -> int:
        """Frames returned so far."""
        ...

    @property
    def pending(self) -> int:
        """Bytes held for a frame not complete yet (bounded)."""
        ...


class LineFramer:
    """Lines ending in ``"\\n"`` (``"\\r\\n"`` accepted), each at most ``max_line`` bytes."""

    def __init__(self, max_line: int = 1024) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, got {max_line}")
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False  # inside a line already counted as OVERLONG
        self._dropped: dict[DropReason, int] = {}
        self._frames = 0

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        limit = self.max_line
        pos = 0
        size = len(data)
        while pos < size:
            newline = data.find(b"\n", pos)
            if self._discarding:
                if newline < 0:
                    break
                self._discarding = False
                pos = newline + 1
                continue
            if newline < 0:
                # Never more than enough to know the line is too long: the buffer stays bounded.
                buf += data[pos : pos + limit + 2 - len(buf)]
                if _certainly_longer(buf, limit):
                    self._overlong()
                break
            if buf:
                buf += data[pos:newline]
                line = bytes(buf)
                buf.clear()
            else:
                line = data[pos:newline]
            pos = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                self._count(DropReason.OVERLONG)
            elif line:
                out.append(line)
        self._frames += len(out)
        return out

    def reset(self) -> None:
        """Forget the partial line; one that was not already counted counts as ``SYNTAX``."""
        if self._buf and not self._discarding:
            self._count(DropReason.SYNTAX)
        self._buf.clear()
        self._discarding = False

    @property
    def dropped(self) -> dict[DropReason, int]:
        return dict(self._dropped)

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _overlong(self) -> None:
        self._count(DropReason.OVERLONG)
        self._buf.clear()
        self._discarding = True

    def _count(self, reason: DropReason) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1


class FixedFramer:
    """Frames of ``length`` bytes starting with ``header``, optionally checked by ``check``."""

    def __init__(self, length: int, header: bytes, check: FrameCheck | None = None) -> None:
        if not header:
            raise ValueError("a fixed framing needs a header to resynchronise on")
        if length <= len(header):
            raise ValueError(
                f"frame length {length} must be longer than the {len(header)}-byte header"
            )
        self.length = length
        self.header = bytes(header)
        self.check = check
        self._buf = bytearray()
        self._skipping = False  # inside a run of garbage already counted
        self._dropped: dict[DropReason, int] = {}
        self._frames = 0

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        buf += data
        header, length, check = self.header, self.length, self.check
        pos = 0
        while True:
            start = buf.find(header, pos)
            if start < 0:
                # Keep a tail that may be the beginning of a header; the rest is garbage.
                keep = _header_prefix_at_end(buf, header)
                if len(buf) - keep > pos:
                    self._skip()
                pos = len(buf) - keep
                break
            if start > pos:
                self._skip()
            if len(buf) - start < length:
                pos = start
                break
            frame = bytes(buf[start : start + length])
            if check is not None and not check(frame):
                self._count(DropReason.CHECKSUM)
                self._skipping = True  # what follows, up to the next header, is this frame
                pos = start + 1
                continue
            out.append(frame)
            self._skipping = False
            pos = start + length
        del buf[:pos]
        self._frames += len(out)
        return out

    def reset(self) -> None:
        """Forget the partial frame (a cut frame counts as ``SYNTAX``)."""
        if self._buf.startswith(self.header):
            self._count(DropReason.SYNTAX)
        self._buf.clear()
        self._skipping = False

    @property
    def dropped(self) -> dict[DropReason, int]:
        return dict(self._dropped)

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _skip(self) -> None:
        if not self._skipping:
            self._count(DropReason.SYNTAX)
            self._skipping = True

    def _count(self, reason: DropReason) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1


def sum16(frame: bytes) -> bool:
    """The Plantower check: the last two bytes are the 16-bit sum of all before, big-endian."""
    return len(frame) > 2 and sum(frame[:-2]) & 0xFFFF == int.from_bytes(frame[-2:], "big")


# -- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FramingKind:
    """A name the config's ``framing:`` takes, with its options (option -> what it takes)."""

    name: str
    summary: str
    options: Mapping[str, str]
    required: tuple[str, ...]
    # The option a scalar beside the name stands for: ``{fixed: 32}`` is ``length: 32``.
    shorthand: str | None
    build: Callable[[Mapping[str, object]], Framer]


CHECKSUMS: Mapping[str, FrameCheck] = {"sum16": sum16}


def build_framer(spec: object) -> Framer:
    """The framer a ``framing:`` value names.

    ``spec`` is a name (``"line"``) or a mapping holding one framing name, whose value is its
    shorthand option, a mapping of options or null, beside which other options may stand:
    ``{fixed: 32, header: "424d"}`` and ``{fixed: {length: 32, header: "424d"}}`` are the
    same. Raises ``ValueError`` that names the bad option and lists the valid ones."""
    if isinstance(spec, str):
        return _build(_kind(spec), {})
    if not isinstance(spec, Mapping):
        raise ValueError(f"framing must be a name or a mapping, got {type(spec).__name__}")
    names = [key for key in spec if key in FRAMINGS]
    if len(names) != 1:
        listed = ", ".join(sorted(FRAMINGS))
        if names:
            raise ValueError(f"framing names more than one kind: {', '.join(names)}")
        keys = ", ".join(str(key) for key in spec) or "nothing"
        raise ValueError(f"framing names no kind (got {keys}); valid: {listed}")
    kind = FRAMINGS[names[0]]
    value = spec[kind.name]
    options: dict[str, object] = {}
    if isinstance(value, Mapping):
        options.update({str(key): item for key, item in value.items()})
    elif value is not None:
        if kind.shorthand is None:
            raise ValueError(f"framing {kind.name} takes options as a mapping, not a value")
        options[kind.shorthand] = value
    for key, item in spec.items():
        if key == kind.name:
            continue
        if key in options:
            raise ValueError(f"framing {kind.name}: option '{key}' is given twice")
        options[str(key)] = item
    return _build(kind, options)


def _build_line(options: Mapping[str, object]) -> Framer:
    return LineFramer(max_line=_positive_int(options.get("max_line", 1024), "line", "max_line"))


def _build_fixed(options: Mapping[str, object]) -> Framer:
    length = _positive_int(options["length"], "fixed", "length")
    header_text = options["header"]
    if not isinstance(header_text, str):
        raise ValueError(
            f"framing fixed: 'header' must be hex digits like \"424d\", got {header_text!r}"
        )
    try:
        header = bytes.fromhex(header_text)
    except ValueError as exc:
        raise ValueError(f"framing fixed: 'header' {header_text!r} is not hex: {exc}") from exc
    check: FrameCheck | None = None
    name = options.get("checksum")
    if name is not None:
        if not isinstance(name, str) or name not in CHECKSUMS:
            valid = ", ".join(sorted(CHECKSUMS))
            raise ValueError(
                f"framing fixed: unknown checksum {name!r}{_did_you_mean(str(name), CHECKSUMS)}; "
                f"valid: {valid}"
            )
        check = CHECKSUMS[name]
    try:
        return FixedFramer(length, header, check)
    except ValueError as exc:
        raise ValueError(f"framing fixed: {exc}") from exc


FRAMINGS: Mapping[str, FramingKind] = {
    kind.name: kind
    for kind in (
        FramingKind(
            name="line",
            summary='text lines ending in "\\n" ("\\r\\n" accepted)',
            options={"max_line": "longest line in bytes (default 1024); longer ones are dropped"},
            required=(),
            shorthand="max_line",
            build=_build_line,
        ),
        FramingKind(
            name="fixed",
            summary="fixed-size binary frames that start with a header",
            options={
                "length": "frame size in bytes, header included",
                "header": 'the bytes every frame starts with, in hex ("424d")',
                "checksum": "a frame check: " + ", ".join(sorted(CHECKSUMS)) + " (default none)",
            },
            required=("length", "header"),
            shorthand="length",
            build=_build_fixed,
        ),
    )
}


# -- private helpers -----------------------------------------------------------------------------


def _certainly_longer(prefix: bytearray, limit: int) -> bool:
    """Whether a line starting with ``prefix`` (no newline yet) must exceed ``limit`` bytes.

    A trailing ``"\\r"`` may still turn out to be half of ``"\\r\\n"``, so it does not count."""
    return len(prefix) - (1 if prefix.endswith(b"\r") else 0) > limit


def _header_prefix_at_end(buf: bytearray, header: bytes) -> int:
    """How many bytes at the end of ``buf`` could be the start of ``header``."""
    for size in range(min(len(header) - 1, len(buf)), 0, -1):
        if buf.endswith(header[:size]):
            return size
    return 0


def _kind(name: str) -> FramingKind:
    kind = FRAMINGS.get(name)
    if kind is None:
        raise ValueError(
            f"unknown framing {name!r}{_did_you_mean(name, FRAMINGS)}; "
            f"valid: {', '.join(sorted(FRAMINGS))}"
        )
    return kind


def _build(kind: FramingKind, options: Mapping[str, object]) -> Framer:
    for option in options:
        if option not in kind.options:
            raise ValueError(
                f"framing {kind.name}: unknown option '{option}'"
                f"{_did_you_mean(option, kind.options)}; valid options: "
                f"{', '.join(kind.options)}"
            )
    for option in kind.required:
        if option not in options:
            raise ValueError(
                f"framing {kind.name}: '{option}' is required ({kind.options[option]})"
            )
    return kind.build(options)


def _positive_int(value: object, kind: str, option: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"framing {kind}: '{option}' must be a positive integer, got {value!r}")
    return value


def _did_you_mean(word: str, candidates: Mapping[str, object]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""

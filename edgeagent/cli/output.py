"""How a command's answer reaches the terminal: as JSON or as text for a person.

A command that shows something returns an ``Output``: the JSON document and a renderer that
turns the same document into lines. ``show`` prints one or the other, depending on ``--json``,
so no command writes its own JSON branch. A rendered line is printed to stdout; a ``Note``
goes to stderr (the human-only remarks such as "no peers" that JSON output leaves out).
``Output.notes`` go to stderr in both modes, after the output.

Commands that print as they go (``journal``) print item by item with ``print_item``; the
answers of ``intent send -`` are always one JSON line each (``json_text``). Everything here
writes to whatever ``sys.stdout``/``sys.stderr`` are at the time of the call, so tests
capture it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Note:
    """A rendered line for stderr: a remark for a person, not part of the answer."""

    text: str


Line = str | Note


@dataclass(frozen=True)
class Output(Generic[T]):
    """What a command shows, and its exit code.

    ``one_line``: the JSON is one compact line (an answer a script reads line by line) rather
    than an indented document. ``ensure_ascii``: non-ASCII characters are escaped in the JSON.
    """

    document: T
    render: Callable[[T], Iterable[Line]]
    code: int = 0
    notes: Sequence[str] = ()
    one_line: bool = False
    ensure_ascii: bool = False


def show(output: Output[Any], *, as_json: bool) -> int:
    """Print ``output`` as JSON or as its rendering; return its exit code."""
    if as_json:
        print(
            json_text(output.document, one_line=output.one_line, ensure_ascii=output.ensure_ascii)
        )
    else:
        for line in output.render(output.document):
            if isinstance(line, Note):
                print(line.text, file=sys.stderr)
            else:
                print(line)
    for note in output.notes:
        print(note, file=sys.stderr)
    return output.code


def print_item(item: T, render: Callable[[T], str], *, as_json: bool) -> None:
    """One item of a stream: a compact JSON line, or its one-line rendering."""
    print(json_text(item, one_line=True) if as_json else render(item))


def json_text(document: Any, *, one_line: bool = False, ensure_ascii: bool = False) -> str:
    """``document`` as JSON: indented by two, or on one line; UTF-8 unless ``ensure_ascii``."""
    return json.dumps(document, indent=None if one_line else 2, ensure_ascii=ensure_ascii)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def use_color() -> bool:
    """Colour only on a terminal, and not when NO_COLOR is set or TERM is dumb."""
    return (
        sys.stdout.isatty()
        and os.environ.get("NO_COLOR") is None
        and os.environ.get("TERM") != "dumb"
    )

"""Domain names as text and as wire labels (pure).

Record names are text without the trailing dot. DNS-SD instance labels may hold any UTF-8,
spaces and even dots (RFC 6763 §4.3), which neither dnslib's string parser (it splits on every
dot and IDNA-encodes non-ASCII) nor ``str.split(".")`` handle. So names use RFC 6763 §4.3
presentation text: a literal dot or backslash inside a label is written ``\\.`` / ``\\\\``,
bytes may be written ``\\DDD`` (also how dnslib prints non-printable bytes), everything else is
the UTF-8 text itself. ``name_to_label``/``label_to_name`` convert between that text and
dnslib's ``DNSLabel``; ``name_key`` is the case-insensitive comparison key (RFC 6762 §16).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from dnslib import DNSLabel

NameKey = tuple[str, ...]


def escape_label(label: str) -> str:
    """One label (e.g. an instance name) as name text: ``"a.b"`` -> ``"a\\.b"``."""
    return _escape_text(label)


def name_to_label(name: str | DNSLabel) -> DNSLabel:
    """Name text (RFC 6763 §4.3 escapes, UTF-8) -> dnslib label with the exact byte labels."""
    if isinstance(name, DNSLabel):
        return name
    return DNSLabel(list(split_name(name)))


def label_to_name(label: DNSLabel | Iterable[bytes]) -> str:
    """dnslib label -> name text without trailing dot, the inverse of ``name_to_label``."""
    parts = label.label if isinstance(label, DNSLabel) else tuple(label)
    return ".".join(_label_text(bytes(part)) for part in parts)


def name_key(name: str | DNSLabel) -> NameKey:
    """Case-insensitive comparison key (RFC 6762 §16) for name text or a dnslib label.

    Accepts our text, dnslib's printed form (``Greenhouse\\0321._http._tcp.local.``) and a
    ``DNSLabel``; all three give the same key for the same wire name.
    """
    if isinstance(name, DNSLabel):
        return tuple(bytes(p).decode("utf-8", "surrogateescape").lower() for p in name.label)
    return _text_key(name)


@functools.lru_cache(maxsize=4096)
def _text_key(name: str) -> NameKey:
    # Names repeat endlessly (every announcement, every cache scan): remember their keys.
    return tuple(p.decode("utf-8", "surrogateescape").lower() for p in split_name(name))


def split_name(name: str) -> tuple[bytes, ...]:
    """Name text -> byte labels, honouring ``\\.``, ``\\\\`` and ``\\DDD`` escapes."""
    if "\\" not in name:  # the common case: no escapes, every dot separates labels
        parts = name.split(".")
        if parts[-1] == "":
            parts.pop()
        return tuple(part.encode("utf-8", "surrogateescape") for part in parts)
    labels: list[bytes] = []
    current = bytearray()
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch == "\\" and i + 1 < n:
            digits = name[i + 1 : i + 4]
            if len(digits) == 3 and digits.isascii() and digits.isdigit() and int(digits) < 256:
                current.append(int(digits))
                i += 4
                continue
            current += name[i + 1].encode("utf-8", "surrogateescape")
            i += 2
            continue
        if ch == ".":
            labels.append(bytes(current))
            current = bytearray()
        else:
            current += ch.encode("utf-8", "surrogateescape")
        i += 1
    if current:
        labels.append(bytes(current))
    return tuple(labels)


def _label_text(raw: bytes) -> str:
    try:
        return _escape_text(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "".join(_escape_text(chr(b)) if 0x20 <= b < 0x7F else f"\\{b:03d}" for b in raw)


def _escape_text(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in "\\.":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    return "".join(out)

"""The fast path: packed replies keyed by the query bytes after the 2-byte ID.

Theory of operation: parsing and packing with dnslib costs about a hundred times what a dict
look-up and a bytes concatenation do (bench/README.md, "Parsers"). Most traffic a stub resolver
sends us repeats the same few questions, so the core stores each reply it built from the name
source's own records or cache (never a live mDNS answer, never a forwarded one) under
``query[2:]`` — the flags, the questions and the whole OPT record, EDNS size included, are part
of the key — and a hit only prepends the new query's ID to the stored ``reply[2:]``.

Freshness, the two rules that keep cached answers honest:

* Record changes: every entry belongs to one ``NameSource.generation``; when the generation
  moves, the whole table is dropped before the next look-up.
* TTLs: an entry lives at most :data:`MAX_AGE` (1 s), and what it stores is a copy of the
  reply with every TTL lowered by that same second (:func:`wire.age_ttls` patches the packed
  bytes; no second pack). Sources report remaining TTLs rounded down, so the real remaining
  TTL during the entry's life is above ``ttl - 1``: a served TTL never exceeds it. Answers
  whose smallest TTL is ≤ 1 s are not cached at all. (The alternative, re-packing entries as
  they age, would let entries live longer but needs per-entry TTL bookkeeping; with a 1 s
  cap a name costs one pack per second under load, which is noise.)

Bounded: at most ``max_entries``; when full, the oldest entry goes (entries live ≤ 1 s, so
insertion order is close to least-recently-used without paying for re-ordering on hits).

The UDP adapter calls :meth:`sync` once per batch of datagrams and after every slow-path
answer, then reads ``entries`` directly instead of calling :meth:`get` (saves a call and a
generation read per query on the hottest line; a name source may compute its generation).
"""

from __future__ import annotations

from collections import OrderedDict

MAX_AGE = 1.0  # seconds an entry may be served; see "TTLs" above
TTL_SHIFT = 1  # seconds subtracted from every TTL in a stored reply


class FastPath:
    """Stored reply tails, valid for one source generation and until their expiry time."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        # key -> (reply tail, expiry time). The object is never replaced, only cleared.
        self.entries: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.generation: int | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def sync(self, generation: int) -> None:
        """Drop every entry if ``generation`` is not the one they were stored under."""
        if generation != self.generation:
            self.entries.clear()
            self.generation = generation

    def get(self, key: bytes, now: float, generation: int) -> bytes | None:
        """The stored ``reply[2:]`` for ``key`` (``query[2:]``), or None."""
        self.sync(generation)
        entry = self.entries.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, key: bytes, reply_tail: bytes, now: float, generation: int) -> None:
        """Store ``reply_tail`` for :data:`MAX_AGE` seconds under ``generation``."""
        self.sync(generation)
        entries = self.entries
        if key in entries:
            del entries[key]
        elif len(entries) >= self.max_entries:
            entries.popitem(last=False)
        entries[key] = (reply_tail, now + MAX_AGE)

    def clear(self) -> None:
        self.entries.clear()


def cacheable_ttl(min_ttl: int | None) -> bool:
    """Whether an answer whose smallest TTL is ``min_ttl`` (None: no records) may be stored."""
    return min_ttl is None or min_ttl > TTL_SHIFT

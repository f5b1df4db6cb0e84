"""The cache of records other hosts sent over mDNS, per interface (pure, no I/O).

Theory of operation
-------------------
The responder feeds every record it receives to ``Cache.insert(now, iface, record)`` and asks
``lookup(now, name, rtype)`` before multicasting a question. Time is always passed in (seconds on
any monotonic clock), so tests drive it directly. The rules:

* TTLs are clamped to ``max_ttl`` (MdnsLite clamps to 75 minutes) so a bogus 68-year TTL cannot
  pin an entry.
* TTL 0 is a goodbye (RFC 6762 §10.1): the record is kept for one more second, then dropped.
* A unique record (cache-flush bit) replaces the other records of the same name, type and class
  on that interface that arrived more than one second earlier (RFC 6762 §10.2); they are given
  one more second rather than deleted, so members of one RRset split across packets survive.
* The cache is bounded: when full, expired entries go first, then the one expiring soonest
  (oldest received on ties).
* ``generation`` increases whenever what ``lookup`` can return changes: a record added, its data
  or cache-flush flag changed, its expiry brought forward (goodbye, flush), or an entry dropped.
  A plain TTL refresh of a record already cached only pushes its expiry later and does not count,
  so a consumer that remembers answers with the TTLs it computed (the DNS bridge's fast path)
  stays correct without being invalidated by every re-announcement.
* Reverse lookups (``5.0.0.10.in-addr.arpa`` PTR) are answered from cached A/AAAA records too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from dnslib import PTR, DNSLabel

from edgeagent.dns.records import Record, RType, address_from_reverse, reverse_name
from edgeagent.mdns.table import NameKey, name_key, name_to_label

# RFC 6762 §10.1 and §10.2: goodbyes and flushed records linger for one second.
_GRACE = 1.0

_EntryKey = tuple[NameKey, int, str]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached record as received on one interface.

    ``record.ttl`` is the TTL as received (after clamping) inside the cache; in the copies that
    ``Cache.entries(now)`` returns it is the remaining TTL at ``now``.
    """

    record: Record
    expires_at: float
    received_at: float
    source: str | None = None  # the responder's address, when the adapter knows it

    def remaining(self, now: float) -> int:
        """Whole seconds left, at least 1 while the entry is live (RFC 6762 §10 TTLs are ints)."""
        return max(1, int(self.expires_at - now))


class Cache:
    """Records seen on the network, per interface, bounded (see the module docstring)."""

    __slots__ = ("_by_iface", "_count", "_sets", "generation", "max_records", "max_ttl")

    def __init__(self, *, max_records: int = 1000, max_ttl: int = 4500) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_ttl < 1:
            raise ValueError("max_ttl must be at least 1 second")
        self.max_records = max_records
        self.max_ttl = max_ttl
        self.generation = 0
        self._by_iface: dict[str, dict[_EntryKey, CacheEntry]] = {}
        # (iface, name, type) -> the entry keys of that record set: a cache-flush record
        # touches only its own set instead of scanning every entry of the interface.
        self._sets: dict[tuple[str, NameKey, int], set[_EntryKey]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def insert(self, now: float, iface: str, record: Record, *, source: str | None = None) -> bool:
        """Store ``record`` received on ``iface``; True when what ``lookup`` returns changed.

        Pseudo-records (OPT, ANY) are ignored.
        """
        if record.rtype in (RType.OPT, RType.ANY):
            return False
        entries = self._by_iface.setdefault(iface, {})
        key = _entry_key(record)
        existing = entries.get(key)
        changed = False

        if record.ttl <= 0:  # RFC 6762 §10.1: a goodbye
            if existing is not None and existing.expires_at > now + _GRACE:
                entries[key] = replace(existing, expires_at=now + _GRACE)
                changed = True
            return self._changed(changed)

        ttl = min(record.ttl, self.max_ttl)
        if record.unique:  # RFC 6762 §10.2: cache-flush
            changed |= self._flush(iface, entries, key, now)

        stored = record.with_ttl(ttl)
        entry = CacheEntry(stored, now + ttl, now, source)
        if existing is None:
            if self._count >= self.max_records:
                self._make_room(now)
                entries = self._by_iface.setdefault(iface, {})  # expiry may have emptied it
            entries[key] = entry
            self._sets.setdefault((iface, key[0], key[1]), set()).add(key)
            self._count += 1
            changed = True
        else:
            changed |= (
                entry.expires_at < existing.expires_at
                or existing.record.unique != record.unique
                # same key, new spelling (names in rdata compare case-insensitively)
                or (
                    record.rtype in _NAMED_RDATA and _spelling(existing.record) != _spelling(record)
                )
            )
            entries[key] = entry
        return self._changed(changed)

    def lookup(
        self, now: float, name: str | DNSLabel, rtype: int, *, synthesize_reverse: bool = False
    ) -> list[Record]:
        """Live records for ``name`` across interfaces, with remaining TTLs, deduplicated.

        ``RType.ANY`` matches every type. With ``synthesize_reverse``, a PTR question for a
        reverse name with no cached PTR is answered from cached A/AAAA records of that address
        (a fallback for when the owner does not answer reverse queries itself).
        """
        key = name_key(name)
        found: dict[tuple[int, str], CacheEntry] = {}
        for entries in self._by_iface.values():
            for (entry_name, entry_type, data), entry in entries.items():
                if (
                    entry_name == key
                    and rtype in (RType.ANY, entry_type)
                    and entry.expires_at > now
                ):
                    _keep_longest(found, (entry_type, data), entry)
        # A reverse PTR the owner sent wins; synthesize from cached addresses only without
        # one (a synthesized answer would also name every alias of that address).
        if (
            synthesize_reverse
            and rtype in (RType.PTR, RType.ANY)
            and not any(t == RType.PTR for t, _ in found)
        ):
            for entry in self._reverse_entries(now, key):
                _keep_longest(found, (RType.PTR, _data_key(entry.record)), entry)
        return [entry.record.with_ttl(entry.remaining(now)) for entry in found.values()]

    def known_answers(
        self, now: float, iface: str, name: str | DNSLabel, rtype: int
    ) -> list[Record]:
        """Records to list as known answers in a question asked on ``iface`` (RFC 6762 §7.1).

        Only those with more than half their TTL left, with the remaining TTL: a responder
        then stays quiet about them, so a repeated browse costs only the news.
        """
        key = name_key(name)
        found = []
        for (entry_name, entry_type, _), entry in self._by_iface.get(iface, {}).items():
            if entry_name != key or rtype not in (RType.ANY, entry_type):
                continue
            left = entry.expires_at - now
            if left > entry.record.ttl / 2:
                found.append(entry.record.with_ttl(int(left)))
        return found

    def has_name(
        self, now: float, name: str | DNSLabel, *, synthesize_reverse: bool = False
    ) -> bool:
        """True when any live record (or, optionally, a synthesizable reverse PTR) has ``name``."""
        key = name_key(name)
        for entries in self._by_iface.values():
            for (entry_name, _, _), entry in entries.items():
                if entry_name == key and entry.expires_at > now:
                    return True
        return synthesize_reverse and bool(self._reverse_entries(now, key))

    def expire(self, now: float) -> int:
        """Drop the entries whose time is up; returns how many went."""
        dropped = 0
        for iface, entries in list(self._by_iface.items()):
            for key in [k for k, e in entries.items() if e.expires_at <= now]:
                del entries[key]
                self._unindex(iface, key)
                dropped += 1
            if not entries:
                del self._by_iface[iface]
        self._count -= dropped
        self._changed(dropped > 0)
        return dropped

    def drop_interface(self, iface: str) -> int:
        """Forget everything seen on ``iface`` (it went down); returns how many went."""
        gone = self._by_iface.pop(iface, {})
        for key in gone:
            self._unindex(iface, key)
        dropped = len(gone)
        self._count -= dropped
        self._changed(dropped > 0)
        return dropped

    def entries(self, now: float) -> dict[str, list[CacheEntry]]:
        """Live entries per interface for ``info --caches``; records carry remaining TTLs.

        Sorted by interface, then name, type and data.
        """
        result: dict[str, list[CacheEntry]] = {}
        for iface in sorted(self._by_iface):
            live = [
                replace(e, record=e.record.with_ttl(e.remaining(now)))
                for k, e in sorted(self._by_iface[iface].items(), key=lambda item: item[0])
                if e.expires_at > now
            ]
            if live:
                result[iface] = live
        return result

    def live_entries(self, now: float) -> dict[str, list[CacheEntry]]:
        """Live entries per interface, unsorted, with TTLs as received: ``entries`` without
        the copies and the sort, for readers that look only at names and data (discovery
        scans the whole cache after every change)."""
        return {
            iface: live
            for iface, entries in self._by_iface.items()
            if (live := [e for e in entries.values() if e.expires_at > now])
        }

    # -- private -----------------------------------------------------------------------------

    def _changed(self, changed: bool) -> bool:
        if changed:
            self.generation += 1
        return changed

    def _flush(
        self, iface: str, entries: dict[_EntryKey, CacheEntry], key: _EntryKey, now: float
    ) -> bool:
        changed = False
        for other_key in self._sets.get((iface, key[0], key[1]), ()):
            other = entries[other_key]
            if (
                other_key != key
                and other.received_at < now - _GRACE
                and other.expires_at > now + _GRACE
            ):
                entries[other_key] = replace(other, expires_at=now + _GRACE)
                changed = True
        return changed

    def _unindex(self, iface: str, key: _EntryKey) -> None:
        slot = (iface, key[0], key[1])
        members = self._sets.get(slot)
        if members is not None:
            members.discard(key)
            if not members:
                del self._sets[slot]

    def _make_room(self, now: float) -> None:
        self.expire(now)
        while self._count >= self.max_records:
            iface, key = min(
                ((iface, key) for iface, entries in self._by_iface.items() for key in entries),
                key=lambda ik: (
                    self._by_iface[ik[0]][ik[1]].expires_at,
                    self._by_iface[ik[0]][ik[1]].received_at,
                ),
            )
            del self._by_iface[iface][key]
            self._unindex(iface, key)
            if not self._by_iface[iface]:
                del self._by_iface[iface]
            self._count -= 1
            self.generation += 1

    def _reverse_entries(self, now: float, key: NameKey) -> list[CacheEntry]:
        """Synthesized PTR entries ``reverse -> host`` for cached addresses matching ``key``."""
        address = address_from_reverse(".".join(key))
        if address is None:
            return []
        wanted = ipaddress.ip_address(address).packed.hex()
        result: list[CacheEntry] = []
        for entries in self._by_iface.values():
            for (_, entry_type, data), entry in entries.items():
                if entry_type not in (RType.A, RType.AAAA) or entry.expires_at <= now:
                    continue
                if data == wanted:
                    host = entry.record.name
                    ptr = Record(
                        reverse_name(address),
                        RType.PTR,
                        entry.record.ttl,
                        PTR(name_to_label(host)),
                        unique=True,
                    )
                    result.append(replace(entry, record=ptr))
        return result


def _entry_key(record: Record) -> _EntryKey:
    return (name_key(record.name), int(record.rtype), _data_key(record))


def _data_key(record: Record) -> str:
    """Identity of the rdata. Names inside it compare case-insensitively (RFC 6762 §16) and by
    their labels, not dnslib's text, which cannot tell a dot inside a label from a separator."""
    data = record.data
    if record.rtype in (RType.PTR, RType.NSEC):
        head = "" if record.rtype == RType.PTR else " ".join(data.rrlist)
        return f"{head}|{_labels_key(data.label)}"
    if record.rtype == RType.SRV:
        return f"{data.priority} {data.weight} {data.port}|{_labels_key(data.target)}"
    if record.rtype == RType.TXT:
        # The strings themselves (dnslib's zone text escapes byte by byte, which at 50 peers
        # was most of the cost of caching a record): length-prefixed, so no two lists clash.
        return "".join(f"{len(s)}:{s.decode('latin-1')}" for s in data.data)
    if record.rtype in (RType.A, RType.AAAA):
        # The address bytes (dnslib's text form of an IPv6 address is costly to build).
        return bytes(data.data).hex()
    return record.data_text


def _spelling(record: Record) -> tuple[bytes, ...]:
    """The exact labels of the name inside PTR/NSEC/SRV rdata (the key ignores case)."""
    data = record.data
    label = data.target if record.rtype == RType.SRV else data.label
    return tuple(label.label)


_NAMED_RDATA = (RType.PTR, RType.NSEC, RType.SRV)


def _labels_key(label: DNSLabel) -> str:
    return "\x00".join(name_key(label))


def _keep_longest(
    found: dict[tuple[int, str], CacheEntry], key: tuple[int, str], entry: CacheEntry
) -> None:
    current = found.get(key)
    if current is None or entry.expires_at > current.expires_at:
        found[key] = entry

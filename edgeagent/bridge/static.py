"""A NameSource over a fixed record set: for tests, the benchmark and static host entries.

Reverse (PTR) records are derived from the A/AAAA records, the way the agent derives them
from its own and cached addresses. ``live`` records stand for what other hosts would answer
to a live mDNS query; with ``learn=True`` an answered live query moves them into the table
and bumps ``generation``, like the agent's cache does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from edgeagent.bridge.core import LookupResult
from edgeagent.dns.records import Record, RType, normalize_name, ptr_record, reverse_name


class StaticNameSource:
    def __init__(
        self,
        records: Iterable[Record] = (),
        *,
        live: Iterable[Record] = (),
        live_delay: float = 0.0,
        learn: bool = False,
    ) -> None:
        self.generation = 0
        self.live_delay = live_delay
        self.learn = learn
        self.live_queries: list[tuple[str, int]] = []
        self._table: dict[str, list[Record]] = {}
        self._live: dict[str, list[Record]] = _index(live)
        self.set_records(records)

    def set_records(self, records: Iterable[Record]) -> None:
        """Replace the table (bumps ``generation``)."""
        self._table = _index(_with_reverse(list(records)))
        self.generation += 1

    def add(self, records: Iterable[Record]) -> None:
        current = [r for rs in self._table.values() for r in rs if r.rtype != RType.PTR]
        ptrs = [r for rs in self._table.values() for r in rs if r.rtype == RType.PTR]
        self._table = _index(_with_reverse(current + list(records)) + ptrs)
        self.generation += 1

    def lookup(self, name: str, rtype: int, now: float) -> LookupResult:
        return _select(self._table.get(normalize_name(name)), rtype)

    # The timeout is the mDNS engine's to apply (it stops retransmitting), not a deadline
    # for asyncio.timeout around the call; the server adds that guard itself.
    async def query(self, name: str, rtype: int, timeout: float) -> LookupResult:  # noqa: ASYNC109
        key = normalize_name(name)
        self.live_queries.append((key, rtype))
        await asyncio.sleep(min(self.live_delay, timeout))
        if self.live_delay > timeout:
            return LookupResult.unknown()
        found = self._live.get(key)
        result = _select(found, rtype)
        if self.learn and found:
            self.add(found)
        return result


def _index(records: Iterable[Record]) -> dict[str, list[Record]]:
    table: dict[str, list[Record]] = {}
    for record in records:
        table.setdefault(normalize_name(record.name), []).append(record)
    return table


def _with_reverse(records: list[Record]) -> list[Record]:
    derived = [
        ptr_record(reverse_name(r.data_text), normalize_name(r.name), r.ttl, unique=True)
        for r in records
        if r.rtype in (RType.A, RType.AAAA)
    ]
    return records + derived


def _select(records: list[Record] | None, rtype: int) -> LookupResult:
    if records is None:
        return LookupResult.unknown()
    if rtype == RType.ANY:
        return LookupResult.found(records)
    matches = [r for r in records if r.rtype == rtype]
    return LookupResult.found(matches) if matches else LookupResult.nodata()

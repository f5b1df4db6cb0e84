"""The DNS bridge's view of ``.local``: our own records, then the cache, then the LAN.

``AgentNames`` implements the bridge's ``NameSource`` over the running ``MdnsService``.
Unique names we own (our hosts, our service instances, reverse names of our addresses) are
answered from the record table alone: we are authoritative for them. Shared names (service
type PTRs such as ``_ssh._tcp.local``) merge our records with what peers told us; when the
cache has nothing from peers yet, the bridge asks the LAN live before answering.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from edgeagent.bridge.core import LookupResult
from edgeagent.dns.records import Record, address_from_reverse
from edgeagent.mdns.transport import MdnsService
from edgeagent.net.model import InterfaceInfo


class AgentNames:
    def __init__(self, mdns: MdnsService) -> None:
        self._mdns = mdns
        self._generation = 0
        self._marker: tuple[int, int, tuple[InterfaceInfo, ...]] = (0, -1, ())

    @property
    def generation(self) -> int:
        """Changes whenever the table, the interfaces or the cache change (fast-path key)."""
        mdns = self._mdns
        marker = (id(mdns.table), mdns.cache.generation, tuple(mdns.interfaces))
        if marker != self._marker:
            self._marker = marker
            self._generation += 1
        return self._generation

    def lookup(self, name: str, rtype: int, now: float) -> LookupResult:
        mdns = self._mdns
        table = mdns.table
        own = table.lookup_any_interface(name, rtype, mdns.interfaces)
        if table.owns(name):
            return LookupResult.found(own) if own else LookupResult.nodata()
        if own and address_from_reverse(name) is not None:
            return LookupResult.found(own)
        cached = mdns.cache.lookup(now, name, rtype)
        if cached:
            return LookupResult.found(_merge(own, cached))
        if mdns.cache.has_name(now, name):
            return LookupResult.found(own) if own else LookupResult.nodata()
        # Nothing from peers yet: let the bridge ask the LAN (``query``) before answering.
        return LookupResult.unknown()

    async def query(self, name: str, rtype: int, timeout: float) -> LookupResult:  # noqa: ASYNC109
        mdns = self._mdns
        own = mdns.table.lookup_any_interface(name, rtype, mdns.interfaces)
        found = await mdns.resolve(name, rtype, timeout, include_own=False)
        records = _merge(own, found)
        if not records and address_from_reverse(name) is not None:
            # Nobody answered for that address: name it after what its owner advertised.
            now = time.monotonic()
            records = mdns.cache.lookup(now, name, rtype, synthesize_reverse=True)
        return LookupResult.found(records) if records else LookupResult.unknown()


def _merge(first: Iterable[Record], second: Iterable[Record]) -> list[Record]:
    seen: set[tuple[str, int, str]] = set()
    out: list[Record] = []
    for record in (*first, *second):
        if record.key not in seen:
            seen.add(record.key)
            out.append(record)
    return out

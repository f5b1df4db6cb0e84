"""What discovery strategies share: the candidate, the strategy protocol, the context.

Strategy modules (``mdns``, ``static``, ``dns``, and plugins) import this module, never the
package itself or the strategy registry (``edgeagent.mesh.discovery.registry``), which imports
the strategies. So the layers run one way: base <- strategies <- registry <- the package.

A strategy only *finds* devices; it never decides membership. It reports a :class:`Candidate`
(addresses and port, and the device id when the source knows it) whenever one is seen or
changes, and again every so often so that a restarted peer is found again. Everything a
strategy may use from the agent comes in a :class:`DiscoveryContext` (the composition root
builds it): the running ``MdnsService``, a DNS resolver, this device's id and a clock.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from edgeagent.dns.records import Record
from edgeagent.errors import EdgeAgentError
from edgeagent.mdns.cache import CacheEntry
from edgeagent.net.model import InterfaceInfo


@dataclass(frozen=True, slots=True)
class Candidate:
    """A device that may be a peer of ``cluster``, as one discovery source sees it.

    ``addresses`` are IP texts, IPv4 first; an IPv6 link-local address carries its zone
    (``fe80::1%eth0``). ``device_id`` is None when the source cannot know it (static, dns).
    ``proto`` is the mesh protocol version the peer announced (mDNS TXT ``proto``), if any.
    ``observe_only`` is True when the peer said it has no key for the cluster (TXT ``observe``).
    """

    cluster: str
    device_id: str | None
    hostname: str | None
    addresses: tuple[str, ...]
    port: int
    source: str
    proto: int | None = None
    observe_only: bool = False


ReportCandidate = Callable[[Candidate], None]
"""How a strategy hands a candidate to the mesh service (the argument of ``run``)."""


class DiscoveryStrategy(Protocol):
    """Finds candidates for one cluster."""

    async def run(self, report: ReportCandidate) -> None:
        """Report candidates as they are seen or change, until cancelled. Never returns early
        on a transient failure (a missing answer, a socket error): it logs and tries again."""
        ...


Loop = Callable[[], Awaitable[None]]


@runtime_checkable
class LoopingStrategy(DiscoveryStrategy, Protocol):
    """A strategy whose work is several loops (``mdns``: watching the cache, asking the LAN).

    ``loops(report)`` names each loop; the cluster's link runs each as a supervised task
    ``edgeagent[mesh:<cluster>].<name>`` (restarted with backoff if it fails), which is what
    ``run(report)`` does on its own for a caller without a task owner.
    """

    def loops(self, report: ReportCandidate) -> Mapping[str, Loop]: ...


def strategy_loops(strategy: DiscoveryStrategy, report: ReportCandidate) -> Mapping[str, Loop]:
    """The loops to supervise for ``strategy``: its own ``loops``, else one, ``discovery``."""
    if isinstance(strategy, LoopingStrategy):
        return strategy.loops(report)
    return {"discovery": functools.partial(strategy.run, report)}


class CacheView(Protocol):
    """The mDNS cache as discovery reads it (``edgeagent.mdns.cache.Cache``)."""

    @property
    def generation(self) -> int: ...

    def entries(self, now: float) -> dict[str, list[CacheEntry]]: ...

    def live_entries(self, now: float) -> dict[str, list[CacheEntry]]: ...


class MdnsBrowser(Protocol):
    """What the mdns strategy needs from ``edgeagent.mdns.transport.MdnsService``."""

    @property
    def cache(self) -> CacheView: ...

    @property
    def interfaces(self) -> list[InterfaceInfo]: ...

    async def resolve(
        self,
        name: str,
        rtype: int,
        timeout: float | None = None,  # noqa: ASYNC109 - mirrors MdnsService.resolve
        *,
        include_own: bool = True,
    ) -> list[Record]: ...

    def query(
        self,
        name: str,
        rtype: int,
        *,
        unicast: bool = False,
        families: Sequence[int] = (4, 6),
        suppress_duplicate: bool = False,
    ) -> None: ...

    async def wait_interfaces(self) -> None: ...

    async def wait_cache_change(
        self,
        generation: int,
        timeout: float | None = None,  # noqa: ASYNC109 - mirrors MdnsService.wait_cache_change
    ) -> int: ...


class Resolver(Protocol):
    """A unicast DNS resolver (``edgeagent.mesh.discovery.dns.SystemResolver``)."""

    async def query(self, name: str, rtype: int) -> list[Record]:
        """Answer records of type ``rtype`` for ``name`` (after CNAMEs); ``[]`` for NXDOMAIN
        or no data. Raises ``DiscoveryError`` when no server answered."""
        ...


@dataclass(frozen=True, slots=True)
class DiscoveryContext:
    """What strategies may use. ``self_id`` is this device's id (never reported as a
    candidate); ``mdns`` None: the mdns strategy cannot run (mDNS is off); ``resolver`` None:
    the dns and static strategies use the system's nameservers (/etc/resolv.conf)."""

    self_id: str
    mdns: MdnsBrowser | None = None
    resolver: Resolver | None = None
    clock: Callable[[], float] = field(default=time.monotonic)


class DiscoveryError(EdgeAgentError):
    """A strategy cannot be loaded or run (unknown name, broken plugin, a resolver failure)."""


class Deduplicator:
    """Reports a candidate when it is new or changed, and every ``refresh`` seconds anyway.

    Keeps strategies from flooding the service with identical reports while still
    re-reporting peers regularly (a restarted peer is found again). Pure: takes ``now``.
    """

    def __init__(self, refresh: float) -> None:
        self.refresh = refresh
        self._last: dict[object, tuple[Candidate, float]] = {}

    def due(self, now: float, key: object, candidate: Candidate) -> bool:
        """Whether to report ``candidate`` (under ``key``) now; records it when so."""
        last = self._last.get(key)
        if last is not None and last[0] == candidate and now - last[1] < self.refresh:
            return False
        self._last[key] = (candidate, now)
        return True

    def forget_except(self, keys: set[object]) -> None:
        """Drop the memory of keys not seen any more (a later sighting counts as new)."""
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]

"""Discovery: how a cluster finds candidate peers (adapters; see docs/mesh.md).

A strategy only *finds* devices; it never decides membership. It reports a :class:`Candidate`
(addresses and port, and the device id when the source knows it) whenever one is seen or
changes, and again every so often so that a restarted peer is found again; the mesh service
feeds candidates to the SWIM core (keyed clusters) or lists them as "seen" (observe-only).

Built-in strategies: ``mdns`` (browse ``_edgeagent._tcp`` with the agent's own mDNS stack),
``static`` (configured ``host:port`` peers) and ``dns`` (SRV or A/AAAA, polled). Others are
Python entry points in the group ``edgeagent.discovery`` whose value is a factory
``(cluster: ClusterConfig, ctx: DiscoveryContext) -> DiscoveryStrategy``; a package declares
one as::

    [project.entry-points."edgeagent.discovery"]
    consul = "mypkg.discovery:ConsulDiscovery"

Everything a strategy may use from the agent comes in a :class:`DiscoveryContext` (the
composition root builds it): the running ``MdnsService``, a DNS resolver, this device's id and
a clock. Strategies run as one named task per cluster until cancelled.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edgeagent.config.model import BUILTIN_STRATEGIES, DISCOVERY_ENTRY_POINT_GROUP, ClusterConfig
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


Report = Callable[[Candidate], None]


class DiscoveryStrategy(Protocol):
    """Finds candidates for one cluster."""

    async def run(self, report: Report) -> None:
        """Report candidates as they are seen or change, until cancelled. Never returns early
        on a transient failure (a missing answer, a socket error): it logs and tries again."""
        ...


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


StrategyFactory = Callable[[ClusterConfig, DiscoveryContext], DiscoveryStrategy]


def load_strategy(cluster: ClusterConfig, ctx: DiscoveryContext) -> DiscoveryStrategy:
    """The discovery strategy of ``cluster``: a built-in, else an ``edgeagent.discovery`` entry
    point's factory called with ``(cluster, ctx)``. Raises ``DiscoveryError`` saying why one
    cannot be loaded, with the plugin's exception as ``__cause__``."""
    if cluster.strategy in BUILTIN_STRATEGIES:
        return _builtin(cluster.strategy)(cluster, ctx)
    found = importlib.metadata.entry_points(
        group=DISCOVERY_ENTRY_POINT_GROUP, name=cluster.strategy
    )
    if not found:
        installed = sorted(
            ep.name for ep in importlib.metadata.entry_points(group=DISCOVERY_ENTRY_POINT_GROUP)
        )
        raise DiscoveryError(
            f"cluster {cluster.name!r}: no discovery strategy {cluster.strategy!r}: built in are "
            f"{', '.join(BUILTIN_STRATEGIES)}; installed '{DISCOVERY_ENTRY_POINT_GROUP}' entry "
            f"points: {', '.join(installed) or 'none'}"
        )
    entry_point = next(iter(found))
    where = f"entry point {entry_point.name!r} = {entry_point.value!r}"
    try:
        factory = entry_point.load()
    except Exception as exc:
        raise DiscoveryError(
            f"cluster {cluster.name!r}: cannot load discovery {where}: {exc!r}"
        ) from exc
    if not callable(factory):
        raise DiscoveryError(f"cluster {cluster.name!r}: discovery {where} is not callable")
    try:
        strategy = factory(cluster, ctx)
    except Exception as exc:
        raise DiscoveryError(
            f"cluster {cluster.name!r}: discovery {where} failed to start: {exc!r}"
        ) from exc
    if not callable(getattr(strategy, "run", None)):
        raise DiscoveryError(
            f"cluster {cluster.name!r}: discovery {where} returned {type(strategy).__name__}, "
            "which has no run(report) method"
        )
    result: DiscoveryStrategy = strategy
    return result


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


def _builtin(name: str) -> StrategyFactory:
    # Imported here, not at the top: the strategy modules import this package's types.
    if name == "mdns":
        from edgeagent.mesh.discovery.mdns import MdnsDiscovery  # noqa: PLC0415

        return MdnsDiscovery
    if name == "static":
        from edgeagent.mesh.discovery.static import StaticDiscovery  # noqa: PLC0415

        return StaticDiscovery
    from edgeagent.mesh.discovery.dns import DnsDiscovery  # noqa: PLC0415

    return DnsDiscovery

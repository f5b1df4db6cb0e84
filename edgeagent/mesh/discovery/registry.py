"""The discovery strategy registry: built-in strategies by name, plugins by entry point.

Built-in strategies: ``mdns`` (browse ``_edgeagent._tcp`` with the agent's own mDNS stack),
``static`` (configured ``host:port`` peers) and ``dns`` (SRV or A/AAAA, polled). Others are
Python entry points in the group ``edgeagent.discovery`` whose value is a factory
``(cluster: ClusterConfig, ctx: DiscoveryContext) -> DiscoveryStrategy``; a package declares
one as::

    [project.entry-points."edgeagent.discovery"]
    consul = "mypkg.discovery:ConsulDiscovery"

This module sits above the strategies (it imports them); they import only
``edgeagent.mesh.discovery.base``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping

from edgeagent.config.model import BUILTIN_STRATEGIES, DISCOVERY_ENTRY_POINT_GROUP, ClusterConfig
from edgeagent.mesh.discovery.base import DiscoveryContext, DiscoveryError, DiscoveryStrategy
from edgeagent.mesh.discovery.dns import DnsDiscovery
from edgeagent.mesh.discovery.mdns import MdnsDiscovery
from edgeagent.mesh.discovery.static import StaticDiscovery

StrategyFactory = Callable[[ClusterConfig, DiscoveryContext], DiscoveryStrategy]

BUILTIN: Mapping[str, StrategyFactory] = {
    "mdns": MdnsDiscovery,
    "static": StaticDiscovery,
    "dns": DnsDiscovery,
}


def load_strategy(cluster: ClusterConfig, ctx: DiscoveryContext) -> DiscoveryStrategy:
    """The discovery strategy of ``cluster``: a built-in, else an ``edgeagent.discovery`` entry
    point's factory called with ``(cluster, ctx)``. Raises ``DiscoveryError`` saying why one
    cannot be loaded, with the plugin's exception as ``__cause__``."""
    builtin = BUILTIN.get(cluster.strategy)
    if builtin is not None:
        return builtin(cluster, ctx)
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

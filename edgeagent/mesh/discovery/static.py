"""The ``static`` discovery strategy: the configured ``peers``, reported again and again.

Each peer (``host:port``, ``[v6]:port``; the config validator fills in the port) is reported
at start and again every ``refresh`` seconds (30 s), so a peer that restarted, or was declared
dead while away, is found again without anyone configuring anything. A peer given by name is
looked up each round: ``.local`` names through the agent's mDNS stack, others through the
DNS resolver; a name that does not resolve is logged once and tried again next round.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from edgeagent.config.model import ClusterConfig
from edgeagent.dns.records import RType
from edgeagent.mesh.discovery.base import (
    Candidate,
    DiscoveryContext,
    DiscoveryError,
    ReportCandidate,
    Resolver,
)
from edgeagent.mesh.discovery.dns import SystemResolver
from edgeagent.net.address import parse_peer_address

log = logging.getLogger("edgeagent.mesh.discovery")

SOURCE = "static"


class StaticDiscovery:
    """The ``static`` strategy for one cluster."""

    def __init__(
        self, cluster: ClusterConfig, ctx: DiscoveryContext, *, refresh: float = 30.0
    ) -> None:
        self.cluster = cluster
        self.refresh = refresh
        self._ctx = ctx
        self._resolver: Resolver | None = ctx.resolver
        self._peers = [parse_peer_address(peer, cluster.port) for peer in cluster.peers]
        self._unresolved: set[str] = set()

    async def run(self, report: ReportCandidate) -> None:
        while True:
            for candidate in await self.candidates():
                report(candidate)
            await asyncio.sleep(self.refresh)

    async def candidates(self) -> list[Candidate]:
        """One round: every peer with its addresses (names looked up now)."""
        found: list[Candidate] = []
        for host, port in self._peers:
            addresses = await self._addresses(host)
            if addresses:
                found.append(
                    Candidate(
                        cluster=self.cluster.name,
                        device_id=None,
                        hostname=None if _is_ip(host) else host,
                        addresses=addresses,
                        port=port,
                        source=SOURCE,
                    )
                )
        return found

    async def _addresses(self, host: str) -> tuple[str, ...]:
        if _is_ip(host):
            return (host,)
        try:
            if host.endswith(".local") and self._ctx.mdns is not None:
                records = [
                    record
                    for rtype in (RType.A, RType.AAAA)
                    for record in await self._ctx.mdns.resolve(host, rtype, include_own=False)
                ]
            else:
                resolver = self._resolver
                if resolver is None:
                    resolver = self._resolver = SystemResolver.from_system()
                records = [
                    record
                    for rtype in (RType.A, RType.AAAA)
                    for record in await resolver.query(host, rtype)
                ]
        except (DiscoveryError, OSError) as exc:
            self._note_unresolved(host, repr(exc))
            return ()
        addresses = tuple(dict.fromkeys(str(r.data) for r in records))
        if not addresses:
            self._note_unresolved(host, "no A or AAAA records")
        else:
            self._unresolved.discard(host)
        return addresses

    def _note_unresolved(self, host: str, reason: str) -> None:
        # Once at WARNING, then at DEBUG until it resolves again.
        level = logging.DEBUG if host in self._unresolved else logging.WARNING
        self._unresolved.add(host)
        log.log(
            level, "mesh %s: static peer %s does not resolve: %s", self.cluster.name, host, reason
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True

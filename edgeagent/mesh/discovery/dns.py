"""The ``dns`` discovery strategy: SRV (or A/AAAA) records of ``dns_name``, polled.

Every ``dns_interval`` (5 s, like libcluster's ``DNSPoll``) the strategy asks for the SRV
records of ``dns_name``. Each SRV target (priority order; a target of ``.`` means "no service
here", RFC 2782) becomes a candidate with the SRV's port and the target's A and AAAA
addresses. Without SRV records, ``dns_name`` is read as a host name: each of its A/AAAA
addresses is a candidate on the cluster's port (one address per device, as a headless
Kubernetes service or a round-robin name lists them). New or changed candidates are reported
at once, unchanged ones every ``refresh`` seconds.

The resolver (:class:`SystemResolver`) is unicast DNS built from dnslib messages and the DNS
bridge's ``Forwarder`` (random ID and source port, the reply must match our question (RFC 5452),
TCP retry on truncation), sent to the ``nameserver`` lines of /etc/resolv.conf in order. Not
``loop.getaddrinfo``: it cannot ask for SRV, and on a device whose resolver is the agent's own
DNS bridge it would give the same answers anyway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

from dnslib import EDNS0, QTYPE, RCODE, DNSError, DNSRecord

from edgeagent.bridge.upstream import Forwarder, parse_upstream
from edgeagent.config.model import ClusterConfig
from edgeagent.dns.names import label_to_name
from edgeagent.dns.records import Record, RType
from edgeagent.mesh.discovery.base import (
    Candidate,
    Deduplicator,
    DiscoveryContext,
    DiscoveryError,
    ReportCandidate,
    Resolver,
)
from edgeagent.net.resolv import RESOLV_CONF, parse_resolv_conf

log = logging.getLogger("edgeagent.mesh.discovery")

SOURCE = "dns"
EDNS_PAYLOAD = 1232  # DNS flag day 2020, as the bridge advertises


class SystemResolver:
    """Unicast DNS questions to ``nameservers`` (``"ip"``, ``"ip:port"``, ``"[v6]:port"``)."""

    def __init__(self, nameservers: Sequence[str], *, timeout: float = 2.0) -> None:
        usable: list[str] = []
        for server in nameservers:
            try:
                parse_upstream(server)
            except ValueError:
                continue  # e.g. a link-local server with a %zone: not supported here
            usable.append(server)
        self.nameservers = tuple(usable)
        self._forwarder = Forwarder(usable, timeout)

    @classmethod
    def from_system(
        cls, resolv_conf: Path = RESOLV_CONF, *, timeout: float = 2.0
    ) -> SystemResolver:
        """The ``nameserver`` lines of ``resolv_conf`` (a small read; done once per strategy)."""
        try:
            text = resolv_conf.read_text()
        except OSError:
            text = ""
        return cls(parse_resolv_conf(text), timeout=timeout)

    async def query(self, name: str, rtype: int) -> list[Record]:
        """Answers of type ``rtype`` for ``name``; ``[]`` for NXDOMAIN or no data."""
        if not self.nameservers:
            raise DiscoveryError(f"no usable nameserver to ask for {name}")
        question = DNSRecord.question(name, QTYPE[rtype])
        question.header.rd = 1
        question.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
        wire = await self._forwarder.forward(question.pack())
        if wire is None:
            raise DiscoveryError(
                f"no nameserver answered for {name} ({', '.join(self.nameservers)})"
            )
        try:
            reply = DNSRecord.parse(wire)
        except DNSError as exc:
            raise DiscoveryError(f"malformed DNS reply for {name}: {exc}") from exc
        rcode = reply.header.rcode
        if rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
            raise DiscoveryError(f"DNS error {RCODE.get(rcode)} for {name}")
        return [Record.from_rr(rr) for rr in reply.rr if rr.rtype == rtype]


class DnsDiscovery:
    """The ``dns`` strategy for one cluster (see the module docstring)."""

    def __init__(
        self, cluster: ClusterConfig, ctx: DiscoveryContext, *, refresh: float = 30.0
    ) -> None:
        if cluster.dns_name is None:
            raise DiscoveryError(f"cluster {cluster.name!r}: strategy dns needs dns_name")
        self.cluster = cluster
        self.dns_name: str = cluster.dns_name
        self._resolver: Resolver | None = ctx.resolver
        self._clock = ctx.clock
        self._dedup = Deduplicator(refresh)
        self._failing = False

    async def run(self, report: ReportCandidate) -> None:
        while True:
            await self.poll(report)
            await asyncio.sleep(self.cluster.dns_interval)

    async def poll(self, report: ReportCandidate) -> None:
        """One round: look up, report what is new, changed or due; log failures once."""
        try:
            found = await self.candidates()
        except DiscoveryError as exc:
            level = logging.DEBUG if self._failing else logging.WARNING
            self._failing = True
            log.log(level, "mesh %s: dns discovery: %s", self.cluster.name, exc)
            return
        self._failing = False
        now = self._clock()
        for candidate in found:
            key = (candidate.hostname, candidate.addresses, candidate.port)
            if self._dedup.due(now, key, candidate):
                report(candidate)
        self._dedup.forget_except({(c.hostname, c.addresses, c.port) for c in found})

    async def candidates(self) -> list[Candidate]:
        resolver = self._resolver
        if resolver is None:
            resolver = self._resolver = SystemResolver.from_system()
        found: list[Candidate] = []
        srv = sorted(
            (r.data for r in await resolver.query(self.dns_name, RType.SRV)),
            key=lambda d: (d.priority, -d.weight, str(d.target)),
        )
        for data in srv:
            target = label_to_name(data.target)
            if target in ("", "."):
                continue  # RFC 2782: "." = the service is decidedly not available here
            addresses = await _addresses_of(resolver, target)
            if addresses:
                found.append(
                    Candidate(
                        cluster=self.cluster.name,
                        device_id=None,
                        hostname=target,
                        addresses=addresses,
                        port=int(data.port),
                        source=SOURCE,
                    )
                )
        if srv:
            return found
        for address in await _addresses_of(resolver, self.dns_name):
            found.append(
                Candidate(
                    cluster=self.cluster.name,
                    device_id=None,
                    hostname=None,
                    addresses=(address,),
                    port=self.cluster.port,
                    source=SOURCE,
                )
            )
        return found


async def _addresses_of(resolver: Resolver, name: str) -> tuple[str, ...]:
    """A then AAAA addresses of ``name``, deduplicated, in answer order."""
    found: dict[str, None] = {}
    for rtype in (RType.A, RType.AAAA):
        for record in await resolver.query(name, rtype):
            try:
                found[str(ipaddress.ip_address(str(record.data)))] = None
            except ValueError:
                continue
    return tuple(found)

"""The ``mdns`` discovery strategy: browse ``_edgeagent._tcp.local`` with the agent's mDNS stack.

Theory of operation
-------------------
Every agent advertises one ``_edgeagent._tcp`` service whose TXT record (built by
:func:`agent_txt`) carries ``id=<device id>``, ``version=``, ``proto=1`` and
``clusters=<name>:<port>,...``, plus ``observe=<name>,...`` for the clusters it holds no key for
(observe-only: keyed peers list it as seen with that reason and do not try to join it). Browsing
is reading that service from the cache of our own ``MdnsService`` (one mDNS stack per process:
python-zeroconf would be a second responder on 5353). The cache is kept per interface, and a
peer answers on each link with that link's addresses, so we learn each peer's address *on the
interface we share with it*; Serf's mDNS discovery (hashicorp/mdns) takes whatever address the
first answer carried.

Two loops run for each cluster, each supervised by the cluster's link (``loops``; a loop that
fails is restarted with backoff):

* *watch* (``edgeagent[mesh:<cluster>].discovery``): every ``poll_interval`` it compares the
  cache generation; when it changed it turns the cache into candidates (:func:`browse`) and
  reports the new or changed ones. Announcements of a starting peer land in the cache unasked
  (RFC 6762 §8.3), so a new peer is reported within one poll of its first announcement. Every
  candidate is reported again every ``refresh`` seconds.
* *query* (``edgeagent[mesh:<cluster>].mdns-query``): asks the LAN for the PTR records of the
  service at start (asking for unicast answers, QU: RFC 6762 §5.4) and then, with known
  answers, after 1 s, 2 s, 4 s ... up to ``max_backoff`` (RFC 6762 §5.2),
  starting over at 1 s when the set of interfaces changes (a new link may hold new peers). It
  also asks for the pieces that are missing (an instance's SRV/TXT, a target's addresses).

Parsing (:func:`browse`, :func:`parse_txt`, :func:`agent_txt`) is pure and unit-tested with a
fake cache; the loops are thin.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgeagent.config.model import ClusterConfig, InterfacesConfig
from edgeagent.dns.names import label_to_name, name_key
from edgeagent.dns.records import Record, RType
from edgeagent.mdns.cache import CacheEntry
from edgeagent.mesh.discovery.base import (
    Candidate,
    Deduplicator,
    DiscoveryContext,
    DiscoveryError,
    Loop,
    MdnsBrowser,
    ReportCandidate,
)
from edgeagent.net.model import interface_selected
from edgeagent.resource import TaskOwner

log = logging.getLogger("edgeagent.mesh.discovery")

AGENT_SERVICE = "_edgeagent._tcp.local"
#: The mesh protocol version announced in TXT ``proto`` (frames start with ``EAM1``).
MESH_PROTO = 1
SOURCE = "mdns"


def agent_txt(device_id: str, version: str, clusters: Sequence[ClusterConfig]) -> dict[str, str]:
    """The TXT of the agent's ``_edgeagent._tcp`` service (``device.build_table`` uses it).

    ``clusters`` are those this device takes part in (observe-only ones included, so that
    their peers list it as seen); the config validator keeps ``clusters=`` within 255 bytes.
    """
    txt = {"id": device_id, "version": version, "proto": str(MESH_PROTO)}
    if clusters:
        txt["clusters"] = ",".join(f"{c.name}:{c.port}" for c in clusters)
    observing = [c.name for c in clusters if c.key is None]
    if observing:
        # Clusters we hold no key for: keyed peers list us as seen and never dial us. The
        # string is a subset of clusters=, so it fits the same 255 bytes.
        txt["observe"] = ",".join(observing)
    return txt


def parse_txt(strings: Sequence[bytes]) -> dict[str, str]:
    """TXT strings as a dict: keys lower-cased, the first of a repeated key wins, a key without
    ``=`` maps to ``""`` (RFC 6763 §6.4, §6.5); undecodable strings are skipped."""
    result: dict[str, str] = {}
    for raw in strings:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            continue
        key, _, value = text.partition("=")
        if key:
            result.setdefault(key.lower(), value)
    return result


def parse_cluster_ports(text: str) -> dict[str, int]:
    """``"a:4370,b:4371"`` -> ``{"a": 4370, "b": 4371}``; malformed items are skipped."""
    result: dict[str, int] = {}
    for item in text.split(","):
        name, _, port = item.strip().rpartition(":")
        if name and port.isdigit() and 0 < int(port) < 65536:
            result.setdefault(name, int(port))
    return result


@dataclass(frozen=True, slots=True)
class Sighting:
    """One agent instance found in the cache, keyed for de-duplication."""

    key: str
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class BrowseResult:
    """Candidates for the cluster and the (name, type) pairs still missing from the cache."""

    sightings: tuple[Sighting, ...] = ()
    missing: tuple[tuple[str, int], ...] = field(default=())


def browse(
    entries: Mapping[str, Sequence[CacheEntry]],
    *,
    cluster: str,
    self_id: str,
    interfaces: InterfacesConfig = InterfacesConfig(),  # noqa: B008 - frozen, shared safely
) -> BrowseResult:
    """Agents of ``cluster`` in the cache ``entries`` (``Cache.entries(now)``): pure.

    Only records received on interfaces selected by ``interfaces`` count; an instance counts
    when its TXT names ``cluster`` (the port comes from there), its id is not ``self_id`` and
    its SRV target has at least one address. Addresses come IPv4 first, link-local IPv6 with
    the zone of the interface it was seen on.
    """
    index: dict[tuple[tuple[str, ...], int], list[tuple[str, Record]]] = {}
    for iface, iface_entries in entries.items():
        if not interface_selected(iface, interfaces.include, interfaces.exclude):
            continue
        for entry in iface_entries:
            record = entry.record
            index.setdefault((name_key(record.name), record.rtype), []).append((iface, record))

    def records(name: str, rtype: int) -> list[tuple[str, Record]]:
        return index.get((name_key(name), rtype), [])

    sightings: dict[str, Sighting] = {}
    missing: list[tuple[str, int]] = []
    instances = dict.fromkeys(
        label_to_name(record.data.label) for _, record in records(AGENT_SERVICE, RType.PTR)
    )
    for instance in instances:
        srv = sorted(
            (r.data for _, r in records(instance, RType.SRV)),
            key=lambda d: (d.priority, -d.weight),
        )
        txt_records = records(instance, RType.TXT)
        if not txt_records:
            missing.append((instance, RType.TXT))
        if not srv:
            missing.append((instance, RType.SRV))
        if not srv or not txt_records:
            continue
        txt = parse_txt(txt_records[0][1].data.data)
        device_id = txt.get("id") or None
        if device_id == self_id:
            continue
        port = parse_cluster_ports(txt.get("clusters", "")).get(cluster)
        if port is None:
            continue  # an agent, but not of this cluster (or without a mesh)
        target = label_to_name(srv[0].target)
        addresses = _addresses(records(target, RType.A) + records(target, RType.AAAA))
        if not addresses:
            missing.extend(((target, RType.A), (target, RType.AAAA)))
            continue
        proto_text = txt.get("proto", "")
        observing = {n.strip() for n in txt.get("observe", "").split(",")}
        candidate = Candidate(
            cluster=cluster,
            device_id=device_id,
            hostname=target.removesuffix(".local") if target.lower().endswith(".local") else target,
            addresses=addresses,
            port=port,
            source=SOURCE,
            proto=int(proto_text) if proto_text.isdigit() else None,
            observe_only=cluster in observing,
        )
        key = device_id or instance.lower()
        sightings.setdefault(key, Sighting(key, candidate))
    return BrowseResult(tuple(sightings.values()), tuple(dict.fromkeys(missing)))


class MdnsDiscovery:
    """The ``mdns`` strategy for one cluster (see the module docstring)."""

    def __init__(
        self,
        cluster: ClusterConfig,
        ctx: DiscoveryContext,
        *,
        poll_interval: float = 0.25,
        refresh: float = 30.0,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        query_timeout: float = 1.0,
        max_missing_queries: int = 16,
    ) -> None:
        if ctx.mdns is None:
            raise DiscoveryError(
                f"cluster {cluster.name!r}: strategy mdns needs mDNS, which is not running"
            )
        self.cluster = cluster
        self._mdns: MdnsBrowser = ctx.mdns
        self._self_id = ctx.self_id
        self._clock = ctx.clock
        self.poll_interval = poll_interval
        self.coalesce = 0.1  # seconds gathering cache changes before one scan
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.query_timeout = query_timeout
        self.max_missing_queries = max_missing_queries
        self._dedup = Deduplicator(refresh)
        self._missing: tuple[tuple[str, int], ...] = ()

    def loops(self, report: ReportCandidate) -> Mapping[str, Loop]:
        """The two loops, for the cluster's link to supervise (see the module docstring)."""
        return {"discovery": functools.partial(self._watch, report), "mdns-query": self._query_loop}

    async def run(self, report: ReportCandidate) -> None:
        """Both loops without a link: the query loop in a task owner of its own."""
        async with _LoopOwner(f"mesh:{self.cluster.name}", {"mdns-query": self._query_loop}):
            await self._watch(report)

    def scan(self, report: ReportCandidate) -> None:
        """Read the cache once and report what is new, changed or due for refresh."""
        now = self._clock()
        result = browse(
            self._mdns.cache.live_entries(now),
            cluster=self.cluster.name,
            self_id=self._self_id,
            interfaces=self.cluster.interfaces,
        )
        self._missing = result.missing
        for sighting in result.sightings:
            if self._dedup.due(now, sighting.key, sighting.candidate):
                report(sighting.candidate)
        self._dedup.forget_except({s.key for s in result.sightings})

    async def ask(self, *, unicast: bool = False) -> None:
        """One round of questions: the service's PTRs, then the pieces still missing."""
        # Always on the wire: resolve() would stop at the cache once any peer is known. IPv4
        # only: the peer link is IPv4, answers carry AAAA records anyway, and at 50 peers
        # every question costs each of them a packet to read (half as many this way). A QM
        # question someone else just asked is not asked again (RFC 6762 §7.3).
        self._mdns.query(
            AGENT_SERVICE, RType.PTR, unicast=unicast, families=(4,), suppress_duplicate=True
        )
        for name, rtype in self._missing[: self.max_missing_queries]:
            await self._resolve(name, rtype)

    # -- private -------------------------------------------------------------------------------
    async def _watch(self, report: ReportCandidate) -> None:
        generation: int | None = None
        next_refresh = 0.0
        while True:
            now = self._clock()
            current = self._mdns.cache.generation
            if current != generation or now >= next_refresh:
                generation = current
                next_refresh = now + self._dedup.refresh / 2
                self.scan(report)
            # Woken by the cache itself, so a peer's announcement is acted on at once; then a
            # short pause gathers the burst of records that comes with it (one scan reads the
            # whole cache: at 50 peers, scanning per record would cost more than the news).
            wait = max(self.poll_interval, next_refresh - self._clock())
            await self._mdns.wait_cache_change(current, timeout=wait)
            await asyncio.sleep(self.coalesce)

    async def _query_loop(self) -> None:
        # A question asked before the first interface snapshot goes out nowhere, and the next
        # one would come a backoff later: wait for the interfaces first.
        await self._mdns.wait_interfaces()
        delay = self.first_backoff
        while True:
            seen_interfaces = self._interface_names()
            # The first question (at start, or on a new link) asks for unicast answers (QU):
            # the peers' records are news only to us, and everyone else heard their
            # announcements. Later questions are QM, with our known answers.
            await self.ask(unicast=delay == self.first_backoff)
            deadline = self._clock() + delay
            changed = False
            while not changed and self._clock() < deadline:
                await asyncio.sleep(min(self.poll_interval, max(0.0, deadline - self._clock())))
                changed = self._interface_names() != seen_interfaces
            # RFC 6762 §5.2: the interval between questions at least doubles; a new interface
            # starts over (its link may hold peers nobody asked for yet).
            delay = self.first_backoff if changed else min(delay * 2, self.max_backoff)

    async def _resolve(self, name: str, rtype: int) -> None:
        with contextlib.suppress(OSError):
            await self._mdns.resolve(name, rtype, self.query_timeout, include_own=False)

    def _interface_names(self) -> frozenset[str]:
        return frozenset(i.name for i in self._mdns.interfaces)


class _LoopOwner(TaskOwner):
    """Supervises ``loops`` while ``MdnsDiscovery.run`` is used without a cluster link."""

    def __init__(self, name: str, loops: Mapping[str, Loop]) -> None:
        super().__init__(name)
        self._to_run = dict(loops)

    async def start(self) -> None:
        await self.start_tasks()
        for what, loop in self._to_run.items():
            self.supervise(loop, what)

    async def close(self) -> None:
        await self.stop_tasks()


def _addresses(found: Sequence[tuple[str, Record]]) -> tuple[str, ...]:
    """Address texts, deduplicated: IPv4, then global IPv6, then link-local with ``%iface``."""
    keyed: dict[str, tuple[int, str]] = {}
    for iface, record in found:
        classified = _classify(str(record.data))
        if classified is None:
            continue
        rank, text = classified
        if rank == 2:
            text = f"{text}%{iface}"
        keyed.setdefault(text, (rank, text))
    return tuple(text for _, text in sorted(keyed.values()))


@functools.lru_cache(maxsize=1024)
def _classify(data: str) -> tuple[int, str] | None:
    """(0 IPv4 | 1 global IPv6 | 2 link-local IPv6, canonical text); None if no address.
    Remembered: the same addresses come up in every scan of the cache."""
    try:
        address = ipaddress.ip_address(data)
    except ValueError:
        return None
    if address.version == 4:
        return 0, str(address)
    return (2 if address.is_link_local else 1), str(address)

"""Discovery: cache records -> candidates, the strategies' loops, loading, and dns via dnsmasq."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import edgeagent.mesh.discovery as discovery_package
from edgeagent.config.model import BUILTIN_STRATEGIES, ClusterConfig, InterfacesConfig
from edgeagent.dns.records import (
    Record,
    RType,
    a_record,
    aaaa_record,
    ptr_record,
    srv_record,
    txt_record,
)
from edgeagent.mdns.cache import Cache
from edgeagent.mesh.discovery import (
    Candidate,
    Deduplicator,
    DiscoveryContext,
    DiscoveryError,
    LoopingStrategy,
    strategy_loops,
)
from edgeagent.mesh.discovery.dns import DnsDiscovery, SystemResolver
from edgeagent.mesh.discovery.mdns import (
    AGENT_SERVICE,
    MdnsDiscovery,
    agent_txt,
    browse,
    parse_cluster_ports,
    parse_txt,
)
from edgeagent.mesh.discovery.registry import BUILTIN, load_strategy
from edgeagent.mesh.discovery.static import StaticDiscovery
from edgeagent.net.model import InterfaceInfo
from tests.netlab import require_program

TTL = 120


def agent_records(
    instance: str,
    host: str,
    *,
    device_id: str | None,
    clusters: str | None,
    addresses: tuple[str, ...] = (),
    proto: str = "1",
    observe: str | None = None,
) -> list[Record]:
    """What an agent announces: PTR, SRV, TXT and its host's addresses."""
    name = f"{instance}.{AGENT_SERVICE}"
    txt = [b"version=0.1.0", f"proto={proto}".encode()]
    if observe is not None:
        txt.append(f"observe={observe}".encode())
    if device_id is not None:
        txt.append(f"id={device_id}".encode())
    if clusters is not None:
        txt.append(f"clusters={clusters}".encode())
    records = [
        ptr_record(AGENT_SERVICE, name, TTL),
        srv_record(name, f"{host}.local", 4370, TTL),
        txt_record(name, txt, TTL),
    ]
    for address in addresses:
        make = aaaa_record if ":" in address else a_record
        records.append(make(f"{host}.local", address, TTL))
    return records


def cache_with(*per_iface: tuple[str, list[Record]], now: float = 100.0) -> Cache:
    cache = Cache()
    for iface, records in per_iface:
        for record in records:
            cache.insert(now, iface, record)
    return cache


# -- TXT ----------------------------------------------------------------------------------------
def test_agent_txt_carries_id_version_proto_and_clusters() -> None:
    clusters = [
        ClusterConfig(name="greenhouse", port=4370, key=b"k" * 32),
        ClusterConfig(name="lab", port=4371, key=b"k" * 32),
    ]
    assert agent_txt("abc123", "0.1.0", clusters) == {
        "id": "abc123",
        "version": "0.1.0",
        "proto": "1",
        "clusters": "greenhouse:4370,lab:4371",
    }
    assert "clusters" not in agent_txt("abc123", "0.1.0", [])


def test_agent_txt_names_the_clusters_it_only_observes() -> None:
    clusters = [
        ClusterConfig(name="greenhouse", port=4370),
        ClusterConfig(name="lab", port=4371, key=b"k" * 32),
        ClusterConfig(name="barn", port=4372),
    ]
    txt = agent_txt("abc123", "0.1.0", clusters)
    assert txt["clusters"] == "greenhouse:4370,lab:4371,barn:4372"
    assert txt["observe"] == "greenhouse,barn"


def test_browse_marks_peers_that_only_observe_the_cluster() -> None:
    cache = cache_with(
        (
            "eth0",
            agent_records(
                "edge-1",
                "edge-1",
                device_id="dev1",
                clusters="greenhouse:4400,lab:4401",
                addresses=("10.0.0.1",),
                observe="lab",
            ),
        )
    )
    (greenhouse,) = browse(cache.entries(100.0), cluster="greenhouse", self_id="me").sightings
    (lab,) = browse(cache.entries(100.0), cluster="lab", self_id="me").sightings
    assert not greenhouse.candidate.observe_only
    assert lab.candidate.observe_only


def test_parse_txt_follows_rfc_6763() -> None:
    assert parse_txt([b"ID=x", b"id=y", b"flag", b"=novalue", b"\xff=bad", b"a=b=c"]) == {
        "id": "x",
        "flag": "",
        "a": "b=c",
    }


def test_parse_cluster_ports_skips_junk() -> None:
    assert parse_cluster_ports("a:4370, b:4371,c,d:0,e:x,:5,a:9") == {"a": 4370, "b": 4371}


# -- browse (pure) --------------------------------------------------------------------------
def test_browse_turns_cache_records_into_candidates() -> None:
    cache = cache_with(
        (
            "eth0",
            agent_records(
                "edge-1",
                "edge-1",
                device_id="dev1",
                clusters="greenhouse:4400,lab:4401",
                addresses=("fd00::1", "10.0.0.1", "fe80::1"),
            ),
        )
    )
    result = browse(cache.entries(100.0), cluster="greenhouse", self_id="me")
    (sighting,) = result.sightings
    assert sighting.key == "dev1"
    assert sighting.candidate == Candidate(
        cluster="greenhouse",
        device_id="dev1",
        hostname="edge-1",
        addresses=("10.0.0.1", "fd00::1", "fe80::1%eth0"),
        port=4400,
        source="mdns",
        proto=1,
    )
    assert result.missing == ()


def test_browse_skips_ourselves_other_clusters_and_agents_without_a_mesh() -> None:
    cache = cache_with(
        (
            "eth0",
            agent_records("me", "me", device_id="me", clusters="g:4370", addresses=("10.0.0.9",))
            + agent_records("o", "o", device_id="o", clusters="other:4370", addresses=("10.0.0.2",))
            + agent_records("old", "old", device_id="old", clusters=None, addresses=("10.0.0.3",)),
        )
    )
    assert browse(cache.entries(100.0), cluster="g", self_id="me").sightings == ()


def test_browse_learns_each_peer_on_the_shared_interface_only_from_selected_ones() -> None:
    peer = agent_records("p", "p", device_id="p", clusters="g:4370")
    cache = cache_with(
        (
            "eth0",
            [*peer, a_record("p.local", "10.0.0.2", TTL), aaaa_record("p.local", "fe80::2", TTL)],
        ),
        (
            "wlan0",
            [
                *peer,
                a_record("p.local", "192.168.1.2", TTL),
                aaaa_record("p.local", "fe80::2", TTL),
            ],
        ),
        ("docker0", [*peer, a_record("p.local", "172.17.0.2", TTL)]),
    )
    (sighting,) = browse(
        cache.entries(100.0), cluster="g", self_id="me", interfaces=InterfacesConfig()
    ).sightings
    # docker* is excluded by default; the link-local address carries each link's zone.
    assert sighting.candidate.addresses == (
        "10.0.0.2",
        "192.168.1.2",
        "fe80::2%eth0",
        "fe80::2%wlan0",
    )
    only_wlan = browse(
        cache.entries(100.0),
        cluster="g",
        self_id="me",
        interfaces=InterfacesConfig(include=("wlan*",)),
    ).sightings
    assert only_wlan[0].candidate.addresses == ("192.168.1.2", "fe80::2%wlan0")


def test_browse_names_what_is_missing() -> None:
    srv_only = [
        r for r in agent_records("a", "a", device_id="a", clusters="g:1") if r.rtype != RType.TXT
    ]
    no_address = agent_records("b", "b", device_id="b", clusters="g:1")
    result = browse(
        cache_with(("eth0", srv_only + no_address)).entries(100.0), cluster="g", self_id="me"
    )
    assert result.sightings == ()
    assert set(result.missing) == {
        ("a._edgeagent._tcp.local", RType.TXT),
        ("b.local", RType.A),
        ("b.local", RType.AAAA),
    }


def test_an_instance_without_an_id_is_keyed_by_its_name() -> None:
    cache = cache_with(
        (
            "eth0",
            agent_records("Anon", "anon", device_id=None, clusters="g:1", addresses=("10.0.0.5",)),
        )
    )
    (sighting,) = browse(cache.entries(100.0), cluster="g", self_id="me").sightings
    assert sighting.key == "anon._edgeagent._tcp.local"
    assert sighting.candidate.device_id is None


def test_the_deduplicator_reports_new_changed_and_stale() -> None:
    dedup = Deduplicator(refresh=30.0)
    first = Candidate("g", "a", "a", ("10.0.0.1",), 1, "mdns")
    assert dedup.due(0.0, "a", first)
    assert not dedup.due(10.0, "a", first)
    moved = replace(first, addresses=("10.0.0.2",))
    assert dedup.due(11.0, "a", moved)
    assert dedup.due(41.0, "a", moved)
    dedup.forget_except(set())
    assert dedup.due(42.0, "a", moved)


# -- the mdns strategy's loops, over a fake MdnsService -----------------------------------------
class FakeMdns:
    """Enough of MdnsService: a real Cache, a settable interface list, recorded questions."""

    def __init__(self) -> None:
        self.cache = Cache()
        self.interfaces = [InterfaceInfo("eth0", 2, ("10.0.0.9",))]
        self.questions: list[tuple[str, int, bool]] = []
        self.unicast_asked: list[bool] = []
        self.answers: dict[tuple[str, int], list[Record]] = {}

    async def resolve(
        self,
        name: str,
        rtype: int,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        include_own: bool = True,
    ) -> list[Record]:
        self.questions.append((name, rtype, include_own))
        for record in self.answers.pop((name, rtype), []):
            self.cache.insert(time.monotonic(), "eth0", record)
        await asyncio.sleep(0)
        return self.cache.lookup(time.monotonic(), name, rtype)

    async def wait_interfaces(self) -> None:
        await asyncio.sleep(0)

    def query(
        self,
        name: str,
        rtype: int,
        *,
        unicast: bool = False,
        families: Sequence[int] = (4, 6),
        suppress_duplicate: bool = False,
    ) -> None:
        self.questions.append((name, rtype, False))
        self.unicast_asked.append(unicast)
        for record in self.answers.pop((name, rtype), []):
            self.cache.insert(time.monotonic(), "eth0", record)

    async def wait_cache_change(self, generation: int, timeout: float | None = None) -> int:  # noqa: ASYNC109
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        # A fake: polling stands in for MdnsService's change event.
        while self.cache.generation == generation and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        return self.cache.generation

    def announce(self, records: list[Record], iface: str = "eth0") -> None:
        for record in records:
            self.cache.insert(time.monotonic(), iface, record)


@contextlib.asynccontextmanager
async def running(strategy: Any) -> AsyncIterator[list[Candidate]]:
    seen: list[Candidate] = []
    task = asyncio.create_task(strategy.run(seen.append), name="test[discovery]")
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate: Any, within: float = 3.0) -> None:
    """Poll ``predicate`` (test helper: the strategies have no event to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling a plain predicate is the point
            await asyncio.sleep(0.01)


async def test_mdns_reports_an_announced_peer_quickly_and_not_ourselves() -> None:
    mdns = FakeMdns()
    ctx = DiscoveryContext(self_id="me", mdns=mdns)
    strategy = load_strategy(ClusterConfig(name="g"), ctx)
    assert isinstance(strategy, MdnsDiscovery)
    strategy.poll_interval = 0.02
    async with running(strategy) as seen:
        await wait_for(lambda: (AGENT_SERVICE, RType.PTR, False) in mdns.questions)
        mdns.announce(
            agent_records("me", "me", device_id="me", clusters="g:4370", addresses=("10.0.0.9",))
        )
        started = time.monotonic()
        mdns.announce(
            agent_records("p", "p", device_id="p", clusters="g:4371", addresses=("10.0.0.2",))
        )
        await wait_for(lambda: seen)
        assert time.monotonic() - started < 0.5
        await asyncio.sleep(0.1)
    assert [(c.device_id, c.addresses, c.port) for c in seen] == [("p", ("10.0.0.2",), 4371)]


async def test_mdns_reports_a_change_of_address() -> None:
    mdns = FakeMdns()
    strategy = MdnsDiscovery(
        ClusterConfig(name="g"), DiscoveryContext("me", mdns), poll_interval=0.02
    )
    async with running(strategy) as seen:
        mdns.announce(
            agent_records("p", "p", device_id="p", clusters="g:1", addresses=("10.0.0.2",))
        )
        await wait_for(lambda: len(seen) == 1)
        mdns.announce([a_record("p.local", "10.0.0.3", TTL)])  # cache-flush: 10.0.0.2 goes soon
        await wait_for(lambda: len(seen) == 2)
    assert "10.0.0.3" in seen[1].addresses


async def test_mdns_asks_for_missing_pieces_and_backs_off() -> None:
    mdns = FakeMdns()
    strategy = MdnsDiscovery(
        ClusterConfig(name="g"),
        DiscoveryContext("me", mdns),
        poll_interval=0.01,
        first_backoff=0.05,
        max_backoff=0.2,
    )
    peer = agent_records("p", "p", device_id="p", clusters="g:1")
    mdns.announce([r for r in peer if r.rtype != RType.TXT])
    mdns.answers[("p._edgeagent._tcp.local", RType.TXT)] = [r for r in peer if r.rtype == RType.TXT]
    mdns.answers[("p.local", RType.A)] = [a_record("p.local", "10.0.0.2", TTL)]
    async with running(strategy) as seen:
        await wait_for(lambda: seen, within=5)
        await asyncio.sleep(0.6)
    assert seen[0].addresses == ("10.0.0.2",)
    ptr_times = [q for q in mdns.questions if q[:2] == (AGENT_SERVICE, RType.PTR)]
    # 0, 0.05, 0.15, 0.35, 0.55 (capped at 0.2): a handful, not one per poll
    assert 3 <= len(ptr_times) <= 8


async def test_mdns_starts_the_backoff_over_when_interfaces_change() -> None:
    mdns = FakeMdns()
    strategy = MdnsDiscovery(
        ClusterConfig(name="g"),
        DiscoveryContext("me", mdns),
        poll_interval=0.01,
        first_backoff=0.05,
        max_backoff=10.0,
    )
    async with running(strategy):
        await asyncio.sleep(0.5)  # questions at 0, 0.05, 0.15, 0.35; the next at 0.75
        before = len(mdns.questions)
        mdns.interfaces = [*mdns.interfaces, InterfaceInfo("wlan0", 3, ("192.168.1.9",))]
        await asyncio.sleep(0.1)
        assert len(mdns.questions) >= before + 1  # without the change: none before 0.75
    # the first question, and the first after the change, ask for unicast answers (QU)
    assert mdns.unicast_asked[:3] == [True, False, False]
    assert mdns.unicast_asked[before] is True


def test_mdns_needs_mdns() -> None:
    with pytest.raises(DiscoveryError, match="needs mDNS"):
        load_strategy(ClusterConfig(name="g"), DiscoveryContext("me"))


# -- static -----------------------------------------------------------------------------------
class FakeResolver:
    def __init__(self, answers: dict[tuple[str, int], list[Record]] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, int]] = []
        self.fail = False

    async def query(self, name: str, rtype: int) -> list[Record]:
        self.asked.append((name, rtype))
        if self.fail:
            raise DiscoveryError("no nameserver answered")
        return list(self.answers.get((name, rtype), []))


async def test_static_reports_every_peer_at_start_and_again_later() -> None:
    resolver = FakeResolver(
        {("gw.example.com", RType.A): [a_record("gw.example.com", "10.0.0.8", 60)]}
    )
    cluster = ClusterConfig(
        name="s",
        strategy="static",
        port=4371,
        peers=("10.0.0.7:4370", "[fd00::7]:4371", "gw.example.com:4371", "nowhere.example.com:1"),
    )
    strategy = load_strategy(cluster, DiscoveryContext("me", resolver=resolver))
    assert isinstance(strategy, StaticDiscovery)
    strategy.refresh = 0.1
    async with running(strategy) as seen:
        await wait_for(lambda: len(seen) >= 6)
    first = seen[:3]
    assert [(c.addresses, c.port, c.hostname) for c in first] == [
        (("10.0.0.7",), 4370, None),
        (("fd00::7",), 4371, None),
        (("10.0.0.8",), 4371, "gw.example.com"),
    ]
    assert seen[3:6] == first
    assert all(c.source == "static" and c.device_id is None and c.cluster == "s" for c in seen)


async def test_static_resolves_local_names_over_mdns() -> None:
    mdns = FakeMdns()
    mdns.answers[("gw.local", RType.A)] = [a_record("gw.local", "10.0.0.8", TTL)]

    cluster = ClusterConfig(name="s", strategy="static", peers=("gw.local:4370",))
    strategy = StaticDiscovery(cluster, DiscoveryContext("me", mdns=mdns, resolver=FakeResolver()))
    (candidate,) = await strategy.candidates()
    assert (candidate.hostname, candidate.addresses) == ("gw.local", ("10.0.0.8",))


# -- dns over a fake resolver -------------------------------------------------------------------
async def test_dns_prefers_srv_and_falls_back_to_addresses() -> None:
    srv = [
        srv_record("_ea._udp.x", "b.x", 4402, 60, priority=20),
        srv_record("_ea._udp.x", "a.x", 4401, 60, priority=10),
        srv_record("_ea._udp.x", "gone.x", 4403, 60, priority=30),
    ]
    resolver = FakeResolver(
        {
            ("_ea._udp.x", RType.SRV): srv,
            ("a.x", RType.A): [a_record("a.x", "10.0.0.1", 60)],
            ("b.x", RType.AAAA): [aaaa_record("b.x", "fd00::2", 60)],
            ("plain.x", RType.A): [
                a_record("plain.x", "10.0.0.5", 60),
                a_record("plain.x", "10.0.0.6", 60),
            ],
        }
    )
    cluster = ClusterConfig(name="d", strategy="dns", port=4370, dns_name="_ea._udp.x")
    strategy = DnsDiscovery(cluster, DiscoveryContext("me", resolver=resolver))
    assert [(c.hostname, c.addresses, c.port) for c in await strategy.candidates()] == [
        ("a.x", ("10.0.0.1",), 4401),
        ("b.x", ("fd00::2",), 4402),
    ]
    plain = DnsDiscovery(
        replace(cluster, dns_name="plain.x"), DiscoveryContext("me", resolver=resolver)
    )
    assert [(c.hostname, c.addresses, c.port) for c in await plain.candidates()] == [
        (None, ("10.0.0.5",), 4370),
        (None, ("10.0.0.6",), 4370),
    ]


async def test_dns_reports_changes_only_and_survives_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resolver = FakeResolver({("n.x", RType.A): [a_record("n.x", "10.0.0.5", 60)]})
    cluster = ClusterConfig(name="d", strategy="dns", dns_name="n.x", dns_interval=0.02)
    strategy = DnsDiscovery(cluster, DiscoveryContext("me", resolver=resolver))
    async with running(strategy) as seen:
        await wait_for(lambda: len(resolver.asked) >= 10)
        assert len(seen) == 1
        resolver.fail = True
        await wait_for(lambda: len(resolver.asked) >= 14)
        resolver.fail = False
        resolver.answers[("n.x", RType.A)].append(a_record("n.x", "10.0.0.6", 60))
        await wait_for(lambda: len(seen) == 2)
    assert seen[1].addresses == ("10.0.0.6",)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # a failing resolver is reported once, then at DEBUG


# -- dns against a real server: dnsmasq on loopback ------------------------------------------------
def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def dnsmasq() -> Iterator[str]:
    """A dnsmasq on 127.0.0.x (loopback only) serving test.lan; yields "ip:port"."""
    program = require_program("dnsmasq")
    address = f"127.0.0.{random.randint(100, 250)}"
    port = _free_udp_port(address)
    proc = subprocess.Popen(
        [
            program,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={address}",
            f"--port={port}",
            "--pid-file=",
            "--local=/test.lan/",
            "--srv-host=_edgeagent._udp.test.lan,node1.test.lan,4371,10,0",
            "--srv-host=_edgeagent._udp.test.lan,node2.test.lan,4372,20,0",
            "--host-record=node1.test.lan,10.9.0.1,fd00::1",
            "--host-record=node2.test.lan,10.9.0.2",
            "--host-record=plain.test.lan,10.9.0.5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            probe = subprocess.run(
                [
                    "dig",
                    "+short",
                    "+time=1",
                    "+tries=1",
                    f"@{address}",
                    "-p",
                    str(port),
                    "node2.test.lan",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if "10.9.0.2" in probe.stdout:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"dnsmasq did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        yield f"{address}:{port}"
    finally:
        proc.terminate()  # by our own PID only
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


async def test_dns_srv_against_dnsmasq(dnsmasq: str) -> None:
    cluster = ClusterConfig(
        name="site", strategy="dns", port=4370, dns_name="_edgeagent._udp.test.lan"
    )
    strategy = load_strategy(cluster, DiscoveryContext("me", resolver=SystemResolver([dnsmasq])))
    assert isinstance(strategy, DnsDiscovery)
    found = await strategy.candidates()
    assert [(c.hostname, c.addresses, c.port, c.source) for c in found] == [
        ("node1.test.lan", ("10.9.0.1", "fd00::1"), 4371, "dns"),
        ("node2.test.lan", ("10.9.0.2",), 4372, "dns"),
    ]


async def test_dns_address_name_against_dnsmasq(dnsmasq: str) -> None:
    resolver = SystemResolver([dnsmasq])
    cluster = ClusterConfig(name="site", strategy="dns", port=4370, dns_name="plain.test.lan")
    found = await DnsDiscovery(cluster, DiscoveryContext("me", resolver=resolver)).candidates()
    assert [(c.addresses, c.port) for c in found] == [(("10.9.0.5",), 4370)]
    assert await resolver.query("missing.test.lan", RType.A) == []  # NXDOMAIN is no data


async def test_dns_with_no_server_raises_discovery_error() -> None:
    address = "127.0.0.1"
    resolver = SystemResolver([f"{address}:{_free_udp_port(address)}"], timeout=0.3)
    with pytest.raises(DiscoveryError, match="no nameserver answered"):
        await resolver.query("x.test.lan", RType.A)
    with pytest.raises(DiscoveryError, match="no usable nameserver"):
        await SystemResolver(["not-an-address"]).query("x.test.lan", RType.A)


def test_the_system_resolver_reads_resolv_conf(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("# x\nnameserver 10.0.0.1\nnameserver dns.example\nnameserver ::1\n")
    assert SystemResolver.from_system(path).nameservers == ("10.0.0.1", "::1")
    assert SystemResolver.from_system(tmp_path / "missing").nameservers == ()


# -- loading ------------------------------------------------------------------------------------
PLUGIN = """
from edgeagent.mesh.discovery import Candidate

class Fixed:
    def __init__(self, cluster, ctx):
        self.cluster = cluster
        self.ctx = ctx

    async def run(self, report):
        report(Candidate(self.cluster.name, "plugged", None, ("10.0.0.42",), self.cluster.port, "fixed"))

def broken(cluster, ctx):
    raise RuntimeError("no backend configured")

def runless(cluster, ctx):
    return object()

not_callable = 42
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution on sys.path declaring edgeagent.discovery entry points."""
    (tmp_path / "ea_test_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "ea_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ea-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [edgeagent.discovery]
            fixed = ea_test_plugin:Fixed
            broken = ea_test_plugin:broken
            runless = ea_test_plugin:runless
            notcallable = ea_test_plugin:not_callable
            missing = ea_test_plugin_absent:Nothing
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("ea_test_plugin", None)


@pytest.mark.usefixtures("plugins")
async def test_a_plugin_strategy_is_loaded_from_its_entry_point() -> None:
    strategy = load_strategy(
        ClusterConfig(name="p", strategy="fixed", port=4444), DiscoveryContext("me")
    )
    seen: list[Candidate] = []
    await strategy.run(seen.append)
    assert seen == [Candidate("p", "plugged", None, ("10.0.0.42",), 4444, "fixed")]


@pytest.mark.usefixtures("plugins")
def test_the_config_accepts_an_installed_plugin_name(tmp_path: Path) -> None:
    from edgeagent.config.loader import load_config
    from edgeagent.identity import DeviceIdentity

    path = tmp_path / "edgeagent.yaml"
    path.write_text("mesh:\n  clusters:\n    - {strategy: fixed}\n")
    config = load_config(path, identity=DeviceIdentity("ffff"), env={}, resolv_conf=tmp_path / "r")
    assert config.mesh.clusters[0].strategy == "fixed"


@pytest.mark.usefixtures("plugins")
@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "nosuch",
            "no discovery strategy 'nosuch'.*installed 'edgeagent.discovery' entry points:.*fixed",
        ),
        ("missing", "cannot load discovery entry point 'missing'.*ModuleNotFoundError"),
        ("broken", "failed to start: RuntimeError\\('no backend configured'\\)"),
        ("runless", "returned object, which has no run\\(report\\) method"),
        ("notcallable", "is not callable"),
    ],
)
def test_loading_failures_say_why(name: str, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        load_strategy(ClusterConfig(name="p", strategy=name), DiscoveryContext("me"))


def test_the_registry_knows_every_builtin_strategy_the_config_accepts() -> None:
    assert set(BUILTIN) == set(BUILTIN_STRATEGIES)
    for name in BUILTIN_STRATEGIES:
        cluster = ClusterConfig(name="p", strategy=name, dns_name="peers.example")
        ctx = DiscoveryContext("me", mdns=FakeMdns())
        assert isinstance(load_strategy(cluster, ctx), BUILTIN[name])


def test_the_link_supervises_each_loop_of_a_strategy() -> None:
    ctx = DiscoveryContext("me", mdns=FakeMdns())
    mdns = load_strategy(ClusterConfig(name="p"), ctx)
    assert isinstance(mdns, LoopingStrategy)
    assert set(strategy_loops(mdns, print)) == {"discovery", "mdns-query"}
    static = load_strategy(ClusterConfig(name="p", strategy="static"), ctx)
    assert not isinstance(static, LoopingStrategy)
    assert set(strategy_loops(static, print)) == {"discovery"}


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def test_the_discovery_layers_have_no_cycle() -> None:
    """base <- strategies <- registry; the package itself re-exports base only."""
    package = Path(discovery_package.__file__).parent
    name = discovery_package.__name__
    assert not [m for m in _imports(package / "base.py") if m.startswith(name)]
    assert {m for m in _imports(package / "__init__.py") if m.startswith(name)} == {f"{name}.base"}
    for strategy in ("dns", "mdns", "static"):
        upward = {name, f"{name}.registry"}
        assert not upward & set(_imports(package / f"{strategy}.py")), strategy


# -- mdns discovery with real MdnsServices, inside network namespaces only -------------------------
ROOT = Path(__file__).resolve().parents[2]

# One agent-like node: MdnsService advertising the agent TXT, the mdns strategy of its first
# cluster printing every reported candidate as a JSON line.
MDNS_NODE = r"""
import asyncio, json, signal, sys, time
from edgeagent.config.model import ClusterConfig, InterfacesConfig, MdnsConfig
from edgeagent.mdns.table import RecordTable
from edgeagent.mdns.transport import MdnsService
from edgeagent.mesh.discovery import DiscoveryContext
from edgeagent.mesh.discovery.mdns import agent_txt
from edgeagent.mesh.discovery.registry import load_strategy

args = json.loads(sys.argv[1])

def emit(**fields):
    print(json.dumps({"t": time.monotonic(), **fields}), flush=True)

async def main():
    mdns_config = MdnsConfig(
        hosts=(args["host"],), instance_name=args["host"],
        interfaces=InterfacesConfig(include=("eth*",), exclude=()),
    )
    clusters = [ClusterConfig(name=name, port=port) for name, port in args["clusters"]]
    table = RecordTable.from_config(mdns_config, agent_txt=agent_txt(args["id"], "test", clusters))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with MdnsService(mdns_config, table) as mdns:
        browsed = next(c for c in clusters if c.name == args.get("browse", clusters[0].name))
        strategy = load_strategy(browsed, DiscoveryContext(self_id=args["id"], mdns=mdns))
        def report(c):
            emit(event="candidate", id=c.device_id, host=c.hostname, addresses=list(c.addresses),
                 port=c.port, cluster=c.cluster, proto=c.proto)
        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(strategy.run(report), name="edgeagent[mesh:test].discovery")
            emit(event="ready")
            await stop.wait()
            task.cancel()
    emit(event="closed")

asyncio.run(main())
"""


class MdnsNode:
    def __init__(self, device: Any, log: Path, **args: Any) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    device.ns,
                    sys.executable,
                    "-c",
                    MDNS_NODE,
                    json.dumps(args),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        device.processes.append(self.proc)  # the lab stops it by PID at teardown

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, predicate: Any, within: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for item in self.events():
                if predicate(item):
                    return item
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"not found; output:\n{self.log.read_text()}")


@pytest.mark.netns
def test_mdns_discovery_on_a_namespaced_lan(lab: Any, tmp_path: Path) -> None:
    # a sits on two LANs; b and c share one LAN each with it; d is on lan1 in another cluster.
    lab.add_lan("lan1")
    lab.add_lan("lan2")
    a = lab.add_device("a", [("lan1", "10.78.1.1"), ("lan2", "10.78.2.1")])
    b = lab.add_device("b", [("lan1", "10.78.1.2")])
    c = lab.add_device("c", [("lan2", "10.78.2.2")])
    d = lab.add_device("d", [("lan1", "10.78.1.4")])
    nodes = {
        "a": MdnsNode(a, tmp_path / "a.log", host="edge-a", id="dev-a", clusters=[["g", 4370]]),
        "d": MdnsNode(d, tmp_path / "d.log", host="edge-d", id="dev-d", clusters=[["h", 4370]]),
    }
    for node in nodes.values():
        node.wait_for(lambda e: e["event"] == "ready")
    nodes["b"] = MdnsNode(
        b,
        tmp_path / "b.log",
        host="edge-b",
        id="dev-b",
        clusters=[["x", 1], ["g", 4371]],
        browse="g",
    )
    nodes["c"] = MdnsNode(c, tmp_path / "c.log", host="edge-c", id="dev-c", clusters=[["g", 4372]])

    def candidate(of: str) -> Any:
        return lambda e: e["event"] == "candidate" and e["id"] == of

    started = nodes["b"].wait_for(lambda e: e["event"] == "ready")["t"]
    seen_b = nodes["a"].wait_for(candidate("dev-b"))
    seen_c = nodes["a"].wait_for(candidate("dev-c"))
    # a learns each peer's address on the link it shares with it, and the cluster's port
    assert (seen_b["host"], seen_b["addresses"][0], seen_b["port"]) == ("edge-b", "10.78.1.2", 4371)
    assert (seen_c["addresses"][0], seen_c["port"], seen_c["proto"]) == ("10.78.2.2", 4372, 1)
    assert "10.78.2.2" not in seen_b["addresses"]
    # found from the peer's announcements (both processes share one monotonic clock)
    assert seen_b["t"] - started < 5.0
    # and each of them sees a on its own link
    assert nodes["b"].wait_for(candidate("dev-a"))["addresses"][0] == "10.78.1.1"
    assert nodes["c"].wait_for(candidate("dev-a"))["addresses"][0] == "10.78.2.1"
    time.sleep(0.5)
    for name, node in nodes.items():
        ids = {e["id"] for e in node.events() if e["event"] == "candidate"}
        assert f"dev-{name}" not in ids  # never ourselves
        assert "dev-d" not in ids or name == "d"  # another cluster stays apart
        if name == "d":
            assert ids == set()

"""The mesh adapter on loopback: two MeshServices in one process, real UDP sockets on 127.0.0.1.

Covers what the link core's unit tests cannot: the ClusterLink carries out the core's effects
(joins through the challenge dance, serves and answers a request), owns its tasks as a
TaskOwner (named, supervised, all gone after close) and reports through ``report()``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from edgeagent.config.model import ClusterConfig, MeshConfig
from edgeagent.errors import TransportError
from edgeagent.mesh import service
from edgeagent.mesh.discovery import DiscoveryContext, ReportCandidate
from edgeagent.mesh.messages import MemberState
from edgeagent.mesh.service import MeshService, RemoteError, RequestContext
from edgeagent.resource import PartState

KEY = os.urandom(32)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mesh(
    device_id: str, port: int, peer_port: int, handlers: dict[str, Any] | None = None
) -> MeshService:
    cluster = ClusterConfig(
        name="loop",
        key=KEY,
        strategy="static",
        port=port,
        peers=(f"127.0.0.1:{peer_port}",),
    )
    return MeshService(
        MeshConfig(clusters=(cluster,)),
        self_id=device_id,
        hostname=device_id,
        epoch=1,
        meta={"services": [device_id]},
        context=DiscoveryContext(self_id=device_id),
        handlers=handlers,
        bind_address="127.0.0.1",
    )


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling what the agent shows is the point
            await asyncio.sleep(0.02)


def alive(observer: MeshService, device_id: str) -> bool:
    return any(
        row["device_id"] == device_id and row["state"] == MemberState.ALIVE.value
        for row in observer.peers_document()
    )


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MeshService, MeshService]]:
    async def echo(context: RequestContext, body: Any) -> Any:
        return {"from": context.sender, "body": body}

    async def broken(context: RequestContext, body: Any) -> Any:
        raise RuntimeError("handler bug")

    port_a, port_b = free_udp_port(), free_udp_port()
    a = mesh("dev-a", port_a, port_b)
    b = mesh("dev-b", port_b, port_a, handlers={"echo": echo, "broken": broken})
    async with a, b:
        await until(lambda: alive(a, "dev-b") and alive(b, "dev-a"))
        yield a, b


async def test_two_links_join_and_a_request_is_served(
    pair: tuple[MeshService, MeshService],
) -> None:
    a, b = pair
    assert await a.request("dev-b", "echo", [1, 2]) == {"from": "dev-a", "body": [1, 2]}
    with pytest.raises(RemoteError, match="unknown method 'nosuch'"):
        await a.request("dev-b", "nosuch", None)
    with pytest.raises(RemoteError, match="broken failed"):
        await a.request("dev-b", "broken", None)
    link_b = b.links[0]
    assert link_b.stats.requests_served == 1
    assert link_b.stats.requests_rejected == 1
    assert link_b.stats.challenges_passed >= 1
    assert b.status()["loop"]["members"] == 2  # alive ones, us included


async def test_links_report_state_counters_and_supervised_loops(
    pair: tuple[MeshService, MeshService],
) -> None:
    a, _ = pair
    report = a.report()
    assert report.state is PartState.RUNNING
    assert report.counters["members_alive"] == 1
    assert report.counters["clusters"] == 1
    assert report.counters["datagrams"] > 0
    assert report.counters["sent"] > 0
    cluster = report.detail["clusters"]["loop"]
    assert cluster["state"] == "running"
    assert set(cluster["detail"]["loops"]) == {
        "edgeagent[mesh:loop].discovery",
        "edgeagent[mesh:loop].timer",
    }
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert {"edgeagent-owner:mesh:loop", "edgeagent[mesh:loop].timer"} <= names


async def test_closing_leaves_the_cluster_and_ends_every_task() -> None:
    port_a, port_b = free_udp_port(), free_udp_port()
    a, b = mesh("dev-a", port_a, port_b), mesh("dev-b", port_b, port_a)
    async with b:
        async with a:
            await until(lambda: alive(a, "dev-b") and alive(b, "dev-a"))
        assert a.report().state is PartState.STOPPED
        await until(lambda: any(r["state"] == "left" for r in b.peers_document()), within=5.0)
        await a.close()  # idempotent
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("edgeagent[mesh")]


class CrashingStrategy:
    """Fails on its first two runs, then reports nothing and waits (a flaky plugin)."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, report: ReportCandidate) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise OSError(f"plugin backend down ({self.runs})")
        await asyncio.Event().wait()


async def test_a_crashing_discovery_loop_is_restarted_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    strategy = CrashingStrategy()
    monkeypatch.setattr(service, "load_strategy", lambda cluster, ctx: strategy)
    a = mesh("dev-a", free_udp_port(), free_udp_port())
    async with a:
        await until(lambda: strategy.runs == 3, within=5.0)
        report = a.links[0].report()
        assert report.state is PartState.RUNNING
        assert report.counters["loop_restarts"] == 2
        loop = report.detail["loops"]["edgeagent[mesh:loop].discovery"]
        assert loop["last_error"] == "OSError: plugin backend down (2)"


async def test_a_port_in_use_fails_the_start_and_leaves_nothing_running() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = int(taken.getsockname()[1])
        a = mesh("dev-a", port, free_udp_port())
        with pytest.raises(TransportError, match=f"cannot bind UDP port {port}"):
            await a.start()
    assert a.links[0].report().state is PartState.STOPPED
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("edgeagent[mesh")]


async def test_an_observe_only_cluster_opens_no_socket_and_lists_what_it_finds() -> None:
    cluster = ClusterConfig(name="watch", strategy="static", peers=("127.0.0.1:4999",))
    observer = MeshService(
        MeshConfig(clusters=(cluster,)),
        self_id="dev-o",
        hostname="dev-o",
        epoch=1,
        meta={},
        context=DiscoveryContext(self_id="dev-o"),
    )
    async with observer:
        await until(lambda: bool(observer.peers_document()))
        (row,) = observer.peers_document()
        assert (row["state"], row["addresses"], row["port"]) == ("seen", ["127.0.0.1"], 4999)
        assert row["reason"] == "this device has no key for the cluster (observe-only)"
        report = observer.report()
        assert report.state is PartState.RUNNING
        assert (report.counters["seen"], report.counters["datagrams"]) == (1, 0)
        loops = report.detail["clusters"]["watch"]["detail"]["loops"]
        assert set(loops) == {"edgeagent[mesh:watch].discovery"}  # no socket, no timer
        assert observer.status()["watch"]["keyed"] is False

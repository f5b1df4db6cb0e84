"""Recursive mode: the bridge forwards other names to a real dnsmasq on loopback.

dnsmasq runs in the foreground on 127.0.0.1 and a free port, with no resolv.conf and no
hosts file, serving a few names itself; it is stopped by PID. Only loopback traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from dnslib import QTYPE, DNSRecord

from edgeagent.bridge import BridgeServer, StaticNameSource
from edgeagent.config.model import DnsBridgeConfig
from edgeagent.dns.records import a_record
from edgeagent.dns.wire import StreamFramer, frame

T = TypeVar("T")
DNSMASQ = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
BIG = ["a" * 200, "b" * 200, "c" * 200]  # > 512 bytes: UDP TC, then TCP

pytestmark = pytest.mark.skipif(DNSMASQ is None, reason="dnsmasq is not installed")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@pytest.fixture
def dnsmasq() -> Iterator[int]:
    assert DNSMASQ is not None
    port = free_port()
    proc = subprocess.Popen(
        [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            f"--port={port}",
            "--pid-file=",
            "--address=/example.test/192.0.2.7",
            "--host-record=host.example.test,192.0.2.8",
            "--txt-record=big.example.test," + ",".join(BIG),
            "--ptr-record=8.8.8.8.in-addr.arpa,dns.example.test",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"dnsmasq exited: {err}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("dnsmasq did not start")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (as the agent does), checking no task is left."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = asyncio.new_event_loop

    async def checked() -> T:
        result = await coro
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, left
        return result

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(checked())


def bridge_config(*upstreams: str, timeout: float = 1.0) -> DnsBridgeConfig:
    return DnsBridgeConfig(
        enabled=True,
        address="127.0.0.1",
        port=0,
        recursive=True,
        upstreams=upstreams,
        upstream_timeout=timeout,
    )


async def udp_ask(port: int, query: DNSRecord) -> DNSRecord:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, bytes(query.pack()))
        return DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(sock, 65535), 5))


async def tcp_ask(port: int, query: DNSRecord) -> DNSRecord:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(bytes(query.pack())))
        framer = StreamFramer()
        while True:
            chunk = await asyncio.wait_for(reader.read(65535), 5)
            assert chunk
            messages = framer.feed(chunk)
            if messages:
                return DNSRecord.parse(messages[0])
    finally:
        writer.close()
        await writer.wait_closed()


SOURCE = StaticNameSource([a_record("edge.local", "10.0.0.5", 120)])


def test_forwards_to_dnsmasq_and_keeps_local_names(dnsmasq: int) -> None:
    async def body() -> None:
        async with BridgeServer(bridge_config(f"127.0.0.1:{dnsmasq}"), SOURCE) as server:
            port = server.address[1]
            query = DNSRecord.question("www.example.test")
            reply = await udp_ask(port, query)
            assert reply.header.id == query.header.id
            assert reply.header.rcode == 0
            assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.7"]
            local = await udp_ask(port, DNSRecord.question("edge.local"))
            assert local.header.aa == 1
            assert [str(rr.rdata) for rr in local.rr] == ["10.0.0.5"]
            # An unknown reverse name goes upstream in recursive mode.
            ptr = await udp_ask(port, DNSRecord.question("8.8.8.8.in-addr.arpa", "PTR"))
            assert [str(rr.rdata) for rr in ptr.rr] == ["dns.example.test."]
            assert server.stats.forwarded == 2

    run(body())


def test_truncated_upstream_reply_is_retried_over_tcp(dnsmasq: int) -> None:
    async def body() -> None:
        async with BridgeServer(bridge_config(f"127.0.0.1:{dnsmasq}"), SOURCE) as server:
            port = server.address[1]
            # Over TCP to us: the forwarder's UDP attempt comes back TC, TCP gets it all.
            reply = await tcp_ask(port, DNSRecord.question("big.example.test", "TXT"))
            assert reply.header.tc == 0
            assert [s.decode() for s in reply.rr[0].rdata.data] == BIG
            # Over UDP without EDNS: the full upstream answer does not fit 512 bytes.
            cut = await udp_ask(port, DNSRecord.question("big.example.test", "TXT"))
            assert cut.header.tc == 1
            assert cut.rr == []

    run(body())


def test_dead_upstream_is_skipped(dnsmasq: int) -> None:
    async def body() -> None:
        dead = free_port()  # nothing listens: ICMP port unreachable, fails fast
        upstreams = (f"127.0.0.1:{dead}", f"127.0.0.1:{dnsmasq}")
        async with BridgeServer(bridge_config(*upstreams), SOURCE) as server:
            reply = await udp_ask(server.address[1], DNSRecord.question("host.example.test"))
            assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.8"]

    run(body())


def test_silent_upstream_times_out_then_next(dnsmasq: int) -> None:
    async def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))  # receives, never answers
            upstreams = (f"127.0.0.1:{silent.getsockname()[1]}", f"127.0.0.1:{dnsmasq}")
            async with BridgeServer(bridge_config(*upstreams, timeout=0.3), SOURCE) as server:
                started = time.monotonic()
                reply = await udp_ask(server.address[1], DNSRecord.question("host.example.test"))
                assert time.monotonic() - started >= 0.3
                assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.8"]

    run(body())


def test_all_upstreams_failing_is_servfail() -> None:
    async def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            upstreams = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{silent.getsockname()[1]}")
            async with BridgeServer(bridge_config(*upstreams, timeout=0.2), SOURCE) as server:
                reply = await udp_ask(server.address[1], DNSRecord.question("x.example.test"))
                assert reply.header.rcode == 2
                assert QTYPE[reply.q.qtype] == "A"
                assert server.stats.servfail == 1

    run(body())

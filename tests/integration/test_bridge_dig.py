"""The bridge on real loopback sockets, asked by the real ``dig``, on asyncio and uvloop.

Each test body runs in its own ``asyncio.Runner`` with the loop under test, and ends by
checking that no task is left running. Only 127.0.0.1 traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from dnslib import EDNS0, QTYPE, DNSQuestion, DNSRecord

from edgeagent.bridge import BridgeServer, ServerState, StaticNameSource
from edgeagent.config.model import DnsBridgeConfig
from edgeagent.dns.records import (
    a_record,
    aaaa_record,
    ptr_record,
    srv_record,
    txt_record,
)
from edgeagent.dns.wire import StreamFramer, frame
from edgeagent.errors import AddressInUseError, TransportError

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]
DIG = shutil.which("dig")

pytestmark = pytest.mark.skipif(DIG is None, reason="dig (bind9-dnsutils) is not installed")


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux/CPython extra
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture(params=sorted(_loop_factories()))
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    factory = _loop_factories()[request.param]

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            return loop_runner.run(_no_tasks_left(coro))

    return runner


async def _no_tasks_left(coro: Coroutine[Any, Any, T]) -> T:
    result = await coro
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not left, f"tasks left running: {left}"
    return result


def source() -> StaticNameSource:
    return StaticNameSource(
        [
            a_record("edge.local", "10.0.0.5", 120),
            aaaa_record("edge.local", "fd00::5", 120),
            srv_record("web._http._tcp.local", "edge.local", 80, 4500),
            txt_record("web._http._tcp.local", [b"path=/"], 4500),
            ptr_record("_http._tcp.local", "web._http._tcp.local", 4500),
            txt_record("big.local", [b"x" * 250, b"y" * 250, b"z" * 250], 120),
        ],
        live=[a_record("peer.local", "10.0.0.9", 120)],
        live_delay=0.02,
        learn=True,
    )


def config(**overrides: Any) -> DnsBridgeConfig:
    return DnsBridgeConfig(enabled=True, address="127.0.0.1", port=0, **overrides)


@dataclass
class DigResult:
    status: str
    flags: set[str]
    answers: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, data
    text: str = ""


async def dig(port: int, *args: str) -> DigResult:
    assert DIG is not None
    proc = await asyncio.create_subprocess_exec(
        DIG,
        "@127.0.0.1",
        "-p",
        str(port),
        "+tries=1",
        "+time=3",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode()
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    assert status is not None, text + err.decode()
    assert flags is not None, text
    answers: list[tuple[str, str, str]] = []
    section = ""
    for line in text.splitlines():
        if line.startswith(";; ") and "SECTION" in line:
            section = line
            continue
        if "ANSWER" in section and line and not line.startswith(";"):
            name, _ttl, _cls, rtype, data = line.split(None, 4)
            answers.append((name, rtype, data))
    return DigResult(status.group(1), set(flags.group(1).split()), answers, text)


def test_record_types_over_udp_and_tcp(run: Runner[None]) -> None:
    async def body() -> None:
        async with BridgeServer(config(), source()) as server:
            port = server.address[1]
            a = await dig(port, "edge.local")
            assert a.status == "NOERROR"
            assert "aa" in a.flags
            assert a.answers == [("edge.local.", "A", "10.0.0.5")]
            aaaa = await dig(port, "+tcp", "EDGE.local", "AAAA")
            assert aaaa.answers == [("EDGE.local.", "AAAA", "fd00::5")]
            ptr = await dig(port, "-x", "10.0.0.5")
            assert ptr.answers == [("5.0.0.10.in-addr.arpa.", "PTR", "edge.local.")]
            ptr6 = await dig(port, "-x", "fd00::5")
            assert [a[2] for a in ptr6.answers] == ["edge.local."]
            srv = await dig(port, "web._http._tcp.local", "SRV")
            assert srv.answers == [("web._http._tcp.local.", "SRV", "0 0 80 edge.local.")]
            assert "10.0.0.5" in srv.text  # target address in the additional section
            txt = await dig(port, "web._http._tcp.local", "TXT")
            assert txt.answers == [("web._http._tcp.local.", "TXT", '"path=/"')]
            browse = await dig(port, "_http._tcp.local", "PTR")
            assert browse.answers == [("_http._tcp.local.", "PTR", "web._http._tcp.local.")]
            any_ = await dig(port, "+tcp", "web._http._tcp.local", "ANY")
            assert sorted(a[1] for a in any_.answers) == ["SRV", "TXT"]
            assert server.stats.tcp_connections >= 2

    run(body())


def test_rcodes_nxdomain_nodata_refused_and_live(run: Runner[None]) -> None:
    async def body() -> None:
        names = source()
        async with BridgeServer(config(query_timeout=0.2), names) as server:
            port = server.address[1]
            missing = await dig(port, "nobody.local")
            assert missing.status == "NXDOMAIN"
            assert "aa" in missing.flags
            nodata = await dig(port, "edge.local", "MX")
            assert nodata.status == "NOERROR"
            assert nodata.answers == []
            refused = await dig(port, "example.com")
            assert refused.status == "REFUSED"
            live = await dig(port, "peer.local")
            assert live.answers == [("peer.local.", "A", "10.0.0.9")]
            assert ("peer.local", 1) in names.live_queries
            assert server.stats.nxdomain == 1
            assert server.stats.refused == 1
            assert server.stats.live_lookups == 2

    run(body())


def test_bufsize_noedns_and_truncation(run: Runner[None]) -> None:
    async def body() -> None:
        async with BridgeServer(config(), source()) as server:
            port = server.address[1]
            # +ignore shows the truncated UDP reply instead of retrying over TCP.
            cut = await dig(port, "+ignore", "+noedns", "big.local", "TXT")
            assert "tc" in cut.flags
            assert cut.answers == []
            small = await dig(port, "+ignore", "+bufsize=512", "big.local", "TXT")
            assert "tc" in small.flags
            assert "udp: 1232" in small.text  # our OPT, our size
            fits = await dig(port, "+ignore", "+bufsize=4096", "big.local", "TXT")
            assert "tc" not in fits.flags
            assert len(fits.answers) == 1
            # Without +ignore dig retries over TCP and gets everything.
            retried = await dig(port, "+noedns", "big.local", "TXT")
            assert len(retried.answers) == 1
            assert server.stats.truncated >= 2  # the repeat came from the fast path

    run(body())


def test_repeated_queries_hit_the_fast_path(run: Runner[None]) -> None:
    async def body() -> None:
        async with BridgeServer(config(), source()) as server:
            port = server.address[1]
            query = DNSRecord.question("edge.local")
            query.add_ar(EDNS0(udp_len=1232))
            data = bytes(query.pack())
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", port))
                replies = []
                for qid in (1, 2, 3):
                    await loop.sock_sendall(sock, qid.to_bytes(2, "big") + data[2:])
                    replies.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 2))
            assert [int.from_bytes(r[:2], "big") for r in replies] == [1, 2, 3]
            assert server.stats.fastpath_hits == 2
            assert {str(DNSRecord.parse(r).rr[0].rdata) for r in replies} == {"10.0.0.5"}

    run(body())


def test_several_questions_in_one_packet(run: Runner[None]) -> None:
    async def body() -> None:
        async with BridgeServer(config(), source()) as server:
            query = DNSRecord.question("edge.local", "A")
            query.add_question(DNSQuestion("edge.local", QTYPE.AAAA))
            reply = DNSRecord.parse(await udp_exchange(server.address[1], bytes(query.pack())))
            assert sorted(QTYPE[rr.rtype] for rr in reply.rr) == ["A", "AAAA"]

    run(body())


async def udp_exchange(port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, data)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), 2)


def test_tcp_pipelining_and_idle_timeout(run: Runner[None]) -> None:
    async def body() -> None:
        async with BridgeServer(config(), source(), tcp_idle_timeout=0.3) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
            names = ["edge.local", "peer.local", "nobody.local", "edge.local"]
            queries = []
            for qid, name in enumerate(names):
                q = DNSRecord.question(name)
                q.header.id = qid
                queries.append(frame(bytes(q.pack())))
            writer.write(b"".join(queries))  # all at once: pipelined
            framer = StreamFramer()
            replies: list[bytes] = []
            while len(replies) < len(names):
                chunk = await asyncio.wait_for(reader.read(4096), 3)
                assert chunk, "connection closed early"
                replies += framer.feed(chunk)
            by_id = {DNSRecord.parse(r).header.id: DNSRecord.parse(r) for r in replies}
            assert sorted(by_id) == [0, 1, 2, 3]
            assert by_id[1].rr[0].rdata is not None
            assert by_id[2].header.rcode == 3
            # Idle: the server closes the connection after 0.3 s of silence.
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()
            await writer.wait_closed()

    run(body())


def test_address_in_use_is_explained(run: Runner[None]) -> None:
    async def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            cfg = DnsBridgeConfig(enabled=True, address="127.0.0.1", port=port)
            server = BridgeServer(cfg, source())
            with pytest.raises(AddressInUseError) as info:
                await server.start()
            text = str(info.value)
            assert f"127.0.0.1:{port}" in text
            assert "dns_bridge.port" in text
            assert "dns_bridge.enabled: false" in text
            await server.close()

    run(body())


def test_close_is_idempotent_and_cancels_live_queries(run: Runner[None]) -> None:
    async def body() -> None:
        slow = StaticNameSource(live_delay=30.0)
        server = BridgeServer(config(query_timeout=30.0), slow, max_inflight=1)
        await server.start()
        port = server.address[1]
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            for name in ("a.local", "b.local"):
                await loop.sock_sendall(sock, bytes(DNSRecord.question(name).pack()))
            for _ in range(50):
                if server.stats.dropped:
                    break
                await asyncio.sleep(0.01)
        assert server.stats.dropped == 1  # the second one: over max_inflight
        await server.close()
        await server.close()
        assert server.state is ServerState.CLOSED

    run(body())


def test_wildcard_address_refused_in_recursive_mode(run: Runner[None]) -> None:
    async def body() -> None:
        cfg = DnsBridgeConfig(enabled=True, address="0.0.0.0", port=0, recursive=True)
        with pytest.raises(TransportError, match="wildcard address"):
            await BridgeServer(cfg, source()).start()

    run(body())


def test_burst_is_fully_answered_and_record_changes_show_at_once(run: Runner[None]) -> None:
    async def body() -> None:
        names = source()
        async with BridgeServer(config(), names) as server:
            port = server.address[1]
            loop = asyncio.get_running_loop()
            template = bytes(DNSRecord.question("edge.local").pack())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", port))
                # A burst: the protocol drains the socket beyond the datagram it was handed.
                for qid in range(100):  # fits the default receive buffer
                    sock.send(qid.to_bytes(2, "big") + template[2:])
                ids: set[int] = set()
                while len(ids) < 100:
                    reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 3)
                    ids.add(int.from_bytes(reply[:2], "big"))
                assert server.stats.fastpath_hits >= 99
                # A record change bumps the generation: the next answer is fresh, not cached.
                names.set_records([a_record("edge.local", "10.0.0.77", 120)])
                sock.send(template)
                reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 3)
                assert [str(rr.rdata) for rr in DNSRecord.parse(reply).rr] == ["10.0.0.77"]

    run(body())


def test_concurrent_clients_share_one_live_query(run: Runner[None]) -> None:
    async def body() -> None:
        names = StaticNameSource(live=[a_record("peer.local", "10.0.0.9", 120)], live_delay=0.2)
        async with BridgeServer(config(), names) as server:
            port = server.address[1]
            replies = await asyncio.gather(
                *(udp_exchange(port, bytes(DNSRecord.question("peer.local").pack())) for _ in "abc")
            )
            assert [str(DNSRecord.parse(r).rr[0].rdata) for r in replies] == ["10.0.0.9"] * 3
            assert names.live_queries == [("peer.local", 1)]
            assert server.stats.live_lookups == 3

    run(body())


def test_ipv6_loopback(run: Runner[None]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")

    async def body() -> None:
        cfg = DnsBridgeConfig(enabled=True, address="::1", port=0)
        async with BridgeServer(cfg, source()) as server:
            assert DIG is not None
            proc = await asyncio.create_subprocess_exec(
                DIG,
                "@::1",
                "-p",
                str(server.address[1]),
                "+short",
                "edge.local",
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            assert out.decode().split() == ["10.0.0.5"]

    run(body())


def test_tcp_half_close_still_gets_pending_answers(run: Runner[None]) -> None:
    async def body() -> None:
        names = StaticNameSource(live=[a_record("peer.local", "10.0.0.9", 120)], live_delay=0.1)
        async with BridgeServer(config(), names) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
            writer.write(frame(bytes(DNSRecord.question("peer.local").pack())))
            writer.write_eof()  # RFC 7766 §6.2.4: the answer must still come
            data = await asyncio.wait_for(reader.read(), 3)  # until the server closes
            messages = StreamFramer().feed(data)
            assert [str(DNSRecord.parse(m).rr[0].rdata) for m in messages] == ["10.0.0.9"]
            writer.close()
            await writer.wait_closed()

    run(body())


def test_tcp_connections_over_the_limit_are_refused(run: Runner[None]) -> None:
    async def body() -> None:
        async with BridgeServer(config(), source(), max_tcp_connections=2) as server:
            port = server.address[1]
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            third_reader = conns[2][0]
            assert await asyncio.wait_for(third_reader.read(), 3) == b""  # closed at once
            reader, writer = conns[0]
            writer.write(frame(bytes(DNSRecord.question("edge.local").pack())))
            framer = StreamFramer()
            got: list[bytes] = []
            while not got:
                got = framer.feed(await asyncio.wait_for(reader.read(4096), 3))
            assert DNSRecord.parse(got[0]).rr
            assert server.stats.dropped == 1
            for _reader, w in conns:
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()

    run(body())

"""The DNS bridge's asyncio adapter: UDP and TCP sockets around :class:`BridgeCore`.

Theory of operation. The server binds one UDP and one TCP socket to exactly
``dns_bridge.address:dns_bridge.port`` (never a wildcard in recursive mode: no open
resolver). The UDP side is a ``DatagramProtocol`` whose ``datagram_received`` serves
fast-path hits synchronously — a dict look-up and one ``sendto`` — and otherwise runs the core
synchronously too. Only the core's effects that wait (:class:`LiveLookup`, :class:`ForwardUpstream`)
become tasks, owned by the server: named ``edgeagent[bridge].<what>``, at most
``max_inflight`` at once (beyond that the query is dropped and counted, the client retries),
cancelled and awaited on close. Live mDNS queries for the same (name, type) are shared
between the clients asking at the same moment.

TCP (RFC 7766): each connection has a :class:`StreamFramer`; several queries may be pipelined
and are answered as they complete, possibly out of order (§6.2.1.1). A connection is closed
after ``tcp_idle_timeout`` without traffic and nothing pending; reading pauses while
``max_tcp_pending`` queries are in flight or the peer does not read its replies.

Works on the default loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any, cast

from edgeagent.bridge.core import (
    BridgeCore,
    BridgeStats,
    ForwardUpstream,
    LiveLookup,
    LookupKey,
    LookupResult,
    NameSource,
    Reply,
    Transport,
)
from edgeagent.bridge.upstream import Forwarder
from edgeagent.config.model import DnsBridgeConfig
from edgeagent.dns.wire import StreamFramer, frame
from edgeagent.errors import AddressInUseError, TransportError
from edgeagent.resource import Number, TaskOwner

log = logging.getLogger(__name__)

# A source is asked to give up after dns_bridge.query_timeout; this much later we stop
# waiting for it ourselves, so a source that ignores its timeout cannot hold a client.
LIVE_QUERY_GRACE = 0.1
_PORT_ATTEMPTS = 20  # port 0: tries to find a port free for both UDP and TCP
UDP_DRAIN = 64  # datagrams read per readiness event beyond the delivered one; bounds a turn
UDP_RECV_SIZE = 65535  # the largest datagram; a query is far smaller, but never cut one

SendReply = Callable[[bytes | None], None]


class ServerState(Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class BridgeServer(TaskOwner):
    """``async with BridgeServer(config.dns_bridge, source) as server: ...``

    ``config.port`` 0 picks a port free for both UDP and TCP (tests); ``server.address``
    tells which. ``forwarder`` replaces the default :class:`Forwarder` built from
    ``config.upstreams`` in recursive mode. ``clock`` is the time base handed to
    ``NameSource.lookup`` and used for fast-path expiry.
    """

    def __init__(
        self,
        config: DnsBridgeConfig,
        source: NameSource,
        *,
        forwarder: Forwarder | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_inflight: int = 256,
        tcp_idle_timeout: float = 10.0,
        max_tcp_connections: int = 64,
        max_tcp_pending: int = 16,
        fastpath_size: int = 4096,
    ) -> None:
        super().__init__("bridge")
        self.config = config
        self.core = BridgeCore(config, source, fastpath_size=fastpath_size)
        self.state = ServerState.NEW
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_pending = max_tcp_pending
        self._source = source
        self._forwarder = forwarder
        self._clock = clock
        self._max_inflight = max_inflight
        self._max_connections = max_tcp_connections
        self._address: tuple[str, int] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_sock: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[_TcpConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lookups: dict[LookupKey, asyncio.Task[LookupResult | None]] = {}
        self._source_failing = False

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def stats(self) -> BridgeStats:
        return self.core.stats

    def counters(self) -> dict[str, Number]:
        stats = dataclasses.asdict(self.core.stats)
        return {**stats, "in_flight": len(self._tasks), "tcp_open": len(self._connections)}

    def detail(self) -> dict[str, Any]:
        address = self._address or (self.config.address, self.config.port)
        return {"address": address[0], "port": address[1], "recursive": self.config.recursive}

    @property
    def address(self) -> tuple[str, int]:
        """The bound (address, port); only once started."""
        if self._address is None:
            raise RuntimeError("the DNS bridge is not started")
        return self._address

    async def start(self) -> None:
        if self.state is not ServerState.NEW:
            raise RuntimeError(f"cannot start a DNS bridge that is {self.state.value}")
        config = self.config
        _check_address(config)
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = bind_sockets(config.address, config.port)
        port = udp_sock.getsockname()[1]
        try:
            drain_sock = self._udp_sock = udp_sock.dup()  # the protocol's own; see _UdpProtocol
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, drain_sock), sock=udp_sock
            )
            self._tcp = await loop.create_server(lambda: _TcpConnection(self), sock=tcp_sock)
            await self.start_tasks()
        except BaseException:
            # Whatever a transport took over, it closes; the rest we close ourselves.
            if self._udp is not None:
                self._udp.close()
            else:
                udp_sock.close()
            tcp_sock.close()
            if self._udp_sock is not None:
                self._udp_sock.close()
            if self._tcp is not None:
                self._tcp.close()
            raise
        self._address = (config.address, port)
        if config.recursive and self._forwarder is None:
            self._forwarder = Forwarder(
                config.upstreams, config.upstream_timeout, exclude={(config.address, port)}
            )
        self.state = ServerState.RUNNING
        log.info(
            "DNS bridge listening on %s:%d (udp, tcp)%s",
            config.address,
            port,
            ", forwarding other names" if config.recursive else "",
        )

    async def close(self) -> None:
        """Stop listening, close connections, cancel and await owned tasks. Idempotent."""
        if self.state is ServerState.CLOSED:
            return
        self.state = ServerState.CLOSED
        if self._udp is not None:
            self._udp.close()
        if self._udp_sock is not None:
            self._udp_sock.close()
        if self._tcp is not None:
            self._tcp.close()
        for connection in list(self._connections):
            connection.close()
        await self.stop_tasks()  # cancels and awaits the answers and lookups in flight
        if self._tcp is not None:
            await self._tcp.wait_closed()

    # -- used by the protocols -----------------------------------------------------------

    def run_effect(self, step: LiveLookup | ForwardUpstream, send: SendReply) -> bool:
        """Start the task that finishes ``step`` and calls ``send``; False when dropped."""
        if self.state is not ServerState.RUNNING or len(self._tasks) >= self._max_inflight:
            self.core.stats.dropped += 1
            return False
        coro: Coroutine[Any, Any, None]
        if isinstance(step, LiveLookup):
            coro, what = self._answer_live(step, send), "live"
        else:
            coro, what = self._forward(step, send), "forward"
        # A child of the bridge's owner task; counted in self._tasks for the in-flight bound.
        task = self.spawn(coro, what, isolated=True)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def admit(self, connection: _TcpConnection) -> bool:
        if self.state is not ServerState.RUNNING or len(self._connections) >= (
            self._max_connections
        ):
            self.core.stats.dropped += 1
            return False
        self._connections.add(connection)
        self.core.stats.tcp_connections += 1
        return True

    def forget(self, connection: _TcpConnection) -> None:
        self._connections.discard(connection)

    # -- effects -------------------------------------------------------------------------

    async def _answer_live(self, step: LiveLookup, send: SendReply) -> None:
        lookups = [(key, self._shared_lookup(key)) for key in step.lookups]
        results: dict[LookupKey, LookupResult | None] = {}
        for key, task in lookups:
            # shield: one client giving up must not cancel a query others wait for.
            results[key] = await asyncio.shield(task)
        send(self.core.finish_live(step.pending, results, self._clock()))

    def _shared_lookup(self, key: LookupKey) -> asyncio.Task[LookupResult | None]:
        task = self._lookups.get(key)
        if task is None:
            # Shared by every answer waiting for it; _live_query catches its own errors.
            task = self.spawn(self._live_query(key), "mdns-query")
            self._lookups[key] = task
            task.add_done_callback(lambda done: self._drop_lookup(key, done))
        return task

    def _drop_lookup(self, key: LookupKey, task: asyncio.Task[LookupResult | None]) -> None:
        if self._lookups.get(key) is task:
            del self._lookups[key]

    async def _live_query(self, key: LookupKey) -> LookupResult | None:
        name, rtype = key
        timeout = self.config.query_timeout
        try:
            async with asyncio.timeout(timeout + LIVE_QUERY_GRACE):
                result = await self._source.query(name, rtype, timeout)
        except TimeoutError:
            return LookupResult.unknown()
        except Exception:
            self.core.stats.source_errors += 1
            # Once at WARNING with the traceback, then at DEBUG until the source recovers.
            level = logging.DEBUG if self._source_failing else logging.WARNING
            self._source_failing = True
            log.log(level, "live mDNS query for %s type %d failed", name, rtype, exc_info=True)
            return None
        self._source_failing = False
        return result

    async def _forward(self, step: ForwardUpstream, send: SendReply) -> None:
        reply: bytes | None = None
        if self._forwarder is not None:
            try:
                reply = await self._forwarder.forward(step.query)
            except Exception:
                log.warning("forwarding failed", exc_info=True)
        send(self.core.finish_forward(step.pending, reply))


class _UdpProtocol(asyncio.DatagramProtocol):
    """Answers datagrams; reads and sends on its own duplicate of the socket as well.

    Both loops deliver one datagram per readiness event (uvloop's UDP transport polls the fd
    and calls ``recvfrom`` once, like asyncio's). Under load many queries wait in the socket,
    so after each delivered datagram we drain up to :data:`UDP_DRAIN` more ourselves, and
    send replies straight with ``sendto`` (uvloop re-validates the address on every
    ``transport.sendto``). When the socket buffer is full the reply goes through the
    transport, which queues it until the socket is writable.
    """

    def __init__(self, server: BridgeServer, sock: socket.socket) -> None:
        self._server = server
        core = server.core
        self._core = core
        self._stats = core.stats
        self._fast = core.udp_fastpath
        self._fast_entries = core.udp_fastpath.entries
        self._source = core.source
        self._clock = server._clock
        self._sock = sock
        self._buffer = bytearray(UDP_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not subclass asyncio's.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # Nothing but our own slow path can move the generation during this callback.
        self._fast.sync(self._source.generation)
        self._answer(data, addr)
        recvfrom_into = self._sock.recvfrom_into
        buffer = self._buffer
        view = self._view
        for _ in range(UDP_DRAIN):
            try:
                size, addr = recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self._answer(view[:size].tobytes(), addr)

    def _answer(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # The fast path with FastPath.get inlined (the generation is synced per batch): per
        # query this is all the Python that runs. The clock is read on hits only.
        entry = self._fast_entries.get(data[2:])
        if entry is not None and entry[1] > self._clock():
            stats = self._stats
            stats.queries += 1
            stats.fastpath_hits += 1
            self._send(data[:2] + entry[0], addr)
            return
        step = self._core.answer(data, self._clock(), Transport.UDP)
        # A look-up may have changed what the source holds (a cache expiring entries).
        self._fast.sync(self._source.generation)
        if step is None:
            return
        if isinstance(step, Reply):
            self._send(step.data, addr)
            return
        self._server.run_effect(step, lambda reply: self._send_later(reply, addr))

    def _send(self, reply: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self._sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.sendto(reply, addr)  # queued until the socket is writable
        except OSError as exc:
            self.error_received(exc)

    def _send_later(self, reply: bytes | None, addr: tuple[str | Any, int]) -> None:
        transport = self._transport
        if reply is not None and transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for clients that went away; nothing to do for a server.
        log.debug("DNS bridge UDP socket error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: BridgeServer) -> None:
        self._server = server
        self._core = server.core
        self._clock = server._clock
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._pending = 0
        self._write_paused = False
        self._read_paused = False
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._server.admit(self):
            transport.close()  # over the connection limit: a plain FIN, nothing read
            return
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        for message in self._framer.feed(data):
            now = self._clock()
            reply = self._core.fast_reply(message, now, Transport.TCP)
            if reply is not None:
                self._write(reply)
                continue
            step = self._core.answer(message, now, Transport.TCP)
            if step is None:
                continue
            if isinstance(step, Reply):
                self._write(step.data)
            elif self._server.run_effect(step, self._complete):
                self._pending += 1
        self._update_reading()

    def eof_received(self) -> bool:
        # Half-close: keep the write side open to send pending replies (RFC 7766 §6.2.4).
        self._eof = True
        return self._pending > 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._server.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _complete(self, reply: bytes | None) -> None:
        self._pending -= 1
        if reply is not None:
            self._write(reply)
        self._update_reading()
        if self._eof and self._pending == 0 and self._transport is not None:
            self._transport.close()  # the peer half-closed and has all its replies

    def _write(self, reply: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(frame(reply))
            self._arm_idle()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        should_pause = self._write_paused or self._pending >= self._server.max_tcp_pending
        if should_pause and not self._read_paused:
            self._read_paused = True
            transport.pause_reading()
        elif not should_pause and self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._server.tcp_idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle = None
        if self._pending:
            self._arm_idle()
        elif self._transport is not None:
            self._transport.close()


def bind_sockets(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Bound UDP and listening TCP sockets on address:port; errors as TransportError."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    attempts = _PORT_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            udp.bind((address, port))
        except OSError as exc:
            udp.close()
            raise bind_error(exc, address, port, "udp") from exc
        actual = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            tcp.bind((address, actual))
            tcp.listen(128)
        except OSError as exc:
            tcp.close()
            udp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                continue  # the UDP port's TCP twin is taken: pick another
            raise bind_error(exc, address, actual, "tcp") from exc
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise AssertionError("unreachable")  # pragma: no cover


_CONFIG_KEYS = "set dns_bridge.address or dns_bridge.port, or dns_bridge.enabled: false"


def bind_error(exc: OSError, address: str, port: int, proto: str) -> TransportError:
    """Translate a bind failure into an error that says what to do about it."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return AddressInUseError(
            f"DNS bridge cannot listen on {where}/{proto}: address already in use; "
            f"{_typical_owner(address, port)}. See who holds it with "
            f"`ss -lntup 'sport = :{port}'`, then {_CONFIG_KEYS}"
        )
    if exc.errno == errno.EACCES:
        return TransportError(
            f"DNS bridge cannot listen on {where}/{proto}: permission denied; ports below "
            "1024 need root or the CAP_NET_BIND_SERVICE capability (systemd: "
            "AmbientCapabilities=CAP_NET_BIND_SERVICE). Grant it, or "
            f"{_CONFIG_KEYS}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return TransportError(
            f"DNS bridge cannot listen on {where}/{proto}: {address} is not an address of "
            f"this host; {_CONFIG_KEYS}"
        )
    return TransportError(
        f"DNS bridge cannot listen on {where}/{proto}: {exc.strerror or exc}; {_CONFIG_KEYS}"
    )


def _typical_owner(address: str, port: int) -> str:
    if port == 53 and address in ("127.0.0.53", "127.0.0.54"):
        return (
            "systemd-resolved's stub listener owns it (DNSStubListener=no in "
            "/etc/systemd/resolved.conf frees it)"
        )
    if port == 53:
        return (
            "port 53 is usually held by systemd-resolved, dnsmasq (NetworkManager, libvirt, "
            "Pi-hole), unbound or bind9"
        )
    return "another program, or a second edgeagent, holds it"


def _check_address(config: DnsBridgeConfig) -> None:
    try:
        ip = ipaddress.ip_address(config.address)
    except ValueError as exc:
        raise TransportError(
            f"dns_bridge.address must be an IP address, not {config.address!r}"
        ) from exc
    if ip.is_unspecified and config.recursive:
        # Bound to every interface, a forwarding bridge would be an open resolver.
        raise TransportError(
            f"refusing to forward queries on the wildcard address {config.address}: "
            "set dns_bridge.address to one address (127.0.0.53 by default)"
        )

"""The asyncio shell around the responder engine: UDP 5353 sockets, timers, interface changes.

``MdnsService`` is the one async context manager the agent enters. It owns:

* two UDP sockets bound to port 5353 (IPv4, and IPv6 where the kernel has it), shared with
  Avahi or another agent through SO_REUSEADDR + SO_REUSEPORT; IP_PKTINFO / IPV6_RECVPKTINFO
  tell which interface each datagram arrived on, which is what lets answers carry that
  interface's addresses (python-zeroconf cannot, which is why we have our own responder);
* group membership (224.0.0.251, ff02::fb) per selected interface, joined and left as
  interfaces come and go;
* the ``Responder`` engine, fed with ``time.monotonic()`` and the datagrams, whose effects
  (``Send``, ``Renamed``, ``StateChanged``) are carried out here;
* the cache of records seen, and ``resolve()`` that waits on it;
* two supervised loops under its owner task (``resource.TaskOwner``):
  ``edgeagent[mdns].timer`` (the engine's deadlines) and ``edgeagent[mdns].interfaces`` (the
  netlink watcher); either one is restarted with backoff if it crashes.

Receiving uses ``loop.add_reader`` and non-blocking ``recvmsg`` (at most 64 datagrams per
wake-up, so a flood cannot starve the loop); it works on uvloop too. Sending is a
non-blocking ``sendmsg`` with IP_PKTINFO / IPV6_PKTINFO naming the outgoing interface, TTL
and hop limit 255 (RFC 6762 §11), multicast loop on (two agents on one host, and local
lookups, see each other). A send that fails (interface gone, ENOBUFS) is logged once per
interface and error at WARNING and afterwards at DEBUG; it never stops the service.

Closing sends the goodbye packets first, then stops the tasks, leaves the groups and closes
the sockets; ``close()`` is idempotent.

Interface selection: ``MdnsConfig.interfaces`` include/exclude fnmatch patterns, and *exclude
wins* (``net.model.interface_selected``). The default excludes ``lo``; a test that wants ``lo``
passes ``exclude=()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from edgeagent.config.model import MdnsConfig
from edgeagent.dns.records import Record
from edgeagent.errors import AddressInUseError, TransportError
from edgeagent.mdns.cache import Cache
from edgeagent.mdns.responder import (
    MDNS_PORT,
    Effect,
    Renamed,
    Responder,
    ResponderStats,
    ResponderTiming,
    Send,
    StateChanged,
)
from edgeagent.mdns.table import RecordTable
from edgeagent.net.interfaces import select_interfaces, watch_interfaces
from edgeagent.net.model import InterfaceInfo
from edgeagent.resource import Number, TaskOwner

log = logging.getLogger("edgeagent.mdns")

MDNS_GROUP_V4 = "224.0.0.251"
MDNS_GROUP_V6 = "ff02::fb"
RECEIVE_BUFFER = 4 * 1024 * 1024  # NETLAB.md: the ~208 KiB default overflows with 50 agents
MAX_DATAGRAMS_PER_WAKEUP = 64
MAX_DATAGRAM = 9000  # RFC 6762 §17: up to 9000 bytes on jumbo-frame links

# Linux values the socket module may not export.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
SO_RCVBUFFORCE = 33

InterfaceFeed = Callable[[], AsyncIterator[list[InterfaceInfo]]]
RenameHandler = Callable[[Renamed], None]


class MdnsService(TaskOwner):
    """The running mDNS responder and resolver (see the module docstring).

    ``interfaces_feed`` yields interface snapshots (default: ``watch_interfaces``); tests pass
    a fixed list. ``on_rename`` is called with every ``Renamed`` effect, e.g. to persist it.
    """

    def __init__(
        self,
        config: MdnsConfig,
        table: RecordTable,
        *,
        on_rename: RenameHandler | None = None,
        cache: Cache | None = None,
        timing: ResponderTiming | None = None,
        rng: random.Random | None = None,
        interfaces_feed: InterfaceFeed | None = None,
        port: int = MDNS_PORT,
        ipv6: bool = True,
    ) -> None:
        super().__init__("mdns")
        self._config = config
        self._on_rename = on_rename
        self.cache = cache or Cache(max_records=config.cache_size, max_ttl=config.cache_max_ttl)
        self._responder = Responder(
            table, rng=rng or random.Random(), cache=self.cache, timing=timing
        )
        self._feed = interfaces_feed or watch_interfaces
        self._port = port
        self._want_ipv6 = ipv6
        self._sock4: socket.socket | None = None
        self._sock6: socket.socket | None = None
        self._joined: set[tuple[int, int]] = set()  # (family, ifindex)
        self._by_index: dict[int, InterfaceInfo] = {}
        self._by_name: dict[str, InterfaceInfo] = {}
        self._wakeup = asyncio.Event()
        self._cache_changed = asyncio.Event()
        self._cache_generation = self.cache.generation
        self._interfaces_ready = asyncio.Event()
        self._closed = False
        self._started = False
        self._warned: set[tuple[str, int]] = set()
        self._send_errors = 0
        self._foreign_interface_packets = 0

    # ---- lifecycle

    async def start(self) -> None:
        self._open_sockets()
        loop = asyncio.get_running_loop()
        try:
            for sock, family in ((self._sock4, 4), (self._sock6, 6)):
                if sock is not None:
                    loop.add_reader(sock.fileno(), self._on_readable, sock, family)
            await self.start_tasks()
        except BaseException:
            self._closed = True
            self._close_sockets()
            raise
        self._responder.start(time.monotonic())
        self._started = True
        self.supervise(self._run_timer, "timer")
        self.supervise(self._watch_interfaces, "interfaces")

    async def close(self) -> None:
        """Goodbyes first (RFC 6762 §10.1), then tasks, group memberships and sockets."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._execute(self._responder.shutdown(time.monotonic()))
        try:
            await self.stop_tasks()
        finally:
            self._close_sockets()
            self._cache_changed.set()  # release resolve() waiters

    # ---- public API

    @property
    def responder(self) -> Responder:
        return self._responder

    @property
    def table(self) -> RecordTable:
        table = self._responder.table
        assert isinstance(table, RecordTable)
        return table

    @property
    def interfaces(self) -> list[InterfaceInfo]:
        """The selected interfaces mDNS runs on now."""
        return list(self._by_name.values())

    @property
    def stats(self) -> ResponderStats:
        return self._responder.stats

    async def wait_interfaces(self) -> None:
        """Until the first interface snapshot has been applied."""
        await self._interfaces_ready.wait()

    async def update_table(self, table: RecordTable) -> None:
        """Advertise ``table`` from now on (runtime services added or removed)."""
        self._execute(self._responder.update_table(time.monotonic(), table))

    async def resolve(
        self,
        name: str,
        rtype: int,
        timeout: float | None = None,  # noqa: ASYNC109 - running out of time is an answer ([])
        *,
        include_own: bool = True,
    ) -> list[Record]:
        """Records for (name, rtype): our own, else cached, else ask the LAN and wait.

        Waits up to ``timeout`` (default ``mdns.query_timeout``) for an answer to land in the
        cache, re-asking after 1 s, 2 s, 4 s ... (RFC 6762 §5.2) when the timeout is long.
        Returns ``[]`` when nothing answered in time. ``include_own=False`` skips our own
        records, for shared names (``_ssh._tcp.local``) whose other owners we want to hear.
        """
        if include_own:
            own = self._responder.own_records(name, rtype)
            if own:
                return own
        found = self.cache.lookup(time.monotonic(), name, rtype)
        if found or self._closed:
            return found
        limit = self._config.query_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        interval = 1.0
        next_query = loop.time()
        while not self._closed and loop.time() < deadline:
            if loop.time() >= next_query:
                self._execute(self._responder.query(time.monotonic(), name, rtype))
                next_query = loop.time() + interval
                interval *= 2
            event = self._cache_changed  # replaced (and set) whenever the cache changes
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(min(deadline, next_query)):
                    await event.wait()
            found = self.cache.lookup(time.monotonic(), name, rtype)
            if found:
                return found
        return []

    def query(
        self,
        name: str,
        rtype: int,
        *,
        unicast: bool = False,
        families: Sequence[int] = (4, 6),
        suppress_duplicate: bool = False,
    ) -> None:
        """Ask the LAN now, on every interface, whatever the cache holds; answers land in it.

        ``resolve`` stops at the cache; browsing (e.g. mesh discovery) must keep asking so
        that a peer whose announcement was lost is still found. ``unicast`` sets the QU bit
        (RFC 6762 §5.4), for the first question after start-up; ``families`` limits the
        question to IPv4 or IPv6; ``suppress_duplicate`` skips an interface where another
        host just asked the same (RFC 6762 §7.3, for repeated browsing questions).
        """
        if not self._closed:
            now = time.monotonic()
            effects = self._responder.query(
                now,
                name,
                rtype,
                unicast=unicast,
                families=families,
                suppress_duplicate=suppress_duplicate,
            )
            self._execute(effects)

    async def wait_cache_change(self, generation: int, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Until the cache generation differs from ``generation`` (or ``timeout`` passes).

        Returns the generation then current, so a watcher can loop without polling.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.cache.generation == generation and not self._closed:
                    await self._cache_changed.wait()
        return self.cache.generation

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for ``edgeagent status`` / ``info``."""
        stats = self._responder.stats
        return {
            "state": self._responder.state.value,
            "hosts": [f"{h}.local" for h in self.table.hosts],
            "interfaces": {
                i.name: (s.value if (s := self._responder.interface_state(i.name)) else None)
                for i in self.interfaces
            },
            "cached_records": len(self.cache),
            "stats": {
                **dataclasses.asdict(stats),
                "send_errors": self._send_errors,
                "foreign_interface_packets": self._foreign_interface_packets,
            },
        }

    def counters(self) -> dict[str, Number]:
        return {
            **dataclasses.asdict(self._responder.stats),
            "send_errors": self._send_errors,
            "foreign_interface_packets": self._foreign_interface_packets,
            "cached_records": len(self.cache),
        }

    def detail(self) -> dict[str, Any]:
        status = self.status()
        return {"engine": status["state"], "hosts": status["hosts"],
                "interfaces": status["interfaces"]}  # fmt: skip

    def cache_document(self) -> dict[str, list[dict[str, Any]]]:
        """Cached records per interface, JSON-ready (``info --caches``)."""
        result: dict[str, list[dict[str, Any]]] = {}
        for iface, entries in self.cache.entries(time.monotonic()).items():
            result[iface] = [
                {
                    "name": entry.record.name,
                    "type": entry.record.rtype,
                    "ttl": entry.record.ttl,
                    "data": entry.record.data_text,
                    "unique": entry.record.unique,
                    "source": entry.source,
                }
                for entry in entries
            ]
        return result

    # ---- tasks

    async def _run_timer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            deadline = self._responder.next_deadline()
            if deadline is None:
                await self._wakeup.wait()
                continue
            delay = deadline - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(loop.time() + delay):
                        await self._wakeup.wait()
                continue
            self._execute(self._responder.on_timer(time.monotonic()))
            await asyncio.sleep(0)  # never monopolise the loop, whatever the engine asks

    async def _watch_interfaces(self) -> None:
        selection = self._config.interfaces
        async for snapshot in self._feed():
            selected = select_interfaces(snapshot, selection.include, selection.exclude)
            self._apply_interfaces(selected)
            self._interfaces_ready.set()

    # ---- interfaces and groups

    def _apply_interfaces(self, selected: list[InterfaceInfo]) -> None:
        usable = []
        for info in selected:
            if self._sock6 is None and info.ipv6:
                info = InterfaceInfo(info.name, info.index, info.ipv4, ())  # noqa: PLW2901
            if info.addresses:
                usable.append(info)
        wanted: set[tuple[int, int]] = set()
        for info in usable:
            if info.ipv4 and self._sock4 is not None:
                wanted.add((4, info.index))
            if info.ipv6 and self._sock6 is not None:
                wanted.add((6, info.index))
        for family, index in sorted(self._joined - wanted):
            self._membership(family, index, join=False)
        for family, index in sorted(wanted - self._joined):
            self._membership(family, index, join=True)
        old_names = set(self._by_name)
        self._by_index = {info.index: info for info in usable}
        self._by_name = {info.name: info for info in usable}
        if set(self._by_name) != old_names:
            log.info("mDNS interfaces: %s", ", ".join(sorted(self._by_name)) or "none")
        # Goodbyes for removed interfaces are attempted before the membership is gone from
        # the engine's view; the kernel may already have dropped the interface (logged once).
        self._execute(self._responder.set_interfaces(time.monotonic(), usable))

    def _membership(self, family: int, index: int, *, join: bool) -> None:
        try:
            if family == 4 and self._sock4 is not None:
                mreqn = struct.pack(
                    "=4s4si", socket.inet_aton(MDNS_GROUP_V4), socket.inet_aton("0.0.0.0"), index
                )
                option = socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP
                self._sock4.setsockopt(socket.IPPROTO_IP, option, mreqn)
            elif family == 6 and self._sock6 is not None:
                mreq6 = struct.pack(
                    "=16sI", socket.inet_pton(socket.AF_INET6, MDNS_GROUP_V6), index
                )
                option = socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP
                self._sock6.setsockopt(socket.IPPROTO_IPV6, option, mreq6)
        except OSError as exc:
            if join and exc.errno == errno.EADDRINUSE:  # already a member
                self._joined.add((family, index))
                return
            level = logging.WARNING if join else logging.DEBUG
            log.log(level, "cannot %s mDNS group on ifindex %d (IPv%d): %s",
                    "join" if join else "leave", index, family, exc)  # fmt: skip
            if not join:
                self._joined.discard((family, index))
            return
        if join:
            self._joined.add((family, index))
        else:
            self._joined.discard((family, index))

    # ---- receive

    def _on_readable(self, sock: socket.socket, family: int) -> None:
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                data, ancdata, _flags, address = sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(64))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._log_once("recv", exc)
                return
            index, to_group = _arrival(ancdata)
            info = self._by_index.get(index) if index is not None else None
            if info is None:
                self._foreign_interface_packets += 1  # not a selected interface
                continue
            src = (str(address[0]).split("%", 1)[0], int(address[1]))
            now = time.monotonic()
            effects = self._responder.on_packet(
                now, info.name, family, src, data, to_group=to_group
            )
            self._execute(effects)

    # ---- effects

    def _execute(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect)
            elif isinstance(effect, Renamed):
                log.warning("mDNS name conflict: %s %r is now %r",
                            effect.kind.value, effect.old, effect.new)  # fmt: skip
                if self._on_rename is not None:
                    try:
                        self._on_rename(effect)
                    except Exception:
                        log.exception("rename handler failed")
            elif isinstance(effect, StateChanged):
                state = effect.state.value if effect.state else "gone"
                log.debug("mDNS on %s: %s", effect.iface, state)
        if self.cache.generation != self._cache_generation:
            self._cache_generation = self.cache.generation
            event, self._cache_changed = self._cache_changed, asyncio.Event()
            event.set()
        self._wakeup.set()

    def _send(self, effect: Send) -> None:
        info = self._by_name.get(effect.iface)
        index = info.index if info else _index_of(effect.iface)
        if index is None:
            return
        try:
            if effect.family == 4 and self._sock4 is not None:
                dest4 = effect.dest or (MDNS_GROUP_V4, self._port)
                source = info.ipv4[0] if info and info.ipv4 else "0.0.0.0"
                pktinfo = struct.pack(
                    "=I4s4s", index, socket.inet_aton(source), socket.inet_aton("0.0.0.0")
                )
                self._sock4.sendmsg(
                    [effect.payload], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, dest4
                )
            elif effect.family == 6 and self._sock6 is not None:
                host, port = effect.dest or (MDNS_GROUP_V6, self._port)
                pktinfo6 = struct.pack("=16sI", bytes(16), index)
                self._sock6.sendmsg(
                    [effect.payload],
                    [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo6)],
                    0,
                    (host, port, 0, index),
                )
        except OSError as exc:
            self._send_errors += 1
            self._log_once(effect.iface, exc)

    def _log_once(self, where: str, exc: OSError) -> None:
        key = (where, exc.errno or 0)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(level, "mDNS socket error on %s: %s", where, exc)

    # ---- sockets

    def _open_sockets(self) -> None:
        try:
            self._sock4 = _open_socket(socket.AF_INET, self._port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"UDP port {self._port} is taken by a socket without SO_REUSEPORT "
                    "(another mDNS stack?); stop it or set its disallow-other-stacks=no"
                ) from exc
            raise TransportError(f"cannot open the mDNS IPv4 socket: {exc}") from exc
        if self._want_ipv6 and socket.has_ipv6:
            try:
                self._sock6 = _open_socket(socket.AF_INET6, self._port)
            except OSError as exc:  # IPv6 disabled: run IPv4 only
                log.info("mDNS over IPv6 unavailable: %s", exc)
                self._sock6 = None

    def _close_sockets(self) -> None:
        for family, index in sorted(self._joined):
            self._membership(family, index, join=False)
        loop = asyncio.get_running_loop()
        for sock in (self._sock4, self._sock6):
            if sock is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                sock.close()
        self._sock4 = self._sock6 = None


# --------------------------------------------------------------------------------------------
# Private helpers


def _open_socket(family: int, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:  # above net.core.rmem_max needs CAP_NET_ADMIN; fall back to the capped size
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)  # RFC 6762 §11
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.bind(("0.0.0.0", port))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            sock.bind(("::", port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _arrival(ancdata: list[tuple[int, int, bytes]]) -> tuple[int | None, bool]:
    """(interface index, sent to a multicast group?) from the PKTINFO control message."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            index, _spec_dst, dest = struct.unpack_from("=i4s4s", data)
            return int(index), 224 <= dest[0] <= 239  # in_pktinfo.ipi_addr: header dest
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 20:
            dest6, index = struct.unpack_from("=16sI", data)
            return int(index), dest6[0] == 0xFF
    return None, True


def _index_of(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None

"""The mesh's asyncio adapter: one authenticated UDP link per cluster, discovery, requests.

Theory of operation: each configured cluster gets a ``ClusterLink``. Datagrams arriving on its
socket are opened by the cluster's codec (a bad tag, another cluster or garbage is counted and
dropped), screened by the replay guard (an old epoch earns the sender a fresh challenge), decoded
into messages and handed to the pure ``Membership`` core; the effects it returns (``SendTo``,
``Notify``) are carried out here. Discovery strategies run as tasks and report candidates to the
core. Remote requests and challenges are handled here, beside the core, because they are about
the link rather than membership.

A cluster without a key is observe-only: its socket is never opened, discovery still runs, and
every device it finds is listed as ``seen`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Self

from edgeagent.config.model import ClusterConfig, MeshConfig
from edgeagent.errors import EdgeAgentError, ProtocolError, TransportError
from edgeagent.mesh.auth import (
    AuthError,
    ChallengeBook,
    ClusterCodec,
    OpenedFrame,
    ReplayGuard,
    Verdict,
)
from edgeagent.mesh.discovery import Candidate, DiscoveryContext, load_strategy
from edgeagent.mesh.membership import (
    EventKind,
    MemberEvent,
    Membership,
    MemberView,
    Notify,
    SendTo,
    SwimTiming,
)
from edgeagent.mesh.messages import (
    Challenge,
    ChallengeResponse,
    Join,
    MemberState,
    Message,
    Request,
    Response,
    decode,
    encode,
    encoded_size,
)
from edgeagent.mesh.roles import role_table
from edgeagent.net.model import interface_selected
from edgeagent.resource import AsyncResource

log = logging.getLogger("edgeagent.mesh")

Address = tuple[str, int]
Held = tuple[OpenedFrame, list[Message], Address]  # a frame waiting for its sender's answer

MAX_PENDING_REQUESTS = 256
MAX_HANDLING = 32
MAX_SEEN = 1024
ADDRESS_CHECK_INTERVAL = 2.0  # seconds between looks at our own interface addresses
MAX_HELD = 256  # unverified senders whose latest frames wait for their challenge answer
HELD_PER_SENDER = 6  # a join is several datagrams (Sync chunks with the Join, then Meta)
MAX_DATAGRAM = 9000  # larger datagrams are not ours: drop before spending an HMAC on them
MAX_REQUEST_BODY = MAX_DATAGRAM - 256  # leaves room for the frame header, tag and gossip


class PeerGoneError(EdgeAgentError):
    """The member a request is for is dead, has left, or was never a member."""


class RequestTimeout(EdgeAgentError, TimeoutError):
    """No response within the request's timeout."""


class RemoteError(EdgeAgentError):
    """The peer answered the request with an error."""


class RequestTooLarge(EdgeAgentError, ValueError):
    """A request that does not fit one datagram a peer accepts (``MAX_REQUEST_BODY``)."""


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who sent a remote request: a member of ``cluster`` whose frame carried the cluster's
    tag, so ``sender`` (its device id) is authenticated. Handlers decide with it, e.g. the
    principal ``peer:<cluster>`` for a remote intent."""

    sender: str
    cluster: str
    address: Address


RequestHandler = Callable[[RequestContext, Any], Awaitable[Any]]


@dataclass(slots=True)
class LinkStats:
    datagrams: int = 0
    accepted: int = 0
    dropped_malformed: int = 0
    dropped_auth: int = 0
    dropped_other_cluster: int = 0
    dropped_replay: int = 0
    dropped_undecodable: int = 0
    dropped_unkeyed: int = 0
    challenges_sent: int = 0
    challenges_passed: int = 0
    sent: int = 0
    send_errors: int = 0
    requests_sent: int = 0
    requests_served: int = 0
    requests_rejected: int = 0


@dataclass(slots=True)
class Seen:
    candidate: Candidate
    last_seen: float
    reason: str


@dataclass(slots=True)
class _PendingRequest:
    device_id: str
    future: asyncio.Future[Any]
    sent_at: float = field(default_factory=time.monotonic)


class ClusterLink(AsyncResource):
    """One cluster: its socket, codec, replay guard, membership core and discovery task."""

    def __init__(
        self,
        cluster: ClusterConfig,
        *,
        self_id: str,
        hostname: str,
        epoch: int,
        meta: Mapping[str, Any],
        context: DiscoveryContext,
        handlers: Mapping[str, RequestHandler],
        rng: random.Random | None = None,
        bind_address: str = "0.0.0.0",
    ) -> None:
        self.cluster = cluster
        self.self_id = self_id
        self.stats = LinkStats()
        self._context = context
        self._handlers = handlers
        self._bind = bind_address
        self._rng = rng or random.Random()
        self._keyed = cluster.key is not None
        self._codec = (
            ClusterCodec(cluster.name, cluster.key, self_id=self_id, epoch=epoch)
            if cluster.key is not None
            else None
        )
        self._guard = ReplayGuard()
        self._challenges = ChallengeBook()
        self.membership = Membership(
            self_id,
            hostname,
            cluster.port,
            timing=timing_from(cluster),
            rng=self._rng,
            meta=dict(meta),
        )
        self.seen: dict[str, Seen] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._children: list[asyncio.Task[None]] = []
        self._wakeup = asyncio.Event()
        self._pending: dict[int, _PendingRequest] = {}
        self._held: dict[str, deque[Held]] = {}
        self._addresses_checked = 0.0
        self._request_ids = itertools.count(1)
        self._handling = 0
        self._listeners: list[Callable[[MemberEvent], None]] = []
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        if self._keyed:
            sock = self._open_socket()
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _LinkProtocol(self), sock=sock
            )
            self._refresh_addresses(time.monotonic())
            self._execute(self.membership.start(time.monotonic()))
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        name = self.cluster.name
        strategy = load_strategy(self.cluster, self._context)
        self._children.append(
            self._tasks.create_task(
                strategy.run(self._on_candidate), name=f"edgeagent[mesh:{name}].discovery"
            )
        )
        if self._keyed:
            self._children.append(
                self._tasks.create_task(self._run_timer(), name=f"edgeagent[mesh:{name}].timer")
            )
        return self

    async def close(self) -> None:
        """Leave gracefully (gossiped), then stop tasks and close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._transport is not None:
            self._execute(self.membership.leave(time.monotonic()))
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(PeerGoneError("the mesh link is closing"))
        self._pending.clear()
        tasks, self._tasks = self._tasks, None
        try:
            if tasks is not None:
                for task in self._children:
                    task.cancel()
                await tasks.__aexit__(None, None, None)
        finally:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((self._bind, self.cluster.port))
        except OSError as exc:
            sock.close()
            raise TransportError(
                f"mesh cluster {self.cluster.name!r}: cannot bind UDP port {self.cluster.port}: "
                f"{exc.strerror or exc}; change mesh.clusters[].port for this cluster"
            ) from exc
        sock.setblocking(False)
        return sock

    # -- the public view -----------------------------------------------------------------
    def members(self) -> list[MemberView]:
        return self.membership.members() if self._keyed else []

    def add_listener(self, listener: Callable[[MemberEvent], None]) -> None:
        self._listeners.append(listener)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        if self._keyed:
            self._execute(self.membership.set_meta(time.monotonic(), dict(meta)))

    async def request(self, device_id: str, method: str, body: Any, timeout: float) -> Any:  # noqa: ASYNC109
        """Send ``method(body)`` to member ``device_id`` and wait for its answer."""
        if not self._keyed:
            raise PeerGoneError(
                f"cluster {self.cluster.name!r} has no key: this device only observes it"
            )
        view = self._member(device_id)
        if view is None or view.state not in (MemberState.ALIVE, MemberState.SUSPECT):
            state = "not a member" if view is None else view.state.value
            raise PeerGoneError(f"{device_id} in cluster {self.cluster.name!r} is {state}")
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise EdgeAgentError("too many requests in flight; try again shortly")
        request_id = next(self._request_ids)
        size = encoded_size(Request(request_id, method, body))
        if size > MAX_REQUEST_BODY:
            # The peer would drop the datagram unread, and we would only see a timeout.
            raise RequestTooLarge(
                f"{method!r} request of {size} bytes does not fit one datagram "
                f"(at most {MAX_REQUEST_BODY})"
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _PendingRequest(device_id, future)
        self.stats.requests_sent += 1
        try:
            address = _address_of(view)
            if address is None:
                raise PeerGoneError(f"{device_id}: no address known yet; try again shortly")
            self._send(address, (Request(request_id, method, body),))
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as exc:
            raise RequestTimeout(
                f"{device_id} did not answer {method!r} within {timeout:g}s"
            ) from exc
        finally:
            self._pending.pop(request_id, None)

    def _member(self, device_id: str) -> MemberView | None:
        for view in self.members():
            if view.device_id == device_id:
                return view
        return None

    # -- inputs ----------------------------------------------------------------------------
    def _on_candidate(self, candidate: Candidate) -> None:
        if candidate.device_id == self.self_id:
            return
        now = time.monotonic()
        key = candidate.device_id or ",".join(candidate.addresses)
        if not self._keyed:
            reason = "this device has no key for the cluster (observe-only)"
        elif candidate.observe_only:
            reason = "it has no key for the cluster (observe-only)"
        else:
            reason = "discovered; no authenticated frame from it yet"
        if key not in self.seen and len(self.seen) >= MAX_SEEN:
            oldest = min(self.seen, key=lambda k: self.seen[k].last_seen)
            del self.seen[oldest]
        self.seen[key] = Seen(candidate, now, reason)
        # The peer link is IPv4 for now (one AF_INET socket per cluster); IPv6 candidates,
        # link-local ones with their %scope included, are listed but not dialled.
        reachable = tuple(a for a in candidate.addresses if _is_ipv4(a))
        if self._keyed and reachable and not candidate.observe_only:
            self._execute(
                self.membership.discovered(now, reachable, candidate.port, candidate.device_id)
            )

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Open, screen, then deliver one datagram (the receive rule of docs/mesh.md)."""
        stats = self.stats
        stats.datagrams += 1
        codec = self._codec
        if codec is None:
            stats.dropped_unkeyed += 1
            return
        if len(data) > MAX_DATAGRAM:
            stats.dropped_malformed += 1
            return
        try:
            frame = codec.open(data)
        except AuthError as exc:
            if exc.reason == "malformed":
                stats.dropped_malformed += 1
            elif exc.reason == "other_cluster":
                stats.dropped_other_cluster += 1
            else:
                stats.dropped_auth += 1
            return
        if frame.own or frame.sender == self.self_id:
            return
        verdict = self._guard.check(frame)
        if verdict is Verdict.REPLAY:
            stats.dropped_replay += 1
            return
        try:
            messages = decode(frame.body)
        except ProtocolError:
            stats.dropped_undecodable += 1
            return
        now = time.monotonic()
        sender = frame.sender
        # Challenges are answered whatever the verdict (rate-limited): that is how a peer that
        # does not know our epoch yet comes to trust us.
        for message in messages:
            if isinstance(message, Challenge) and self._challenges.may_answer(now, sender):
                self._send(addr, (ChallengeResponse(message.nonce),))
        for message in messages:
            if isinstance(message, ChallengeResponse) and self._challenges.verify(
                now, sender, message.nonce
            ):
                # A fresh nonce answered in an authenticated frame: live, holds the key.
                self._guard.accept_epoch(sender, frame.epoch, frame.seq)
                stats.challenges_passed += 1
                for held_frame, held_messages, held_addr in self._held.pop(sender, ()):
                    # The frames that made us ask, from this same verified run: deliver them
                    # now (once: the guard marks them seen) instead of waiting for retries.
                    if (
                        held_frame.epoch == frame.epoch
                        and self._guard.check(held_frame) is Verdict.ACCEPT
                    ):
                        self._deliver(now, sender, held_addr, held_messages)
                # If those frames did not make it a member (a Join or Sync does), join it; the
                # core waits a moment first when gossip is likely to introduce it anyway.
                self._execute(self.membership.discovered(now, (addr[0],), addr[1], sender))
                return
        if verdict is Verdict.NEEDS_CHALLENGE:
            # Unknown sender, or an epoch we have not verified (a restart, or a replay). Keep
            # its latest frame: delivered if the sender proves it is live in that epoch.
            if sender in self._held or len(self._held) < MAX_HELD:
                _hold(self._held.setdefault(sender, deque()), (frame, messages, addr))
            nonce = self._challenges.issue(now, sender)
            if nonce is not None:
                stats.challenges_sent += 1
                self._send(addr, (Challenge(nonce),))
            return
        self._deliver(now, sender, addr, messages)

    def _deliver(self, now: float, sender: str, addr: Address, messages: list[Message]) -> None:
        """Hand an accepted frame's messages to the request table and the membership core."""
        self.stats.accepted += 1
        self.seen.pop(sender, None)
        for message in messages:
            if isinstance(message, Challenge | ChallengeResponse):
                continue
            if isinstance(message, Request):
                self._serve(sender, addr, message)
            elif isinstance(message, Response):
                self._complete(sender, message)
            else:
                self._execute(self.membership.on_message(now, sender, addr, message))

    def _serve(self, sender: str, addr: Address, request: Request) -> None:
        handler = self._handlers.get(request.method)
        if handler is None or self._tasks is None or self._handling >= MAX_HANDLING:
            self.stats.requests_rejected += 1
            reason = f"unknown method {request.method!r}" if handler is None else "busy: try again"
            self._send(addr, (Response(request.request_id, False, reason),))
            return
        self._handling += 1
        self._tasks.create_task(
            self._answer(handler, sender, addr, request),
            name=f"edgeagent[mesh:{self.cluster.name}].request",
        )

    async def _answer(
        self, handler: RequestHandler, sender: str, addr: Address, request: Request
    ) -> None:
        try:
            body = await handler(RequestContext(sender, self.cluster.name, addr), request.body)
            response = Response(request.request_id, True, body)
            self.stats.requests_served += 1
        except EdgeAgentError as exc:
            response = Response(request.request_id, False, str(exc))
        except Exception:
            log.exception("mesh request %s from %s failed", request.method, sender)
            response = Response(request.request_id, False, f"{request.method} failed")
        finally:
            self._handling -= 1
        self._send(addr, (response,))

    def _complete(self, sender: str, response: Response) -> None:
        pending = self._pending.get(response.request_id)
        if pending is None or pending.device_id != sender or pending.future.done():
            return
        if response.ok:
            pending.future.set_result(response.body)
        else:
            pending.future.set_exception(RemoteError(f"{sender}: {response.body}"))

    # -- effects ---------------------------------------------------------------------------
    def _execute(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, SendTo):
                self._send(effect.addr, tuple(effect.messages))
            elif isinstance(effect, Notify):
                self._on_event(effect.event)
        self._wakeup.set()

    def _on_event(self, event: MemberEvent) -> None:
        if event.kind in (EventKind.DEAD, EventKind.LEFT):
            for pending in self._pending.values():
                if pending.device_id == event.device_id and not pending.future.done():
                    pending.future.set_exception(
                        PeerGoneError(f"{event.device_id} is {event.kind}")
                    )
        log.info("mesh %s: %s %s", self.cluster.name, event.device_id, event.kind)
        for listener in self._listeners:
            listener(event)

    def _send(self, addr: Address, messages: tuple[Message, ...]) -> None:
        if self._transport is None or self._codec is None:
            return
        try:
            self._transport.sendto(self._codec.seal(0, encode(messages)), addr)
            self.stats.sent += 1
        except (OSError, ValueError):
            # An unreachable or malformed address is that peer's problem, never the link's:
            # uvloop raises ValueError for addresses of another family.
            self.stats.send_errors += 1

    def _refresh_addresses(self, now: float) -> None:
        """Gossip our own IPv4 addresses on the cluster's interfaces, so a member that hears
        of us only through others still knows where we are (a DHCP change bumps it)."""
        self._addresses_checked = now
        mdns = self._context.mdns
        if mdns is None:
            return
        selected = self.cluster.interfaces
        addresses = [
            address
            for iface in mdns.interfaces
            if interface_selected(iface.name, selected.include, selected.exclude)
            for address in iface.ipv4
        ]
        if addresses:
            self._execute(self.membership.set_addresses(now, addresses))

    async def _run_timer(self) -> None:
        while True:
            if time.monotonic() - self._addresses_checked >= ADDRESS_CHECK_INTERVAL:
                self._refresh_addresses(time.monotonic())
            deadline = self.membership.next_deadline()
            self._wakeup.clear()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                self._execute(self.membership.on_timer(now))
                continue
            with contextlib.suppress(TimeoutError):
                wait = ADDRESS_CHECK_INTERVAL if deadline is None else deadline - now
                async with asyncio.timeout(min(wait, ADDRESS_CHECK_INTERVAL)):
                    await self._wakeup.wait()


def _hold(held: deque[Held], item: Held) -> None:
    """Keep ``item`` among one unverified sender's held frames, at most ``HELD_PER_SENDER``.

    When full, the oldest frame without a ``Join`` makes room: a join at 50 peers is four
    frames (Sync chunks, then Meta), and a ping arriving with them used to push the Join out,
    which left the join to its retry a second later.
    """
    if len(held) >= HELD_PER_SENDER:
        victim = next(
            (f for f in held if not any(isinstance(m, Join) for m in f[1])),
            held[0],
        )
        held.remove(victim)
    held.append(item)


class _LinkProtocol(asyncio.DatagramProtocol):
    def __init__(self, link: ClusterLink) -> None:
        self._link = link

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._link.datagram_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self._link.stats.send_errors += 1


class MeshService(AsyncResource):
    """Every configured cluster, entered and closed together; the view the agent shows."""

    def __init__(
        self,
        config: MeshConfig,
        *,
        self_id: str,
        hostname: str,
        epoch: int,
        meta: Mapping[str, Any],
        context: DiscoveryContext,
        handlers: Mapping[str, RequestHandler] | None = None,
    ) -> None:
        self.config = config
        self.self_id = self_id
        self.handlers: dict[str, RequestHandler] = dict(handlers or {})
        self.links = [
            ClusterLink(
                cluster,
                self_id=self_id,
                hostname=hostname,
                epoch=epoch,
                meta=cluster_meta(meta, cluster),
                context=context,
                handlers=self.handlers,
            )
            for cluster in (config.clusters if config.enabled else ())
        ]
        self.events: deque[tuple[str, MemberEvent]] = deque(maxlen=1000)
        for link in self.links:
            link.add_listener(functools.partial(self._record, link.cluster.name))
        self._stack = contextlib.AsyncExitStack()

    def _record(self, cluster: str, event: MemberEvent) -> None:
        self.events.append((cluster, event))

    async def start(self) -> None:
        await self._stack.__aenter__()
        try:
            for link in self.links:
                await self._stack.enter_async_context(link)
        except BaseException:
            await self._stack.aclose()
            raise

    async def close(self) -> None:
        """Close every link (each leaves its cluster first), in reverse order. Idempotent."""
        await self._stack.aclose()

    def link(self, cluster: str | None) -> ClusterLink:
        if cluster is None and len(self.links) == 1:
            return self.links[0]
        for link in self.links:
            if link.cluster.name == cluster:
                return link
        names = ", ".join(link.cluster.name for link in self.links) or "none"
        raise EdgeAgentError(f"no cluster {cluster!r} (configured: {names})")

    async def request(
        self,
        device_id: str,
        method: str,
        body: Any,
        *,
        cluster: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Any:
        """Send ``method(body)`` to a member (see ``locate`` for how it is found)."""
        name, device = self.locate(device_id, cluster)
        return await self.link(name).request(device, method, body, timeout)

    def locate(self, member: str, cluster: str | None = None) -> tuple[str, str]:
        """``(cluster, device_id)`` of ``member``, a device id or, failing that, a hostname.

        Without ``cluster``, the cluster that knows the member is used (an alive or suspect
        membership first); one that several clusters know as a live member is ambiguous.
        Raises ``PeerGoneError`` when no cluster knows it, and ``EdgeAgentError`` naming the
        clusters when the choice is not clear.
        """
        links = [self.link(cluster)] if cluster is not None else self.links
        found: list[tuple[ClusterLink, MemberView]] = []
        for link in links:
            views = [v for v in link.members() if v.device_id == member]
            views = views or [v for v in link.members() if v.hostname == member]
            found.extend((link, view) for view in views if view.device_id != self.self_id)
        live = [f for f in found if f[1].state in (MemberState.ALIVE, MemberState.SUSPECT)]
        candidates = live or found
        ids = {view.device_id for _, view in candidates}
        if len(ids) > 1:
            raise EdgeAgentError(f"{member!r} names several devices: {', '.join(sorted(ids))}")
        clusters = sorted({link.cluster.name for link, _ in candidates})
        if len(clusters) > 1:
            raise EdgeAgentError(
                f"{member} is a member of several clusters ({', '.join(clusters)}); "
                "choose one with cluster"
            )
        if candidates:
            return clusters[0], candidates[0][1].device_id
        if len(links) == 1:  # the link's request says what it knows (observe-only, ...)
            return links[0].cluster.name, member
        names = ", ".join(link.cluster.name for link in self.links) or "none"
        raise PeerGoneError(f"{member} is not a member of any cluster (configured: {names})")

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        """Share new metadata (e.g. after a runtime service change) with every cluster."""
        for link in self.links:
            link.set_meta(cluster_meta(meta, link.cluster))

    def peers_document(self) -> list[dict[str, Any]]:
        """``edgeagent peers --json``: members and seen devices of every cluster."""
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        for link in self.links:
            members = link.members()
            holders = self._holders(link)
            for view in members:
                if view.device_id == self.self_id:
                    continue
                rows.append(
                    {
                        "device_id": view.device_id,
                        "hostname": view.hostname,
                        "cluster": link.cluster.name,
                        "state": view.state.value,
                        "addresses": list(view.addresses),
                        "port": view.port,
                        "incarnation": view.incarnation,
                        "last_seen": round(now - view.last_seen, 3) if view.last_seen else None,
                        "rtt_ms": round(view.rtt * 1000, 2) if view.rtt is not None else None,
                        "offers": list(view.meta.get("offers", [])),
                        "services": list(view.meta.get("services", [])),
                        "roles": sorted(r for r, h in holders.items() if h == view.device_id),
                    }
                )
            member_ids = {m.device_id for m in members}
            for key, seen in link.seen.items():
                if key in member_ids:
                    continue
                candidate = seen.candidate
                rows.append(
                    {
                        "device_id": candidate.device_id,
                        "hostname": candidate.hostname,
                        "cluster": link.cluster.name,
                        "state": "seen",
                        "addresses": list(candidate.addresses),
                        "port": candidate.port,
                        "last_seen": round(now - seen.last_seen, 3),
                        "reason": seen.reason,
                    }
                )
        return rows

    def self_roles(self) -> dict[str, list[str]]:
        """Roles this device holds, per cluster."""
        out: dict[str, list[str]] = {}
        for link in self.links:
            holders = self._holders(link)
            out[link.cluster.name] = sorted(r for r, h in holders.items() if h == self.self_id)
        return out

    def _holders(self, link: ClusterLink) -> dict[str, str | None]:
        """Who holds each role of ``link``'s cluster, as this device sees the alive members."""
        eligible = {
            m.device_id: list(m.meta.get("roles", []))
            for m in link.members()
            if m.state is MemberState.ALIVE
        }
        eligible[self.self_id] = list(link.cluster.roles)
        return role_table(sorted({r for roles in eligible.values() for r in roles}), eligible)

    def status(self) -> dict[str, Any]:
        return {
            link.cluster.name: {
                "keyed": link.cluster.key is not None,
                "port": link.cluster.port,
                "strategy": link.cluster.strategy,
                "members": sum(1 for m in link.members() if m.state is MemberState.ALIVE),
                "incarnation": link.membership.incarnation,
                "local_health": link.membership.local_health,
                "stats": asdict(link.stats),
            }
            for link in self.links
        }


def cluster_meta(meta: Mapping[str, Any], cluster: ClusterConfig) -> dict[str, Any]:
    """What a member tells one cluster about itself: services plus that cluster's offers/roles."""
    return {**meta, "offers": list(cluster.offers), "roles": list(cluster.roles)}


def timing_from(cluster: ClusterConfig) -> SwimTiming:
    return SwimTiming(
        probe_interval=cluster.probe_interval,
        probe_timeout=cluster.probe_timeout,
        indirect_checks=cluster.indirect_checks,
        suspicion_mult=cluster.suspicion_mult,
        gossip_interval=cluster.gossip_interval,
        gossip_fanout=cluster.gossip_fanout,
        push_pull_interval=cluster.push_pull_interval,
        reap_after=cluster.reap_after,
        suspicion_max_mult=cluster.suspicion_max_mult,
        retransmit_mult=cluster.retransmit_mult,
        max_local_health=cluster.max_local_health,
        rejoin_interval=cluster.rejoin_interval,
        rejoin_max_interval=cluster.rejoin_max_interval,
        join_defer=cluster.join_defer,
    )


def _is_ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False


def _address_of(view: MemberView) -> Address | None:
    """Where to reach a member; None for one known only from gossip so far."""
    return (view.addresses[0], view.port) if view.addresses else None

"""The mesh's asyncio adapter: one authenticated UDP link per cluster, discovery, requests.

Theory of operation: each configured cluster gets a ``ClusterLink``, a ``TaskOwner`` whose
tasks (``edgeagent[mesh:<cluster>].discovery``, ``.timer``, ``.request``) live in the link's
own group. The link is thin: it reads datagrams from its socket and candidates from its
discovery strategy and feeds them, with ``now`` from its injected clock, to the pure
``LinkCore`` (``edgeagent.mesh.link``: frame screening, challenges, epochs, held frames, the
seen table, request admission), which holds the cluster's ``Membership`` core. The link
carries out the effects they return: ``SendTo`` (seal and send one datagram), ``Notify`` (a
member event for the listeners), ``ServeRequest`` (run a handler as a task, send its answer)
and ``CompleteRequest`` (resolve one of our pending requests). The timer loop calls
``Membership.on_timer`` when its deadline has passed. Discovery and the timer are supervised:
a crash restarts the loop with backoff (counted in ``report()``) instead of ending the agent.

A cluster without a key is observe-only: its socket is never opened, discovery still runs, and
every device it finds is listed as ``seen`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgeagent.config.model import ClusterConfig, MeshConfig
from edgeagent.errors import EdgeAgentError, TransportError
from edgeagent.mesh.auth import ClusterCodec
from edgeagent.mesh.discovery import Candidate, DiscoveryContext, strategy_loops
from edgeagent.mesh.discovery.registry import load_strategy
from edgeagent.mesh.link import (
    MAX_DATAGRAM,
    CompleteRequest,
    LinkCore,
    LinkEffect,
    LinkStats,
    Seen,
    ServeRequest,
)
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
    Address,
    MemberState,
    Message,
    Request,
    Response,
    encoded_size,
)
from edgeagent.mesh.roles import role_table
from edgeagent.net.model import interface_selected
from edgeagent.resource import AsyncResource, Number, PartState, Report, TaskOwner

__all__ = [
    "MAX_REQUEST_BODY",
    "ClusterLink",
    "LinkStats",
    "MeshService",
    "PeerGoneError",
    "RemoteError",
    "RequestContext",
    "RequestHandler",
    "RequestTimeout",
    "RequestTooLarge",
    "Seen",
    "cluster_meta",
    "timing_from",
]

log = logging.getLogger("edgeagent.mesh")

MAX_PENDING_REQUESTS = 256
ADDRESS_CHECK_INTERVAL = 2.0  # seconds between looks at our own interface addresses
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
class _PendingRequest:
    device_id: str
    future: asyncio.Future[Any]
    sent_at: float


class ClusterLink(TaskOwner):
    """One cluster: its socket, its link core (codec, replay guard, membership) and discovery."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(f"mesh:{cluster.name}")
        self.cluster = cluster
        self.self_id = self_id
        self._context = context
        self._handlers = handlers
        self._bind = bind_address
        self._clock = clock
        self._rng = rng or random.Random()
        codec = (
            ClusterCodec(cluster.name, cluster.key, self_id=self_id, epoch=epoch)
            if cluster.key is not None
            else None
        )
        self.membership = Membership(
            self_id,
            hostname,
            cluster.port,
            timing=timing_from(cluster),
            rng=self._rng,
            meta=dict(meta),
        )
        self._core = LinkCore(self.membership, codec, methods=handlers)
        self._transport: asyncio.DatagramTransport | None = None
        self._wakeup = asyncio.Event()
        self._pending: dict[int, _PendingRequest] = {}
        self._addresses_checked = 0.0
        self._request_ids = itertools.count(1)
        self._listeners: list[Callable[[MemberEvent], None]] = []
        self._closed = False

    @property
    def stats(self) -> LinkStats:
        """What the link did with its datagrams and requests (kept by the link core)."""
        return self._core.stats

    @property
    def seen(self) -> dict[str, Seen]:
        """Discovered devices that are not members, with the reason (kept by the link core)."""
        return self._core.seen

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Open the socket (a keyed cluster), join, and start discovery and the timer."""
        await self.start_tasks()
        try:
            if self._core.keyed:
                sock = self._open_socket()
                self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: _LinkProtocol(self), sock=sock
                )
                now = self._clock()
                self._refresh_addresses(now)
                self._execute(self.membership.start(now))
            strategy = load_strategy(self.cluster, self._context)
        except BaseException:
            await self.close()
            raise
        for what, loop in strategy_loops(strategy, self._on_candidate).items():
            self.supervise(loop, what, clock=self._clock)
        if self._core.keyed:
            self.supervise(self._run_timer, "timer", clock=self._clock)

    async def close(self) -> None:
        """Leave gracefully (gossiped), then stop tasks and close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._transport is not None:
            self._execute(self.membership.leave(self._clock()))
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(PeerGoneError("the mesh link is closing"))
        self._pending.clear()
        try:
            await self.stop_tasks()
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
        return self.membership.members() if self._core.keyed else []

    def add_listener(self, listener: Callable[[MemberEvent], None]) -> None:
        self._listeners.append(listener)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        if self._core.keyed:
            self._execute(self.membership.set_meta(self._clock(), dict(meta)))

    def counters(self) -> Mapping[str, Number]:
        counts: dict[str, Number] = dict(self._core.counters())
        counts["requests_pending"] = len(self._pending)
        counts["local_health"] = self.membership.local_health
        return counts

    def detail(self) -> Mapping[str, Any]:
        return {
            "cluster": self.cluster.name,
            "keyed": self._core.keyed,
            "port": self.cluster.port,
            "strategy": self.cluster.strategy,
            "incarnation": self.membership.incarnation,
        }

    async def request(self, device_id: str, method: str, body: Any, timeout: float) -> Any:  # noqa: ASYNC109
        """Send ``method(body)`` to member ``device_id`` and wait for its answer."""
        if not self._core.keyed:
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
        self._pending[request_id] = _PendingRequest(device_id, future, self._clock())
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

    # -- inputs: fed to the link core ------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram from the socket: the core screens it (the receive rule)."""
        self._execute(self._core.receive(self._clock(), data, addr))

    def _on_candidate(self, candidate: Candidate) -> None:
        self._execute(self._core.candidate(self._clock(), candidate))

    # -- effects ---------------------------------------------------------------------------
    def _execute(self, effects: Sequence[LinkEffect]) -> None:
        for effect in effects:
            if isinstance(effect, SendTo):
                self._send(effect.addr, effect.messages)
            elif isinstance(effect, Notify):
                self._on_event(effect.event)
            elif isinstance(effect, ServeRequest):
                self._serve(effect)
            elif isinstance(effect, CompleteRequest):
                self._complete(effect.sender, effect.response)
        self._wakeup.set()

    def _serve(self, effect: ServeRequest) -> None:
        if not self.running:  # stopping, or the link's tasks have failed
            self._execute(self._core.refuse(effect))
            return
        handler = self._handlers[effect.request.method]
        self.spawn(self._answer(handler, effect), "request")

    async def _answer(self, handler: RequestHandler, effect: ServeRequest) -> None:
        request, sender = effect.request, effect.sender
        served = False
        try:
            body = await handler(
                RequestContext(sender, self.cluster.name, effect.addr), request.body
            )
            response = Response(request.request_id, True, body)
            served = True
        except EdgeAgentError as exc:
            response = Response(request.request_id, False, str(exc))
        except Exception:
            log.exception("mesh request %s from %s failed", request.method, sender)
            response = Response(request.request_id, False, f"{request.method} failed")
        finally:
            self._core.request_done(served=served)
        self._send(effect.addr, (response,))

    def _complete(self, sender: str, response: Response) -> None:
        pending = self._pending.get(response.request_id)
        if pending is None or pending.device_id != sender or pending.future.done():
            return
        if response.ok:
            pending.future.set_result(response.body)
        else:
            pending.future.set_exception(RemoteError(f"{sender}: {response.body}"))

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
        if self._transport is None:
            return
        try:
            self._transport.sendto(self._core.seal(messages), addr)
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
            if self._clock() - self._addresses_checked >= ADDRESS_CHECK_INTERVAL:
                self._refresh_addresses(self._clock())
            deadline = self.membership.next_deadline()
            self._wakeup.clear()
            now = self._clock()
            if deadline is not None and deadline <= now:
                self._execute(self.membership.on_timer(now))
                continue
            with contextlib.suppress(TimeoutError):
                wait = ADDRESS_CHECK_INTERVAL if deadline is None else deadline - now
                async with asyncio.timeout(min(wait, ADDRESS_CHECK_INTERVAL)):
                    await self._wakeup.wait()


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
        clock: Callable[[], float] = time.monotonic,
        bind_address: str = "0.0.0.0",
    ) -> None:
        self.config = config
        self.self_id = self_id
        self.handlers: dict[str, RequestHandler] = dict(handlers or {})
        self._clock = clock
        self.links = [
            ClusterLink(
                cluster,
                self_id=self_id,
                hostname=hostname,
                epoch=epoch,
                meta=cluster_meta(meta, cluster),
                context=context,
                handlers=self.handlers,
                bind_address=bind_address,
                clock=clock,
            )
            for cluster in (config.clusters if config.enabled else ())
        ]
        self.events: deque[tuple[str, MemberEvent]] = deque(maxlen=1000)
        for link in self.links:
            link.add_listener(functools.partial(self._record, link.cluster.name))
        self._state = PartState.NEW
        self._entered: contextlib.AsyncExitStack | None = None

    def _record(self, cluster: str, event: MemberEvent) -> None:
        self.events.append((cluster, event))

    async def start(self) -> None:
        """Enter every link in order; if one fails, close those already entered."""
        self._state = PartState.STARTING
        try:
            async with contextlib.AsyncExitStack() as stack:
                for link in self.links:
                    await stack.enter_async_context(link)
                self._entered = stack.pop_all()
        except BaseException:
            self._state = PartState.FAILED
            raise
        self._state = PartState.RUNNING

    async def close(self) -> None:
        """Close every link (each leaves its cluster first), in reverse order. Idempotent."""
        entered, self._entered = self._entered, None
        if entered is not None:
            await entered.aclose()
        if self._state is not PartState.NEW:
            self._state = PartState.STOPPED

    def report(self) -> Report:
        """Totals over the clusters; each cluster's own report in ``detail["clusters"]``."""
        reports = {link.cluster.name: link.report() for link in self.links}
        state = self._state
        if state is PartState.RUNNING and not all(r.healthy for r in reports.values()):
            state = PartState.DEGRADED
        counters: dict[str, Number] = {"clusters": len(reports)}
        for report in reports.values():
            for key, value in report.counters.items():
                # local_health is a gauge per cluster: the worst one says how we are doing.
                merge = max if key == "local_health" else _add
                counters[key] = merge(counters.get(key, 0), value)
        detail = {"clusters": {name: r.document() for name, r in reports.items()}}
        errors = [f"{name}: {r.error}" for name, r in reports.items() if r.error is not None]
        return Report(state, counters, detail, "; ".join(errors) or None)

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
        now = self._clock()
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


def _address_of(view: MemberView) -> Address | None:
    """Where to reach a member; None for one known only from gossip so far."""
    return (view.addresses[0], view.port) if view.addresses else None


def _add(total: Number, value: Number) -> Number:
    return total + value

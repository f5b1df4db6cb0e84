"""Forwarding non-``.local`` queries to the configured upstream servers (recursive mode).

Theory of operation: each attempt uses a fresh *connected* UDP socket — the kernel picks a
random source port and drops datagrams from anyone but that upstream — and a random message
ID; a datagram counts as the reply only if it is a response with our ID and our question
section (RFC 5452 §9.1). A reply with TC set is asked again over TCP of the same upstream.
A timeout (``dns_bridge.upstream_timeout`` per upstream) or an error moves on to the next
upstream; when all fail the caller answers SERVFAIL. The number of forwards in flight is
bounded by the server, which runs each one as an owned task.

The pure parts (``parse_upstream``, ``accepts``) are kept apart from the socket code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Collection, Sequence

from edgeagent.dns.wire import (
    FLAG_TC,
    MalformedQuery,
    parse_header,
    question_section_end,
    with_id,
)

log = logging.getLogger(__name__)

Upstream = tuple[str, int]


def parse_upstream(text: str, default_port: int = 53) -> Upstream:
    """``"192.0.2.1"``, ``"192.0.2.1:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host, port = text, default_port
    ipaddress.ip_address(host)  # upstreams are addresses: no DNS lookup to find the DNS server
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in upstream {text!r}")
    return host, port


def accepts(sent: bytes, reply: bytes) -> bool:
    """Whether ``reply`` answers ``sent``: a response, same ID, same question section."""
    sent_header = parse_header(sent)
    reply_header = parse_header(reply)
    if sent_header is None or reply_header is None or not reply_header.is_response:
        return False
    if sent_header.id != reply_header.id or sent_header.qdcount != reply_header.qdcount:
        return False
    try:
        sent_end = question_section_end(sent)
        reply_end = question_section_end(reply)
    except MalformedQuery:
        return False
    # Names compare case-insensitively (some servers do not keep 0x20 case).
    return sent[12:sent_end].lower() == reply[12:reply_end].lower()


def is_truncated(reply: bytes) -> bool:
    header = parse_header(reply)
    return header is not None and bool(header.flags & FLAG_TC)


class Forwarder:
    """Sends a query to each upstream in turn until one answers."""

    def __init__(
        self,
        upstreams: Sequence[str],
        timeout: float,
        *,
        exclude: Collection[Upstream] = (),
    ) -> None:
        # Never forward to ourselves: a bridge listed as its own upstream would loop.
        self.upstreams = [u for u in map(parse_upstream, upstreams) if u not in exclude]
        self.timeout = timeout
        self._failing: set[Upstream] = set()

    async def forward(self, query: bytes) -> bytes | None:
        """The upstream reply (with a random ID, the caller restores the client's), or None."""
        for upstream in self.upstreams:
            wire = with_id(query, secrets.randbelow(65536))
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await _ask_udp(upstream, wire)
                    if is_truncated(reply):
                        reply = await _ask_tcp(upstream, wire)
            except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                self._note_failure(upstream, exc)
                continue
            self._failing.discard(upstream)
            return reply
        return None

    def _note_failure(self, upstream: Upstream, exc: BaseException) -> None:
        # Report a failing upstream once at WARNING, then at DEBUG until it answers again.
        level = logging.DEBUG if upstream in self._failing else logging.WARNING
        self._failing.add(upstream)
        reason = "timed out" if isinstance(exc, TimeoutError) else repr(exc)
        log.log(level, "upstream %s:%d failed: %s", upstream[0], upstream[1], reason)


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, sent: bytes, waiter: asyncio.Future[bytes]) -> None:
        self._sent = sent
        self._waiter = waiter

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self._waiter.done() and accepts(self._sent, data):
            self._waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: this upstream is not there.
        if not self._waiter.done():
            self._waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionError("upstream socket closed"))


async def _ask_udp(upstream: Upstream, wire: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _OneReply(wire, waiter), remote_addr=upstream
    )
    try:
        transport.sendto(wire)
        return await waiter
    finally:
        transport.close()


async def _ask_tcp(upstream: Upstream, wire: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(upstream[0], upstream[1])
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)  # RFC 1035 §4.2.2 framing
        await writer.drain()
        while True:
            length = int.from_bytes(await reader.readexactly(2), "big")
            reply = await reader.readexactly(length)
            if accepts(wire, reply):
                return reply
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

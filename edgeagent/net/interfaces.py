"""What interfaces and addresses the device has now, and a watcher that says when that changes.

``snapshot()`` asks the kernel over rtnetlink (an RTM_GETLINK and an RTM_GETADDR dump, a few
hundred microseconds) for every interface that is up and running, with its usable addresses:
IPv6 addresses still tentative (duplicate address detection running), deprecated or failed DAD
are left out, because binding or answering with them fails or misleads. Where netlink is not
available (not Linux, a sandbox), ``ifaddr`` supplies the addresses instead, without flags.

``watch_interfaces()`` is an async iterator: it yields the first snapshot at once, then a new
one whenever it differs from the last. It listens on a netlink socket subscribed to link and
address changes (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR), waits ~100 ms for
the burst that one change causes to settle, then takes a fresh snapshot; a slow poll (30 s)
covers lost notifications (the netlink socket can overflow) and systems without netlink.

Parsing is pure (``parse_links``, ``parse_addresses``, ``build_interfaces``) and unit-testable;
only ``snapshot`` and the watcher touch sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from edgeagent.net.model import InterfaceInfo, interface_selected

log = logging.getLogger("edgeagent.net")

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>, <linux/if.h>
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_MULTICAST = 0x1000

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
_UNUSABLE = IFA_F_TENTATIVE | IFA_F_DEPRECATED | IFA_F_DADFAILED


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    flags: int

    @property
    def usable(self) -> bool:
        """Up, with carrier, and able to carry multicast (loopback allowed for tests)."""
        up = self.flags & IFF_UP and self.flags & IFF_RUNNING
        return bool(up and self.flags & (IFF_MULTICAST | IFF_LOOPBACK))


@dataclass(frozen=True, slots=True)
class Address:
    index: int
    family: int  # socket.AF_INET or AF_INET6
    address: str
    flags: int

    @property
    def usable(self) -> bool:
        return not self.flags & _UNUSABLE


def snapshot() -> list[InterfaceInfo]:
    """Every usable interface with its usable addresses, sorted by index."""
    try:
        links = parse_links(_dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)))
        addresses = parse_addresses(
            _dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        )
    except OSError as exc:
        log.debug("netlink unavailable (%s); using ifaddr", exc)
        return _snapshot_ifaddr()
    return build_interfaces(links, addresses)


def select_interfaces(
    interfaces: Iterable[InterfaceInfo], include: tuple[str, ...], exclude: tuple[str, ...]
) -> list[InterfaceInfo]:
    """The interfaces the configuration selects (fnmatch patterns; exclude wins)."""
    return [i for i in interfaces if interface_selected(i.name, include, exclude)]


def build_interfaces(links: Iterable[Link], addresses: Iterable[Address]) -> list[InterfaceInfo]:
    """Join links and addresses: usable links only, usable addresses only, stable order."""
    by_index: dict[int, tuple[list[str], list[str]]] = {
        link.index: ([], []) for link in links if link.usable
    }
    names = {link.index: link.name for link in links}
    for addr in addresses:
        slot = by_index.get(addr.index)
        if slot is None or not addr.usable:
            continue
        target = slot[0] if addr.family == socket.AF_INET else slot[1]
        if addr.address not in target:
            target.append(addr.address)
    result = []
    for index in sorted(by_index):
        ipv4, ipv6 = by_index[index]
        # Global IPv6 first, link-local last: answers list the more useful address first.
        ipv6.sort(key=lambda a: ipaddress.IPv6Address(a).is_link_local)
        result.append(InterfaceInfo(names[index], index, tuple(ipv4), tuple(ipv6)))
    return result


def parse_links(data: bytes) -> list[Link]:
    links = []
    for msg_type, body in _messages(data):
        if msg_type != RTM_NEWLINK or len(body) < _IFINFOMSG.size:
            continue
        _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
        attrs = dict(_attributes(body[_IFINFOMSG.size :]))
        raw = attrs.get(IFLA_IFNAME)
        if raw is None:
            continue
        name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        links.append(Link(index, name, flags))
    return links


def parse_addresses(data: bytes) -> list[Address]:
    addresses = []
    for msg_type, body in _messages(data):
        if msg_type != RTM_NEWADDR or len(body) < _IFADDRMSG.size:
            continue
        family, _prefix, flags, _scope, index = _IFADDRMSG.unpack_from(body)
        attrs = dict(_attributes(body[_IFADDRMSG.size :]))
        if IFA_FLAGS in attrs and len(attrs[IFA_FLAGS]) >= 4:
            flags = struct.unpack_from("=I", attrs[IFA_FLAGS])[0]  # the full 32-bit flags
        if family == socket.AF_INET:
            # IFA_LOCAL is our address; IFA_ADDRESS is the peer's on point-to-point links.
            raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
            if raw is None or len(raw) != 4:
                continue
        elif family == socket.AF_INET6:
            raw = attrs.get(IFA_ADDRESS, attrs.get(IFA_LOCAL))
            if raw is None or len(raw) != 16:
                continue
        else:
            continue
        addresses.append(Address(index, family, socket.inet_ntop(family, raw), flags))
    return addresses


async def watch_interfaces(
    *, debounce: float = 0.1, poll_interval: float = 30.0
) -> AsyncIterator[list[InterfaceInfo]]:
    """Yield the interfaces now, then again each time they change (see the module docstring)."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    monitor = _open_monitor()
    if monitor is not None:
        loop.add_reader(monitor.fileno(), woken.set)
    try:
        current = snapshot()
        yield current
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_interval):
                    await woken.wait()
            # One change (an address added) arrives as a burst of messages: let it settle.
            await asyncio.sleep(debounce)
            woken.clear()
            if monitor is not None:
                _drain(monitor)
            fresh = snapshot()
            if fresh != current:
                current = fresh
                yield current
    finally:
        if monitor is not None:
            loop.remove_reader(monitor.fileno())
            monitor.close()


# --------------------------------------------------------------------------------------------
# Private helpers


def _dump(msg_type: int, payload: bytes) -> bytes:
    """One rtnetlink dump request; returns the concatenated reply datagrams."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.settimeout(2.0)
        seq = 1
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(payload), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
        )
        sock.send(header + payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            chunks.append(data)
            done = False
            for kind, body in _messages(data):
                if kind == NLMSG_DONE:
                    done = True
                elif kind == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    if error:
                        raise OSError(error, os.strerror(error))
            if done or not data:
                return b"".join(chunks)


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            return
        yield kind & 0x3FFF, data[offset + _RTATTR.size : offset + length]  # strip NLA_F_ flags
        offset += (length + 3) & ~3


def _open_monitor() -> socket.socket | None:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    except (OSError, AttributeError) as exc:  # AttributeError: no AF_NETLINK off Linux
        log.info("no netlink socket (%s): polling interfaces instead", exc)
        return None
    try:
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        log.info("cannot subscribe to netlink (%s): polling interfaces instead", exc)
        return None
    return sock


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:  # ENOBUFS: notifications were lost; the snapshot covers it
            return


def _snapshot_ifaddr() -> list[InterfaceInfo]:
    import ifaddr  # noqa: PLC0415 - only needed where netlink is missing

    result = []
    for adapter in ifaddr.get_adapters():
        try:
            index = socket.if_nametoindex(adapter.name)
        except OSError:
            continue
        ipv4 = tuple(str(ip.ip) for ip in adapter.ips if isinstance(ip.ip, str))
        ipv6 = tuple(str(ip.ip[0]) for ip in adapter.ips if isinstance(ip.ip, tuple))
        if ipv4 or ipv6:
            result.append(InterfaceInfo(adapter.name, index, ipv4, ipv6))
    return sorted(result, key=lambda i: i.index)

"""Who else listens on UDP 5353 in this network namespace (Avahi, another responder).

We share the port through SO_REUSEPORT; ``info`` reports the other stacks so a person can
tell why, for example, unicast replies may reach Avahi instead of us. Reads ``/proc`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MDNS_PORT_HEX = "14E9"  # 5353


@dataclass(frozen=True, slots=True)
class PortUser:
    pid: int | None
    command: str


def parse_proc_net_udp(text: str, port_hex: str = MDNS_PORT_HEX) -> set[int]:
    """Socket inodes bound to ``port_hex`` in a /proc/net/udp{,6} table."""
    inodes: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local = fields[1]
        if local.rsplit(":", 1)[-1].upper() == port_hex:
            inodes.add(int(fields[9]))
    return inodes


def other_mdns_users(proc: Path = Path("/proc")) -> list[PortUser]:
    """Processes other than us holding a UDP 5353 socket in our network namespace."""
    inodes: set[int] = set()
    for table in ("udp", "udp6"):
        try:
            inodes |= parse_proc_net_udp((proc / "self" / "net" / table).read_text())
        except OSError:
            continue
    if not inodes:
        return []
    own = _socket_inodes(proc / "self" / "fd")
    foreign = inodes - own
    if not foreign:
        return []
    users: dict[int | None, PortUser] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if _socket_inodes(entry / "fd") & foreign:
            try:
                command = (entry / "comm").read_text().strip()
            except OSError:
                command = "?"
            users[int(entry.name)] = PortUser(int(entry.name), command)
    if not users:  # sockets we cannot attribute (no permission to read other /proc/PID/fd)
        return [PortUser(None, f"{len(foreign)} socket(s) of another process")]
    return sorted(users.values(), key=lambda user: user.pid or 0)


def _socket_inodes(fd_dir: Path) -> set[int]:
    inodes: set[int] = set()
    try:
        links = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for link in links:
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes

"""A LAN of devices built from network namespaces (see shared NETLAB.md).

Each LAN is a Linux bridge inside its own namespace; each device is a namespace whose
``ethN`` is a veth peer enslaved to a LAN's bridge. The root namespace is never touched, so
nothing the tests send reaches the machine's real interfaces. Every namespace carries this
lab's unique prefix and is deleted on close, after killing the processes inside it (by PID).

One kernel limit is not per namespace: the ARP and NDP neighbour tables are shared by every
namespace on the machine, capped by ``net.ipv{4,6}.neigh.default.gc_thresh3`` (1024 by
default). A LAN of N devices that all talk to each other needs about N*(N-1) entries per
family, so at 50 devices new entries fail ("neighbor table overflow" in dmesg) and the last
devices to start can reach nobody. ``add_device`` raises the three thresholds when the lab
grows past what they allow, and ``close`` puts the old values back. Nothing is sent by that.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_counter = itertools.count(1)


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Device:
    lab: Lab
    ns: str
    name: str
    addresses: dict[str, str] = field(default_factory=dict)  # ifname -> IPv4
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def exec(
        self, *argv: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout)

    def popen(
        self, *argv: str, log: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else None  # noqa: SIM115 - the child keeps its own copy
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv],
                stdout=out if out else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        finally:
            if out:
                out.close()
        self.processes.append(proc)
        return proc

    def set_address(self, ifname: str, old: str, new: str) -> None:
        self.exec("ip", "addr", "del", f"{old}/24", "dev", ifname)
        self.exec("ip", "addr", "add", f"{new}/24", "dev", ifname)
        self.addresses[ifname] = new


class Lab:
    """Owns a set of namespaces; ``close()`` removes exactly those."""

    def __init__(self) -> None:
        self.prefix = f"ea{os.getpid() % 100000}x{next(_counter)}"
        self.namespaces: list[str] = []
        self.lans: dict[str, str] = {}  # lan name -> namespace
        self.devices: dict[str, Device] = {}
        self._ports = itertools.count(1)
        self._saved_sysctls: dict[str, str] = {}

    def _add_ns(self, suffix: str) -> str:
        ns = f"{self.prefix}-{suffix}"
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        return ns

    def add_lan(self, name: str) -> str:
        ns = self._add_ns(name)
        run(
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        )
        run("ip", "-n", ns, "link", "set", "br0", "up")
        self.lans[name] = ns
        return ns

    def add_device(self, name: str, links: list[tuple[str, str]]) -> Device:
        """``links``: (lan name, IPv4 address) per interface; interfaces are eth0, eth1..."""
        self._make_room_for_neighbours(len(self.devices) + 1)
        ns = self._add_ns(name)
        for key in ("all", "default"):
            # Before any interface exists: IPv6 addresses must not sit tentative (NETLAB.md).
            run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=53")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        device = Device(self, ns, name)
        for index, (lan, address) in enumerate(links):
            lan_ns = self.lans[lan]
            ifname = f"eth{index}"
            port = f"p{next(self._ports)}"
            run(
                "ip",
                "-n",
                lan_ns,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                ifname,
                "netns",
                ns,
            )
            run("ip", "-n", lan_ns, "link", "set", port, "master", "br0")
            run("ip", "-n", lan_ns, "link", "set", port, "up")
            run("ip", "-n", ns, "link", "set", ifname, "multicast", "on")
            run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", ifname)
            run("ip", "-n", ns, "link", "set", ifname, "up")
            run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", ifname, check=index == 0)
            device.addresses[ifname] = address
        self.devices[name] = device
        return device

    def bridge_port(self, device: Device, ifname: str = "eth0") -> tuple[str, str]:
        """(lan namespace, bridge port name) of a device's interface, for cutting its cable."""
        peer_index = run("ip", "-n", device.ns, "-o", "link", "show", ifname).stdout
        link = int(peer_index.split("@if", 1)[1].split(":", 1)[0])
        for lan_ns in self.lans.values():
            for line in run("ip", "-n", lan_ns, "-o", "link", "show").stdout.splitlines():
                index, rest = line.split(":", 1)
                if int(index) == link:
                    return lan_ns, rest.strip().split("@", 1)[0]
        raise LookupError(f"no bridge port for {device.name}/{ifname}")

    def _make_room_for_neighbours(self, devices: int) -> None:
        needed = 2 * devices * devices  # every pair, with room for stale entries
        for family in ("ipv4", "ipv6"):
            for level, share in (("gc_thresh3", 1), ("gc_thresh2", 2), ("gc_thresh1", 8)):
                path = Path(f"/proc/sys/net/{family}/neigh/default/{level}")
                current = int(path.read_text())
                wanted = needed // share
                if current < wanted:
                    self._saved_sysctls.setdefault(str(path), str(current))
                    path.write_text(str(wanted))

    def close(self) -> None:
        for device in self.devices.values():
            for proc in device.processes:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            for proc in device.processes:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for ns in reversed(self.namespaces):
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        for path, value in reversed(self._saved_sysctls.items()):
            Path(path).write_text(value)
        self._saved_sysctls.clear()


def require_program(name: str) -> str:
    """The path of ``name``; skip without it, except in CI, where a missing tool is a failure."""
    import pytest

    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        reason = f"{name} is not installed (scripts/test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path

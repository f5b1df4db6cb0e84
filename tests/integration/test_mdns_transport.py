"""MdnsService on real sockets, only inside network namespaces built by the lab fixture.

Nothing here touches the machine's own interfaces: each responder runs as a subprocess in a
device namespace (``ip netns exec``), and is checked from other namespaces with real clients:
``dig`` (legacy unicast, RFC 6762 §6.7), python-zeroconf (a second, independent mDNS stack),
a raw multicast listener (goodbyes) and another MdnsService (``resolve``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netlab import Device, Lab, require_program

pytestmark = pytest.mark.netns

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[2]

# The node: one MdnsService on eth*, printing JSON lines (ready, renamed, resolved, closed).
NODE = r"""
import asyncio, json, signal, sys
from edgeagent.config.model import InterfacesConfig, MdnsConfig
from edgeagent.mdns.responder import InterfaceState
from edgeagent.mdns.table import RecordTable, ServiceSpec
from edgeagent.mdns.transport import MdnsService

args = json.loads(sys.argv[1])

def emit(**fields):
    print(json.dumps(fields), flush=True)

async def main():
    config = MdnsConfig(
        hosts=(args["host"],), instance_name=args["host"],
        interfaces=InterfacesConfig(include=("eth*",), exclude=()),
    )
    services = [ServiceSpec(**s) for s in args.get("services", [])]
    table = RecordTable(hosts=[args["host"]], services=services, ttl=120)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    renamed = lambda e: emit(event="renamed", kind=e.kind.value, old=e.old, new=e.new)
    async with MdnsService(config, table, on_rename=renamed) as service:
        await service.wait_interfaces()
        while not service.interfaces or any(
            service.responder.interface_state(i.name) is not InterfaceState.ESTABLISHED
            for i in service.interfaces
        ):
            await asyncio.sleep(0.02)
        emit(event="ready", hosts=list(service.table.hosts),
             interfaces=[i.name for i in service.interfaces])
        for name, rtype in args.get("resolve", []):
            records = await service.resolve(name, rtype, 3.0)
            emit(event="resolved", name=name, data=sorted(r.data_text for r in records))
        await stop.wait()
    emit(event="closed", stats=service.status()["stats"])

if args.get("loop") == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""

# A passive listener: joins the group on eth0 and prints every record it hears.
LISTENER = r"""
import json, socket, struct, sys
from dnslib import DNSRecord
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("0.0.0.0", 5353))
mreqn = struct.pack("=4s4si", socket.inet_aton("224.0.0.251"), bytes(4),
                    socket.if_nametoindex("eth0"))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
print(json.dumps({"event": "listening"}), flush=True)
while True:
    data, src = sock.recvfrom(9000)
    try:
        message = DNSRecord.parse(data)
    except Exception:
        continue
    for rr in message.rr:
        print(json.dumps({"src": src[0], "qr": message.header.qr, "name": str(rr.rname),
                          "type": int(rr.rtype), "ttl": rr.ttl, "data": str(rr.rdata)}),
              flush=True)
"""

# python-zeroconf as an independent client: browse a type, resolve the first instance.
ZEROCONF_BROWSE = r"""
import json, sys, time
from zeroconf import ServiceBrowser, ServiceInfo, Zeroconf, IPVersion
kind = sys.argv[1]
zc = Zeroconf(ip_version=IPVersion.V4Only)
found = []
class Listener:
    def add_service(self, zc, type_, name): found.append(name)
    def update_service(self, zc, type_, name): pass
    def remove_service(self, zc, type_, name): pass
browser = ServiceBrowser(zc, kind, Listener())
deadline = time.monotonic() + 6
while not found and time.monotonic() < deadline:
    time.sleep(0.05)
result = {"found": found}
if found:
    info = zc.get_service_info(kind, found[0], timeout=3000)
    if info:
        result.update(port=info.port, server=info.server,
                      addresses=info.parsed_addresses(), txt={
                          k.decode(): (v or b"").decode() for k, v in info.properties.items()})
browser.cancel()
zc.close()
print(json.dumps(result), flush=True)
"""


# A legacy (RFC 6762 §6.7) one-shot query from an ephemeral port to the group, over an
# unconnected socket (dig 9.18 connect()s its socket to 224.0.0.251, so the kernel drops every
# reply, which comes from the responder's own address; see test_dig_unicast...).
LEGACY_QUERY = r"""
import json, socket, sys, time
from dnslib import DNSRecord
name, qtype, ident, family = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
query = DNSRecord.question(name, qtype)
query.header.id = ident
query.header.rd = 0
if family == 6:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    group = ("ff02::fb", 5353, 0, socket.if_nametoindex("eth0"))
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    group = ("224.0.0.251", 5353)
sock.settimeout(0.2)
sock.sendto(query.pack(), group)
replies = []
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    try:
        data, src = sock.recvfrom(9000)
    except socket.timeout:
        continue
    reply = DNSRecord.parse(data)
    replies.append({"src": [src[0].split("%")[0], src[1]], "id": reply.header.id,
                    "questions": [str(q.qname) for q in reply.questions],
                    "answers": [[str(rr.rname), str(rr.rdata), rr.ttl, rr.rclass]
                                for rr in reply.rr]})
print(json.dumps(replies), flush=True)
"""


class Node:
    """A responder subprocess in a device namespace, read line by line."""

    def __init__(self, device: Device, log: Path, **args: Any) -> None:
        self.log = log
        self.proc = spawn(device, log, PYTHON, "-c", NODE, json.dumps(args))

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.events():
                if item.get("event") == event:
                    return item
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        text = self.log.read_text() if self.log.exists() else ""
        raise AssertionError(f"no {event!r} event; output:\n{text}")

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        return self.wait_for("closed", timeout=1)


def spawn(device: Device, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    """Like ``Device.popen`` (the lab kills it at teardown) but closes our copy of the log."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", device.ns, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    device.processes.append(proc)
    return proc


def start_listener(device: Device, log: Path) -> Path:
    spawn(device, log, PYTHON, "-c", LISTENER)
    deadline = time.monotonic() + 5
    while "listening" not in log.read_text():
        assert time.monotonic() < deadline, "listener did not start"
        time.sleep(0.05)
    return log


def dig(device: Device, server: str, name: str, rtype: str = "A") -> list[str]:
    """A real DNS client's unicast query to port 5353 (RFC 6762 §5.5, answered per §6.7)."""
    result = device.exec(
        "dig", "-p", "5353", f"@{server}", name, rtype,
        "+short", "+time=2", "+tries=2", "+notcp",
        check=False,
    )  # fmt: skip
    return sorted(line for line in result.stdout.split() if line and not line.startswith(";"))


def legacy_query(
    device: Device, name: str, rtype: str = "A", ident: int = 4321, family: int = 4
) -> list[Any]:
    argv = (name, rtype, str(ident), str(family))
    result = device.exec(PYTHON, "-c", LEGACY_QUERY, *argv, timeout=10)
    replies: list[Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return replies


@pytest.fixture
def two_lans(lab: Lab) -> Lab:
    lab.add_lan("lan1")
    lab.add_lan("lan2")
    lab.add_device("a", [("lan1", "10.77.1.1"), ("lan2", "10.77.2.1")])
    lab.add_device("b", [("lan1", "10.77.1.2")])
    lab.add_device("c", [("lan2", "10.77.2.2")])
    return lab


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_legacy_query_gets_the_address_of_the_interface_it_asked_on(
    two_lans: Lab, tmp_path: Path, loop: str
) -> None:
    a, b, c = (two_lans.devices[n] for n in "abc")
    node = Node(a, tmp_path / "a.log", host="edge-a", loop=loop)
    ready = node.wait_for("ready")
    assert sorted(ready["interfaces"]) == ["eth0", "eth1"]
    for asker, address in ((b, "10.77.1.1"), (c, "10.77.2.1")):
        replies = legacy_query(asker, "Edge-A.local", ident=4321)
        assert len(replies) == 1
        reply = replies[0]
        assert reply["src"] == [address, 5353]
        assert reply["id"] == 4321
        assert reply["questions"] == ["Edge-A.local."]
        # §6.7: TTL at most 10 s, class IN without the cache-flush bit.
        assert reply["answers"] == [["edge-a.local.", address, 10, 1]]
    stats = node.stop()["stats"]
    assert stats["legacy_responses"] == 2
    assert stats["malformed_dropped"] == 0


def link_local(device: Device, ifname: str) -> str:
    shown = device.exec("ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link").stdout
    return shown.split("inet6 ", 1)[1].split("/", 1)[0]


def test_ipv6_legacy_query_gets_this_interfaces_link_local_address(
    two_lans: Lab, tmp_path: Path
) -> None:
    a, b, c = (two_lans.devices[n] for n in "abc")
    node = Node(a, tmp_path / "a.log", host="edge-a")
    node.wait_for("ready")
    for asker, ifname in ((b, "eth0"), (c, "eth1")):
        address = link_local(a, ifname)
        replies = legacy_query(asker, "edge-a.local", "AAAA", family=6)
        assert len(replies) == 1
        assert replies[0]["src"] == [address, 5353]
        assert replies[0]["answers"] == [["edge-a.local.", address, 10, 1]]
    node.stop()


def test_dig_unicast_to_port_5353_per_interface(two_lans: Lab, tmp_path: Path) -> None:
    a, b, c = (two_lans.devices[n] for n in "abc")
    node = Node(a, tmp_path / "a.log", host="edge-a")
    node.wait_for("ready")
    assert dig(b, "10.77.1.1", "edge-a.local") == ["10.77.1.1"]
    assert dig(c, "10.77.2.1", "edge-a.local") == ["10.77.2.1"]
    assert dig(b, "10.77.1.1", "1.1.77.10.in-addr.arpa", "PTR") == ["edge-a.local."]
    node.stop()


def test_service_is_seen_and_resolved_by_python_zeroconf(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    b = lab.add_device("b", [("lan", "10.77.0.2")])
    service = {
        "id": "web",
        "type": "_http._tcp",
        "instance": "Greenhouse 1",
        "port": 8080,
        "txt": [["path", "/"]],
    }
    node = Node(a, tmp_path / "a.log", host="edge-a", services=[service])
    node.wait_for("ready")
    result = b.exec(PYTHON, "-c", ZEROCONF_BROWSE, "_http._tcp.local.", timeout=30)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["found"] == ["Greenhouse 1._http._tcp.local."]
    assert found["port"] == 8080
    assert found["server"] == "edge-a.local."
    # The IPv4 address, plus the interface's link-local IPv6 from the AAAA additional.
    assert found["addresses"][0] == "10.77.0.1"
    assert all(a.startswith("fe80::") for a in found["addresses"][1:])
    assert found["txt"] == {"path": "/"}
    node.stop()


def test_host_name_conflict_renames_the_later_device(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    b = lab.add_device("b", [("lan", "10.77.0.2")])
    c = lab.add_device("c", [("lan", "10.77.0.3")])
    first = Node(a, tmp_path / "a.log", host="twin")
    first.wait_for("ready")
    second = Node(b, tmp_path / "b.log", host="twin")
    renamed = second.wait_for("renamed")
    assert (renamed["kind"], renamed["old"], renamed["new"]) == ("host", "twin", "twin-2")
    assert second.wait_for("ready")["hosts"] == ["twin-2"]
    assert dig(c, "10.77.0.1", "twin.local") == ["10.77.0.1"]
    assert dig(c, "10.77.0.2", "twin-2.local") == ["10.77.0.2"]
    assert not [e for e in first.events() if e.get("event") == "renamed"]


def test_two_services_resolve_each_other_and_goodbyes_precede_close(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    b = lab.add_device("b", [("lan", "10.77.0.2")])
    c = lab.add_device("c", [("lan", "10.77.0.3")])
    listener_log = start_listener(c, tmp_path / "listener.log")
    first = Node(a, tmp_path / "a.log", host="edge-a")
    first.wait_for("ready")
    second = Node(b, tmp_path / "b.log", host="edge-b", resolve=[["edge-a.local", 1]])
    resolved = second.wait_for("resolved")
    assert resolved["data"] == ["10.77.0.1"]
    first.stop()
    deadline = time.monotonic() + 3
    while True:
        heard = [json.loads(line) for line in listener_log.read_text().splitlines()]
        goodbyes = [h for h in heard if h.get("name") == "edge-a.local." and h.get("ttl") == 0]
        if goodbyes or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert goodbyes, "no goodbye for edge-a.local"
    assert goodbyes[0]["data"] == "10.77.0.1"
    announced = [h for h in heard if h.get("name") == "edge-a.local." and h.get("ttl") == 120]
    assert len(announced) >= 2  # RFC 6762 §8.3: at least two announcements
    second.stop()


def test_address_change_is_announced_and_old_address_said_goodbye(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    c = lab.add_device("c", [("lan", "10.77.0.3")])
    node = Node(a, tmp_path / "a.log", host="edge-a")
    node.wait_for("ready")
    a.set_address("eth0", "10.77.0.1", "10.77.0.11")
    deadline = time.monotonic() + 5
    answer: list[str] = []
    while time.monotonic() < deadline:
        answer = [r["answers"][0][1] for r in legacy_query(c, "edge-a.local")]
        if answer == ["10.77.0.11"]:
            break
        time.sleep(0.2)
    assert answer == ["10.77.0.11"]
    node.stop()


WATCHER = r"""
import asyncio, json
from edgeagent.net.interfaces import watch_interfaces

async def main():
    async for snapshot in watch_interfaces(poll_interval=60):
        eth = [i for i in snapshot if i.name == "eth0"]
        print(json.dumps({"ipv4": list(eth[0].ipv4) if eth else None,
                          "ipv6": list(eth[0].ipv6) if eth else None}), flush=True)

asyncio.run(main())
"""


def test_interface_watcher_sees_address_changes_via_netlink(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    log = tmp_path / "watch.log"
    spawn(a, log, PYTHON, "-c", WATCHER)

    def snapshots() -> list[dict[str, Any]]:
        text = log.read_text() if log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_for(predicate: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 5  # the poll fallback is 60 s: only netlink is this fast
        while time.monotonic() < deadline:
            found = [s for s in snapshots() if predicate(s)]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no matching snapshot in {snapshots()}")

    first = wait_for(lambda s: s["ipv4"] == ["10.77.0.1"])
    assert all(addr.startswith("fe80::") for addr in first["ipv6"])
    a.exec("ip", "addr", "add", "10.77.0.21/24", "dev", "eth0")
    wait_for(lambda s: s["ipv4"] == ["10.77.0.1", "10.77.0.21"])
    # A tentative IPv6 address (duplicate address detection running) is not usable yet.
    a.exec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1")
    a.exec("sysctl", "-qw", "net.ipv6.conf.eth0.dad_transmits=3")
    a.exec("ip", "addr", "add", "fd77::1/64", "dev", "eth0")
    count = len(snapshots())
    time.sleep(0.5)
    assert not any("fd77::1" in s["ipv6"] for s in snapshots()[count - 1 :])
    assert wait_for(lambda s: "fd77::1" in s["ipv6"])["ipv6"][0] == "fd77::1"  # global first
    a.exec("ip", "link", "set", "eth0", "down")
    wait_for(lambda s: s["ipv4"] is None)


AVAHI_CONF = """[server]
host-name={host}
use-ipv4=yes
use-ipv6=yes
allow-interfaces=eth0
enable-dbus=no
disallow-other-stacks=no
[publish]
publish-workstation=no
publish-hinfo=no
"""


def start_avahi(device: Device, tmp_path: Path, host: str) -> Path:
    """avahi-daemon in the device namespace, with a private /run (its pid file is fixed)."""
    conf = tmp_path / "avahi.conf"
    conf.write_text(AVAHI_CONF.format(host=host))
    log = tmp_path / "avahi.log"
    script = (
        "mount -t tmpfs tmpfs /run && mkdir -p /run/avahi-daemon && exec avahi-daemon "
        f"-f {conf} --no-drop-root --no-chroot --no-rlimits --debug"
    )
    spawn(device, log, "unshare", "-m", "sh", "-c", script)
    deadline = time.monotonic() + 10
    while "Server startup complete" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return log


@pytest.mark.parametrize("avahi_first", [True, False], ids=["avahi-first", "edgeagent-first"])
def test_coexists_with_avahi_on_the_same_host(lab: Lab, tmp_path: Path, avahi_first: bool) -> None:
    require_program("avahi-daemon")
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    c = lab.add_device("c", [("lan", "10.77.0.3")])
    if avahi_first:
        avahi_log = start_avahi(a, tmp_path, "avahi-host")
    node = Node(a, tmp_path / "a.log", host="edge-a")
    node.wait_for("ready")
    if not avahi_first:
        avahi_log = start_avahi(a, tmp_path, "avahi-host")
    time.sleep(3)  # long enough for Avahi to probe, announce and (formerly) rename in a loop
    # Both stacks share UDP 5353 (SO_REUSEPORT) and each answers for its own name.
    assert [r["answers"][0][1] for r in legacy_query(c, "edge-a.local")] == ["10.77.0.1"]
    assert [r["answers"][0][1] for r in legacy_query(c, "avahi-host.local")] == ["10.77.0.1"]
    assert "Host name conflict" not in avahi_log.read_text()
    stats = node.stop()["stats"]
    assert stats["records_withdrawn"] >= 1  # our reverse PTR yielded to Avahi's


@pytest.mark.slow
def test_twenty_devices_start_together_and_all_resolve(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    count = 20
    nodes = []
    for i in range(1, count + 1):
        device = lab.add_device(f"d{i}", [("lan", f"10.77.0.{i}")])
        nodes.append(Node(device, tmp_path / f"d{i}.log", host=f"node-{i}"))
    for node in nodes:
        node.wait_for("ready", timeout=60)
    querier = lab.add_device("q", [("lan", "10.77.0.200")])
    names = [[f"node-{i}.local", 1] for i in range(1, count + 1)]
    asker = Node(querier, tmp_path / "q.log", host="querier", resolve=names)
    asker.wait_for("ready", timeout=30)
    deadline = time.monotonic() + 60
    while len([e for e in asker.events() if e.get("event") == "resolved"]) < count:
        assert time.monotonic() < deadline, asker.log.read_text()
        time.sleep(0.1)
    resolved = {e["name"]: e["data"] for e in asker.events() if e.get("event") == "resolved"}
    assert resolved == {f"node-{i}.local": [f"10.77.0.{i}"] for i in range(1, count + 1)}
    for node in nodes:
        assert not [e for e in node.events() if e.get("event") == "renamed"]


@pytest.mark.slow
def test_same_name_on_four_devices_started_together_ends_unique(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    lab.add_device("q", [("lan", "10.77.0.200")])
    nodes = []
    for i in range(1, 5):
        device = lab.add_device(f"d{i}", [("lan", f"10.77.0.{i}")])
        nodes.append((f"10.77.0.{i}", Node(device, tmp_path / f"d{i}.log", host="same")))
    final = {}
    for address, node in nodes:
        final[address] = node.wait_for("ready", timeout=60)["hosts"][0]
    assert len(set(final.values())) == 4, final
    time.sleep(1)  # renames after "ready" (a late conflict) would show up here
    querier = lab.devices["q"]
    for address, node in nodes:
        current = [e for e in node.events() if e.get("event") in ("ready", "renamed")]
        host = current[-1]["hosts"][0] if current[-1]["event"] == "ready" else current[-1]["new"]
        answers = [r["answers"][0][1] for r in legacy_query(querier, f"{host}.local")]
        assert answers == [address], (host, answers, final)


# In-process checks of MdnsService's lifecycle, run inside a device namespace.
LIFECYCLE = r"""
import asyncio, json, time
from edgeagent.config.model import InterfacesConfig, MdnsConfig
from edgeagent.dns.records import RType
from edgeagent.mdns.table import RecordTable, ServiceSpec
from edgeagent.mdns.transport import MdnsService

async def main():
    config = MdnsConfig(hosts=("life",), instance_name="life",
                        interfaces=InterfacesConfig(include=("eth*",), exclude=()))
    table = RecordTable(hosts=["life"], services=[], ttl=120)
    out = {}
    service = MdnsService(config, table)
    async with service:
        await service.wait_interfaces()
        names = sorted(t.get_name() for t in asyncio.all_tasks() if "[mdns]" in t.get_name())
        out["tasks"] = names
        started = time.monotonic()
        out["own"] = [r.data_text for r in await service.resolve("life.local", RType.A, 1.0)]
        out["own_elapsed"] = time.monotonic() - started
        started = time.monotonic()
        out["missing"] = await service.resolve("nobody.local", RType.A, 0.5)
        out["missing_elapsed"] = time.monotonic() - started
        peer = await service.resolve("peer.local", RType.A, 3.0)
        out["peer"] = [r.data_text for r in peer]
        started = time.monotonic()
        out["peer_cached"] = [r.data_text for r in await service.resolve("peer.local", 1, 1.0)]
        out["cached_elapsed"] = time.monotonic() - started
        spec = ServiceSpec(id="web", type="_http._tcp", instance="Life", port=8080)
        await service.update_table(table.with_service(spec))
        await asyncio.sleep(2.5)  # probe + first announcement
        out["status"] = service.status()
        out["cache"] = service.cache_document()
    await service.close()  # idempotent
    out["left"] = sorted(t.get_name() for t in asyncio.all_tasks() if "[mdns]" in t.get_name())
    print(json.dumps(out), flush=True)

asyncio.run(main())
"""


def test_service_lifecycle_resolve_and_runtime_update(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    b = lab.add_device("b", [("lan", "10.77.0.2")])
    c = lab.add_device("c", [("lan", "10.77.0.3")])
    peer = Node(b, tmp_path / "b.log", host="peer")
    peer.wait_for("ready")
    listener_log = start_listener(c, tmp_path / "listener.log")
    result = a.exec(PYTHON, "-c", LIFECYCLE, timeout=60)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["tasks"] == ["edgeagent[mdns].interfaces", "edgeagent[mdns].timer"]
    assert out["left"] == []
    assert out["own"] == ["10.77.0.1"]
    assert out["own_elapsed"] < 0.05
    assert out["missing"] == []
    assert 0.45 < out["missing_elapsed"] < 1.0
    assert out["peer"] == ["10.77.0.2"]
    assert out["peer_cached"] == ["10.77.0.2"]
    assert out["cached_elapsed"] < 0.05
    assert out["status"]["interfaces"] == {"eth0": "established"}
    assert out["status"]["stats"]["malformed_dropped"] == 0
    assert any(e["name"] == "peer.local" for e in out["cache"]["eth0"])
    heard = [json.loads(line) for line in listener_log.read_text().splitlines()[1:]]
    srv = [h for h in heard if h["name"] == "Life._http._tcp.local." and h["type"] == 33]
    assert {h["ttl"] for h in srv} >= {120, 0}  # announced at runtime, goodbye on close
    peer.stop()


def test_cable_pull_and_reconnect_probes_and_announces_again(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    c = lab.add_device("c", [("lan", "10.77.0.3")])
    listener_log = start_listener(c, tmp_path / "listener.log")
    node = Node(a, tmp_path / "a.log", host="edge-a")
    node.wait_for("ready")
    lan_ns, port = lab.bridge_port(a)
    run_ip = ["ip", "-n", lan_ns, "link", "set", port]
    subprocess.run([*run_ip, "down"], check=True)
    time.sleep(1.0)  # carrier loss: the watcher drops eth0 (~100 ms debounce)
    healed = time.monotonic()
    subprocess.run([*run_ip, "up"], check=True)

    def fresh_announcements() -> list[dict[str, Any]]:
        lines = listener_log.read_text().splitlines()[1:]
        heard = [json.loads(line) for line in lines]
        return [h for h in heard if h["name"] == "edge-a.local." and h["ttl"] == 120]

    before = len(fresh_announcements())
    deadline = healed + 5
    while len(fresh_announcements()) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # RFC 6762 §8.3/§13: back on the link, probe and announce (twice) again.
    assert len(fresh_announcements()) >= before + 2
    assert [r["answers"][0][1] for r in legacy_query(c, "edge-a.local")] == ["10.77.0.1"]
    node.stop()

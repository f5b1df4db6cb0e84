"""A LAN of real agents in network namespaces, checked with real clients (dig).

Topology: ``lan1`` holds alpha (10.77.1.1) and bravo (10.77.1.2, eth0); ``lan2`` holds bravo
(10.77.2.2, eth1) and charlie (10.77.2.3). Bravo is multi-homed and must answer each LAN with
that LAN's own address.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agents import (
    AgentHandle,
    device_config,
    start_agent,
    wait_established,
    wait_until,
)
from tests.netlab import Lab

ZEROCONF_CLIENT = r"""
import json, sys, time
from zeroconf import ServiceBrowser, Zeroconf
iface, instance = sys.argv[1], sys.argv[2]
service_type = instance.split(".", 1)[1]
zc = Zeroconf(interfaces=[iface])
browsed = set()
class Listener:
    def add_service(self, zc, type_, name): browsed.add(name)
    def update_service(self, zc, type_, name): browsed.add(name)
    def remove_service(self, zc, type_, name): pass
browser = ServiceBrowser(zc, service_type, Listener())
info = zc.get_service_info(service_type, instance, timeout=3000)
deadline = time.monotonic() + 3
while instance not in browsed and time.monotonic() < deadline:
    time.sleep(0.05)
out = {"browsed": sorted(browsed)}
if info is not None:
    out.update(port=info.port, server=info.server, addresses=info.parsed_addresses(),
               txt={k.decode(): (v or b"").decode() for k, v in info.properties.items() if k})
print(json.dumps(out))
browser.cancel()
zc.close()
"""


def split_families(addresses: list[str]) -> tuple[list[str], list[str]]:
    return [a for a in addresses if ":" not in a], [a for a in addresses if ":" in a]


def zeroconf_query(agent: AgentHandle, iface_address: str, instance: str) -> dict[str, Any]:
    """Ask with python-zeroconf, an mDNS implementation independent of ours."""
    result = agent.device.exec(sys.executable, "-c", ZEROCONF_CLIENT, iface_address, instance)
    return dict(json.loads(result.stdout))


pytestmark = pytest.mark.netns


@pytest.fixture
def lan(lab: Lab, tmp_path: Path) -> dict[str, AgentHandle]:
    lab.add_lan("lan1")
    lab.add_lan("lan2")
    devices = {
        "alpha": lab.add_device("alpha", [("lan1", "10.77.1.1")]),
        "bravo": lab.add_device("bravo", [("lan1", "10.77.1.2"), ("lan2", "10.77.2.2")]),
        "charlie": lab.add_device("charlie", [("lan2", "10.77.2.3")]),
    }
    agents = {
        name: start_agent(
            device,
            tmp_path / name,
            device_config(name, hosts=["hostname", f"{name}-alias"]),
        )
        for name, device in devices.items()
    }
    for agent in agents.values():
        wait_established(agent)
    return agents


def test_bridge_resolves_peers_names_reverse_and_services(lan: dict[str, AgentHandle]) -> None:
    alpha = lan["alpha"]
    assert alpha.dig("bravo.local", "A") == ["10.77.1.2"]
    assert alpha.dig("bravo-alias.local", "A") == ["10.77.1.2"]
    assert alpha.dig("-x", "10.77.1.2") == ["bravo.local."]
    assert alpha.dig("bravo._ssh._tcp.local", "SRV") == ["0 0 22 bravo.local."]
    assert "bravo._ssh._tcp.local." in alpha.dig("_ssh._tcp.local", "PTR")
    txt = alpha.dig("bravo._edgeagent._tcp.local", "TXT")
    assert len(txt) == 1
    assert '"version=' in txt[0]
    # Own names resolve through the bridge too, without any mDNS traffic.
    assert alpha.dig("alpha.local", "A") == ["10.77.1.1"]
    # An unknown .local name is NXDOMAIN; a non-.local name is refused (not recursive).
    status = alpha.device.exec("dig", "@127.0.0.53", "+time=2", "nosuch.local").stdout
    assert "status: NXDOMAIN" in status
    refused = alpha.device.exec("dig", "@127.0.0.53", "+time=2", "example.com").stdout
    assert "status: REFUSED" in refused


def test_multi_homed_device_answers_each_lan_with_its_own_address(
    lan: dict[str, AgentHandle],
) -> None:
    assert lan["alpha"].dig("bravo.local", "A") == ["10.77.1.2"]
    assert lan["charlie"].dig("bravo.local", "A") == ["10.77.2.2"]
    # A one-shot query straight to bravo's mDNS port (RFC 6762 §5.5, answered as legacy
    # unicast, §6.7) on each LAN gets that LAN's address.
    for asker, target, expected in (
        ("alpha", "10.77.1.2", "10.77.1.2"),
        ("charlie", "10.77.2.2", "10.77.2.2"),
    ):
        one_shot = lan[asker].device.exec(
            "dig", "-p", "5353", f"@{target}", "+short", "+time=2", "+tries=1", "bravo.local"
        )
        assert one_shot.stdout.split() == [expected]
    # An independent mDNS implementation (python-zeroconf), multicasting on lan2 only.
    found = zeroconf_query(lan["charlie"], "10.77.2.3", "bravo._ssh._tcp.local.")
    ipv4, ipv6 = split_families(found["addresses"])
    assert ipv4 == ["10.77.2.2"]
    # Exactly one IPv6 address: eth1's own link-local one, never eth0's.
    assert len(ipv6) == 1
    assert ipv6[0].startswith("fe80:")
    eth1 = lan["bravo"].device.exec("ip", "-6", "-o", "addr", "show", "dev", "eth1").stdout
    assert ipv6[0] in eth1


def test_independent_mdns_implementation_browses_our_services(
    lan: dict[str, AgentHandle],
) -> None:
    found = zeroconf_query(lan["alpha"], "10.77.1.1", "bravo._ssh._tcp.local.")
    assert "bravo._ssh._tcp.local." in found["browsed"]
    assert found["port"] == 22
    assert found["server"] == "bravo.local."
    assert split_families(found["addresses"])[0] == ["10.77.1.2"]
    assert found["txt"] == {}
    agent = zeroconf_query(lan["alpha"], "10.77.1.1", "bravo._edgeagent._tcp.local.")
    assert agent["port"] == 4370
    assert "version" in agent["txt"]


def test_runtime_service_appears_on_peers_and_goes_on_removal(
    lan: dict[str, AgentHandle],
) -> None:
    alpha, bravo = lan["alpha"], lan["bravo"]
    added = bravo.cli(
        "services",
        "add",
        "--id",
        "web",
        "--type",
        "_http._tcp",
        "--port",
        "8080",
        "--txt",
        "path=/",
    )
    assert "_http._tcp" in added.stdout
    wait_until(
        lambda: alpha.dig("bravo._http._tcp.local", "SRV") == ["0 0 8080 bravo.local."],
        5,
        "the new service on a peer",
    )
    assert alpha.dig("bravo._http._tcp.local", "TXT") == ['"path=/"']
    bravo.cli("services", "remove", "web")
    wait_until(
        lambda: alpha.dig("bravo._http._tcp.local", "SRV") == [],
        5,
        "the removed service to disappear from the peer",
    )


def test_runtime_service_survives_restart(lan: dict[str, AgentHandle], tmp_path: Path) -> None:
    bravo = lan["bravo"]
    bravo.cli(
        "services",
        "add",
        "--id",
        "mqtt",
        "--protocol",
        "mqtt",
        "--transport",
        "tcp",
        "--port",
        "1883",
    )
    assert bravo.stop() == 0
    restarted = start_agent(
        bravo.device, bravo.root, device_config("bravo", hosts=["hostname", "bravo-alias"])
    )
    wait_established(restarted)
    listed = restarted.cli("services", "list", "--json").stdout
    assert '"mqtt"' in listed
    assert lan["alpha"].dig("bravo._mqtt._tcp.local", "SRV") == ["0 0 1883 bravo.local."]
    restarted.stop()


def test_stopping_an_agent_sends_goodbyes(lan: dict[str, AgentHandle]) -> None:
    alpha, bravo = lan["alpha"], lan["bravo"]
    assert alpha.dig("bravo.local", "A") == ["10.77.1.2"]
    cached = alpha.info("--caches")["caches"]
    assert any(row["name"] == "bravo.local" for rows in cached.values() for row in rows)
    started = time.monotonic()
    assert bravo.stop() == 0
    # Goodbyes (TTL 0) make peers drop the records within about a second (RFC 6762 §10.1).
    wait_until(
        lambda: (
            not any(
                row["name"] == "bravo.local"
                for rows in alpha.info("--caches")["caches"].values()
                for row in rows
            )
        ),
        3,
        "alpha to forget bravo after its goodbye",
    )
    assert time.monotonic() - started < 3


def test_info_dumps_records_in_mdnslite_format(lan: dict[str, AgentHandle]) -> None:
    bravo = lan["bravo"]
    text = bravo.cli("info").stdout.splitlines()
    assert "bravo.local: type A, class IN, ttl 120, addr 10.77.1.2" in text
    assert "bravo.local: type A, class IN, ttl 120, addr 10.77.2.2" in text
    assert "_ssh._tcp.local: type PTR, class IN, ttl 120, bravo._ssh._tcp.local" in text
    assert (
        "bravo._ssh._tcp.local: type SRV, class IN, ttl 120, priority 0, weight 0, port 22, bravo.local."
        in text
    )
    info = bravo.info()
    assert {"name", "type", "class", "ttl", "data"} <= set(info["records"][0])
    srv = [r for r in info["records"] if r["type"] == "SRV" and r["name"].startswith("bravo._ssh")]
    assert srv[0]["data"] == "0 0 22 bravo.local."

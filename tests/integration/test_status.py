"""``status`` and ``health`` on the real agent: every part reports through the one stats seam,
and a part in trouble (a serial device that is gone) makes ``health`` exit 1 naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.agents import device_config, start_agent, wait_established, wait_until
from tests.netlab import Lab

pytestmark = pytest.mark.netns

PARTS = {"mdns", "mesh", "dns_bridge", "journal", "serial", "reactors", "sensors", "control"}


def test_status_gathers_every_part_and_health_says_healthy(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    device = lab.add_device("dev", [("lan", "10.77.41.1")])
    agent = start_agent(device, tmp_path / "dev", device_config("edge-status"))
    wait_established(agent)
    agent.cli("intent", "send", "counter.increment", "by=2")

    status = json.loads(agent.cli("status", "--json").stdout)
    assert status["healthy"] is True
    assert set(status["parts"]) == PARTS
    assert {part["state"] for part in status["parts"].values()} == {"running"}
    assert status["parts"]["reactors"]["counters"]["applied"] == 1
    assert status["parts"]["journal"]["counters"]
    assert status["parts"]["mdns"]["counters"]["packets_sent"] > 0
    assert status["parts"]["control"]["counters"]["requests"] >= 1

    text = agent.cli("status").stdout.splitlines()
    assert text[0].startswith("edgeagent ")
    assert ": healthy, up " in text[0]
    assert any(line.startswith("  journal ") and " running" in line for line in text)

    health = agent.cli("health")
    assert health.returncode == 0
    assert health.stdout.strip() == f"healthy: {len(PARTS)} parts running"

    info = agent.info()
    assert set(info["parts"]) == PARTS  # journal and serial ports are visible in info too
    assert "Parts:" in agent.cli("info").stdout


def test_health_exits_1_naming_a_part_in_trouble(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    device = lab.add_device("dev", [("lan", "10.77.42.1")])
    config = device_config("edge-sick")
    config["dns_bridge"]["enabled"] = False
    config["capabilities"] = {"implies": {"admin": ["counter:*", "valve:*"]}}
    config["principals"] = {"cli": ["admin"]}
    config["reactors"] = [
        {"id": "valve", "type": "actuator", "options": {"device": str(tmp_path / "unplugged")}}
    ]
    agent = start_agent(device, tmp_path / "dev", config)
    wait_until(lambda: agent.call("reactors.list"), 15, "the reactors to run", interval=0.1)
    assert agent.cli("health").returncode == 0
    agent.cli("intent", "send", "valve.write", "data=OPEN")  # the device is not there

    health = agent.cli("health", check=False)
    assert health.returncode == 1
    assert health.stdout.startswith("serial is degraded")
    document = json.loads(agent.cli("health", "--json", check=False).stdout)
    assert document["healthy"] is False
    assert [problem["part"] for problem in document["problems"]] == ["serial"]
    assert document["parts"]["mdns"] == "running"

"""The real agent's life on a device: conflicts that persist, Avahi beside it, a taken port,
the control socket's permissions, ``resolve`` and signals."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.agents import (
    EDGEAGENT,
    AgentHandle,
    device_config,
    start_agent,
    wait_established,
    wait_until,
)
from tests.integration.test_mdns_transport import start_avahi
from tests.netlab import Lab, require_program

pytestmark = pytest.mark.netns


def test_renamed_host_keeps_its_new_name_across_restarts(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    first_dev = lab.add_device("first", [("lan", "10.77.3.1")])
    second_dev = lab.add_device("second", [("lan", "10.77.3.2")])
    first = start_agent(first_dev, tmp_path / "first", device_config("twin"))
    wait_established(first)
    second = start_agent(second_dev, tmp_path / "second", device_config("twin"))
    info = wait_established(second, timeout=15)
    assert info["hosts"] == ["twin-2.local"]
    assert first.info()["hosts"] == ["twin.local"]
    saved = json.loads((tmp_path / "second" / "state" / "runtime.json").read_text())
    # The service instances were named after the host, so they follow it.
    assert saved["renames"] == {
        "host:twin": "twin-2",
        "service:ssh": "twin-2",
        "service:edgeagent": "twin-2",
    }
    assert second.dig("twin-2._ssh._tcp.local", "SRV") == ["0 0 22 twin-2.local."]
    # After a restart the device comes back as twin-2 straight away: no new conflict.
    assert second.stop() == 0
    again = start_agent(second_dev, tmp_path / "second", device_config("twin"))
    info = wait_established(again)
    assert info["hosts"] == ["twin-2.local"]
    assert info["mdns"]["stats"]["conflicts"] == 0
    assert first.dig("twin-2.local") == ["10.77.3.2"]
    assert first.dig("twin.local") == ["10.77.3.1"]


def test_info_reports_avahi_sharing_the_mdns_port(lab: Lab, tmp_path: Path) -> None:
    require_program("avahi-daemon")
    lab.add_lan("lan")
    dev = lab.add_device("dev", [("lan", "10.77.4.1")])
    start_avahi(dev, tmp_path, "avahi-host")
    agent = start_agent(dev, tmp_path / "agent", device_config("edge-a"))
    info = wait_established(agent)
    assert [s["command"] for s in info["mdns"]["other_stacks"]] == ["avahi-daemon"]
    text = agent.cli("info").stdout
    assert "# sharing UDP 5353 with avahi-daemon (pid " in text


def test_taken_bridge_port_is_named_with_the_keys_to_change(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    dev = lab.add_device("dev", [("lan", "10.77.5.1")])
    # Another resolver (as systemd-resolved would) holds 127.0.0.53:53 in this namespace.
    holder = dev.popen(
        sys.executable,
        "-c",
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('127.0.0.53', 53)); print('bound', flush=True); time.sleep(60)",
        log=tmp_path / "holder.log",
    )
    wait_until(lambda: "bound" in (tmp_path / "holder.log").read_text(), 5, "the port holder")
    agent = start_agent(dev, tmp_path / "agent", device_config("edge-a"))
    assert agent.proc.wait(timeout=15) == 1
    message = agent.log()
    assert "127.0.0.53:53" in message
    assert "dns_bridge.port" in message
    assert "dns_bridge.enabled" in message
    assert "Traceback" not in message
    holder.kill()


def test_control_socket_is_owner_only_and_resolve_works(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.6.1")])
    b = lab.add_device("b", [("lan", "10.77.6.2")])
    alpha = start_agent(a, tmp_path / "a", device_config("res-a"))
    bravo = start_agent(b, tmp_path / "b", device_config("res-b"))
    wait_established(alpha)
    wait_established(bravo)
    sock = tmp_path / "a" / "run" / "control.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    out = alpha.cli("resolve", "res-b.local").stdout.split()
    assert out[-1] == "10.77.6.2"
    srv = alpha.cli("resolve", "res-b._ssh._tcp.local", "--type", "SRV", "--json").stdout
    assert json.loads(srv)[0]["data"] == "0 0 22 res-b.local."
    missing = alpha.cli("resolve", "nobody.local", "--timeout", "0.3", check=False)
    assert missing.returncode == 1
    assert "no A record found" in missing.stderr


def test_sigint_and_sigterm_both_stop_cleanly(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    dev = lab.add_device("dev", [("lan", "10.77.7.1")])
    for sig in (signal.SIGINT, signal.SIGTERM):
        agent = start_agent(dev, tmp_path / sig.name, device_config("sig"))
        wait_established(agent)
        agent.proc.send_signal(sig)
        assert agent.proc.wait(timeout=10) == 0
        assert not (tmp_path / sig.name / "run" / "control.sock").exists()


def test_several_agents_in_one_namespace_need_their_own_runtime_dirs(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_lan("lan")
    dev = lab.add_device("dev", [("lan", "10.77.8.1")])
    config = device_config("solo")
    config["dns_bridge"]["enabled"] = False
    first = start_agent(dev, tmp_path / "one", config)
    wait_established(first)
    clash = AgentHandle(dev, tmp_path / "one", subprocess.Popen(["true"]))
    clash.proc.wait()
    result = dev.exec(*EDGEAGENT, "run", *clash.dirs, check=False, timeout=20)
    assert result.returncode == 1
    assert "another agent is already serving" in result.stderr
    assert "--runtime-dir" in result.stderr
    assert first.proc.poll() is None

"""Run the real ``edgeagent run`` inside lab devices and talk to it like a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeagent.control.client import ControlClient
from edgeagent.errors import EdgeAgentError
from tests.netlab import Device

EDGEAGENT = [sys.executable, "-m", "edgeagent"]


@dataclass
class AgentHandle:
    device: Device
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def dirs(self) -> list[str]:
        return [
            "-c",
            str(self.root / "edgeagent.yaml"),
            "--state-dir",
            str(self.root / "state"),
            "--runtime-dir",
            str(self.root / "run"),
        ]

    def cli(
        self, *args: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return self.device.exec(*EDGEAGENT, *args, *self.dirs, check=check, timeout=timeout)

    def info(self, *extra: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("info", "--json", *extra).stdout))

    def dig(self, *args: str) -> list[str]:
        """``dig @127.0.0.53 +short ...`` on this device, as a list of answer lines."""
        result = self.device.exec("dig", "@127.0.0.53", "+short", "+time=2", "+tries=1", *args)
        return [line for line in result.stdout.splitlines() if line and not line.startswith(";")]

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One control-socket request straight from this process (no CLI start-up): for
        benchmarks and tight polling, where fifty CLI processes would starve the agents."""
        return ControlClient(self.root / "run" / "control.sock").call(method, params)

    def log(self) -> str:
        return (self.root / "agent.log").read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)


def start_agent(device: Device, root: Path, config: dict[str, Any]) -> AgentHandle:
    root.mkdir(parents=True, exist_ok=True)
    (root / "edgeagent.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    handle = AgentHandle(device, root, subprocess.Popen(["true"]))
    handle.proc.wait()
    handle.proc = device.popen(*EDGEAGENT, "run", *handle.dirs, log=root / "agent.log")
    return handle


def device_config(hostname: str, **mdns: Any) -> dict[str, Any]:
    """A device config for the lab: fast timings are not needed, the RFC defaults are used."""
    return {
        "device": {"hostname": hostname},
        "mdns": {
            "ttl": 120,
            "services": [{"id": "ssh", "protocol": "ssh", "transport": "tcp", "port": 22}],
            **mdns,
        },
        "dns_bridge": {"enabled": True, "address": "127.0.0.53", "port": 53},
    }


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (subprocess.CalledProcessError, json.JSONDecodeError, EdgeAgentError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def wait_established(agent: AgentHandle, timeout: float = 10) -> dict[str, Any]:
    """Until the agent answers ``info`` and every interface finished probing/announcing."""

    def ready() -> dict[str, Any] | None:
        if agent.proc.poll() is not None:
            raise AssertionError(f"agent exited with {agent.proc.returncode}:\n{agent.log()}")
        result = agent.cli("info", "--json", check=False)
        if result.returncode != 0:
            return None
        info = json.loads(result.stdout)
        states = info.get("mdns", {}).get("interfaces", {})
        if states and all(state == "established" for state in states.values()):
            return dict(info)
        return None

    return dict(wait_until(ready, timeout, f"{agent.device.name} to establish its names"))

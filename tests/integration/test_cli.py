"""The CLI as a user runs it: a real subprocess, real files, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def edgeagent(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "EDGEAGENT_STATE_DIR": str(tmp / "state"),
        "EDGEAGENT_RUNTIME_DIR": str(tmp / "run"),
    }
    return subprocess.run(
        [sys.executable, "-m", "edgeagent", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=30,
        check=False,
    )


def test_check_accepts_the_shipped_config_and_prints_it(tmp_path: Path) -> None:
    result = edgeagent("check", "-c", "firmware-config/edgeagent.yaml", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["dns_bridge"]["enabled"] is True
    assert effective["mdns"]["ttl"] == 120


def test_check_on_a_missing_file_uses_built_in_defaults(tmp_path: Path) -> None:
    result = edgeagent("check", "--json", "-c", str(tmp_path / "absent.yaml"), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["dns_bridge"]["enabled"] is False
    assert effective["device"]["hostname"].startswith("edge-")


def test_check_names_file_line_key_and_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("device:\n  hostname: edge-1\nmdns:\n  ttl: 120\n  hostz: [hostname]\n")
    result = edgeagent("check", "-c", str(config), tmp=tmp_path)
    assert result.returncode == 1
    assert f"{config}:5" in result.stderr
    assert "mdns.hostz" in result.stderr
    assert "did you mean 'hosts'" in result.stderr


def test_info_without_an_agent_shows_records_from_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "device: {hostname: edge-2e6d}\n"
        "mdns:\n  services:\n    - {id: ssh, protocol: ssh, transport: tcp, port: 22}\n"
    )
    result = edgeagent("info", "-c", str(config), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no agent is running" in result.stderr
    lines = result.stdout.splitlines()
    assert "_ssh._tcp.local: type PTR, class IN, ttl 120, edge-2e6d._ssh._tcp.local" in lines
    assert (
        "edge-2e6d._ssh._tcp.local: type SRV, class IN, ttl 120, "
        "priority 0, weight 0, port 22, edge-2e6d.local."
    ) in lines
    assert "edge-2e6d.local: type A, class IN, ttl 120, addr <interface_ipv4>" in lines


def test_services_add_without_an_agent_says_so(tmp_path: Path) -> None:
    result = edgeagent(
        "services", "add", "--id", "web", "--type", "_http._tcp", "--port", "80", tmp=tmp_path
    )
    assert result.returncode == 1
    assert "no agent is running" in result.stderr


def test_keygen_makes_a_32_byte_key_the_config_accepts(tmp_path: Path) -> None:
    import base64

    plain = edgeagent("keygen", tmp=tmp_path)
    assert plain.returncode == 0
    assert len(base64.b64decode(plain.stdout.strip())) == 32
    named = edgeagent("keygen", "--name", "cluster_key", tmp=tmp_path)
    name, _, key = named.stdout.strip().partition(": ")
    assert name == "cluster_key"
    assert key != plain.stdout.strip()
    (tmp_path / "secrets.yaml").write_text(named.stdout)
    config = tmp_path / "c.yaml"
    config.write_text(
        "mesh:\n  clusters:\n    - name: greenhouse\n      key: !secret cluster_key\n"
    )
    checked = edgeagent("check", "--json", "-c", str(config), tmp=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert key not in checked.stdout  # secrets stay redacted
    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh:\n  clusters:\n    - name: greenhouse\n      key: c2hvcnQ=\n")
    rejected = edgeagent("check", "-c", str(bad), tmp=tmp_path)
    assert rejected.returncode == 1
    assert "edgeagent keygen" in rejected.stderr


# What a client command must not load: the agent, the config loader, the reactor graph and
# runtime, the event loop. Start-up time on a Pi is spent on these.
HEAVY = (
    "edgeagent.agent",
    "edgeagent.device",
    "edgeagent.config.loader",
    "edgeagent.reactors.graph",
    "edgeagent.reactors.runtime",
    "asyncio",
    "yaml",
    "zeroconf",
    "aiosqlite",
)
LOADED = """
import sys
from edgeagent.cli import main
code = main(sys.argv[1:])
print(code, *[name for name in {heavy!r} if name in sys.modules])
"""


@pytest.mark.parametrize(
    "command",
    [
        ["services", "list"],
        ["resolve", "edge-1.local"],
        ["peers"],
        ["peers", "call", "abc", "agent.echo"],
        ["intent", "send", "counter.increment", "by=1"],
        ["intent", "send", "-"],
        ["reactors"],
        ["reactors", "show", "counter"],
        ["journal"],
    ],
)
def test_client_commands_load_neither_the_agent_nor_the_config(
    tmp_path: Path, command: list[str]
) -> None:
    # No agent runs: each command gets as far as the control socket and stops there (exit 1).
    code = LOADED.format(heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code, *command, "--runtime-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=30, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "no agent is running" in result.stderr
    assert result.stdout.split() == ["1"]


def test_info_loads_the_config_but_not_the_agent(tmp_path: Path) -> None:
    code = LOADED.format(heavy=("edgeagent.agent", "edgeagent.reactors.runtime"))
    result = subprocess.run(
        [sys.executable, "-c", code, "info", "-c", str(tmp_path / "absent.yaml"),
         "--runtime-dir", str(tmp_path), "--state-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=30, check=False,
    )  # fmt: skip
    assert result.stdout.splitlines()[-1] == "0"

"""Binding port 53 without privileges: the error must say what to do. Loopback only.

Runs the bridge as ``nobody`` (``setpriv``, all capabilities dropped) against 127.0.0.1:53;
nothing is ever bound when it works as intended.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SETPRIV = shutil.which("setpriv")
SCRIPT = """
import asyncio
from edgeagent.bridge import BridgeServer, StaticNameSource
from edgeagent.config.model import DnsBridgeConfig
from edgeagent.errors import AddressInUseError, TransportError

async def main():
    server = BridgeServer(DnsBridgeConfig(address="127.0.0.1", port=53), StaticNameSource())
    try:
        await server.start()
    except AddressInUseError as exc:
        print("IN-USE", exc)
    except TransportError as exc:
        print("ERROR", exc)
    else:
        print("BOUND")
    finally:
        await server.close()

asyncio.run(main())
"""


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed")
@pytest.mark.skipif(_unprivileged_port_start() <= 53, reason="port 53 is unprivileged here")
def test_port_53_without_capability_names_cap_net_bind_service() -> None:
    assert SETPRIV is not None
    done = subprocess.run(
        [
            SETPRIV,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            sys.executable,
            "-c",
            SCRIPT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if not done.stdout.startswith(("ERROR", "IN-USE", "BOUND")):
        pytest.skip(f"cannot run the interpreter as nobody: {done.stderr.strip()[-300:]}")
    if done.stdout.startswith("IN-USE"):
        pytest.skip("127.0.0.1:53 is already taken on this host")
    assert done.stdout.startswith("ERROR"), done.stdout
    assert "127.0.0.1:53" in done.stdout
    assert "permission denied" in done.stdout
    assert "CAP_NET_BIND_SERVICE" in done.stdout
    assert "dns_bridge.port" in done.stdout

"""The seam a reload lands on: a second set of parts, built from a new config and started from a
short-lived task, is swapped in under the same API, and the old set closes without touching it.

Runs in-process inside a device namespace (the parts multicast on its interfaces): the same
``build_parts``/``start_parts`` the agent uses, the same ``api`` functions the control socket
serves, and a peer device that resolves the names the device advertises before and after.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.integration.agents import device_config, start_agent, wait_established, wait_until
from tests.netlab import Lab

pytestmark = pytest.mark.netns

SWAP = r"""
import asyncio, json, sys, time
from contextlib import AsyncExitStack
from pathlib import Path

from edgeagent import api
from edgeagent.agent import build_parts, start_parts
from edgeagent.api.context import Device
from edgeagent.config.loader import load_config
from edgeagent.config.model import Paths
from edgeagent.state import RuntimeState, StateStore

root = Path(sys.argv[1])


def config(host, journal):
    overrides = {"device": {"hostname": host}, "journal": {"path": journal},
                 "dns_bridge": {"enabled": False}}
    return load_config(None, overrides=overrides)


class View:
    def __init__(self, device):
        self.device = device
        self.parts = None


async def main():
    paths = Paths(str(root / "none.yaml"), str(root / "state"), str(root / "run"))
    device = Device(paths, "swap-device", StateStore(root / "state"), RuntimeState(),
                    time.monotonic())
    view = View(device)
    methods = api.control_handlers(view)
    out = {}
    old_stack = AsyncExitStack()
    view.parts = build_parts(config("before", "one.sqlite3"), device, view)
    await start_parts(view.parts, old_stack)
    await view.parts.mdns.wait_interfaces()
    await methods["intent.send"]({"name": "counter.increment", "payload": {"by": 3}})
    out["before"] = await methods["status"]({})
    print(json.dumps({"event": "first"}), flush=True)
    await asyncio.sleep(float(sys.argv[2]))

    # Build and start the second set from a request-like task that ends right after.
    new_stack = AsyncExitStack()
    new_parts = build_parts(config("after", "two.sqlite3"), device, view)

    async def start_new():
        await start_parts(new_parts, new_stack)

    await asyncio.create_task(start_new())
    old_parts, view.parts = view.parts, new_parts
    await old_stack.aclose()
    out["old_states"] = {name: part.report().state for name, part in old_parts.reporting().items()}
    await new_parts.mdns.wait_interfaces()
    await methods["intent.send"]({"name": "counter.increment", "payload": {"by": 1}})
    out["after"] = await methods["status"]({})
    out["count"] = (await methods["reactors.show"]({"id": "counter"}))["reactor_state"]["count"]
    print(json.dumps({"event": "swapped", **out}), flush=True)
    await asyncio.sleep(float(sys.argv[2]))
    await new_stack.aclose()
    left = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    print(json.dumps({"event": "closed", "left": left}), flush=True)


asyncio.run(main())
"""


def test_a_second_set_of_parts_is_swapped_in_under_the_same_api(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    device = lab.add_device("dev", [("lan", "10.77.43.1")])
    peer_device = lab.add_device("peer", [("lan", "10.77.43.2")])
    peer = start_agent(peer_device, tmp_path / "peer", device_config("peer"))
    wait_established(peer)
    log = tmp_path / "swap.log"
    script = tmp_path / "swap.py"
    script.write_text(SWAP)
    proc = device.popen(sys.executable, str(script), str(tmp_path / "dev"), "3", log=log)

    def events() -> list[dict[str, object]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    try:
        wait_until(lambda: any(e["event"] == "first" for e in events()), 20, "the first set")
        assert wait_until(lambda: peer.dig("before.local"), 10, "before.local") == ["10.77.43.1"]
        swapped = wait_until(
            lambda: next((e for e in events() if e["event"] == "swapped"), None), 20, "the swap"
        )
        before, after = swapped["before"], swapped["after"]
        assert isinstance(before, dict)
        assert isinstance(after, dict)
        assert before["mdns"]["hosts"] == ["before.local"]
        assert after["mdns"]["hosts"] == ["after.local"]  # the same API sees the new parts
        assert after["healthy"] is True
        assert swapped["count"] == 1  # the new journal (two.sqlite3) started from nothing
        assert set(swapped["old_states"].values()) == {"stopped"}
        assert wait_until(lambda: peer.dig("after.local"), 10, "after.local") == ["10.77.43.1"]
        # The old set said goodbye (RFC 6762 §10.1): its name is gone from the peer's cache.
        wait_until(lambda: peer.dig("before.local") == [], 10, "before.local to go")
        closed = wait_until(
            lambda: next((e for e in events() if e["event"] == "closed"), None), 20, "the close"
        )
        assert closed["left"] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)

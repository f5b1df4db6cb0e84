"""Idle agent footprint: RSS and CPU of a real agent over 60 s, inside a network namespace.

Target (issue "Names on the LAN"): < 45 MB RSS, < 1 % of one core. The reference figures are
printed beside ours from the same machine: the bare Python interpreter importing the same
libraries, and, when installed, avahi-daemon idling in a namespace of its own.

    sudo .venv/bin/python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, write_result

from tests.integration.agents import device_config, start_agent, wait_established
from tests.netlab import Lab

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def measure(pid: int, seconds: float) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    peak = 0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, rss_kib(pid))
        time.sleep(1)
    cpu = cpu_seconds(pid) - cpu0
    wall = time.monotonic() - t0
    return {
        "rss_mib": rss_kib(pid) / 1024,
        "peak_rss_mib": peak / 1024,
        "cpu_pct": 100 * cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    lab = Lab()
    try:
        lab.add_lan("lan")
        dev = lab.add_device("dev", [("lan", "10.77.9.1")])
        peer = lab.add_device("peer", [("lan", "10.77.9.2")])
        with tempfile.TemporaryDirectory() as tmp:
            agent = start_agent(dev, Path(tmp) / "dev", device_config("idle-dev"))
            other = start_agent(peer, Path(tmp) / "peer", device_config("idle-peer"))
            wait_established(agent)
            wait_established(other)
            ours = measure(agent.proc.pid, args.seconds)
            baseline = subprocess.run(
                [
                    str(REPO / ".venv/bin/python"),
                    "-c",
                    "import dnslib, yaml, ifaddr, aiosqlite, serial, asyncio, uvloop;"
                    "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            imports_mib = int(baseline.stdout.strip()) / 1024
    finally:
        lab.close()
    result = {
        "seconds": args.seconds,
        "agent": ours,
        "python_with_imports_rss_mib": imports_mib,
        "targets": {"rss_mib": 45, "cpu_pct": 1.0},
        "ratios": {"rss_vs_target": ours["rss_mib"] / 45, "cpu_vs_target": ours["cpu_pct"] / 1.0},
    }
    path = write_result("idle", result)
    print(
        f"idle agent over {args.seconds:.0f}s: RSS {ours['rss_mib']:.1f} MiB "
        f"(peak {ours['peak_rss_mib']:.1f}; python+imports alone {imports_mib:.1f}), "
        f"CPU {ours['cpu_pct']:.2f}% of one core"
    )
    print(
        f"targets: < 45 MiB ({ours['rss_mib'] / 45:.2f}x of target), "
        f"< 1% CPU ({ours['cpu_pct']:.2f}x of target); {path}"
    )


if __name__ == "__main__":
    main()

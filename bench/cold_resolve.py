"""Cold resolution of a peer's name through the DNS bridge, across namespaces.

Device B advertises many aliases; device A asks its bridge (127.0.0.53) for each alias once,
so every query misses A's cache and needs a live mDNS exchange. Target: median < 50 ms.
For reference the same names are then asked again (warm: answered from A's cache).

    sudo .venv/bin/python bench/cold_resolve.py [--names 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import REPO, summary, write_result

from tests.integration.agents import device_config, start_agent, wait_established
from tests.netlab import Device, Lab

CLIENT = r"""
import json, socket, sys, time
from dnslib import DNSRecord
names = sys.argv[1:]
out = []
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2)
for name in names:
    q = DNSRecord.question(name, "A")
    t0 = time.perf_counter()
    sock.sendto(q.pack(), ("127.0.0.53", 53))
    reply = DNSRecord.parse(sock.recv(4096))
    dt = time.perf_counter() - t0
    out.append({"name": name, "ms": dt * 1000, "answers": len(reply.rr)})
print(json.dumps(out))
"""


def ask(device: Device, names: list[str]) -> list[dict[str, float]]:
    result = device.exec(str(REPO / ".venv/bin/python"), "-c", CLIENT, *names, timeout=120)
    return list(json.loads(result.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=60)
    args = parser.parse_args()
    aliases = [f"alias{i}" for i in range(args.names)]
    lab = Lab()
    try:
        lab.add_lan("lan")
        a = lab.add_device("a", [("lan", "10.77.8.1")])
        b = lab.add_device("b", [("lan", "10.77.8.2")])
        with tempfile.TemporaryDirectory() as tmp:
            # B first, and A only once B has finished announcing: A then holds none of B's
            # names, so every query below needs a live mDNS exchange.
            agent_b = start_agent(
                b, Path(tmp) / "b", device_config("cold-b", hosts=["hostname", *aliases])
            )
            wait_established(agent_b, timeout=30)
            agent_a = start_agent(a, Path(tmp) / "a", device_config("cold-a"))
            wait_established(agent_a)
            names = [f"{alias}.local" for alias in aliases]
            cached = {
                row["name"] for rows in agent_a.info("--caches")["caches"].values() for row in rows
            }
            precached = sorted(set(names) & cached)
            cold = ask(a, names)
            warm = ask(a, names)
    finally:
        lab.close()
    missing = [row["name"] for row in cold if not row["answers"]]
    cold_ms = summary([row["ms"] for row in cold])
    warm_ms = summary([row["ms"] for row in warm])
    if precached:
        print(f"warning: {len(precached)} names were cached before the cold run")
    result = {
        "precached": precached,
        "cold_ms": cold_ms,
        "warm_ms": warm_ms,
        "unanswered": missing,
        "target_median_ms": 50,
        "ratio_median_vs_target": cold_ms["median"] / 50,
    }
    path = write_result("cold_resolve", result)
    print(
        f"cold: median {cold_ms['median']:.1f} ms, p90 {cold_ms['p90']:.1f}, "
        f"max {cold_ms['max']:.1f} "
        f"({len(missing)} unanswered of {len(cold)}); warm: median {warm_ms['median']:.2f} ms"
    )
    print(f"target median < 50 ms: {cold_ms['median'] / 50:.2f}x of target; {path}")


if __name__ == "__main__":
    main()

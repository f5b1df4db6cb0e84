"""Mesh benchmarks with real agents in network namespaces.

Measures, with every agent's own membership event log (timestamps are CLOCK_MONOTONIC,
shared by all processes on the machine, so no polling skews the numbers):

- convergence: N agents started together, time until every agent has seen every other join;
- join: one more agent started into a converged cluster, time until it is a member on all;
- failure detection: ``kill -9`` of one agent, time until every other one has it dead;
  compared with memberlist's LAN formula at the same N (probe interval + suspicion timeout
  4 x log10(N+1) x probe interval; memberlist starts suspicion at up to 6x that and shortens
  it with confirmations, so the formula is its best case);
- steady-state packets per device per second (mDNS + mesh), over ``--steady`` seconds.

    sudo .venv/bin/python bench/mesh.py [--sizes 5,20] [--converge 20,50] [--steady 20]
"""

from __future__ import annotations

import argparse
import base64
import compileall
import math
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from common import summary, write_result

from tests.integration.agents import AgentHandle, device_config, start_agent, wait_until
from tests.netlab import Lab, run

MEMBERLIST_PROBE_INTERVAL = 1.0  # memberlist's DefaultLANConfig


TIMING: dict[str, str] = {}  # probe_interval/probe_timeout overrides from the command line


def config(name: str, key: str) -> dict[str, Any]:
    cfg = device_config(name)
    cfg["dns_bridge"]["enabled"] = False
    cfg["mesh"] = {
        "enabled": True,
        "clusters": [{"name": "bench", "key": key, "port": 4370, **TIMING}],
    }
    return cfg


def info(agent: AgentHandle) -> dict[str, Any]:
    # Straight over the control socket: a CLI process per poll would cost ~0.3 s of CPU
    # each, which at N=50 starves the very agents being measured.
    return dict(agent.call("info"))


def joined_at(agent: AgentHandle) -> dict[str, float]:
    """device id -> first time this agent saw it join."""
    out: dict[str, float] = {}
    for event in info(agent)["peers"]["events"]:
        if event["kind"] in ("joined", "alive") and event["device_id"] not in out:
            out[event["device_id"]] = event["at"]
    return out


def event_at(agent: AgentHandle, device_id: str, kinds: tuple[str, ...]) -> float | None:
    for event in info(agent)["peers"]["events"]:
        if event["device_id"] == device_id and event["kind"] in kinds:
            return float(event["at"])
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``ip netns exec`` execs the agent in place)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def false_deaths(cluster: Cluster, victims: frozenset[str] = frozenset()) -> int:
    """ "dead" events, over every running agent's log, about devices (ids) never killed."""
    return sum(
        1
        for agent in cluster.agents.values()
        if agent.proc.poll() is None
        for event in info(agent)["peers"]["events"]
        if event["kind"] == "dead" and event["device_id"] not in victims
    )


def alive_count(agent: AgentHandle) -> int:
    return sum(1 for p in agent.call("peers") if p["state"] == "alive")


class Cluster:
    def __init__(self, lab: Lab, root: Path, key: str) -> None:
        self.lab, self.root, self.key = lab, root, key
        self.agents: dict[str, AgentHandle] = {}
        self.started: dict[str, float] = {}
        lab.add_lan("lan")

    def start(self, count: int) -> list[str]:
        names = []
        base = len(self.agents)
        devices = []
        for i in range(base, base + count):
            name = f"n{i}"
            devices.append(
                (name, self.lab.add_device(name, [("lan", f"10.77.{30 + i // 200}.{1 + i % 200}")]))
            )
        for name, device in devices:
            self.started[name] = time.monotonic()
            self.agents[name] = start_agent(device, self.root / name, config(name, self.key))
            names.append(name)
        return names

    def device_ids(self) -> dict[str, str]:
        return {name: info(agent)["device_id"] for name, agent in self.agents.items()}


def converge(n: int, key: str) -> dict[str, Any]:
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster(lab, Path(tmp), key)
            names = cluster.start(n)
            t0 = min(cluster.started.values())
            for name in names:
                wait_until(
                    lambda a=cluster.agents[name]: alive_count(a) >= n - 1,
                    60 + n,
                    f"{name} to see all",
                    interval=1.0,
                )
            ids = cluster.device_ids()
            # On 2 cores, starting 50 Python processes takes seconds by itself: report the time
            # from the first spawn and from the moment the last agent was up.
            last_ready = max(info(a)["started_at"] for a in cluster.agents.values())
            per_agent = []
            for name in names:
                seen = joined_at(cluster.agents[name])
                others = [seen[ids[o]] for o in names if o != name]
                per_agent.append(max(others))
            return {
                "n": n,
                "all_see_all_s": max(per_agent) - t0,
                "all_see_all_after_last_ready_s": max(0.0, max(per_agent) - last_ready),
                "startup_spread_s": last_ready - t0,
                "per_agent_from_first_spawn": summary([t - t0 for t in per_agent]),
                "false_deaths": false_deaths(cluster),
            }
    finally:
        lab.close()


def converge_on_link_up(n: int, key: str) -> dict[str, Any]:
    """N agents already running with their cables out, then every cable in at once.

    Starting N Python processes on a 2-core host takes seconds by itself (N=50: ~11 s), which
    ``converge`` counts. Here the processes start first with their bridge ports down (no
    carrier: the agents see no usable interface), and the clock starts when one ``ip -batch``
    brings every port up: devices that booted before their switch did. What is left is the
    protocol: probing, announcing, discovery, challenges, joins and gossip, all at once.
    """
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster(lab, Path(tmp), key)
            devices = []
            for i in range(n):
                name = f"n{i}"
                device = lab.add_device(name, [("lan", f"10.77.{30 + i // 200}.{1 + i % 200}")])
                devices.append((name, device))
            lan_ns, _ = lab.bridge_port(devices[0][1])
            ports = [lab.bridge_port(device)[1] for _, device in devices]
            batch = Path(tmp) / "ports"
            batch.write_text("".join(f"link set {port} down\n" for port in ports))
            run("ip", "-n", lan_ns, "-batch", str(batch))
            for name, device in devices:
                cluster.agents[name] = start_agent(device, cluster.root / name, config(name, key))
            for agent in cluster.agents.values():
                wait_until(lambda a=agent: info(a), 60 + n, "every agent to be up", interval=0.5)
            time.sleep(3)  # start-up work done, idle
            batch.write_text("".join(f"link set {port} up\n" for port in ports))
            cpu_before = {name: cpu_seconds(a.proc.pid) for name, a in cluster.agents.items()}
            t0 = time.monotonic()
            run("ip", "-n", lan_ns, "-batch", str(batch))
            for agent in cluster.agents.values():
                wait_until(
                    lambda a=agent: alive_count(a) >= n - 1, 60 + n, "all to see all", interval=1.0
                )
            cpu = [cpu_seconds(a.proc.pid) - cpu_before[name] for name, a in cluster.agents.items()]
            ids = cluster.device_ids()
            per_agent = []
            for name, agent in cluster.agents.items():
                seen = joined_at(agent)
                per_agent.append(max(seen[ids[o]] for o in cluster.agents if o != name))
            return {
                "n": n,
                "all_see_all_after_links_up_s": max(per_agent) - t0,
                "per_agent": summary([t - t0 for t in per_agent]),
                # CPU each agent used from cables-in until it was polled after convergence
                # (an upper bound on what converging cost it): with one core per device this,
                # not the shared host's queue, bounds how long converging takes.
                "cpu_s_per_agent": summary(cpu),
                "host_cores": os.cpu_count(),
                "false_deaths": false_deaths(cluster),
            }
    finally:
        lab.close()


def failure_and_join(n: int, key: str, steady: float) -> dict[str, Any]:
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster(lab, Path(tmp), key)
            joiners = min(5, n - 1)
            names = cluster.start(n - joiners)
            for name in names:
                wait_until(
                    lambda a=cluster.agents[name]: alive_count(a) >= len(names) - 1,
                    60 + n,
                    f"{name} to see all",
                    interval=1.0,
                )
            # Join: newcomers started one at a time into the converged cluster, each timed from
            # its spawn to the moment every member already there has it as joined.
            join_times = []
            for _ in range(joiners):
                present = list(cluster.agents)
                (newcomer,) = cluster.start(1)
                wait_until(
                    lambda present=present: all(
                        alive_count(cluster.agents[o]) >= len(present) for o in present
                    ),
                    60,
                    "the newcomer to be a member everywhere",
                    interval=0.5,
                )
                new_id = info(cluster.agents[newcomer])["device_id"]
                join_times.append(
                    max(
                        (event_at(cluster.agents[o], new_id, ("joined", "alive")) or math.inf)
                        for o in present
                    )
                    - cluster.started[newcomer]
                )
                names.append(newcomer)
            ids = cluster.device_ids()

            # Steady state: packets sent per device per second.
            def sent() -> dict[str, int]:
                out = {}
                for name, agent in cluster.agents.items():
                    doc = info(agent)
                    mesh_sent = sum(c["stats"]["sent"] for c in doc["peers"]["clusters"].values())
                    out[name] = mesh_sent + int(doc["mdns"]["stats"]["packets_sent"])
                return out

            time.sleep(3)
            before, t_before = sent(), time.monotonic()
            time.sleep(steady)
            after, t_after = sent(), time.monotonic()
            rate = sum(after[k] - before[k] for k in after) / len(after) / (t_after - t_before)
            # Failure detection: kill -9 one agent, time to "dead" on all others.
            victim = names[len(names) // 2]
            killed = time.monotonic()
            cluster.agents[victim].proc.send_signal(signal.SIGKILL)
            cluster.agents[victim].proc.wait()
            survivors = [x for x in cluster.agents if x != victim]
            wait_until(
                lambda: all(event_at(cluster.agents[s], ids[victim], ("dead",)) for s in survivors),
                120,
                "all survivors to declare the victim dead",
                interval=1.0,
            )
            detect = [
                (event_at(cluster.agents[s], ids[victim], ("dead",)) or math.inf) - killed
                for s in survivors
            ]
            memberlist = MEMBERLIST_PROBE_INTERVAL * (1 + 4 * math.log10(n + 1))
            return {
                "n": n,
                "join_s": summary(join_times),
                "detect_s": summary(detect),
                "detect_all_s": max(detect),
                "memberlist_formula_s": memberlist,
                "ratio_detect_all_vs_memberlist": max(detect) / memberlist,
                "packets_per_device_per_s": rate,
                "false_deaths": false_deaths(cluster, frozenset({ids[victim]})),
            }
    finally:
        lab.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5,20", help="N for join/failure runs")
    parser.add_argument("--converge", default="20,50", help="N for convergence runs")
    parser.add_argument(
        "--link-up", default="20,50", help="N for convergence when all cables go in at once"
    )
    parser.add_argument("--steady", type=float, default=20.0)
    parser.add_argument("--probe-interval", help="e.g. 1s (default: the config default)")
    parser.add_argument("--probe-timeout", help="e.g. 500ms (default: the config default)")
    args = parser.parse_args()
    # Agents start from byte-compiled modules, as on a device image (PYTHONDONTWRITEBYTECODE
    # would otherwise make each of the N agents compile every module itself).
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "edgeagent", quiet=1)
    if args.probe_interval:
        TIMING["probe_interval"] = args.probe_interval
    if args.probe_timeout:
        TIMING["probe_timeout"] = args.probe_timeout
    key = base64.b64encode(os.urandom(32)).decode()
    results: dict[str, Any] = {
        "timing": TIMING or "config defaults",
        "failure_and_join": [],
        "convergence": [],
        "convergence_on_link_up": [],
    }
    for n in [int(x) for x in args.sizes.split(",") if x]:
        row = failure_and_join(n, key, args.steady)
        results["failure_and_join"].append(row)
        print(
            f"N={n}: join median {row['join_s']['median']:.2f}s (max {row['join_s']['max']:.2f}); "
            f"dead on all after {row['detect_all_s']:.2f}s vs memberlist formula "
            f"{row['memberlist_formula_s']:.2f}s ({row['ratio_detect_all_vs_memberlist']:.2f}x); "
            f"{row['packets_per_device_per_s']:.1f} packets/device/s; "
            f"{row['false_deaths']} false deaths"
        )
    for n in [int(x) for x in args.converge.split(",") if x]:
        try:
            row = converge(n, key)
        except AssertionError as exc:  # not converged within the bound: a result, not a crash
            results["convergence"].append({"n": n, "converged": False, "error": str(exc)})
            print(f"N={n}: did not converge: {exc}")
            continue
        results["convergence"].append(row)
        print(
            f"N={n}: all see all {row['all_see_all_s']:.2f}s after the first spawn, "
            f"{row['all_see_all_after_last_ready_s']:.2f}s after the last agent was up "
            f"(starting them took {row['startup_spread_s']:.2f}s); "
            f"{row['false_deaths']} false deaths"
        )
    for n in [int(x) for x in args.link_up.split(",") if x]:
        row = converge_on_link_up(n, key)
        results["convergence_on_link_up"].append(row)
        print(
            f"N={n}: all cables in at once -> all see all after "
            f"{row['all_see_all_after_links_up_s']:.2f}s; CPU per agent median "
            f"{row['cpu_s_per_agent']['median']:.2f}s (max {row['cpu_s_per_agent']['max']:.2f}s) "
            f"on {row['host_cores']} cores; {row['false_deaths']} false deaths"
        )
    print(write_result("mesh", results))


if __name__ == "__main__":
    main()

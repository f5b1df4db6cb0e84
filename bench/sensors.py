"""CPU of a real agent reading 10 serial sensors at 10 Hz each, beside the same agent without.

Target (issue 11, "Sensors"): the sensors' share <= 5 % of one core on this machine. The
share is the difference between two agents' CPU over the same window, same run, same
config except for the sensors:

- **off**: ``sensors: []``;
- **sensors**: 10 ``platform: serial`` sensors (parser ``json`` on even ids, ``kv`` on odd
  ones), each on a pseudo-terminal this process opens (``os.openpty``); the agent opens the
  slave's path like a USB adapter's. No reactor takes their readings (no intent, no disk);
- **reactors**: the same, plus one ``threshold`` reactor per sensor subscribed to its
  ``pm25`` field, so every reading becomes a journaled intent; readings share commits
  (``journal.readings_commit_within``, default 2 s);
- **reactors-each**: the same with ``readings_commit_within: 0s``, one commit per reading.

``--configs`` picks some of them (``off`` always runs: it is the reference).

This process writes one line every 1/``--rate`` s to each master, open loop on
``time.perf_counter`` (the sensors staggered evenly), for a warm-up and then ``--seconds``.
CPU is the agent process's utime+stime (every thread's) from ``/proc/<pid>/stat`` over that
window; readings, frames and drops come from the control socket's ``sensors.list`` at both
ends of it. The configurations run one after another, alternating their order each round.

The agents run one at a time in a device namespace of a lab (``tests.netlab``), so their
mDNS traffic never reaches the machine's interfaces; each is stopped by its PID after its
run and the lab's namespaces are removed at the end. Needs root:

    sudo .venv/bin/python bench/sensors.py [--seconds 30] [--rounds 2] [--warmup 5]
                                           [--sensors 10] [--rate 10] [--configs ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, Pty, write_result

from tests.integration.agents import (
    AgentHandle,
    device_config,
    start_agent,
    wait_established,
    wait_until,
)
from tests.netlab import Device, Lab

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_PCT = 5.0
CONFIGS = ("off", "sensors", "reactors", "reactors-each")
MEDIAN_KEYS = (
    "cpu_pct",
    "user_pct",
    "system_pct",
    "loop_thread_pct",
    "other_threads_pct",
    "readings",
    "dropped",
    "intents_journaled",
    "journal_commits",
    "disk_write_bytes",
)
FIELDS = {
    "pm25": {"unit": "µg/m³", "device_class": "pm25"},
    "t": {"unit": "°C", "device_class": "temperature"},
}


def cpu_ticks(pid: int) -> dict[str, int]:
    """utime and stime of the whole process (every thread) and of its main thread (the
    event loop), in clock ticks."""

    def times(path: str) -> tuple[int, int]:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])

    user, system = times(f"/proc/{pid}/stat")
    main_user, main_system = times(f"/proc/{pid}/task/{pid}/stat")
    return {"user": user, "system": system, "loop_user": main_user, "loop_system": main_system}


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def line_for(sensor: int, index: int) -> bytes:
    pm25 = round(10 + (7 * index + sensor) % 50 / 10, 1)
    t = round(21 + (3 * index + sensor) % 20 / 10, 1)
    if sensor % 2 == 0:
        return f'{{"pm25": {pm25}, "t": {t}}}\n'.encode()
    return f"pm25={pm25} t={t}\n".encode()


def agent_config(name: str, kind: str, ptys: list[Pty]) -> dict[str, Any]:
    config = device_config(name)
    config["dns_bridge"]["enabled"] = False
    config["sensors"] = []
    if kind == "off":
        return config
    config["sensors"] = [
        {
            "id": f"s{i}",
            "platform": "serial",
            "port": pty.path,
            "baud": 115200,
            "parser": "json" if i % 2 == 0 else "kv",
            "fields": FIELDS,
        }
        for i, pty in enumerate(ptys)
    ]
    if kind.startswith("reactors"):
        # high is never reached: every reading is journaled and applied, no action follows.
        config["reactors"] = [
            {"id": f"th{i}", "type": "threshold",
             "subscribe": {f"sensor.s{i}.pm25": "reading"}, "options": {"high": 1000}}
            for i in range(len(ptys))
        ]  # fmt: skip
    if kind == "reactors-each":
        config["journal"] = {"readings_commit_within": "0s"}  # one commit per reading
    return config


def sensor_rows(agent: AgentHandle) -> list[dict[str, Any]]:
    return list(agent.call("sensors.list"))


def sample(agent: AgentHandle) -> dict[str, Any]:
    rows = sensor_rows(agent)
    status = agent.call("status")
    return {
        "rows": {row["id"]: row for row in rows},
        "parts": {name: part.get("counters", {}) for name, part in status["parts"].items()},
    }


def feed(
    ptys: list[Pty], rate: float, warmup: float, seconds: float, agent: AgentHandle
) -> dict[str, Any]:
    """Write to every pty on schedule; sample the agent after ``warmup`` and at the end."""
    pid = agent.proc.pid
    n = len(ptys)
    period = 1 / (rate * n) if n else 0.0  # one write every period, round robin
    start = time.perf_counter() + 0.05
    begin_at, end_at = start + warmup, start + warmup + seconds
    written = unwritten = 0
    j = 0
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    while True:
        now = time.perf_counter()
        if not first and now >= begin_at:
            first = {"sample": sample(agent), "wall": time.perf_counter()}
            first["ticks"], first["io"] = cpu_ticks(pid), write_bytes(pid)
        if now >= end_at:
            ticks, io = cpu_ticks(pid), write_bytes(pid)
            last = {"ticks": ticks, "io": io, "wall": time.perf_counter()}
            last["sample"] = sample(agent)
            break
        while n and start + j * period <= now and start + j * period < end_at:
            pty = ptys[j % n]
            try:
                os.write(pty.master, line_for(j % n, j // n))
                written += 1
            except BlockingIOError:
                unwritten += 1  # the agent stopped reading: its input buffer is full
            j += 1
        next_due = start + j * period if n else end_at
        wake = min(next_due, begin_at if not first else end_at, end_at)
        time.sleep(max(0.0002, wake - time.perf_counter()))
    window = last["wall"] - first["wall"]
    ticks = {k: (last["ticks"][k] - first["ticks"][k]) / CLK_TCK for k in last["ticks"]}
    cpu = ticks["user"] + ticks["system"]
    loop = ticks["loop_user"] + ticks["loop_system"]
    rows0, rows1 = first["sample"]["rows"], last["sample"]["rows"]
    per_sensor = {
        sid: {
            "readings_per_s": (row["readings"] - rows0[sid]["readings"]) / window,
            "frames": row["frames"] - rows0[sid]["frames"],
            "readings": row["readings"] - rows0[sid]["readings"],
            "dropped": sum(row["dropped"].values()) - sum(rows0[sid]["dropped"].values()),
            "state": row["state"],
        }
        for sid, row in rows1.items()
    }
    parts = _delta(first["sample"]["parts"], last["sample"]["parts"])
    return {
        "window_s": window,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / window,
        "user_pct": 100 * ticks["user"] / window,
        "system_pct": 100 * ticks["system"] / window,
        # the event loop's thread vs the rest (the journal's SQLite writer, worker threads)
        "loop_thread_pct": 100 * loop / window,
        "other_threads_pct": 100 * (cpu - loop) / window,
        "disk_write_bytes": last["io"] - first["io"],
        "lines_written": written,
        "lines_unwritten": unwritten,
        "frames": sum(s["frames"] for s in per_sensor.values()),
        "readings": sum(s["readings"] for s in per_sensor.values()),
        "dropped": sum(s["dropped"] for s in per_sensor.values()),
        "readings_per_sensor_per_s": {
            "min": min((s["readings_per_s"] for s in per_sensor.values()), default=0.0),
            "max": max((s["readings_per_s"] for s in per_sensor.values()), default=0.0),
        },
        "intents_journaled": parts.get("journal", {}).get("appended", 0),
        "journal_commits": parts.get("journal", {}).get("commits", 0),
        "counters_delta": parts,
        "per_sensor": per_sensor,
    }


def run_one(
    device: Device, root: Path, kind: str, ptys: list[Pty], args: argparse.Namespace
) -> dict[str, Any]:
    used = [] if kind == "off" else ptys
    agent = start_agent(device, root, agent_config(f"bench-{kind}", kind, used))
    try:
        wait_established(agent, timeout=20)
        # `ip netns exec` execs the agent in place: the PID we measure is the agent's own.
        cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes()
        assert b"edgeagent" in cmdline, f"pid {agent.proc.pid} is not the agent: {cmdline!r}"
        if used:
            wait_until(
                lambda: len(rows := sensor_rows(agent)) == len(used)
                and all(r["state"] == "open" for r in rows),
                20, "every sensor's port to open",
            )  # fmt: skip
        result = feed(used, args.rate, args.warmup, args.seconds, agent)
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent exited during the run:\n{agent.log()}")
        return result
    finally:
        if agent.proc.poll() is None:
            agent.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=5, help="writing before measuring")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sensors", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10, help="lines per second per sensor")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="off is always run")
    args = parser.parse_args()
    wanted = set(args.configs.split(",")) | {"off"}
    if wanted - set(CONFIGS):
        parser.error(f"unknown configs {sorted(wanted - set(CONFIGS))}; known: {CONFIGS}")
    kinds = [k for k in CONFIGS if k in wanted]
    ptys = [Pty.open() for _ in range(args.sensors)]
    lab = Lab()
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        lab.add_lan("lan")
        device = lab.add_device("dev", [("lan", "10.77.11.1")])
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = kinds if r % 2 == 0 else kinds[::-1]
                results: dict[str, dict[str, Any]] = {}
                for kind in order:
                    results[kind] = run_one(device, Path(tmp) / f"r{r}-{kind}", kind, ptys, args)
                    print_run(r, kind, results[kind])
                rounds.append(results)
    finally:
        lab.close()
        for pty in ptys:
            pty.close()

    def median(kind: str, key: str) -> float:
        return statistics.median(float(rnd[kind][key]) for rnd in rounds)

    share = {
        kind: statistics.median(rnd[kind]["cpu_pct"] - rnd["off"]["cpu_pct"] for rnd in rounds)
        for kind in kinds
        if kind != "off"
    }
    medians = {kind: {key: median(kind, key) for key in MEDIAN_KEYS} for kind in kinds}
    result = {
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "sensors": args.sensors,
        "rate_per_sensor": args.rate,
        "code": str(REPO),  # the agent runs the edgeagent package of this tree
        "loadavg_at_end": os.getloadavg(),
        "target_share_pct": TARGET_PCT,
        "runs": rounds,
        "median": medians,
        "share_pct": share,
        "share_vs_target": {kind: value / TARGET_PCT for kind, value in share.items()},
    }
    path = write_result("sensors", result)
    print()
    print(f"{args.sensors} sensors at {args.rate:g} Hz, {args.seconds:g} s windows, "
          f"{args.rounds} rounds (median)")  # fmt: skip
    print(f"{'config':<13} {'CPU %':>6} {'user':>6} {'sys':>6} {'loop':>6} {'others':>6}"
          f" {'share':>6} {'/target':>7} {'readings/s':>10} {'journaled/s':>11}"
          f" {'disk KiB/s':>10}")  # fmt: skip
    for kind in kinds:
        m = medians[kind]
        extra = (f"{share[kind]:>6.2f} {share[kind] / TARGET_PCT:>6.2f}x"
                 if kind in share else f"{'':>6} {'':>7}")  # fmt: skip
        print(f"{kind:<13} {m['cpu_pct']:>6.2f} {m['user_pct']:>6.2f} {m['system_pct']:>6.2f}"
              f" {m['loop_thread_pct']:>6.2f} {m['other_threads_pct']:>6.2f} {extra}"
              f" {m['readings'] / args.seconds:>10.1f}"
              f" {m['intents_journaled'] / args.seconds:>11.1f}"
              f" {m['disk_write_bytes'] / 1024 / args.seconds:>10.0f}")  # fmt: skip
    print(path)


def print_run(r: int, kind: str, res: dict[str, Any]) -> None:
    rate = res["readings_per_sensor_per_s"]
    print(
        f"round {r} {kind:<13} CPU {res['cpu_pct']:6.2f}% of a core over {res['window_s']:.1f} s"
        f" (user {res['user_pct']:.2f}, sys {res['system_pct']:.2f}; loop thread"
        f" {res['loop_thread_pct']:.2f}, others {res['other_threads_pct']:.2f});"
        f" lines {res['lines_written']} (unwritten {res['lines_unwritten']}),"
        f" frames {res['frames']}, readings {res['readings']}, dropped {res['dropped']},"
        f" readings/s per sensor {rate['min']:.2f}-{rate['max']:.2f};"
        f" journaled {res['intents_journaled']} in {res['journal_commits']} commits,"
        f" disk writes {res['disk_write_bytes'] / 1024:.0f} KiB",
        flush=True,
    )


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each part's numeric counters, after minus before (gauges come out as changes)."""
    return {
        part: {
            key: value - before.get(part, {}).get(key, 0)
            for key, value in counters.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        for part, counters in after.items()
    }


if __name__ == "__main__":
    main()

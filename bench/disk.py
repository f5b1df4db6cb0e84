"""Bytes a real agent writes to disk per hour for one 1 Hz sensor feeding a window reactor.

Target (issue 11, "Sensors"): with readings grouped into shared commits
(``journal.readings_commit_within``), the bytes written per hour are <= 0.1x those of the
same setup committing each reading on its own. Four configurations of one agent, each
measured over the same window, one after another, alternating their order each round:

- **grouped 2s**: the default ``readings_commit_within`` (2 s);
- **each 0s**: ``readings_commit_within: 0s``, every reading its own commit: the reference;
- **grouped Ns**: longer windows (``--longer``, 10 s by default, or a list such as
  ``10,30``), to show how the ratio scales;
- **untaken**: the same sensor and no reactor subscribed: readings that nobody takes are no
  intents and should cost no disk write at all.

The sensor is ``platform: serial`` on a pseudo-terminal this process opens (``os.openpty``),
``parser: json``; this process writes one line a second (``{"pm25": 12.3}``) to the master, on
a ``time.perf_counter`` schedule. The reactor is ``type: window`` subscribed to
``sensor.air.pm25`` (the subscription is the grant, docs/sensors.md).

What is measured, over ``--seconds`` after ``--warmup`` seconds of readings, from
``/proc/<agent pid>/io`` (the whole process, every thread, the store's SQLite writer thread
included): ``write_bytes``, the bytes the process caused to be sent to the storage layer,
and ``wchar``, the bytes it passed to ``write()``-like calls (sockets and pipes too). The
kernel counts ``write_bytes`` when a page of the page cache becomes dirty, 4 KiB a page, so
a page counts again each time it is dirtied after being cleaned: by the commit's fsync, or by
the periodic writeback of the wal-index (``-shm``, which SQLite maps and never syncs). The
journal's counters (commits, intents appended) come from the control socket's ``status`` at
both ends, and the write-ahead log's size and checkpoint sequence from its header: frames
appended per commit, and ``pages_beyond_frames`` (``write_bytes`` / 4 KiB, less one page per
frame and one per commit for the previous commit's last, partly filled, page). What
``write_bytes`` does not count: the filesystem's own journal (ext4's jbd2 thread writes the
metadata of the files' growth on its own account), and a SQLite checkpoint when none falls in
the window (the output says when one did).

Every agent runs inside a network namespace (``tests.netlab``): its mDNS traffic never reaches
the machine's interfaces, and the lab is torn down by PID and name at the end. The state
directories go in a fresh directory under the system's temporary directory when that is on a
real filesystem (not tmpfs), else under ``bench/results/``; the output names the filesystem.
Needs root:

    sudo .venv/bin/python bench/disk.py [--seconds 120] [--rounds 2] [--warmup 15]
                                        [--longer 10[,30...]] [--only KEYS] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import REPO, Pty, mount_of, write_result

from tests.integration.agents import (
    AgentHandle,
    device_config,
    start_agent,
    wait_established,
    wait_until,
)
from tests.netlab import Device, Lab

TARGET_RATIO = 0.1
REFERENCE = "each_0s"
WINDOW_SECONDS = 300  # the window reactor's span (its state, not what is measured)
IO_FIELDS = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes",
             "cancelled_write_bytes")  # fmt: skip
WAL_HEADER = 32  # bytes; each frame is a 24-byte header and one page (SQLite "WAL format")
WAL_FRAME_HEADER = 24
PAGE = 4096  # the kernel's page: what write_bytes counts in


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    commit_within: str | None  # None: the default; the key is left out of the config
    reactor: bool


def setups(longer: list[float]) -> list[Setup]:
    return [
        Setup("default_2s", "grouped 2s (default)", None, True),
        Setup(REFERENCE, "each reading 0s", "0s", True),
        *(Setup(f"grouped_{w:g}s", f"grouped {w:g}s", f"{w:g}s", True) for w in longer),
        Setup("untaken", "no reactor", None, False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=15, help="readings before measuring")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--longer", default="10", help="longer commit windows, s: 10 or 10,30")
    parser.add_argument("--dir", help="where the agents' state directories go")
    parser.add_argument("--only", help="run only these configs (keys, comma-separated) beside"
                        f" the reference {REFERENCE}, e.g. grouped_30s")  # fmt: skip
    args = parser.parse_args()
    configs = setups([float(w) for w in args.longer.split(",") if w])
    if args.only:
        wanted = {REFERENCE, *args.only.split(",")}
        unknown = wanted - {setup.key for setup in configs}
        if unknown:
            parser.error(f"unknown config {sorted(unknown)}; known: {[s.key for s in configs]}")
        configs = [setup for setup in configs if setup.key in wanted]
    code = code_version()  # before the runs: other work may commit to the tree meanwhile
    base, where = state_base(args.dir)
    print(f"state directories in {where}", flush=True)
    pty = Pty.open()
    lab = Lab()
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        lab.add_lan("lan")
        device = lab.add_device("dev", [("lan", "10.77.12.1")])
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            results: dict[str, dict[str, Any]] = {}
            for setup in order:
                root = base / f"r{r}-{setup.key}"
                results[setup.key] = run_one(device, root, setup, pty, args)
                print_run(r, setup, results[setup.key])
            rounds.append(results)
    finally:
        lab.close()
        pty.close()
        shutil.rmtree(base, ignore_errors=True)
    report(args, configs, where, code, rounds)


# ---- one run


def run_one(
    device: Device, root: Path, setup: Setup, pty: Pty, args: argparse.Namespace
) -> dict[str, Any]:
    agent = start_agent(device, root, agent_config(setup, pty.path))
    try:
        wait_established(agent, timeout=20)
        # `ip netns exec` execs the agent in place: the PID we measure is the agent's own.
        cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes()
        assert b"edgeagent" in cmdline, f"pid {agent.proc.pid} is not the agent: {cmdline!r}"
        wait_until(
            lambda: [row["state"] for row in agent.call("sensors.list")] == ["open"],
            20, "the sensor's port to open",
        )  # fmt: skip
        drain(pty)
        result = feed(pty, args.warmup, args.seconds, agent)
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent exited during the run:\n{agent.log()}")
        return result
    finally:
        if agent.proc.poll() is None:
            agent.stop()


def agent_config(setup: Setup, port: str) -> dict[str, Any]:
    config = device_config(f"disk-{setup.key.replace('_', '-')}")
    config["dns_bridge"]["enabled"] = False
    config["sensors"] = [
        {"id": "air", "platform": "serial", "port": port, "baud": 9600, "parser": "json",
         "fields": {"pm25": {"unit": "µg/m³", "device_class": "pm25"}}},
    ]  # fmt: skip
    config["reactors"] = []
    if setup.reactor:
        config["reactors"] = [
            {"id": "pm_window", "type": "window", "subscribe": {"sensor.air.pm25": "reading"},
             "options": {"seconds": WINDOW_SECONDS}},
        ]  # fmt: skip
    if setup.commit_within is not None:
        config["journal"] = {"readings_commit_within": setup.commit_within}
    return config


def feed(pty: Pty, warmup: float, seconds: float, agent: AgentHandle) -> dict[str, Any]:
    """One line a second to the sensor; sample the agent after ``warmup`` and at the end."""
    start = time.perf_counter() + 0.05
    begin_at, end_at = start + warmup, start + warmup + seconds
    written = unwritten = 0
    i = 0
    first: dict[str, Any] = {}
    while True:
        now = time.perf_counter()
        if not first and now >= begin_at:
            first = sample(agent)
        if now >= end_at:
            last = sample(agent)
            break
        while start + i <= now and start + i < end_at:
            try:
                os.write(pty.master, f'{{"pm25": {10 + i % 50 / 10:.1f}}}\n'.encode())
                written += 1
            except BlockingIOError:
                unwritten += 1  # the agent stopped reading: its input buffer is full
            i += 1
        wake = min(start + i, begin_at if not first else end_at, end_at)
        time.sleep(max(0.001, wake - time.perf_counter()))
    drain(pty)
    return measured(first, last, written, unwritten)


def sample(agent: AgentHandle) -> dict[str, Any]:
    pid = agent.proc.pid
    io = read_io(pid)
    wall = time.perf_counter()
    status = agent.call("status")
    rows = agent.call("sensors.list")
    state = agent.root / "state"
    return {
        "wall": wall,
        "io": io,
        "parts": {name: dict(part.get("counters", {})) for name, part in status["parts"].items()},
        "readings": sum(row["readings"] for row in rows),
        "files": {p.name: p.stat().st_size for p in sorted(state.iterdir()) if p.is_file()},
        "wal": wal_header(state / "journal.sqlite3-wal"),
    }


def measured(
    first: dict[str, Any], last: dict[str, Any], written: int, unwritten: int
) -> dict[str, Any]:
    window = last["wall"] - first["wall"]
    io = {key: last["io"][key] - first["io"][key] for key in IO_FIELDS}
    journal0 = first["parts"].get("journal", {})
    journal1 = last["parts"].get("journal", {})
    sensors1 = last["parts"].get("sensors", {})
    commits = journal1.get("commits", 0) - journal0.get("commits", 0)
    wal0, wal1 = first["wal"], last["wal"]
    wal_resets = (wal1["checkpoint_seq"] - wal0["checkpoint_seq"]) if wal0 and wal1 else None
    wal_size0 = first["files"].get("journal.sqlite3-wal", 0)
    wal_size1 = last["files"].get("journal.sqlite3-wal", 0)
    # The log is reused from its start after a checkpoint, not truncated: its growth counts
    # the frames appended only while no reset falls in the window.
    frames = None
    if wal1 and wal_resets == 0:
        frames = (wal_size1 - wal_size0) / (WAL_FRAME_HEADER + wal_page(wal1))
    # Pages dirtied beyond each commit's frames and the previous commit's last page (which
    # the fsync had cleaned and the commit's first frame dirties again).
    beyond = io["write_bytes"] / PAGE - frames - commits if frames is not None else None
    return {
        "window_s": window,
        "io": io,
        "write_bytes_per_hour": io["write_bytes"] * 3600 / window,
        "wchar_per_hour": io["wchar"] * 3600 / window,
        "lines_written": written,
        "lines_unwritten": unwritten,
        "readings": last["readings"] - first["readings"],
        "intents_appended": journal1.get("appended", 0) - journal0.get("appended", 0),
        "journal_commits": commits,
        "commits_per_hour": commits * 3600 / window,
        "write_bytes_per_commit": io["write_bytes"] / commits if commits else None,
        "wal_frames_appended": frames,
        "wal_frames_per_commit": frames / commits if frames is not None and commits else None,
        "pages_beyond_frames": beyond,
        "wal_resets_in_window": wal_resets,
        "files_at_end": last["files"],
        "sensors_counters_at_end": sensors1,
        "journal_counters_at_end": journal1,
    }


def drain(pty: Pty) -> None:
    """Read back whatever reached the master (nothing, with the slave raw and unwritten)."""
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(pty.master, 4096):
            pass


# ---- /proc and the files


def read_io(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        values[key.strip()] = int(value)
    return {key: values[key] for key in IO_FIELDS}


def wal_header(path: Path) -> dict[str, int] | None:
    """Page size and checkpoint sequence from the WAL header (big-endian u32s), or None."""
    try:
        with path.open("rb") as f:
            head = f.read(WAL_HEADER)
    except FileNotFoundError:
        return None
    if len(head) < WAL_HEADER:
        return None
    _magic, _version, page, checkpoint_seq = struct.unpack(">IIII", head[:16])
    return {"page_size": page, "checkpoint_seq": checkpoint_seq}


def wal_page(header: dict[str, int]) -> int:
    return header["page_size"] or 4096


def code_version() -> dict[str, Any]:
    """The tree the agent ran from: its commit, and files changed but not committed."""

    def git(*argv: str) -> str:
        # safe.directory: under sudo the tree belongs to someone else, and git refuses it.
        command = ["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), *argv]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "edgeagent").splitlines()
    return {"path": str(REPO), "head": git("rev-parse", "HEAD"), "uncommitted": changed}


def state_base(requested: str | None) -> tuple[Path, str]:
    if requested:
        parent = Path(requested)
    else:
        tmp = Path(tempfile.gettempdir())
        parent = tmp if mount_of(tmp)[2] not in ("tmpfs", "ramfs") else REPO / "bench" / "results"
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="disk-bench-", dir=parent))
    point, device, fstype = mount_of(base)
    if fstype in ("tmpfs", "ramfs"):
        raise SystemExit(f"{base} is on {fstype}: nothing would reach a disk; pass --dir")
    return base, f"{base} ({fstype} on {device}, mounted at {point})"


# ---- output


def describe(setup: Setup) -> dict[str, Any]:
    return {"label": setup.label, "readings_commit_within": setup.commit_within,
            "reactor": setup.reactor}  # fmt: skip


def print_run(r: int, setup: Setup, res: dict[str, Any]) -> None:
    per_commit = res["write_bytes_per_commit"]
    frames = res["wal_frames_per_commit"]
    beyond = res["pages_beyond_frames"]
    print(
        f"round {r} {setup.label:<22} write_bytes {res['io']['write_bytes'] / 1024:8.0f} KiB"
        f" in {res['window_s']:.1f} s ({res['write_bytes_per_hour'] / 2**20:7.2f} MiB/h),"
        f" wchar {res['io']['wchar'] / 1024:.0f} KiB; readings {res['readings']}"
        f" (lines {res['lines_written']}), intents {res['intents_appended']}"
        f" in {res['journal_commits']} commits"
        + (f", {per_commit / 1024:.1f} KiB/commit" if per_commit else "")
        + (f", {frames:.2f} WAL frames/commit" if frames else "")
        + (f", {beyond:.0f} pages beyond frames" if beyond is not None and frames else "")
        + (f", WAL resets {res['wal_resets_in_window']}" if res["wal_resets_in_window"] else ""),
        flush=True,
    )


def report(
    args: argparse.Namespace,
    configs: list[Setup],
    where: str,
    code: dict[str, Any],
    rounds: list[dict[str, dict[str, Any]]],
) -> None:
    ratios = {
        setup.key: [rnd[setup.key]["write_bytes_per_hour"] / rnd[REFERENCE]["write_bytes_per_hour"]
                    for rnd in rounds]
        for setup in configs
    }  # fmt: skip

    def median(key: str, field: str) -> float | None:
        values = [rnd[key][field] for rnd in rounds if rnd[key][field] is not None]
        return statistics.median(values) if values else None

    fields = ("write_bytes_per_hour", "wchar_per_hour", "commits_per_hour",
              "write_bytes_per_commit", "wal_frames_per_commit")  # fmt: skip
    medians = {
        setup.key: {field: median(setup.key, field) for field in fields} for setup in configs
    }
    result = {
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "rate_hz": 1,
        "state_dir": where,
        "code": code,  # the agent runs the edgeagent package of this tree
        "target_ratio": TARGET_RATIO,
        "reference": REFERENCE,
        "configs": {s.key: describe(s) for s in configs},
        "runs": rounds,
        "median": medians,
        "ratio_to_reference": ratios,
    }
    path = write_result("disk" if not args.only else f"disk-{args.only.replace(',', '-')}", result)
    print()
    print(f"one sensor at 1 Hz, {args.seconds:g} s windows after {args.warmup:g} s,"
          f" {args.rounds} rounds; state on {where}")  # fmt: skip
    print(f"{'config':<22} {'write_bytes/h':>14} {'wchar/h':>11} {'commits/h':>10}"
          f" {'KiB/commit':>11} {'frames/commit':>14} {'/ each 0s (per round)':>24}")  # fmt: skip
    for setup in configs:
        m = medians[setup.key]
        per_commit = m["write_bytes_per_commit"]
        frames = m["wal_frames_per_commit"]
        per_round = ", ".join(f"{value:.3f}" for value in ratios[setup.key])
        print(
            f"{setup.label:<22} {(m['write_bytes_per_hour'] or 0.0) / 2**20:>10.2f} MiB"
            f" {(m['wchar_per_hour'] or 0.0) / 2**20:>7.2f} MiB {m['commits_per_hour'] or 0:>10.0f}"
            f" {_shown(per_commit and per_commit / 1024, '.1f'):>11}"
            f" {_shown(frames, '.2f'):>14} {per_round:>24}"
        )
    print(f"target: grouped / each <= {TARGET_RATIO:g}; {path}")


def _shown(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``-`` where there is none (no commit, or the log was reset)."""
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    main()

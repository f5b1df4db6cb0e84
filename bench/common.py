"""Shared bench helpers: a namespaced LAN of real agents (the test lab) and result files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import tty
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"bench": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


# The scheduler's shortest sleep. Sleeping less (down to 0) turns the scheduler into a busy
# loop that holds the GIL against the journal's SQLite thread: on the development host that
# alone took a whole core at 2,000 arrivals/s and tripled the p99 of what it measured.
# Arrivals that come due in between wait for the next tick, and that wait counts against us.
_TICK = 0.001


async def open_loop(
    rate: float,
    seconds: float,
    send: Callable[[list[float]], Coroutine[Any, Any, None]],
    *,
    grouped: bool = False,
) -> None:
    """Offer ``rate`` arrivals per second for ``seconds``, on a schedule (open loop).

    Each scheduler tick (at most one per millisecond) sends everything that has come due: one
    ``send([t])`` task per arrival, or with ``grouped`` one ``send([t, ...])`` task for all of
    them, as an edge that batches would. ``t`` is the arrival's scheduled ``time.perf_counter()``
    (the loop's clock has only millisecond resolution under uvloop), so latency counted from it
    includes any lag of the sender (no coordinated omission). Returns when every send is done.
    """
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    async with asyncio.TaskGroup() as tasks:
        i = 0
        while i < total:
            now = time.perf_counter()
            due = []
            while i < total and start + i / rate <= now:
                due.append(start + i / rate)
                i += 1
            if grouped and due:
                tasks.create_task(send(due))
            else:
                for scheduled in due:
                    tasks.create_task(send([scheduled]))
            await asyncio.sleep(max(_TICK, start + i / rate - time.perf_counter()))


@dataclass
class Pty:
    """A pseudo-terminal pair standing in for a serial sensor: the agent opens ``path``."""

    master: int
    slave: int
    path: str

    @classmethod
    def open(cls) -> Pty:
        master, slave = os.openpty()
        # Raw before the agent opens it (pyserial sets raw too): no echo back to the master,
        # whose output nobody reads, and no line editing of what the sensors send.
        tty.setraw(slave)
        os.set_blocking(master, False)
        return cls(master, slave, os.ttyname(slave))

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def mount_of(path: Path) -> tuple[str, str, str]:
    """(mount point, device, fs type) holding ``path``, from /proc/mounts."""
    best = ("/", "?", "?")
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, fstype = line.split()[:3]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, device, fstype)
    return best

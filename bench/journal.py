"""The journal: durable throughput, acknowledgement latency and replay, beside raw SQLite.

Each figure is measured next to a reference in the same run and reported as a ratio:

1. throughput: ``--producers`` tasks each appending one intent and awaiting its
   acknowledgement, against a plain ``sqlite3`` loop doing the least a group commit can do
   (build the rows, one ``executemany`` and one COMMIT per batch of the same size) on the same
   schema, pragmas (WAL, synchronous=FULL) and directory;
2. latency at half our peak: open-loop arrivals (sent on a schedule, never waiting for
   acknowledgements), latency counted from the scheduled time; the raw reference gets the same
   arrivals through a queue to a writer thread that commits whatever is waiting;
3. replay of ``--replay`` intents (filled with raw inserts) folding a counter, in full and
   from a snapshot near the end, against a raw ``sqlite3`` SELECT + ``json.loads`` fold.

1 and 2, and ``--sequential`` appends awaited one at a time (each batch a single row, so
what a batch costs beyond its fsync shows), run once per store writer in ``--writers`` (the
store's own thread over ``sqlite3``, the default, and aiosqlite's public API), so the choice
between them is measured in every run.

Usage: .venv/bin/python bench/journal.py [--intents 100000] [--replay 1000000]
                                         [--writers thread,aiosqlite] [--sequential 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import REPO, mount_of, open_loop, percentile, summary, write_result

from edgeagent.reactors.journal import INSERT_INTENT, INSERT_KIND, Entry, Journal
from edgeagent.store import WriterKind

PAYLOAD = {"by": 1}
KIND = (1, "counter", "increment", "counter.increment", "cli", "cli")
TRACE = "0123456789abcdef"


def entry() -> Entry:
    return Entry(
        0, time.time(), "counter", "increment", "counter.increment", PAYLOAD, "cli", "cli", TRACE
    )


# ---- where the files go


def bench_dir(requested: str | None) -> tuple[Path, str]:
    if requested:
        base = Path(requested)
    else:
        tmp = Path(tempfile.gettempdir())
        same = os.stat(tmp).st_dev == os.stat(REPO).st_dev
        base = tmp if same and mount_of(tmp)[2] != "tmpfs" else REPO / "bench" / "results"
    base.mkdir(parents=True, exist_ok=True)
    where = Path(tempfile.mkdtemp(prefix="journal-bench-", dir=base))
    point, device, fstype = mount_of(where)
    return where, f"{where} ({fstype} on {device}, mounted at {point})"


async def fresh(path: Path) -> None:
    """A journal file with our schema and pragmas, and the one kind the raw rows use."""
    async with Journal(path):
        pass
    with sqlite3.connect(path) as raw:
        raw.execute(INSERT_KIND, KIND)


def raw_connection(path: Path) -> sqlite3.Connection:
    raw = sqlite3.connect(path, check_same_thread=False)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = FULL")
    return raw


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def raw_rows(first_seq: int, count: int) -> list[tuple[Any, ...]]:
    return [
        (first_seq + i, time.time(), "counter", 1, _ENCODE(PAYLOAD), TRACE, None)
        for i in range(count)
    ]


# ---- 1. throughput


async def ours_throughput(
    path: Path, total: int, producers: int, writer: WriterKind = "thread"
) -> dict[str, Any]:
    await fresh(path)
    async with Journal(path, writer=writer) as journal:
        left = [total]

        async def produce() -> None:
            while left[0] > 0:
                left[0] -= 1
                await journal.append([entry()])

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for n in range(producers):
                tg.create_task(produce(), name=f"bench.producer.{n}")
        elapsed = time.perf_counter() - start
        stats = journal.stats()
        trips = journal.store.stats().trips
    return {
        "rate": total / elapsed,
        "seconds": elapsed,
        "commits": stats.commits,
        "batch_mean": stats.batch_mean,
        "trips": trips,
    }


def raw_throughput(path: Path, total: int, batch: int) -> dict[str, Any]:
    asyncio.run(fresh(path))
    raw = raw_connection(path)
    seq = 1
    start = time.perf_counter()
    while seq <= total:
        count = min(batch, total - seq + 1)
        raw.executemany(INSERT_INTENT, raw_rows(seq, count))
        raw.commit()
        seq += count
    elapsed = time.perf_counter() - start
    raw.close()
    return {"rate": total / elapsed, "seconds": elapsed, "batch": batch}


# ---- 2. latency at a fixed offered rate, open loop


async def ours_latency(
    path: Path, rate: float, seconds: float, writer: WriterKind = "thread"
) -> list[float]:
    await fresh(path)
    latencies: list[float] = []
    async with Journal(path, writer=writer) as journal:

        async def one(scheduled: list[float]) -> None:
            await journal.append([entry()])
            latencies.append(time.perf_counter() - scheduled[0])

        await open_loop(rate, seconds, one)
    return latencies


def raw_latency(path: Path, rate: float, seconds: float, batch: int) -> list[float]:
    asyncio.run(fresh(path))
    raw = raw_connection(path)
    arrivals: queue.SimpleQueue[float | None] = queue.SimpleQueue()
    latencies: list[float] = []

    def writer() -> None:
        seq = 1
        while True:
            first = arrivals.get()
            if first is None:
                return
            waiting = [first]
            while len(waiting) < batch:
                try:
                    more = arrivals.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    arrivals.put(None)
                    break
                waiting.append(more)
            raw.executemany(INSERT_INTENT, raw_rows(seq, len(waiting)))
            raw.commit()
            seq += len(waiting)
            done = time.perf_counter()
            latencies.extend(done - scheduled for scheduled in waiting)

    thread = threading.Thread(target=writer, name="bench.raw-writer")
    thread.start()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:
            arrivals.put(start + i / rate)
            i += 1
        time.sleep(max(0.0, min(0.001, start + i / rate - time.perf_counter())))
    arrivals.put(None)
    thread.join()
    raw.close()
    return latencies


# ---- one append at a time: where a batch is a single row, the trips per batch show


async def ours_sequential(path: Path, count: int, writer: WriterKind) -> list[float]:
    await fresh(path)
    latencies: list[float] = []
    async with Journal(path, writer=writer) as journal:
        for _ in range(count):
            start = time.perf_counter()
            await journal.append([entry()])
            latencies.append(time.perf_counter() - start)
    return latencies


def raw_sequential(path: Path, count: int) -> list[float]:
    asyncio.run(fresh(path))
    raw = raw_connection(path)
    latencies: list[float] = []
    for seq in range(1, count + 1):
        start = time.perf_counter()
        raw.executemany(INSERT_INTENT, raw_rows(seq, 1))
        raw.commit()
        latencies.append(time.perf_counter() - start)
    raw.close()
    return latencies


# ---- 3. replay


def fill(path: Path, count: int, snapshot_at: int) -> float:
    asyncio.run(fresh(path))
    start = time.perf_counter()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA synchronous = OFF")  # filling is not what is measured
    step = 100_000
    for first in range(1, count + 1, step):
        n = min(step, count - first + 1)
        raw.executemany(
            INSERT_INTENT,
            ((s, 1.0 + s, "counter", 1, '{"by":1}', TRACE, None) for s in range(first, first + n)),
        )
        raw.commit()
    raw.execute(
        "INSERT INTO snapshots (reactor, seq, state, at) VALUES (?, ?, ?, ?)",
        ("counter", snapshot_at, json.dumps({"count": snapshot_at}, sort_keys=True), 0.0),
    )
    raw.commit()
    raw.close()
    return time.perf_counter() - start


async def ours_replay(path: Path) -> dict[str, Any]:
    async with Journal(path) as journal:
        start = time.perf_counter()
        count = 0
        async for batch in journal.replay("counter", 0):
            for e in batch:
                count += e.payload["by"]
        full = time.perf_counter() - start
        start = time.perf_counter()
        snap = await journal.latest_snapshot("counter")
        assert snap is not None
        seq, state = snap
        total = state["count"]
        async for batch in journal.replay("counter", seq):
            for e in batch:
                total += e.payload["by"]
        from_snapshot = time.perf_counter() - start
    assert total == count, (total, count)
    return {"full": full, "from_snapshot": from_snapshot, "count": count}


def raw_replay(path: Path) -> float:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    start = time.perf_counter()
    count = 0
    last = 0
    while True:
        rows = raw.execute(
            "SELECT seq, at, kind, payload, trace_id, idem FROM intents"
            " WHERE reactor = ? AND seq > ? ORDER BY seq LIMIT 5000",
            ("counter", last),
        ).fetchall()
        if not rows:
            break
        for row in rows:
            count += json.loads(row[3])["by"]
        last = rows[-1][0]
    raw.close()
    return time.perf_counter() - start


# ---- one store writer: throughput and latency beside the raw references


def candidate(where: Path, writer: WriterKind, args: argparse.Namespace) -> dict[str, Any]:
    # The raw reference is measured again beside each candidate: the host is shared.
    raw = raw_throughput(where / f"raw-{writer}.db", args.intents, args.producers)
    ours = asyncio.run(
        ours_throughput(where / f"ours-{writer}.db", args.intents, args.producers, writer)
    )
    print(
        f"[{writer}] throughput: ours {ours['rate']:,.0f}/s (mean batch {ours['batch_mean']:.0f},"
        f" {ours['commits']} commits, {ours['trips']} trips), raw {raw['rate']:,.0f}/s"
        f" (batch {raw['batch']}), ours/raw {ours['rate'] / raw['rate']:.2f}x"
    )
    rate = ours["rate"] / 2
    ours_lat = asyncio.run(
        ours_latency(where / f"lat-ours-{writer}.db", rate, args.latency_seconds, writer)
    )
    raw_lat = raw_latency(
        where / f"lat-raw-{writer}.db", rate, args.latency_seconds, args.producers
    )
    o50, o99 = percentile(ours_lat, 50) * 1e3, percentile(ours_lat, 99) * 1e3
    r50, r99 = percentile(raw_lat, 50) * 1e3, percentile(raw_lat, 99) * 1e3
    print(
        f"[{writer}] latency at {rate:,.0f}/s: ours p50 {o50:.2f} ms p99 {o99:.2f} ms;"
        f" raw p50 {r50:.2f} ms p99 {r99:.2f} ms; ours/raw p50 {o50 / r50:.2f}x"
        f" p99 {o99 / r99:.2f}x"
    )
    also: dict[str, Any] = {}
    if args.also_rate > 0:
        ours_also = asyncio.run(
            ours_latency(
                where / f"also-ours-{writer}.db", args.also_rate, args.latency_seconds, writer
            )
        )
        raw_also = raw_latency(
            where / f"also-raw-{writer}.db", args.also_rate, args.latency_seconds, args.producers
        )
        a50, a99 = percentile(ours_also, 50) * 1e3, percentile(ours_also, 99) * 1e3
        b50, b99 = percentile(raw_also, 50) * 1e3, percentile(raw_also, 99) * 1e3
        also = {"rate": args.also_rate, "ours": [a50, a99], "raw": [b50, b99]}
        print(
            f"[{writer}] latency at {args.also_rate:,.0f}/s: ours p50 {a50:.2f} ms"
            f" p99 {a99:.2f} ms; raw p50 {b50:.2f} ms p99 {b99:.2f} ms;"
            f" ours/raw p50 {a50 / b50:.2f}x p99 {a99 / b99:.2f}x"
        )
    one: dict[str, Any] = {}
    if args.sequential > 0:
        ours_one = asyncio.run(
            ours_sequential(where / f"one-ours-{writer}.db", args.sequential, writer)
        )
        raw_one = raw_sequential(where / f"one-raw-{writer}.db", args.sequential)
        s50, s99 = percentile(ours_one, 50) * 1e3, percentile(ours_one, 99) * 1e3
        t50, t99 = percentile(raw_one, 50) * 1e3, percentile(raw_one, 99) * 1e3
        one = {"count": args.sequential, "ours": [s50, s99], "raw": [t50, t99]}
        print(
            f"[{writer}] one append at a time ({args.sequential:,}): ours p50 {s50:.3f} ms"
            f" p99 {s99:.3f} ms; raw p50 {t50:.3f} ms p99 {t99:.3f} ms;"
            f" ours/raw p50 {s50 / t50:.2f}x p99 {s99 / t99:.2f}x"
        )
    return {
        "one_at_a_time": one,
        "throughput": ours,
        "raw": raw,
        "latency": {
            "rate": rate,
            "p50_p99": [o50, o99, r50, r99],
            "ours": ours_lat,
            "raw": raw_lat,
        },
        "also": also,
    }


# ---- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intents", type=int, default=100_000, help="per throughput run")
    parser.add_argument("--producers", type=int, default=256)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument(
        "--also-rate", type=float, default=5000.0, help="a second latency rate (0: skip)"
    )
    parser.add_argument(
        "--sequential", type=int, default=2000, help="appends one at a time (0: skip)"
    )
    parser.add_argument("--replay", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="where the database files go")
    parser.add_argument(
        "--writers",
        default="thread,aiosqlite",
        help="store writers to measure, the first one for the JSON's main figures",
    )
    args = parser.parse_args()

    writers: list[WriterKind] = []
    for name in args.writers.split(","):
        if name not in ("thread", "aiosqlite"):
            parser.error(f"--writers: {name!r} is neither thread nor aiosqlite")
        writers.append(name)  # type: ignore[arg-type]

    where, described = bench_dir(args.dir)
    print(f"files in {described}")
    try:
        candidates: dict[str, dict[str, Any]] = {}
        for writer in writers:
            candidates[writer] = candidate(where, writer, args)
        ours = candidates[writers[0]]["throughput"]
        raw = candidates[writers[0]]["raw"]
        rate = candidates[writers[0]]["latency"]["rate"]
        o50, _, r50, _ = candidates[writers[0]]["latency"]["p50_p99"]
        also = candidates[writers[0]]["also"]
        ours_lat = candidates[writers[0]]["latency"]["ours"]
        raw_lat = candidates[writers[0]]["latency"]["raw"]
        replay_path = where / "replay.db"
        filled = fill(replay_path, args.replay, args.replay - 1000)
        replayed = asyncio.run(ours_replay(replay_path))
        raw_time = raw_replay(replay_path)
        print(
            f"replay of {args.replay:,} (filled in {filled:.1f} s): ours {replayed['full']:.2f} s,"
            f" raw {raw_time:.2f} s, ours/raw {replayed['full'] / raw_time:.2f}x,"
            f" /5 s target {replayed['full'] / 5:.2f}x;"
            f" from a snapshot 1,000 before the end {replayed['from_snapshot'] * 1e3:.1f} ms"
        )
        path = write_result(
            "journal",
            {
                "dir": described,
                "intents": args.intents,
                "producers": args.producers,
                "writers": {
                    writer: {
                        "throughput": c["throughput"],
                        "raw": c["raw"],
                        "ratio": c["throughput"]["rate"] / c["raw"]["rate"],
                        "latency_p50_p99_ms": c["latency"]["p50_p99"],
                        "also_p50_p99_ms": c["also"],
                        "one_at_a_time_p50_p99_ms": c["one_at_a_time"],
                    }
                    for writer, c in candidates.items()
                },
                "throughput": {
                    "ours": ours,
                    "raw": raw,
                    "ratio": ours["rate"] / raw["rate"],
                    "target": 20_000,
                },
                "latency": {
                    "rate": rate,
                    "ours_ms": {
                        k: v * 1e3 if k != "n" else v for k, v in summary(ours_lat).items()
                    },
                    "raw_ms": {k: v * 1e3 if k != "n" else v for k, v in summary(raw_lat).items()},
                    "ours_p50_ms": o50,
                    "raw_p50_ms": r50,
                    "target_p99_ms": 10,
                    "also_p50_p99_ms": also,
                },
                "replay": {
                    "intents": args.replay,
                    "ours": replayed,
                    "raw": raw_time,
                    "ratio": replayed["full"] / raw_time,
                    "target_s": 5,
                },
            },
        )
        print(f"wrote {path}")
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()

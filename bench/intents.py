"""Durable intents through the whole accept path, beside a raw SQLite group-commit loop.

``bench/journal.py`` measures the journal alone; this measures what a sender waits for: an
intent routed, capability-checked, validated, admitted to the counter's mailbox, journaled by
group commit, applied and acknowledged (``ReactorRuntime.submit``, in-process, on uvloop as
the agent runs). References, same run, same disk, same schema and pragmas: the raw
``sqlite3`` loops of ``bench/journal.py``.

1. throughput: ``--producers`` tasks each submitting and awaiting, closed loop;
2. acknowledgement latency at half our peak, open loop (arrivals on a schedule, latency from
   the scheduled time);
3. the same through the control socket, as ``edgeagent intent send -`` would stream them
   (one connection, pipelined), to show what the socket and JSON add;
4. a restart over ``--replay`` journaled intents: how long until the runtime is up with the
   counter's state rebuilt, from its latest snapshot (1,000 intents before the end, as the
   default ``snapshot_every`` leaves it at worst) and, with the snapshot deleted, by replaying
   every intent through ``handle``; beside ``bench/journal.py``'s raw SELECT + json.loads
   fold of the same rows.

Usage: .venv/bin/python bench/intents.py [--intents 50000] [--producers 256] [--replay 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from common import open_loop, percentile, summary, write_result
from journal import bench_dir, fill, raw_latency, raw_replay, raw_throughput

from edgeagent.config.model import DEFAULT_REACTORS
from edgeagent.control.server import ControlServer
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.journal import Journal
from edgeagent.reactors.remote import answer_of
from edgeagent.reactors.runtime import ReactorRuntime, Submission

POLICY = Policy.build({"admin": ["counter:*"]}, {"cli": ["admin"]})


@contextlib.asynccontextmanager
async def runtime(path: Path) -> AsyncIterator[tuple[Journal, ReactorRuntime]]:
    """The journal and the runtime with the default counter, started as the agent starts them
    (including its ``gc.freeze()`` once everything is up)."""
    async with Journal(path) as journal, ReactorRuntime(DEFAULT_REACTORS, POLICY, journal) as rt:
        gc.freeze()
        try:
            yield journal, rt
        finally:
            gc.unfreeze()


async def _runtime_throughput(path: Path, total: int, producers: int) -> dict[str, Any]:
    async with runtime(path) as (journal, rt):
        left = [total]

        async def produce() -> None:
            while left[0] > 0:
                left[0] -= 1
                await rt.submit("counter.increment", {"by": 1}, principal="cli", source="cli")

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for n in range(producers):
                tasks.create_task(produce(), name=f"bench.producer.{n}")
        elapsed = time.perf_counter() - start
        count = rt.show("counter")["reactor_state"]["count"]
        stats = journal.stats()
    assert count == total, (count, total)
    return {"rate": total / elapsed, "seconds": elapsed, "commits": stats.commits}


async def _runtime_latency(path: Path, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with runtime(path) as (_, rt):

        async def one(scheduled: list[float]) -> None:
            await rt.submit("counter.increment", {"by": 1}, principal="cli", source="cli")
            latencies.append(time.perf_counter() - scheduled[0])

        await open_loop(rate, seconds, one)
    return latencies


async def _runtime_latency_grouped(path: Path, rate: float, seconds: float) -> list[float]:
    """Open-loop arrivals as an edge that groups them (what ``intent send -`` and the control
    socket's batch method do): every loop turn submits whatever has come due since the last
    one with one ``submit_many``; latency still counts from each arrival's scheduled time."""
    latencies: list[float] = []
    async with runtime(path) as (_, rt):

        async def group(scheduled: list[float]) -> None:
            items = [Submission("counter.increment", {"by": 1}, "cli", "cli")] * len(scheduled)
            await rt.submit_many(items)
            done = time.perf_counter()
            latencies.extend(done - at for at in scheduled)

        await open_loop(rate, seconds, group, grouped=True)
    return latencies


async def _socket_throughput(path: Path, total: int, batch: int) -> dict[str, Any]:
    """One pipelined control connection, as ``intent send -`` uses it: ``batch`` intents per
    ``intent.send_batch`` request (1: one ``intent.send`` request per intent)."""
    async with runtime(path) as (_, rt):

        async def send(params: dict[str, Any]) -> dict[str, Any]:
            ack = await rt.submit(params["name"], params["payload"], principal="cli", source="cli")
            return ack.as_json()

        async def send_batch(params: dict[str, Any]) -> list[dict[str, Any]]:
            items = [Submission(p["name"], p["payload"], "cli", "cli") for p in params["items"]]
            return [
                answer_of(s.name, a)
                for s, a in zip(items, await rt.submit_many(items), strict=True)
            ]

        socket_path = path.parent / "control.sock"
        handlers = {"intent.send": send, "intent.send_batch": send_batch}
        async with ControlServer(socket_path, handlers):
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
            item = {"name": "counter.increment", "payload": {"by": 1}}
            if batch == 1:
                request = {"id": 1, "method": "intent.send", "params": item}
            else:
                request = {
                    "id": 1,
                    "method": "intent.send_batch",
                    "params": {"items": [item] * batch},
                }
            line = json.dumps(request).encode() + b"\n"
            requests = total // batch
            start = time.perf_counter()

            async def feed() -> None:
                for _ in range(requests):
                    writer.write(line)
                    await writer.drain()

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(feed())
                for _ in range(requests):
                    answer = await reader.readline()
                    assert answer.count(b'"accepted":true') == batch, answer[:200]
            elapsed = time.perf_counter() - start
            writer.close()
            await writer.wait_closed()
    return {"rate": requests * batch / elapsed, "seconds": elapsed, "batch": batch}


async def _restart(path: Path, expected: int) -> float:
    """Seconds from nothing to a running runtime whose counter has its state back."""
    start = time.perf_counter()
    async with runtime(path) as (_, rt):
        ready = time.perf_counter() - start
        count = rt.show("counter")["reactor_state"]["count"]
    assert count == expected, (count, expected)
    return ready


def _restarts(path: Path, total: int) -> dict[str, Any]:
    fill(path, total, total - 1000)
    from_snapshot = run(_restart(path, total))
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM snapshots")
    full = run(_restart(path, total))
    return {"intents": total, "from_snapshot": from_snapshot, "full": full, "raw": raw_replay(path)}


def run(coroutine: Any) -> Any:
    try:
        import uvloop  # the agent's loop when available
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--intents", type=int, default=50_000)
    parser.add_argument("--producers", type=int, default=256)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--replay", type=int, default=1_000_000, help="journaled, for restarts")
    parser.add_argument("--dir", default=None, help="where the database files go")
    args = parser.parse_args()
    directory, where = bench_dir(args.dir)
    path = directory / "intents.sqlite3"
    try:
        ours = run(_runtime_throughput(fresh(path), args.intents, args.producers))
        raw = raw_throughput(fresh(path), args.intents, 256)
        print(
            f"throughput: {ours['rate']:,.0f} intents/s acknowledged through the runtime, "
            f"raw sqlite {raw['rate']:,.0f}/s ({ours['rate'] / raw['rate']:.2f}x)"
        )
        half = ours["rate"] / 2
        ours_lat = run(_runtime_latency(fresh(path), half, args.latency_seconds))
        raw_lat = raw_latency(fresh(path), half, args.latency_seconds, 256)
        ours_ms = [1000 * x for x in ours_lat]
        raw_ms = [1000 * x for x in raw_lat]
        print(
            f"latency at {half:,.0f}/s: p50 {percentile(ours_ms, 50):.2f} ms, "
            f"p99 {percentile(ours_ms, 99):.2f} ms; raw p50 {percentile(raw_ms, 50):.2f} ms, "
            f"p99 {percentile(raw_ms, 99):.2f} ms"
        )
        grouped = [
            1000 * x for x in run(_runtime_latency_grouped(fresh(path), half, args.latency_seconds))
        ]
        print(
            f"latency at {half:,.0f}/s, arrivals grouped per loop turn: "
            f"p50 {percentile(grouped, 50):.2f} ms, p99 {percentile(grouped, 99):.2f} ms"
        )
        sock = run(_socket_throughput(fresh(path), args.intents, 1))
        batched = run(_socket_throughput(fresh(path), args.intents, 256))
        print(
            f"through the control socket (one pipelined connection): {sock['rate']:,.0f}/s "
            f"one request per intent ({sock['rate'] / raw['rate']:.2f}x raw), "
            f"{batched['rate']:,.0f}/s in batches of 256 as `intent send -` sends them "
            f"({batched['rate'] / raw['rate']:.2f}x raw)"
        )
        restart = _restarts(fresh(path), args.replay)
        print(
            f"restart over {args.replay:,} journaled intents: up with the counter's state in"
            f" {restart['from_snapshot'] * 1e3:.0f} ms from the latest snapshot"
            f" ({restart['from_snapshot'] / 5:.3f}x the 5 s target); replaying all of them"
            f" through handle {restart['full']:.2f} s ({restart['full'] / 5:.2f}x the target,"
            f" {restart['full'] / restart['raw']:.2f}x the raw fold's {restart['raw']:.2f} s)"
        )
        result = {
            "where": where,
            "throughput": {"ours": ours, "raw": raw, "ratio": ours["rate"] / raw["rate"]},
            "latency_at_half_peak": {
                "rate": half,
                "ours_ms": summary(ours_ms),
                "raw_ms": summary(raw_ms),
                "ours_grouped_ms": summary(grouped),
            },
            "socket": {**sock, "ratio_to_raw": sock["rate"] / raw["rate"]},
            "socket_batched": {**batched, "ratio_to_raw": batched["rate"] / raw["rate"]},
            "restart": {**restart, "target_s": 5},
        }
        print(write_result("intents", result))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

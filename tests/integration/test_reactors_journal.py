"""The journal on real SQLite files: group commit, idempotency, snapshots and replay, timers,
compaction, errors that name the file, and acknowledged intents surviving ``kill -9``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.errors import JournalError
from edgeagent.reactors.journal import (
    SCHEMA_VERSION,
    AuditRecord,
    Entry,
    Journal,
    JournalState,
    Marks,
    Timer,
)

REPO = Path(__file__).resolve().parents[2]


def entry(
    verb: str = "increment",
    payload: dict[str, Any] | None = None,
    *,
    reactor: str = "counter",
    idem: str | None = None,
    principal: str = "cli",
) -> Entry:
    return Entry(
        seq=0,
        at=time.time(),
        reactor=reactor,
        verb=verb,
        name=f"{reactor}.{verb}",
        payload={"by": 1} if payload is None else payload,
        principal=principal,
        source="cli",
        trace_id="0123456789abcdef",
        idem=idem,
    )


async def replayed(journal: Journal, reactor: str | None, after: int = 0, **kw: Any) -> list[Entry]:
    return [e async for batch in journal.replay(reactor, after, **kw) for e in batch]


def others() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    async with Journal(tmp_path / "journal.db") as opened:
        yield opened
    assert others() == [], "the journal left a task running"


# ---- appends, group commit, idempotency


async def test_append_assigns_increasing_seqs_and_replay_returns_them_in_order(
    journal: Journal,
) -> None:
    seqs = await journal.append([entry(payload={"by": n}) for n in range(5)])
    assert seqs == [1, 2, 3, 4, 5]
    assert await journal.append([entry(payload={"by": 9}, principal="mqtt:x")]) == [6]
    got = await replayed(journal, "counter", batch=2)
    assert [e.seq for e in got] == [1, 2, 3, 4, 5, 6]
    assert [e.payload["by"] for e in got] == [0, 1, 2, 3, 4, 9]
    assert got[5].principal == "mqtt:x"
    assert got[0].name == "counter.increment"
    assert journal.last_seq == 6


async def test_writer_is_a_named_task_and_close_is_idempotent(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db")
    assert "edgeagent[journal].writer" in {t.get_name() for t in others()}
    await journal.append([entry()])
    await journal.close()
    await journal.close()
    assert journal.state is JournalState.CLOSED
    assert others() == []
    with pytest.raises(JournalError, match="closed"):
        await journal.append([entry()])


async def test_group_commit_batches_concurrent_appends(journal: Journal) -> None:
    producers = 500
    seqs = await asyncio.gather(*(journal.append([entry()]) for _ in range(producers)))
    flat = sorted(s for one in seqs for s in one)
    assert flat == list(range(1, producers + 1))
    stats = journal.stats()
    assert stats.appended == producers
    # One fsync per batch, not per intent: 500 waiting appends need only a handful.
    assert stats.commits <= 10, stats
    assert stats.batch_max >= 50


async def test_the_journal_reports_its_counters_and_its_stores(tmp_path: Path) -> None:
    from edgeagent.resource import PartState

    journal = Journal(tmp_path / "j.db")
    assert journal.report().state is PartState.NEW
    async with journal:
        await journal.append([entry() for _ in range(3)])
        report = journal.report()
        assert report.state is PartState.RUNNING
        assert report.counters["appended"] == 3
        assert report.counters["last_seq"] == 3
        assert report.counters["store_commits"] == 1
        assert report.counters["store_rows"] == 3
        assert report.counters["bytes"] > 0
        assert report.detail["schemas"] == {"journal": SCHEMA_VERSION}
        assert journal.store.fatal
    assert journal.report().state is PartState.STOPPED


async def test_group_commit_respects_max_batch(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db", max_batch=16) as journal:
        await asyncio.gather(*(journal.append([entry()]) for _ in range(200)))
        stats = journal.stats()
    assert stats.batch_max <= 16
    assert stats.commits >= 200 // 16


async def test_idempotency_key_returns_the_first_seq_without_a_second_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        assert await journal.append([entry(idem="a")]) == [1]
        assert await journal.append([entry(idem="a"), entry(idem="b")]) == [1, 2]
        # Within one batch: the same key twice in one call, and in concurrent calls.
        assert await journal.append([entry(idem="c"), entry(idem="c")]) == [3, 3]
        answers = await asyncio.gather(*(journal.append([entry(idem="d")]) for _ in range(20)))
        assert {tuple(a) for a in answers} == {(4,)}
        assert journal.stats().deduplicated == 1 + 1 + 19
    async with Journal(path) as journal:
        assert await journal.append([entry(idem="b"), entry()]) == [2, 5]
        assert [e.seq for e in await replayed(journal, None)] == [1, 2, 3, 4, 5]


# ---- snapshots, replay


async def test_snapshot_is_canonical_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        assert await journal.latest_snapshot("counter") is None
        await journal.snapshot("counter", 3, {"z": 1, "a": [1, 2], "m": {"y": True, "b": None}})
        await journal.snapshot("counter", 7, {"count": 7, "alpha": "é"})
        assert await journal.latest_snapshot("counter") == (7, {"count": 7, "alpha": "é"})
        assert await journal.latest_snapshot("other") is None
    text = sqlite3.connect(path).execute("SELECT state FROM snapshots").fetchone()[0]
    assert text == '{"alpha":"é","count":7}'


async def test_replay_filters_by_reactor_and_starts_after_a_seq(journal: Journal) -> None:
    for n in range(30):
        reactor = "a" if n % 3 else "b"
        await journal.append([entry(reactor=reactor, payload={"n": n})])
    a = await replayed(journal, "a", batch=4)
    assert [e.payload["n"] for e in a] == [n for n in range(30) if n % 3]
    assert {e.reactor for e in a} == {"a"}
    after = await replayed(journal, "a", after=20, batch=7)
    assert [e.seq for e in after] == [e.seq for e in a if e.seq > 20]
    assert await replayed(journal, "never") == []
    batches = [len(b) async for b in journal.replay(None, 0, batch=8)]
    assert batches == [8, 8, 8, 6]


def _fold(state: int, e: Entry) -> int:
    return 0 if e.verb == "reset" else state + int(e.payload["by"])


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("increment"), st.integers(-3, 9)),
        st.tuples(st.just("reset"), st.just(0)),
        st.tuples(st.just("snapshot"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, batch=st.integers(1, 9), cut=st.integers(0, 45))
def test_replaying_any_prefix_reproduces_the_live_state(
    ops: list[tuple[str, int]], batch: int, cut: int
) -> None:
    """Fold a counter live while journaling; every prefix of the replay gives the same state."""

    async def scenario(path: Path) -> None:
        live = [0]  # live[k]: the state after the first k intents
        async with Journal(path) as journal:
            for op, by in ops:
                if op == "snapshot":
                    await journal.snapshot("counter", journal.last_seq, {"count": live[-1]})
                    continue
                [seq] = await journal.append([entry(op, {"by": by} if op == "increment" else {})])
                assert seq == len(live)
                live.append(_fold(live[-1], (await journal.tail(seq - 1, 1))[0]))
        async with Journal(path) as journal:  # replay after a restart
            state = 0
            got = await replayed(journal, "counter", batch=batch)
            assert [e.seq for e in got] == list(range(1, len(live)))
            for k, e in enumerate(got, start=1):
                state = _fold(state, e)
                assert state == live[k]
            start = min(cut, len(live) - 1)
            state = live[start]
            for e in await replayed(journal, "counter", after=start, batch=batch):
                state = _fold(state, e)
            assert state == live[-1]
            snap = await journal.latest_snapshot("counter")
            if snap is not None:
                seq, saved = snap
                state = saved["count"]
                for e in await replayed(journal, "counter", after=seq, batch=batch):
                    state = _fold(state, e)
                assert state == live[-1]

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "j.db"))


# ---- timers, marks, audit


async def test_timers_persist_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.set_timer(Timer("sched", "tick", 200.0, "sched.tick", {"n": 1}))
        await journal.set_timer(Timer("sched", "other", 100.0, "sched.tick", {}))
        await journal.set_timer(Timer("alarm", "tick", 150.0, "alarm.check", {}))
        await journal.set_timer(Timer("sched", "tick", 300.0, "sched.tick", {"n": 2}))  # replaces
        await journal.cancel_timer("sched", "other")
        await journal.cancel_timer("sched", "missing")
    async with Journal(path) as journal:
        assert await journal.timers() == [
            Timer("alarm", "tick", 150.0, "alarm.check", {}),
            Timer("sched", "tick", 300.0, "sched.tick", {"n": 2}),
        ]
        assert [t.reactor for t in await journal.timers("sched")] == ["sched"]


async def test_marks_failures_and_audit_persist(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    record = AuditRecord(1.5, "guest", "counter.reset", "principal 'guest' lacks x", "f" * 16)
    async with Journal(path) as journal:
        await journal.append([entry() for _ in range(5)])
        await journal.mark_effects_done("counter", 4)
        await journal.mark_effects_done("counter", 2)  # never moves back
        await journal.mark_failed("counter", 3, "ZeroDivisionError: boom")
        await journal.audit(record)
    async with Journal(path) as journal:
        assert await journal.effects_done("counter") == 4
        assert await journal.effects_done("other") == 0
        assert await journal.failed_seqs("counter") == {3}
        assert await journal.recent_audit() == [record]
        assert journal.stats().audits == 0  # counters are per open


async def test_the_two_marks_move_apart_and_each_never_back(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([entry() for _ in range(5)])
        await journal.mark_effects_done("counter", 5, handoffs=2)  # a forward of 3 pending
        await journal.mark_effects_done("counter", 4, handoffs=1)
        assert await journal.marks("counter") == Marks(effects=5, handoffs=2)
        assert await journal.effects_done("counter") == 2  # everything, up to here
        await journal.mark_effects_done("counter", 5)  # it finished: both at 5
        assert await journal.marks("counter") == Marks(5, 5)


async def test_a_version_1_journal_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([entry() for _ in range(3)])
        await journal.mark_effects_done("counter", 3)
    with sqlite3.connect(path) as db:  # what version 1 wrote: one mark, no handoffs column
        db.executescript("ALTER TABLE marks DROP COLUMN handoffs_done; PRAGMA user_version = 1;")
    async with Journal(path, readonly=True) as reader:  # a reader does not change the file
        assert await reader.marks("counter") == Marks(3, 3)
    async with Journal(path) as journal:
        # version 1 handed emits on at once: its mark covered them too
        assert await journal.marks("counter") == Marks(3, 3)
        await journal.mark_effects_done("counter", 3, handoffs=3)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)


# ---- tail and follow


async def test_follow_wakes_on_commit_without_polling(journal: Journal) -> None:
    await journal.append([entry(payload={"n": 0})])
    seen: list[int] = []

    async def follower() -> None:
        async for batch in journal.follow(0, poll=60.0):
            seen.extend(e.seq for e in batch)
            if len(seen) >= 3:
                return

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(follower())
        await asyncio.sleep(0.05)
        await journal.append([entry(payload={"n": 1}), entry(payload={"n": 2})])
    assert task.done()
    assert seen == [1, 2, 3]
    assert [e.seq for e in await journal.tail(1, 1)] == [2]
    assert [e.seq for e in await journal.last(2)] == [2, 3]


async def test_a_read_only_journal_sees_commits_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with pytest.raises(JournalError, match="no journal here"):
        await Journal.open(path, readonly=True)
    async with Journal(path) as writer, Journal(path, readonly=True) as reader:
        await writer.append([entry(reactor="late", payload={"n": 1})])
        got = await reader.tail(0, 10)
        assert [(e.reactor, e.payload) for e in got] == [("late", {"n": 1})]
        with pytest.raises(JournalError, match="read-only"):
            await reader.append([entry()])


# ---- compaction


async def test_compaction_bounds_the_size_and_keeps_rows_above_the_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    blob = "x" * 1000
    async with Journal(path) as journal:
        for _ in range(30):
            await journal.append([entry(payload={"blob": blob}) for _ in range(100)])
        for n in range(50):
            await journal.audit(AuditRecord(float(n), "guest", "counter.reset", "no", "0" * 16))
        await journal.snapshot("counter", 2000, {"count": 2000})
        await journal.mark_effects_done("counter", 2500)
        before = journal.size_bytes()
        assert before > 3_000_000
        removed = await journal.compact(max_bytes=1_500_000, audit_keep=10)
        after = journal.size_bytes()
        assert after <= 1_500_000
        assert after < before
        seqs = [e.seq for e in await replayed(journal, "counter")]
        assert seqs[-1000:] == list(range(2001, 3001))  # nothing above the snapshot went
        assert seqs[0] > 1  # the oldest went first
        assert seqs == list(range(seqs[0], 3001))
        assert removed == (seqs[0] - 1) + 40
        assert [r.at for r in await journal.recent_audit(100)] == [float(n) for n in range(40, 50)]
        # Asked for the impossible, it deletes down to the snapshot and stops there.
        await journal.compact(max_bytes=1)
        assert [e.seq for e in await replayed(journal, "counter")] == list(range(2001, 3001))
        last = journal.last_seq
    async with Journal(path) as journal:
        assert await journal.append([entry()]) == [last + 1]


async def test_compaction_waits_for_effects_done_and_keeps_seqs_above_the_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([entry() for _ in range(100)])
        await journal.snapshot("counter", 100, {"count": 100})
        await journal.mark_effects_done("counter", 60)
        await journal.compact(max_bytes=1)
        assert [e.seq for e in await replayed(journal, "counter")] == list(range(61, 101))
        await journal.mark_effects_done("counter", 100)
        await journal.compact(max_bytes=1)
        assert await replayed(journal, "counter") == []
    async with Journal(path) as journal:
        # Every intent is gone, yet new seqs stay above the snapshot replay starts after.
        assert await journal.append([entry()]) == [101]


# ---- errors name the file


async def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(JournalError) as caught:
        await Journal.open(path)
    assert str(path) in str(caught.value)
    assert "move the file aside" in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert others() == []


async def test_a_newer_schema_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with Journal(path):
        pass
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="newer edgeagent") as caught:
        await Journal.open(path)
    assert str(path) in str(caught.value)


async def test_an_unopenable_path_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(JournalError, match=r"dir\.db"):
        await Journal.open(tmp_path / "dir.db")


async def test_a_payload_that_is_not_json_is_refused_before_queueing(journal: Journal) -> None:
    with pytest.raises(JournalError, match="not JSON"):
        await journal.append([entry(payload={"x": object()})])
    with pytest.raises(JournalError, match="not JSON"):
        await journal.append([entry(payload={"x": float("nan")})])
    assert await journal.append([entry()]) == [1]


# ---- durability: kill -9 mid-stream

_PRODUCER = """
import asyncio, sys, time
from pathlib import Path
from edgeagent.reactors.journal import Entry, Journal

async def produce(journal, n):
    i = 0
    while True:
        i += 1
        [seq] = await journal.append([Entry(0, time.time(), "counter", "increment",
            "counter.increment", {"by": 1, "p": n, "i": i}, "cli", "cli", "0" * 16)])
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()

async def main():
    async with Journal(Path(sys.argv[1])) as journal:
        async with asyncio.TaskGroup() as tg:
            for n in range(16):
                tg.create_task(produce(journal, n))

asyncio.run(main())
"""


def test_every_acknowledged_intent_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PRODUCER, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert proc.stdout is not None
    acknowledged: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 3000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
        proc.send_signal(signal.SIGKILL)
        # Whatever was printed before the kill was acknowledged too.
        rest = proc.stdout.read().decode()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    acknowledged += [int(x) for x in rest.split("\n")[:-1]]  # the last piece may be cut
    assert len(acknowledged) >= 3000, "the producer did not get going"

    async def journaled() -> set[int]:
        async with Journal(path) as journal:
            return {e.seq for e in await replayed(journal, "counter")}

    present = asyncio.run(journaled())
    missing = sorted(set(acknowledged) - present)
    assert missing == [], f"{len(missing)} acknowledged intents lost, first {missing[:5]}"


def test_payload_json_is_compact(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def write() -> None:
        async with Journal(path) as journal:
            await journal.append([entry(payload={"b": 1, "a": [1, 2], "s": "é"})])

    asyncio.run(write())
    text = sqlite3.connect(path).execute("SELECT payload FROM intents").fetchone()[0]
    assert text == '{"b":1,"a":[1,2],"s":"é"}'
    assert json.loads(text) == {"b": 1, "a": [1, 2], "s": "é"}


async def test_a_batch_commits_in_one_trip_to_the_worker_thread(tmp_path: Path) -> None:
    """The default writer is a thread of the store's own over sqlite3 (no private attribute
    of aiosqlite): a batch's inserts and its COMMIT are one trip to it."""
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append([entry()])  # the first append also writes its kind
        before = journal.store.stats().trips
        await journal.append([entry() for _ in range(49)])
        trips = journal.store.stats().trips - before
        assert trips == 1  # inserts and COMMIT together, nothing else
        assert journal.last_seq == 50


async def test_through_aiosqlite_a_batch_is_written_call_by_call(tmp_path: Path) -> None:
    """The other writer, aiosqlite's public API, takes one trip per step and writes the same
    rows (bench/journal.py measures the two)."""
    async with Journal(tmp_path / "j.sqlite3", writer="aiosqlite") as journal:
        await journal.append([entry()])
        before = journal.store.stats().trips
        await journal.append([entry()])
        assert journal.store.stats().trips - before == 3  # BEGIN, the intents, COMMIT
    async with Journal(tmp_path / "j.sqlite3") as journal:
        assert [e.seq for e in await journal.tail(0, 10)] == [1, 2]

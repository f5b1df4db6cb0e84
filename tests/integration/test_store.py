"""The store on real SQLite files: group commit of concurrent jobs from two users, a failing
job answered alone, close draining the queue, users sharing a file with their own schema
versions, the writer as a fatal child, both writers, and a consistent file after ``kill -9``."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edgeagent.errors import JournalError
from edgeagent.reactors.journal import JOURNAL_SCHEMA, Entry, Journal
from edgeagent.resource import PartState
from edgeagent.store import (
    Execute,
    ExecuteMany,
    Planned,
    Program,
    Query,
    Schema,
    Store,
    StoreError,
    WriterKind,
)

REPO = Path(__file__).resolve().parents[2]
WRITERS: list[WriterKind] = ["thread", "aiosqlite"]


def schema(user: str, version: int = 1, **migrations: str) -> Schema:
    return Schema(
        user=user,
        version=version,
        create=f"CREATE TABLE {user}_rows (job INTEGER, value TEXT NOT NULL);",
        tables=frozenset({f"{user}_rows"}),
        migrations={int(k.removeprefix("v")): v for k, v in migrations.items()},
    )


class Rows:
    """A user that writes one row per job into its own table (``value`` None fails)."""

    def __init__(self, user: str) -> None:
        self.table = f"{user}_rows"
        self.committed: list[Any] = []

    def plan(self, jobs: Sequence[Any]) -> Program[Planned]:
        sql = f"INSERT INTO {self.table} (job, value) VALUES (?, ?)"  # noqa: S608
        yield ExecuteMany(sql, [(job, None if job < 0 else str(job)) for job in jobs])
        rows = yield Query(f"SELECT count(*) FROM {self.table}")  # noqa: S608
        return Planned([int(rows[0][0])] * len(jobs), lambda: self.committed.extend(jobs))


def rows_of(path: Path, table: str) -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute(f"SELECT job FROM {table} ORDER BY job")]  # noqa: S608


def others() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.fixture(params=WRITERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(
        tmp_path / "store.db", [schema("a"), schema("b")], writer=request.param
    ) as opened:
        yield opened
    assert others() == [], "the store left a task running"


# ---- group commit


async def test_concurrent_jobs_of_two_users_share_commits(store: Store) -> None:
    a, b = Rows("a"), Rows("b")
    jobs = [store.submit(a if n % 2 else b, n) for n in range(400)]
    await asyncio.gather(*jobs)
    stats = store.stats()
    assert stats.jobs == 400
    assert stats.commits <= 10, stats  # one fsync serves many jobs of both users
    assert stats.batch_max >= 50
    assert sorted(a.committed) == [n for n in range(400) if n % 2]
    assert sorted(b.committed + a.committed) == list(range(400))
    assert rows_of(store.path, "a_rows") == [n for n in range(400) if n % 2]
    assert rows_of(store.path, "b_rows") == [n for n in range(400) if not n % 2]


async def test_a_failing_job_is_answered_alone_and_the_others_commit(store: Store) -> None:
    a, b = Rows("a"), Rows("b")
    results = await asyncio.gather(
        *(store.submit(a if n % 3 else b, -1 if n == 7 else n) for n in range(30)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1
    assert results[7] is failed[0]
    assert isinstance(failed[0], StoreError)
    assert str(store.path) in str(failed[0])
    assert "writing to the store failed" in str(failed[0])
    assert isinstance(failed[0].__cause__, sqlite3.IntegrityError)
    written = rows_of(store.path, "a_rows") + rows_of(store.path, "b_rows")
    assert sorted(written) == [n for n in range(30) if n != 7]
    assert -1 not in a.committed + b.committed  # its on_commit never ran
    stats = store.stats()
    assert stats.failed_commits >= 1
    assert stats.job_errors == 1
    assert stats.isolated >= 2
    # The writer carries on.
    assert await store.submit(a, 100) == len(rows_of(store.path, "a_rows"))


async def test_close_drains_every_queued_job(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store(path, [schema("a")], max_batch=8)
    await store.start()
    a = Rows("a")
    pending = [asyncio.ensure_future(store.submit(a, n)) for n in range(100)]
    await asyncio.sleep(0)  # queued, not answered
    await store.close()
    assert all(task.done() and not task.exception() for task in pending)
    assert rows_of(path, "a_rows") == list(range(100))
    with pytest.raises(StoreError, match="closed"):
        await store.submit(a, 1)
    await store.close()  # idempotent
    assert store.report().state is PartState.STOPPED


async def test_exclusive_runs_between_batches_and_flush_waits(store: Store) -> None:
    a = Rows("a")
    first = asyncio.ensure_future(store.submit(a, 1))
    await asyncio.sleep(0)  # queued

    def count_then_delete() -> Program[int]:
        rows = yield Query("SELECT count(*) FROM a_rows")
        yield Execute("DELETE FROM a_rows")
        return int(rows[0][0])

    assert await store.exclusive(count_then_delete()) == 1  # after the job queued before it
    assert first.done()
    later = asyncio.ensure_future(store.submit(a, 2))
    await asyncio.sleep(0)
    await store.flush()
    assert later.done()
    assert rows_of(store.path, "a_rows") == [2]
    assert store.stats().maintenance == 1


async def test_a_batch_cut_off_by_teardown_answers_its_waiters(tmp_path: Path) -> None:
    """Tearing the tasks down without close (the agent stopping on a fatal part) must not
    leave a job's caller waiting for ever."""
    started, release = threading.Event(), threading.Event()

    class Slow(Rows):
        def plan(self, jobs: Sequence[Any]) -> Program[Planned]:
            started.set()  # on the writer's thread, inside the batch
            release.wait(10)
            return (yield from super().plan(jobs))

    store = Store(tmp_path / "s.db", [schema("a")])
    await store.start()
    job = asyncio.ensure_future(store.submit(Slow("a"), 1))
    assert await asyncio.to_thread(started.wait, 10)
    await store.stop_tasks()
    release.set()
    with pytest.raises(StoreError, match="closed"):
        await job
    await store.close()
    assert others() == []


# ---- the writer as the store's fatal child, and its report


async def test_the_writer_is_a_named_fatal_child_and_the_store_reports(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db", [schema("a")]) as store:
        assert store.fatal
        assert "edgeagent[store].writer" in {t.get_name() for t in others()}
        await store.submit(Rows("a"), 1)
        report = store.report()
        assert report.state is PartState.RUNNING
        assert report.counters["commits"] == 1
        assert report.counters["rows"] == 1
        assert report.counters["bytes"] > 0
        assert report.detail["schemas"] == {"a": 1}
        assert report.detail["writer"] == "thread"


async def test_a_user_whose_state_breaks_fails_the_store_and_no_waiter_hangs(
    tmp_path: Path,
) -> None:
    class Broken(Rows):
        def plan(self, jobs: Sequence[Any]) -> Program[Planned]:
            planned = yield from super().plan(jobs)

            def boom() -> None:
                raise RuntimeError("state out of step")

            return Planned(planned.answers, boom)

    store = Store(tmp_path / "s.db", [schema("a")])
    await store.start()
    with pytest.raises(RuntimeError, match="out of step"):
        await store.submit(Broken("a"), 1)
    async with asyncio.timeout(5):
        failure = await store.failed()
    assert isinstance(failure, RuntimeError)
    assert store.report().state is PartState.FAILED
    assert not store.writable
    with pytest.raises(StoreError, match="closed"):
        await store.submit(Rows("a"), 2)
    await store.close()
    assert store.report().state is PartState.FAILED
    assert others() == []


# ---- sharing one file


async def test_users_share_a_file_with_a_version_each_and_are_migrated_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    async with Store(path, [JOURNAL_SCHEMA, schema("outbox")]) as store:
        assert store.version_of("journal") == 2
        assert store.version_of("outbox") == 1
        async with Journal(path, store=store) as journal:
            seqs = await asyncio.gather(journal.append([_entry()]), store.submit(Rows("outbox"), 5))
            assert seqs == [[1], 1]
            assert journal.report().counters["appended"] == 1
        assert store.writable  # the journal does not close a store it was given
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)  # the journal's, as before
        assert db.execute("SELECT user, version FROM store_schema").fetchall() == [("outbox", 1)]
    v2 = schema("outbox", 2, v1="ALTER TABLE outbox_rows ADD COLUMN extra TEXT;")
    async with Store(path, [JOURNAL_SCHEMA, v2]) as store:
        assert store.version_of("outbox") == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM store_schema").fetchone() == (2,)
        assert "extra" in {r[1] for r in db.execute("PRAGMA table_info(outbox_rows)")}
    with pytest.raises(StoreError, match="outbox schema version 2 was written by a newer"):
        await Store(path, [JOURNAL_SCHEMA, schema("outbox")]).start()
    async with Journal(path) as journal:  # the journal alone still opens the shared file
        assert [e.seq for e in await journal.tail(0, 10)] == [1]


async def test_two_users_may_not_claim_one_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="already belongs"):
        Store(tmp_path / "s.db", [schema("a"), Schema("b", 1, "", frozenset({"a_rows"}))])
    store = Store(tmp_path / "s.db", [schema("a")])
    with pytest.raises(ValueError, match="journal's schema"):
        Journal(tmp_path / "s.db", store=store)


async def test_a_read_only_store_reads_and_refuses_jobs(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Store(path, [schema("a")]) as store:
        await store.submit(Rows("a"), 3)
    async with Store(path, [schema("a")], readonly=True) as reader:
        assert reader.version_of("a") == 1
        assert await reader.read("SELECT job FROM a_rows") == [(3,)]
        with pytest.raises(StoreError, match="read-only"):
            await reader.submit(Rows("a"), 4)
        assert reader.report().state is PartState.RUNNING


async def test_errors_take_the_users_error_class(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"not sqlite" * 500)
    with pytest.raises(JournalError, match="not a readable journal"):
        await Store(path, [JOURNAL_SCHEMA], name="journal", error=JournalError).start()
    assert others() == []


def _entry() -> Entry:
    return Entry(0, time.time(), "c", "v", "c.v", {}, "cli", "cli", "0" * 16)


# ---- durability: kill -9 leaves a consistent file

_PRODUCER = """
import asyncio, sys
from pathlib import Path
from edgeagent.store import ExecuteMany, Planned, Schema, Store

PAIRS = Schema("pairs", 1, "CREATE TABLE left_rows (n INTEGER PRIMARY KEY);"
               " CREATE TABLE right_rows (n INTEGER PRIMARY KEY);",
               frozenset({"left_rows", "right_rows"}))

class Pairs:
    def plan(self, jobs):
        rows = [(n,) for n in jobs]
        yield ExecuteMany("INSERT INTO left_rows (n) VALUES (?)", rows)
        yield ExecuteMany("INSERT INTO right_rows (n) VALUES (?)", rows)
        return Planned(list(jobs))

async def produce(store, pairs, start):
    n = start
    while True:
        await store.submit(pairs, n)
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
        n += 16

async def main():
    async with Store(Path(sys.argv[1]), [PAIRS]) as store:
        pairs = Pairs()
        async with asyncio.TaskGroup() as tg:
            for start in range(16):
                tg.create_task(produce(store, pairs, start))

asyncio.run(main())
"""


def test_kill_9_leaves_a_consistent_file_with_every_acknowledged_job(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PRODUCER, str(path)], stdout=subprocess.PIPE, cwd=REPO, env=env
    )
    assert proc.stdout is not None
    acknowledged: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 2000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read().decode()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    acknowledged += [int(x) for x in rest.split("\n")[:-1]]  # the last piece may be cut
    assert len(acknowledged) >= 2000, "the producer did not get going"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        left = {r[0] for r in db.execute("SELECT n FROM left_rows")}
        right = {r[0] for r in db.execute("SELECT n FROM right_rows")}
    assert left == right  # a job's two rows commit together or not at all
    missing = sorted(set(acknowledged) - left)
    assert missing == [], f"{len(missing)} acknowledged jobs lost, first {missing[:5]}"

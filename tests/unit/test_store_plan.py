"""The store's pure core: which jobs share a batch, grouping by user, the batch program,
migration plans, schema ownership, and the open program, driven by a fake executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from edgeagent.store.plan import (
    BEGIN,
    COMMIT,
    BatchBuilder,
    Execute,
    ExecuteMany,
    Planned,
    Program,
    Query,
    Schema,
    SchemaError,
    SchemaTooNew,
    Script,
    Step,
    WalRefused,
    batch_program,
    check_schemas,
    chunks,
    group_jobs,
    open_for_writing,
    plan_migration,
    read_versions,
    used_bytes,
    vacuum,
)


def drive(program: Program[Any], answer: Callable[[Step], Any]) -> tuple[list[Step], Any]:
    """Run ``program`` against ``answer`` (a fake SQLite); the steps it took and its result."""
    steps: list[Step] = []
    try:
        step = next(program)
        while True:
            steps.append(step)
            step = program.send(answer(step))
    except StopIteration as done:
        return steps, done.value


@dataclass
class Job:
    weight: int = 1
    barrier: bool = False
    planner: Any = None


# ---- batches


def test_jobs_join_until_their_rows_reach_the_bound_and_the_last_one_still_joins() -> None:
    batch: BatchBuilder[Job] = BatchBuilder(10)
    for weight in (3, 3, 3):
        batch.add(Job(weight))
        assert batch.open
    batch.add(Job(5))  # reaches 14: joins, never split
    assert not batch.open
    assert batch.rows == 14
    assert len(batch.jobs) == 4
    with pytest.raises(ValueError, match="closed"):
        batch.add(Job())


def test_a_barrier_ends_the_batch_and_alone_makes_an_empty_one() -> None:
    batch: BatchBuilder[Job] = BatchBuilder(100)
    batch.add(Job())
    stop = Job(0, barrier=True)
    batch.add(stop)
    assert not batch.open
    assert batch.barrier is stop
    assert len(batch.jobs) == 1
    empty: BatchBuilder[Job] = BatchBuilder(100)
    empty.add(stop)
    assert empty.jobs == []
    assert empty.barrier is stop
    with pytest.raises(ValueError, match="at least 1"):
        BatchBuilder(0)


def test_jobs_are_grouped_by_user_in_order_of_first_appearance() -> None:
    a, b = object(), object()
    jobs = [Job(planner=a), Job(planner=b), Job(planner=a), Job(planner=b), Job(planner=a)]
    groups = group_jobs(jobs)  # type: ignore[arg-type]
    assert [planner for planner, _ in groups] == [a, b]
    assert groups[0][1] == [jobs[0], jobs[2], jobs[4]]
    assert groups[1][1] == [jobs[1], jobs[3]]


class Inserter:
    """A user that inserts each job's value into its own table."""

    def __init__(self, table: str) -> None:
        self.table = table

    def plan(self, jobs: Sequence[Any]) -> Program[Planned]:
        sql = f"INSERT INTO {self.table} VALUES (?)"  # noqa: S608
        yield ExecuteMany(sql, [(j,) for j in jobs])
        return Planned([f"{self.table}:{j}" for j in jobs])


def test_a_batch_is_one_transaction_around_every_users_steps() -> None:
    a, b = Inserter("a"), Inserter("b")
    steps, planned = drive(batch_program([(a, [1, 2]), (b, [3])]), lambda step: 1)
    assert steps == [
        BEGIN,
        ExecuteMany("INSERT INTO a VALUES (?)", [(1,), (2,)]),
        ExecuteMany("INSERT INTO b VALUES (?)", [(3,)]),
        COMMIT,
    ]
    assert [list(p.answers) for p in planned] == [["a:1", "a:2"], ["b:3"]]


def test_chunks_bound_the_parameters_of_a_query() -> None:
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


# ---- schemas

V3 = Schema(
    "outbox",
    3,
    "CREATE TABLE outbox (x);",
    frozenset({"outbox"}),
    migrations={1: "ALTER 1;", 2: "ALTER 2;"},
)


def test_migration_plans() -> None:
    assert plan_migration(V3, 3) == []
    assert plan_migration(V3, 0) == [(3, "CREATE TABLE outbox (x);")]
    assert plan_migration(V3, 1) == [(2, "ALTER 1;"), (3, "ALTER 2;")]
    assert plan_migration(V3, 2) == [(3, "ALTER 2;")]


def test_a_newer_version_is_refused_and_a_gap_is_an_error() -> None:
    with pytest.raises(SchemaTooNew, match=r"outbox schema version 4 was written by a newer"):
        plan_migration(V3, 4)
    gap = Schema("outbox", 3, "", frozenset({"outbox"}), migrations={2: "ALTER 2;"})
    with pytest.raises(SchemaError, match="no step from version 1") as caught:
        plan_migration(gap, 1)
    assert not isinstance(caught.value, SchemaTooNew)


def test_users_may_not_claim_the_same_table_or_the_stores_own() -> None:
    journal = Schema("journal", 2, "", frozenset({"intents"}), pragma_version=True)
    check_schemas([journal, V3])
    with pytest.raises(ValueError, match="already belongs to journal"):
        check_schemas([journal, Schema("outbox", 1, "", frozenset({"intents"}))])
    with pytest.raises(ValueError, match="reserved"):
        check_schemas([Schema("outbox", 1, "", frozenset({"store_x"}))])
    with pytest.raises(ValueError, match="only one user"):
        check_schemas([journal, Schema("outbox", 1, "", frozenset(), pragma_version=True)])
    with pytest.raises(ValueError, match="two schemas"):
        check_schemas([V3, V3])
    with pytest.raises(ValueError, match="identifier"):
        check_schemas([Schema("out'box", 1, "", frozenset())])
    with pytest.raises(ValueError, match="start at 1"):
        check_schemas([Schema("outbox", 0, "", frozenset())])


class FakeFile:
    """Answers the open program's queries as a file with these versions would."""

    def __init__(self, user_version: int, stored: dict[str, int] | None, tables: int) -> None:
        self.user_version = user_version
        self.stored = stored
        self.tables = tables
        self.mode = "wal"

    def __call__(self, step: Step) -> Any:
        if isinstance(step, Query):
            if step.sql == "PRAGMA user_version":
                return [(self.user_version,)]
            if "sqlite_master WHERE type" in step.sql:
                return [(1,)] if self.stored is not None else []
            if step.sql.startswith("SELECT user, version"):
                return list((self.stored or {}).items())
            if step.sql == "SELECT count(*) FROM sqlite_master":
                return [(self.tables,)]
            if step.sql == "PRAGMA journal_mode = WAL":
                return [(self.mode,)]
        return 0


JOURNAL = Schema("journal", 2, "CREATE j;", frozenset({"j"}), {1: "ALTER j;"}, True)
OUTBOX = Schema("outbox", 1, "CREATE o;", frozenset({"o"}))


def test_versions_come_from_user_version_and_the_store_schema_table() -> None:
    _, versions = drive(read_versions([JOURNAL, OUTBOX]), FakeFile(2, {"outbox": 1}, 3))
    assert versions == {"journal": 2, "outbox": 1}
    steps, versions = drive(read_versions([JOURNAL]), FakeFile(1, None, 3))
    assert versions == {"journal": 1}
    assert len(steps) == 1  # only the journal: the table is not even looked for
    _, versions = drive(read_versions([JOURNAL, OUTBOX]), FakeFile(2, None, 3))
    assert versions == {"journal": 2, "outbox": 0}


def scripts(steps: list[Step]) -> list[str]:
    return [step.sql for step in steps if isinstance(step, Script)]


def test_a_new_file_gets_incremental_vacuum_wal_and_each_users_tables() -> None:
    steps, versions = drive(
        open_for_writing([JOURNAL, OUTBOX], busy_timeout_ms=10, wal_size_limit=20),
        FakeFile(0, None, 0),
    )
    assert versions == {"journal": 2, "outbox": 1}
    assert Execute("PRAGMA auto_vacuum = INCREMENTAL") in steps
    assert Execute("PRAGMA synchronous = FULL") in steps
    assert Execute("PRAGMA journal_size_limit = 20") in steps
    assert any(isinstance(s, Execute) and "CREATE TABLE IF NOT EXISTS store_schema" in s.sql
               for s in steps)  # fmt: skip
    assert scripts(steps) == [
        "BEGIN;\nCREATE j;\nPRAGMA user_version = 2;\nCOMMIT;",
        "BEGIN;\nCREATE o;\nINSERT OR REPLACE INTO store_schema (user, version)"
        " VALUES ('outbox', 1);\nCOMMIT;",
    ]


def test_an_old_journal_alone_is_migrated_without_a_store_schema_table() -> None:
    steps, versions = drive(
        open_for_writing([JOURNAL], busy_timeout_ms=10, wal_size_limit=20), FakeFile(1, None, 7)
    )
    assert versions == {"journal": 2}
    assert Execute("PRAGMA auto_vacuum = INCREMENTAL") not in steps  # tables exist already
    assert not any("store_schema" in getattr(s, "sql", "") for s in steps)
    assert scripts(steps) == ["BEGIN;\nALTER j;\nPRAGMA user_version = 2;\nCOMMIT;"]


def test_a_newer_user_is_refused_before_anything_changes() -> None:
    steps: list[Step] = []
    program = open_for_writing([JOURNAL, OUTBOX], busy_timeout_ms=10, wal_size_limit=20)
    fake = FakeFile(2, {"outbox": 2}, 3)
    with pytest.raises(SchemaTooNew, match="outbox schema version 2"):
        drive(program, lambda step: (steps.append(step), fake(step))[1])
    assert all(isinstance(step, Query) for step in steps)


def test_a_file_that_refuses_wal_is_refused() -> None:
    fake = FakeFile(2, None, 3)
    fake.mode = "delete"
    with pytest.raises(WalRefused):
        drive(open_for_writing([JOURNAL], busy_timeout_ms=1, wal_size_limit=1), fake)


def test_used_bytes_counts_pages_in_use_and_vacuum_gives_them_back() -> None:
    answers = {"PRAGMA page_count": 10, "PRAGMA freelist_count": 4, "PRAGMA page_size": 4096}
    _, used = drive(used_bytes(), lambda step: [(answers[step.sql],)])  # type: ignore[union-attr]
    assert used == 6 * 4096
    steps, _ = drive(vacuum(), lambda step: [])
    assert steps == [Script("PRAGMA incremental_vacuum;"), Query("PRAGMA wal_checkpoint(TRUNCATE)")]

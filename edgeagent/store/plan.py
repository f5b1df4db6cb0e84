"""What the store decides without touching SQLite: steps, batches, schema plans.

This is the store's pure core (no sqlite3, no aiosqlite, no asyncio). Everything a user of the
store writes is a *program*: a generator that yields ``Step`` values (a query, a statement, a
script) and receives each step's result, so the decisions (which rows, which seqs, which
migration) are plain Python that unit tests drive with a fake executor, and the writer that
carries the steps out stays a few lines (``edgeagent.store.writers``).

``BatchBuilder`` decides which queued jobs share one transaction; ``group_jobs`` splits a batch
by the user (``Planner``) that wrote each job; ``plan_migration`` turns a user's version found
in a file into the scripts that bring it up to date, and ``check_schemas`` refuses users that
claim the same table. ``used_bytes`` and ``vacuum`` are programs every user may run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

# ---- steps and programs


@dataclass(frozen=True, slots=True)
class Query:
    """A statement whose rows the program wants back (a list of tuples)."""

    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class Execute:
    """One statement; the program receives its ``rowcount``."""

    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class ExecuteMany:
    """One statement over many parameter rows; the program receives the ``rowcount``."""

    sql: str
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Script:
    """Several statements without parameters (SQLite's executescript: it commits first, and it
    steps each statement to completion, which ``PRAGMA incremental_vacuum`` needs). For
    exclusive maintenance only, never inside a batch."""

    sql: str


Step = Query | Execute | ExecuteMany | Script

# A program yields steps and gets each one's result back; its return value is the answer.
Program = Generator[Step, Any, T]

BEGIN = Execute("BEGIN")
COMMIT = Execute("COMMIT")


# ---- batches


@dataclass(frozen=True, slots=True)
class Planned:
    """What a user's part of a batch comes to: one answer per job, in the jobs' order, and what
    to do once the batch has committed (update in-memory state: seqs, caches, counters)."""

    answers: Sequence[Any]
    on_commit: Callable[[], None] | None = None


class Planner(Protocol):
    """A user of the store: turns a batch of its own jobs into steps on its own tables.

    ``plan`` runs inside the batch's transaction, on the writer's thread: it may read the
    user's state but must change none of it (that is ``Planned.on_commit``'s job, which runs on
    the event loop after COMMIT), so a batch that fails can be planned again job by job.
    """

    def plan(self, jobs: Sequence[Any]) -> Program[Planned]: ...


class Batchable(Protocol):
    @property
    def weight(self) -> int: ...

    @property
    def barrier(self) -> bool: ...


J = TypeVar("J", bound=Batchable)


class BatchBuilder(Generic[J]):
    """Which queued jobs go into the next transaction.

    Jobs join until their weights (rows) reach ``max_rows``; the job that reaches it still
    joins, so one large job is never split or starved. A *barrier* job (exclusive maintenance,
    a flush, the stop at close) ends the batch: it runs after the jobs before it have
    committed, alone. A barrier offered first makes an empty batch.
    """

    __slots__ = ("barrier", "jobs", "max_rows", "rows")

    def __init__(self, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.max_rows = max_rows
        self.jobs: list[J] = []
        self.rows = 0
        self.barrier: J | None = None

    @property
    def open(self) -> bool:
        """Whether another job may join."""
        return self.barrier is None and self.rows < self.max_rows

    def add(self, job: J) -> None:
        if not self.open:
            raise ValueError("the batch is closed")
        if job.barrier:
            self.barrier = job
            return
        self.jobs.append(job)
        self.rows += job.weight


class Owned(Protocol):
    @property
    def planner(self) -> Planner: ...


OwnedJob = TypeVar("OwnedJob", bound=Owned)


def group_jobs(jobs: Iterable[OwnedJob]) -> list[tuple[Planner, list[OwnedJob]]]:
    """A batch's jobs by user, users in the order of their first job, each user's jobs in
    queue order. Users own disjoint tables, so reordering across users changes nothing."""
    groups: dict[int, tuple[Planner, list[OwnedJob]]] = {}
    for job in jobs:
        planner = job.planner
        group = groups.get(id(planner))
        if group is None:
            groups[id(planner)] = (planner, [job])
        else:
            group[1].append(job)
    return list(groups.values())


def batch_program(groups: Sequence[tuple[Planner, Sequence[Any]]]) -> Program[list[Planned]]:
    """One transaction for every user's part of a batch: BEGIN, each user's steps, COMMIT."""
    yield BEGIN
    planned = []
    for planner, jobs in groups:
        planned.append((yield from planner.plan(jobs)))
    yield COMMIT
    return planned


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in slices of at most ``size`` (SQLite bounds the parameters of a query)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- schemas

RESERVED_PREFIX = "store_"  # the store's own tables (``store_schema``)
VERSIONS_TABLE = "store_schema"


class SchemaError(Exception):
    """A schema cannot be planned: ``user``'s version in the file is ``found``."""

    def __init__(self, user: str, found: int, known: int, message: str) -> None:
        self.user = user
        self.found = found
        self.known = known
        super().__init__(message)


class SchemaTooNew(SchemaError):
    """The file holds a version of ``user`` newer than this code knows."""


class WalRefused(Exception):
    """SQLite would not switch the file to write-ahead logging (a filesystem without shared
    memory, or a file another program holds in another mode)."""


@dataclass(frozen=True, slots=True)
class Schema:
    """One user's tables: ``create`` builds them at ``version``; ``migrations[k]`` takes a
    file from version ``k`` to ``k + 1``. Version 0 means the user has no tables in the file.

    ``pragma_version``: the user's version is kept in ``PRAGMA user_version`` instead of the
    ``store_schema`` table. That is the journal, which had the file before the store did (older
    edgeagents read its version there); at most one user of a file may say so.
    """

    user: str
    version: int
    create: str
    tables: frozenset[str]
    migrations: Mapping[int, str] = field(default_factory=dict)
    pragma_version: bool = False


def plan_migration(schema: Schema, found: int) -> list[tuple[int, str]]:
    """The scripts, each with the version it leaves, that bring ``schema.user`` from version
    ``found`` to ``schema.version``; each runs in a transaction of its own."""
    if found > schema.version:
        raise SchemaTooNew(
            schema.user,
            found,
            schema.version,
            f"{schema.user} schema version {found} was written by a newer edgeagent (this one"
            f" reads up to {schema.version})",
        )
    if found == schema.version:
        return []
    if found <= 0:
        return [(schema.version, schema.create)]
    steps = []
    for version in range(found, schema.version):
        script = schema.migrations.get(version)
        if script is None:
            raise SchemaError(
                schema.user,
                found,
                schema.version,
                f"{schema.user} schema version {found} cannot be migrated to {schema.version}:"
                f" no step from version {version}",
            )
        steps.append((version + 1, script))
    return steps


def check_schemas(schemas: Sequence[Schema]) -> None:
    """Refuse users that would step on each other in one file (``ValueError`` says how)."""
    users: set[str] = set()
    owners: dict[str, str] = {}
    pragma = [s.user for s in schemas if s.pragma_version]
    if len(pragma) > 1:
        raise ValueError(f"only one user may keep its version in user_version, not {pragma}")
    for schema in schemas:
        if schema.user in users:
            raise ValueError(f"two schemas for the user {schema.user!r}")
        users.add(schema.user)
        if not schema.user.isidentifier():
            raise ValueError(f"user {schema.user!r}: a user's name is an identifier")
        if schema.version < 1:
            raise ValueError(f"{schema.user}: schema versions start at 1")
        for table in schema.tables:
            if table.startswith(RESERVED_PREFIX):
                raise ValueError(f"{schema.user}: table {table!r}: the store_ prefix is reserved")
            if table in owners:
                raise ValueError(
                    f"{schema.user}: table {table!r} already belongs to {owners[table]}"
                )
            owners[table] = schema.user


def read_versions(schemas: Sequence[Schema]) -> Program[dict[str, int]]:
    """Each user's version as the file has it (0: the user has no tables there yet). Its first
    read makes SQLite check the file's header, so a file that is not a database fails here,
    before anything in it is changed."""
    rows = yield Query("PRAGMA user_version")
    pragma = int(rows[0][0])
    stored: dict[str, int] = {}
    if any(not schema.pragma_version for schema in schemas):
        exists = yield Query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSIONS_TABLE,)
        )
        if exists:
            found = yield Query(f"SELECT user, version FROM {VERSIONS_TABLE}")  # noqa: S608
            stored = {str(user): int(version) for user, version in found}
    return {
        schema.user: pragma if schema.pragma_version else stored.get(schema.user, 0)
        for schema in schemas
    }


def open_for_writing(
    schemas: Sequence[Schema], *, busy_timeout_ms: int, wal_size_limit: int
) -> Program[dict[str, int]]:
    """Check, set up and migrate a file for the writer; returns each user's version (now the
    current one). Refuses (``SchemaTooNew``) before changing anything when a user's tables
    are newer than this code."""
    versions = yield from read_versions(schemas)
    plans = {schema.user: plan_migration(schema, versions[schema.user]) for schema in schemas}
    yield Execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    tables = yield Query("SELECT count(*) FROM sqlite_master")
    if int(tables[0][0]) == 0:
        # Only takes effect before the first table exists: lets compaction shrink the file
        # with incremental_vacuum.
        yield Execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = yield Query("PRAGMA journal_mode = WAL")
    if str(mode[0][0]).lower() != "wal":
        raise WalRefused
    yield Execute("PRAGMA synchronous = FULL")
    yield Execute(f"PRAGMA journal_size_limit = {int(wal_size_limit)}")
    if any(plans[schema.user] and not schema.pragma_version for schema in schemas):
        yield Execute(
            f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE}"
            " (user TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
    for schema in schemas:
        for version, script in plans[schema.user]:
            # One transaction per step: a crash leaves the file at the version before or after.
            yield Script(f"BEGIN;\n{script}\n{_record_version(schema, version)}\nCOMMIT;")
            versions[schema.user] = version
    return versions


def _record_version(schema: Schema, version: int) -> str:
    if schema.pragma_version:
        return f"PRAGMA user_version = {int(version)};"
    # The user's name is an identifier (check_schemas), so quoting it is enough.
    into = f"INSERT OR REPLACE INTO {VERSIONS_TABLE} (user, version)"
    return into + f" VALUES ('{schema.user}', {int(version)});"


# ---- programs every user may run


def used_bytes() -> Program[int]:
    """Bytes of the database's pages in use (free pages excluded)."""
    values = []
    for pragma in ("page_count", "freelist_count", "page_size"):
        rows = yield Query(f"PRAGMA {pragma}")
        values.append(int(rows[0][0]))
    pages, free, size = values
    return (pages - free) * size


def vacuum() -> Program[None]:
    """Give freed pages back to the disk (the file is created with ``auto_vacuum=INCREMENTAL``,
    which moves them to the end and truncates), then copy the log into the database and cut
    the ``-wal`` file to zero bytes."""
    yield Script("PRAGMA incremental_vacuum;")
    yield Query("PRAGMA wal_checkpoint(TRUNCATE)")

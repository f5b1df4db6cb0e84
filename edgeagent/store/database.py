"""``Store``: one SQLite file, its single writer with group commit, and its readers.

See the package docstring (``edgeagent.store``) for how users share a file. This module is the
adapter: it opens the file, runs the writer task (a child of the store's owner task, ``fatal``:
without a writer nothing can be written), forms batches with the core's ``BatchBuilder``, has
the ``Writer`` carry each batch out as one program, and resolves each job's future after COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from edgeagent.errors import EdgeAgentError
from edgeagent.resource import Number, PartState, TaskOwner
from edgeagent.store.plan import (
    BatchBuilder,
    Planned,
    Planner,
    Program,
    Schema,
    SchemaError,
    SchemaTooNew,
    WalRefused,
    batch_program,
    check_schemas,
    group_jobs,
    open_for_writing,
    plan_migration,
    read_versions,
)
from edgeagent.store.writers import Writer, WriterKind, make_writer, run_program_async

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_BATCH = 4096
BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT = 4 * 1024 * 1024


class StoreError(EdgeAgentError):
    """The store could not open, read or write its file (the message names the file)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters since open (``bytes``: the database and its log on disk now)."""

    commits: int  # batches committed
    jobs: int  # jobs answered from a committed batch
    rows: int  # their weights (rows written, as the users count them)
    batch_max: int  # most rows in one commit
    batch_mean: float  # rows per commit
    failed_commits: int  # batches that failed and were rolled back
    isolated: int  # jobs of a failed batch run again alone
    job_errors: int  # jobs answered with an error
    maintenance: int  # exclusive programs run (compaction, vacuum)
    trips: int  # programs and steps handed to the write connection's thread
    queued: int  # jobs waiting now
    bytes: int


class Store(TaskOwner):
    """The SQLite file at ``path`` shared by the users whose ``schemas`` are given.

    ``submit(planner, job)`` queues a write and returns its answer once durable; ``exclusive``
    runs a maintenance program between batches; ``read`` serves committed rows from the
    read-only connection. ``name`` names the tasks (``edgeagent[<name>].writer``) and appears
    in error messages; ``error`` is the exception class raised (a user's own, e.g.
    ``JournalError``, so its callers catch one family).
    """

    def __init__(
        self,
        path: Path,
        schemas: Sequence[Schema],
        *,
        name: str = "store",
        max_batch: int = DEFAULT_MAX_BATCH,
        readonly: bool = False,
        writer: WriterKind = "thread",
        error: type[EdgeAgentError] = StoreError,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        check_schemas(schemas)
        super().__init__(name, fatal=True)
        self.path = Path(path)
        self.name = name
        self.readonly = readonly
        self.schemas = tuple(schemas)
        self.writer_kind = writer
        self._error = error
        self._max_batch = max_batch
        self._versions: dict[str, int] = {}
        self._writer: Writer | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._writer_done = False
        self._started = False
        self._closing: asyncio.Event | None = None
        self._closed = False
        # Bounded: when the disk falls behind, producers wait here instead of piling up.
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_batch)
        self._commits = 0
        self._jobs = 0
        self._rows = 0
        self._batch_max = 0
        self._failed_commits = 0
        self._isolated = 0
        self._job_errors = 0
        self._maintenance = 0

    # ---- lifecycle

    async def start(self) -> None:
        """Open the file (creating and migrating it unless ``readonly``), then the writer."""
        if self._started:
            raise self._error(f"{self.path}: {self.name} already opened")
        self._started = True
        try:
            await self._connect()
        except BaseException:
            await self.close()  # releases whichever connection was opened
            raise
        if self.readonly:
            self.part_state = PartState.RUNNING
            return
        await self.start_tasks()
        self._writer_task = self.spawn(self._write_loop(), "writer")

    async def close(self) -> None:
        """Finish every queued job, stop the writer, close the file. Idempotent."""
        if self._closed:
            return
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = asyncio.Event()
        try:
            task = self._writer_task
            if task is not None and not task.done() and not self._writer_done:
                await self._queue.put(_Stop())
                await asyncio.wait([task])
            await self.stop_tasks()
        finally:
            writer, self._writer = self._writer, None
            reader, self._reader = self._reader, None
            if writer is not None:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await writer.close()
            if reader is not None:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await reader.close()
            self._closed = True
            if self.part_state is not PartState.FAILED:
                self.part_state = PartState.STOPPED
            self._closing.set()

    @property
    def writable(self) -> bool:
        """Open for writing: the writer runs and takes jobs."""
        return not self.readonly and self.running and not self._writer_done and not self._closed

    def version_of(self, user: str) -> int:
        """``user``'s schema version in the file (after migration when writable)."""
        return self._versions[user]

    # ---- writes

    async def submit(self, planner: Planner, data: Any, weight: int = 1) -> Any:
        """Queue ``data`` for ``planner`` (counted as ``weight`` rows toward a batch); returns
        its answer once the batch holding it has committed. Cancelling the caller does not
        withdraw a job already queued."""
        return await self._enqueue(_Job(planner, data, weight))

    async def exclusive(self, program: Program[T]) -> T:
        """Run ``program`` alone, between batches, committing as it says (maintenance).
        Writes wait while it runs."""
        result: T = await self._enqueue(_Exclusive(program))
        return result

    async def flush(self) -> None:
        """Return once every job queued before this call has been answered."""
        await self._enqueue(_Flush())

    # ---- reads (the read-only connection: committed rows only)

    async def read(self, sql: str, params: Sequence[Any] = (), doing: str = "read") -> list[Any]:
        """The rows of one query on the read-only connection."""
        reader = self._reader
        if reader is None or self._closed:
            raise self._closed_error()
        with self.errors(doing):
            return list(await reader.execute_fetchall(sql, params))

    def size_bytes(self) -> int:
        """The database file and its write-ahead log, as they are on disk now."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    # ---- the stats seam

    def stats(self) -> StoreStats:
        return StoreStats(
            commits=self._commits,
            jobs=self._jobs,
            rows=self._rows,
            batch_max=self._batch_max,
            batch_mean=self._rows / self._commits if self._commits else 0.0,
            failed_commits=self._failed_commits,
            isolated=self._isolated,
            job_errors=self._job_errors,
            maintenance=self._maintenance,
            trips=getattr(self._writer, "trips", 0),
            queued=self._queue.qsize(),
            bytes=self.size_bytes(),
        )

    def counters(self) -> Mapping[str, Number]:
        stats = self.stats()
        return {name: getattr(stats, name) for name in StoreStats.__slots__}

    def detail(self) -> Mapping[str, Any]:
        return {
            "path": str(self.path),
            "writer": None if self.readonly else self.writer_kind,
            "readonly": self.readonly,
            "schemas": dict(self._versions),
        }

    # ---- errors

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """SQLite and OS errors as the store's error class naming the file (cause kept)."""
        try:
            yield
        except SchemaTooNew as exc:
            raise self._error(
                f"{self.path}: {exc}; upgrade edgeagent, or move the file aside to start a"
                f" new {self.name}"
            ) from exc
        except SchemaError as exc:
            raise self._error(
                f"{self.path}: {exc}; move the file aside to start a new {self.name}, or"
                " restore it from a backup"
            ) from exc
        except WalRefused as exc:
            raise self._error(f"{self.path}: SQLite refused write-ahead logging here") from exc
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise self._error(
                    f"{self.path}: not a readable {self.name} ({exc}); move the file aside to"
                    f" start a new {self.name}, or restore it from a backup"
                ) from exc
            raise self._error(f"{self.path}: could not {doing}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise self._error(
                f"{self.path}: could not {doing}: {exc} (check that the state directory"
                " exists and is writable)"
            ) from exc

    def _closed_error(self) -> EdgeAgentError:
        return self._error(f"{self.path}: {self.name} is closed")

    # ---- private: opening

    async def _connect(self) -> None:
        # Read-only by URI, so a reader can never create or change the file by mistake.
        uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
        if not self.readonly:
            with self.errors(f"create the {self.name}'s directory"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # When aiosqlite fails to connect, its worker thread later reports to a loop that
            # may be gone; trying with plain sqlite3 first turns a path SQLite cannot open
            # (a directory, no permission) into our error without that.
            with self.errors("open"):
                await asyncio.to_thread(_try_open, str(self.path), uri=False)
                writer = make_writer(self.writer_kind, self.path, self.name)
                await writer.open()
                self._writer = writer
                self._versions = await writer.run(
                    open_for_writing(
                        self.schemas,
                        busy_timeout_ms=BUSY_TIMEOUT_MS,
                        wal_size_limit=WAL_SIZE_LIMIT,
                    )
                )
        with self.errors("open for reading"):
            await asyncio.to_thread(_try_open, uri, uri=True)
            self._reader = await aiosqlite.connect(uri, uri=True)
            await self._reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self.readonly:
            with self.errors("read the schema version"):
                self._versions = await run_program_async(self._reader, read_versions(self.schemas))
                for schema in self.schemas:
                    plan_migration(schema, self._versions[schema.user])  # refuses newer ones

    # ---- private: the writer

    async def _enqueue(self, job: _Job) -> Any:
        if self.readonly:
            raise self._error(f"{self.path}: {self.name} opened read-only")
        if not self.writable:
            raise self._closed_error()
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            await self._queue.put(job)
            if self._writer_done:  # the writer ended while we waited for room
                raise self._closed_error() from None
        return await job.future

    async def _write_loop(self) -> None:
        queue = self._queue
        try:
            while True:
                batch: BatchBuilder[_Job] = BatchBuilder(self._max_batch)
                batch.add(await queue.get())
                while batch.open:
                    try:
                        batch.add(queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                if batch.jobs:
                    await self._commit(batch.jobs)
                barrier = batch.barrier
                if isinstance(barrier, _Stop):
                    return
                if isinstance(barrier, _Exclusive):
                    await self._run_exclusive(barrier)
                elif barrier is not None:
                    _answer(barrier, None)
        finally:
            self._writer_done = True
            self._fail_queued()

    async def _commit(self, jobs: list[_Job]) -> None:
        writer = self._writer
        assert writer is not None
        groups = group_jobs(jobs)
        try:
            planned = await writer.run(
                batch_program([(planner, [job.data for job in group]) for planner, group in groups])
            )
        except asyncio.CancelledError:
            # The store is being torn down mid-batch (not closed: close drains). Whether the
            # batch commits is the thread's to finish; its waiters must not hang meanwhile.
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(self._closed_error())
            raise
        except Exception as exc:
            self._failed_commits += 1
            if len(jobs) == 1:
                self._fail(jobs, exc, "writing to the {name} failed")
                return
            # One job's failure must not cost the others theirs: each runs again alone, in
            # queue order, and only the jobs that fail again get an error.
            log.warning(
                "%s %s: a commit of %d jobs failed (%s); writing them one by one",
                self.name,
                self.path,
                len(jobs),
                exc,
            )
            self._isolated += len(jobs)
            for job in jobs:
                await self._commit([job])
            return
        self._settle(groups, planned)

    def _settle(self, groups: list[tuple[Planner, list[_Job]]], planned: list[Planned]) -> None:
        rows = 0
        try:
            for (_, group), part in zip(groups, planned, strict=True):
                if part.on_commit is not None:
                    part.on_commit()
                for job, answer in zip(group, part.answers, strict=True):
                    rows += job.weight
                    _answer(job, answer)
                self._jobs += len(group)
        except BaseException as exc:
            # A user's state no longer matches the file: the writer must stop (the store
            # fails, and a fatal store stops the agent), and no waiter may hang.
            for _, group in groups:
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(exc)
            raise
        self._commits += 1
        self._rows += rows
        self._batch_max = max(self._batch_max, rows)

    async def _run_exclusive(self, job: _Exclusive) -> None:
        writer = self._writer
        assert writer is not None
        self._maintenance += 1
        try:
            result = await writer.run(job.program)
        except Exception as exc:
            self._fail([job], exc, "{name} maintenance failed")
            return
        _answer(job, result)

    def _fail(self, jobs: Sequence[_Job], exc: Exception, what: str) -> None:
        if isinstance(exc, sqlite3.Error | ValueError):
            # ValueError: a connection already closed. Nothing of the batch is durable.
            log.warning("%s %s: %s: %s", self.name, self.path, what.format(name=self.name), exc)
            error: Exception = self._error(f"{self.path}: {what.format(name=self.name)}: {exc}")
            error.__cause__ = exc
        else:
            log.error("%s %s: a job raised", self.name, self.path, exc_info=exc)
            error = exc
        for job in jobs:
            if not job.future.done():
                self._job_errors += 1
                job.future.set_exception(error)

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if not job.future.done():
                job.future.set_exception(self._closed_error())


def _try_open(target: str, *, uri: bool) -> None:
    sqlite3.connect(target, uri=uri).close()


def _answer(job: _Job, answer: Any) -> None:
    if not job.future.done():  # the waiter may have been cancelled
        job.future.set_result(answer)


# ---- jobs queued for the writer


class _Job:
    """A queued write: ``weight`` counts toward the batch bound; ``future`` gets the answer."""

    __slots__ = ("data", "future", "planner", "weight")
    barrier = False

    def __init__(self, planner: Any, data: Any, weight: int) -> None:
        self.planner = planner
        self.data = data
        self.weight = weight
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class _Exclusive(_Job):
    """Maintenance that commits on its own (compaction): run between batches."""

    __slots__ = ("program",)
    barrier = True

    def __init__(self, program: Program[Any]) -> None:
        super().__init__(None, None, 0)
        self.program = program


class _Flush(_Job):
    __slots__ = ()
    barrier = True

    def __init__(self) -> None:
        super().__init__(None, None, 0)


class _Stop(_Job):
    __slots__ = ()
    barrier = True

    def __init__(self) -> None:
        super().__init__(None, None, 0)

"""The durable journal: intents, audit records, snapshots and timers in one SQLite file.

Theory of operation
-------------------
Every accepted intent is written here *before* it is acknowledged, so the journal is the
device's source of truth: a reactor's state is its latest snapshot plus the intents after it.

Durability. The file is opened with ``journal_mode=WAL`` and ``synchronous=FULL``: a COMMIT
returns only after the write-ahead log has been fsynced, so an acknowledged intent survives a
power cut, not just a crash of the process.

Group commit. A flash card manages ~100 fsyncs per second, so one COMMIT per intent would cap
the device at ~100 intents/s. Instead every write (``append``, ``audit``, ``snapshot``, timers,
marks) is queued as an operation on a bounded ``asyncio.Queue`` and one **writer task**, the only
user of the write connection, takes everything waiting (up to ``max_batch`` rows), writes it
with one ``executemany`` per table and one COMMIT, and only then resolves every waiter's future.
While that COMMIT is in flight new appends queue up and form the next batch, so the batch grows
with the load and the number of fsyncs stays bounded. aiosqlite runs each call on its own
thread and costs ~20 µs per await, so the writer awaits a handful of times per *batch* and
never once per row.

Sequence numbers are assigned by the writer from an in-memory counter (one past the highest
seq found in ``intents`` or ``snapshots`` at open), so ``append`` learns its seqs without a
query, and seqs are never reused even after compaction deleted the newest rows. Idempotency: a
batch that carries keys costs one extra ``SELECT ... WHERE idem IN (...)``; a key already in
the file, or earlier in the same batch, yields the first append's seq and no second row. A key
is remembered as long as its row is retained (compaction forgets it).

Reads (``replay``, ``tail``, snapshots, timers, marks) use a second, read-only connection, so
they see only committed rows (``tail`` can never show an intent that has not been
acknowledged) and a long replay does not hold up the writer. Replay cost is making Python
objects, so it is kept low three ways: an intent's reactor/verb/name/principal/source are
stored once in ``kinds`` and shared (one small int per row instead of five strings); each
SELECT returns 5,000 rows whose payloads are decoded by a single ``json.loads`` of one JSON
array; and entries are built through their slot setters rather than the frozen ``__init__``.
A million intents replay in about 4 s on the development host.

``follow`` needs no polling inside the agent: the writer replaces an ``asyncio.Event`` after
every commit, and followers wait on it. A follower in another process (the CLI reading the
file directly) cannot see that event and falls back to polling every ``poll`` seconds.

Size. ``compact(max_bytes=...)`` deletes intents that are no longer needed, oldest first:
a row of reactor R may go when its seq is at or below both R's latest snapshot (replay starts
after it) and R's marks (its effects will not be run again: ``effects_done`` for what the
runtime carries out itself, ``handoffs_done`` for the emits and forwards it hands to
tasks). It keeps only the newest ``audit_keep`` audit records. Deleting rows only frees pages
*inside* the file; what shrinks the file itself is ``PRAGMA incremental_vacuum`` (the file is
created with ``auto_vacuum=INCREMENTAL``, which moves free pages to the end and truncates
them) followed by ``PRAGMA wal_checkpoint(TRUNCATE)``, which copies the log into the database
and cuts the ``-wal`` file to zero bytes. ``journal_size_limit`` also keeps the log from
staying large after ordinary checkpoints.

Errors. Every SQLite error is translated into ``JournalError`` at this boundary, with the file
in the message and the original as ``__cause__``. A file written by a newer edgeagent (its
``PRAGMA user_version`` is above ours) or one SQLite cannot read is refused at open with what to
do about it.

Lifecycle: ``Journal`` is an async context manager (``async with Journal(path) as journal``,
or ``journal = await Journal.open(path)`` ... ``await journal.close()``). Its writer runs in
the journal's own ``asyncio.TaskGroup`` as ``edgeagent[journal].writer``; ``close`` lets the
writer finish every queued operation, then closes both connections, and is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, Self

import aiosqlite

from edgeagent.errors import JournalError
from edgeagent.resource import AsyncResource

log = logging.getLogger(__name__)

# 2: marks.handoffs_done (a version 1 file is migrated when opened for writing).
SCHEMA_VERSION = 2
DEFAULT_MAX_BATCH = 4096
REPLAY_BATCH = 5000
DEFAULT_AUDIT_KEEP = 10_000

# The tables of docs/reactors.md, with one storage detail: an intent's reactor, verb, name,
# principal and source are few distinct combinations, so ``intents`` stores them once in
# ``kinds`` and refers to one by id. Replaying a million rows is dominated by making Python
# objects per column; an id that maps to a shared tuple of str costs a fraction of five fresh
# strings, and each row gets ~40 bytes smaller. ``intents.reactor`` stays for the index that
# serves replay(reactor) and for compaction. ``idem`` is UNIQUE as a second line of defence:
# the writer already resolves duplicates before inserting.
SCHEMA = """
CREATE TABLE IF NOT EXISTS kinds (
    id INTEGER PRIMARY KEY,
    reactor TEXT NOT NULL,
    verb TEXT NOT NULL,
    name TEXT NOT NULL,
    principal TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (reactor, verb, name, principal, source)
);
CREATE TABLE IF NOT EXISTS intents (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    reactor TEXT NOT NULL,
    kind INTEGER NOT NULL REFERENCES kinds (id),
    payload TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    idem TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS intents_by_reactor ON intents (reactor, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    reactor TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS timers (
    reactor TEXT NOT NULL,
    key TEXT NOT NULL,
    due REAL NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (reactor, key)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    principal TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    trace_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (
    reactor TEXT PRIMARY KEY,
    effects_done INTEGER NOT NULL,
    handoffs_done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS failed (
    seq INTEGER PRIMARY KEY,
    reactor TEXT NOT NULL,
    error TEXT NOT NULL
);
"""

INSERT_INTENT = (
    "INSERT INTO intents (seq, at, reactor, kind, payload, trace_id, idem)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_KIND = (
    "INSERT INTO kinds (id, reactor, verb, name, principal, source) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_AUDIT = "INSERT INTO audit (at, principal, name, reason, trace_id) VALUES (?, ?, ?, ?, ?)"
_SELECT_KINDS = "SELECT id, reactor, verb, name, principal, source FROM kinds"
_SELECT_AFTER = (
    "SELECT seq, at, kind, payload, trace_id, idem FROM intents WHERE seq > ? ORDER BY seq LIMIT ?"
)
_SELECT_REACTOR_AFTER = (
    "SELECT seq, at, kind, payload, trace_id, idem FROM intents"
    " WHERE reactor = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_SELECT_NEWEST = (
    "SELECT seq, at, kind, payload, trace_id, idem FROM intents ORDER BY seq DESC LIMIT ?"
)

# Compact JSON, the same bytes for the same value (payloads keep their key order; snapshots
# are canonical, sorted). NaN and infinities are refused: they are not JSON.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_CANONICAL = json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
)

# SQLite's limit on host parameters is 32766 since 3.32; stay well below it.
_PARAMS_PER_QUERY = 500
_COMPACT_CHUNK = 5000
_WAL_SIZE_LIMIT = 4 * 1024 * 1024
_BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class Entry:
    """One journaled intent. ``seq`` is 0 until the journal assigns it."""

    seq: int
    at: float  # wall-clock seconds when accepted
    reactor: str
    verb: str
    name: str
    payload: dict[str, Any]
    principal: str
    source: str
    trace_id: str
    idem: str | None = None


# Setters of Entry's slots in field order, for building entries without __init__ (replay).
_ENTRY_SLOTS = tuple(getattr(Entry, field.name).__set__ for field in fields(Entry))


class Marks(NamedTuple):
    """How far a reactor's effects are known to have run (``Journal.marks``)."""

    effects: int  # every effect the runtime carries out itself, up to this seq
    handoffs: int  # every emit and forward handed to a task has finished, up to this seq

    def join(self, other: Marks) -> Marks:
        """Each mark at the further of the two (marks never move back)."""
        return Marks(max(self.effects, other.effects), max(self.handoffs, other.handoffs))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A denied intent: who asked for what, and why it was refused."""

    at: float
    principal: str
    name: str
    reason: str
    trace_id: str


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: at wall time ``due``, intent ``name`` with ``payload`` for ``reactor``."""

    reactor: str
    key: str
    due: float
    name: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters since open (``bytes``: the database and its log on disk now)."""

    appended: int  # intent rows written
    deduplicated: int  # appends answered from an idempotency key already journaled
    audits: int
    commits: int
    batch_max: int  # most rows written by one commit
    batch_mean: float  # rows per commit, intents and audits together
    payload_bytes: int  # JSON payload bytes of the appended intents
    bytes: int
    last_seq: int


class JournalState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Journal(AsyncResource):
    """The SQLite journal at ``path``; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        readonly: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = Path(path)
        self.readonly = readonly
        self._max_batch = max_batch
        self._state = JournalState.NEW
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._writer_done = False
        # Bounded: when the disk falls behind, producers wait here instead of piling up.
        self._queue: asyncio.Queue[_Op] = asyncio.Queue(maxsize=max_batch)
        self._next_seq = 1
        self._kind_ids: dict[_Kind, int] = {}  # the kinds table, both ways
        self._kinds: dict[int, _Kind] = {}
        self._committed_seq = 0
        self._version = SCHEMA_VERSION  # of the file, once open
        self._committed = asyncio.Event()  # replaced (after being set) by every commit
        self._closed = asyncio.Event()
        self._appended = 0
        self._deduplicated = 0
        self._audits = 0
        self._commits = 0
        self._batch_rows = 0
        self._batch_max = 0
        self._payload_bytes = 0

    # ---- lifecycle

    @classmethod
    async def open(
        cls, path: Path, *, max_batch: int = DEFAULT_MAX_BATCH, readonly: bool = False
    ) -> Journal:
        """Open (creating it unless ``readonly``) the journal at ``path``."""
        journal = cls(path, max_batch=max_batch, readonly=readonly)
        await journal._open()
        return journal

    async def __aenter__(self) -> Self:
        if self._state is JournalState.NEW:
            await self._open()
        return self

    async def close(self) -> None:
        """Finish every queued write, stop the writer, close the file. Idempotent."""
        if self._state is JournalState.CLOSED:
            return
        if self._state is JournalState.CLOSING:
            await self._closed.wait()
            return
        was_open = self._state is JournalState.OPEN
        self._state = JournalState.CLOSING
        try:
            if was_open and self._tasks is not None:
                if not self._writer_done:
                    await self._queue.put(_Stop())
                await self._tasks.__aexit__(None, None, None)
        finally:
            self._tasks = None
            for connection in (self._writer, self._reader):
                if connection is not None:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await connection.close()
            self._writer = self._reader = None
            self._state = JournalState.CLOSED
            self._committed.set()  # release followers
            self._closed.set()

    @property
    def state(self) -> JournalState:
        return self._state

    @property
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty journal)."""
        return self._committed_seq

    # ---- writes (group-committed by the writer task)

    async def append(self, entries: Sequence[Entry]) -> list[int]:
        """Journal ``entries`` in order; returns their seqs once they are durable.

        An entry whose ``idem`` key was journaled before gets that first seq and adds no row.
        Cancelling the caller does not withdraw entries already queued.
        """
        self._check_writable()
        rows: list[tuple[Any, ...]] = []
        size = 0
        for entry in entries:
            payload = self._encode(_COMPACT, entry.payload, entry.name)
            size += len(payload)
            kind = (entry.reactor, entry.verb, entry.name, entry.principal, entry.source)
            rows.append((entry.at, kind, payload, entry.trace_id, entry.idem))
        if not rows:
            return []
        self._payload_bytes += size
        result: list[int] = await self._submit(_Append(rows))
        return result

    async def audit(self, record: AuditRecord) -> None:
        """Record a denial; returns once it is durable (group-committed with the intents)."""
        self._check_writable()
        row = (record.at, record.principal, record.name, record.reason, record.trace_id)
        await self._submit(_Audit(row))

    async def snapshot(self, reactor: str, seq: int, state: Any) -> None:
        """Store ``state`` as ``reactor``'s state after intent ``seq`` (replacing the last)."""
        self._check_writable()
        text = self._encode(_CANONICAL, state, f"snapshot of {reactor}")
        await self._submit(
            _Write(
                "INSERT INTO snapshots (reactor, seq, state, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (reactor) DO UPDATE SET"
                " seq = excluded.seq, state = excluded.state, at = excluded.at",
                (reactor, seq, text, time.time()),
            )
        )

    async def set_timer(self, timer: Timer) -> None:
        """Store ``timer``, replacing the reactor's timer with the same key."""
        self._check_writable()
        payload = self._encode(_COMPACT, timer.payload, f"timer {timer.key}")
        await self._submit(
            _Write(
                "INSERT OR REPLACE INTO timers (reactor, key, due, name, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                (timer.reactor, timer.key, timer.due, timer.name, payload),
            )
        )

    async def cancel_timer(self, reactor: str, key: str) -> None:
        """Forget the reactor's timer ``key`` (nothing happens when there is none)."""
        self._check_writable()
        await self._submit(
            _Write("DELETE FROM timers WHERE reactor = ? AND key = ?", (reactor, key))
        )

    async def mark_effects_done(
        self, reactor: str, seq: int, *, handoffs: int | None = None
    ) -> None:
        """The effects of ``reactor``'s intents up to ``seq`` have run, and its handed-off
        effects (emits, forwards) up to ``handoffs`` (default ``seq``). Marks never move
        back."""
        self._check_writable()
        await self._submit(
            _Write(
                "INSERT INTO marks (reactor, effects_done, handoffs_done) VALUES (?, ?, ?)"
                " ON CONFLICT (reactor) DO UPDATE SET"
                " effects_done = max(effects_done, excluded.effects_done),"
                " handoffs_done = max(handoffs_done, excluded.handoffs_done)",
                (reactor, seq, seq if handoffs is None else handoffs),
            )
        )

    async def mark_failed(self, reactor: str, seq: int, error: str) -> None:
        """Intent ``seq`` made ``reactor``'s handler raise ``error``; replay skips it too."""
        self._check_writable()
        await self._submit(
            _Write(
                "INSERT OR REPLACE INTO failed (seq, reactor, error) VALUES (?, ?, ?)",
                (seq, reactor, error),
            )
        )

    async def compact(self, *, max_bytes: int, audit_keep: int = DEFAULT_AUDIT_KEEP) -> int:
        """Bound the file to ``max_bytes`` where retention allows; returns the rows removed.

        Intents go oldest first, and only those at or below both their reactor's latest
        snapshot and its ``effects_done`` mark; the newest ``audit_keep`` audit records stay.
        Appends wait while compaction runs. The file may stay above ``max_bytes`` when
        nothing more may be deleted (a warning is logged).
        """
        self._check_writable()
        removed: int = await self._submit(
            _Exclusive(lambda connection: self._compact(connection, max_bytes, audit_keep))
        )
        return removed

    # ---- reads (the read-only connection: committed rows only)

    async def replay(
        self, reactor: str | None, after: int = 0, *, batch: int = REPLAY_BATCH
    ) -> AsyncIterator[list[Entry]]:
        """The intents of ``reactor`` (every reactor when None) after ``after``, in seq order.

        Yields lists of up to ``batch`` entries, one SELECT each. (Reading the next batch
        ahead on SQLite's thread was tried: with the GIL held while rows become Python objects,
        it gained nothing.)
        """
        sql, key = (_SELECT_AFTER, ()) if reactor is None else (_SELECT_REACTOR_AFTER, (reactor,))
        last = after
        while True:
            rows = await self._read(sql, (*key, last, batch), "replay")
            if rows:
                yield await self._entries(rows)
            if len(rows) < batch:
                return
            last = rows[-1][0]

    async def tail(self, after: int = 0, limit: int = 100) -> list[Entry]:
        """Up to ``limit`` intents of every reactor after seq ``after``, oldest first."""
        rows = await self._read(
            _SELECT_AFTER,
            (after, limit),
            "tail",
        )
        return await self._entries(rows)

    async def last(self, limit: int) -> list[Entry]:
        """The newest ``limit`` intents, oldest first (for ``edgeagent journal``)."""
        rows = await self._read(_SELECT_NEWEST, (limit,), "read")
        return await self._entries(rows[::-1])

    async def follow(
        self, after: int = 0, *, limit: int = 1000, poll: float = 1.0
    ) -> AsyncIterator[list[Entry]]:
        """Batches of intents after ``after`` as they are committed, until the journal closes.

        Within the agent a commit wakes the follower at once; ``poll`` bounds the wait when
        the writer is another process (or this journal is read-only).
        """
        while self._state is JournalState.OPEN:
            event = self._committed  # take it before reading: a commit after the read sets it
            entries = await self.tail(after, limit)
            if entries:
                after = entries[-1].seq
                yield entries
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await event.wait()

    async def latest_snapshot(self, reactor: str) -> tuple[int, Any] | None:
        """(seq, state) of ``reactor``'s latest snapshot, or None."""
        rows = await self._read(
            "SELECT seq, state FROM snapshots WHERE reactor = ?", (reactor,), "read snapshot"
        )
        if not rows:
            return None
        seq, text = rows[0]
        return seq, self._decode(text, f"snapshot of {reactor}")

    async def timers(self, reactor: str | None = None) -> list[Timer]:
        """Stored timers (of one reactor, or all), soonest first."""
        sql = "SELECT reactor, key, due, name, payload FROM timers"
        params: tuple[Any, ...] = ()
        if reactor is not None:
            sql += " WHERE reactor = ?"
            params = (reactor,)
        rows = await self._read(sql + " ORDER BY due, reactor, key", params, "read timers")
        return [
            Timer(r, key, due, name, self._decode(payload, f"timer {key}"))
            for r, key, due, name, payload in rows
        ]

    async def effects_done(self, reactor: str) -> int:
        """The seq up to which all of ``reactor``'s effects have run (0 when never marked)."""
        return min(await self.marks(reactor))

    async def marks(self, reactor: str) -> Marks:
        """``reactor``'s marks: effects run, and handed-off effects finished, up to which seq."""
        column = "handoffs_done" if self._version >= 2 else "effects_done"
        rows = await self._read(
            f"SELECT effects_done, {column} FROM marks WHERE reactor = ?",  # noqa: S608
            (reactor,),
            "read marks",
        )
        return Marks(int(rows[0][0]), int(rows[0][1])) if rows else Marks(0, 0)

    async def failed_seqs(self, reactor: str) -> set[int]:
        """Seqs of ``reactor``'s intents whose handling failed."""
        rows = await self._read(
            "SELECT seq FROM failed WHERE reactor = ?", (reactor,), "read failed marks"
        )
        return {int(row[0]) for row in rows}

    async def recent_audit(self, limit: int = 100) -> list[AuditRecord]:
        """The newest ``limit`` audit records, oldest first."""
        rows = await self._read(
            "SELECT at, principal, name, reason, trace_id FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
            "read audit",
        )
        return [AuditRecord(*row) for row in rows[::-1]]

    def stats(self) -> JournalStats:
        return JournalStats(
            appended=self._appended,
            deduplicated=self._deduplicated,
            audits=self._audits,
            commits=self._commits,
            batch_max=self._batch_max,
            batch_mean=self._batch_rows / self._commits if self._commits else 0.0,
            payload_bytes=self._payload_bytes,
            bytes=self.size_bytes(),
            last_seq=self._committed_seq,
        )

    def size_bytes(self) -> int:
        """The database file and its write-ahead log, as they are on disk now."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    # ---- private: opening

    async def _open(self) -> None:
        if self._state is not JournalState.NEW:
            raise JournalError(f"{self.path}: journal already {self._state.value}")
        try:
            await self._connect()
        except BaseException:
            await self.close()  # releases whichever connection was opened
            raise
        self._state = JournalState.OPEN
        if not self.readonly:
            self._tasks = asyncio.TaskGroup()
            await self._tasks.__aenter__()
            self._writer_task = self._tasks.create_task(
                self._write_loop(), name="edgeagent[journal].writer"
            )

    async def _connect(self) -> None:
        if self.readonly and not self.path.is_file():
            raise JournalError(f"{self.path}: no journal here (nothing has been journaled yet?)")
        # Read-only by URI, so a reader can never create or change the file by mistake.
        uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
        if not self.readonly:
            with self._errors("create the journal's directory"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # When aiosqlite fails to connect, its worker thread later reports to a loop that
            # may be gone; trying with plain sqlite3 first turns a path SQLite cannot open
            # (a directory, no permission) into our error without that.
            with self._errors("open"):
                await asyncio.to_thread(_try_open, str(self.path), uri=False)
                self._writer = await aiosqlite.connect(self.path)
            await self._prepare_writer(self._writer)
        with self._errors("open for reading"):
            await asyncio.to_thread(_try_open, uri, uri=True)
            self._reader = await aiosqlite.connect(uri, uri=True)
            await self._reader.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        version = await self._read("PRAGMA user_version", (), "read the schema version")
        self._version = int(version[0][0])
        self._check_version(self._version)
        if self.readonly:
            # The reader only serves as a writer elsewhere allows; seqs come from the file.
            high = await self._read(
                "SELECT max(coalesce((SELECT max(seq) FROM intents), 0),"
                " coalesce((SELECT max(seq) FROM snapshots), 0))",
                (),
                "read",
            )
            self._committed_seq = int(high[0][0])
            await self._reload_kinds()

    async def _prepare_writer(self, connection: aiosqlite.Connection) -> None:
        with self._errors("open"):
            # Any read makes SQLite look at the header: a file that is not a database fails
            # here, before we try to change anything in it.
            rows = await connection.execute_fetchall("PRAGMA user_version")
            version = int(next(iter(rows))[0])
            self._check_version(version)
            await connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if version == 0:
                # Only takes effect before the first table exists: lets compact() shrink
                # the file with incremental_vacuum.
                await connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = await connection.execute_fetchall("PRAGMA journal_mode = WAL")
            if str(next(iter(mode))[0]).lower() != "wal":
                raise JournalError(f"{self.path}: SQLite refused write-ahead logging here")
            await connection.execute("PRAGMA synchronous = FULL")
            await connection.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
            if version == 0:
                await connection.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            elif version == 1:
                # Version 1 handed emits on without waiting: its one mark covered them too.
                await connection.executescript(
                    "BEGIN; ALTER TABLE marks ADD COLUMN handoffs_done INTEGER NOT NULL DEFAULT 0;"
                    " UPDATE marks SET handoffs_done = effects_done; PRAGMA user_version = 2;"
                    " COMMIT;"
                )
            high = await connection.execute_fetchall(
                "SELECT coalesce((SELECT max(seq) FROM intents), 0),"
                " coalesce((SELECT max(seq) FROM snapshots), 0)"
            )
            last_intent, last_snapshot = next(iter(high))
            kinds = await connection.execute_fetchall(_SELECT_KINDS)
        self._learn(kinds)
        # A snapshot may be newer than every remaining intent once compaction has run:
        # new seqs must stay above it, or replay(after=snapshot) would skip them.
        self._committed_seq = int(max(last_intent, last_snapshot))
        self._next_seq = self._committed_seq + 1

    def _learn(self, rows: Any) -> None:
        for ident, *parts in rows:
            kind: _Kind = tuple(str(part) for part in parts)  # type: ignore[assignment]
            self._kind_ids[kind] = int(ident)
            self._kinds[int(ident)] = kind

    async def _reload_kinds(self) -> None:
        """Kinds another process added since we last looked (a read-only journal)."""
        self._learn(await self._read(_SELECT_KINDS, (), "read kinds"))

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path}: journal schema version {version} was written by a newer"
                f" edgeagent (this one reads up to {SCHEMA_VERSION}); upgrade edgeagent, or"
                " move the file aside to start a new journal"
            )

    # ---- private: the writer

    async def _submit(self, op: _Op) -> Any:
        try:
            self._queue.put_nowait(op)
        except asyncio.QueueFull:
            await self._queue.put(op)
            if self._writer_done:  # the writer ended while we waited for room
                raise self._closed_error() from None
        return await op.future

    async def _write_loop(self) -> None:
        try:
            while True:
                batch = [await self._queue.get()]
                rows = batch[0].rows
                special = isinstance(batch[0], _Exclusive | _Stop)
                while not special and rows < self._max_batch:
                    try:
                        op = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    batch.append(op)
                    rows += op.rows
                    special = isinstance(op, _Exclusive | _Stop)
                last = batch[-1]
                if special:
                    batch.pop()
                if batch:
                    await self._commit(batch)
                if isinstance(last, _Stop):
                    return
                if isinstance(last, _Exclusive):
                    await self._run_exclusive(last)
        finally:
            self._writer_done = True
            self._fail_queued()

    async def _commit(self, batch: list[_Op]) -> None:
        connection = self._writer
        assert connection is not None
        seq = self._next_seq
        kinds = self._kind_ids
        fresh: dict[_Kind, int] = {}  # kinds first seen in this batch: known once committed
        rows: list[tuple[Any, ...]] = []
        answers: list[tuple[_Op, Any]] = []
        audits: list[tuple[Any, ...]] = []
        writes: list[_Write] = []
        duplicates = 0
        try:
            known = await self._known_keys(connection, batch)
            for op in batch:
                if isinstance(op, _Append):
                    seqs: list[int] = []
                    for row in op.data:
                        idem = row[4]
                        if idem is not None:
                            first = known.get(idem)
                            if first is not None:
                                seqs.append(first)
                                duplicates += 1
                                continue
                            known[idem] = seq
                        kind = row[1]
                        ident = kinds.get(kind) or fresh.get(kind) or self._fresh(fresh, kind)
                        rows.append((seq, row[0], kind[0], ident, row[2], row[3], idem))
                        seqs.append(seq)
                        seq += 1
                    answers.append((op, seqs))
                elif isinstance(op, _Audit):
                    audits.append(op.data)
                    answers.append((op, None))
                elif isinstance(op, _Write):
                    writes.append(op)
                    answers.append((op, None))
            await _write_and_commit(
                connection, [(i, *k) for k, i in fresh.items()], rows, audits, writes
            )
        except (sqlite3.Error, ValueError) as exc:
            # ValueError: aiosqlite's "connection closed". Nothing of the batch is durable.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await connection.rollback()
            log.warning(
                "journal %s: a commit of %d operations failed: %s", self.path, len(batch), exc
            )
            for op in batch:
                if not op.future.done():
                    error = JournalError(f"{self.path}: writing to the journal failed: {exc}")
                    error.__cause__ = exc
                    op.future.set_exception(error)
            return
        self._next_seq = seq
        for kind, ident in fresh.items():
            kinds[kind] = ident
            self._kinds[ident] = kind
        self._commits += 1
        self._appended += len(rows)
        self._audits += len(audits)
        self._deduplicated += duplicates
        written = len(rows) + len(audits)
        self._batch_rows += written
        self._batch_max = max(self._batch_max, written)
        for op, answer in answers:
            if not op.future.done():  # the waiter may have been cancelled
                op.future.set_result(answer)
        if seq - 1 > self._committed_seq:
            self._committed_seq = seq - 1
            event, self._committed = self._committed, asyncio.Event()
            event.set()

    def _fresh(self, fresh: dict[_Kind, int], kind: _Kind) -> int:
        ident = len(self._kind_ids) + len(fresh) + 1  # ids are dense: 1, 2, 3 ...
        fresh[kind] = ident
        return ident

    async def _known_keys(
        self, connection: aiosqlite.Connection, batch: list[_Op]
    ) -> dict[str, int]:
        keys = {
            row[4]
            for op in batch
            if isinstance(op, _Append)
            for row in op.data
            if row[4] is not None
        }
        known: dict[str, int] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), _PARAMS_PER_QUERY):
            chunk = ordered[start : start + _PARAMS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are formatted in; the keys travel as parameters.
            found = await connection.execute_fetchall(
                f"SELECT idem, seq FROM intents WHERE idem IN ({marks})",  # noqa: S608
                chunk,
            )
            known.update({str(idem): int(seq) for idem, seq in found})
        return known

    async def _run_exclusive(self, op: _Exclusive) -> None:
        connection = self._writer
        assert connection is not None
        try:
            result = await op.run(connection)
        except (sqlite3.Error, ValueError) as exc:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await connection.rollback()
            if not op.future.done():
                error = JournalError(f"{self.path}: journal maintenance failed: {exc}")
                error.__cause__ = exc
                op.future.set_exception(error)
            return
        except JournalError as exc:
            if not op.future.done():
                op.future.set_exception(exc)
            return
        if not op.future.done():
            op.future.set_result(result)

    async def _compact(
        self, connection: aiosqlite.Connection, max_bytes: int, audit_keep: int
    ) -> int:
        removed = 0
        cursor = await connection.execute(
            "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC"
            " LIMIT 1 OFFSET ?)",
            (audit_keep,),
        )
        removed += max(cursor.rowcount, 0)
        # Failed marks of rows that replay will never reach again are dead weight.
        cursor = await connection.execute(
            "DELETE FROM failed WHERE seq <= (SELECT min(s.seq, coalesce(m.effects_done, 0),"
            " coalesce(m.handoffs_done, 0))"
            " FROM snapshots s LEFT JOIN marks m ON m.reactor = s.reactor"
            " WHERE s.reactor = failed.reactor)"
        )
        removed += max(cursor.rowcount, 0)
        await connection.commit()
        while await self._used_bytes(connection) > max_bytes:
            cursor = await connection.execute(
                "DELETE FROM intents WHERE seq IN (SELECT i.seq FROM intents i"
                " JOIN snapshots s ON s.reactor = i.reactor"
                " LEFT JOIN marks m ON m.reactor = i.reactor"
                " WHERE i.seq <= min(s.seq, coalesce(m.effects_done, 0),"
                " coalesce(m.handoffs_done, 0))"
                " ORDER BY i.seq LIMIT ?)",
                (_COMPACT_CHUNK,),
            )
            deleted = max(cursor.rowcount, 0)
            await connection.commit()
            removed += deleted
            if deleted == 0:
                break
        # Freed pages are only reused inside the file; these two give them back to the disk.
        # executescript steps the pragma to completion; execute() would free a single page.
        await connection.executescript("PRAGMA incremental_vacuum;")
        await connection.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        size = self.size_bytes()
        if size > max_bytes:
            log.warning(
                "journal %s: %d bytes after compaction, above the %d byte bound: the rest is"
                " not yet covered by snapshots and effects_done marks",
                self.path,
                size,
                max_bytes,
            )
        return removed

    async def _used_bytes(self, connection: aiosqlite.Connection) -> int:
        values = []
        for pragma in ("page_count", "freelist_count", "page_size"):
            rows = await connection.execute_fetchall(f"PRAGMA {pragma}")
            values.append(int(next(iter(rows))[0]))
        pages, free, size = values
        return (pages - free) * size

    def _fail_queued(self) -> None:
        while True:
            try:
                op = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if not op.future.done():
                op.future.set_exception(self._closed_error())

    # ---- private: helpers

    def _check_writable(self) -> None:
        if self.readonly:
            raise JournalError(f"{self.path}: journal opened read-only")
        if self._state is not JournalState.OPEN or self._writer_done:
            raise self._closed_error()

    def _closed_error(self) -> JournalError:
        return JournalError(f"{self.path}: journal is {self._state.value}")

    async def _read(self, sql: str, params: Sequence[Any], doing: str) -> list[Any]:
        if self._reader is None or self._state is JournalState.CLOSED:
            raise self._closed_error()
        with self._errors(doing):
            return list(await self._reader.execute_fetchall(sql, params))

    async def _entries(self, rows: list[Any]) -> list[Entry]:
        """Rows of ``intents`` as entries; learns kinds added by another process."""
        if not rows:
            return []
        try:
            return self._decode_rows(rows)
        except KeyError:
            await self._reload_kinds()
        try:
            return self._decode_rows(rows)
        except KeyError as exc:
            raise JournalError(
                f"{self.path}: intents refer to kind {exc}, which the kinds table lacks;"
                " restore the file from a backup or move it aside"
            ) from exc

    def _decode_rows(self, rows: list[Any]) -> list[Entry]:
        try:
            # One parse for the whole batch: the per-call overhead of json.loads would
            # otherwise cost more than the parsing itself for small payloads.
            payloads = json.loads("[" + ",".join([row[3] for row in rows]) + "]")
        except ValueError:
            payloads = None
        if payloads is None or len(payloads) != len(rows):
            # A damaged row: decode one by one to name it.
            payloads = [self._decode(row[3], f"intent {row[0]}") for row in rows]
        # The hot loop of replay. A frozen dataclass's __init__ sets each field through
        # object.__setattr__ by name; calling the slot descriptors directly does the same
        # in about half the time, and a million entries make that a second.
        kinds = self._kinds
        new = object.__new__
        seq_, at_, reactor_, verb_, name_, payload_, principal_, source_, trace_, idem_ = (
            _ENTRY_SLOTS
        )
        entries = []
        for row, payload in zip(rows, payloads, strict=True):
            kind = kinds[row[2]]
            entry = new(Entry)
            seq_(entry, row[0])
            at_(entry, row[1])
            reactor_(entry, kind[0])
            verb_(entry, kind[1])
            name_(entry, kind[2])
            payload_(entry, payload)
            principal_(entry, kind[3])
            source_(entry, kind[4])
            trace_(entry, row[4])
            idem_(entry, row[5])
            entries.append(entry)
        return entries

    def _encode(self, encoder: json.JSONEncoder, value: Any, what: str) -> str:
        try:
            return encoder.encode(value)
        except (TypeError, ValueError) as exc:
            raise JournalError(f"{self.path}: {what} is not JSON: {exc}") from exc

    def _decode(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise JournalError(
                f"{self.path}: {what} holds unreadable JSON ({exc}); restore the file from a"
                " backup or move it aside"
            ) from exc

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite and OS errors as JournalError naming the file (``__cause__`` kept)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise JournalError(
                    f"{self.path}: not a readable journal ({exc}); move the file aside to"
                    " start a new journal, or restore it from a backup"
                ) from exc
            raise JournalError(f"{self.path}: could not {doing}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(
                f"{self.path}: could not {doing}: {exc} (check that the state directory"
                " exists and is writable)"
            ) from exc


def _try_open(target: str, *, uri: bool) -> None:
    sqlite3.connect(target, uri=uri).close()


# ---- operations queued for the writer

# (reactor, verb, name, principal, source): one row of ``kinds``.
_Kind = tuple[str, str, str, str, str]


class _Op:
    """A queued write; ``rows`` counts toward the batch bound; ``future`` gets the answer."""

    __slots__ = ("data", "future", "rows")

    def __init__(self, data: Any, rows: int) -> None:
        self.data = data
        self.rows = rows
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class _Append(_Op):
    __slots__ = ()

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        super().__init__(rows, len(rows))


class _Audit(_Op):
    __slots__ = ()

    def __init__(self, row: tuple[Any, ...]) -> None:
        super().__init__(row, 1)


class _Write(_Op):
    """One statement (snapshot, timer, mark) committed with the batch it lands in."""

    __slots__ = ("sql",)

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        super().__init__(params, 1)
        self.sql = sql


async def _write_and_commit(
    connection: aiosqlite.Connection,
    kind_rows: list[tuple[Any, ...]],
    rows: list[tuple[Any, ...]],
    audits: list[tuple[Any, ...]],
    writes: list[_Write],
) -> None:
    """One batch's inserts and its COMMIT, as one call on aiosqlite's thread when we can.

    Each aiosqlite call is a round trip to its worker thread; a batch used to take three to
    five of them, and under load each waits for the event loop and the GIL. On the 2-core
    development host, appends alone at 12k intents/s (arrivals grouped per loop turn) went
    from p99 22-35 ms to 12 ms, and one append at a time from 0.78 to 0.55 ms.
    aiosqlite has no public way to run several statements in one trip, so this uses its
    ``_execute`` and ``_conn`` (present since 0.17; tests check they still are) and falls back
    to plain calls when they are gone.
    """
    run = getattr(connection, "_execute", None)
    raw = getattr(connection, "_conn", None)
    if run is None or raw is None:
        if kind_rows:
            await connection.executemany(INSERT_KIND, kind_rows)
        if rows:
            await connection.executemany(INSERT_INTENT, rows)
        if audits:
            await connection.executemany(_INSERT_AUDIT, audits)
        for write in writes:
            await connection.execute(write.sql, write.data)
        await connection.commit()
        return

    def write_all(db: sqlite3.Connection) -> None:
        if kind_rows:
            db.executemany(INSERT_KIND, kind_rows)
        if rows:
            db.executemany(INSERT_INTENT, rows)
        if audits:
            db.executemany(_INSERT_AUDIT, audits)
        for write in writes:
            db.execute(write.sql, write.data)
        db.commit()

    await run(write_all, raw)


class _Exclusive(_Op):
    """Maintenance that commits on its own (compaction): run between batches."""

    __slots__ = ("run",)

    def __init__(self, run: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> None:
        super().__init__(None, 0)
        self.run = run


class _Stop(_Op):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, 0)

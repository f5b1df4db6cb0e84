"""The durable journal: intents, audit records, snapshots and timers in one SQLite file.

Theory of operation
-------------------
Every accepted intent is written here *before* it is acknowledged, so the journal is the
device's source of truth: a reactor's state is its latest snapshot plus the intents after it.

Storage is the shared store (``edgeagent.store``): WAL with ``synchronous=FULL`` (a COMMIT
returns only once the log is fsynced, so an acknowledged intent survives a power cut), one
writer task with group commit, a read-only connection for reads, schema versions and
migrations. This module is the journal's schema and queries on top of it: ``JournalWrites``
plans the journal's part of each batch (seqs, kinds, idempotency keys) as steps on its
tables, and ``Journal`` is the API the runtime, the agent and the CLI use. A ``Journal`` opened
on a path owns a store of its own (named ``journal``: its writer task is
``edgeagent[journal].writer``); given ``store=`` it is one user of a shared file.

Group commit. Every write (``append``, ``audit``, ``snapshot``, timers, marks) is a job for
the store's writer, which takes everything waiting (up to ``max_batch`` rows), writes it with
one ``executemany`` per table and one COMMIT, and only then resolves every waiter. While that
COMMIT is in flight new appends queue up and form the next batch, so the batch grows with the
load and the number of fsyncs stays bounded.

Sequence numbers are assigned while planning a batch from an in-memory counter (one past the
highest seq found in ``intents`` or ``snapshots`` at open), so ``append`` learns its seqs
without a query, and seqs are never reused even after compaction deleted the newest rows.
Idempotency: a batch that carries keys costs one extra ``SELECT ... WHERE idem IN (...)``; a
key already in the file, or earlier in the same batch, yields the first append's seq and no
second row. A key is remembered as long as its row is retained (compaction forgets it).

Reads (``replay``, ``tail``, snapshots, timers, marks) use the store's read-only connection,
so they see only committed rows (``tail`` can never show an intent that has not been
acknowledged) and a long replay does not hold up the writer. Replay cost is making Python
objects, so it is kept low three ways: an intent's reactor/verb/name/principal/source are
stored once in ``kinds`` and shared (one small int per row instead of five strings); each
SELECT returns 5,000 rows whose payloads are decoded by a single ``json.loads`` of one JSON
array; and entries are built through their slot setters rather than the frozen ``__init__``
(bench/README.md has the figures).

``follow`` needs no polling inside the agent: every commit of journal rows replaces an
``asyncio.Event``, and followers wait on it. A follower in another process (the CLI reading
the file directly) cannot see that event and falls back to polling every ``poll`` seconds.

Size. ``compact(max_bytes=...)`` deletes intents that are no longer needed, oldest first:
a row of reactor R may go when its seq is at or below both R's latest snapshot (replay starts
after it) and R's marks (its effects will not be run again: ``effects_done`` for what the
runtime carries out itself, ``handoffs_done`` for the emits and forwards it hands to
tasks). It keeps only the newest ``audit_keep`` audit records. Deleting rows only frees pages
*inside* the file; the store's ``vacuum`` (``PRAGMA incremental_vacuum``, then
``wal_checkpoint(TRUNCATE)``) gives them back to the disk.

Errors. Every SQLite error is translated into ``JournalError`` at the store's boundary, with
the file in the message and the original as ``__cause__``. A file written by a newer edgeagent
(its ``PRAGMA user_version``, the journal's schema version, is above ours) or one SQLite
cannot read is refused at open with what to do about it. A version 1 file is migrated when
opened for writing; read-only, it is read as it is.

Lifecycle: ``Journal`` is an async context manager (``async with Journal(path) as journal``,
or ``journal = await Journal.open(path)`` ... ``await journal.close()``). ``close`` lets the
writer finish every queued operation, then closes the store it owns (a shared store is left
open), and is idempotent. ``report()`` is the journal's part of the status document.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, Self

from edgeagent.errors import JournalError
from edgeagent.resource import AsyncResource, Number, PartState, Report
from edgeagent.store import DEFAULT_MAX_BATCH as DEFAULT_MAX_BATCH
from edgeagent.store import (
    Execute,
    ExecuteMany,
    Planned,
    Program,
    Query,
    Schema,
    Store,
    WriterKind,
    chunks,
    used_bytes,
    vacuum,
)

log = logging.getLogger(__name__)

# 2: marks.handoffs_done (a version 1 file is migrated when opened for writing).
SCHEMA_VERSION = 2
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

# Version 1 handed emits on without waiting: its one mark covered them too.
_MIGRATIONS = {
    1: "ALTER TABLE marks ADD COLUMN handoffs_done INTEGER NOT NULL DEFAULT 0;"
    " UPDATE marks SET handoffs_done = effects_done;",
}
JOURNAL_SCHEMA = Schema(
    user="journal",
    version=SCHEMA_VERSION,
    create=SCHEMA,
    tables=frozenset({"kinds", "intents", "snapshots", "timers", "audit", "marks", "failed"}),
    migrations=_MIGRATIONS,
    pragma_version=True,  # the file's user_version, as before the store existed
)

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
    """The SQLite journal at ``path``; see the module docstring.

    ``store``: a store shared with other users (it must hold ``JOURNAL_SCHEMA``, and its owner
    opens and closes it); by default the journal opens a store of its own at ``path``.
    ``writer`` picks the store's write connection (see ``edgeagent.store.writers``).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        readonly: bool = False,
        writer: WriterKind = "thread",
        store: Store | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if store is None:
            store = Store(
                path,
                [JOURNAL_SCHEMA],
                name="journal",
                max_batch=max_batch,
                readonly=readonly,
                writer=writer,
                error=JournalError,
            )
            self._owns_store = True
        else:
            if JOURNAL_SCHEMA not in store.schemas:
                raise ValueError(f"{store.path}: the store does not hold the journal's schema")
            self._owns_store = False
        self.path = store.path
        self.readonly = store.readonly
        self._store = store
        self._state = JournalState.NEW
        self._writes = JournalWrites(self._notify)
        self._version = SCHEMA_VERSION  # of the file, once open
        self._committed = asyncio.Event()  # replaced (after being set) by every commit
        self._closed = asyncio.Event()
        self._payload_bytes = 0

    # ---- lifecycle

    @classmethod
    async def open(
        cls, path: Path, *, max_batch: int = DEFAULT_MAX_BATCH, readonly: bool = False
    ) -> Journal:
        """Open (creating it unless ``readonly``) the journal at ``path``."""
        journal = cls(path, max_batch=max_batch, readonly=readonly)
        await journal.start()
        return journal

    async def start(self) -> None:
        if self._state is not JournalState.NEW:
            raise JournalError(f"{self.path}: journal already {self._state.value}")
        try:
            if self.readonly and not self.path.is_file():
                raise JournalError(
                    f"{self.path}: no journal here (nothing has been journaled yet?)"
                )
            if self._owns_store:
                await self._store.start()
            self._version = self._store.version_of(JOURNAL_SCHEMA.user)
            await self._learn_file()
        except BaseException:
            await self.close()  # releases whichever connection was opened
            raise
        self._state = JournalState.OPEN

    async def __aenter__(self) -> Self:
        if self._state is JournalState.NEW:
            await self.start()
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
            if self._owns_store:
                await self._store.close()
            elif was_open and self._store.writable:
                await self._store.flush()  # our queued writes are answered
        finally:
            self._state = JournalState.CLOSED
            self._committed.set()  # release followers
            self._closed.set()

    @property
    def state(self) -> JournalState:
        return self._state

    async def failed(self) -> BaseException:
        """Wait until the store's writer has failed (without it nothing can be journaled);
        returns the error. The composition root awaits this: the store is ``fatal``."""
        return await self._store.failed()

    @property
    def store(self) -> Store:
        """The store the journal writes through (its own, or the shared one)."""
        return self._store

    @property
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty journal)."""
        return self._writes.committed_seq

    # ---- writes (group-committed by the store's writer)

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
        result: list[int] = await self._store.submit(self._writes, _Append(rows), len(rows))
        return result

    async def audit(self, record: AuditRecord) -> None:
        """Record a denial; returns once it is durable (group-committed with the intents)."""
        self._check_writable()
        row = (record.at, record.principal, record.name, record.reason, record.trace_id)
        await self._store.submit(self._writes, _Audit(row))

    async def snapshot(self, reactor: str, seq: int, state: Any) -> None:
        """Store ``state`` as ``reactor``'s state after intent ``seq`` (replacing the last)."""
        self._check_writable()
        text = self._encode(_CANONICAL, state, f"snapshot of {reactor}")
        await self._write(
            "INSERT INTO snapshots (reactor, seq, state, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (reactor) DO UPDATE SET"
            " seq = excluded.seq, state = excluded.state, at = excluded.at",
            (reactor, seq, text, time.time()),
        )

    async def set_timer(self, timer: Timer) -> None:
        """Store ``timer``, replacing the reactor's timer with the same key."""
        self._check_writable()
        payload = self._encode(_COMPACT, timer.payload, f"timer {timer.key}")
        await self._write(
            "INSERT OR REPLACE INTO timers (reactor, key, due, name, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            (timer.reactor, timer.key, timer.due, timer.name, payload),
        )

    async def cancel_timer(self, reactor: str, key: str) -> None:
        """Forget the reactor's timer ``key`` (nothing happens when there is none)."""
        self._check_writable()
        await self._write("DELETE FROM timers WHERE reactor = ? AND key = ?", (reactor, key))

    async def mark_effects_done(
        self, reactor: str, seq: int, *, handoffs: int | None = None
    ) -> None:
        """The effects of ``reactor``'s intents up to ``seq`` have run, and its handed-off
        effects (emits, forwards) up to ``handoffs`` (default ``seq``). Marks never move
        back."""
        self._check_writable()
        await self._write(
            "INSERT INTO marks (reactor, effects_done, handoffs_done) VALUES (?, ?, ?)"
            " ON CONFLICT (reactor) DO UPDATE SET"
            " effects_done = max(effects_done, excluded.effects_done),"
            " handoffs_done = max(handoffs_done, excluded.handoffs_done)",
            (reactor, seq, seq if handoffs is None else handoffs),
        )

    async def mark_failed(self, reactor: str, seq: int, error: str) -> None:
        """Intent ``seq`` made ``reactor``'s handler raise ``error``; replay skips it too."""
        self._check_writable()
        await self._write(
            "INSERT OR REPLACE INTO failed (seq, reactor, error) VALUES (?, ?, ?)",
            (seq, reactor, error),
        )

    async def compact(self, *, max_bytes: int, audit_keep: int = DEFAULT_AUDIT_KEEP) -> int:
        """Bound the file to ``max_bytes`` where retention allows; returns the rows removed.

        Intents go oldest first, and only those at or below both their reactor's latest
        snapshot and its ``effects_done`` mark; the newest ``audit_keep`` audit records stay.
        Appends wait while compaction runs. The file may stay above ``max_bytes`` when
        nothing more may be deleted (a warning is logged).
        """
        self._check_writable()
        removed: int = await self._store.exclusive(compaction(max_bytes, audit_keep))
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
        writes = self._writes
        return JournalStats(
            appended=writes.appended,
            deduplicated=writes.deduplicated,
            audits=writes.audits,
            commits=writes.commits,
            batch_max=writes.batch_max,
            batch_mean=writes.batch_rows / writes.commits if writes.commits else 0.0,
            payload_bytes=self._payload_bytes,
            bytes=self.size_bytes(),
            last_seq=writes.committed_seq,
        )

    def report(self) -> Report:
        """The journal's counters (``stats``), over its store's report when it owns the store;
        a shared store reports on its own."""
        stats = self.stats()
        counters: dict[str, Number] = {
            name: getattr(stats, name) for name in JournalStats.__slots__
        }
        detail: dict[str, Any] = {"path": str(self.path), "schema_version": self._version}
        if self._owns_store:
            store = self._store.report()
            counters = {**{f"store_{k}": v for k, v in store.counters.items()}, **counters}
            return Report(store.state, counters, {**store.detail, **detail}, store.error)
        state = {
            JournalState.NEW: PartState.NEW,
            JournalState.OPEN: PartState.RUNNING,
        }.get(self._state, PartState.STOPPED)
        return Report(state, counters, detail)

    def size_bytes(self) -> int:
        """The database file and its write-ahead log, as they are on disk now."""
        return self._store.size_bytes()

    # ---- private

    async def _learn_file(self) -> None:
        """The highest seq and the kinds, from the file as it is at open."""
        high = await self._read(
            "SELECT coalesce((SELECT max(seq) FROM intents), 0),"
            " coalesce((SELECT max(seq) FROM snapshots), 0)",
            (),
            "read",
        )
        last_intent, last_snapshot = high[0]
        # A snapshot may be newer than every remaining intent once compaction has run:
        # new seqs must stay above it, or replay(after=snapshot) would skip them.
        self._writes.opened_at(int(max(last_intent, last_snapshot)))
        await self._reload_kinds()

    def _notify(self) -> None:
        event, self._committed = self._committed, asyncio.Event()
        event.set()

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        await self._store.submit(self._writes, _Write(sql, params))

    async def _reload_kinds(self) -> None:
        """Kinds another process added since we last looked (a read-only journal)."""
        self._writes.learn(await self._read(_SELECT_KINDS, (), "read kinds"))

    def _check_writable(self) -> None:
        if self.readonly:
            raise JournalError(f"{self.path}: journal opened read-only")
        if self._state is not JournalState.OPEN or not self._store.writable:
            raise self._closed_error()

    def _closed_error(self) -> JournalError:
        return JournalError(f"{self.path}: journal is {self._state.value}")

    async def _read(self, sql: str, params: Sequence[Any], doing: str) -> list[Any]:
        if self._state is JournalState.CLOSED:
            raise self._closed_error()
        return await self._store.read(sql, params, doing)

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
        kinds = self._writes.kinds
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


# ---- the journal's part of a batch (a Planner for the store's writer)

# (reactor, verb, name, principal, source): one row of ``kinds``.
_Kind = tuple[str, str, str, str, str]


class JournalWrites:
    """Plans the journal's jobs of a batch as steps on its tables, and keeps what the writer
    decides across batches: the next seq, the kinds table both ways, the counters.

    ``plan`` (on the writer's thread, inside the batch's transaction) only reads this state;
    the batch's ``on_commit`` (on the event loop, after COMMIT) applies it, so a failed batch
    changes nothing here. ``notify`` is called after a commit that added intents.
    """

    def __init__(self, notify: Callable[[], None] = lambda: None) -> None:
        self.next_seq = 1
        self.committed_seq = 0
        self.kind_ids: dict[_Kind, int] = {}
        self.kinds: dict[int, _Kind] = {}
        self.appended = 0
        self.deduplicated = 0
        self.audits = 0
        self.commits = 0
        self.batch_rows = 0
        self.batch_max = 0
        self._notify = notify

    def opened_at(self, last_seq: int) -> None:
        """The file's highest seq (of intents and snapshots) when it was opened."""
        self.committed_seq = last_seq
        self.next_seq = last_seq + 1

    def learn(self, rows: Any) -> None:
        """Rows of ``kinds`` (id, reactor, verb, name, principal, source)."""
        for ident, *parts in rows:
            kind: _Kind = tuple(str(part) for part in parts)  # type: ignore[assignment]
            self.kind_ids[kind] = int(ident)
            self.kinds[int(ident)] = kind

    def plan(self, jobs: Sequence[Any]) -> Program[Planned]:
        known = yield from self._known_keys(jobs)
        seq = self.next_seq
        kinds = self.kind_ids
        fresh: dict[_Kind, int] = {}  # kinds first seen in this batch: known once committed
        rows: list[tuple[Any, ...]] = []
        answers: list[Any] = []
        audits: list[tuple[Any, ...]] = []
        writes: list[_Write] = []
        duplicates = 0
        for job in jobs:
            if isinstance(job, _Append):
                seqs: list[int] = []
                for row in job.rows:
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
                answers.append(seqs)
            elif isinstance(job, _Audit):
                audits.append(job.row)
                answers.append(None)
            else:
                writes.append(job)
                answers.append(None)
        if fresh:
            yield ExecuteMany(INSERT_KIND, [(i, *k) for k, i in fresh.items()])
        if rows:
            yield ExecuteMany(INSERT_INTENT, rows)
        if audits:
            yield ExecuteMany(_INSERT_AUDIT, audits)
        for write in writes:
            yield Execute(write.sql, write.params)

        def committed() -> None:
            self.next_seq = seq
            for kind, ident in fresh.items():
                self.kind_ids[kind] = ident
                self.kinds[ident] = kind
            self.commits += 1
            self.appended += len(rows)
            self.audits += len(audits)
            self.deduplicated += duplicates
            written = len(rows) + len(audits)
            self.batch_rows += written
            self.batch_max = max(self.batch_max, written)
            if seq - 1 > self.committed_seq:
                self.committed_seq = seq - 1
                self._notify()

        return Planned(answers, committed)

    def _fresh(self, fresh: dict[_Kind, int], kind: _Kind) -> int:
        ident = len(self.kind_ids) + len(fresh) + 1  # ids are dense: 1, 2, 3 ...
        fresh[kind] = ident
        return ident

    def _known_keys(self, jobs: Sequence[Any]) -> Program[dict[str, int]]:
        keys = {
            row[4]
            for job in jobs
            if isinstance(job, _Append)
            for row in job.rows
            if row[4] is not None
        }
        known: dict[str, int] = {}
        for chunk in chunks(sorted(keys), _PARAMS_PER_QUERY):
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are formatted in; the keys travel as parameters.
            found = yield Query(
                f"SELECT idem, seq FROM intents WHERE idem IN ({marks})",  # noqa: S608
                chunk,
            )
            known.update({str(idem): int(seq) for idem, seq in found})
        return known


def compaction(max_bytes: int, audit_keep: int) -> Program[int]:
    """Delete what the journal no longer needs until its pages fit ``max_bytes`` (or nothing
    more may go), then give the freed pages back; returns the rows removed. Runs as the
    store's exclusive maintenance, each DELETE committing on its own."""
    removed = 0
    count: int = yield Execute(
        "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (audit_keep,),
    )
    removed += max(count, 0)
    # Failed marks of rows that replay will never reach again are dead weight.
    count = yield Execute(
        "DELETE FROM failed WHERE seq <= (SELECT min(s.seq, coalesce(m.effects_done, 0),"
        " coalesce(m.handoffs_done, 0))"
        " FROM snapshots s LEFT JOIN marks m ON m.reactor = s.reactor"
        " WHERE s.reactor = failed.reactor)"
    )
    removed += max(count, 0)
    while (yield from used_bytes()) > max_bytes:
        count = yield Execute(
            "DELETE FROM intents WHERE seq IN (SELECT i.seq FROM intents i"
            " JOIN snapshots s ON s.reactor = i.reactor"
            " LEFT JOIN marks m ON m.reactor = i.reactor"
            " WHERE i.seq <= min(s.seq, coalesce(m.effects_done, 0),"
            " coalesce(m.handoffs_done, 0))"
            " ORDER BY i.seq LIMIT ?)",
            (_COMPACT_CHUNK,),
        )
        deleted = max(count, 0)
        removed += deleted
        if deleted == 0:
            break
    yield from vacuum()
    return removed


# ---- the journal's jobs


class _Append:
    """Intent rows (at, kind, payload, trace_id, idem), before seqs are assigned."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows


class _Audit:
    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row


class _Write:
    """One statement (snapshot, timer, mark) committed with the batch it lands in."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        self.sql = sql
        self.params = params

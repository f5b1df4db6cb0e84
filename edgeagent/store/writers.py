"""The store's write connection: who carries a program's steps out, and on which thread.

Two interchangeable writers, both over public APIs only:

``ThreadWriter`` (the default)
    A thread of our own owns a plain ``sqlite3`` connection. A whole program (a batch's
    BEGIN, every user's lookups and inserts, and its COMMIT) runs on that thread in **one**
    trip: the event loop hands the program over, the thread runs it and answers through
    ``loop.call_soon_threadsafe``. A trip costs a thread switch and a wake-up of the loop,
    which under load also means waiting for the GIL, so a batch is one trip however many
    steps it has.

``AiosqliteWriter``
    aiosqlite's public API: one ``await`` (one trip to aiosqlite's thread) per step, so a batch
    costs three to six trips. Kept so ``bench/journal.py`` can measure the choice in every run
    (bench/README.md says which won and by how much).

Both open the connection with ``isolation_level=None``: SQLite's own autocommit, with the
transactions spelled out by the program (``BEGIN`` ... ``COMMIT``). A program that raises
leaves no transaction open: the writer rolls back before re-raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import aiosqlite

from edgeagent.store.plan import Execute, ExecuteMany, Program, Query, Script, Step

T = TypeVar("T")

WriterKind = Literal["thread", "aiosqlite"]


class Writer(Protocol):
    """The write connection as the store uses it."""

    async def open(self) -> None: ...

    async def run(self, program: Program[T]) -> T: ...

    async def close(self) -> None: ...


def make_writer(kind: WriterKind, path: Path, name: str) -> Writer:
    if kind == "thread":
        return ThreadWriter(path, name=name)
    if kind == "aiosqlite":
        return AiosqliteWriter(path)
    raise ValueError(f"unknown writer {kind!r}: thread or aiosqlite")


# ---- our own thread over sqlite3


def run_program(db: sqlite3.Connection, program: Program[T]) -> T:
    """Carry out ``program`` on ``db`` (on the calling thread); roll back if it raises."""
    try:
        step = next(program)
        while True:
            step = program.send(_execute(db, step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        program.close()
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
        raise


def _execute(db: sqlite3.Connection, step: Step) -> Any:
    kind = type(step)
    if kind is ExecuteMany:
        return db.executemany(step.sql, step.rows).rowcount  # type: ignore[union-attr]
    if kind is Execute:
        return db.execute(step.sql, step.params).rowcount  # type: ignore[union-attr]
    if kind is Query:
        return db.execute(step.sql, step.params).fetchall()  # type: ignore[union-attr]
    if kind is Script:
        db.executescript(step.sql)
        return None
    raise TypeError(f"not a step: {step!r}")


_Call = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]


class ThreadWriter:
    """A ``sqlite3`` connection owned by one thread of ours; see the module docstring."""

    def __init__(self, path: Path, *, name: str = "store") -> None:
        self.path = path
        self.name = name
        self.trips = 0
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: asyncio.Future[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        opened: asyncio.Future[None] = loop.create_future()
        self._ended = loop.create_future()
        # A daemon thread: a process that dies without closing the store must not hang on it.
        self._thread = threading.Thread(
            target=self._serve, args=(opened,), name=f"edgeagent[{self.name}].sqlite", daemon=True
        )
        self._thread.start()
        try:
            await opened
        except BaseException:
            await self._join()
            raise

    async def run(self, program: Program[T]) -> T:
        def call(db: sqlite3.Connection) -> T:
            return run_program(db, program)

        return await self.call(call)

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function(connection)`` on the writer's thread; its result or exception."""
        if self._thread is None or self._loop is None:
            raise ValueError("the writer is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self.trips += 1
        self._calls.put((function, future))
        return await future

    async def close(self) -> None:
        """Let the thread finish what it was given, close the connection, end the thread."""
        if self._thread is None:
            return
        self._calls.put(None)
        await self._join()

    async def _join(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        assert self._ended is not None
        # The thread's last act resolves _ended; join() then returns at once.
        await asyncio.shield(self._ended)
        thread.join()

    def _serve(self, opened: asyncio.Future[None]) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except BaseException as exc:
            self._answer(opened, None, exc)
            self._answer(self._ended, None, None)
            return
        self._answer(opened, None, None)
        try:
            while True:
                item = self._calls.get()
                if item is None:
                    return
                function, future = item
                try:
                    result = function(db)
                except BaseException as exc:
                    self._answer(future, None, exc)
                else:
                    self._answer(future, result, None)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            self._answer(self._ended, None, None)

    def _answer(
        self, future: asyncio.Future[Any] | None, result: Any, error: BaseException | None
    ) -> None:
        if future is None or self._loop is None:
            return
        # The loop may be gone when a process ends without closing: nothing waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the waiter was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# ---- aiosqlite, public API only


class AiosqliteWriter:
    """The write connection through aiosqlite's public API: one trip per step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.trips = 0
        self._connection: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._connection = await aiosqlite.connect(self.path, isolation_level=None)

    async def run(self, program: Program[T]) -> T:
        connection = self._connection
        if connection is None:
            raise ValueError("the writer is not open")
        return await run_program_async(connection, program, self._count)

    def _count(self) -> None:
        self.trips += 1

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await connection.close()


async def run_program_async(
    connection: aiosqlite.Connection,
    program: Program[T],
    on_step: Callable[[], None] | None = None,
) -> T:
    """Carry out ``program`` on an aiosqlite connection, one await per step; roll back if it
    raises. (The store's readers use it too, for programs of queries.)"""
    try:
        step = next(program)
        while True:
            if on_step is not None:
                on_step()
            step = program.send(await _execute_async(connection, step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        program.close()
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await connection.rollback()
        raise


async def _execute_async(connection: aiosqlite.Connection, step: Step) -> Any:
    if isinstance(step, Query):
        return list(await connection.execute_fetchall(step.sql, step.params))
    if isinstance(step, Script):
        await connection.executescript(step.sql)
        return None
    if isinstance(step, ExecuteMany):
        cursor = await connection.executemany(step.sql, step.rows)
    else:
        cursor = await connection.execute(step.sql, step.params)
    # Not closed: closing is one more trip, and the cursor is released with its last reference.
    return cursor.rowcount

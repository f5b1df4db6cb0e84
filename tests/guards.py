"""The guards every test runs under: no task of the test's event loop and no child process of
the test runner may outlive the test. A test that leaks fails, naming what it left, and what
it left is cancelled or killed (by PID) so the next test starts clean."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest

LEAK_GRACE_TURNS = 20  # loop turns a cancelled task gets to finish before it counts as left


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every coroutine test gets the task guard (it runs inside the test's event loop)."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.append("no_leaked_tasks")  # type: ignore[attr-defined]


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fails a test that returns with tasks of its loop still pending (and cancels them)."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    left: set[asyncio.Task[object]] = set()
    for _ in range(LEAK_GRACE_TURNS):
        left = {t for t in asyncio.all_tasks() if t is not current and t not in before}
        if not left:
            return
        await asyncio.sleep(0)
    names = sorted(task.get_name() for task in left)
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    pytest.fail(f"the test left {len(left)} task(s) running: {', '.join(names)}")


def _children(pid: int) -> set[int]:
    """PIDs of the live (not zombie) child processes of ``pid``, read from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fails a test that leaves a child process of its own running (and kills it, by PID)."""
    before = _children(os.getpid())
    yield
    deadline = time.monotonic() + 2.0
    left = _children(os.getpid()) - before
    while left and time.monotonic() < deadline:
        time.sleep(0.05)  # a process signalled at teardown may still be exiting
        left = _children(os.getpid()) - before
    if not left:
        return
    described = []
    for pid in sorted(left):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode().strip()
            described.append(f"{pid} ({command})")
        except OSError:
            described.append(str(pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the test left {len(left)} child process(es) running: {'; '.join(described)}")

"""The guards fail the tests they exist for: a test that leaves a task, or a child process,
running. Each case runs a small test file in a pytest of its own (pytester) with our guards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFTEST = (
    "from tests.guards import no_leaked_processes, no_leaked_tasks, pytest_collection_modifyitems\n"
)


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str
) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(source)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    env_path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    pytester._monkeypatch.setenv("PYTHONPATH", env_path)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")


def test_a_leaked_task_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(
        pytester,
        monkeypatch,
        """
import asyncio

async def test_leaks():
    asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten")

async def test_clean():
    task = asyncio.get_running_loop().create_task(asyncio.sleep(30))
    task.cancel()
""",
    )
    # The leaking test passes, then errors in teardown; the clean one passes.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the test left 1 task(s) running: forgotten*"])


def test_a_leaked_child_process_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(
        pytester,
        monkeypatch,
        f"""
import subprocess

def test_leaks():
    subprocess.Popen([{sys.executable!r}, "-c", "import time; time.sleep(30)"])

def test_clean():
    child = subprocess.Popen([{sys.executable!r}, "-c", "pass"])
    child.wait()
""",
    )
    # The leaking test passes, then errors in teardown; the clean one passes.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the test left 1 child process(es) running: *time.sleep(30)*"])

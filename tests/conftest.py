"""Shared fixtures: the namespace lab, and the guards that nothing is left running
(``tests/guards.py``: every test gets them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.guards import no_leaked_processes, no_leaked_tasks, pytest_collection_modifyitems
from tests.netlab import Lab

__all__ = ["no_leaked_processes", "no_leaked_tasks", "pytest_collection_modifyitems"]

IN_CI = os.environ.get("CI") == "true"


def _lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2 is not installed"
    return None


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = _lab_unavailable_reason()
    if reason is not None:
        if IN_CI:
            # In CI a missing prerequisite is a failure, never a silent skip.
            pytest.fail(reason)
        pytest.skip(reason)
    built = Lab()
    try:
        yield built
    finally:
        built.close()

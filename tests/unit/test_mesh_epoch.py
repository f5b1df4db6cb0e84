"""The mesh epoch counter: grows across restarts, survives corruption, never repeats."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edgeagent.mesh.epoch import EPOCH_FILE, MAX_EPOCH, clock_seeded_epoch, next_epoch


def test_epoch_grows_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert [next_epoch(state) for _ in range(3)] == [1, 2, 3]
    assert (state / EPOCH_FILE).read_text() == "3\n"
    assert not list(state.glob(".*tmp"))


def test_corrupt_file_is_kept_aside_and_the_epoch_starts_above_it(tmp_path: Path) -> None:
    (tmp_path / EPOCH_FILE).write_bytes(b"41\x00\x00garbage")
    epoch = next_epoch(tmp_path)
    assert epoch > 41
    assert epoch >> 20 >= int(time.time()) - 60  # clock-seeded
    kept = list(tmp_path.glob(f"{EPOCH_FILE}.corrupt-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == b"41\x00\x00garbage"
    assert next_epoch(tmp_path) == epoch + 1


def test_salvaged_value_wins_over_a_clock_that_went_backwards(tmp_path: Path) -> None:
    huge = MAX_EPOCH - 10
    (tmp_path / EPOCH_FILE).write_text(f"{huge}x")
    assert next_epoch(tmp_path) == huge + 1


@pytest.mark.parametrize("content", [b"", b"-5\n", b"1.5", str(1 << 64).encode(), b"\xff\xfe"])
def test_unusable_values_are_treated_as_corrupt(tmp_path: Path, content: bytes) -> None:
    (tmp_path / EPOCH_FILE).write_bytes(content)
    assert next_epoch(tmp_path) >= 1 << 20
    assert len(list(tmp_path.glob(f"{EPOCH_FILE}.corrupt-*"))) == 1


def test_clock_seeded_epochs_are_above_any_counted_value_and_differ() -> None:
    epochs = {clock_seeded_epoch() for _ in range(50)}
    assert len(epochs) > 1
    assert min(epochs) > 1 << 40


def test_unwritable_state_dir_still_yields_a_fresh_epoch(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / EPOCH_FILE).write_text("5\n")
    # A directory where the temporary file must go makes the write fail even for root
    # (which ignores permission bits, so chmod cannot simulate a read-only card here).
    (state / f".{EPOCH_FILE}.{os.getpid()}.tmp").mkdir()
    epoch = next_epoch(state)
    assert epoch > 5
    assert (state / EPOCH_FILE).read_text() == "5\n"


def test_state_dir_that_is_a_file_still_yields_a_fresh_epoch(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    first, second = next_epoch(tmp_path / "state"), next_epoch(tmp_path / "state")
    assert first >= 1 << 40
    assert second != first

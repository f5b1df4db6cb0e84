"""Runtime state on disk: a missing file, atomic save and load, a corrupt file kept aside."""

from __future__ import annotations

from pathlib import Path

from edgeagent.state import RuntimeState, StateStore


def test_missing_file_is_empty_state(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state").load()
    assert state.overrides == {}
    assert state.renames == {}


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    state = RuntimeState().with_service({"id": "web", "port": 80, "type": "_http._tcp"})
    state = state.with_rename("host:edge-1", "edge-1-2")
    store.save(state)
    loaded = store.load()
    assert loaded.overrides == state.overrides
    assert loaded.renames == {"host:edge-1": "edge-1-2"}
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_corrupt_file_is_kept_aside_not_lost(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text("{half a file")
    assert store.load() == RuntimeState()
    kept = list(tmp_path.glob("runtime.json.corrupt-*"))
    assert len(kept) == 1
    assert kept[0].read_text() == "{half a file"

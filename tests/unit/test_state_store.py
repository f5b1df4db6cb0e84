"""Runtime state: service overrides by id, renames, atomic and corruption-safe storage."""

from __future__ import annotations

from pathlib import Path

from edgeagent.state import RuntimeState, StateStore


def test_missing_file_is_empty_state(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state").load()
    assert state.overrides == {}
    assert state.renames == {}


def test_services_add_replace_and_remove_by_id(tmp_path: Path) -> None:
    state = RuntimeState()
    state = state.with_service({"id": "web", "type": "_http._tcp", "port": 80})
    state = state.with_service({"id": "web", "type": "_http._tcp", "port": 8080})
    state = state.with_service({"id": "ftp", "type": "_ftp._tcp", "port": 21})
    assert [(s["id"], s.get("port")) for s in state.services_override()] == [
        ("web", 8080),
        ("ftp", 21),
    ]
    state = state.without_service("web")
    assert state.services_override() == [
        {"id": "ftp", "type": "_ftp._tcp", "port": 21},
        {"id": "web", "remove": True},
    ]
    # Adding it back drops the tombstone.
    state = state.with_service({"id": "web", "type": "_http._tcp", "port": 81})
    assert [s["id"] for s in state.services_override()] == ["ftp", "web"]
    assert state.services_override()[1]["port"] == 81


def test_updates_do_not_mutate_the_original() -> None:
    original = RuntimeState().with_service({"id": "a", "type": "_a._tcp", "port": 1})
    original.with_service({"id": "b", "type": "_b._tcp", "port": 2}).with_rename("host:x", "x-2")
    assert [s["id"] for s in original.services_override()] == ["a"]
    assert original.renames == {}


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

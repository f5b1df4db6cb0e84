"""Runtime state: service overrides by id and renames, as values (no files)."""

from __future__ import annotations

from edgeagent.state import RuntimeState


def test_services_add_replace_and_remove_by_id() -> None:
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

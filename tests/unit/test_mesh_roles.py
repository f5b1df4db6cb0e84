"""Singleton roles by rendezvous hashing: deterministic, minimal movement, order-free."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given
from hypothesis import strategies as st

from edgeagent.mesh.roles import role_holder, role_ranking, role_table, role_weight

IDS = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=12, unique=True)
ROLES = st.text(min_size=1, max_size=16)


def test_the_weight_is_sha256_of_role_nul_id() -> None:
    assert role_weight("mqtt-gateway", "dev1") == hashlib.sha256(b"mqtt-gateway\0dev1").digest()


def test_no_candidates_no_holder() -> None:
    assert role_holder("mqtt-gateway", []) is None
    assert role_ranking("mqtt-gateway", []) == []


def test_a_known_answer() -> None:
    # Pinned so that every version of the agent agrees on the holder (a mixed fleet).
    ids = ["a", "b", "c"]
    expected = max(ids, key=lambda d: hashlib.sha256(f"r\0{d}".encode()).digest())
    assert role_holder("r", ids) == expected


@given(ROLES, IDS)
def test_the_holder_is_one_of_the_candidates(role: str, ids: list[str]) -> None:
    assert role_holder(role, ids) in ids


@given(ROLES, IDS, st.randoms(use_true_random=False))
def test_any_order_gives_the_same_holder(role: str, ids: list[str], rng: random.Random) -> None:
    shuffled = list(ids)
    rng.shuffle(shuffled)
    assert role_holder(role, shuffled) == role_holder(role, ids)
    assert role_holder(role, ids + ids) == role_holder(role, ids)  # duplicates change nothing
    assert role_ranking(role, shuffled) == role_ranking(role, ids)


@given(ROLES, IDS, st.data())
def test_removing_a_non_holder_never_moves_the_role(
    role: str, ids: list[str], data: st.DataObject
) -> None:
    holder = role_holder(role, ids)
    others = [d for d in ids if d != holder]
    if not others:
        return
    gone = data.draw(st.sampled_from(others))
    assert role_holder(role, [d for d in ids if d != gone]) == holder


@given(ROLES, IDS)
def test_removing_the_holder_moves_it_to_the_next_highest_weight(role: str, ids: list[str]) -> None:
    ranking = role_ranking(role, ids)
    assert ranking[0] == role_holder(role, ids)
    remaining = [d for d in ids if d != ranking[0]]
    assert role_holder(role, remaining) == (ranking[1] if len(ranking) > 1 else None)


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.lists(ROLES, max_size=3), max_size=8))
def test_the_role_table_gives_each_role_an_eligible_holder(
    members: dict[str, list[str]],
) -> None:
    roles = sorted({r for rs in members.values() for r in rs} | {"nobody-wants-this"})
    table = role_table(roles, members)
    assert set(table) == set(roles)
    assert table["nobody-wants-this"] is None or "nobody-wants-this" in {
        r for rs in members.values() for r in rs
    }
    for role, holder in table.items():
        eligible = [d for d, rs in members.items() if role in rs]
        assert holder == role_holder(role, eligible)
        if eligible:
            assert holder in eligible
        else:
            assert holder is None

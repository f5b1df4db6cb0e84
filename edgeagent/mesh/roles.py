"""Singleton roles: which member holds a role, by rendezvous hashing (pure, no I/O).

Theory of operation
-------------------
Rendezvous (highest-random-weight) hashing: every candidate device gets a weight for the role,
``sha256(role + "\\0" + device_id)`` read as a big-endian number, and the highest weight holds
the role. Every member computes the same answer from the same set of alive eligible members,
with no election messages and whatever order it learned them in. Removing a member that does
not hold the role never moves it; removing the holder moves it to the next-highest weight, so
exactly one other member takes over and nothing else reshuffles. Ties cannot happen between
distinct ids in practice (a SHA-256 collision); the id breaks them anyway so the answer is
always a total order.

The caller (``mesh/service.py``) passes only *alive* members that are eligible for the role
(their ``roles`` config); within one connected partition they all see the same set once
gossip converges, and so the same holder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def role_holder(role: str, candidates: Iterable[str]) -> str | None:
    """The device id among ``candidates`` that holds ``role``, or None when there are none."""
    best: tuple[bytes, str] | None = None
    for device_id in candidates:
        key = (role_weight(role, device_id), device_id)
        if best is None or key > best:
            best = key
    return best[1] if best is not None else None


def role_ranking(role: str, candidates: Iterable[str]) -> list[str]:
    """Distinct ``candidates`` from the holder down: who takes over when those above are gone."""
    unique = set(candidates)
    return sorted(unique, key=lambda d: (role_weight(role, d), d), reverse=True)


def role_table(roles: Iterable[str], members: Mapping[str, Iterable[str]]) -> dict[str, str | None]:
    """Holder of each role among ``members`` (device id -> roles it is eligible for).

    Every role asked for is a key; a role no member is eligible for maps to None.
    """
    eligible: dict[str, list[str]] = {}
    for device_id, member_roles in members.items():
        for role in member_roles:
            eligible.setdefault(role, []).append(device_id)
    return {role: role_holder(role, eligible.get(role, ())) for role in roles}


def role_weight(role: str, device_id: str) -> bytes:
    """The rendezvous weight of ``device_id`` for ``role``; compare as bytes (big-endian)."""
    return hashlib.sha256(f"{role}\0{device_id}".encode()).digest()

"""The registry of top-level config sections: the one list a new section is added to.

:data:`DOCUMENT_ORDER` is every section in the order ``edgeagent check`` writes them.
:data:`SECTIONS` is the same sections by key in build order: document order, except that a
section comes after the sections it ``needs`` (``principals`` checks ``reactor:<id>`` names,
so it is built after ``reactors`` although it is written before them). ``Config``'s fields
are in build order, one per section, named by the section's key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgeagent.config.sections import (
    Section,
    capabilities,
    device,
    dns_bridge,
    journal,
    log_level,
    mdns,
    mesh,
    principals,
    reactors,
    sensors,
)

DOCUMENT_ORDER: tuple[Section[Any], ...] = (
    device.SECTION,
    mdns.SECTION,
    dns_bridge.SECTION,
    log_level.SECTION,
    mesh.SECTION,
    capabilities.SECTION,
    principals.SECTION,
    reactors.SECTION,
    journal.SECTION,
    sensors.SECTION,
)


def build_order(sections: Iterable[Section[Any]]) -> dict[str, Section[Any]]:
    """Key -> section in the order given, each moved after the sections it ``needs``.

    Raises ValueError for a need that is not among ``sections`` or a cycle of needs.
    """
    pending = list(sections)
    ordered: dict[str, Section[Any]] = {}
    while pending:
        ready = next((s for s in pending if all(need in ordered for need in s.needs)), None)
        if ready is None:
            waiting = {s.key: s.needs for s in pending}
            raise ValueError(
                f"config sections wait for unknown or each other's sections: {waiting}"
            )
        ordered[ready.key] = ready
        pending.remove(ready)
    return ordered


#: Top-level key -> section, in build order (later builders read the values of earlier ones).
SECTIONS: Mapping[str, Section[Any]] = build_order(DOCUMENT_ORDER)

#: Paths of lists whose items are mappings merged by their ``id`` (see ``schema``).
ID_MERGED_LISTS: frozenset[tuple[str, ...]] = frozenset(
    path for section in DOCUMENT_ORDER for path in section.id_merged_lists
)

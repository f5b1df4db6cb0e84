"""What a top-level config section is, and what section builders share.

A section module (``sections/mdns.py``, ``sections/mesh.py``, ...) owns one top-level key:
its typed model (frozen dataclasses, re-exported by ``config.model``), its defaults (the
model's field defaults, read with ``default_of``), its builder (the merged node tree of its
key -> the model, every problem reported to ``ctx.issues`` with file, line and key path) and
its renderer (the model -> plain data in the shape of the YAML contract, for
``edgeagent check``). The module ends with one ``SECTION = Section(...)``, and
``config.registry`` lists it. docs/configuration.md, "Adding a section", has the steps.

A builder runs once per load, after the sections its ``needs`` names, and reads their values
with ``ctx.value(other.SECTION)``; it gets ``None`` when no layer wrote its key and must then
return the section's default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from edgeagent.config.located import FieldReader, Issues, Node, join_path
from edgeagent.config.scalars import parse_bool

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Section(Generic[T]):
    """One top-level key of the config: how to build its value and how to write it back.

    ``key`` is also the name of the ``Config`` field that holds the value. ``needs``: keys of
    the sections this builder reads (they are built first). ``id_merged_lists``: paths from
    the top of the document of the lists in this section whose items merge by ``id`` across
    layers (``("mdns", "services")``).
    """

    key: str
    build: Callable[[Node | None, str, BuildContext], T]
    render: Callable[[T], Any]
    needs: tuple[str, ...] = ()
    id_merged_lists: tuple[tuple[str, ...], ...] = ()


@dataclass(slots=True)
class BuildContext:
    """What section builders share: the issues, the sections built so far, system facts.

    Each fact is a callable that the one section needing it calls only when it needs it
    (no ``device.hostname`` given; a recursive bridge without upstreams; a discovery strategy
    that is not built in), so a load reads no system state it does not use.
    """

    issues: Issues
    default_hostname: Callable[[], str]
    system_nameservers: Callable[[], Sequence[str]]
    built: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Names of the installed ``edgeagent.discovery`` entry points; None: the mesh section
    # reads the package metadata.
    discovery_plugins: Callable[[], Sequence[str]] | None = None
    # The section being built (set by ``build_config``): it may read only what it needs.
    building: Section[Any] | None = None

    def value(self, section: Section[T]) -> T:
        """The value of ``section``, which the section being built names in its ``needs``."""
        if self.building is not None and section.key not in self.building.needs:
            raise KeyError(
                f"config section {self.building.key!r} reads {section.key!r}: add it to its needs"
            )
        if section.key not in self.built:
            raise KeyError(f"config section {section.key!r} is read before it is built")
        return cast(T, self.built[section.key])


def removal_item(item: Node, reader: FieldReader, path: str, issues: Issues) -> bool:
    """True for an overlay's ``{id: X, remove: true}`` item (checked: it carries nothing else)."""
    if not reader.get("remove", parse_bool, False) or not isinstance(item.value, dict):
        return False
    for key, child in item.value.items():
        if key not in ("id", "remove"):
            issues.add(
                child.key_where or child.where,
                join_path(path, key),
                "a removal item carries only 'id' and 'remove'",
            )
    if reader.node("id") is None:
        issues.add(item.where, path, "a removal item needs the 'id' to remove")
    return True

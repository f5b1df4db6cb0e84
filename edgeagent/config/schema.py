"""The configuration schema: merging located layers and validating the result into ``Config``.

Theory of operation
-------------------
The loader turns every layer (a YAML file, or the runtime overrides dict) into a tree of
located values (``located.Node``: each value knows its file and line, so every problem found
later can name its origin even after layers were merged). This module does no I/O: it merges
trees (:func:`merge`) and validates the merged tree into the frozen ``Config``
(:func:`build_config`), collecting every issue before raising one ``ConfigError``.

Validation is table-driven. ``registry.SECTIONS`` lists the top-level sections in build
order; each section module (``sections/``) owns its key, typed model, defaults, builder and
renderer. A builder reads its mapping through ``located.FieldReader``, which reports unknown
keys (with a did-you-mean) for every key the builder did not ask for; unknown top-level keys
are reported here the same way. Adding a section (``mqtt:``, ``sensors:``) is: a module in
``sections/``, one line in ``registry.DOCUMENT_ORDER`` and a field on ``Config``
(docs/configuration.md, "Adding a section").

Merge rule (lowest layer first: built-in defaults <- base file <- device overlay <- runtime
overrides): mappings deep-merge; scalars and lists replace; an empty value (``key:``/``~``)
counts as "not set" and never overrides; lists named in ``registry.ID_MERGED_LISTS`` (each
section declares its own) merge by the ``id`` of their items: an item replaces the lower item
with the same id (in its place), new ids are appended, and ``{id: X, remove: true}`` deletes
X. Removal items stay in the merged tree (so merging is associative) and are skipped by the
validator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from edgeagent.config.located import (
    FieldReader,
    Issues,
    Node,
    Where,
    did_you_mean,
    from_plain,
    is_removal,
    item_path,
    to_plain,
)
from edgeagent.config.model import Config
from edgeagent.config.registry import ID_MERGED_LISTS, SECTIONS
from edgeagent.config.scalars import size_bytes
from edgeagent.config.sections import BuildContext
from edgeagent.net.address import format_upstream

# The validator's entry points, and names that code outside the package (mostly tests)
# imports from here.
__all__ = [
    "SECTIONS",
    "Issues",
    "Where",
    "build_config",
    "check_layer",
    "format_upstream",
    "from_plain",
    "merge",
    "size_bytes",
    "to_plain",
]


def build_config(
    root: Node | None,
    *,
    default_hostname: Callable[[], str],
    system_nameservers: Callable[[], Sequence[str]] = tuple,
    issues: Issues | None = None,
) -> Config:
    """Validate a merged tree into ``Config``; raise ``ConfigError`` listing every issue.

    ``default_hostname`` is called only when ``device.hostname`` is not set;
    ``system_nameservers`` only when the bridge is recursive without explicit upstreams.
    ``issues`` may already hold problems found while reading the layers: they are raised
    together with the validation issues, sorted by file and line.
    """
    ctx = BuildContext(
        issues if issues is not None else Issues(), default_hostname, system_nameservers
    )
    reader = FieldReader(root, "", ctx.issues)
    for key, section in SECTIONS.items():
        ctx.building = section
        ctx.built[key] = section.build(reader.node(key), key, ctx)
    ctx.building = None
    reader.finish()
    ctx.issues.raise_if_any()
    return Config(**ctx.built)


def merge(base: Node | None, overlay: Node | None, path: tuple[str, ...] = ()) -> Node | None:
    """``overlay`` layered on ``base`` by the merge rule of the module docstring."""
    if overlay is None or overlay.value is None:
        return base
    if base is None or base.value is None:
        return overlay
    if isinstance(base.value, dict) and isinstance(overlay.value, dict):
        entries = dict(base.value)
        for key, child in overlay.value.items():
            merged = merge(entries.get(key), child, (*path, key))
            if merged is not None:
                entries[key] = dataclasses.replace(merged, key_where=child.key_where)
        return Node(entries, overlay.where, overlay.key_where)
    if (
        path in ID_MERGED_LISTS
        and isinstance(base.value, tuple)
        and isinstance(overlay.value, tuple)
    ):
        items: dict[object, Node] = {_merge_key(item): item for item in base.value}
        for item in overlay.value:
            items[_merge_key(item)] = item  # dict keeps the position of a replaced key
        return Node(tuple(items.values()), overlay.where, overlay.key_where)
    return overlay


def check_layer(
    below: Node | None, layer: Node | None, issues: Issues, *, removals_must_match: bool = True
) -> None:
    """Checks on one layer before it is merged onto the layers ``below``.

    Within a layer, ids of an id-merged list must be unique (merging would silently keep the
    last). With ``removals_must_match``, a tombstone must delete something below: a typo in
    a removal id would otherwise silently keep the item.
    """
    for list_path in sorted(ID_MERGED_LISTS):
        layer_items = _at(layer, list_path)
        if layer_items is None or not isinstance(layer_items.value, tuple):
            continue
        dotted = ".".join(list_path)
        first_seen: dict[str, Where] = {}
        for index, item in enumerate(layer_items.value):
            ident = _ident(item)
            if ident is None:
                continue
            if ident in first_seen:
                issues.add(
                    item.where,
                    item_path(dotted, index, item),
                    f"duplicate id '{ident}' (first at {first_seen[ident]})",
                )
            else:
                first_seen[ident] = item.where
        if not removals_must_match:
            continue
        existing = _at(below, list_path)
        live_ids = [
            ident
            for item in (existing.value if existing and isinstance(existing.value, tuple) else ())
            if not is_removal(item) and (ident := _ident(item)) is not None
        ]
        for index, item in enumerate(layer_items.value):
            ident = _ident(item)
            if is_removal(item) and ident is not None and ident not in live_ids:
                issues.add(
                    item.where,
                    item_path(dotted, index, item),
                    f"remove: no item with id '{ident}' in the layers below"
                    + did_you_mean(ident, live_ids),
                )


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
def _at(node: Node | None, path: tuple[str, ...]) -> Node | None:
    for key in path:
        if node is None:
            return None
        node = node.child(key)
    return node


def _ident(item: Node) -> str | None:
    ident = item.child("id")
    return ident.value if ident is not None and isinstance(ident.value, str) else None


def _merge_key(item: Node) -> object:
    ident = _ident(item)
    return ("id", ident) if ident is not None else ("node", id(item))

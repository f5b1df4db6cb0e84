"""Located values: config trees whose every value knows the file and line it came from.

The loader turns every layer (a YAML file, or the runtime overrides dict) into a tree of
:class:`Node` values. A node remembers *where* it was written, so every problem found later
can name its origin even after layers were merged. :class:`Issues` collects those problems as
``FILE:LINE: key.path: message`` lines and raises them together as one ``ConfigError``.

Section validators read a mapping through :class:`FieldReader`, which reports every key
nobody asked for (with a did-you-mean), and parse each value with a :data:`Parser` (the
scalar ones are in ``scalars``). This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeagent.errors import ConfigError

T = TypeVar("T")

Scalar = None | bool | int | float | str


@dataclass(frozen=True, slots=True)
class Where:
    """The origin of a value: a file (or a named source such as "runtime overrides") and line."""

    source: str
    line: int | None = None  # 1-based; None for sources without lines

    def __str__(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One value of a config layer and where it was written.

    ``value`` is a scalar, a tuple of nodes (a YAML sequence) or a dict of nodes (a mapping;
    not mutated after construction). ``key_where`` is where the key of a mapping value is
    written; ``secret`` marks values that came from ``!secret``.
    """

    value: Scalar | tuple[Node, ...] | dict[str, Node]
    where: Where
    key_where: Where | None = None
    secret: bool = False

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, tuple)

    def child(self, key: str) -> Node | None:
        return self.value.get(key) if isinstance(self.value, dict) else None


class Issues:
    """Collects problems; reports them as ``FILE:LINE: key.path: message`` lines.

    Lines come out sorted by source (in the order sources first appear) and line number, so
    a user reads them top to bottom whatever order the validator found them in.
    """

    def __init__(self) -> None:
        self._found: list[tuple[Where | None, str]] = []

    @property
    def items(self) -> list[str]:
        order: dict[str | None, int] = {}
        for where, _ in self._found:
            order.setdefault(where.source if where else None, len(order))

        def key(entry: tuple[Where | None, str]) -> tuple[int, int]:
            where = entry[0]
            return (order[where.source if where else None], (where.line or 0) if where else 0)

        return [text for _, text in sorted(self._found, key=key)]

    def add(self, where: Where | None, path: str, message: str) -> None:
        location = f"{where}: " if where is not None else ""
        self._found.append((where, f"{location}{path or '(top level)'}: {message}"))

    def extend(self, other: Iterable[str]) -> None:
        """Add already formatted lines (from another ``ConfigError``), kept after the others."""
        self._found.extend((None, text) for text in other)

    def raise_if_any(self) -> None:
        if self._found:
            raise ConfigError(self.items)

    def __len__(self) -> int:
        return len(self._found)

    def __bool__(self) -> bool:
        return bool(self._found)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def item_path(path: str, index: int, item: Node) -> str:
    """``services[ssh]`` for an item with a string ``id``, else ``hosts[2]``."""
    ident = item.child("id")
    if ident is not None and isinstance(ident.value, str) and ident.value:
        return f"{path}[{ident.value}]"
    return f"{path}[{index}]"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def describe(node: Node) -> str:
    """How a value reads in an error message: ``'abc'``, ``true``, ``a list``."""
    value = node.value
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, tuple):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if not node.secret else "a secret"
    return str(value)


def from_plain(value: Any, where: Where, issues: Issues, path: str = "") -> Node:
    """A node tree for an already-parsed value (the runtime overrides dict)."""
    if isinstance(value, Mapping):
        entries: dict[str, Node] = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                issues.add(where, path, f"keys must be strings, got {key!r}")
                continue
            child = from_plain(sub, where, issues, join_path(path, key))
            entries[key] = dataclasses.replace(child, key_where=where)
        return Node(entries, where)
    if isinstance(value, list | tuple):
        return Node(
            tuple(from_plain(v, where, issues, f"{path}[{i}]") for i, v in enumerate(value)), where
        )
    if value is None or isinstance(value, bool | int | float | str):
        return Node(value, where)
    issues.add(where, path, f"unsupported value {value!r}")
    return Node(None, where)


def to_plain(node: Node | None) -> Any:
    """The plain (JSON-able) value of a node tree."""
    if node is None:
        return None
    if isinstance(node.value, dict):
        return {key: to_plain(child) for key, child in node.value.items()}
    if isinstance(node.value, tuple):
        return [to_plain(child) for child in node.value]
    return node.value


def secret_paths(node: Node | None, path: str = "") -> frozenset[str]:
    """Key paths (as in error messages) of every value that came from ``!secret``."""
    if node is None:
        return frozenset()
    if node.secret:
        return frozenset({path})
    found: set[str] = set()
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            found |= secret_paths(child, join_path(path, key))
    elif isinstance(node.value, tuple):
        for index, child in enumerate(node.value):
            found |= secret_paths(child, item_path(path, index, child))
    return frozenset(found)


def is_removal(item: Node) -> bool:
    """Whether a list item is a ``{id: X, remove: true}`` tombstone."""
    flag = item.child("remove")
    return flag is not None and flag.value is True


# --------------------------------------------------------------------------------------------
# Reading mappings
# --------------------------------------------------------------------------------------------
Parser = Callable[[Node, str, Issues], T | None]
"""Parses one value: returns it, or reports an issue and returns None (the default is used)."""


class FieldReader:
    """Reads the fields of one mapping; :meth:`finish` reports every key nobody asked for."""

    def __init__(self, node: Node | None, path: str, issues: Issues) -> None:
        self.path = path
        self.issues = issues
        self._asked: list[str] = []
        self._entries: dict[str, Node] = {}
        if node is not None and node.value is not None:
            if isinstance(node.value, dict):
                self._entries = node.value
            else:
                issues.add(node.where, path, f"expected a mapping, got {describe(node)}")

    def node(self, key: str) -> Node | None:
        """The raw node of ``key``, or None when absent or empty."""
        self._asked.append(key)
        child = self._entries.get(key)
        return None if child is None or child.value is None else child

    def get(self, key: str, parse: Parser[T], default: T) -> T:
        child = self.node(key)
        if child is None:
            return default
        parsed = parse(child, join_path(self.path, key), self.issues)
        return default if parsed is None else parsed

    def finish(self) -> None:
        for key, child in self._entries.items():
            if key not in self._asked:
                self.issues.add(
                    child.key_where or child.where,
                    join_path(self.path, key),
                    "unknown key" + did_you_mean(key, self._asked),
                )


def default_of(cls: type[Any], name: str) -> Any:
    """The dataclass default of ``cls.name``: the section's model is the one source of defaults."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")

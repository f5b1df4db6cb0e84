"""The reactor type registry: which ``ReactorType`` a configured ``type:`` name means.

Pure apart from reading installed packages' entry point metadata (and importing the module
an entry point names, when one is asked for).

Theory of operation
-------------------
``builtin_types`` gives the built-in types by name; ``find_type`` also looks in the entry
point group ``edgeagent.reactors``, where a third-party package names either a ``ReactorType``
object or a zero-argument factory (a class, a function) that returns one. The entry point's
name must equal the type's ``name``. Built-in names win: a third-party type cannot replace one.

Layers: this module sits above ``model`` (the protocol and the effects) and ``builtin`` (the
types, which import ``model``), so neither of those needs to import the other's user; the
runtime and the wiring graph ask this module, never ``model``, for a type by name.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any, cast

from edgeagent.errors import EdgeAgentError
from edgeagent.reactors import builtin
from edgeagent.reactors.model import ReactorType
from edgeagent.reactors.schema import Schema, did_you_mean

ENTRY_POINT_GROUP = "edgeagent.reactors"


class ReactorTypeError(EdgeAgentError):
    """A reactor type is unknown, or the entry point that should provide it is broken."""


def builtin_types() -> dict[str, ReactorType]:
    """The built-in reactor types by name (a new dict each call)."""
    return {rtype.name: rtype for rtype in builtin.TYPES}


def known_type_names() -> list[str]:
    """Built-in and installed third-party type names, sorted; entry points are not loaded."""
    names = set(builtin_types())
    names.update(ep.name for ep in _entry_points())
    return sorted(names)


def find_type(name: str) -> ReactorType:
    """The reactor type called ``name``: built in, or from an ``edgeagent.reactors`` entry point.

    Raises ``ReactorTypeError`` for an unknown name (listing the known ones, with a
    did-you-mean), for two installed packages that both provide ``name``, and for an entry
    point that fails to load or does not give a reactor type (naming it and the cause).
    """
    builtins = builtin_types()
    if name in builtins:
        return builtins[name]
    points = list(_entry_points())
    matches = [ep for ep in points if ep.name == name]
    if not matches:
        known = sorted(set(builtins) | {ep.name for ep in points})
        raise ReactorTypeError(
            f"unknown reactor type {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}"
        )
    if len(matches) > 1:
        where = " and ".join(_describe_entry_point(ep) for ep in matches)
        raise ReactorTypeError(f"reactor type {name!r} is provided twice: {where}")
    return load_entry_point(matches[0])


def load_entry_point(ep: importlib.metadata.EntryPoint) -> ReactorType:
    """The ``ReactorType`` an entry point names (an object, or a factory called once)."""
    where = _describe_entry_point(ep)
    try:
        loaded = ep.load()
    except Exception as exc:
        raise ReactorTypeError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
    if isinstance(loaded, type) or (callable(loaded) and _problems(loaded)):
        try:
            loaded = loaded()
        except Exception as exc:
            raise ReactorTypeError(
                f"{where}: calling the factory failed: {type(exc).__name__}: {exc}"
            ) from exc
    problems = _problems(loaded)
    if problems:
        raise ReactorTypeError(f"{where} gives no reactor type: {'; '.join(problems)}")
    rtype = cast(ReactorType, loaded)
    if rtype.name != ep.name:
        raise ReactorTypeError(f"{where} gives a reactor type named {rtype.name!r}")
    return rtype


# -- private helpers -----------------------------------------------------------------------------


def _entry_points() -> importlib.metadata.EntryPoints:
    # Looked up through the module attribute so tests can substitute a fake distribution.
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _describe_entry_point(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    owner = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}{owner})"


def _problems(obj: Any) -> list[str]:
    problems = []
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("'name' is not a non-empty str")
    verbs = getattr(obj, "verbs", None)
    if not isinstance(verbs, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Schema) for k, v in verbs.items()
    ):
        problems.append("'verbs' is not a mapping of str to Schema")
    if not isinstance(getattr(obj, "options", None), Schema):
        problems.append("'options' is not a Schema")
    for method in ("initial_state", "handle"):
        if not callable(getattr(obj, method, None)):
            problems.append(f"{method!r} is not callable")
    return problems

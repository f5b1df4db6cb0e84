"""The ``reactors:`` section: which reactors run, their options, wiring and requirements.

The list is merged by ``id`` across layers; with no layer giving ``reactors`` the counter demo
(:data:`DEFAULT_REACTORS`) runs, and any layer's list replaces it as a whole. Whether a type,
its options and its verbs exist is the runtime's check (``reactors.graph``): here an item is
checked for shape only.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeagent.config.grants import Grants, grants_parser, render_grants
from edgeagent.config.located import (
    FieldReader,
    Issues,
    Node,
    Where,
    default_of,
    describe,
    did_you_mean,
    item_path,
    join_path,
    to_plain,
)
from edgeagent.config.scalars import choice, integer, parse_bool, parse_text
from edgeagent.config.sections import BuildContext, Section, removal_item

#: What a full mailbox does with one more intent (docs/reactors.md, "Runtime").
OVERFLOW_POLICIES = ("block", "drop-oldest", "reject")
Overflow = Literal["block", "drop-oldest", "reject"]


@dataclass(frozen=True, slots=True)
class ReactorConfig:
    """One item of ``reactors:``.

    ``requires``: intent name (``<id>.<verb>`` or a ``subscribe`` key) -> the concrete
    capabilities its sender must hold. ``options`` is type-specific plain data,
    validated by the runtime against the type's options schema. ``subscribe``: another intent
    name -> the verb of this reactor that takes it.
    """

    id: str
    type: str
    requires: Grants = ()
    # Typed read-only; a plain dict underneath so the config can still be deep-copied.
    options: Mapping[str, Any] = field(default_factory=dict)
    subscribe: tuple[tuple[str, str], ...] = ()
    mailbox: int = 1024
    overflow: Overflow = "block"
    snapshot_every: int = 1000
    enabled: bool = True  # deployed and started at boot


#: The built-in wiring: the counter demo, so a fresh device answers `intent send counter.increment`.
DEFAULT_REACTORS: tuple[ReactorConfig, ...] = (
    ReactorConfig(
        id="counter",
        type="counter",
        requires=(("counter.increment", ("counter:write",)), ("counter.reset", ("counter:reset",))),
    ),
)


def _build_reactors(node: Node | None, path: str, ctx: BuildContext) -> tuple[ReactorConfig, ...]:
    # No layer has ``reactors``: the counter demo. Any layer's list replaces it as a whole.
    if node is None:
        return DEFAULT_REACTORS
    if not isinstance(node.value, tuple):
        ctx.issues.add(node.where, path, f"expected a list of reactors, got {describe(node)}")
        return ()
    reactors: list[ReactorConfig] = []
    first_seen: dict[str, Where] = {}
    for index, item in enumerate(node.value):
        at = item_path(path, index, item)
        reactor = _reactor(item, at, ctx.issues)
        if reactor is None:
            continue
        # Layers were checked one by one (check_layer); this catches a tree built another way.
        if reactor.id in first_seen:
            ctx.issues.add(
                item.where, at, f"duplicate id '{reactor.id}' (first at {first_seen[reactor.id]})"
            )
            continue
        first_seen[reactor.id] = item.where
        reactors.append(reactor)
    return tuple(reactors)


def parse_reactor_id(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _REACTOR_ID.match(text):
        return text
    suggestion = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    suggestion = suggestion.lstrip("0123456789-_")[:63]
    hint = (
        f" (did you mean '{suggestion}'?)" if suggestion and _REACTOR_ID.match(suggestion) else ""
    )
    issues.add(
        node.where,
        path,
        f"reactor id {text!r}: a lowercase letter, then up to 62 of a-z 0-9 '_' '-'{hint}",
    )
    return None


def parse_reactor_type(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _REACTOR_TYPE.match(text):
        return text
    issues.add(
        node.where,
        path,
        f"reactor type {text!r}: the name of a built-in type (counter, threshold, window, "
        "relay, schedule, actuator) or of an 'edgeagent.reactors' entry point",
    )
    return None


def parse_verb(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    if _VERB.match(text):
        return text
    issues.add(
        node.where, path, f"verb {text!r}: a lowercase letter, then a-z 0-9 '_' '-' (e.g. reading)"
    )
    return None


def parse_options(node: Node, path: str, issues: Issues) -> dict[str, Any] | None:
    if not isinstance(node.value, dict):
        issues.add(node.where, path, f"expected a mapping of options, got {describe(node)}")
        return None
    options: dict[str, Any] = to_plain(node)
    return options


def _render_reactors(reactors: tuple[ReactorConfig, ...]) -> list[dict[str, Any]]:
    return [_render_reactor(reactor) for reactor in reactors]


def _render_reactor(reactor: ReactorConfig) -> dict[str, Any]:
    return {
        "id": reactor.id,
        "type": reactor.type,
        "requires": render_grants(reactor.requires),
        "options": copy.deepcopy(dict(reactor.options)),
        "subscribe": dict(reactor.subscribe),
        "mailbox": reactor.mailbox,
        "overflow": reactor.overflow,
        "snapshot_every": reactor.snapshot_every,
        "enabled": reactor.enabled,
    }


SECTION: Section[tuple[ReactorConfig, ...]] = Section(
    "reactors",
    _build_reactors,
    _render_reactors,
    id_merged_lists=(("reactors",),),
)


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
def _reactor(item: Node, path: str, issues: Issues) -> ReactorConfig | None:
    """One reactor item, or None for a removal or an invalid item (already reported)."""
    if not isinstance(item.value, dict):
        issues.add(item.where, path, f"expected a reactor mapping, got {describe(item)}")
        return None
    reader = FieldReader(item, path, issues)
    if removal_item(item, reader, path, issues):
        return None
    before = len(issues)
    ident = reader.get("id", parse_reactor_id, None)
    reactor_type = reader.get("type", parse_reactor_type, None)
    subscribe_node = reader.node("subscribe")
    subscribe: tuple[tuple[str, str], ...] = ()
    if subscribe_node is not None:
        subscribe = (
            _subscriptions(subscribe_node, join_path(path, "subscribe"), issues, ident) or ()
        )
    requires_node = reader.node("requires")
    requires: Grants = ()
    if requires_node is not None:
        requires = (
            grants_parser(_intent_name_problem, "intent name", "capabilities", wildcards=False)(
                requires_node, join_path(path, "requires"), issues
            )
            or ()
        )
        if ident is not None and isinstance(requires_node.value, dict):
            _check_requires_keys(
                requires_node, join_path(path, "requires"), issues, ident, subscribe
            )
    options: dict[str, Any] = reader.get("options", parse_options, {})
    reactor_fields: dict[str, Any] = {
        "mailbox": reader.get(
            "mailbox", integer(1, 1_000_000), default_of(ReactorConfig, "mailbox")
        ),
        "overflow": reader.get(
            "overflow", choice(OVERFLOW_POLICIES), default_of(ReactorConfig, "overflow")
        ),
        "snapshot_every": reader.get(
            "snapshot_every", integer(1, 100_000_000), default_of(ReactorConfig, "snapshot_every")
        ),
        "enabled": reader.get("enabled", parse_bool, default_of(ReactorConfig, "enabled")),
    }
    reader.finish()
    for key in ("id", "type"):
        if reader.node(key) is None:
            issues.add(item.where, path, f"missing required key '{key}'")
    if len(issues) != before:
        return None
    assert ident is not None
    assert reactor_type is not None
    return ReactorConfig(
        id=ident,
        type=reactor_type,
        requires=requires,
        options=options,
        subscribe=subscribe,
        **reactor_fields,
    )


def _subscriptions(
    node: Node, path: str, issues: Issues, ident: str | None
) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(node.value, dict):
        issues.add(
            node.where,
            path,
            f"expected a mapping of intent names to verbs, got {describe(node)}",
        )
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for name, child in node.value.items():
        at = join_path(path, name)
        problem = _intent_name_problem(name)
        if problem is None and ident is not None and name.split(".", 1)[0] == ident:
            problem = (
                f"'{name}' already goes to this reactor's verb '{name.split('.', 1)[1]}'; "
                "subscribe names intents of other reactors or sources"
            )
        if problem is not None:
            issues.add(child.key_where or child.where, at, problem)
            ok = False
            continue
        verb = parse_verb(child, at, issues)
        if verb is None:
            ok = False
            continue
        pairs.append((name, verb))
    return tuple(pairs) if ok else None


def _check_requires_keys(
    node: Node,
    path: str,
    issues: Issues,
    ident: str,
    subscribe: tuple[tuple[str, str], ...],
) -> None:
    """A requirement names an intent this reactor takes: ``<id>.<verb>`` or a subscribed name.

    Whether the verb exists depends on the type, which the runtime checks.
    """
    assert isinstance(node.value, dict)
    subscribed = [name for name, _ in subscribe]
    for name, child in node.value.items():
        if _intent_name_problem(name) is not None:
            continue  # reported by the grants parser
        owner, _, verb = name.partition(".")
        if name in subscribed or (owner == ident and _VERB.match(verb)):
            continue
        candidates = [*subscribed, f"{ident}.{verb}"]
        issues.add(
            child.key_where or child.where,
            join_path(path, name),
            f"reactor '{ident}' does not take '{name}': expected '{ident}.<verb>' or one of "
            "its subscribe keys" + did_you_mean(name, candidates),
        )


def _intent_name_problem(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) < 2 or not all(_INTENT_SEGMENT.match(part) for part in parts):
        return (
            f"intent name {name!r}: dot-separated parts of letters, digits, '_' or '-', "
            "at least two (e.g. 'counter.increment', 'sensor.temperature')"
        )
    return None


_REACTOR_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_REACTOR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERB = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_INTENT_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")

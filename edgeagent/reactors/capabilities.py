"""Capabilities: the grammar, pattern coverage, the implication closure and access decisions.

Theory of operation
-------------------
A capability is ``:``-separated segments (``sensor:read``, ``actuator:write:/dev/ttyUSB0``).
A segment is letters, digits and ``_ . - /``, or the wildcard ``*``. In a grant, a middle
``*`` stands for exactly one segment and a last ``*`` for one or more, so ``sensor:*`` covers
``sensor:read`` and ``sensor:read:kitchen``. A requirement (what an intent needs) is concrete.

``capabilities.implies`` maps a concrete capability (a *key*) to capabilities it implies.
Whoever holds something covering a key holds what the key implies, transitively; the closure
is a fixpoint, so cycles are harmless. A wildcard grant covers keys like any other holding:
``*`` implies everything every key implies.

A :class:`Policy` is immutable. ``build`` validates the config and computes, once per
declared principal, the closure split into a frozenset of concrete capabilities and one
compiled regular expression for the wildcard patterns. ``decide`` runs for every intent, so it
is a set lookup (plus a regex match when there are patterns) behind a small bounded memo.

This module does no I/O: it takes the config values and returns values.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from edgeagent.errors import CapabilityError

WILDCARD = "*"
MAX_CAPABILITY_LENGTH = 255

#: The kinds of prefixed principal names and what the text after the colon must look like.
PRINCIPAL_KINDS = ("mqtt", "peer", "schedule", "reactor", "sensor")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :meth:`Policy.decide`: allowed, or the requirements not covered and why."""

    allowed: bool
    missing: tuple[str, ...] = ()
    reason: str = ""  # "" when allowed


def check_capability(text: str, *, wildcards: bool) -> str:
    """``text`` when it is a well-formed capability; else ``CapabilityError`` saying why.

    ``wildcards``: whether ``*`` segments are allowed (grants and implied values: yes;
    requirements and implication keys: no).
    """
    problem = capability_problem(text, wildcards=wildcards)
    if problem is not None:
        raise CapabilityError(problem)
    return text


def capability_problem(text: object, *, wildcards: bool) -> str | None:
    """Why ``text`` is not a capability (the message of :func:`check_capability`), or None."""
    if not isinstance(text, str):
        return f"a capability is a string, got {type(text).__name__} {text!r}"
    if not text:
        return "a capability must not be empty"
    if len(text) > MAX_CAPABILITY_LENGTH:
        return f"capability {text[:40]!r}... is {len(text)} characters; at most 255"
    for segment in text.split(":"):
        if segment == WILDCARD:
            if not wildcards:
                return (
                    f"capability {text!r} has a wildcard '*'; a requirement names one "
                    "concrete capability (e.g. 'counter:write')"
                )
            continue
        if not segment:
            return f"capability {text!r} has an empty segment (between or around ':')"
        if WILDCARD in segment:
            return (
                f"capability {text!r}: '*' must be a whole segment, as in 'sensor:*', "
                f"not part of {segment!r}"
            )
        if not _SEGMENT.match(segment):
            bad = next(c for c in segment if not _SEGMENT.match(c))
            return (
                f"capability {text!r}: segment {segment!r} has {bad!r}; segments are letters, "
                "digits and _ . - /"
            )
    return None


def is_pattern(capability: str) -> bool:
    """Whether ``capability`` has a wildcard segment."""
    return WILDCARD in capability.split(":")


def covers(pattern: str, capability: str) -> bool:
    """Whether holding ``pattern`` means holding ``capability``.

    ``capability`` may itself be a pattern: then the answer is whether ``pattern`` covers
    every concrete capability that ``capability`` covers. Both are assumed well-formed.
    """
    if pattern == capability:
        return True
    want = pattern.split(":")
    have = capability.split(":")
    if want[-1] == WILDCARD:
        # A last '*' takes one or more segments; ``capability`` covers nothing shorter than
        # its own segment count, so that count must reach the pattern's.
        if len(have) < len(want):
            return False
        prefix = want[:-1]
    else:
        # A fixed-length pattern cannot cover a capability that takes any number of segments.
        if len(have) != len(want) or have[-1] == WILDCARD:
            return False
        prefix = want
    return all(w in (WILDCARD, h) for w, h in zip(prefix, have, strict=False))


def check_principal(text: str) -> str:
    """``text`` when it is a principal name; else ``CapabilityError`` saying why.

    Principals: ``cli``, ``mqtt:<client-or-topic>``, ``peer:<cluster>``,
    ``schedule:<reactor-id>``, ``reactor:<reactor-id>``, or a plain name (``guest``).
    """
    problem = principal_problem(text)
    if problem is not None:
        raise CapabilityError(problem)
    return text


def principal_problem(text: object) -> str | None:
    """Why ``text`` is not a principal name (the message of :func:`check_principal`), or None."""
    if not isinstance(text, str):
        return f"a principal name is a string, got {type(text).__name__} {text!r}"
    if not text:
        return "a principal name must not be empty"
    kind, colon, rest = text.partition(":")
    if not colon:
        if _PLAIN_PRINCIPAL.match(text):
            return None
        return (
            f"principal {text!r}: a plain name is 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if kind not in PRINCIPAL_KINDS:
        close = difflib.get_close_matches(kind, PRINCIPAL_KINDS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}:{rest}'?)" if close else ""
        return (
            f"principal {text!r}: unknown kind {kind!r}; prefixed names are "
            + ", ".join(f"{k}:<...>" for k in PRINCIPAL_KINDS)
            + hint
        )
    if kind == "mqtt":
        if rest and len(rest) <= 255 and rest.isprintable() and not any(c.isspace() for c in rest):
            return None
        return f"principal {text!r}: after 'mqtt:' comes a client id or topic without spaces"
    if kind == "peer":
        if _CLUSTER.match(rest):
            return None
        return f"principal {text!r}: after 'peer:' comes a mesh cluster name (a-z 0-9 _ -)"
    if kind == "sensor":
        if _SENSOR_ID.match(rest):
            return None
        return f"principal {text!r}: after 'sensor:' comes a sensor id (a-z 0-9 _ -)"
    if _REACTOR_ID.match(rest):
        return None
    return (
        f"principal {text!r}: after '{kind}:' comes a reactor id "
        "(a lowercase letter, then a-z 0-9 _ -)"
    )


class Policy:
    """Who holds which capabilities: the implication closure of every principal's grants.

    Immutable once built; build it with :meth:`build` (the constructor is private).
    """

    __slots__ = ("_decisions", "_declared", "_grants", "_holdings", "_implies")

    #: Decisions are memoised per (principal, requirements); past this many the memo restarts,
    #: so unusual callers (many unknown principals) cannot grow it without bound.
    MEMO_LIMIT = 4096

    def __init__(
        self,
        implies: dict[str, tuple[str, ...]],
        declared: dict[str, tuple[str, ...]],
        grants: dict[str, frozenset[str]],
    ) -> None:
        self._implies = implies
        self._declared = declared
        self._grants = grants
        self._holdings = {name: _Holdings.of(held) for name, held in grants.items()}
        self._decisions: dict[tuple[str, tuple[str, ...]], Decision] = {}

    @classmethod
    def build(
        cls, implies: Mapping[str, Sequence[str]], principals: Mapping[str, Sequence[str]]
    ) -> Policy:
        """Validate ``implies`` and ``principals`` and compute every principal's closure.

        Raises ``CapabilityError`` naming the first offending key, principal or capability.
        """
        table: dict[str, tuple[str, ...]] = {}
        for key, values in implies.items():
            _check(f"capabilities.implies key {key!r}", key, wildcards=False)
            table[key] = _capabilities(f"capabilities.implies[{key!r}]", values)
        declared: dict[str, tuple[str, ...]] = {}
        for name, values in principals.items():
            problem = principal_problem(name)
            if problem is not None:
                raise CapabilityError(f"principals: {problem}")
            declared[name] = _capabilities(f"principals[{name!r}]", values)
        grants = {name: _closure(values, table) for name, values in declared.items()}
        return cls(table, declared, grants)

    @property
    def principals(self) -> tuple[str, ...]:
        """The declared principals, in config order."""
        return tuple(self._declared)

    @property
    def implies(self) -> Mapping[str, tuple[str, ...]]:
        """The implication table as declared (key -> implied capabilities)."""
        return dict(self._implies)

    def declared(self, principal: str) -> tuple[str, ...]:
        """The grants written in config for ``principal`` (empty when unknown)."""
        return self._declared.get(principal, ())

    def grants(self, principal: str) -> frozenset[str]:
        """Everything ``principal`` holds: its grants and their closure, patterns included."""
        return self._grants.get(principal, frozenset())

    def holds(self, principal: str, capability: str) -> bool:
        """Whether ``principal`` holds the concrete ``capability`` (assumed well-formed)."""
        holdings = self._holdings.get(principal)
        return holdings is not None and holdings.holds(capability)

    def decide(self, principal: str, required: Sequence[str]) -> Decision:
        """Allowed when the closure of ``principal`` covers every capability in ``required``.

        An unknown principal holds nothing. A malformed or wildcard requirement raises
        ``CapabilityError``.
        """
        key = (principal, tuple(required))
        found = self._decisions.get(key)
        if found is not None:
            return found
        decision = self._decide(principal, key[1])
        if len(self._decisions) >= self.MEMO_LIMIT:
            self._decisions.clear()
        self._decisions[key] = decision
        return decision

    def can_ever_hold(self, capability: str) -> list[str]:
        """The declared principals whose closure covers ``capability``, in config order.

        ``edgeagent check`` reports a requirement nobody can hold. ``capability`` may be a
        pattern: then a principal counts when it holds every capability the pattern covers.
        """
        check_capability(capability, wildcards=True)
        return [
            name
            for name, held in self._grants.items()
            if any(covers(pattern, capability) for pattern in held)
        ]

    def _decide(self, principal: str, required: tuple[str, ...]) -> Decision:
        for capability in required:
            check_capability(capability, wildcards=False)
        holdings = self._holdings.get(principal)
        if holdings is None:
            missing = tuple(dict.fromkeys(required))
        else:
            missing = tuple(dict.fromkeys(c for c in required if not holdings.holds(c)))
        if not missing:
            return _ALLOWED
        return Decision(False, missing, self._reason(principal, missing))

    def _reason(self, principal: str, missing: tuple[str, ...]) -> str:
        if principal not in self._declared:
            held = "nothing: no such principal in config"
        elif not self._grants[principal]:
            held = "nothing"
        else:
            names = sorted(self._grants[principal])
            held = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return f"principal {principal!r} lacks {', '.join(missing)} (it holds {held})"

    def __repr__(self) -> str:
        return f"Policy(principals={list(self._declared)!r}, implies={list(self._implies)!r})"


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_PLAIN_PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CLUSTER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # as the mesh config's cluster names
_REACTOR_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_SENSOR_ID = re.compile(r"^[a-z0-9_-]{1,63}$")
_ALLOWED = Decision(True)


@dataclass(frozen=True, slots=True)
class _Holdings:
    """One principal's closure, shaped for fast checks: concrete names, one pattern regex."""

    concrete: frozenset[str]
    patterns: re.Pattern[str] | None

    @classmethod
    def of(cls, held: Iterable[str]) -> _Holdings:
        concrete: set[str] = set()
        patterns: list[str] = []
        for capability in held:
            if is_pattern(capability):
                patterns.append(capability)
            else:
                concrete.add(capability)
        # Patterns covered by another pattern add nothing to the regex.
        kept = [p for p in patterns if not any(q != p and covers(q, p) for q in patterns)]
        regex = "|".join(_pattern_regex(p) for p in sorted(kept))
        return cls(frozenset(concrete), re.compile(regex) if regex else None)

    def holds(self, capability: str) -> bool:
        if capability in self.concrete:
            return True
        return self.patterns is not None and self.patterns.fullmatch(capability) is not None


def _pattern_regex(pattern: str) -> str:
    """A regex matching exactly the concrete capabilities ``pattern`` covers."""
    one = r"[^:]+"
    parts = [one if segment == WILDCARD else re.escape(segment) for segment in pattern.split(":")]
    if parts[-1] == one:
        parts[-1] = rf"{one}(?::{one})*"
    return "(?:" + ":".join(parts) + ")"


def _capabilities(where: str, values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise CapabilityError(f"{where}: expected a list of capabilities, got {values!r}")
    for value in values:
        _check(where, value, wildcards=True)
    return tuple(dict.fromkeys(values))


def _check(where: str, value: object, *, wildcards: bool) -> None:
    problem = capability_problem(value, wildcards=wildcards)
    if problem is not None:
        raise CapabilityError(f"{where}: {problem}")


def _closure(grants: Iterable[str], implies: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """``grants`` plus everything implied by a key they cover, to a fixpoint."""
    held: set[str] = set()
    pending = list(grants)
    while pending:
        capability = pending.pop()
        if capability in held:
            continue
        held.add(capability)
        for key, implied in implies.items():
            if covers(capability, key):
                pending.extend(c for c in implied if c not in held)
    return frozenset(held)

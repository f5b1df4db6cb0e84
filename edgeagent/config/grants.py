"""Grants: a mapping of names to lists of capabilities, as three sections write it.

``capabilities.implies`` (capability -> what it implies), ``principals`` (principal -> what it
holds) and a reactor's ``requires`` (intent name -> what its sender must hold) share the value
shape :data:`Grants`, its parser and its rendering; the capability grammar itself is
``reactors.capabilities``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from edgeagent.config.located import Issues, Node, Parser, describe, join_path
from edgeagent.config.scalars import list_of
from edgeagent.reactors.capabilities import capability_problem

#: A mapping written as ordered (key, values) pairs, so the config stays frozen and hashable.
Grants = tuple[tuple[str, tuple[str, ...]], ...]


def grants_parser(
    key_problem: Callable[[str], str | None],
    key_noun: str,
    values_noun: str,
    *,
    wildcards: bool = True,
) -> Parser[Grants]:
    """A mapping of names (checked by ``key_problem``) to lists of capabilities.

    Used for ``capabilities.implies``, ``principals`` and a reactor's ``requires``.
    """
    capability = capability_parser(wildcards=wildcards)

    def parse(node: Node, path: str, issues: Issues) -> Grants | None:
        if not isinstance(node.value, dict):
            issues.add(
                node.where,
                path,
                f"expected a mapping of each {key_noun} to its {values_noun}, got {describe(node)}",
            )
            return None
        pairs: list[tuple[str, tuple[str, ...]]] = []
        ok = True
        for key, child in node.value.items():
            at = join_path(path, key)
            problem = key_problem(key)
            if problem is not None:
                issues.add(child.key_where or child.where, at, problem)
                ok = False
                continue
            if child.value is None:
                pairs.append((key, ()))  # `guest:` holds nothing (yet)
                continue
            if isinstance(child.value, str):
                issues.add(
                    child.where,
                    at,
                    f"expected a list of capabilities, got {describe(child)} "
                    f"(write [{child.value}])",
                )
                ok = False
                continue
            values = list_of(capability)(child, at, issues)
            if values is None:
                ok = False
                continue
            pairs.append((key, tuple(dict.fromkeys(values))))
        return tuple(pairs) if ok else None

    return parse


def capability_parser(*, wildcards: bool) -> Parser[str]:
    """A capability string (``sensor:read``; ``sensor:*`` only with ``wildcards``)."""

    def parse(node: Node, path: str, issues: Issues) -> str | None:
        if not isinstance(node.value, str):
            issues.add(
                node.where,
                path,
                f"expected a capability such as 'sensor:read', got {describe(node)}",
            )
            return None
        problem = capability_problem(node.value, wildcards=wildcards)
        if problem is None:
            return node.value
        fixed = _fixed_capability(node.value, wildcards=wildcards)
        issues.add(node.where, path, problem + (f" (did you mean '{fixed}'?)" if fixed else ""))
        return None

    return parse


def render_grants(grants: Grants) -> dict[str, Any]:
    """Grants as the mapping the YAML contract writes."""
    return {name: list(values) for name, values in grants}


def _fixed_capability(text: str, *, wildcards: bool) -> str | None:
    """A likely intended spelling of a malformed capability, when a simple fix gives one."""
    candidate = re.sub(r"\s+", "", text)
    candidate = re.sub(r":{2,}", ":", candidate).strip(":")
    candidate = re.sub(r"\*{2,}", "*", candidate)
    if candidate == text or not candidate:
        return None
    return candidate if capability_problem(candidate, wildcards=wildcards) is None else None

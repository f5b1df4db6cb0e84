"""The ``capabilities:`` section: which capability implies which (``implies``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeagent.config.grants import Grants, grants_parser, render_grants
from edgeagent.config.located import FieldReader, Node, default_of
from edgeagent.config.sections import BuildContext, Section
from edgeagent.reactors.capabilities import capability_problem


@dataclass(frozen=True, slots=True)
class CapabilitiesConfig:
    """The ``capabilities:`` section: ``implies`` maps a concrete capability to what it implies.

    Feed it with ``principals`` to ``reactors.capabilities.Policy.build(dict(implies),
    dict(principals))``.
    """

    implies: Grants = (("admin", ("counter:*",)),)


def _build_capabilities(node: Node | None, path: str, ctx: BuildContext) -> CapabilitiesConfig:
    reader = FieldReader(node, path, ctx.issues)
    implies = reader.get(
        "implies",
        grants_parser(_implies_key_problem, "capability", "capabilities"),
        default_of(CapabilitiesConfig, "implies"),
    )
    reader.finish()
    return CapabilitiesConfig(implies=implies)


def _render_capabilities(capabilities: CapabilitiesConfig) -> dict[str, Any]:
    return {"implies": render_grants(capabilities.implies)}


SECTION: Section[CapabilitiesConfig] = Section(
    "capabilities", _build_capabilities, _render_capabilities
)


def _implies_key_problem(key: str) -> str | None:
    problem = capability_problem(key, wildcards=False)
    if problem is not None and "wildcard" in problem:
        return (
            f"capability {key!r}: an implication key is concrete; to grant everything under "
            "a prefix, put the pattern in the implied list instead"
        )
    return problem

"""The ``log_level:`` section: one word, the level of the agent's root logger."""

from __future__ import annotations

from edgeagent.config.located import Node
from edgeagent.config.scalars import choice
from edgeagent.config.sections import BuildContext, Section

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_LOG_LEVEL = "info"
parse_log_level = choice(LOG_LEVELS)


def _build_log_level(node: Node | None, path: str, ctx: BuildContext) -> str:
    if node is None:
        return DEFAULT_LOG_LEVEL
    return parse_log_level(node, path, ctx.issues) or DEFAULT_LOG_LEVEL


def _render_log_level(level: str) -> str:
    return level


SECTION: Section[str] = Section("log_level", _build_log_level, _render_log_level)

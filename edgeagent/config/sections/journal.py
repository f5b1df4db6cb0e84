"""The ``journal:`` section: where the intent journal lives and how it is bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from edgeagent.config.located import FieldReader, Node, Parser, default_of
from edgeagent.config.scalars import integer, parse_text, size_parser
from edgeagent.config.sections import BuildContext, Section

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """The ``journal:`` section. ``path`` None: ``<state-dir>/journal.sqlite3``."""

    path: str | None = None  # a relative path is taken from the state directory
    max_bytes: int = 256 * 1024 * 1024  # compaction bound
    max_batch: int = 4096  # group commit: at most this many intents per COMMIT
    audit_keep: int = 10_000  # newest audit rows kept by compaction


def _build_journal(node: Node | None, path: str, ctx: BuildContext) -> JournalConfig:
    reader = FieldReader(node, path, ctx.issues)

    def field(key: str, parse: Parser[T]) -> T:
        value: T = reader.get(key, parse, default_of(JournalConfig, key))
        return value

    journal = JournalConfig(
        path=field("path", parse_text),
        max_bytes=field("max_bytes", size_parser(1 << 20, 1 << 40)),
        max_batch=field("max_batch", integer(1, 1_000_000)),
        audit_keep=field("audit_keep", integer(0, 100_000_000)),
    )
    reader.finish()
    return journal


def _render_journal(journal: JournalConfig) -> dict[str, Any]:
    return {
        "path": journal.path,
        "max_bytes": journal.max_bytes,
        "max_batch": journal.max_batch,
        "audit_keep": journal.audit_keep,
    }


SECTION: Section[JournalConfig] = Section("journal", _build_journal, _render_journal)

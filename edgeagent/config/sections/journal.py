"""The ``journal:`` section: where the intent journal lives and how it is bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from edgeagent.config.located import FieldReader, Issues, Node, Parser, default_of
from edgeagent.config.scalars import integer, parse_duration, parse_text, size_parser
from edgeagent.config.sections import BuildContext, Section

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """The ``journal:`` section. ``path`` None: ``<state-dir>/journal.sqlite3``."""

    path: str | None = None  # a relative path is taken from the state directory
    max_bytes: int = 256 * 1024 * 1024  # compaction bound
    max_batch: int = 4096  # group commit: at most this many intents per COMMIT
    audit_keep: int = 10_000  # newest audit rows kept by compaction
    # Sensor readings a reactor takes wait up to this long to share one commit (0: none).
    readings_commit_within: float = 2.0


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
        readings_commit_within=field("readings_commit_within", _commit_window),
    )
    reader.finish()
    return journal


MAX_COMMIT_WINDOW = 60.0  # seconds: beyond this a reactor would act on stale readings


def _commit_window(node: Node, path: str, issues: Issues) -> float | None:
    """``2s``, ``500ms`` or ``0s`` (off), at most a minute."""
    if node.value in (0, "0", "0s", "0ms"):
        return 0.0
    seconds = parse_duration(node, path, issues)
    if seconds is not None and seconds > MAX_COMMIT_WINDOW:
        issues.add(node.where, path, f"at most {MAX_COMMIT_WINDOW:g}s, got {node.value!r}")
        return None
    return seconds


def _render_journal(journal: JournalConfig) -> dict[str, Any]:
    return {
        "path": journal.path,
        "max_bytes": journal.max_bytes,
        "max_batch": journal.max_batch,
        "audit_keep": journal.audit_keep,
        "readings_commit_within": journal.readings_commit_within,
    }


SECTION: Section[JournalConfig] = Section("journal", _build_journal, _render_journal)

"""Run metadata: a JSON-lines record of what the reactor runtime did, kept in the state dir.

One line per event: lifecycle changes, queue pressure, denials, handler and effect errors,
each with the run id, a wall-clock timestamp and the intent's trace id where there is one, so
a run can be explained afterwards (``grep <trace-id> runs/events.jsonl*``). The file rotates
by size: ``events.jsonl`` becomes ``events.jsonl.1`` and so on, keeping ``keep`` old files,
so the directory never grows past about ``(keep + 1) * max_bytes``.

Writes are plain appends to a line-buffered file: small, rare next to intents (no event is
written per accepted intent), and cheap enough for the event loop. A write that fails (a full
disk) is counted and logged once; it never takes the runtime down with it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("edgeagent.reactors")

FILE_NAME = "events.jsonl"


class RunLog:
    """Append-only JSONL events with size-based rotation (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 20,
        keep: int = 4,
        clock: Callable[[], float] = time.time,
        run_id: str | None = None,
    ) -> None:
        if max_bytes < 1024 or keep < 0:
            raise ValueError("max_bytes must be at least 1024 and keep not negative")
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep = keep
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + (
            secrets.token_hex(3)
        )
        self.write_errors = 0
        self._clock = clock
        self._file: IO[str] | None = None
        self._size = 0

    @property
    def path(self) -> Path:
        return self.directory / FILE_NAME

    def write(self, kind: str, **fields: Any) -> None:
        """Append one event; ``None`` fields are left out."""
        event = {"at": round(self._clock(), 6), "run": self.run_id, "kind": kind}
        event.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(event, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"
        try:
            handle = self._open()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
                handle = self._open()
            handle.write(line)
            self._size += len(line.encode())
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                log.warning("cannot write run metadata to %s: %s", self.path, exc)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def files(self) -> list[Path]:
        """The current file first, then the rotated ones, newest first."""
        names = [self.path, *(self.directory / f"{FILE_NAME}.{i}" for i in range(1, self.keep + 1))]
        return [p for p in names if p.exists()]

    def _open(self) -> IO[str]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        self.close()
        if self.keep == 0:
            os.replace(self.path, self.directory / f"{FILE_NAME}.0")
            (self.directory / f"{FILE_NAME}.0").unlink()
            return
        for index in range(self.keep - 1, 0, -1):
            older = self.directory / f"{FILE_NAME}.{index}"
            if older.exists():
                os.replace(older, self.directory / f"{FILE_NAME}.{index + 1}")
        os.replace(self.path, self.directory / f"{FILE_NAME}.1")

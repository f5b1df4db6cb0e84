"""The mesh epoch: a counter in the state dir that grows by one each time the agent starts.

Frames carry ``(epoch, seq)``; seq restarts at 1 every start, so the epoch must never repeat,
or peers would treat the new run's frames as replays and accept recordings of the old run.

``next_epoch(state_dir)`` reads ``mesh-epoch`` (decimal text), adds one and writes it back
atomically (temp file, fsync, rename, fsync of the directory, like ``edgeagent.state``) before
returning, so a power cut can lose nothing that was handed out.

When the file cannot be trusted (not a decimal number, out of range) it is kept aside as
``mesh-epoch.corrupt-<unix time>`` and we cannot know the old value, so we start from a
*clock-seeded* epoch, ``(unix seconds << 20) | 20 random bits`` (or one above the largest
number still readable in the corrupt file, if that is higher): far above any value reached
by counting restarts (2^20 restarts per second of clock) and, thanks to the random bits,
very unlikely to repeat even on a device whose clock restarts at 1970. The counter continues
from there. When the state dir cannot be written we log a warning and return a fresh
clock-seeded epoch without persisting it: the mesh keeps working and nothing repeats.

Repeats are also harmless for security *against outsiders*, because the replay guard
challenges every epoch it has not verified (``edgeagent.mesh.auth``); monotonicity keeps peers
from dropping our frames as replays.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from pathlib import Path

log = logging.getLogger(__name__)

EPOCH_FILE = "mesh-epoch"
MAX_EPOCH = (1 << 64) - 1
_RANDOM_BITS = 20


def next_epoch(state_dir: Path) -> int:
    """The epoch for this start (≥ 1), persisted before it is returned."""
    path = state_dir / EPOCH_FILE
    previous, salvaged = _read(path)
    epoch = previous + 1 if previous is not None else max(clock_seeded_epoch(), salvaged + 1)
    if epoch > MAX_EPOCH:  # unreachable by counting; a hand-edited file
        epoch = clock_seeded_epoch()
    try:
        _write_atomically(state_dir, path, epoch)
    except OSError as exc:
        epoch = clock_seeded_epoch()
        log.warning("cannot persist the mesh epoch in %s (%s); using %d", state_dir, exc, epoch)
    return epoch


def clock_seeded_epoch() -> int:
    """``(unix seconds << 20) | random 20 bits``: above any counted epoch, unlikely to repeat."""
    return (max(int(time.time()), 1) << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)


def _read(path: Path) -> tuple[int | None, int]:
    """``(stored epoch, 0)``; 0 when there is no file; ``(None, salvaged)`` when corrupt.

    ``salvaged`` is the largest decimal number found in a corrupt file (a torn write may still
    hold the old value), so the new epoch starts above it when it can.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        log.error("cannot read the mesh epoch %s (%s); starting from the clock", path, exc)
        return None, 0
    text = raw.decode("ascii", errors="replace").strip()
    if text.isascii() and text.isdecimal() and int(text) <= MAX_EPOCH:
        return int(text), 0
    numbers = [int(n) for n in re.findall(rb"[0-9]{1,20}", raw) if int(n) < MAX_EPOCH]
    aside = path.with_name(f"{EPOCH_FILE}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
        log.error("mesh epoch %s is unreadable; kept it as %s", path, aside)
    except OSError as exc:
        log.error("mesh epoch %s is unreadable and cannot be moved aside (%s)", path, exc)
    return None, max(numbers, default=0)


def _write_atomically(state_dir: Path, path: Path, epoch: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{EPOCH_FILE}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(f"{epoch}\n".encode("ascii"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

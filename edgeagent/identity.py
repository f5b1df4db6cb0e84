"""The device's identity: its board serial and the default host name derived from it.

The default host name is ``edge-`` plus the last four hex digits (lowercase) of the first
usable serial among, in order: the ``Serial`` line of ``/proc/cpuinfo`` (Raspberry Pi),
``/proc/device-tree/serial-number`` (other device-tree boards) and ``/etc/machine-id``.
An all-zero serial (emulators, some clones) counts as absent. The ``parse_*`` functions are
pure; :func:`read_identity` is the thin reader, with every path injectable for tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HOSTNAME_PREFIX = "edge-"
FALLBACK_SUFFIX = "0000"  # no serial anywhere: still a valid, if not unique, name

CPUINFO = Path("/proc/cpuinfo")
DEVICE_TREE_SERIAL = Path("/proc/device-tree/serial-number")
MACHINE_ID = Path("/etc/machine-id")


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A normalised serial (lowercase hex, or None) and the file it came from."""

    serial: str | None
    source: str | None = None

    @property
    def default_hostname(self) -> str:
        return hostname_from_serial(self.serial)


def hostname_from_serial(serial: str | None) -> str:
    """``edge-`` + the last 4 hex digits of ``serial`` (left-padded with zeros if shorter)."""
    if not serial:
        return HOSTNAME_PREFIX + FALLBACK_SUFFIX
    return HOSTNAME_PREFIX + serial[-4:].lower().rjust(4, "0")


def normalise_serial(text: str) -> str | None:
    """The hex digits of ``text`` in lowercase; None when there are none or all are zero."""
    digits = "".join(re.findall(r"[0-9a-f]", text.strip().lower()))
    if not digits or set(digits) == {"0"}:
        return None
    return digits


def parse_cpuinfo_serial(text: str) -> str | None:
    """The ``Serial`` of ``/proc/cpuinfo`` (``Serial\\t\\t: 10000000abcd2e6d``)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "serial":
            return normalise_serial(value)
    return None


def parse_device_tree_serial(data: bytes) -> str | None:
    """``/proc/device-tree/serial-number``: ASCII, NUL-terminated."""
    return normalise_serial(data.split(b"\0", 1)[0].decode("ascii", errors="ignore"))


def parse_machine_id(text: str) -> str | None:
    """``/etc/machine-id``: 32 lowercase hex digits and a newline."""
    return normalise_serial(text)


def read_identity(
    *,
    cpuinfo: Path = CPUINFO,
    device_tree_serial: Path = DEVICE_TREE_SERIAL,
    machine_id: Path = MACHINE_ID,
) -> DeviceIdentity:
    """Read the first usable serial; unreadable or missing files are skipped."""
    serial = parse_cpuinfo_serial(_read_text(cpuinfo))
    if serial:
        return DeviceIdentity(serial, str(cpuinfo))
    try:
        serial = parse_device_tree_serial(device_tree_serial.read_bytes())
    except OSError:
        serial = None
    if serial:
        return DeviceIdentity(serial, str(device_tree_serial))
    serial = parse_machine_id(_read_text(machine_id))
    if serial:
        return DeviceIdentity(serial, str(machine_id))
    return DeviceIdentity(None, None)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""

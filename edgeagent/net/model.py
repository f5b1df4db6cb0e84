"""Values describing the device's network interfaces (pure data, no I/O)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """One interface with its usable addresses.

    ``ipv6`` holds addresses without scope suffix (``fe80::1``, not ``fe80::1%eth0``); the
    interface ``index`` is the scope. Link-local IPv6 is included (mDNS runs on it).
    """

    name: str
    index: int
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.ipv4 + self.ipv6


def interface_selected(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """fnmatch-style selection: excluded wins; an empty ``include`` includes everything."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
        return False
    return not include or any(fnmatch.fnmatchcase(name, pattern) for pattern in include)

"""The system resolver's configuration: where it is and the nameservers it names (pure).

The caller reads the file (the config loader for a recursive DNS bridge without upstreams,
the ``dns`` discovery strategy for its resolver) and hands the text to
:func:`parse_resolv_conf`.
"""

from __future__ import annotations

from pathlib import Path

RESOLV_CONF = Path("/etc/resolv.conf")


def parse_resolv_conf(text: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf, in order (comments skipped)."""
    servers: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
    return servers

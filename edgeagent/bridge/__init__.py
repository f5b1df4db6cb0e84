"""The DNS bridge: a local unicast DNS server answering ``.local`` and reverse names.

``core`` decides answers (no I/O), ``fastpath`` stores packed replies, ``wire`` parses
queries, ``server`` is the asyncio adapter, ``upstream`` forwards other names in recursive
mode, ``static`` is a fixed-record name source. See docs/dns-bridge.md.
"""

from edgeagent.bridge.core import (
    BridgeCore,
    BridgeStats,
    LookupResult,
    NameSource,
    Transport,
)
from edgeagent.bridge.server import BridgeServer, ServerState
from edgeagent.bridge.static import StaticNameSource

__all__ = [
    "BridgeCore",
    "BridgeServer",
    "BridgeStats",
    "LookupResult",
    "NameSource",
    "ServerState",
    "StaticNameSource",
    "Transport",
]

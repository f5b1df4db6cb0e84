"""mDNS responder data: the record table, the cache of records seen, and ``info`` formatting.

The modules here are pure cores (no sockets, no asyncio); the responder drives them.
"""

from __future__ import annotations

from edgeagent.mdns.cache import Cache, CacheEntry
from edgeagent.mdns.dump import (
    DumpRow,
    PlaceholderRecord,
    dump_records,
    format_cache,
    format_lines,
    format_record,
    record_to_json,
)
from edgeagent.mdns.table import (
    AGENT_SERVICE_ID,
    AGENT_SERVICE_TYPE,
    SERVICES_META_QUERY,
    Answer,
    RecordTable,
    ServiceSpec,
    label_to_name,
    name_key,
    name_to_label,
    next_host_name,
    next_instance_name,
    record_to_rr,
)

__all__ = [
    "AGENT_SERVICE_ID",
    "AGENT_SERVICE_TYPE",
    "SERVICES_META_QUERY",
    "Answer",
    "Cache",
    "CacheEntry",
    "DumpRow",
    "PlaceholderRecord",
    "RecordTable",
    "ServiceSpec",
    "dump_records",
    "format_cache",
    "format_lines",
    "format_record",
    "label_to_name",
    "name_key",
    "name_to_label",
    "next_host_name",
    "next_instance_name",
    "record_to_json",
    "record_to_rr",
]

"""The records this device advertises over mDNS, and the answers it gives (pure, no I/O).

Theory of operation
-------------------
A ``RecordTable`` is an immutable value built from the host names and DNS-SD services in the
configuration. It knows nothing about sockets: the responder asks it for ``records_for(iface)``
(what to announce, or say goodbye to, on one interface) and ``query(name, rtype, iface)`` (what to
answer a question that arrived on one interface). Address records always carry the addresses of
the interface the question arrived on, as MdnsLite does, so a multi-homed device never hands out
an address the asker cannot reach. Renames after a conflict (RFC 6762 §9) and runtime service
changes produce a new table; the responder diffs old and new ``records_for`` to know what to
announce and what to say goodbye to.

Names
-----
Record names are text without the trailing dot (the ``Record`` convention). DNS-SD instance labels
may hold any UTF-8, spaces and even dots (RFC 6763 §4.3), which neither dnslib's string parser
(it splits on every dot and IDNA-encodes non-ASCII) nor plain ``str.split(".")`` handle. So this
module uses RFC 6763 §4.3 presentation text: a literal dot or backslash inside a label is written
``\\.`` / ``\\\\``, bytes may be written ``\\DDD`` (which is also how dnslib prints non-printable
bytes), everything else is the UTF-8 text itself. ``name_to_label``/``label_to_name`` convert
between that text and dnslib's ``DNSLabel`` (a tuple of raw byte labels); ``name_key`` is the
case-insensitive comparison key (RFC 6762 §16) and accepts either form. ``record_to_rr`` packs a
``Record`` with the right labels (``Record.to_rr`` goes through dnslib's string parser, which is
only correct for plain ASCII names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dnslib import NSEC, PTR, RR, SRV, DNSLabel

from edgeagent.config.model import MdnsConfig

# Re-exported: the responder, cache and dump know these names from here.
from edgeagent.dns.names import NameKey as NameKey
from edgeagent.dns.names import escape_label as escape_label
from edgeagent.dns.names import label_to_name as label_to_name
from edgeagent.dns.names import name_key as name_key
from edgeagent.dns.names import name_to_label as name_to_label
from edgeagent.dns.names import split_name
from edgeagent.dns.records import (
    Record,
    RType,
    a_record,
    aaaa_record,
    reverse_name,
    txt_record,
    type_name,
)
from edgeagent.errors import ConfigError
from edgeagent.net.model import InterfaceInfo

# RFC 6763 §9: browsing for service types.
SERVICES_META_QUERY = "_services._dns-sd._udp.local"
# The agent's own service, advertised when ``mdns.advertise_agent`` is set.
AGENT_SERVICE_ID = "edgeagent"
AGENT_SERVICE_TYPE = "_edgeagent._tcp"

_MAX_LABEL = 63  # RFC 1035 §2.3.4
_MAX_NAME = 255
_MAX_TXT_STRING = 255  # RFC 6763 §6.1
# RFC 6763 §7: "_" + 1-15 letters, digits and hyphens, then "._tcp" or "._udp".
_SERVICE_TYPE = re.compile(r"_[A-Za-z0-9](?:[A-Za-z0-9-]{0,13}[A-Za-z0-9])?\._(?:tcp|udp)")
_CONFLICT_SUFFIX = re.compile(r"^(?P<base>.*) \((?P<n>[0-9]+)\)$")
_HOST_SUFFIX = re.compile(r"^(?P<base>.*)-(?P<n>[0-9]+)$")


# --------------------------------------------------------------------------------------------
# Names


def record_to_rr(record: Record, *, mdns: bool = False, ttl: int | None = None) -> RR:
    """Like ``Record.to_rr`` but packs the owner name label by label (UTF-8, escaped dots)."""
    return record.to_rr(mdns=mdns, ttl=ttl)


def next_instance_name(instance: str) -> str:
    """The name to try after a conflict (RFC 6762 §9): ``"Printer"`` -> ``"Printer (2)"``."""
    match = _CONFLICT_SUFFIX.match(instance)
    base, n = (match["base"], int(match["n"]) + 1) if match else (instance, 2)
    suffix = f" ({n})"
    return _truncate_utf8(base, _MAX_LABEL - len(suffix)) + suffix


def next_host_name(host: str) -> str:
    """The host name to try after a conflict: ``"edge"`` -> ``"edge-2"`` -> ``"edge-3"``."""
    match = _HOST_SUFFIX.match(host)
    if match and match["base"] and not match["n"].startswith("0"):
        base, n = match["base"], int(match["n"]) + 1
    else:
        base, n = host, 2
    suffix = f"-{n}"
    return _truncate_utf8(base, _MAX_LABEL - len(suffix)) + suffix


# --------------------------------------------------------------------------------------------
# Table


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One DNS-SD service as advertised. Raises ``ValueError`` when it cannot be advertised."""

    id: str
    type: str  # "_ssh._tcp"
    instance: str  # instance label, any UTF-8 (RFC 6763 §4.1.1), e.g. "Greenhouse 1"
    port: int
    txt: tuple[tuple[str, str], ...] = ()
    priority: int = 0
    weight: int = 0

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("service id must not be empty")
        if not _SERVICE_TYPE.fullmatch(self.type):
            raise ValueError(
                f"service type {self.type!r} must look like '_name._tcp' or '_name._udp' "
                "(name: 1-15 letters, digits or hyphens; RFC 6763 §7)"
            )
        _check_label(self.instance, "instance name")
        for field_name in ("port", "priority", "weight"):
            value = getattr(self, field_name)
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"{field_name} {value} is outside 0..65535")
        for key, value in self.txt:
            if not key or "=" in key or not all(" " <= ch <= "~" for ch in key):
                raise ValueError(
                    f"TXT key {key!r} must be non-empty printable ASCII without '=' (RFC 6763 §6.4)"
                )
            if len(f"{key}={value}".encode()) > _MAX_TXT_STRING:
                raise ValueError(f"TXT entry {key!r} is longer than 255 bytes (RFC 6763 §6.1)")

    @property
    def instance_fqdn(self) -> str:
        """``"Greenhouse 1._ssh._tcp.local"`` (a dot in the instance is escaped as ``\\.``)."""
        return f"{escape_label(self.instance)}.{self.type_fqdn}"

    @property
    def type_fqdn(self) -> str:
        return f"{self.type}.local"

    def txt_items(self) -> list[bytes]:
        return [f"{key}={value}".encode() for key, value in self.txt]


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send for one question: answers, then recommended additionals (RFC 6763 §12)."""

    answers: tuple[Record, ...]
    additionals: tuple[Record, ...]

    def __bool__(self) -> bool:
        return bool(self.answers)


class RecordTable:
    """Immutable: renames/service changes produce a new table (``with_hosts``/``with_service``...).

    ``hosts`` are labels without ``.local``; ``hosts[0]`` is the primary host that SRV records
    target, the others are aliases with the same addresses. Raises ``ValueError`` for hosts or
    services that cannot be advertised (duplicate ids, two services with one instance name).
    """

    __slots__ = (
        "_answer_memo",
        "_hosts",
        "_index_memo",
        "_instance_keys",
        "_services",
        "_ttl",
        "_unique_keys",
    )

    def __init__(self, *, hosts: Sequence[str], services: Sequence[ServiceSpec], ttl: int) -> None:
        if not 0 < ttl < 2**31:
            raise ValueError(f"ttl {ttl} must be between 1 and 2^31-1 seconds")
        self._ttl = ttl
        self._hosts = _dedupe_hosts(hosts)
        ids: set[str] = set()
        instances: dict[NameKey, ServiceSpec] = {}
        for spec in services:
            if spec.id in ids:
                raise ValueError(f"two services have the id {spec.id!r}")
            ids.add(spec.id)
            key = name_key(spec.instance_fqdn)
            if key in instances:
                raise ValueError(
                    f"services {instances[key].id!r} and {spec.id!r} both advertise "
                    f"{spec.instance_fqdn!r}"
                )
            instances[key] = spec
        self._services = tuple(services)
        self._instance_keys = frozenset(instances)
        self._unique_keys = frozenset(name_key(n) for n in self.unique_names())
        self._index_memo: dict[InterfaceInfo, dict[NameKey, list[Record]]] = {}
        # The table never changes, so neither does the answer to a question: at 50 peers each
        # device answers the same few questions hundreds of times a minute.
        self._answer_memo: dict[tuple[InterfaceInfo, NameKey, int], Answer] = {}

    @classmethod
    def from_config(
        cls, mdns: MdnsConfig, *, agent_txt: Mapping[str, str] | None = None
    ) -> RecordTable:
        """Build the table from configuration; problems are reported together as ``ConfigError``.

        The agent's own ``_edgeagent._tcp`` service (port ``mdns.agent_port``, TXT from
        ``agent_txt``) is added when ``mdns.advertise_agent`` is set. A service without an
        ``instance_name`` uses ``mdns.instance_name`` (or the first host when that is empty).
        """
        issues: list[str] = []
        default_instance = mdns.instance_name or (mdns.hosts[0] if mdns.hosts else "")
        specs: list[ServiceSpec] = []
        for i, svc in enumerate(mdns.services):
            try:
                specs.append(
                    ServiceSpec(
                        id=svc.id,
                        type=svc.type,
                        instance=svc.instance_name or default_instance,
                        port=svc.port,
                        txt=svc.txt,
                        priority=svc.priority,
                        weight=svc.weight,
                    )
                )
            except ValueError as exc:
                issues.append(f"mdns.services[{i}] ({svc.id}): {exc}")
        if mdns.advertise_agent:
            try:
                specs.append(
                    ServiceSpec(
                        id=AGENT_SERVICE_ID,
                        type=AGENT_SERVICE_TYPE,
                        instance=default_instance,
                        port=mdns.agent_port,
                        txt=tuple(sorted((agent_txt or {}).items())),
                    )
                )
            except ValueError as exc:
                issues.append(f"mdns (agent service): {exc}")
        if not issues:
            try:
                return cls(hosts=mdns.hosts, services=specs, ttl=mdns.ttl)
            except ValueError as exc:
                issues.append(f"mdns: {exc}")
        raise ConfigError(issues)

    # -- value semantics -------------------------------------------------------------------

    @property
    def hosts(self) -> tuple[str, ...]:
        return self._hosts

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return self._services

    @property
    def ttl(self) -> int:
        return self._ttl

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordTable):
            return NotImplemented
        return (self._hosts, self._services, self._ttl) == (
            other._hosts,
            other._services,
            other._ttl,
        )

    def __hash__(self) -> int:
        return hash((self._hosts, self._services, self._ttl))

    def __repr__(self) -> str:
        ids = [s.id for s in self._services]
        return f"RecordTable(hosts={self._hosts!r}, services={ids!r}, ttl={self._ttl})"

    # -- derived tables --------------------------------------------------------------------

    def with_hosts(self, hosts: Sequence[str]) -> RecordTable:
        return RecordTable(hosts=hosts, services=self._services, ttl=self._ttl)

    def with_service(self, spec: ServiceSpec) -> RecordTable:
        """Add ``spec``, or replace the service with the same id (keeping its position)."""
        if any(s.id == spec.id for s in self._services):
            services = [spec if s.id == spec.id else s for s in self._services]
        else:
            services = [*self._services, spec]
        return RecordTable(hosts=self._hosts, services=services, ttl=self._ttl)

    def without_service(self, id: str) -> RecordTable:
        """Remove the service ``id``; removing an unknown id returns an equal table."""
        services = [s for s in self._services if s.id != id]
        return RecordTable(hosts=self._hosts, services=services, ttl=self._ttl)

    def with_service_instance(self, id: str, instance: str) -> RecordTable:
        """Rename one service's instance (after a conflict, RFC 6762 §9). KeyError if unknown."""
        for spec in self._services:
            if spec.id == id:
                return self.with_service(
                    ServiceSpec(
                        id=spec.id,
                        type=spec.type,
                        instance=instance,
                        port=spec.port,
                        txt=spec.txt,
                        priority=spec.priority,
                        weight=spec.weight,
                    )
                )
        raise KeyError(f"no service with id {id!r}")

    def with_ttl(self, ttl: int) -> RecordTable:
        return RecordTable(hosts=self._hosts, services=self._services, ttl=ttl)

    def service(self, id: str) -> ServiceSpec | None:
        return next((s for s in self._services if s.id == id), None)

    # -- records -----------------------------------------------------------------------------

    @property
    def host_names(self) -> tuple[str, ...]:
        """``("edge-2e6d.local", "alias.local")``; the first is the SRV target."""
        return tuple(f"{host}.local" for host in self._hosts)

    def records_for(self, iface: InterfaceInfo) -> list[Record]:
        """Every record advertised on ``iface`` (announcements, goodbyes, ``info``).

        Address records and reverse PTRs (to the primary host only) use that interface's
        addresses; A/AAAA/SRV/TXT and
        reverse PTRs are unique (cache-flush), the service and meta-query PTRs are shared.
        NSEC records (negative answers) are not advertised and so are not listed here.
        """
        ttl = self._ttl
        records: list[Record] = []
        for host in self.host_names:
            records.extend(a_record(host, addr, ttl) for addr in iface.ipv4)
            records.extend(aaaa_record(host, addr, ttl) for addr in iface.ipv6)
        # One canonical name per address: reverse lookups (``dig -x``, ``getnameinfo``) expect
        # a single answer, and aliases are for forward lookups (MdnsLite does the same).
        primary = self.host_names[0]
        records.extend(_ptr(reverse_name(a), primary, ttl, unique=True) for a in iface.addresses)
        records.extend(self._service_records())
        # An interface may list an address twice (e.g. two prefixes); advertise it once.
        unique: dict[tuple[str, int, str], Record] = {}
        for record in records:
            unique.setdefault(record.key, record)
        return list(unique.values())

    def unique_names(self) -> list[str]:
        """Names to probe before use (RFC 6762 §8): each ``host.local`` and service instance."""
        return [*self.host_names, *(spec.instance_fqdn for spec in self._services)]

    def owns(self, name: str | DNSLabel) -> bool:
        """True for the names we hold unique records for (hosts and service instances).

        Shared names (``_ssh._tcp.local``, the meta-query) and reverse names are not owned.
        """
        return name_key(name) in self._unique_keys

    def query(self, name: str | DNSLabel, rtype: int, iface: InterfaceInfo) -> Answer:
        """Answer one question that arrived on ``iface``. Names compare case-insensitively.

        ``RType.ANY`` matches every type. Additionals follow RFC 6763 §12 (PTR -> SRV, TXT and
        the target's addresses; SRV -> addresses) and RFC 6762 §6.2 (an address answer brings
        the other family, or an NSEC saying there is none). For an owned name asked for a type
        it does not have on this interface, the answer is an NSEC record (RFC 6762 §6.1).
        """
        key = name_key(name)
        memo_key = (iface, key, rtype)
        answer = self._answer_memo.get(memo_key)
        if answer is None:
            answer = self._answer(key, rtype, iface)
            if len(self._answer_memo) >= 256:  # questions about names we lack vary freely
                self._answer_memo.clear()
            self._answer_memo[memo_key] = answer
        return answer

    def _answer(self, key: NameKey, rtype: int, iface: InterfaceInfo) -> Answer:
        index = self._index(iface)
        records = index.get(key, [])
        if rtype == RType.NSEC and key in self._unique_keys and records:
            return Answer((self._nsec(records),), ())
        answers = [r for r in records if rtype in (RType.ANY, r.rtype)]
        if not answers:
            if key in self._unique_keys and records:
                return Answer((self._nsec(records),), ())
            return Answer((), ())
        return Answer(tuple(answers), tuple(self._additionals(answers, index)))

    def lookup_any_interface(
        self, name: str | DNSLabel, rtype: int, interfaces: Sequence[InterfaceInfo]
    ) -> list[Record]:
        """Own records for ``name`` across all ``interfaces``, deduplicated (for the DNS bridge).

        Service records do not depend on an interface and are found even with no interfaces.
        """
        key = name_key(name)
        found: dict[tuple[str, int, str], Record] = {}
        for iface in interfaces or (InterfaceInfo("", 0),):
            for record in self._index(iface).get(key, []):
                if rtype in (RType.ANY, record.rtype):
                    found.setdefault(record.key, record)
        return list(found.values())

    # -- private -----------------------------------------------------------------------------

    def _service_records(self) -> list[Record]:
        ttl = self._ttl
        primary = self.host_names[0]
        records: list[Record] = []
        types: dict[NameKey, str] = {}
        for spec in self._services:
            instance = spec.instance_fqdn
            records.append(_ptr(spec.type_fqdn, instance, ttl, unique=False))
            records.append(
                Record(
                    instance,
                    RType.SRV,
                    ttl,
                    SRV(spec.priority, spec.weight, spec.port, name_to_label(primary)),
                    unique=True,
                )
            )
            records.append(txt_record(instance, spec.txt_items(), ttl))
            types.setdefault(name_key(spec.type_fqdn), spec.type_fqdn)
        records.extend(
            _ptr(SERVICES_META_QUERY, type_fqdn, ttl, unique=False) for type_fqdn in types.values()
        )
        return records

    def _index(self, iface: InterfaceInfo) -> dict[NameKey, list[Record]]:
        index = self._index_memo.get(iface)
        if index is None:
            index = {}
            for record in self.records_for(iface):
                index.setdefault(name_key(record.name), []).append(record)
            if len(self._index_memo) >= 32:  # interfaces come and go; keep the memo small
                self._index_memo.clear()
            self._index_memo[iface] = index
        return index

    def _additionals(
        self, answers: list[Record], index: dict[NameKey, list[Record]]
    ) -> list[Record]:
        extra: list[Record] = []
        for record in answers:
            if record.rtype == RType.PTR:
                target = name_key(record.data.label)
                if target in self._instance_keys:  # RFC 6763 §12.1
                    records = index.get(target, [])
                    extra.extend(r for r in records if r.rtype in (RType.SRV, RType.TXT))
                    for srv in (r for r in records if r.rtype == RType.SRV):
                        extra.extend(self._addresses_with_nsec(srv.data.target, index))
            elif record.rtype == RType.SRV:  # RFC 6763 §12.2
                extra.extend(self._addresses_with_nsec(record.data.target, index))
            elif record.rtype in (RType.A, RType.AAAA):  # RFC 6762 §6.2
                extra.extend(self._addresses_with_nsec(record.name, index))
        seen = {r.key for r in answers}
        result: list[Record] = []
        for record in extra:
            if record.key not in seen:
                seen.add(record.key)
                result.append(record)
        return result

    def _addresses_with_nsec(
        self, host: str | DNSLabel, index: dict[NameKey, list[Record]]
    ) -> list[Record]:
        records = index.get(name_key(host), [])
        addresses = [r for r in records if r.rtype in (RType.A, RType.AAAA)]
        families = {r.rtype for r in addresses}
        if addresses and families != {RType.A, RType.AAAA}:
            addresses.append(self._nsec(records))
        return addresses

    def _nsec(self, records: list[Record]) -> Record:
        """RFC 6762 §6.1: next name = own name, bitmap = the types the name has here."""
        name = records[0].name
        types = sorted({r.rtype for r in records})
        return Record(
            name,
            RType.NSEC,
            self._ttl,
            NSEC(name_to_label(name), [type_name(t) for t in types]),
            unique=True,
        )


def _ptr(name: str, target: str, ttl: int, *, unique: bool) -> Record:
    # Not records.ptr_record: its target goes through dnslib's string parser (IDNA, dots).
    return Record(name, RType.PTR, ttl, PTR(name_to_label(target)), unique=unique)


def _dedupe_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    result: list[str] = []
    seen: set[NameKey] = set()
    for raw in hosts:
        host = raw[:-1] if raw.endswith(".") else raw
        if host.lower().endswith(".local"):
            host = host[: -len(".local")]
        if not host:
            raise ValueError(f"host name {raw!r} is empty")
        for part in split_name(host):
            _check_label(part.decode("utf-8", "surrogateescape"), f"host name {raw!r}")
        if len(name_to_label(host + ".local")) > _MAX_NAME - 2:
            raise ValueError(f"host name {raw!r} is longer than 253 bytes")
        key = name_key(host)
        if key not in seen:
            seen.add(key)
            result.append(host)
    if not result:
        raise ValueError("at least one host name is needed")
    return tuple(result)


def _check_label(text: str, what: str) -> None:
    size = len(text.encode("utf-8", "surrogateescape"))
    if not 1 <= size <= _MAX_LABEL:
        raise ValueError(f"{what} {text!r} must be 1 to 63 bytes of UTF-8 (it is {size})")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError(f"{what} {text!r} must not contain control characters")


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore").rstrip()

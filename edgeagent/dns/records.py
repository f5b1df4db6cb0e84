"""The record model shared by the mDNS table, the cache and the DNS bridge.

A ``Record`` wraps dnslib's rdata (dnslib does parsing and packing only, no I/O) with the
name, type, TTL and the mDNS cache-flush flag. Names are kept without the trailing dot and
compared case-insensitively (RFC 6762 §16).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

from dnslib import AAAA, PTR, QTYPE, RD, RR, SRV, TXT, A, DNSLabel

from edgeagent.dns.names import label_to_name, name_to_label

# RFC 6762 §10.2: the top bit of the class field marks "cache flush" (unique records).
CACHE_FLUSH = 0x8000
# RFC 6762 §5.4: the top bit of a question's class asks for a unicast response (QU).
UNICAST_RESPONSE = 0x8000
CLASS_IN = 1


class RType(IntEnum):
    A = 1
    PTR = 12
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    NSEC = 47
    ANY = 255


def normalize_name(name: str | DNSLabel) -> str:
    """Lower-case text form without the trailing dot: the key we compare names by."""
    text = str(name)
    if text.endswith("."):
        text = text[:-1]
    return text.lower()


def type_name(rtype: int) -> str:
    """``1`` -> ``"A"``; unknown numbers come back as ``TYPE<n>`` (RFC 3597)."""
    try:
        return str(QTYPE[rtype])
    except Exception:  # dnslib raises its own error type for unknown codes
        return f"TYPE{rtype}"


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. ``data`` is dnslib rdata; ``key`` identifies the record set member."""

    name: str
    rtype: int
    ttl: int
    data: RD
    unique: bool = False  # mDNS "unique" record: sent with the cache-flush bit

    @property
    def key(self) -> tuple[str, int, str]:
        return (normalize_name(self.name), self.rtype, self.data_text)

    @property
    def data_text(self) -> str:
        """Zone-file text of the data: ``10.0.0.5``, ``0 0 22 edge.local.``, ``"a=b"``."""
        return str(self.data.toZone())

    def with_ttl(self, ttl: int) -> Record:
        return Record(self.name, self.rtype, ttl, self.data, self.unique)

    def to_rr(self, *, mdns: bool = False, ttl: int | None = None) -> RR:
        """Pack label by label (UTF-8 instance names, escaped dots: see ``dns.names``)."""
        rclass = CLASS_IN | (CACHE_FLUSH if mdns and self.unique else 0)
        return RR(
            name_to_label(self.name),
            self.rtype,
            rclass=rclass,
            ttl=self.ttl if ttl is None else ttl,
            rdata=self.data,
        )

    @classmethod
    def from_rr(cls, rr: RR) -> Record:
        return cls(
            name=label_to_name(rr.rname),
            rtype=int(rr.rtype),
            ttl=int(rr.ttl),
            data=rr.rdata,
            unique=bool(rr.rclass & CACHE_FLUSH),
        )


def a_record(name: str, address: str, ttl: int) -> Record:
    return Record(name, RType.A, ttl, A(address), unique=True)


def aaaa_record(name: str, address: str, ttl: int) -> Record:
    return Record(name, RType.AAAA, ttl, AAAA(address), unique=True)


def address_record(name: str, address: str, ttl: int) -> Record:
    ip = ipaddress.ip_address(address)
    return aaaa_record(name, address, ttl) if ip.version == 6 else a_record(name, address, ttl)


def ptr_record(name: str, target: str, ttl: int, *, unique: bool = False) -> Record:
    return Record(name, RType.PTR, ttl, PTR(target + "."), unique=unique)


def srv_record(
    name: str, target: str, port: int, ttl: int, *, priority: int = 0, weight: int = 0
) -> Record:
    return Record(name, RType.SRV, ttl, SRV(priority, weight, port, target + "."), unique=True)


def txt_record(name: str, items: list[bytes], ttl: int) -> Record:
    # RFC 6763 §6.1: an empty TXT record holds a single zero-length string.
    return Record(name, RType.TXT, ttl, TXT(items or [b""]), unique=True)


def reverse_name(address: str) -> str:
    """``10.0.0.5`` -> ``5.0.0.10.in-addr.arpa`` (and the nibble form for IPv6)."""
    return normalize_name(ipaddress.ip_address(address).reverse_pointer)


def address_from_reverse(name: str) -> str | None:
    """The inverse of ``reverse_name``; None when ``name`` is not a full reverse name."""
    labels = normalize_name(name).split(".")
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        except ValueError:
            return None
    if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        try:
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
        except ValueError:
            return None
    return None

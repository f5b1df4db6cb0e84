"""Unit and property tests for the mDNS cache (edgeagent.mdns.cache)."""

from __future__ import annotations

import pytest
from dnslib import DNSLabel
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.dns.records import (
    Record,
    RType,
    a_record,
    aaaa_record,
    ptr_record,
    srv_record,
    txt_record,
)
from edgeagent.mdns.cache import Cache, CacheEntry
from edgeagent.mdns.table import name_to_label


def shared(record: Record) -> Record:
    return Record(record.name, record.rtype, record.ttl, record.data, unique=False)


def datas(records: list[Record]) -> list[str]:
    return sorted(r.data_text for r in records)


def test_insert_and_lookup_with_remaining_ttl() -> None:
    cache = Cache()
    assert cache.insert(
        100.0, "eth0", a_record("printer.local", "10.0.0.7", 120), source="10.0.0.7"
    )
    assert len(cache) == 1
    [found] = cache.lookup(130.4, "PRINTER.local", RType.A)
    assert found.data_text == "10.0.0.7"
    assert found.ttl == 89  # 120 - 30.4, whole seconds
    assert found.unique
    assert cache.lookup(130.0, "printer.local", RType.AAAA) == []
    assert cache.lookup(130.0, "printer.local.", RType.ANY)[0].rtype == RType.A
    assert cache.lookup(130.0, DNSLabel("Printer.Local"), RType.A)
    assert cache.has_name(130.0, "printer.local")
    assert not cache.has_name(130.0, "scanner.local")


def test_remaining_ttl_is_at_least_one_until_expiry() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("p.local", "10.0.0.7", 10))
    assert [r.ttl for r in cache.lookup(9.9, "p.local", RType.A)] == [1]
    assert cache.lookup(10.0, "p.local", RType.A) == []
    assert not cache.has_name(10.0, "p.local")


def test_ttl_is_clamped() -> None:
    cache = Cache(max_ttl=4500)
    cache.insert(0.0, "eth0", a_record("p.local", "10.0.0.7", 2**31 - 1))
    assert [r.ttl for r in cache.lookup(0.0, "p.local", RType.A)] == [4500]
    assert cache.lookup(4500.0, "p.local", RType.A) == []


def test_goodbye_expires_in_one_second() -> None:
    cache = Cache()
    record = shared(ptr_record("_ssh._tcp.local", "a._ssh._tcp.local", 4500))
    cache.insert(0.0, "eth0", record)
    generation = cache.generation
    assert cache.insert(10.0, "eth0", record.with_ttl(0))
    assert cache.generation == generation + 1
    assert [r.ttl for r in cache.lookup(10.5, "_ssh._tcp.local", RType.PTR)] == [1]
    assert cache.lookup(11.0, "_ssh._tcp.local", RType.PTR) == []
    # A second goodbye, or one for a record we never had, changes nothing.
    assert not cache.insert(10.2, "eth0", record.with_ttl(0))
    assert not cache.insert(10.2, "eth0", shared(ptr_record("_x._tcp.local", "b", 0)))
    assert cache.expire(11.0) == 1
    assert len(cache) == 0


def test_cache_flush_replaces_older_records_of_the_rrset() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("p.local", "10.0.0.7", 120))
    cache.insert(0.0, "eth0", a_record("p.local", "10.0.0.8", 120))
    cache.insert(0.0, "wlan0", a_record("p.local", "192.168.1.9", 120))
    cache.insert(0.0, "eth0", aaaa_record("p.local", "fe80::7", 120))
    assert cache.insert(5.0, "eth0", a_record("p.local", "10.0.0.9", 120))
    assert datas(cache.lookup(5.5, "p.local", RType.A)) == [
        "10.0.0.7",
        "10.0.0.8",
        "10.0.0.9",
        "192.168.1.9",
    ]
    # One second later only the new address remains on eth0; other interfaces and types stay.
    assert datas(cache.lookup(6.0, "p.local", RType.A)) == ["10.0.0.9", "192.168.1.9"]
    assert datas(cache.lookup(6.0, "p.local", RType.AAAA)) == ["fe80::7"]


def test_cache_flush_spares_records_from_the_same_second() -> None:
    # RFC 6762 §10.2: members of one RRset may arrive in several packets in quick succession.
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("p.local", "10.0.0.7", 120))
    cache.insert(0.5, "eth0", a_record("p.local", "10.0.0.8", 120))
    assert datas(cache.lookup(10.0, "p.local", RType.A)) == ["10.0.0.7", "10.0.0.8"]


def test_shared_records_do_not_flush() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", shared(ptr_record("_ssh._tcp.local", "a._ssh._tcp.local", 120)))
    cache.insert(5.0, "eth0", shared(ptr_record("_ssh._tcp.local", "b._ssh._tcp.local", 120)))
    assert len(cache.lookup(10.0, "_ssh._tcp.local", RType.PTR)) == 2


def test_generation_tracks_visible_changes_only() -> None:
    cache = Cache()
    record = a_record("p.local", "10.0.0.7", 120)
    assert cache.generation == 0
    assert cache.insert(0.0, "eth0", record)
    assert cache.generation == 1
    # A re-announcement only extends the expiry: lookups stay valid, nothing to invalidate.
    assert not cache.insert(60.0, "eth0", record)
    assert cache.generation == 1
    assert [r.ttl for r in cache.lookup(60.0, "p.local", RType.A)] == [120]
    # A shorter TTL brings the expiry forward: that is a change.
    assert cache.insert(61.0, "eth0", record.with_ttl(10))
    assert cache.generation == 2
    # The same record on another interface is a new entry.
    assert cache.insert(61.0, "wlan0", record)
    assert len(cache) == 2
    assert len(cache.lookup(61.0, "p.local", RType.A)) == 1  # deduplicated across interfaces
    assert cache.lookup(61.0, "p.local", RType.A)[0].ttl == 120  # the longest-lived copy
    assert cache.expire(71.0) == 1
    assert cache.generation == 4
    assert cache.expire(71.0) == 0
    assert cache.generation == 4


def test_bounded_evicts_soonest_to_expire() -> None:
    cache = Cache(max_records=3)
    cache.insert(0.0, "eth0", a_record("a.local", "10.0.0.1", 300))
    cache.insert(0.0, "eth0", a_record("b.local", "10.0.0.2", 100))
    cache.insert(0.0, "wlan0", a_record("c.local", "10.0.0.3", 200))
    generation = cache.generation
    assert cache.insert(1.0, "eth0", a_record("d.local", "10.0.0.4", 50))
    assert len(cache) == 3
    assert not cache.has_name(1.0, "b.local")
    assert all(cache.has_name(1.0, n) for n in ("a.local", "c.local", "d.local"))
    assert cache.generation > generation
    # Expired entries are dropped before anything live is evicted.
    assert cache.insert(60.0, "eth0", a_record("e.local", "10.0.0.5", 10))
    assert not cache.has_name(60.0, "d.local")
    assert cache.has_name(60.0, "a.local")
    assert cache.has_name(60.0, "c.local")


def test_reverse_lookup_from_cached_addresses() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("printer.local", "10.0.0.5", 120))
    cache.insert(0.0, "eth0", aaaa_record("printer.local", "fe80::5", 120))
    cache.insert(0.0, "wlan0", a_record("printer.local", "10.0.0.5", 60))
    [ptr] = cache.lookup(10.0, "5.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True)
    assert ptr.name == "5.0.0.10.in-addr.arpa"
    assert ptr.rtype == RType.PTR
    assert ptr.data_text == "printer.local."
    assert ptr.ttl == 110
    v6 = cache.lookup(
        10.0,
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa",
        RType.ANY,
        synthesize_reverse=True,
    )
    assert [r.data_text for r in v6] == ["printer.local."]
    assert cache.has_name(10.0, "5.0.0.10.IN-ADDR.ARPA", synthesize_reverse=True)
    assert cache.lookup(10.0, "6.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True) == []
    assert cache.lookup(200.0, "5.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True) == []
    # A real cached PTR is returned alongside, without duplicates.
    cache.insert(0.0, "eth0", ptr_record("5.0.0.10.in-addr.arpa", "Printer.local", 120))
    assert len(cache.lookup(10.0, "5.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True)) == 1


def test_reverse_lookup_keeps_utf8_host_names() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("drücker.local", "10.0.0.5", 120))
    [ptr] = cache.lookup(0.0, "5.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True)
    assert ptr.data.label == name_to_label("drücker.local").label


def test_pseudo_records_are_ignored() -> None:
    cache = Cache()
    opt = Record("", RType.OPT, 0, txt_record("x", [], 0).data)
    assert not cache.insert(0.0, "eth0", opt)
    assert len(cache) == 0
    assert cache.generation == 0


def test_entries_for_info() -> None:
    cache = Cache()
    cache.insert(0.0, "wlan0", a_record("b.local", "192.168.1.2", 120), source="192.168.1.2")
    cache.insert(0.0, "eth0", srv_record("x._ssh._tcp.local", "a.local", 22, 120))
    cache.insert(0.0, "eth0", a_record("a.local", "10.0.0.1", 120), source="10.0.0.1")
    cache.insert(0.0, "eth0", a_record("gone.local", "10.0.0.9", 5))
    entries = cache.entries(30.0)
    assert list(entries) == ["eth0", "wlan0"]
    eth0 = entries["eth0"]
    assert [e.record.name for e in eth0] == ["a.local", "x._ssh._tcp.local"]
    assert all(isinstance(e, CacheEntry) for e in eth0)
    assert eth0[0].record.ttl == 90
    assert eth0[0].source == "10.0.0.1"
    assert eth0[0].received_at == 0.0
    assert eth0[0].expires_at == 120.0
    assert eth0[1].source is None
    # entries() reads; it does not expire.
    assert len(cache) == 4
    # live_entries(): the same live entries, as stored (TTL as received), in no set order
    live = cache.live_entries(30.0)
    assert {i: sorted(e.record.name for e in es) for i, es in live.items()} == {
        "eth0": ["a.local", "x._ssh._tcp.local"],
        "wlan0": ["b.local"],
    }
    assert {e.record.ttl for es in live.values() for e in es} == {120}


def test_drop_interface() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("a.local", "10.0.0.1", 120))
    cache.insert(0.0, "wlan0", a_record("b.local", "10.0.0.2", 120))
    assert cache.drop_interface("eth0") == 1
    assert cache.drop_interface("eth0") == 0
    assert len(cache) == 1
    assert not cache.has_name(0.0, "a.local")


def test_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="max_records"):
        Cache(max_records=0)
    with pytest.raises(ValueError, match="max_ttl"):
        Cache(max_ttl=0)


# ----------------------------------------------------------------------------- properties

names = st.sampled_from(["a.local", "B.local", "b.local", "c.local"])
records = st.builds(
    lambda name, last, ttl, unique, six: Record(
        name,
        RType.AAAA if six else RType.A,
        ttl,
        (aaaa_record if six else a_record)(
            name, f"fe80::{last}" if six else f"10.0.0.{last}", ttl
        ).data,
        unique=unique,
    ),
    names,
    st.integers(1, 6),
    st.sampled_from([0, 1, 2, 10, 120, 10_000]),
    st.booleans(),
    st.booleans(),
)
operations = st.lists(
    st.tuples(
        st.floats(0.0, 5.0, allow_nan=False),  # time step
        st.sampled_from(["insert", "expire", "lookup"]),
        st.sampled_from(["eth0", "wlan0"]),
        records,
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(operations, st.integers(1, 8))
def test_cache_invariants(ops: list[tuple[float, str, str, Record]], max_records: int) -> None:
    cache = Cache(max_records=max_records, max_ttl=100)
    now = 0.0
    for step, op, iface, record in ops:
        now += step
        before = cache.generation
        if op == "insert":
            changed = cache.insert(now, iface, record)
            assert (cache.generation > before) == changed
            if record.ttl > 0:
                live = cache.lookup(now, record.name, record.rtype)
                assert record.data_text in {r.data_text for r in live}
        elif op == "expire":
            dropped = cache.expire(now)
            assert (cache.generation > before) == (dropped > 0)
            assert all(e.expires_at > now for es in cache.entries(now).values() for e in es)
        else:
            for found in cache.lookup(now, record.name, RType.ANY):
                assert 1 <= found.ttl <= 100
            assert cache.generation == before
        assert cache.generation >= before
        assert len(cache) <= max_records
        assert len(cache) == sum(len(v) for v in cache._by_iface.values())
        # the record-set index lists exactly the stored keys
        indexed = {(i, k) for (i, _, _), keys in cache._sets.items() for k in keys}
        assert indexed == {(i, k) for i, es in cache._by_iface.items() for k in es}
        for entries in cache.entries(now).values():
            for entry in entries:
                assert entry.expires_at > now
                assert entry.expires_at - entry.received_at <= 100 + 1e-6


@settings(max_examples=200)
@given(operations)
def test_lookup_matches_a_simple_model_without_flush_or_eviction(
    ops: list[tuple[float, str, str, Record]],
) -> None:
    cache = Cache(max_records=10_000, max_ttl=100)
    model: dict[tuple[str, str, int, str], float] = {}  # (iface, name, type, data) -> expiry
    now = 0.0
    for step, _, iface, raw in ops:
        now += step
        record = shared(raw)
        key = (iface, record.name.lower(), record.rtype, record.data_text)
        if record.ttl == 0:
            if key in model and model[key] > now + 1:
                model[key] = now + 1
        else:
            model[key] = now + min(record.ttl, 100)
        cache.insert(now, iface, record)
        for name in ("a.local", "b.local", "c.local"):
            expected = {
                (rtype, data)
                for (_, n, rtype, data), expiry in model.items()
                if n == name and expiry > now
            }
            got = {(r.rtype, r.data_text) for r in cache.lookup(now, name, RType.ANY)}
            assert got == expected


def test_ptr_targets_compare_by_labels_and_ignore_case() -> None:
    from dnslib import PTR

    cache = Cache()
    dotted = Record(
        "_ipp._tcp.local", RType.PTR, 120, PTR(name_to_label("My\\.Printer._ipp._tcp.local"))
    )
    split = Record(
        "_ipp._tcp.local", RType.PTR, 120, PTR(name_to_label("My.Printer._ipp._tcp.local"))
    )
    assert dotted.data_text == split.data_text  # dnslib's text cannot tell them apart
    assert cache.insert(0.0, "eth0", dotted)
    assert cache.insert(0.0, "eth0", split)
    assert len(cache.lookup(0.0, "_ipp._tcp.local", RType.PTR)) == 2
    upper = Record(
        "_ipp._tcp.local", RType.PTR, 120, PTR(name_to_label("MY\\.PRINTER._ipp._tcp.local"))
    )
    cache.insert(1.0, "eth0", upper)  # the same record (new spelling) replaces it
    assert len(cache) == 2
    assert not cache.insert(2.0, "eth0", upper)  # a plain refresh


def test_a_received_reverse_ptr_wins_over_synthesized_ones() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", a_record("edge.local", "10.0.0.9", 120))
    cache.insert(0.0, "eth0", a_record("edge-alias.local", "10.0.0.9", 120))
    assert cache.lookup(1.0, "9.0.0.10.in-addr.arpa", RType.PTR) == []
    synthesized = cache.lookup(1.0, "9.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True)
    assert {r.data_text for r in synthesized} == {"edge.local.", "edge-alias.local."}
    cache.insert(1.0, "eth0", ptr_record("9.0.0.10.in-addr.arpa", "edge.local", 120, unique=True))
    answered = cache.lookup(2.0, "9.0.0.10.in-addr.arpa", RType.PTR, synthesize_reverse=True)
    assert [r.data_text for r in answered] == ["edge.local."]


def test_known_answers_are_per_interface_and_past_half_ttl_only() -> None:
    cache = Cache()
    cache.insert(0.0, "eth0", ptr_record("_x._tcp.local", "a._x._tcp.local", 120))
    cache.insert(50.0, "eth0", ptr_record("_x._tcp.local", "b._x._tcp.local", 120))
    cache.insert(0.0, "wlan0", ptr_record("_x._tcp.local", "c._x._tcp.local", 120))
    known = cache.known_answers(70.0, "eth0", "_x._tcp.local", RType.PTR)
    # a has 50 s of 120 left (< half): not listed; b has 100 s left; c is on another link.
    assert [(r.data_text, r.ttl) for r in known] == [("b._x._tcp.local.", 100)]
    assert cache.known_answers(70.0, "eth1", "_x._tcp.local", RType.PTR) == []


def test_txt_records_are_told_apart_by_their_strings() -> None:
    cache = Cache()
    name = "x._ssh._tcp.local"
    assert cache.insert(0.0, "eth0", txt_record(name, [b"a=1", b"b=2"], 120))
    assert not cache.insert(0.5, "eth0", txt_record(name, [b"a=1", b"b=2"], 120))  # refresh
    # the same bytes split differently are another record
    assert cache.insert(0.6, "eth0", txt_record(name, [b"a=1b=2"], 120))
    assert len(cache.lookup(1.0, name, RType.TXT)) == 2
    # a new unique TXT two seconds later flushes both older ones (RFC 6762 §10.2)
    cache.insert(3.0, "eth0", txt_record(name, [b"a=9"], 120))
    assert [r.data.data for r in cache.lookup(4.5, name, RType.TXT)] == [[b"a=9"]]

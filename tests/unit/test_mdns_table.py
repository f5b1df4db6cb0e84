"""Unit and property tests for the mDNS record table (edgeagent.mdns.table)."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import QTYPE, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.config.model import MdnsConfig, ServiceConfig
from edgeagent.dns.records import Record, RType
from edgeagent.errors import ConfigError
from edgeagent.mdns.table import (
    AGENT_SERVICE_ID,
    SERVICES_META_QUERY,
    RecordTable,
    ServiceSpec,
    label_to_name,
    name_key,
    name_to_label,
    next_host_name,
    next_instance_name,
    record_to_rr,
)
from edgeagent.net.model import InterfaceInfo

ETH0 = InterfaceInfo("eth0", 2, ipv4=("10.0.0.5",), ipv6=("fe80::1",))
WLAN0 = InterfaceInfo("wlan0", 3, ipv4=("192.168.1.7",), ipv6=())
BARE = InterfaceInfo("usb0", 4)

SSH = ServiceSpec("ssh", "_ssh._tcp", "edge-2e6d", 22, txt=(("path", "/"),))
HTTP = ServiceSpec("web", "_http._tcp", "Greenhouse 1", 80, priority=1, weight=5)


def make_table(**kwargs: object) -> RecordTable:
    args: dict[str, object] = {"hosts": ["edge-2e6d", "alias"], "services": [SSH, HTTP], "ttl": 120}
    args.update(kwargs)
    return RecordTable(**args)  # type: ignore[arg-type]


def summary(records: list[Record] | tuple[Record, ...]) -> set[tuple[str, str, str]]:
    return {(r.name.lower(), QTYPE[r.rtype], r.data_text) for r in records}


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("Greenhouse 1._http._tcp.local", (b"Greenhouse 1", b"_http", b"_tcp", b"local")),
        ("Grüne Haus._http._tcp.local", ("Grüne Haus".encode(), b"_http", b"_tcp", b"local")),
        ("My\\.Printer._ipp._tcp.local", (b"My.Printer", b"_ipp", b"_tcp", b"local")),
        ("back\\\\slash.local", (b"back\\slash", b"local")),
        ("edge.local.", (b"edge", b"local")),
        ("", ()),
    ],
)
def test_name_to_label_keeps_instance_labels_whole(text: str, labels: tuple[bytes, ...]) -> None:
    assert name_to_label(text).label == labels


def test_label_to_name_escapes_dots_and_keeps_utf8() -> None:
    label = DNSLabel([b"My.Printer", "Grüne".encode(), b"local"])
    assert label_to_name(label) == "My\\.Printer.Grüne.local"
    assert label_to_name(DNSLabel([b"bad\xff"])) == "bad\\255"


def test_name_key_matches_dnslib_printed_form_and_case() -> None:
    label = name_to_label("Greenhouse 1._http._tcp.local")
    printed = str(label)  # dnslib prints the space as \032
    assert printed == "Greenhouse\\0321._http._tcp.local."
    assert name_key(printed) == name_key("greenhouse 1._HTTP._tcp.local") == name_key(label)
    assert name_key("a\\.b.local") != name_key("a.b.local")


@given(
    st.lists(
        st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1),
        min_size=1,
        max_size=4,
    )
)
def test_label_text_round_trip(labels: list[str]) -> None:
    raw = [label.encode() for label in labels]
    text = label_to_name(raw)
    assert name_to_label(text).label == tuple(raw)


@pytest.mark.parametrize(
    "instance", ["Greenhouse 1", "Grüne Haus", "温室 2", "My.Printer", "a\\b", "x" * 63]
)
def test_instance_names_round_trip_through_dnslib_pack(instance: str) -> None:
    spec = ServiceSpec("web", "_http._tcp", instance, 80)
    table = RecordTable(hosts=["edge"], services=[spec], ttl=120)
    message = DNSRecord()
    for record in table.records_for(ETH0):
        message.add_answer(record_to_rr(record, mdns=True))
    parsed = DNSRecord.parse(message.pack())
    srv = next(rr for rr in parsed.rr if rr.rtype == RType.SRV)
    assert srv.rname.label[0] == instance.encode()  # one label, raw UTF-8, no IDNA
    assert label_to_name(srv.rname) == spec.instance_fqdn
    ptr = next(
        rr for rr in parsed.rr if rr.rtype == RType.PTR and str(rr.rname) == "_http._tcp.local."
    )
    assert name_key(ptr.rdata.label) == name_key(spec.instance_fqdn)
    assert srv.rclass & 0x8000
    assert not ptr.rclass & 0x8000
    # A question for that name, as parsed from the wire, is answered.
    assert table.query(srv.rname, RType.SRV, ETH0).answers
    # dnslib prints a dot or backslash inside a label unescaped, so its text is ambiguous for
    # those; the responder passes the DNSLabel itself. Other names survive dnslib's text form.
    if "." not in instance and "\\" not in instance:
        assert table.query(str(srv.rname), RType.SRV, ETH0).answers


def test_conflict_renames() -> None:
    assert next_instance_name("Printer") == "Printer (2)"
    assert next_instance_name("Printer (2)") == "Printer (3)"
    assert len(next_instance_name("é" * 40).encode()) <= 63
    assert next_host_name("edge") == "edge-2"
    assert next_host_name("edge-2") == "edge-3"
    assert next_host_name("edge-2e6d") == "edge-2e6d-2"
    assert len(next_host_name("x" * 63)) == 63


# ----------------------------------------------------------------------------- specs


def test_service_spec_names() -> None:
    assert HTTP.instance_fqdn == "Greenhouse 1._http._tcp.local"
    assert HTTP.type_fqdn == "_http._tcp.local"
    assert ServiceSpec("p", "_ipp._tcp", "My.Printer", 631).instance_fqdn == (
        "My\\.Printer._ipp._tcp.local"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "ssh._tcp"}, "service type"),
        ({"type": "_ssh._sctp"}, "service type"),
        ({"type": "_a-very-long-service-name._tcp"}, "service type"),
        ({"instance": ""}, "1 to 63 bytes"),
        ({"instance": "é" * 32}, "1 to 63 bytes"),
        ({"instance": "tab\there"}, "control"),
        ({"port": 70000}, "port"),
        ({"txt": (("", "x"),)}, "TXT key"),
        ({"txt": (("a=b", "x"),)}, "TXT key"),
        ({"txt": (("k", "v" * 300),)}, "255"),
        ({"id": ""}, "id"),
    ],
)
def test_service_spec_rejects(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"id": "x", "type": "_ssh._tcp", "instance": "edge", "port": 22}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ServiceSpec(**args)  # type: ignore[arg-type]


def test_table_rejects_duplicates_and_bad_hosts() -> None:
    with pytest.raises(ValueError, match="id 'ssh'"):
        make_table(services=[SSH, SSH])
    with pytest.raises(ValueError, match="both advertise"):
        make_table(services=[SSH, ServiceSpec("ssh2", "_SSH._tcp", "EDGE-2E6D", 2222)])
    with pytest.raises(ValueError, match="at least one host"):
        make_table(hosts=[])
    with pytest.raises(ValueError, match="1 to 63"):
        make_table(hosts=["x" * 64])
    with pytest.raises(ValueError, match="ttl"):
        make_table(ttl=0)


def test_hosts_are_normalised_and_deduplicated() -> None:
    table = make_table(hosts=["edge.local.", "EDGE", "alias.local"])
    assert table.hosts == ("edge", "alias")
    assert table.host_names == ("edge.local", "alias.local")


# ----------------------------------------------------------------------------- records


def test_records_for_interface() -> None:
    records = make_table().records_for(ETH0)
    assert summary(records) == {
        ("edge-2e6d.local", "A", "10.0.0.5"),
        ("alias.local", "A", "10.0.0.5"),
        ("edge-2e6d.local", "AAAA", "fe80::1"),
        ("alias.local", "AAAA", "fe80::1"),
        ("5.0.0.10.in-addr.arpa", "PTR", "edge-2e6d.local."),
        (ipaddress.ip_address("fe80::1").reverse_pointer, "PTR", "edge-2e6d.local."),
        ("_ssh._tcp.local", "PTR", "edge-2e6d._ssh._tcp.local."),
        ("edge-2e6d._ssh._tcp.local", "SRV", "0 0 22 edge-2e6d.local."),
        ("edge-2e6d._ssh._tcp.local", "TXT", '"path=/"'),
        ("_http._tcp.local", "PTR", "Greenhouse\\0321._http._tcp.local."),
        ("greenhouse 1._http._tcp.local", "SRV", "1 5 80 edge-2e6d.local."),
        ("greenhouse 1._http._tcp.local", "TXT", '""'),
        (SERVICES_META_QUERY, "PTR", "_ssh._tcp.local."),
        (SERVICES_META_QUERY, "PTR", "_http._tcp.local."),
    }
    assert len(records) == 14
    shared = {r.name for r in records if not r.unique}
    assert shared == {"_ssh._tcp.local", "_http._tcp.local", SERVICES_META_QUERY}
    assert all(r.ttl == 120 for r in records)


def test_records_carry_only_that_interfaces_addresses() -> None:
    table = make_table()
    wlan = table.records_for(WLAN0)
    addresses = {r.data_text for r in wlan if r.rtype in (RType.A, RType.AAAA)}
    assert addresses == {"192.168.1.7"}
    assert not any(r.rtype == RType.AAAA for r in wlan)
    bare = table.records_for(BARE)
    assert not any(r.rtype in (RType.A, RType.AAAA) for r in bare)
    assert any(r.rtype == RType.SRV for r in bare)


def test_meta_query_ptr_once_per_type() -> None:
    other_ssh = ServiceSpec("ssh2", "_ssh._tcp", "second", 2222)
    records = make_table(services=[SSH, other_ssh]).records_for(BARE)
    meta = [r for r in records if r.name == SERVICES_META_QUERY]
    assert [r.data_text for r in meta] == ["_ssh._tcp.local."]


def test_unique_names_and_owns() -> None:
    table = make_table()
    assert table.unique_names() == [
        "edge-2e6d.local",
        "alias.local",
        "edge-2e6d._ssh._tcp.local",
        "Greenhouse 1._http._tcp.local",
    ]
    assert table.owns("EDGE-2E6D.LOCAL")
    assert table.owns("Greenhouse\\0321._http._tcp.local.")
    assert not table.owns("_ssh._tcp.local")
    assert not table.owns("other.local")


# ----------------------------------------------------------------------------- query


def test_query_a_is_case_insensitive_and_brings_aaaa() -> None:
    answer = make_table().query("Edge-2E6D.Local", RType.A, ETH0)
    assert summary(answer.answers) == {("edge-2e6d.local", "A", "10.0.0.5")}
    assert summary(answer.additionals) == {("edge-2e6d.local", "AAAA", "fe80::1")}


def test_query_a_without_ipv6_adds_nsec() -> None:
    answer = make_table().query("edge-2e6d.local", RType.A, WLAN0)
    assert summary(answer.answers) == {("edge-2e6d.local", "A", "192.168.1.7")}
    assert summary(answer.additionals) == {("edge-2e6d.local", "NSEC", "edge-2e6d.local. A")}


def test_query_missing_type_on_owned_name_is_nsec() -> None:
    answer = make_table().query("edge-2e6d.local", RType.AAAA, WLAN0)
    assert len(answer.answers) == 1
    nsec = answer.answers[0]
    assert nsec.rtype == RType.NSEC
    assert nsec.unique
    assert nsec.ttl == 120
    assert nsec.data.rrlist == ["A"]
    assert name_key(nsec.data.label) == name_key("edge-2e6d.local")
    # An instance asked for an address type it does not have.
    answer = make_table().query(HTTP.instance_fqdn, RType.A, ETH0)
    assert [r.data.rrlist for r in answer.answers] == [["TXT", "SRV"]]


def test_query_unknown_names_get_nothing() -> None:
    table = make_table()
    assert not table.query("other.local", RType.A, ETH0)
    assert table.query("other.local", RType.A, ETH0).additionals == ()
    # Shared names are not ours to deny.
    assert table.query("_ssh._tcp.local", RType.TXT, ETH0).answers == ()
    # A host with no address on the interface claims nothing there.
    assert table.query("edge-2e6d.local", RType.A, BARE).answers == ()


def test_query_service_ptr_brings_srv_txt_and_addresses() -> None:
    answer = make_table().query("_ssh._tcp.local", RType.PTR, ETH0)
    assert summary(answer.answers) == {("_ssh._tcp.local", "PTR", "edge-2e6d._ssh._tcp.local.")}
    assert summary(answer.additionals) == {
        ("edge-2e6d._ssh._tcp.local", "SRV", "0 0 22 edge-2e6d.local."),
        ("edge-2e6d._ssh._tcp.local", "TXT", '"path=/"'),
        ("edge-2e6d.local", "A", "10.0.0.5"),
        ("edge-2e6d.local", "AAAA", "fe80::1"),
    }


def test_query_srv_brings_addresses_and_txt_brings_nothing() -> None:
    table = make_table()
    srv = table.query("greenhouse 1._http._tcp.local", RType.SRV, WLAN0)
    assert [r.rtype for r in srv.answers] == [RType.SRV]
    assert summary(srv.additionals) == {
        ("edge-2e6d.local", "A", "192.168.1.7"),
        ("edge-2e6d.local", "NSEC", "edge-2e6d.local. A"),
    }
    txt = table.query("greenhouse 1._http._tcp.local", RType.TXT, WLAN0)
    assert [r.rtype for r in txt.answers] == [RType.TXT]
    assert txt.additionals == ()


def test_query_any_and_meta_and_reverse() -> None:
    table = make_table()
    any_answer = table.query(HTTP.instance_fqdn, RType.ANY, ETH0)
    assert {r.rtype for r in any_answer.answers} == {RType.SRV, RType.TXT}
    assert {r.rtype for r in any_answer.additionals} == {RType.A, RType.AAAA}
    meta = table.query(SERVICES_META_QUERY, RType.PTR, ETH0)
    assert {r.data_text for r in meta.answers} == {"_ssh._tcp.local.", "_http._tcp.local."}
    assert meta.additionals == ()
    reverse = table.query("5.0.0.10.IN-ADDR.ARPA", RType.PTR, ETH0)
    # Reverse names point at the primary host only, never at aliases.
    assert {r.data_text for r in reverse.answers} == {"edge-2e6d.local."}
    assert not table.query("5.0.0.10.in-addr.arpa", RType.PTR, WLAN0)


def test_lookup_any_interface_deduplicates() -> None:
    table = make_table()
    twin = InterfaceInfo("eth1", 5, ipv4=("10.0.0.5",))
    found = table.lookup_any_interface("edge-2e6d.local", RType.A, [ETH0, WLAN0, twin])
    assert sorted(r.data_text for r in found) == ["10.0.0.5", "192.168.1.7"]
    everything = table.lookup_any_interface("edge-2e6d.local", RType.ANY, [ETH0, WLAN0])
    assert {r.rtype for r in everything} == {RType.A, RType.AAAA}
    srv = table.lookup_any_interface(SSH.instance_fqdn, RType.SRV, [])
    assert [r.data_text for r in srv] == ["0 0 22 edge-2e6d.local."]
    assert table.lookup_any_interface("nope.local", RType.ANY, [ETH0]) == []


# ----------------------------------------------------------------------------- changes


def test_derived_tables_leave_the_original_alone() -> None:
    table = make_table()
    renamed = table.with_service_instance("web", "Greenhouse 1 (2)")
    assert table.service("web") == HTTP
    web = renamed.service("web")
    assert web is not None
    assert web.instance == "Greenhouse 1 (2)"
    assert web.port == 80
    assert renamed.owns("Greenhouse 1 (2)._http._tcp.local")
    assert not renamed.owns(HTTP.instance_fqdn)
    assert [s.id for s in renamed.services] == ["ssh", "web"]  # position kept

    with pytest.raises(KeyError):
        table.with_service_instance("nope", "x")

    moved = table.with_hosts(["edge-2"])
    assert moved.hosts == ("edge-2",)
    srv = moved.query(SSH.instance_fqdn, RType.SRV, ETH0).answers
    assert [r.data_text for r in srv] == ["0 0 22 edge-2.local."]

    added = table.with_service(ServiceSpec("mqtt", "_mqtt._tcp", "edge", 1883))
    assert [s.id for s in added.services] == ["ssh", "web", "mqtt"]
    replaced = table.with_service(ServiceSpec("ssh", "_ssh._tcp", "edge-2e6d", 2222))
    assert [s.port for s in replaced.services] == [2222, 80]
    assert table.without_service("ssh").services == (HTTP,)
    assert table.without_service("nope") == table
    assert table.with_ttl(4500).ttl == 4500
    assert table == make_table()
    assert hash(table) == hash(make_table())
    assert table != moved


# ----------------------------------------------------------------------------- config


def test_from_config_adds_agent_service_and_defaults_instance() -> None:
    mdns = MdnsConfig(
        hosts=("edge-2e6d", "greenhouse"),
        instance_name="Greenhouse 1",
        services=(
            ServiceConfig("ssh", "_ssh._tcp", 22),
            ServiceConfig("web", "_http._tcp", 80, txt=(("path", "/"),), instance_name="Web"),
        ),
        agent_port=4370,
    )
    table = RecordTable.from_config(mdns, agent_txt={"version": "0.1.0", "id": "abc"})
    assert table.hosts == ("edge-2e6d", "greenhouse")
    assert [(s.id, s.instance) for s in table.services] == [
        ("ssh", "Greenhouse 1"),
        ("web", "Web"),
        (AGENT_SERVICE_ID, "Greenhouse 1"),
    ]
    agent = table.service(AGENT_SERVICE_ID)
    assert agent is not None
    assert agent.type == "_edgeagent._tcp"
    assert agent.port == 4370
    assert agent.txt == (("id", "abc"), ("version", "0.1.0"))
    no_agent = RecordTable.from_config(
        MdnsConfig(hosts=("edge",), instance_name="", advertise_agent=False)
    )
    assert no_agent.services == ()
    assert no_agent.ttl == 120


def test_from_config_reports_every_problem() -> None:
    mdns = MdnsConfig(
        hosts=("edge",),
        instance_name="edge",
        services=(
            ServiceConfig("ssh", "ssh", 22),
            ServiceConfig("web", "_http._tcp", 80, instance_name="x" * 70),
        ),
    )
    with pytest.raises(ConfigError) as info:
        RecordTable.from_config(mdns)
    assert len(info.value.issues) == 2
    assert info.value.issues[0].startswith("mdns.services[0] (ssh): service type")
    assert "mdns.services[1] (web): instance name" in info.value.issues[1]
    clash = MdnsConfig(
        hosts=("edge",), instance_name="edge", services=(ServiceConfig("edgeagent", "_x._tcp", 1),)
    )
    with pytest.raises(ConfigError, match="two services have the id 'edgeagent'"):
        RecordTable.from_config(clash)


# ----------------------------------------------------------------------------- properties

labels = st.text(
    st.characters(
        min_codepoint=0x20,
        max_codepoint=0x2FF,
        exclude_categories=["Cs"],
        exclude_characters="\x7f",
    ),
    min_size=1,
    max_size=20,
)
host_labels = st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True)
service_types = st.sampled_from(["_ssh._tcp", "_http._tcp", "_ipp._tcp", "_hap._udp"])
ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(str)
interfaces = st.builds(
    InterfaceInfo,
    name=st.sampled_from(["eth0", "wlan0"]),
    index=st.integers(1, 9),
    ipv4=st.lists(ipv4s, max_size=2, unique=True).map(tuple),
    ipv6=st.lists(ipv6s, max_size=2, unique=True).map(tuple),
)


@st.composite
def tables(draw: st.DrawFn) -> RecordTable:
    hosts = draw(st.lists(host_labels, min_size=1, max_size=3, unique=True))
    specs: list[ServiceSpec] = []
    seen: set[tuple[str, ...]] = set()
    for i in range(draw(st.integers(0, 4))):
        spec = ServiceSpec(
            id=f"s{i}",
            type=draw(service_types),
            instance=draw(labels),
            port=draw(st.integers(0, 65535)),
            txt=tuple(draw(st.dictionaries(host_labels, labels, max_size=2)).items()),
        )
        if name_key(spec.instance_fqdn) not in seen:
            seen.add(name_key(spec.instance_fqdn))
            specs.append(spec)
    return RecordTable(hosts=hosts, services=specs, ttl=draw(st.integers(1, 4500)))


def question_names(table: RecordTable, iface: InterfaceInfo) -> list[str]:
    names = {r.name for r in table.records_for(iface)}
    return sorted(names | {"nothing.local", "_x._tcp.local"})


QTYPES = [RType.A, RType.AAAA, RType.PTR, RType.SRV, RType.TXT, RType.ANY, RType.NSEC]


@settings(max_examples=150)
@given(tables(), interfaces, st.data())
def test_query_answers_come_from_records_for(
    table: RecordTable, iface: InterfaceInfo, data: st.DataObject
) -> None:
    advertised = {r.key for r in table.records_for(iface)}
    name = data.draw(st.sampled_from(question_names(table, iface)))
    variant = data.draw(st.sampled_from([name, name.upper(), name + "."]))
    rtype = data.draw(st.sampled_from(QTYPES))
    answer = table.query(variant, rtype, iface)
    for record in answer.answers + answer.additionals:
        if record.rtype == RType.NSEC:
            assert table.owns(record.name)
        else:
            assert record.key in advertised
    for record in answer.answers:
        assert name_key(record.name) == name_key(name)
        assert rtype in (RType.ANY, record.rtype) or record.rtype == RType.NSEC
    answer_keys = [r.key for r in answer.answers]
    additional_keys = [r.key for r in answer.additionals]
    assert len(set(additional_keys)) == len(additional_keys)
    assert not set(answer_keys) & set(additional_keys)


@settings(max_examples=100)
@given(tables(), interfaces)
def test_every_advertised_record_answers_its_own_question(
    table: RecordTable, iface: InterfaceInfo
) -> None:
    for record in table.records_for(iface):
        answer = table.query(record.name, record.rtype, iface)
        assert record.key in {r.key for r in answer.answers}
        assert table.owns(record.name) == (
            name_key(record.name) in map(name_key, table.unique_names())
        )
        if record.unique and record.rtype != RType.PTR:
            assert table.owns(record.name)


@settings(max_examples=100)
@given(tables(), interfaces)
def test_records_pack_and_parse(table: RecordTable, iface: InterfaceInfo) -> None:
    message = DNSRecord(q=DNSQuestion("x.local"))
    records = table.records_for(iface)
    for record in records:
        message.add_answer(record_to_rr(record, mdns=True))
    parsed = DNSRecord.parse(message.pack())
    assert [name_key(rr.rname) for rr in parsed.rr] == [name_key(r.name) for r in records]
    assert [Record.from_rr(rr).unique for rr in parsed.rr] == [r.unique for r in records]


def test_repeated_interface_address_is_advertised_once() -> None:
    iface = InterfaceInfo("eth0", 2, ipv4=("10.0.0.5", "10.0.0.5"))
    records = RecordTable(hosts=["edge"], services=[], ttl=120).records_for(iface)
    assert [(r.rtype, r.data_text) for r in records] == [
        (RType.A, "10.0.0.5"),
        (RType.PTR, "edge.local."),
    ]

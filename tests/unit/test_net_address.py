"""Host-and-port texts: peers and upstreams parse, format back, and say what is wrong."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.net.address import (
    dns_name_problem,
    format_peer,
    format_upstream,
    parse_peer_address,
    parse_port,
    parse_upstream_address,
    split_host_port,
)
from edgeagent.net.resolv import RESOLV_CONF, parse_resolv_conf


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.7:4370", ("10.0.0.7", "4370", False)),
        ("gw.local", ("gw.local", None, False)),
        ("fe80::1", ("fe80::1", None, False)),
        ("[fe80::1]:53", ("fe80::1", "53", True)),
        ("[fe80::1]", ("fe80::1", None, True)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, str | None, bool]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fe80::1", "missing ']' after the IPv6 address"),
        ("[fe80::1]53", "expected ':port' after ']'"),
    ],
)
def test_split_host_port_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        split_host_port(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[10.0.0.1]:5", "'10.0.0.1' is not an IPv6 address"),
        ("fe80::1", "write an IPv6 address with its port as '[v6]:port'"),
        ("bad host:5", "'bad host' is neither an IP address nor a host name"),
        ("gw:0", "port '0' is not between 1 and 65535"),
        ("gw:http", "port 'http' is not between 1 and 65535"),
    ],
)
def test_bad_peers_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_peer_address(text, 4370)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.1.1.1", "1.1.1.1"),
        ("1.1.1.1:53", "1.1.1.1"),
        ("1.1.1.1:5353", "1.1.1.1:5353"),
        ("[2606:4700::1111]:53", "2606:4700::1111"),
        ("[2606:4700:0::1111]:5353", "[2606:4700::1111]:5353"),
        ("2606:4700::1111", "2606:4700::1111"),
    ],
)
def test_upstreams_format_canonically(text: str, expected: str) -> None:
    assert format_upstream(*parse_upstream_address(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1.1.1.1]:53", "brackets are for IPv6 addresses"),
        ("dns.google", "'dns.google' is not an IP address"),
        ("1.1.1.1:99999", "port '99999' is not between 1 and 65535"),
    ],
)
def test_bad_upstreams_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_upstream_address(text)
    assert str(caught.value) == message


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(min_value=1, max_value=65535),
)
def test_formatted_texts_parse_back(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    assert parse_upstream_address(format_upstream(address, port)) == (address, port)
    assert parse_peer_address(format_peer(str(address), port), 1) == (str(address), port)


def test_ports_and_dns_names() -> None:
    assert parse_port(None, 4370) == 4370
    assert parse_port("1", 4370) == 1
    assert dns_name_problem("_edgeagent._udp.example.com.") is None
    assert dns_name_problem("") == "must be 1-253 characters"
    assert dns_name_problem("a..b") == "label '' is not 1-63 letters, digits, '-' or '_'"


def test_resolv_conf() -> None:
    assert str(RESOLV_CONF) == "/etc/resolv.conf"
    text = "search lan\nnameserver 10.0.0.1  # router\nnameserver ::1\n;nameserver 9.9.9.9\n"
    assert parse_resolv_conf(text) == ["10.0.0.1", "::1"]

"""Every config error names the file, the line, the key path and, where it helps, a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgeagent.config.loader import load_config
from edgeagent.errors import ConfigError
from edgeagent.identity import DeviceIdentity

IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")


def write(tmp_path: Path, text: str, name: str = "edgeagent.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def issues_of(path: Path, **kwargs: object) -> list[str]:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as caught:
        load_config(path, identity=IDENTITY, resolv_conf=NO_RESOLV, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == "\n".join(caught.value.issues)
    return caught.value.issues


def test_the_issue_format_example(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        # comment
        device:
          hostname: edge-2e6d

        mdns:
          hosts: [hostname]
          ttl: abc
        """,
    )
    assert issues_of(path) == [f"{path}:7: mdns.ttl: expected an integer, got 'abc'"]


def test_all_issues_are_collected_with_their_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mdns:
          ttl: 0
          host: [x]
          services:
            - {id: web, type: _http._tcp, port: 70000}
        dns_bridge:
          enabled: yes
          address: 127.0.0.300
        log_level: verbose
        """,
    )
    assert issues_of(path) == [
        f"{path}:2: mdns.ttl: must be between 1 and 86400, got 0",
        f"{path}:3: mdns.host: unknown key (did you mean 'hosts'?)",
        f"{path}:5: mdns.services[web].port: must be between 1 and 65535, got 70000",
        f"{path}:7: dns_bridge.enabled: expected true or false, got 'yes' (did you mean 'true'?)",
        f"{path}:8: dns_bridge.address: '127.0.0.300' is not an IPv4 or IPv6 address",
        f"{path}:9: log_level: expected one of debug, info, warning, error, critical, "
        "got 'verbose'",
    ]


def test_unknown_top_level_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "dns-bridge:\n  enabled: true\nwidgets: {}\n")
    assert issues_of(path) == [
        f"{path}:1: dns-bridge: unknown key (did you mean 'dns_bridge'?)",
        f"{path}:3: widgets: unknown key",
    ]


def test_unknown_nested_keys_name_the_full_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mdns:
          interfaces:
            exclued: [lo]
          services:
            - id: web
              type: _http._tcp
              port: 80
              tx: {a: b}
        """,
    )
    assert issues_of(path) == [
        f"{path}:3: mdns.interfaces.exclued: unknown key (did you mean 'exclude'?)",
        f"{path}:8: mdns.services[web].tx: unknown key (did you mean 'txt'?)",
    ]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert issues_of(path) == [f"{path}:1: (top level): expected a mapping, got a list"]


def test_a_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns: 5\n")
    assert issues_of(path) == [f"{path}:1: mdns: expected a mapping, got 5"]


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns:\n  ttl: 1\n  hosts: [a, b\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:4: yaml: syntax error:")


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns:\n  ttl: 1\n  ttl: 2\n")
    assert issues_of(path) == [f"{path}:3: mdns.ttl: duplicate key (first at line 2)"]


def test_unknown_tags_suggest_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns:\n  instance_name: !secrt name\n")
    assert issues_of(path) == [
        f"{path}:2: mdns.instance_name: unsupported tag '!secrt' (did you mean '!secret'?)"
    ]


def test_merge_keys_are_refused_clearly(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &b {ttl: 5}\nmdns:\n  <<: *b\n")
    issues = issues_of(path)
    assert f"{path}:3: mdns.<<: YAML merge keys are not supported" in issues


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Edge-1", "host name 'Edge-1' may hold only lowercase letters a-z, digits and '-' "
         "(did you mean 'edge-1'?)"),
        ("edge_1", "host name 'edge_1' may hold only lowercase letters a-z, digits and '-' "
         "(did you mean 'edge-1'?)"),
        ("edge.local", "host name 'edge.local' must be a single label without dots ('.local' "
         "is added for you) (did you mean 'edge'?)"),
        ("-edge", "host name '-edge' must not start or end with '-' (did you mean 'edge'?)"),
        ("a" * 64, "is 64 characters long; a DNS label has at most 63"),
        ("42", None),
    ],
)  # fmt: skip
def test_hostnames_must_be_dns_labels(tmp_path: Path, value: str, message: str | None) -> None:
    path = write(tmp_path, f"device:\n  hostname: '{value}'\n")
    if message is None:
        assert load_config(path, identity=IDENTITY, env={}).device.hostname == value
        return
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:2: device.hostname: ")
    assert message in issue


def test_a_host_alias_is_checked_by_index(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns:\n  hosts:\n    - hostname\n    - Nerves\n")
    assert issues_of(path) == [
        f"{path}:4: mdns.hosts[1]: host name 'Nerves' may hold only lowercase letters a-z, "
        "digits and '-' (did you mean 'nerves'?)"
    ]


def test_hosts_must_not_be_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns:\n  hosts: []\n")
    assert issues_of(path) == [
        f"{path}:2: mdns.hosts: needs at least one host name (e.g. [hostname])"
    ]


def test_service_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mdns:
          services:
            - {id: a, port: 1}
            - {id: b, type: _http._tcp, protocol: http, port: 2}
            - {id: c, protocol: http, port: 3}
            - {id: d, type: http, port: 4}
            - {id: e, type: _http._tpc, port: 5}
            - {id: f, protocol: _ftp, transport: tcp, port: 6}
            - {type: _x._tcp}
            - {id: a, type: _ipp._tcp, port: 631}
            - just-a-string
        """,
    )
    assert issues_of(path) == [
        f"{path}:3: mdns.services[a]: missing 'type' (e.g. _http._tcp) or 'protocol' + 'transport'",
        f"{path}:4: mdns.services[b]: give either 'type' or 'protocol' + 'transport', not both",
        f"{path}:5: mdns.services[c]: 'protocol' and 'transport' go together; 'transport' is "
        "missing",
        f"{path}:6: mdns.services[d].type: expected '_name._tcp' or '_name._udp', got 'http' "
        "(did you mean '_http._tcp'?)",
        f"{path}:7: mdns.services[e].type: the transport must be _tcp or _udp, got '_tpc' "
        "(did you mean '_tcp'?)",
        f"{path}:8: mdns.services[f].protocol: write it without '_' (did you mean 'ftp'?)",
        f"{path}:9: mdns.services[6]: missing required key 'id'",
        f"{path}:9: mdns.services[6]: missing required key 'port'",
        f"{path}:10: mdns.services[a]: duplicate id 'a' (first at {path}:3)",
        f"{path}:11: mdns.services[8]: expected a service mapping, got 'just-a-string'",
    ]


def test_two_services_may_not_share_an_instance(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mdns:
          services:
            - {id: one, type: _http._tcp, port: 80}
            - {id: two, type: _http._tcp, port: 8080}
            - {id: three, type: _http._tcp, port: 8081, instance_name: Admin}
        """,
    )
    assert issues_of(path) == [
        f"{path}:4: mdns.services[two]: service 'one' already advertises instance 'edge-2e6d' "
        "of _http._tcp; give one of them an instance_name"
    ]


def test_txt_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mdns:
          services:
            - id: web
              type: _http._tcp
              port: 80
              txt:
                path: /
                "a=b": x
                list: [1, 2]
                empty:
        """,
    )
    assert issues_of(path) == [
        f"{path}:8: mdns.services[web].txt.a=b: a TXT key is printable ASCII without '='",
        f"{path}:9: mdns.services[web].txt.list: expected a text value, got a list "
        "(write '' for empty)",
        f"{path}:10: mdns.services[web].txt.empty: expected a text value, got nothing "
        "(write '' for empty)",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30sec", "unknown duration unit 'sec' in '30sec'; use ms, s, m or h (did you mean '30s'?)"),
        ("5mins", "unknown duration unit 'mins' in '5mins'; use ms, s, m or h (did you mean '5m'?)"),
        ("2d", "unknown duration unit 'd' in '2d'; use ms, s, m or h"),
        ("fast", "expected a duration such as '500ms', '1s', '2m' or '1h', got 'fast'"),
        ("0", "must be a positive duration, got 0"),
        ("true", "expected a duration such as '1s', got true"),
    ],
)  # fmt: skip
def test_bad_durations(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f"dns_bridge:\n  upstream_timeout: {value}\n")
    assert issues_of(path) == [f"{path}:2: dns_bridge.upstream_timeout: {message}"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'1.1.1'", "bad upstream '1.1.1': '1.1.1' is not an IP address"),
        ("'1.1.1.1:0'", "bad upstream '1.1.1.1:0': port '0' is not between 1 and 65535"),
        ("'[::1'", "bad upstream '[::1': missing ']' after the IPv6 address"),
        ("'[1.2.3.4]:53'", "bad upstream '[1.2.3.4]:53': brackets are for IPv6 addresses"),
        ("53", "expected 'ip', 'ip:port' or '[v6]:port', got 53"),
        ("'127.0.0.53'", "'127.0.0.53' is the bridge's own address; it would query itself"),
    ],
)
def test_bad_upstreams(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f"dns_bridge:\n  upstreams:\n    - {value}\n")
    assert issues_of(path) == [f"{path}:3: dns_bridge.upstreams[0]: {message}"]


def test_quoted_numbers_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "mdns:\n  ttl: '120'\n  agent_port: 4370.0\n")
    assert issues_of(path) == [
        f"{path}:2: mdns.ttl: expected an integer, got '120'",
        f"{path}:3: mdns.agent_port: expected an integer, got 4370.0",
    ]


def test_yaml_11_booleans_are_strings(tmp_path: Path) -> None:
    # `on` and `no` are plain words here; a host alias named "on" is not a boolean.
    path = write(tmp_path, "mdns:\n  hosts: [hostname, 'on', no]\n")
    config = load_config(path, identity=IDENTITY, env={})
    assert config.mdns.hosts == ("edge-2e6d", "on", "no")


def test_an_explicit_overlay_must_exist(tmp_path: Path) -> None:
    base = write(tmp_path, "log_level: info\n")
    missing = tmp_path / "nope.yaml"
    assert issues_of(base, overlay_file=missing) == [f"{missing}: (file): file not found"]


def test_errors_in_runtime_overrides_name_their_source(tmp_path: Path) -> None:
    base = write(tmp_path, "")
    issues = issues_of(
        base,
        overrides={"mdns": {"ttl": "abc", "servics": []}},
        overrides_source="/var/lib/edgeagent/runtime.json",
    )
    assert issues == [
        "/var/lib/edgeagent/runtime.json: mdns.ttl: expected an integer, got 'abc'",
        "/var/lib/edgeagent/runtime.json: mdns.servics: unknown key (did you mean 'services'?)",
    ]


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "edgeagent.yaml"
    path.write_bytes(b"log_level: \xff\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}: (file): cannot read:")

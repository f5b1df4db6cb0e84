"""Loading: defaults, layering order, services merged by id, !secret, ${ENV}, durations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgeagent.config.loader import (
    load,
    load_config,
    load_layers,
    substitute_env,
)
from edgeagent.config.model import Config, ServiceConfig
from edgeagent.errors import ConfigError
from edgeagent.identity import DeviceIdentity
from edgeagent.net.resolv import parse_resolv_conf

IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_(path: Path | None, **kwargs: object) -> Config:
    kwargs.setdefault("env", {})
    kwargs.setdefault("identity", IDENTITY)
    kwargs.setdefault("resolv_conf", NO_RESOLV)
    return load_config(path, **kwargs)  # type: ignore[arg-type]


def issues_of(path: Path | None, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_(path, **kwargs)
    return caught.value.issues


# -- defaults -----------------------------------------------------------------------------------
def test_no_file_means_built_in_defaults() -> None:
    config = load_(None)
    assert config.device.hostname == "edge-2e6d"
    assert config.mdns.hosts == ("edge-2e6d",)
    assert config.mdns.instance_name == "edge-2e6d"
    assert config.mdns.services == ()
    assert config.mdns.ttl == 120
    assert config.dns_bridge.enabled is False  # a laptop with systemd-resolved still runs
    assert config.log_level == "info"


def test_a_missing_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_(tmp_path / "absent.yaml") == load_(None)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "~\n", "---\n"])
def test_an_empty_file_is_the_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "edgeagent.yaml"
    path.write_text(text)
    assert load_(path) == load_(None)


def test_empty_sections_are_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "e.yaml", "device:\nmdns:\n  interfaces:\ndns_bridge:\n")
    assert load_(path) == load_(None)


def test_the_identity_is_read_only_when_the_hostname_is_unset(tmp_path: Path) -> None:
    path = write(tmp_path / "e.yaml", "device: {hostname: named}\n")

    class Exploding(DeviceIdentity):
        @property
        def default_hostname(self) -> str:
            raise AssertionError("identity read although device.hostname is set")

    assert load_(path, identity=Exploding(None)).device.hostname == "named"


def test_hostname_token_and_aliases(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.yaml",
        """
        device: {hostname: edge-2e6d}
        mdns:
          hosts: [nerves, hostname, nerves]
        """,
    )
    config = load_(path)
    assert config.mdns.hosts == ("nerves", "edge-2e6d")
    assert config.mdns.instance_name == "nerves"  # default: the first host


def test_services_forms_and_txt_coercion(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.yaml",
        """
        mdns:
          instance_name: "Greenhouse 1"
          services:
            - {id: ssh, protocol: SSH, transport: tcp, port: 22}
            - id: web
              type: _HTTP._tcp
              port: 80
              txt: {path: /, version: 2, ratio: 0.5, secure: false, note: ""}
              priority: 1
              weight: 5
              instance_name: "Greenhouse web"
        """,
    )
    ssh, web = load_(path).mdns.services
    assert ssh == ServiceConfig(id="ssh", type="_ssh._tcp", port=22)
    assert web == ServiceConfig(
        id="web",
        type="_http._tcp",
        port=80,
        txt=(("path", "/"), ("version", "2"), ("ratio", "0.5"), ("secure", "false"), ("note", "")),
        priority=1,
        weight=5,
        instance_name="Greenhouse web",
    )


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("500ms", 0.5), ("1s", 1.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), ("3", 3.0),
     ("0.25", 0.25), ("'7'", 7.0)],
)  # fmt: skip
def test_durations(tmp_path: Path, written: str, seconds: float) -> None:
    path = write(tmp_path / "e.yaml", f"dns_bridge:\n  upstream_timeout: {written}\n")
    assert load_(path).dns_bridge.upstream_timeout == seconds


def test_upstreams_are_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.yaml",
        """
        dns_bridge:
          upstreams: ["1.1.1.1", "9.9.9.9:5353", "[2001:db8::1]:53", "2001:db8::2", "[::1]:5300"]
        """,
    )
    assert load_(path).dns_bridge.upstreams == (
        "1.1.1.1",
        "9.9.9.9:5353",
        "2001:db8::1",
        "2001:db8::2",
        "[::1]:5300",
    )


def test_recursive_bridge_defaults_to_resolv_conf_without_itself(tmp_path: Path) -> None:
    resolv = write(
        tmp_path / "resolv.conf",
        """
        # generated
        nameserver 127.0.0.53
        nameserver 192.168.1.1  # router
        options edns0
        nameserver fe80::1%eth0
        nameserver not-an-ip
        nameserver 192.168.1.1
        """,
    )
    path = write(tmp_path / "e.yaml", "dns_bridge: {enabled: true, recursive: true}\n")
    bridge = load_(path, resolv_conf=resolv).dns_bridge
    assert bridge.upstreams == ("192.168.1.1", "fe80::1%eth0")
    explicit = write(tmp_path / "x.yaml", "dns_bridge: {recursive: true, upstreams: [8.8.8.8]}\n")
    assert load_(explicit, resolv_conf=resolv).dns_bridge.upstreams == ("8.8.8.8",)


def test_parse_resolv_conf() -> None:
    assert parse_resolv_conf("nameserver 1.1.1.1\n#nameserver 2.2.2.2\n; x\nnameserver\n") == [
        "1.1.1.1"
    ]


# -- layering -----------------------------------------------------------------------------------
@pytest.fixture
def layered(tmp_path: Path) -> Path:
    write(
        tmp_path / "secrets.yaml",
        "web_token: s3cret\n",
    )
    write(
        tmp_path / "devices" / "edge-2e6d.yaml",
        """
        mdns:
          ttl: 60
          hosts: [hostname, overlay]
          services:
            - {id: web, type: _http._tcp, port: 8080}
            - {id: ssh, remove: true}
            - {id: mqtt, protocol: mqtt, transport: tcp, port: 1883}
        log_level: debug
        """,
    )
    return write(
        tmp_path / "edgeagent.yaml",
        """
        mdns:
          ttl: 100
          cache_size: 10
          interfaces: {include: [eth0]}
          services:
            - {id: ssh, protocol: ssh, transport: tcp, port: 22}
            - {id: web, type: _http._tcp, port: 80, txt: {token: !secret web_token}}
            - {id: ipp, type: _ipp._tcp, port: 631}
        log_level: info
        """,
    )


def test_overlay_is_found_by_hostname_and_merges(layered: Path) -> None:
    loaded = load(layered, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    overlay = str(layered.parent / "devices" / "edge-2e6d.yaml")
    assert loaded.sources == (str(layered), overlay)
    mdns = loaded.config.mdns
    assert mdns.ttl == 60  # overlay scalar replaces
    assert mdns.cache_size == 10  # base kept where the overlay says nothing
    assert mdns.interfaces.include == ("eth0",)
    assert mdns.hosts == ("edge-2e6d", "overlay")  # lists replace
    # by id: web replaced in place (its txt gone with it), ssh removed, mqtt appended
    assert [(s.id, s.port, s.txt) for s in mdns.services] == [
        ("web", 8080, ()),
        ("ipp", 631, ()),
        ("mqtt", 1883, ()),
    ]
    assert loaded.config.log_level == "debug"


def test_runtime_overrides_come_last(layered: Path) -> None:
    overrides = {
        "mdns": {"ttl": 30, "services": [{"id": "ipp", "remove": True}, {"id": "ssh",
                 "type": "_ssh._tcp", "port": 2222}]},
        "log_level": "warning",
    }  # fmt: skip
    loaded = load(
        layered,
        overrides=overrides,
        overrides_source="state/runtime.json",
        identity=IDENTITY,
        env={},
        resolv_conf=NO_RESOLV,
    )
    assert loaded.sources[-1] == "state/runtime.json"
    assert loaded.config.mdns.ttl == 30
    # ssh comes back where the overlay's tombstone left it; ipp is removed
    assert [(s.id, s.port) for s in loaded.config.mdns.services] == [
        ("ssh", 2222),
        ("web", 8080),
        ("mqtt", 1883),
    ]
    assert loaded.config.log_level == "warning"


def test_runtime_removal_of_an_unknown_service_is_not_an_error(tmp_path: Path) -> None:
    # `edgeagent services remove` may leave a tombstone whose service is gone from the files.
    overrides = {"mdns": {"services": [{"id": "gone", "remove": True}]}}
    assert load_(None, overrides=overrides).mdns.services == ()


def test_a_file_removal_must_match_something_below(layered: Path) -> None:
    overlay = layered.parent / "devices" / "edge-2e6d.yaml"
    overlay.write_text("mdns:\n  services:\n    - {id: shh, remove: true}\n")
    assert issues_of(layered) == [
        f"{overlay}:3: mdns.services[shh]: remove: no item with id 'shh' in the layers below "
        "(did you mean 'ssh'?)"
    ]


def test_a_removal_item_carries_only_id_and_remove(tmp_path: Path) -> None:
    base = write(tmp_path / "e.yaml", "mdns:\n  services: [{id: a, type: _a._tcp, port: 1}]\n")
    overlay = write(
        tmp_path / "o.yaml", "mdns:\n  services:\n    - {id: a, remove: true, port: 2}\n"
    )
    assert issues_of(base, overlay_file=overlay) == [
        f"{overlay}:3: mdns.services[a].port: a removal item carries only 'id' and 'remove'"
    ]


def test_explicit_overlay_wins_over_the_hostname_lookup(layered: Path) -> None:
    other = write(layered.parent / "other.yaml", "mdns: {ttl: 7}\n")
    config = load_(layered, overlay_file=other)
    assert config.mdns.ttl == 7
    assert [s.id for s in config.mdns.services] == ["ssh", "web", "ipp"]


def test_overlay_lookup_uses_the_base_hostname(tmp_path: Path) -> None:
    base = write(tmp_path / "e.yaml", "device: {hostname: kitchen}\n")
    write(tmp_path / "devices" / "kitchen.yaml", "log_level: error\n")
    write(tmp_path / "devices" / "edge-2e6d.yaml", "log_level: debug\n")
    assert load_(base).log_level == "error"


def test_an_empty_overlay_value_does_not_override(tmp_path: Path) -> None:
    base = write(tmp_path / "e.yaml", "mdns: {ttl: 5, instance_name: Base}\n")
    overlay = write(tmp_path / "o.yaml", "mdns:\n  ttl:\n  instance_name: ~\n")
    config = load_(base, overlay_file=overlay)
    assert (config.mdns.ttl, config.mdns.instance_name) == (5, "Base")


def test_load_layers_returns_the_merged_raw_layers(layered: Path) -> None:
    raw = load_layers(layered, identity=IDENTITY, env={})
    assert raw["mdns"]["ttl"] == 60
    assert raw["mdns"]["cache_size"] == 10
    assert [s["id"] for s in raw["mdns"]["services"]] == ["ssh", "web", "ipp", "mqtt"]
    assert raw["mdns"]["services"][0] == {"id": "ssh", "remove": True}  # tombstones kept


# -- secrets ------------------------------------------------------------------------------------
def test_secret_values_are_read_and_their_paths_reported(tmp_path: Path) -> None:
    write(tmp_path / "secrets.yaml", "token: s3cret\nport: 8443\n")
    base = write(
        tmp_path / "e.yaml",
        """
        mdns:
          services:
            - {id: web, type: _http._tcp, port: !secret port, txt: {token: !secret token}}
        """,
    )
    loaded = load(base, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    (web,) = loaded.config.mdns.services
    assert web.port == 8443
    assert web.txt == (("token", "s3cret"),)
    assert loaded.secret_paths == {"mdns.services[web].port", "mdns.services[web].txt.token"}


def test_a_missing_secret_names_file_line_and_name(tmp_path: Path) -> None:
    secrets = write(tmp_path / "secrets.yaml", "web_token: x\n")
    base = write(tmp_path / "e.yaml", "mdns:\n  instance_name: !secret web_tokn\n")
    assert issues_of(base) == [
        f"{base}:2: !secret web_tokn: secret 'web_tokn' is not in {secrets} "
        "(did you mean 'web_token'?)"
    ]


def test_a_missing_secrets_file(tmp_path: Path) -> None:
    base = write(tmp_path / "e.yaml", "mdns:\n  instance_name: !secret name\n")
    assert issues_of(base) == [
        f"{base}:2: !secret name: secret 'name': secrets file {tmp_path / 'secrets.yaml'} "
        "does not exist"
    ]


def test_secrets_file_next_to_the_file_that_uses_it(tmp_path: Path) -> None:
    write(tmp_path / "secrets.yaml", "name: from-base-dir\n")
    write(tmp_path / "devices" / "secrets.yaml", "name: from-devices-dir\n")
    base = write(tmp_path / "e.yaml", "mdns: {instance_name: !secret name}\n")
    assert load_(base).mdns.instance_name == "from-base-dir"
    overlay = write(tmp_path / "devices" / "o.yaml", "mdns: {instance_name: !secret name}\n")
    assert load_(base, overlay_file=overlay).mdns.instance_name == "from-devices-dir"
    explicit = write(tmp_path / "elsewhere.yaml", "name: explicit\n")
    assert load_(base, secrets_file=explicit).mdns.instance_name == "explicit"


def test_a_secret_keeps_its_type_and_is_validated(tmp_path: Path) -> None:
    write(tmp_path / "secrets.yaml", "ttl: many\n")
    base = write(tmp_path / "e.yaml", "mdns:\n  ttl: !secret ttl\n")
    # the value is not echoed: it is a secret
    assert issues_of(base) == [f"{base}:2: mdns.ttl: expected an integer, got a secret"]


# -- environment --------------------------------------------------------------------------------
def test_env_substitution(tmp_path: Path) -> None:
    base = write(
        tmp_path / "e.yaml",
        """
        device: {hostname: "node-${SITE}"}
        mdns:
          ttl: ${TTL:-90}
          agent_port: ${PORT}
          instance_name: "${LABEL:-Unnamed} at $${SITE}"
          hosts: ['${PORT}']
        """,
    )
    config = load_(base, env={"SITE": "b7", "PORT": "4400", "LABEL": ""})
    assert config.device.hostname == "node-b7"
    assert config.mdns.ttl == 90
    assert config.mdns.agent_port == 4400  # a plain scalar is typed after substitution
    assert config.mdns.instance_name == "Unnamed at ${SITE}"
    assert config.mdns.hosts == ("4400",)  # quoted: stays a string


def test_an_unset_env_var_is_an_error_naming_it(tmp_path: Path) -> None:
    base = write(tmp_path / "e.yaml", "mdns:\n  ttl: 5\n  instance_name: ${LABEL}\n")
    assert issues_of(base) == [
        f"{base}:3: mdns.instance_name: environment variable 'LABEL' is not set "
        "(write ${LABEL:-default})"
    ]


def test_malformed_env_reference(tmp_path: Path) -> None:
    base = write(tmp_path / "e.yaml", "mdns:\n  instance_name: 'a ${1X} b'\n")
    (issue,) = issues_of(base)
    assert issue.startswith(f"{base}:2: mdns.instance_name: malformed '${{'")


def test_substitute_env_directly() -> None:
    assert substitute_env("${A}-${B:-b}-$${A}-$A", {"A": "a"}) == ("a-b-${A}-$A", [])
    assert substitute_env("${A:-x}", {"A": "set"}) == ("set", [])


def test_a_numeric_hostname_is_a_label(tmp_path: Path) -> None:
    path = write(tmp_path / "e.yaml", "device: {hostname: 1234}\nmdns: {hosts: [hostname, 7]}\n")
    config = load_(path)
    assert config.device.hostname == "1234"
    assert config.mdns.hosts == ("1234", "7")


def test_every_section_builder_fills_one_config_field() -> None:
    # The table-driven walker: adding a section means a Config field and a SECTIONS entry.
    import dataclasses

    from edgeagent.config.schema import SECTIONS

    assert list(SECTIONS) == [f.name for f in dataclasses.fields(Config)]

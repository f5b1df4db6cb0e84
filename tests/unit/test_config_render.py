"""Rendering the effective config: plain data, YAML for `edgeagent check`, redaction."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml

from edgeagent.config.loader import load
from edgeagent.config.render import REDACTED, config_to_dict, redact_paths, render_yaml
from edgeagent.identity import DeviceIdentity

IDENTITY = DeviceIdentity("10000000abcd2e6d")


def test_defaults_render_every_key(tmp_path: Path) -> None:
    loaded = load(None, identity=IDENTITY, env={})
    data = config_to_dict(loaded.config)
    assert json.loads(json.dumps(data)) == data  # JSON-able as is
    assert list(data) == [
        "device",
        "mdns",
        "dns_bridge",
        "log_level",
        "mesh",
        "capabilities",
        "principals",
        "reactors",
        "journal",
        "sensors",
    ]
    assert data["mdns"]["hosts"] == ["edge-2e6d"]
    assert data["mdns"]["interfaces"] == {
        "include": [],
        "exclude": ["lo", "docker*", "veth*", "ppp*", "wwan*"],
    }
    assert data["dns_bridge"]["enabled"] is False
    assert data["dns_bridge"]["query_timeout"] == 0.4


def test_services_render_in_the_contract_shape(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        textwrap.dedent(
            """
            mdns:
              services:
                - {id: ssh, protocol: ssh, transport: tcp, port: 22}
                - {id: web, type: _http._tcp, port: 80, txt: {path: /, v: 2},
                   instance_name: Web}
            """
        )
    )
    data = config_to_dict(load(path, identity=IDENTITY, env={}).config)
    assert data["mdns"]["services"] == [
        {"id": "ssh", "type": "_ssh._tcp", "port": 22, "priority": 0, "weight": 0},
        {
            "id": "web",
            "type": "_http._tcp",
            "port": 80,
            "txt": {"path": "/", "v": "2"},
            "priority": 0,
            "weight": 0,
            "instance_name": "Web",
        },
    ]


def test_render_yaml_names_sources_and_redacts_secrets(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("token: hunter2\n")
    path = tmp_path / "e.yaml"
    path.write_text(
        "mdns:\n  services:\n"
        "    - {id: web, type: _http._tcp, port: 80, txt: {token: !secret token, a: b}}\n"
    )
    loaded = load(path, identity=IDENTITY, env={})
    text = render_yaml(loaded.config, redact=loaded.secret_paths, sources=loaded.sources)
    assert text.splitlines()[0] == (
        f"# effective edgeagent configuration from: built-in defaults <- {path}"
    )
    assert "hunter2" not in text
    (web,) = yaml.safe_load(text)["mdns"]["services"]
    assert web["txt"] == {"token": REDACTED, "a": "b"}
    assert "hunter2" in render_yaml(loaded.config)  # only redacted when asked


def test_redact_paths_uses_ids_and_indexes() -> None:
    data = {"a": {"b": 1}, "l": [{"id": "x", "s": 1}, {"s": 2}], "h": ["p", "q"]}
    assert redact_paths(data, {"a.b", "l[x].s", "l[1].s", "h[1]"}) == {
        "a": {"b": REDACTED},
        "l": [{"id": "x", "s": REDACTED}, {"s": REDACTED}],
        "h": ["p", REDACTED],
    }

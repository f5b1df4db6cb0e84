"""Every file shipped under firmware-config/ validates (overlays on top of the base file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.config.loader import load, load_config
from edgeagent.identity import DeviceIdentity

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-config"
BASE = FIRMWARE / "edgeagent.yaml"
IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")
SECRETS = {"secrets.yaml", "secrets.example.yaml"}
ALL_YAML = sorted(p for p in FIRMWARE.rglob("*.y*ml") if p.name not in SECRETS)


def test_the_shipped_files_are_all_covered() -> None:
    names = {str(p.relative_to(FIRMWARE)) for p in ALL_YAML}
    assert {
        "edgeagent.yaml",
        "devices/example-device.yaml",
        "examples/sensor-node.yaml",
        "examples/gateway.yaml",
    } <= names
    assert (FIRMWARE / "secrets.example.yaml").is_file()


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_every_file_validates(path: Path) -> None:
    if path.parent.name == "devices":
        loaded = load(BASE, overlay_file=path, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
        assert loaded.sources == (str(BASE), str(path))
    else:
        loaded = load(path, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
        assert loaded.sources == (str(path),)
    assert loaded.config.mdns.hosts


def test_the_shipped_default_turns_the_bridge_on_with_ssh_and_web() -> None:
    config = load_config(BASE, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    assert config.device.hostname == "edge-2e6d"
    assert config.dns_bridge.enabled is True
    assert (config.dns_bridge.address, config.dns_bridge.port) == ("127.0.0.53", 53)
    assert [(s.id, s.type, s.port) for s in config.mdns.services] == [
        ("ssh", "_ssh._tcp", 22),
        ("web", "_http._tcp", 80),
    ]


def test_the_example_overlay_drops_ssh_and_moves_web() -> None:
    overlay = FIRMWARE / "devices" / "example-device.yaml"
    config = load_config(
        BASE, overlay_file=overlay, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV
    )
    assert config.mdns.hosts == ("edge-2e6d", "greenhouse")
    assert [(s.id, s.port) for s in config.mdns.services] == [("web", 8080), ("metrics", 9100)]


def test_no_overlay_for_a_device_without_one() -> None:
    loaded = load(BASE, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    assert loaded.sources == (str(BASE),)  # there is no devices/edge-2e6d.yaml


def test_the_gateway_reads_its_secret() -> None:
    loaded = load(FIRMWARE / "examples" / "gateway.yaml", identity=IDENTITY, env={})
    assert loaded.secret_paths == {"mdns.services[web].txt.token"}


def test_the_secrets_example_is_a_flat_mapping() -> None:
    import yaml

    data = yaml.safe_load((FIRMWARE / "secrets.example.yaml").read_text())
    assert data
    assert all(isinstance(v, str | int | float | bool) for v in data.values())


def test_the_sensor_node_takes_its_id_from_the_environment() -> None:
    path = FIRMWARE / "examples" / "sensor-node.yaml"
    config = load_config(path, identity=IDENTITY, env={"SENSOR_ID": "17"})
    assert config.device.hostname == "sensor-17"
    assert config.mdns.instance_name == "Soil sensor 17"
    assert config.mdns.query_timeout == 0.75

"""The default host name comes from the board serial, then the device tree, then machine-id."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.identity import (
    DeviceIdentity,
    hostname_from_serial,
    parse_cpuinfo_serial,
    parse_device_tree_serial,
    parse_machine_id,
    read_identity,
)

PI_CPUINFO = """\
processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
Hardware\t: BCM2835
Revision\t: a02082
Serial\t\t: 00000000ABCD2E6D
Model\t\t: Raspberry Pi 3 Model B Rev 1.2
"""


def test_parse_cpuinfo_serial() -> None:
    assert parse_cpuinfo_serial(PI_CPUINFO) == "00000000abcd2e6d"
    assert parse_cpuinfo_serial("processor : 0\n") is None
    assert parse_cpuinfo_serial("Serial\t\t: 0000000000000000\n") is None  # emulators


def test_parse_device_tree_serial_strips_the_nul() -> None:
    assert parse_device_tree_serial(b"10000000beef\x00") == "10000000beef"
    assert parse_device_tree_serial(b"\x00") is None


def test_parse_machine_id() -> None:
    assert parse_machine_id("4c4c4544004a3510804bb4c04f4d3732\n") == (
        "4c4c4544004a3510804bb4c04f4d3732"
    )
    assert parse_machine_id("") is None


@pytest.mark.parametrize(
    ("serial", "hostname"),
    [("00000000abcd2e6d", "edge-2e6d"), ("2E6D", "edge-2e6d"), ("f", "edge-000f"), (None, "edge-0000")],
)  # fmt: skip
def test_hostname_from_serial(serial: str | None, hostname: str) -> None:
    assert hostname_from_serial(serial) == hostname


def files(tmp_path: Path, cpuinfo: str | None, dt: bytes | None, mid: str | None) -> DeviceIdentity:
    paths = {"cpuinfo": tmp_path / "cpuinfo", "dt": tmp_path / "dt", "mid": tmp_path / "mid"}
    if cpuinfo is not None:
        paths["cpuinfo"].write_text(cpuinfo)
    if dt is not None:
        paths["dt"].write_bytes(dt)
    if mid is not None:
        paths["mid"].write_text(mid)
    return read_identity(
        cpuinfo=paths["cpuinfo"], device_tree_serial=paths["dt"], machine_id=paths["mid"]
    )


def test_cpuinfo_wins(tmp_path: Path) -> None:
    identity = files(tmp_path, PI_CPUINFO, b"1234abcd\x00", "0123456789abcdef0123456789abcdef\n")
    assert identity == DeviceIdentity("00000000abcd2e6d", str(tmp_path / "cpuinfo"))
    assert identity.default_hostname == "edge-2e6d"


def test_device_tree_when_cpuinfo_has_no_serial(tmp_path: Path) -> None:
    identity = files(tmp_path, "processor : 0\n", b"1234ABCD\x00", "ffff\n")
    assert identity.default_hostname == "edge-abcd"
    assert identity.source == str(tmp_path / "dt")


def test_machine_id_last(tmp_path: Path) -> None:
    identity = files(tmp_path, None, None, "0123456789abcdef0123456789abc9f1\n")
    assert identity.default_hostname == "edge-c9f1"


def test_nothing_at_all(tmp_path: Path) -> None:
    identity = files(tmp_path, None, None, None)
    assert identity == DeviceIdentity(None, None)
    assert identity.default_hostname == "edge-0000"

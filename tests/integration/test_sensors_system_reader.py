"""The system metrics reader on real files: fake /proc and /sys trees, and this machine."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from edgeagent.sensors.system import (
    METRICS,
    AvailabilityChange,
    AvailabilityWatch,
    MetricRequest,
    fields_of,
)
from edgeagent.sensors.system_reader import read_metrics
from tests.unit.test_sensors_system import (
    PC_LOADAVG,
    PC_MEMINFO,
    PC_THERMAL,
    PC_WIRELESS,
    PI4_LOADAVG,
    PI4_MEMINFO,
    PI4_WIRELESS,
    UNASSOCIATED_WIRELESS,
)

ALL = list(METRICS)


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pi_tree(root: Path, *, throttled: str | None = "50000\n") -> Path:
    """A Raspberry Pi 4 on Raspberry Pi OS: every metric is there."""
    write(root, "proc/loadavg", PI4_LOADAVG)
    write(root, "proc/meminfo", PI4_MEMINFO)
    write(root, "proc/net/wireless", PI4_WIRELESS)
    write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root, "sys/class/thermal/thermal_zone0/temp", "48312\n")
    write(root, "sys/class/thermal/cooling_device0/type", "gpio-fan\n")  # not a zone
    if throttled is not None:
        write(root, "sys/devices/platform/soc/soc:firmware/get_throttled", throttled)
    write(root, "sys/class/hwmon/hwmon0/name", "cpu_thermal\n")
    write(root, "sys/class/hwmon/hwmon1/name", "rpi_volt\n")
    write(root, "sys/class/hwmon/hwmon1/in0_lcrit_alarm", "1\n")
    return root


def pc_tree(root: Path) -> Path:
    """A laptop: thermal zones (the Wi-Fi card's read fails), Wi-Fi, no Pi firmware."""
    write(root, "proc/loadavg", PC_LOADAVG)
    write(root, "proc/meminfo", PC_MEMINFO)
    write(root, "proc/net/wireless", PC_WIRELESS)
    for zone, files in PC_THERMAL.items():
        for name, text in files.items():
            write(root, f"sys/class/thermal/{zone}/{name}", text)
    # iwlwifi's temp fails while the card sleeps; a directory makes the read fail here.
    (root / "sys/class/thermal/thermal_zone3/temp").mkdir()
    write(root, "sys/class/hwmon/hwmon0/name", "coretemp\n")
    return root


def test_a_pi_reads_every_metric(tmp_path: Path) -> None:
    root = pi_tree(tmp_path / "root")
    state = tmp_path / "state"
    state.mkdir()
    sample = read_metrics(ALL, root=root, state_dir=state)
    assert sample.probe.available == tuple(ALL)
    assert dict(sample.probe.unavailable) == {}
    assert list(sample.values) == list(fields_of(ALL))
    values = sample.values
    assert values["cpu_temperature"] == 48.312
    assert (values["load_1m"], values["load_5m"], values["load_15m"]) == (0.08, 0.12, 0.09)
    assert values["memory_used_percent"] == 11.6
    assert values["memory_available"] == 3432960 * 1024
    assert values["wifi_signal"] == -52
    assert values["throttled_raw"] == 0x50000
    assert values["under_voltage"] is False  # the firmware file wins over hwmon
    assert values["under_voltage_occurred"] is True
    stat = os.statvfs(state)
    assert values["disk_free"] == stat.f_bavail * stat.f_frsize
    assert 0 <= values["disk_used_percent"] <= 100  # type: ignore[operator]


def test_a_pi_on_a_mainline_kernel_has_under_voltage_from_hwmon(tmp_path: Path) -> None:
    root = pi_tree(tmp_path, throttled=None)
    sample = read_metrics(["throttled"], root=root, state_dir=tmp_path)
    assert sample.probe.available == ("throttled",)
    assert sample.values["under_voltage"] is True
    assert sample.values["throttled_raw"] is None
    assert sample.values["throttled_occurred"] is None


def test_a_pc_reads_what_it_has_and_names_what_it_lacks(tmp_path: Path) -> None:
    root = pc_tree(tmp_path / "root")
    sample = read_metrics(ALL, root=root, state_dir=tmp_path)
    assert sample.probe.available == ("cpu_temperature", "load", "memory", "disk", "wifi_signal")
    assert dict(sample.probe.unavailable) == {
        "throttled": "not a Raspberry Pi firmware "
        "(no /sys/devices/platform/soc/soc:firmware/get_throttled, no rpi_volt hwmon)"
    }
    assert sample.values["cpu_temperature"] == 45.0  # x86_pkg_temp
    assert sample.values["wifi_signal"] == -40  # wlp2s0: wlan1 has no level
    assert "under_voltage" not in sample.values


def test_options_choose_the_zone_and_the_interface(tmp_path: Path) -> None:
    root = pc_tree(tmp_path)
    metrics = [
        MetricRequest("cpu_temperature", {"zone": "acpitz"}),
        MetricRequest("wifi_signal", {"interface": "wlan1"}),
    ]
    sample = read_metrics(metrics, root=root, state_dir=tmp_path)
    assert sample.values == {"cpu_temperature": 27.8}
    assert dict(sample.probe.unavailable) == {"wifi_signal": "wlan1 reports no signal level in dBm"}


def test_only_the_candidate_zones_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = pc_tree(tmp_path)
    read: list[str] = []
    original = Path.read_text

    def recording(self: Path, *args: object, **kwargs: object) -> str:
        read.append(str(self.relative_to(root)))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", recording)
    read_metrics(["cpu_temperature"], root=root, state_dir=tmp_path)
    temps = [path for path in read if path.endswith("/temp")]
    # x86_pkg_temp answers first: the Wi-Fi card, the chipset and the ACPI zone stay unread.
    assert temps == ["sys/class/thermal/thermal_zone2/temp"]


def test_a_failing_candidate_zone_falls_back_to_the_next(tmp_path: Path) -> None:
    root = pc_tree(tmp_path)
    (root / "sys/class/thermal/thermal_zone2/temp").unlink()
    (root / "sys/class/thermal/thermal_zone2/temp").mkdir()
    sample = read_metrics(["cpu_temperature"], root=root, state_dir=tmp_path)
    assert sample.values == {"cpu_temperature": 27.8}  # acpitz


def test_an_empty_tree_names_every_missing_source(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sample = read_metrics(ALL, root=tmp_path, state_dir=state)
    assert sample.values == {}
    assert sample.probe.available == ()
    assert dict(sample.probe.unavailable) == {
        "cpu_temperature": "no thermal zone",
        "load": "no /proc/loadavg",
        "memory": "no /proc/meminfo",
        "disk": f"no state directory {state}",
        "wifi_signal": "no /proc/net/wireless (no wireless extensions here)",
        "throttled": "not a Raspberry Pi firmware "
        "(no /sys/devices/platform/soc/soc:firmware/get_throttled, no rpi_volt hwmon)",
    }


def test_unreadable_and_garbled_files_become_reasons(tmp_path: Path) -> None:
    (tmp_path / "proc/loadavg").mkdir(parents=True)
    write(tmp_path, "proc/meminfo", "MemTotal: lots\n")
    write(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "\x00\xff garbage")
    sample = read_metrics(["load", "memory", "throttled"], root=tmp_path, state_dir=tmp_path)
    unavailable = dict(sample.probe.unavailable)
    assert unavailable["load"] == "cannot read /proc/loadavg: Is a directory"
    assert unavailable["memory"].startswith("not in the kernel's format (syntax: /proc/meminfo")
    assert unavailable["throttled"].startswith("not in the kernel's format (syntax: get_throttled")


def test_wifi_that_associates_later_is_reported_once_each_way(tmp_path: Path) -> None:
    root = pi_tree(tmp_path)
    write(root, "proc/net/wireless", UNASSOCIATED_WIRELESS)
    watch = AvailabilityWatch()
    changes = []
    for _ in range(3):
        sample = read_metrics(["load", "wifi_signal"], root=root, state_dir=tmp_path)
        changes += watch.observe(sample.probe)
    assert "wifi_signal" not in sample.values
    write(root, "proc/net/wireless", PI4_WIRELESS)
    for _ in range(3):
        sample = read_metrics(["load", "wifi_signal"], root=root, state_dir=tmp_path)
        changes += watch.observe(sample.probe)
    assert sample.values["wifi_signal"] == -52
    assert changes == [
        AvailabilityChange(
            "wifi_signal", "no wireless interface in /proc/net/wireless (not associated?)"
        ),
        AvailabilityChange("wifi_signal", None),
    ]


# What a real board may lack, and the reasons it gives for it.
KNOWN_REASONS = re.compile(
    r"no thermal zone|no CPU thermal zone among .*|thermal_zone\d+ \(.*\) gives no reading"
    r"|no /proc/net/wireless .*|no wireless interface in /proc/net/wireless .*"
    r"|no signal level in dBm from .*"
    r"|not a Raspberry Pi firmware .*|cannot read /sys/devices/platform/soc/soc:firmware/.*"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc and /sys")
def test_this_machine_reads_without_error_and_names_what_it_lacks(tmp_path: Path) -> None:
    sample = read_metrics(ALL, state_dir=tmp_path)
    probe = sample.probe
    assert sorted([*probe.available, *probe.unavailable]) == sorted(ALL)
    # Any Linux has load, memory and a filesystem under the state directory.
    assert {"load", "memory", "disk"} <= set(probe.available)
    assert set(sample.values) == set(fields_of(probe.available))
    for metric, reason in probe.unavailable.items():
        assert KNOWN_REASONS.fullmatch(reason), (metric, reason)
    again = read_metrics(ALL, state_dir=tmp_path)
    assert dict(again.probe.unavailable) == dict(probe.unavailable)  # stable: logged once

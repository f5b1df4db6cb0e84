"""System metrics core: the registry, the parsers of /proc and /sys texts, availability.

The fixtures are files as the kernel writes them: a Raspberry Pi 4 (4 GB, Raspberry Pi OS
bookworm, 64-bit) and a PC (x86, this kind of container's /proc/meminfo; a laptop's thermal
zones and Wi-Fi).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.sensors.model import DropReason, FieldSpec, ParseError, is_number
from edgeagent.sensors.system import (
    CPU_ZONE_TYPES,
    METRICS,
    THROTTLED_BITS,
    AvailabilityChange,
    AvailabilityWatch,
    MetricProbe,
    MetricRequest,
    MetricUnavailable,
    ThermalZone,
    WirelessLink,
    choose_cpu_zone,
    cpu_temperature_values,
    cpu_zone_candidates,
    decode_throttled,
    disk_values,
    fields_of,
    meminfo_table,
    parse_loadavg,
    parse_meminfo,
    parse_thermal_zones,
    parse_throttled,
    parse_wireless,
    parse_zone_temp,
    requests_from,
    under_voltage_alarm_values,
    wifi_values,
)

PI4_MEMINFO = """\
MemTotal:        3881520 kB
MemFree:         2869620 kB
MemAvailable:    3432960 kB
Buffers:           46560 kB
Cached:           578364 kB
SwapCached:            0 kB
Active:           392148 kB
Inactive:         461852 kB
Active(anon):     229296 kB
Inactive(anon):        0 kB
Active(file):     162852 kB
Inactive(file):   461852 kB
Unevictable:          16 kB
Mlocked:              16 kB
SwapTotal:        204796 kB
SwapFree:         204796 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:                 8 kB
Writeback:             0 kB
AnonPages:        229128 kB
Mapped:           213260 kB
Shmem:              2248 kB
KReclaimable:      40828 kB
Slab:              74828 kB
SReclaimable:      40828 kB
SUnreclaim:        34000 kB
KernelStack:        3632 kB
PageTables:         6816 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:     2145556 kB
Committed_AS:    1170664 kB
VmallocTotal:   261087232 kB
VmallocUsed:       14196 kB
VmallocChunk:          0 kB
Percpu:              720 kB
CmaTotal:         524288 kB
CmaFree:          508016 kB
"""

PC_MEMINFO = """\
MemTotal:       24683784 kB
MemFree:        24237268 kB
MemAvailable:   24275796 kB
Buffers:            4864 kB
Cached:           198164 kB
SwapCached:            0 kB
Active:            65512 kB
Inactive:         132652 kB
Active(anon):         32 kB
Inactive(anon):     5256 kB
Active(file):      65480 kB
Inactive(file):   127396 kB
Unevictable:       15328 kB
Mlocked:           12548 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:              8328 kB
Writeback:             0 kB
AnonPages:         10464 kB
Mapped:            11828 kB
Shmem:             10152 kB
KReclaimable:     112820 kB
Slab:             141268 kB
SReclaimable:     112820 kB
SUnreclaim:        28448 kB
KernelStack:        1448 kB
PageTables:         1472 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12341892 kB
Committed_AS:      64836 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       14252 kB
VmallocChunk:          0 kB
Percpu:             1128 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       26624 kB
DirectMap2M:     2070528 kB
DirectMap1G:    25165824 kB
"""

# Linux 3.13 and before: no MemAvailable.
OLD_MEMINFO = """\
MemTotal:         949448 kB
MemFree:          601232 kB
Buffers:           21300 kB
Cached:           201940 kB
"""

PI4_LOADAVG = "0.08 0.12 0.09 1/198 1432\n"
PC_LOADAVG = "0.01 0.35 0.72 1/91 3143\n"

WIRELESS_HEADER = (
    "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n"
    " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n"
)
# brcmfmac on a Pi 4, associated.
PI4_WIRELESS = (
    WIRELESS_HEADER
    + " wlan0: 0000   58.  -52.  -256        0      0      0     17      0        0\n"
)
# A laptop with iwlwifi (longer name), and a USB dongle listed but with no level.
PC_WIRELESS = (
    WIRELESS_HEADER
    + " wlan1: 0000    0     0     0        0      0      0      0      0        0\n"
    + "wlp2s0: 0000   70.  -40.  -256        0      0      0      3      0       12\n"
)
# cfg80211 leaves an unassociated station out: only the headers.
UNASSOCIATED_WIRELESS = WIRELESS_HEADER
# An old driver that reports a relative level, not dBm.
RELATIVE_WIRELESS = (
    WIRELESS_HEADER
    + "  eth1: 0000   70.   70.    0        0      0      0      0      0        0\n"
)

PI4_THERMAL = {"thermal_zone0": {"type": "cpu-thermal\n", "temp": "48312\n"}}
# A laptop: the ACPI zone, the DPTF/INT3400 zone, the package sensor, a Wi-Fi card whose
# read fails while it sleeps (no "temp"), the chipset; zone 10 sorts after zone 4.
PC_THERMAL = {
    "thermal_zone10": {"type": "pch_cannonlake\n", "temp": "42000\n"},
    "thermal_zone0": {"type": "acpitz\n", "temp": "27800\n"},
    "thermal_zone1": {"type": "INT3400 Thermal\n", "temp": "20000\n"},
    "thermal_zone2": {"type": "x86_pkg_temp\n", "temp": "45000\n"},
    "thermal_zone3": {"type": "iwlwifi_1\n"},
}

HA_DEVICE_CLASSES = {None, "temperature", "data_size", "signal_strength", "problem"}
HA_STATE_CLASSES = {None, "measurement"}


# --- the registry ----------------------------------------------------------------------------


def test_the_registry_lists_the_metrics_of_the_config_contract() -> None:
    assert list(METRICS) == [
        "cpu_temperature",
        "load",
        "memory",
        "disk",
        "wifi_signal",
        "throttled",
    ]
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.summary
        assert metric.sources
        assert metric.fields


def test_field_names_are_unique_across_metrics_and_use_home_assistant_names() -> None:
    names = [field for metric in METRICS.values() for field in metric.fields]
    assert len(names) == len(set(names))
    for metric in METRICS.values():
        for spec in metric.fields.values():
            assert spec.device_class in HA_DEVICE_CLASSES
            assert spec.state_class in HA_STATE_CLASSES
    assert METRICS["cpu_temperature"].fields["cpu_temperature"] == FieldSpec(
        "°C", "temperature", "measurement"
    )
    assert METRICS["wifi_signal"].fields["wifi_signal"] == FieldSpec(
        "dBm", "signal_strength", "measurement"
    )
    assert METRICS["memory"].fields["memory_available"].unit == "B"
    assert METRICS["memory"].fields["memory_available"].device_class == "data_size"
    assert METRICS["disk"].fields["disk_used_percent"].unit == "%"
    assert METRICS["throttled"].fields["under_voltage"].device_class == "problem"


def test_metrics_name_their_parameters() -> None:
    assert set(METRICS["cpu_temperature"].parameters) == {"zone"}
    assert set(METRICS["wifi_signal"].parameters) == {"interface"}
    assert not METRICS["load"].parameters


def test_requests_are_checked_against_the_registry() -> None:
    assert requests_from(["load", MetricRequest("wifi_signal", {"interface": "wlan1"})]) == (
        MetricRequest("load"),
        MetricRequest("wifi_signal", {"interface": "wlan1"}),
    )
    with pytest.raises(ValueError, match="unknown metric 'lod'; known: cpu_temperature, load"):
        MetricRequest("lod")
    with pytest.raises(ValueError, match="'load' takes no parameters, not zone"):
        MetricRequest("load", {"zone": "x"})
    with pytest.raises(ValueError, match="takes interface, not iface"):
        MetricRequest("wifi_signal", {"iface": "wlan0"})
    with pytest.raises(ValueError, match="'load' is listed twice"):
        requests_from(["load", "memory", "load"])


def test_fields_of_gives_every_field_in_order() -> None:
    assert list(fields_of(["load", "cpu_temperature"])) == [
        "load_1m",
        "load_5m",
        "load_15m",
        "cpu_temperature",
    ]
    assert "throttled_raw" in fields_of(["throttled"])


# --- load ------------------------------------------------------------------------------------


def test_loadavg_of_a_pi_and_a_pc() -> None:
    assert parse_loadavg(PI4_LOADAVG) == {"load_1m": 0.08, "load_5m": 0.12, "load_15m": 0.09}
    assert parse_loadavg(PC_LOADAVG) == {"load_1m": 0.01, "load_5m": 0.35, "load_15m": 0.72}


@pytest.mark.parametrize("text", ["", "0.1 0.2", "a b c 1/2 3", "nan 0.1 0.1 1/2 3", "-1 0 0"])
def test_loadavg_that_is_not_the_kernels_is_a_syntax_error(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_loadavg(text)
    assert caught.value.reason is DropReason.SYNTAX


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=3, max_size=3))
def test_loadavg_reads_what_the_kernel_prints(loads: list[float]) -> None:
    text = " ".join(f"{load:.2f}" for load in loads) + " 2/345 6789\n"
    values = parse_loadavg(text)
    assert list(values.values()) == [float(f"{load:.2f}") for load in loads]


# --- memory ----------------------------------------------------------------------------------


def test_meminfo_of_a_pi4() -> None:
    # (3881520 - 3432960) / 3881520 = 11.56 %
    assert parse_meminfo(PI4_MEMINFO) == {
        "memory_used_percent": 11.6,
        "memory_available": 3432960 * 1024,
    }


def test_meminfo_of_this_kind_of_pc() -> None:
    assert parse_meminfo(PC_MEMINFO) == {
        "memory_used_percent": 1.7,
        "memory_available": 24275796 * 1024,
    }


def test_meminfo_table_keeps_counts_without_a_unit() -> None:
    table = meminfo_table(PC_MEMINFO)
    assert table["HugePages_Total"] == 0
    assert table["Hugepagesize"] == 2048 * 1024
    assert table["Active(anon)"] == 32 * 1024


def test_a_kernel_without_memavailable_has_no_memory_metric() -> None:
    with pytest.raises(MetricUnavailable, match="no MemAvailable"):
        parse_meminfo(OLD_MEMINFO)


@pytest.mark.parametrize(
    "text", ["", "MemFree: 10 kB\n", "MemTotal: 0 kB\n", "MemTotal: lots\n", "MemTotal: 1 MB\n"]
)
def test_meminfo_without_a_total_is_a_syntax_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_meminfo(text)


@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=0, max_value=2**41))
def test_memory_used_is_a_percentage(total: int, available: int) -> None:
    values = parse_meminfo(f"MemTotal: {total} kB\nMemAvailable: {available} kB\n")
    assert 0 <= values["memory_used_percent"] <= 100  # type: ignore[operator]
    assert values["memory_available"] == min(available, total) * 1024


# --- disk ------------------------------------------------------------------------------------


def test_disk_counts_the_root_reserve_as_used_like_df() -> None:
    # A 32 GB SD card, ext4 with 4 KiB blocks: 7.6 M blocks, 6.0 M free, 5.6 M for users.
    values = disk_values(fragment_size=4096, blocks=7_600_000, free=6_000_000, available=5_600_000)
    # used 1.6 M / (1.6 M + 5.6 M) = 22.2 %
    assert values == {"disk_used_percent": 22.2, "disk_free": 5_600_000 * 4096}


def test_a_filesystem_without_a_size_has_no_disk_metric() -> None:
    with pytest.raises(MetricUnavailable, match="reports no size"):
        disk_values(fragment_size=4096, blocks=0, free=0, available=0)


@given(
    st.integers(min_value=1, max_value=2**40),
    st.data(),
    st.sampled_from([512, 1024, 4096, 65536]),
)
def test_disk_used_is_a_percentage(blocks: int, data: st.DataObject, size: int) -> None:
    free = data.draw(st.integers(min_value=0, max_value=blocks))
    available = data.draw(st.integers(min_value=0, max_value=free))
    values = disk_values(fragment_size=size, blocks=blocks, free=free, available=available)
    assert 0 <= values["disk_used_percent"] <= 100  # type: ignore[operator]
    assert values["disk_free"] == available * size


# --- cpu_temperature -------------------------------------------------------------------------


def test_the_pi_reads_its_cpu_thermal_zone() -> None:
    zones = parse_thermal_zones(PI4_THERMAL)
    assert zones == [ThermalZone("thermal_zone0", "cpu-thermal", 48.312)]
    assert cpu_temperature_values(zones) == {"cpu_temperature": 48.312}


def test_zones_sort_by_number_and_a_failed_read_has_no_reading() -> None:
    zones = parse_thermal_zones(PC_THERMAL)
    assert [zone.name for zone in zones] == [
        "thermal_zone0",
        "thermal_zone1",
        "thermal_zone2",
        "thermal_zone3",
        "thermal_zone10",
    ]
    assert zones[3] == ThermalZone("thermal_zone3", "iwlwifi_1", None)


def test_a_pc_prefers_the_package_sensor_to_the_acpi_zone() -> None:
    zones = parse_thermal_zones(PC_THERMAL)
    assert choose_cpu_zone(zones).type == "x86_pkg_temp"
    assert cpu_temperature_values(zones) == {"cpu_temperature": 45.0}
    without_package = [zone for zone in zones if zone.type != "x86_pkg_temp"]
    assert choose_cpu_zone(without_package).type == "acpitz"


def test_the_ranking_follows_the_documented_order() -> None:
    types = {
        "thermal_zone0": "acpitz",
        "thermal_zone1": "soc_dts0",
        "thermal_zone2": "cpu0-thermal",
        "thermal_zone3": "x86_pkg_temp",
        "thermal_zone4": "cpu-thermal",
        "thermal_zone5": "iwlwifi_1",
    }
    assert cpu_zone_candidates(types) == [
        "thermal_zone4",  # cpu-thermal
        "thermal_zone3",  # x86_pkg_temp
        "thermal_zone2",  # contains "cpu"
        "thermal_zone1",  # starts with "soc"
        "thermal_zone0",  # acpitz
    ]
    assert CPU_ZONE_TYPES[0] == "cpu-thermal"


def test_an_old_raspbian_kernel_names_the_pi_zone_after_its_driver() -> None:
    zones = parse_thermal_zones({"thermal_zone0": {"type": "bcm2835_thermal", "temp": "51540"}})
    assert cpu_temperature_values(zones) == {"cpu_temperature": 51.54}


def test_the_user_names_a_zone_by_type_or_directory() -> None:
    zones = parse_thermal_zones(PC_THERMAL)
    assert cpu_temperature_values(zones, "pch_cannonlake") == {"cpu_temperature": 42.0}
    assert cpu_temperature_values(zones, "thermal_zone0") == {"cpu_temperature": 27.8}
    with pytest.raises(MetricUnavailable, match=r"no thermal zone 'gpu-thermal' \(have: "):
        cpu_temperature_values(zones, "gpu-thermal")
    with pytest.raises(MetricUnavailable, match=r"thermal_zone3 \(iwlwifi_1\) gives no reading"):
        cpu_temperature_values(zones, "iwlwifi_1")


def test_a_zone_that_is_not_the_cpu_is_never_taken_for_it() -> None:
    zones = parse_thermal_zones({"thermal_zone0": {"type": "iwlwifi_1", "temp": "38000"}})
    with pytest.raises(MetricUnavailable) as caught:
        choose_cpu_zone(zones)
    assert caught.value.reason == (
        "no CPU thermal zone among thermal_zone0 (iwlwifi_1); name one with zone:"
    )


def test_no_zone_at_all() -> None:
    with pytest.raises(MetricUnavailable, match=r"^no thermal zone$"):
        cpu_temperature_values([])


def test_a_cpu_zone_without_a_reading_falls_back_to_the_next_one() -> None:
    zones = parse_thermal_zones(
        {
            "thermal_zone0": {"type": "x86_pkg_temp", "temp": "garbage"},
            "thermal_zone1": {"type": "acpitz", "temp": "30500"},
        }
    )
    assert cpu_temperature_values(zones) == {"cpu_temperature": 30.5}
    with pytest.raises(MetricUnavailable, match=r"thermal_zone0 \(x86_pkg_temp\) gives no"):
        cpu_temperature_values(zones[:1])


@pytest.mark.parametrize(
    ("text", "celsius"),
    [("48312\n", 48.312), ("-5000", -5.0), ("0", 0.0), ("", None), ("n/a", None), ("4.8", None)],
)
def test_zone_temperatures_are_millidegrees(text: str, celsius: float | None) -> None:
    assert parse_zone_temp(text) == celsius


# --- wifi_signal -----------------------------------------------------------------------------


def test_the_pi_reads_wlan0() -> None:
    links = parse_wireless(PI4_WIRELESS)
    assert links == [WirelessLink("wlan0", 58, -52, -256)]
    assert wifi_values(links) == {"wifi_signal": -52}


def test_a_pc_takes_the_first_interface_with_a_level() -> None:
    links = parse_wireless(PC_WIRELESS)
    assert [link.interface for link in links] == ["wlan1", "wlp2s0"]
    assert links[0].signal_dbm is None
    assert wifi_values(links) == {"wifi_signal": -40}
    assert wifi_values(links, "wlp2s0") == {"wifi_signal": -40}
    with pytest.raises(MetricUnavailable, match=r"^wlan1 reports no signal level in dBm$"):
        wifi_values(links, "wlan1")
    with pytest.raises(MetricUnavailable, match=r"wlan0 is not in .* \(have: wlan1, wlp2s0\)"):
        wifi_values(links, "wlan0")


def test_an_unassociated_board_has_no_wifi_signal() -> None:
    assert parse_wireless(UNASSOCIATED_WIRELESS) == []
    with pytest.raises(MetricUnavailable, match="no wireless interface"):
        wifi_values([])


def test_a_relative_level_is_not_dbm() -> None:
    links = parse_wireless(RELATIVE_WIRELESS)
    assert links == [WirelessLink("eth1", 70, 70, 0)]
    with pytest.raises(MetricUnavailable, match=r"^no signal level in dBm from eth1$"):
        wifi_values(links)


@pytest.mark.parametrize("row", ["wlan0 0000 58. -52. -256", "wlan0: 0000 good bad ugly 0", ":"])
def test_a_wireless_row_that_is_not_the_kernels_is_a_syntax_error(row: str) -> None:
    with pytest.raises(ParseError):
        parse_wireless(WIRELESS_HEADER + row + "\n")


@given(
    st.from_regex(r"[a-z][a-z0-9]{1,14}", fullmatch=True),
    st.integers(0, 100),
    st.integers(-256, 255),
    st.booleans(),
)
def test_wireless_rows_as_the_kernel_prints_them(
    name: str, quality: int, level: int, updated: bool
) -> None:
    mark = "." if updated else " "
    row = "%6s: %04x  %3d%c  %3d%c  %3d%c  %6d %6d %6d %6d %6d   %6d\n" % (  # noqa: UP031
        name,
        0,
        quality,
        mark,
        level,
        mark,
        -256,
        " ",
        0,
        0,
        0,
        5,
        0,
        0,
    )
    (link,) = parse_wireless(WIRELESS_HEADER + row)
    assert link == WirelessLink(name, quality, level, -256)
    assert link.signal_dbm == (level if -256 < level < 0 else None)


# --- throttled -------------------------------------------------------------------------------


def test_a_healthy_pi() -> None:
    values = decode_throttled(parse_throttled("0\n"))
    assert values == {**dict.fromkeys(THROTTLED_BITS, False), "throttled_raw": 0}


def test_under_voltage_now_and_throttled_now() -> None:
    # 0x50005: bits 0, 2, 16, 18
    values = decode_throttled(parse_throttled("50005\n"))
    assert values["throttled_raw"] == 0x50005
    assert {name for name in THROTTLED_BITS if values[name]} == {
        "under_voltage",
        "throttled",
        "under_voltage_occurred",
        "throttled_occurred",
    }


def test_under_voltage_and_throttling_have_occurred_but_not_now() -> None:
    # 0x50000: bits 16 and 18 (Raspberry Pi's documentation's own example)
    values = decode_throttled(parse_throttled("50000\n"))
    assert {name for name in THROTTLED_BITS if values[name]} == {
        "under_voltage_occurred",
        "throttled_occurred",
    }


def test_the_soft_temperature_limit_and_frequency_cap() -> None:
    values = decode_throttled(0x8000A)
    assert {name for name in THROTTLED_BITS if values[name]} == {
        "freq_capped",
        "soft_temp_limit",
        "soft_temp_limit_occurred",
    }


@pytest.mark.parametrize("text", ["50005", "0x50005", "throttled=0x50005\n", " 0X50005 "])
def test_sysfs_and_vcgencmd_spellings(text: str) -> None:
    assert parse_throttled(text) == 0x50005


def test_bare_digits_are_hex_as_the_kernel_prints_them() -> None:
    assert parse_throttled("10\n") == 0x10


@pytest.mark.parametrize("text", ["", "throttled=", "0x", "0xzz", "-1", "123456789"])
def test_throttled_text_that_is_not_a_mask_is_a_syntax_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_throttled(text)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_mask_decodes_to_its_bits_and_reads_back(value: int) -> None:
    assert parse_throttled(f"{value:x}\n") == value
    assert parse_throttled(f"throttled=0x{value:x}") == value
    values = decode_throttled(value)
    assert values["throttled_raw"] == value
    for name, bit in THROTTLED_BITS.items():
        assert values[name] is bool(value & (1 << bit))
    assert set(values) == set(METRICS["throttled"].fields)


def test_a_mask_out_of_range_is_refused() -> None:
    with pytest.raises(ParseError):
        decode_throttled(1 << 32)


def test_the_hwmon_alarm_gives_under_voltage_only() -> None:
    values = under_voltage_alarm_values("1\n")
    assert values["under_voltage"] is True
    assert set(values) == set(METRICS["throttled"].fields)
    assert all(values[name] is None for name in values if name != "under_voltage")
    assert under_voltage_alarm_values("0\n")["under_voltage"] is False
    with pytest.raises(ParseError):
        under_voltage_alarm_values("yes")


# --- availability ----------------------------------------------------------------------------


def test_a_missing_metric_is_reported_once_and_its_return_once() -> None:
    watch = AvailabilityWatch()
    no_wifi = MetricProbe(("load",), {"wifi_signal": "no wireless interface"})
    assert watch.observe(no_wifi) == [AvailabilityChange("wifi_signal", "no wireless interface")]
    assert watch.observe(no_wifi) == []
    assert watch.observe(no_wifi) == []
    assert dict(watch.unavailable) == {"wifi_signal": "no wireless interface"}
    assert watch.observe(MetricProbe(("load", "wifi_signal"), {})) == [
        AvailabilityChange("wifi_signal", None)
    ]
    assert watch.observe(MetricProbe(("load", "wifi_signal"), {})) == []
    assert dict(watch.unavailable) == {}


def test_a_new_reason_is_a_change() -> None:
    watch = AvailabilityWatch()
    watch.observe(MetricProbe((), {"throttled": "cannot read: Connection timed out"}))
    assert watch.observe(MetricProbe((), {"throttled": "not a Raspberry Pi firmware"})) == [
        AvailabilityChange("throttled", "not a Raspberry Pi firmware")
    ]


def test_an_all_available_first_probe_says_nothing() -> None:
    assert AvailabilityWatch().observe(MetricProbe(("load", "memory"), {})) == []


def test_every_value_a_metric_gives_is_a_number_or_a_flag() -> None:
    values = {
        **parse_loadavg(PI4_LOADAVG),
        **parse_meminfo(PI4_MEMINFO),
        **cpu_temperature_values(parse_thermal_zones(PI4_THERMAL)),
        **wifi_values(parse_wireless(PI4_WIRELESS)),
        **decode_throttled(0x50005),
    }
    for name, value in values.items():
        assert is_number(value) or isinstance(value, bool), name

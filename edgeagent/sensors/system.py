"""The board's own health as sensor values: the metric registry and pure parsers. Core.

Theory of operation
-------------------
A ``platform: system`` sensor lists ``metrics`` by name; ``METRICS`` is the registry the
config section validates them against (each ``Metric`` names its fields, with Home Assistant
units and classes, the files it reads and its optional parameters). The adapter
(``edgeagent.sensors.system_reader``) reads the files and hands their texts to the functions
here, which turn them into ``Values``. Nothing here opens a file: every function takes texts or
numbers, so the unit tests feed captured ``/proc`` and ``/sys`` files from a Raspberry Pi and
from a PC.

A metric the board does not have (no Wi-Fi association, no thermal zone, not a Raspberry Pi)
is not an error: the function raises ``MetricUnavailable`` with a short, stable reason, the
reader collects the reasons in a ``MetricProbe`` next to the values (``SystemSample``), and
``AvailabilityWatch`` turns successive probes into changes, so the adapter logs "wifi_signal
unavailable: ..." once when it happens and "available again" once when it ends, never every
interval. Reasons carry no measured value, or every read would look like a change.
Text that is not what the kernel writes raises ``ParseError`` (``DropReason.SYNTAX``); the
reader reports it as a reason too.

The metrics, their sources and the choices made:

``cpu_temperature``
    ``/sys/class/thermal/thermal_zone*/{type,temp}``, millidegrees Celsius. The zone is the
    one the user names (``zone:`` a zone type or directory name), otherwise the best-ranked
    zone that gives a reading: first a type in ``CPU_ZONE_TYPES`` (in that order:
    ``cpu-thermal`` is the Raspberry Pi's SoC sensor, ``x86_pkg_temp`` an Intel package),
    then any type containing ``cpu``, then one starting with ``soc``, then ``acpitz`` (the
    ACPI zone of a PC, next to the CPU on most boards). Other zones (a Wi-Fi card, a chipset,
    a battery) are never taken for the CPU: without a match the metric is unavailable and the
    reason lists the zones, so the user can pick one.
``load``
    ``/proc/loadavg``: ``load_1m``, ``load_5m``, ``load_15m``.
``memory``
    ``/proc/meminfo``: ``memory_used_percent`` = (MemTotal - MemAvailable) / MemTotal, the
    kernel's own estimate of what can be had without swapping (Linux 3.14 and later; older
    kernels lack MemAvailable and the metric is unavailable), and ``memory_available`` bytes.
``disk``
    ``statvfs`` of the state directory (the filesystem whose wear and fill matter to us):
    ``disk_used_percent`` = used / (used + available to unprivileged users), as ``df`` and
    psutil compute it, and ``disk_free`` = bytes available to unprivileged users.
``wifi_signal``
    ``/proc/net/wireless``: the signal level in dBm of the interface named by ``interface:``,
    otherwise of the first listed interface that reports one. The kernel lists only
    interfaces with wireless statistics (an unassociated cfg80211 station is left out) and
    prints the level in dBm only when the driver says it is dBm; a level of 0 or more is a
    driver's relative scale and -256 is "no level", both read as no signal.
``throttled``
    The Raspberry Pi firmware's flags (``vcgencmd get_throttled``), from
    ``/sys/devices/platform/soc/soc:firmware/get_throttled`` (the kernel prints the mask in
    hex without ``0x``). Raspberry Pi's documentation gives the bits: 0 under-voltage
    detected, 1 ARM frequency capped, 2 currently throttled, 3 soft temperature limit active,
    16-19 the same four "has occurred" (kept by the firmware until reboot, or until a request
    clears them). All eight are fields, with the raw mask as ``throttled_raw``. Kernels
    without that file (mainline kernels on a Pi) still have the ``rpi_volt`` hwmon device,
    whose ``in0_lcrit_alarm`` says under-voltage only: then ``under_voltage`` is filled and
    the other fields are ``None`` (no data).

Percentages are rounded to one decimal (as psutil, and so Home Assistant's System Monitor,
gives them); bytes are ints; temperatures keep the kernel's millidegree resolution.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from edgeagent.errors import EdgeAgentError
from edgeagent.sensors.model import DropReason, FieldSpec, ParseError, Values

# Home Assistant names (sensor and binary_sensor device classes, units, state classes).
_MEASUREMENT = "measurement"
_PERCENT = FieldSpec(unit="%", state_class=_MEASUREMENT)
_BYTES = FieldSpec(unit="B", device_class="data_size", state_class=_MEASUREMENT)
_LOAD = FieldSpec(state_class=_MEASUREMENT)
_PROBLEM = FieldSpec(device_class="problem")  # a binary sensor: on means something is wrong

CPU_ZONE_TYPES = (
    "cpu-thermal",  # the Raspberry Pi's SoC on Raspberry Pi OS; the usual device tree name
    "cpu_thermal",
    "bcm2835_thermal",  # the same sensor on Raspbian kernels before device tree zones
    "x86_pkg_temp",  # Intel: the package sensor of the coretemp/x86_pkg_temp driver
    "soc-thermal",
    "soc_thermal",
    "tcpu",  # Intel DPTF processor participant (newer name)
    "b0d4",  # the same participant as older firmware names it (bus 0, device 4)
)

# get_throttled bits, as Raspberry Pi's documentation lists them (vcgencmd get_throttled).
THROTTLED_BITS: Mapping[str, int] = MappingProxyType(
    {
        "under_voltage": 0,
        "freq_capped": 1,
        "throttled": 2,
        "soft_temp_limit": 3,
        "under_voltage_occurred": 16,
        "freq_capped_occurred": 17,
        "throttled_occurred": 18,
        "soft_temp_limit_occurred": 19,
    }
)


class MetricUnavailable(EdgeAgentError):
    """The board does not have this metric right now; ``reason`` says why (stable text)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric a system sensor can list: its fields, where it reads them, its parameters."""

    name: str
    summary: str
    sources: tuple[str, ...]
    fields: Mapping[str, FieldSpec]
    parameters: Mapping[str, str] = field(default_factory=dict)  # name -> what it does


METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        metric.name: metric
        for metric in (
            Metric(
                "cpu_temperature",
                "the CPU's temperature, from the CPU's thermal zone",
                ("/sys/class/thermal/thermal_zone*/type", "/sys/class/thermal/thermal_zone*/temp"),
                {"cpu_temperature": FieldSpec("°C", "temperature", _MEASUREMENT)},
                {"zone": "the thermal zone to read: its type (cpu-thermal) or its directory name"},
            ),
            Metric(
                "load",
                "the load averages over 1, 5 and 15 minutes",
                ("/proc/loadavg",),
                {"load_1m": _LOAD, "load_5m": _LOAD, "load_15m": _LOAD},
            ),
            Metric(
                "memory",
                "memory in use (percent) and available (bytes), from MemAvailable",
                ("/proc/meminfo",),
                {"memory_used_percent": _PERCENT, "memory_available": _BYTES},
            ),
            Metric(
                "disk",
                "the state directory's filesystem: used (percent) and free (bytes)",
                ("statvfs(state directory)",),
                {"disk_used_percent": _PERCENT, "disk_free": _BYTES},
            ),
            Metric(
                "wifi_signal",
                "the Wi-Fi signal level in dBm",
                ("/proc/net/wireless",),
                {"wifi_signal": FieldSpec("dBm", "signal_strength", _MEASUREMENT)},
                {"interface": "the wireless interface to read (default: the first with a level)"},
            ),
            Metric(
                "throttled",
                "the Raspberry Pi firmware's under-voltage and throttling flags",
                (
                    "/sys/devices/platform/soc/soc:firmware/get_throttled",
                    "/sys/class/hwmon/hwmon*/in0_lcrit_alarm (rpi_volt)",
                ),
                {**dict.fromkeys(THROTTLED_BITS, _PROBLEM), "throttled_raw": FieldSpec()},
            ),
        )
    }
)


@dataclass(frozen=True, slots=True)
class MetricRequest:
    """One entry of a system sensor's ``metrics:`` list: a name and its parameters."""

    name: str
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        metric = METRICS.get(self.name)
        if metric is None:
            raise ValueError(f"unknown metric {self.name!r}; known: {', '.join(METRICS)}")
        unknown = sorted(set(self.options) - set(metric.parameters))
        if unknown:
            takes = ", ".join(metric.parameters) or "no parameters"
            raise ValueError(f"metric {self.name!r} takes {takes}, not {', '.join(unknown)}")


def requests_from(metrics: Iterable[str | MetricRequest]) -> tuple[MetricRequest, ...]:
    """Names or requests as requests, in order; ``ValueError`` for an unknown or repeated one."""
    requests = tuple(m if isinstance(m, MetricRequest) else MetricRequest(m) for m in metrics)
    seen: set[str] = set()
    for request in requests:
        if request.name in seen:
            raise ValueError(f"metric {request.name!r} is listed twice")
        seen.add(request.name)
    return requests


def fields_of(metrics: Iterable[str | MetricRequest]) -> dict[str, FieldSpec]:
    """Every field the listed metrics report, in order (what subscriptions may name)."""
    return {
        name: spec
        for request in requests_from(metrics)
        for name, spec in METRICS[request.name].fields.items()
    }


@dataclass(frozen=True, slots=True)
class MetricProbe:
    """Which of the requested metrics a read found, and why each of the others is missing."""

    available: tuple[str, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)  # metric -> reason


@dataclass(frozen=True, slots=True)
class SystemSample:
    """One read of a system sensor: the fields of the available metrics, and the probe.

    The fields of an unavailable metric are absent from ``values`` (no reading for them);
    a metric that is available but lacks one field (``throttled`` from hwmon) has it ``None``.
    """

    values: Values
    probe: MetricProbe


@dataclass(frozen=True, slots=True)
class AvailabilityChange:
    """A metric became unavailable (``reason`` says why) or available again (``reason`` None)."""

    metric: str
    reason: str | None


class AvailabilityWatch:
    """Turns successive probes into changes worth one log line each.

    The first probe reports every unavailable metric; later ones report a metric that goes
    missing, comes back, or is missing for a different reason. An unchanged probe reports
    nothing, so a board without Wi-Fi says so once per sensor, not every interval.
    """

    __slots__ = ("_unavailable",)

    def __init__(self) -> None:
        self._unavailable: dict[str, str] = {}

    @property
    def unavailable(self) -> Mapping[str, str]:
        """The metrics missing at the last probe, with their reasons (for status)."""
        return MappingProxyType(self._unavailable)

    def observe(self, probe: MetricProbe) -> list[AvailabilityChange]:
        changes = [
            AvailabilityChange(metric, reason)
            for metric, reason in probe.unavailable.items()
            if self._unavailable.get(metric) != reason
        ]
        changes += [
            AvailabilityChange(metric, None)
            for metric in self._unavailable
            if metric not in probe.unavailable
        ]
        self._unavailable = dict(probe.unavailable)
        return changes


# --- load, memory, disk -------------------------------------------------------------------


def parse_loadavg(text: str) -> Values:
    """``/proc/loadavg`` (``0.31 0.20 0.15 1/123 4567``) -> ``load_1m``, ``_5m``, ``_15m``."""
    parts = text.split()
    try:
        loads = [float(part) for part in parts[:3]]
    except ValueError:
        raise ParseError(DropReason.SYNTAX, f"/proc/loadavg: {text[:40]!r}") from None
    if len(loads) < 3 or not all(math.isfinite(load) and load >= 0 for load in loads):
        raise ParseError(DropReason.SYNTAX, f"/proc/loadavg: {text[:40]!r}")
    return {"load_1m": loads[0], "load_5m": loads[1], "load_15m": loads[2]}


def parse_meminfo(text: str) -> Values:
    """``/proc/meminfo`` -> ``memory_used_percent`` and ``memory_available`` (bytes)."""
    table = meminfo_table(text)
    total = table.get("MemTotal")
    if not total:
        raise ParseError(DropReason.SYNTAX, "/proc/meminfo has no MemTotal")
    available = table.get("MemAvailable")
    if available is None:
        raise MetricUnavailable("no MemAvailable in /proc/meminfo (a kernel before 3.14)")
    available = min(available, total)
    return {
        "memory_used_percent": _percent(total - available, total),
        "memory_available": available,
    }


def meminfo_table(text: str) -> dict[str, int]:
    """Every ``/proc/meminfo`` line as name -> bytes (``kB`` lines) or a count (no unit)."""
    table: dict[str, int] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        parts = rest.split()
        if not parts or not parts[0].isdigit() or len(parts) > 2:
            raise ParseError(DropReason.SYNTAX, f"/proc/meminfo line {line[:40]!r}")
        if len(parts) == 2 and parts[1] != "kB":
            raise ParseError(DropReason.SYNTAX, f"/proc/meminfo unit {parts[1][:10]!r}")
        # The kernel's "kB" is KiB (it shifts pages by PAGE_SHIFT - 10).
        table[name.strip()] = int(parts[0]) * (1024 if len(parts) == 2 else 1)
    return table


def disk_values(*, fragment_size: int, blocks: int, free: int, available: int) -> Values:
    """``statvfs`` figures (``f_frsize``, ``f_blocks``, ``f_bfree``, ``f_bavail``) -> disk fields.

    ``disk_free`` is what an unprivileged process may still write; the root reserve counts
    as used, as in ``df``."""
    if blocks <= 0 or fragment_size <= 0:
        raise MetricUnavailable("the state directory's filesystem reports no size")
    used = max(0, blocks - free)
    available = max(0, available)
    return {
        "disk_used_percent": _percent(used, used + available),
        "disk_free": available * fragment_size,
    }


# --- cpu_temperature ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThermalZone:
    """One ``/sys/class/thermal/thermal_zoneN``: its type and reading (None: none given)."""

    name: str  # thermal_zone0
    type: str  # cpu-thermal
    celsius: float | None

    def describe(self) -> str:
        return f"{self.name} ({self.type})"


def parse_thermal_zones(texts: Mapping[str, Mapping[str, str]]) -> list[ThermalZone]:
    """Zone directory name -> {file name: text} (``type``, ``temp``) -> zones, by number.

    A file the reader could not read is left out of its zone's mapping; a zone whose ``temp``
    is missing or not a number (some drivers fail the read while their device sleeps) has
    ``celsius`` None."""
    zones = [
        ThermalZone(name, files.get("type", "").strip(), parse_zone_temp(files.get("temp", "")))
        for name, files in texts.items()
    ]
    return sorted(zones, key=lambda zone: _zone_number(zone.name))


def parse_zone_temp(text: str) -> float | None:
    """A zone's ``temp`` (millidegrees Celsius, ``48312``) -> 48.312; None when not a number."""
    temp = text.strip()
    return int(temp) / 1000 if re.fullmatch(r"-?\d{1,9}", temp) else None


def cpu_zone_candidates(types: Mapping[str, str], zone: str | None = None) -> list[str]:
    """Zone directory name -> type, to the zones worth reading, best first (ranking above).

    ``zone`` names one by type or directory name. Raises ``MetricUnavailable`` when there is
    no zone, no such zone, or no CPU zone. The reader reads ``temp`` of these only, in this
    order, until one gives a reading: the other zones' devices (a Wi-Fi card) are not woken."""
    if not types:
        raise MetricUnavailable("no thermal zone")
    names = sorted(types, key=_zone_number)
    if zone is not None:
        named = [name for name in names if zone in (name, types[name])]
        if not named:
            raise MetricUnavailable(f"no thermal zone {zone!r} (have: {_listing(names, types)})")
        return named
    ranked = [(rank, name) for name in names if (rank := _cpu_rank(types[name])) is not None]
    if not ranked:
        raise MetricUnavailable(
            f"no CPU thermal zone among {_listing(names, types)}; name one with zone:"
        )
    return [name for _, name in sorted(ranked, key=lambda pair: pair[0])]


def choose_cpu_zone(zones: Sequence[ThermalZone], zone: str | None = None) -> ThermalZone:
    """The zone ``cpu_temperature`` reads: the first candidate that gives a reading."""
    by_name = {z.name: z for z in zones}
    candidates = cpu_zone_candidates({z.name: z.type for z in zones}, zone)
    for name in candidates:
        if by_name[name].celsius is not None:
            return by_name[name]
    raise MetricUnavailable(f"{by_name[candidates[0]].describe()} gives no reading")


def cpu_temperature_values(zones: Sequence[ThermalZone], zone: str | None = None) -> Values:
    celsius = choose_cpu_zone(zones, zone).celsius
    return {"cpu_temperature": celsius}


# --- wifi_signal --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WirelessLink:
    """One ``/proc/net/wireless`` row: link quality, level and noise as the kernel prints them."""

    interface: str
    quality: int
    level: int
    noise: int

    @property
    def signal_dbm(self) -> int | None:
        """The level in dBm, or None: the kernel subtracts 256 from a dBm level (so -256
        means "no level") and prints a driver's relative scale as 0 or more."""
        return self.level if -256 < self.level < 0 else None


def parse_wireless(text: str) -> list[WirelessLink]:
    """``/proc/net/wireless`` -> its rows, in the kernel's order (headers skipped).

    A row is ``%6s: %04x  %3d%c  %3d%c  %3d%c ...`` (``net/wireless/wext-proc.c``); the
    character after each number is ``.`` when the driver updated it since the last read."""
    links = []
    for line in text.splitlines():
        if "|" in line or not line.strip():
            continue
        interface, colon, rest = line.partition(":")
        numbers = rest.split()
        try:
            if not colon or not interface.strip() or len(numbers) < 4:
                raise ValueError
            int(numbers[0], 16)  # the status word
            quality, level, noise = (int(number.rstrip(".")) for number in numbers[1:4])
        except ValueError:
            raise ParseError(DropReason.SYNTAX, f"/proc/net/wireless row {line[:40]!r}") from None
        links.append(WirelessLink(interface.strip(), quality, level, noise))
    return links


def wifi_values(links: Sequence[WirelessLink], interface: str | None = None) -> Values:
    """The ``wifi_signal`` of ``interface``, or of the first link that has a level in dBm."""
    if interface is not None:
        named = [link for link in links if link.interface == interface]
        if not named:
            have = ", ".join(link.interface for link in links) or "none"
            raise MetricUnavailable(f"{interface} is not in /proc/net/wireless (have: {have})")
        if named[0].signal_dbm is None:
            raise MetricUnavailable(f"{interface} reports no signal level in dBm")
        return {"wifi_signal": named[0].signal_dbm}
    if not links:
        raise MetricUnavailable("no wireless interface in /proc/net/wireless (not associated?)")
    for link in links:
        if link.signal_dbm is not None:
            return {"wifi_signal": link.signal_dbm}
    have = ", ".join(link.interface for link in links)
    raise MetricUnavailable(f"no signal level in dBm from {have}")


# --- throttled ----------------------------------------------------------------------------


def parse_throttled(text: str) -> int:
    """The firmware's mask from sysfs (``50005``), ``0x50005`` or ``throttled=0x50005``.

    Digits without ``0x`` are hex too: the kernel prints the sysfs file with ``%x``."""
    value = text.strip().removeprefix("throttled=").strip()
    digits = value[2:] if value[:2].lower() == "0x" else value
    if not re.fullmatch(r"[0-9a-fA-F]{1,8}", digits):
        raise ParseError(DropReason.SYNTAX, f"get_throttled {text[:20]!r}")
    return int(digits, 16)


def decode_throttled(value: int) -> Values:
    """The mask -> one bool per documented bit, and ``throttled_raw``."""
    if not 0 <= value < 1 << 32:
        raise ParseError(DropReason.CONVERT, f"get_throttled {value} is not a 32-bit mask")
    values: Values = {name: bool(value >> bit & 1) for name, bit in THROTTLED_BITS.items()}
    values["throttled_raw"] = value
    return values


def under_voltage_alarm_values(text: str) -> Values:
    """The ``rpi_volt`` hwmon ``in0_lcrit_alarm`` (``0``/``1``) -> ``under_voltage`` only.

    The hwmon driver reads the firmware's flags every two seconds, asking it to clear the
    sticky ones each time, and raises the alarm when the under-voltage sticky bit was set:
    under-voltage within the last poll. It says nothing of the other flags."""
    flag = text.strip()
    if flag not in ("0", "1"):
        raise ParseError(DropReason.SYNTAX, f"in0_lcrit_alarm {text[:20]!r}")
    values: Values = dict.fromkeys(METRICS["throttled"].fields)
    values["under_voltage"] = flag == "1"
    return values


# --- helpers ------------------------------------------------------------------------------


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole > 0 else 0.0


def _zone_number(name: str) -> tuple[int, str]:  # thermal_zone10 after thermal_zone9
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else -1, name)


def _cpu_rank(zone_type: str) -> int | None:
    kind = zone_type.lower()
    if kind in CPU_ZONE_TYPES:
        return CPU_ZONE_TYPES.index(kind)
    if "cpu" in kind:
        return len(CPU_ZONE_TYPES)
    if kind.startswith("soc"):
        return len(CPU_ZONE_TYPES) + 1
    if kind == "acpitz":
        return len(CPU_ZONE_TYPES) + 2
    return None


def _listing(names: Iterable[str], types: Mapping[str, str]) -> str:
    return ", ".join(f"{name} ({types[name]})" for name in names)

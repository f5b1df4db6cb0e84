"""Reads a system sensor's files: the blocking half of its adapter (no asyncio here).

``read_metrics`` reads, for each requested metric, the files ``edgeagent.sensors.system``
names, under ``root`` (``/`` on the board; a fake tree in tests), hands the texts to that
core and returns a ``SystemSample``: the values of the metrics it could read and, for each
of the others, why not. It never raises for a missing or unreadable file, or for text that
is not in the kernel's format: those become reasons. Every call reads afresh, so a metric
that appears later (Wi-Fi associates, a USB thermal sensor is plugged in) is picked up at the
next interval; the adapter feeds the probes to ``AvailabilityWatch`` to log changes once.

The reads block (sysfs reads can wait on firmware: ``get_throttled`` asks the Raspberry Pi's
VideoCore), so the asyncio adapter runs ``read_metrics`` in a worker thread. ``state_dir``
is taken as given, not under ``root``: ``statvfs`` needs the real filesystem.

On Raspberry Pi kernels that mark ``soc:firmware/get_throttled`` deprecated, the first read
after boot leaves one "deprecated, use hwmon sysfs instead" warning in the kernel log; the
hwmon device carries the under-voltage flag only, so the file is still the one read first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from edgeagent.sensors.model import ParseError, Values
from edgeagent.sensors.system import (
    MetricProbe,
    MetricRequest,
    MetricUnavailable,
    SystemSample,
    cpu_temperature_values,
    cpu_zone_candidates,
    decode_throttled,
    disk_values,
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

THERMAL = "sys/class/thermal"
LOADAVG = "proc/loadavg"
MEMINFO = "proc/meminfo"
WIRELESS = "proc/net/wireless"
FIRMWARE_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
HWMON = "sys/class/hwmon"
RPI_VOLT = "rpi_volt"  # the Raspberry Pi firmware's hwmon device (raspberrypi-hwmon)


def read_metrics(
    metrics: Iterable[str | MetricRequest], *, root: Path = Path("/"), state_dir: Path
) -> SystemSample:
    """Read every requested metric once (blocking); see the module docstring.

    ``ValueError`` for an unknown or repeated metric or parameter (config checks them first)."""
    tree = _Tree(root)
    values: Values = {}
    available: list[str] = []
    unavailable: dict[str, str] = {}
    for request in requests_from(metrics):
        try:
            values.update(_READERS[request.name](tree, request.options, state_dir))
        except MetricUnavailable as exc:
            unavailable[request.name] = exc.reason
        except ParseError as exc:
            unavailable[request.name] = f"not in the kernel's format ({exc})"
        except OSError as exc:  # a directory that cannot be listed, say
            unavailable[request.name] = f"cannot read {exc.filename}: {_describe(exc)}"
        else:
            available.append(request.name)
    return SystemSample(values, MetricProbe(tuple(available), unavailable))


class _Tree:
    """Files under ``root``, named in reasons as they are on the board (``/proc/loadavg``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, relative: str, *, missing: str | None = None) -> str:
        """The file's text; a missing file raises ``MetricUnavailable(missing)`` when given,
        any other failure ``MetricUnavailable`` naming the file and the cause."""
        try:
            return (self.root / relative).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            if missing is None:
                raise
            raise MetricUnavailable(missing) from None
        except OSError as exc:
            raise MetricUnavailable(f"cannot read /{relative}: {_describe(exc)}") from None

    def entries(self, relative: str) -> list[str]:
        """Names in a directory (sorted); empty when it does not exist."""
        try:
            return sorted(entry.name for entry in (self.root / relative).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []


_Reader = Callable[[_Tree, Mapping[str, str], Path], Values]


def _cpu_temperature(tree: _Tree, options: Mapping[str, str], state_dir: Path) -> Values:
    zones = [name for name in tree.entries(THERMAL) if re.fullmatch(r"thermal_zone\d+", name)]
    texts: dict[str, dict[str, str]] = {}
    for zone in zones:
        try:
            texts[zone] = {"type": tree.text(f"{THERMAL}/{zone}/type")}
        except (OSError, MetricUnavailable):
            continue  # a zone without a readable type is not one we could choose
    types = {zone: files["type"].strip() for zone, files in texts.items()}
    wanted = options.get("zone")
    for zone in cpu_zone_candidates(types, wanted):
        try:
            texts[zone]["temp"] = temp = tree.text(f"{THERMAL}/{zone}/temp")
        except (OSError, MetricUnavailable):
            continue  # some drivers fail the read while their device sleeps: try the next
        if parse_zone_temp(temp) is not None:
            break
    return cpu_temperature_values(parse_thermal_zones(texts), wanted)


def _load(tree: _Tree, options: Mapping[str, str], state_dir: Path) -> Values:
    return parse_loadavg(tree.text(LOADAVG, missing=f"no /{LOADAVG}"))


def _memory(tree: _Tree, options: Mapping[str, str], state_dir: Path) -> Values:
    return parse_meminfo(tree.text(MEMINFO, missing=f"no /{MEMINFO}"))


def _disk(tree: _Tree, options: Mapping[str, str], state_dir: Path) -> Values:
    try:
        stat = os.statvfs(state_dir)
    except FileNotFoundError:
        raise MetricUnavailable(f"no state directory {state_dir}") from None
    except OSError as exc:
        raise MetricUnavailable(f"cannot statvfs {state_dir}: {_describe(exc)}") from None
    return disk_values(
        fragment_size=stat.f_frsize,
        blocks=stat.f_blocks,
        free=stat.f_bfree,
        available=stat.f_bavail,
    )


def _wifi_signal(tree: _Tree, options: Mapping[str, str], state_dir: Path) -> Values:
    text = tree.text(WIRELESS, missing=f"no /{WIRELESS} (no wireless extensions here)")
    return wifi_values(parse_wireless(text), options.get("interface"))


def _throttled(tree: _Tree, options: Mapping[str, str], state_dir: Path) -> Values:
    try:
        return decode_throttled(parse_throttled(tree.text(FIRMWARE_THROTTLED)))
    except FileNotFoundError:
        pass
    for hwmon in tree.entries(HWMON):
        try:
            name = tree.text(f"{HWMON}/{hwmon}/name").strip()
        except (OSError, MetricUnavailable):
            continue
        if name == RPI_VOLT:
            return under_voltage_alarm_values(tree.text(f"{HWMON}/{hwmon}/in0_lcrit_alarm"))
    raise MetricUnavailable(
        f"not a Raspberry Pi firmware (no /{FIRMWARE_THROTTLED}, no {RPI_VOLT} hwmon)"
    )


_READERS: Mapping[str, _Reader] = {
    "cpu_temperature": _cpu_temperature,
    "load": _load,
    "memory": _memory,
    "disk": _disk,
    "wifi_signal": _wifi_signal,
    "throttled": _throttled,
}


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__

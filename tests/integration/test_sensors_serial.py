"""Serial sensors on real pseudo-terminals: JSON lines split at awkward places with garbage
between them, and a USB adapter unplugged and plugged back (its /dev/serial/by-id style link
removed and created again), all through the real ``SensorsService``."""

from __future__ import annotations

import asyncio
import os
import termios
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeagent.config.model import SensorConfig
from edgeagent.resource import Backoff
from edgeagent.sensors.fields import line_settings_of
from edgeagent.sensors.model import FieldSpec
from edgeagent.sensors.pipeline import SensorState
from edgeagent.sensors.service import SensorsService
from edgeagent.serial.ports import SerialPorts

FAST = Backoff(initial=0.05, maximum=0.2, jitter=0.0)


async def until(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    """Poll ``predicate``: the service's counters and states have no event to wait on."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class Adapter:
    """A pty pair standing in for a USB serial adapter, reached through a by-id link."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        link.symlink_to(os.ttyname(self.slave))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        self.link.unlink()
        os.close(self.master)
        os.close(self.slave)


async def test_json_lines_split_anywhere_with_garbage_between(tmp_path: Path) -> None:
    link = tmp_path / "usb-1a86_USB_Serial-if00-port0"
    adapter = Adapter(link)
    config = SensorConfig(
        id="air", platform="serial", port=str(link), parser="json",
        fields=(("pm25", FieldSpec("µg/m³", "pm25", "measurement")),),
    )  # fmt: skip
    service = SensorsService([config], state_dir=tmp_path, backoff=FAST)
    runner = service.runners["air"]
    try:
        async with service:
            await until(lambda: runner.state is SensorState.OPEN, "the port to open")
            for chunk in (b'{"pm', b'25": 1', b"2}\r", b"\n\xff\xfe garbage\n", b'{"pm25": 1',
                          b'3, "other": 1}\n', b"[1, 2]\n", b'{"pm25": 14}\n'):  # fmt: skip
                adapter.write(chunk)
                await asyncio.sleep(0.01)
            await until(lambda: runner.pipeline.stats.readings == 3, "three readings")
            found = await service.recent(0)
            assert [r.values for _, r in found] == [{"pm25": 12}, {"pm25": 13}, {"pm25": 14}]
            document = service.sensors_document()[0]
            assert document["state"] == "open"
            assert document["frames"] == 5
            assert sum(document["dropped"].values()) == 2  # the bad UTF-8 line and the list
            assert document["last"]["fields"] == {"pm25": {"value": 14, "unit": "µg/m³"}}
    finally:
        adapter.unplug()


async def test_unplug_waits_for_the_device_and_replug_resumes_readings(tmp_path: Path) -> None:
    link = tmp_path / "usb-sensor"
    adapter = Adapter(link)
    config = SensorConfig(id="t", platform="serial", port=str(link), parser="kv")
    service = SensorsService([config], state_dir=tmp_path, backoff=FAST)
    runner = service.runners["t"]
    async with service:
        await until(lambda: runner.state is SensorState.OPEN, "the port to open")
        adapter.write(b"t=21.5 rh=40\n")
        await until(lambda: runner.pipeline.stats.readings == 1, "a reading")
        adapter.unplug()
        await until(lambda: runner.state is SensorState.WAITING, "waiting for the device")
        assert runner.pipeline.stats.reopens == 1
        assert service.report().counters["reopens"] == 1
        adapter = Adapter(link)  # plugged back in: the link is there again
        try:
            await until(lambda: runner.state is SensorState.OPEN, "the port to open again")
            adapter.write(b"t=22,rh=41\n")
            await until(lambda: runner.pipeline.stats.readings == 2, "readings again")
            assert runner.pipeline.last is not None
            assert runner.pipeline.last.values == {"t": 22, "rh": 41}
        finally:
            adapter.unplug()
    assert runner.state is SensorState.STOPPED


async def test_a_missing_device_at_start_is_waited_for(tmp_path: Path) -> None:
    link = tmp_path / "not-yet"
    config = SensorConfig(id="late", platform="serial", port=str(link), parser="json")
    service = SensorsService([config], state_dir=tmp_path, backoff=FAST)
    runner = service.runners["late"]
    async with service:
        await until(lambda: runner.state is SensorState.WAITING, "waiting for the device")
        adapter = Adapter(link)
        try:
            await until(lambda: runner.state is SensorState.OPEN, "the port to open", 5)
            adapter.write(b'{"v": 1}\n')
            await until(lambda: runner.pipeline.stats.readings == 1, "a reading")
        finally:
            adapter.unplug()


async def test_a_device_read_and_written_is_one_port(tmp_path: Path) -> None:
    """An Arduino that prints readings and takes commands: the sensor and the actuator's
    writes share one open port (SerialPorts owns it), at the sensor's line settings."""
    link = tmp_path / "arduino"
    adapter = Adapter(link)
    config = SensorConfig(id="duino", platform="serial", port=str(link), baud=19200, parser="kv")
    ports = SerialPorts({str(link): line_settings_of(config)})
    try:
        async with ports:
            service = SensorsService([config], state_dir=tmp_path, backoff=FAST, ports=ports)
            runner = service.runners["duino"]
            async with service:
                await until(lambda: runner.state is SensorState.OPEN, "the port to open")
                adapter.write(b"t=20\n")
                await until(lambda: runner.pipeline.stats.readings == 1, "a reading")
                await ports.write(str(link), b"FAN ON\n")
                assert os.read(adapter.master, 64) == b"FAN ON\n"
                assert ports.stats()["open"] == [str(link)]  # opened once, by both
                assert termios.tcgetattr(adapter.slave)[4] == termios.B19200
                adapter.write(b"t=21\n")
                await until(lambda: runner.pipeline.stats.readings == 2, "another reading")
    finally:
        adapter.unplug()


def _pms_frame(pm1: int, pm25: int, pm10: int) -> bytes:
    body = (
        b"BM"
        + (28).to_bytes(2, "big")
        + b"\0\0\0\0"
        + b"".join(v.to_bytes(2, "big") for v in (pm1, pm25, pm10))
    )
    body += b"\0" * (30 - len(body))
    return body + (sum(body) & 0xFFFF).to_bytes(2, "big")


FORMATS = [
    ("json", "line", b'{"env": {"t": 21.5}, "rh": 40}\n', {"env.t": 21.5, "rh": 40}),
    ("kv", "line", b"t=21.5,rh=40\r\n", {"t": 21.5, "rh": 40}),
    ({"csv": {"columns": ["t", "rh"]}}, "line", b"21.5,40\n", {"t": 21.5, "rh": 40}),
    ({"regex": r"T(?P<t>[-0-9.]+) H(?P<rh>\d+)"}, "line", b"T21.5 H40\n", {"t": 21.5, "rh": 40}),
    ("nmea", "line",
     b"$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D\r\n",
     {"lat": -19.4840833, "sats": 4, "alt": 100.0}),
    ({"struct": {"format": ">4x4xHHH16x2x", "fields": ["pm1", "pm25", "pm10"]}},
     {"fixed": 32, "header": "424d", "checksum": "sum16"}, _pms_frame(5, 12, 20),
     {"pm25": 12, "pm10": 20}),
]  # fmt: skip


@pytest.mark.parametrize(("parser", "framing", "frame", "expected"), FORMATS,
                         ids=["json", "kv", "csv", "regex", "nmea", "fixed"])  # fmt: skip
async def test_each_format_through_a_pty_split_anywhere_with_garbage(
    tmp_path: Path, parser: object, framing: object, frame: bytes, expected: dict[str, object]
) -> None:
    link = tmp_path / "dev"
    adapter = Adapter(link)
    config = SensorConfig(id="s", platform="serial", port=str(link), parser=parser,
                          framing=framing)  # fmt: skip
    service = SensorsService([config], state_dir=tmp_path, backoff=FAST)
    runner = service.runners["s"]
    garbage = b"\x00\xff\xfe#junk\n"
    stream = frame + garbage + frame + garbage + frame
    try:
        async with service:
            await until(lambda: runner.state is SensorState.OPEN, "the port to open")
            for cut in range(0, len(stream), 7):  # awkward boundaries: every 7 bytes
                adapter.write(stream[cut : cut + 7])
                await asyncio.sleep(0.005)
            await until(lambda: runner.pipeline.stats.readings == 3, "three readings")
            assert runner.pipeline.last is not None
            values = runner.pipeline.last.values
            for name, value in expected.items():
                assert values[name] == pytest.approx(value), name
            assert runner.pipeline.stats.dropped_total >= 1  # the garbage, counted
    finally:
        adapter.unplug()

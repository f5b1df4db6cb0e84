"""Serial writes on real pseudo-terminals: the actuator's effects through ``SerialPorts``, with
the reactor runtime over a real journal, and the failures a real device has."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import select
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.config.loader import load_config
from edgeagent.config.model import ReactorConfig
from edgeagent.errors import ConfigError, TransportError
from edgeagent.identity import DeviceIdentity
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.graph import line_settings
from edgeagent.reactors.journal import Journal
from edgeagent.reactors.model import SerialWrite
from edgeagent.reactors.runlog import RunLog
from edgeagent.reactors.runtime import ReactorRuntime
from edgeagent.resource import PartState
from edgeagent.serial.ports import SerialPorts

BASE = load_config(
    None, identity=DeviceIdentity("10000000abcd2e6d"), env={}, resolv_conf=Path("/nonexistent")
)


class Pty:
    """A pseudo-terminal: ``path`` is the device a program opens, ``read`` what it wrote."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def read(self, size: int, timeout: float = 5.0) -> bytes:
        data = b""
        while len(data) < size:
            ready, _, _ = select.select([self.master], [], [], timeout)
            if not ready:
                break
            data += os.read(self.master, size - len(data))
        return data

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pty() -> Iterator[Pty]:
    terminal = Pty()
    yield terminal
    terminal.close()


async def test_writes_reach_the_device_in_order_at_the_configured_speed(pty: Pty) -> None:
    async with SerialPorts({pty.path: {"baudrate": 9600}}) as ports:
        await asyncio.gather(*(ports.write(pty.path, f"{n};".encode()) for n in range(50)))
        expected = "".join(f"{n};" for n in range(50)).encode()
        assert await asyncio.to_thread(pty.read, len(expected)) == expected
        # pyserial set the line up as asked (the pty keeps the termios settings)
        assert termios.tcgetattr(pty.slave)[4] == termios.B9600
        assert ports.stats() == {
            "open": [pty.path],
            "writes": 50,
            "bytes": len(expected),
            "errors": 0,
        }


async def test_a_missing_device_is_a_clear_error_and_a_replugged_one_works_again(
    tmp_path: Path, pty: Pty
) -> None:
    device = tmp_path / "ttyUSB0"  # a udev-style symlink, not there yet
    async with SerialPorts() as ports:
        with pytest.raises(TransportError, match=rf"serial {device}: .*No such file"):
            await ports.write(str(device), b"x")
        report = ports.report()
        assert report.state is PartState.DEGRADED
        assert report.detail["failing"] == {str(device): "No such file or directory"}
        device.symlink_to(pty.path)  # plugged in
        await ports.write(str(device), b"on\n")
        assert await asyncio.to_thread(pty.read, 3) == b"on\n"
        assert ports.stats()["errors"] == 1
        report = ports.report()
        assert report.state is PartState.RUNNING
        assert report.counters == {"open": 1, "writes": 1, "bytes": 3, "errors": 1}
        assert report.detail == {"open": [str(device)]}
    assert ports.report().state is PartState.STOPPED


async def test_a_write_that_cannot_finish_times_out(pty: Pty) -> None:
    # Stop output on the line (what XOFF flow control does): nothing can be written.
    async with SerialPorts(write_timeout=0.3) as ports:
        await ports.write(pty.path, b"a")
        termios.tcflow(pty.slave, termios.TCOOFF)
        try:
            with pytest.raises(TransportError, match=rf"serial {pty.path}: write timed out"):
                await ports.write(pty.path, b"b" * 65536)
        finally:
            termios.tcflow(pty.slave, termios.TCOON)
        assert ports.stats()["open"] == []  # closed; opened again by the next write


def test_two_actuators_on_one_device_must_agree_on_its_speed() -> None:
    def actuator(ident: str, baudrate: int) -> ReactorConfig:
        options = {"device": "/dev/ttyUSB0", "baudrate": baudrate}
        return ReactorConfig(id=ident, type="actuator", options=options)

    agreeing = dataclasses.replace(BASE, reactors=(actuator("a", 9600), actuator("b", 9600)))
    assert line_settings(agreeing) == {"/dev/ttyUSB0": {"baudrate": 9600}}
    clashing = dataclasses.replace(BASE, reactors=(actuator("a", 9600), actuator("b", 19200)))
    with pytest.raises(ConfigError, match=r"reactors\[id=b\]: /dev/ttyUSB0 is opened with"):
        line_settings(clashing)


async def test_an_actuator_intent_is_written_to_the_line_and_a_failure_counted(
    tmp_path: Path, pty: Pty
) -> None:
    reactors = (
        ReactorConfig(id="valve", type="actuator", options={"device": pty.path}),
        ReactorConfig(id="lamp", type="actuator", options={"device": str(tmp_path / "gone")}),
    )
    policy = Policy.build({}, {"cli": ["valve:write", "lamp:write"]})
    run_log = RunLog(tmp_path / "runs")
    async with (
        Journal(tmp_path / "journal.sqlite3") as journal,
        SerialPorts(line_settings(dataclasses.replace(BASE, reactors=reactors))) as ports,
        ReactorRuntime(
            reactors, policy, journal, run_log=run_log, sinks={SerialWrite: ports}
        ) as rt,
    ):
        await rt.submit("valve.write", {"data": "OPEN"}, principal="cli", source="cli")
        # acknowledged once written: the bytes are there already
        assert await asyncio.to_thread(pty.read, 5, 0.5) == b"OPEN\n"
        ack = await rt.submit("lamp.write", {"data": "ON"}, principal="cli", source="cli")
        lamp = rt.show("lamp")
        assert lamp["reactor_state"] == {"writes": 1, "last": "ON"}  # journaled and applied ...
        assert lamp["stats"]["effect_errors"] == 1  # ... the write failed, counted
    run_log.close()
    lines = (tmp_path / "runs" / "events.jsonl").read_text().splitlines()
    (failed,) = [e for e in map(json.loads, lines) if e["kind"] == "effect_error"]
    assert (failed["trace_id"], failed["key"]) == (ack.trace_id, "lamp:2:0")
    assert failed["error"] == f"serial {tmp_path / 'gone'}: No such file or directory"

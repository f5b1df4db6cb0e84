"""Sensors in the real agent: the built-in demo sensor shows live readings through
``edgeagent sensors``, ``sensors show`` and ``sensors watch``, and a serial sensor on a
pseudo-terminal is listed with its counts."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from pathlib import Path

import pytest

from tests.integration.agents import (
    EDGEAGENT,
    device_config,
    start_agent,
    wait_established,
    wait_until,
)
from tests.netlab import Lab

pytestmark = pytest.mark.netns


def test_the_demo_sensor_reads_live_and_the_cli_shows_it(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    device = lab.add_device("dev", [("lan", "10.77.44.1")])
    agent = start_agent(device, tmp_path / "dev", device_config("edge-sensors"))
    wait_established(agent)

    def demo() -> dict[str, object] | None:
        rows = json.loads(agent.cli("sensors", "--json").stdout)
        return rows[0] if rows and rows[0]["readings"] >= 2 else None

    row = wait_until(demo, 10, "two demo readings")
    assert (row["id"], row["platform"], row["state"]) == ("demo", "simulated", "open")
    assert row["last"]["fields"]["temperature"]["unit"] == "°C"  # type: ignore[index]
    table = agent.cli("sensors").stdout.splitlines()
    assert table[0].split()[:3] == ["SENSOR", "PLATFORM", "STATE"]
    assert table[1].startswith("demo ")
    assert "temperature=" in table[1]
    assert " °C" in table[1]
    shown = agent.cli("sensors", "show", "demo").stdout
    assert shown.startswith("demo (simulated): open")
    assert "temperature = " in shown

    watch = device.popen(*EDGEAGENT, "sensors", "watch", "demo", "--json", *agent.dirs,
                         log=tmp_path / "watch.log")  # fmt: skip
    try:
        time.sleep(3.5)
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=10)
    lines = [json.loads(line) for line in (tmp_path / "watch.log").read_text().splitlines()
             if line.startswith("{")]  # fmt: skip
    assert len(lines) >= 2
    assert {line["sensor"] for line in lines} == {"demo"}
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    status = json.loads(agent.cli("status", "--json").stdout)
    assert status["parts"]["sensors"]["state"] == "running"
    assert status["parts"]["sensors"]["counters"]["readings"] >= 2


def test_a_serial_sensor_on_a_pty_is_listed_with_its_counts(lab: Lab, tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        lab.add_lan("lan")
        device = lab.add_device("dev", [("lan", "10.77.45.1")])
        config = device_config("edge-pty")
        config["sensors"] = [
            {"id": "air", "platform": "serial", "port": os.ttyname(slave), "parser": "kv",
             "fields": {"pm25": {"unit": "µg/m³"}}},
        ]  # fmt: skip
        agent = start_agent(device, tmp_path / "dev", config)
        wait_established(agent)
        wait_until(
            lambda: json.loads(agent.cli("sensors", "--json").stdout)[0]["state"] == "open",
            10, "the port to open",
        )  # fmt: skip
        os.write(master, b"pm25=7\nnonsense\npm25=8\n")
        row = wait_until(
            lambda: (r := json.loads(agent.cli("sensors", "--json").stdout)[0])["readings"] == 2
            and r,
            10, "two readings",
        )  # fmt: skip
        assert row["last"]["fields"]["pm25"] == {"value": 8, "unit": "µg/m³"}
        assert sum(row["dropped"].values()) == 1
    finally:
        os.close(master)
        os.close(slave)


def test_a_pty_sensor_drives_a_threshold_that_switches_an_actuator(
    lab: Lab, tmp_path: Path
) -> None:
    """Closing the loop with no glue: a reading over the threshold makes the actuator write
    to another serial device, and the command is seen on its far end."""
    sensor_master, sensor_slave = os.openpty()
    fan_master, fan_slave = os.openpty()
    try:
        lab.add_lan("lan")
        device = lab.add_device("dev", [("lan", "10.77.46.1")])
        config = device_config("edge-loop")
        config["dns_bridge"]["enabled"] = False
        config["sensors"] = [
            {"id": "air", "platform": "serial", "port": os.ttyname(sensor_slave),
             "parser": "json", "fields": {"pm25": {"unit": "µg/m³"}}},
        ]  # fmt: skip
        config["reactors"] = [
            {"id": "pm_alarm", "type": "threshold",
             "subscribe": {"sensor.air.pm25": "reading"},
             "options": {"high": 35, "low": 25,
                         "on_alarm": {"intent": "fan.write", "payload": {"data": "FAN ON"}},
                         "on_clear": {"intent": "fan.write", "payload": {"data": "FAN OFF"}}}},
            {"id": "fan", "type": "actuator", "options": {"device": os.ttyname(fan_slave)}},
        ]  # fmt: skip
        config["principals"] = {"reactor:pm_alarm": ["fan:write"]}
        agent = start_agent(device, tmp_path / "dev", config)
        wait_until(
            lambda: json.loads(agent.cli("sensors", "--json").stdout)[0]["state"] == "open",
            15, "the sensor's port to open",
        )  # fmt: skip
        for value in (12, 40, 41, 20):
            os.write(sensor_master, json.dumps({"pm25": value}).encode() + b"\n")
            time.sleep(0.2)
        received = b""
        deadline = time.monotonic() + 10
        while received.count(b"\n") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([fan_master], [], [], 0.2)
            if ready:
                received += os.read(fan_master, 256)
        assert received == b"FAN ON\nFAN OFF\n"
        shown = agent.call("reactors.show", {"id": "pm_alarm"})
        assert shown["reactor_state"]["alarm"] is False
        assert shown["reactor_state"]["last"] == 20
        journal = agent.call("journal.tail", {"after": 0, "limit": 100})["entries"]
        readings = [e for e in journal if e["name"] == "sensor.air.pm25"]
        assert [e["payload"]["value"] for e in readings] == [12, 40, 41, 20]
        assert {e["principal"] for e in readings} == {"sensor:air"}
        # sensor.air itself is taken by no reactor: never journaled
        assert not [e for e in journal if e["name"] == "sensor.air"]
        counters = json.loads(agent.cli("status", "--json").stdout)["parts"]["sensors"]["counters"]
        assert counters["intents_sent"] == 4
        assert counters["intents_refused"] == 0
    finally:
        for fd in (sensor_master, sensor_slave, fan_master, fan_slave):
            os.close(fd)


def test_the_boards_own_health_is_a_sensor(lab: Lab, tmp_path: Path) -> None:
    lab.add_lan("lan")
    device = lab.add_device("dev", [("lan", "10.77.47.1")])
    config = device_config("edge-board")
    config["sensors"] = [{"id": "board", "platform": "system", "interval": "1s"}]
    agent = start_agent(device, tmp_path / "dev", config)
    wait_established(agent)
    row = wait_until(
        lambda: (r := json.loads(agent.cli("sensors", "show", "board", "--json").stdout))[
            "readings"
        ] >= 2 and r,
        15, "two readings of the board",
    )  # fmt: skip
    fields = row["last"]["fields"]
    assert fields["load_1m"]["value"] >= 0
    assert 0 <= fields["memory_used_percent"]["value"] <= 100
    assert fields["disk_free"]["unit"] == "B"
    # Whatever this machine lacks (no thermal zone, no Wi-Fi, no Pi firmware) is named once,
    # with its reason, and is not an error.
    assert row["state"] == "open"
    for reason in row.get("unavailable", {}).values():
        assert reason
    shown = agent.cli("sensors", "show", "board").stdout
    assert "load_1m = " in shown
    assert agent.log().count("is not available here") == len(row.get("unavailable", {}))

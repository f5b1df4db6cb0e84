"""Reactors in the real agent, driven through the real CLI: intents, denials, streaming,
``kill -9`` mid-stream, and durable timers across a restart."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agents import (
    EDGEAGENT,
    AgentHandle,
    device_config,
    start_agent,
    wait_until,
)
from tests.netlab import Device, Lab

pytestmark = pytest.mark.netns


def reactor_config(**extra: Any) -> dict[str, Any]:
    config = device_config("edge")
    config["dns_bridge"]["enabled"] = False
    config["principals"] = {"cli": ["admin"], "guest": ["counter:read"]}
    config.update(extra)
    return config


def started(lab: Lab, tmp_path: Path, config: dict[str, Any]) -> tuple[Device, AgentHandle]:
    lab.add_lan("lan")
    device = lab.add_device("dev", [("lan", "10.77.40.1")])
    agent = start_agent(device, tmp_path / "dev", config)
    wait_until(lambda: agent.call("reactors.list"), 15, "the reactors to run", interval=0.1)
    return device, agent


def count(agent: AgentHandle) -> int:
    return int(agent.call("reactors.show", {"id": "counter"})["reactor_state"]["count"])


def journal(agent: AgentHandle) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    while page := agent.call("journal.tail", {"after": after, "limit": 1000})["entries"]:
        entries.extend(page)
        after = page[-1]["seq"]
    return entries


def test_cli_sends_intents_shows_state_and_refuses_with_reasons(lab: Lab, tmp_path: Path) -> None:
    _, agent = started(lab, tmp_path, reactor_config())
    sent = agent.cli("intent", "send", "counter.increment", "by=2")
    assert sent.stdout.startswith("accepted counter.increment (counter seq 1) trace ")
    answer = json.loads(agent.cli("intent", "send", "counter.increment", "--json").stdout)
    assert answer["accepted"] is True
    assert answer["deliveries"] == [{"reactor": "counter", "seq": 2, "duplicate": False}]
    shown = json.loads(agent.cli("reactors", "show", "counter", "--json").stdout)
    assert shown["reactor_state"] == {"count": 3}

    denied = agent.cli("intent", "send", "counter.increment", "--as", "guest", check=False)
    assert denied.returncode == 1
    assert "denied: principal 'guest' lacks counter:write" in denied.stderr
    invalid = agent.cli("intent", "send", "counter.increment", "by=x", check=False)
    assert invalid.returncode == 1
    assert "payload.by" in invalid.stderr
    unknown = agent.cli("intent", "send", "counter.incremnt", check=False)
    assert unknown.returncode == 1
    assert "no verb 'incremnt'" in unknown.stderr
    assert count(agent) == 3  # refusals change nothing ...
    audit = agent.cli("journal", "--audit", "--json").stdout.splitlines()
    assert [json.loads(line)["principal"] for line in audit] == ["guest"]  # ... but are audited
    lines = agent.cli("journal").stdout.splitlines()
    assert len(lines) == 2
    assert "counter.increment" in lines[0]
    assert lines[0].split()[0] == "1"

    table = agent.cli("reactors").stdout
    assert "counter" in table
    assert "running" in table
    assert agent.cli("reactors", "stop", "counter").stdout.strip() == "counter: stopped"
    stopped = agent.cli("intent", "send", "counter.increment", check=False)
    assert "stopped" in stopped.stderr
    agent.cli("reactors", "start", "counter")
    agent.cli("intent", "send", "counter.reset")
    assert count(agent) == 0


def test_streamed_intents_are_answered_line_by_line(lab: Lab, tmp_path: Path) -> None:
    device, agent = started(lab, tmp_path, reactor_config())
    lines = [json.dumps({"intent": "counter.increment", "payload": {"by": 1}})] * 3000
    lines.insert(10, "not json")
    lines.insert(20, json.dumps({"intent": "counter.increment", "payload": {"by": "x"}}))
    lines.insert(30, json.dumps({"intent": "counter.increment", "as": "guest"}))
    source = tmp_path / "in"
    source.write_text("\n".join(lines) + "\n")
    command = " ".join([*EDGEAGENT, "intent", "send", "-", *agent.dirs])
    result = device.exec("sh", "-c", f"{command} < {source}", check=False, timeout=120)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == 3003
    assert result.returncode == 1  # some were refused
    assert answers[10]["code"] == "invalid"
    assert "stdin line 11" in answers[10]["error"]
    assert answers[20]["field"] == "by"
    assert answers[30]["code"] == "denied"
    accepted = [a for a in answers if a["accepted"]]
    assert len(accepted) == 3000
    seqs = [a["deliveries"][0]["seq"] for a in accepted]
    assert seqs == sorted(seqs)  # answered in input order
    assert count(agent) == 3000


def test_kill_9_mid_stream_loses_no_acknowledged_intent(lab: Lab, tmp_path: Path) -> None:
    device, agent = started(lab, tmp_path, reactor_config())
    total = 20000
    source = tmp_path / "in"
    source.write_text(
        "".join(
            json.dumps({"intent": "counter.increment", "idempotency_key": f"k{i}"}) + "\n"
            for i in range(total)
        )
    )
    acked: list[int] = []
    with (
        source.open("rb") as stdin,
        subprocess.Popen(
            ["ip", "netns", "exec", device.ns, *EDGEAGENT, "intent", "send", "-", *agent.dirs],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as stream,
    ):
        out = stream.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                answer = json.loads(line)
                if answer.get("accepted"):
                    acked.append(answer["deliveries"][0]["seq"])

        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: len(acked) >= 3000, 60, "3000 acknowledgements", interval=0.01)
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        reader.join(timeout=30)
        stream.wait(timeout=30)
    assert stream.returncode != 0  # it saw the agent go away mid-stream
    assert len(acked) < total

    again = start_agent(device, tmp_path / "dev", reactor_config())
    wait_until(lambda: again.call("reactors.list"), 15, "the restarted agent", interval=0.1)
    journaled = {e["seq"] for e in journal(again)}
    assert set(acked) <= journaled  # every acknowledged intent survived the kill
    assert count(again) == len(journaled)  # and the state is exactly the journal replayed
    # Sending the whole stream again applies only what never made it (idempotency keys).
    redo = device.exec(
        "sh",
        "-c",
        " ".join([*EDGEAGENT, "intent", "send", "-", *again.dirs]) + f" < {source}",
        timeout=180,
    )
    duplicates = sum(
        1 for line in redo.stdout.splitlines() if json.loads(line)["deliveries"][0]["duplicate"]
    )
    assert duplicates == len(journaled)
    assert count(again) == total


def test_schedule_timer_survives_a_restart(lab: Lab, tmp_path: Path) -> None:
    config = reactor_config(
        reactors=[
            {"id": "counter", "type": "counter"},
            {
                "id": "beat",
                "type": "schedule",
                "options": {"every": 0.5, "emit": "counter.increment"},
            },
        ],
        principals={"cli": ["admin"], "reactor:beat": ["counter:increment"]},
    )
    device, agent = started(lab, tmp_path, config)
    wait_until(lambda: count(agent) >= 2, 10, "two beats")
    assert agent.stop() == 0
    before = time.monotonic()
    again = start_agent(device, tmp_path / "dev", config)
    wait_until(lambda: again.call("reactors.list"), 15, "the restarted agent", interval=0.1)
    first = count(again)
    wait_until(lambda: count(again) >= first + 2, 10, "beats after the restart")
    assert time.monotonic() - before < 15
    beat = again.call("reactors.show", {"id": "beat"})["reactor_state"]
    assert beat["running"] is True


@pytest.mark.parametrize("overflow", ["reject", "drop-oldest"])
def test_a_full_mailbox_applies_its_policy_in_the_agent(
    lab: Lab, tmp_path: Path, overflow: str
) -> None:
    small = {
        "id": "counter",
        "type": "counter",
        "mailbox": 4,
        "overflow": overflow,
        "requires": {"counter.increment": ["counter:write"]},
    }
    device, agent = started(lab, tmp_path, reactor_config(reactors=[small]))
    source = tmp_path / "in"
    source.write_text((json.dumps({"intent": "counter.increment"}) + "\n") * 2000)
    command = " ".join([*EDGEAGENT, "intent", "send", "-", *agent.dirs])
    result = device.exec("sh", "-c", f"{command} < {source}", check=False, timeout=120)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == 2000
    codes = {a.get("code") for a in answers if not a["accepted"]}
    assert codes == {"full" if overflow == "reject" else "dropped"}
    accepted = sum(1 for a in answers if a["accepted"])
    assert 0 < accepted < 2000
    assert count(agent) == accepted  # a refused intent left no trace in the state
    mailbox = agent.call("reactors.show", {"id": "counter"})["mailbox"]
    refused = mailbox["rejected_full"] + mailbox["dropped"]
    assert refused == 2000 - accepted


def test_journal_follow_prints_intents_as_they_are_journaled(lab: Lab, tmp_path: Path) -> None:
    device, agent = started(lab, tmp_path, reactor_config())
    agent.cli("intent", "send", "counter.increment")
    with subprocess.Popen(
        ["ip", "netns", "exec", device.ns, *EDGEAGENT, "journal", "--follow", "--json",
         *agent.dirs],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as follow:  # fmt: skip
        out = follow.stdout
        assert out is not None
        first = json.loads(out.readline())  # the history first ...
        assert first["seq"] == 1
        for by in (2, 3):
            agent.cli("intent", "send", "counter.increment", f"by={by}")
        later = [json.loads(out.readline()) for _ in range(2)]  # ... then what comes
        follow.terminate()
    assert [e["payload"] for e in later] == [{"by": 2}, {"by": 3}]
    assert [e["seq"] for e in later] == [2, 3]
    assert all(e["principal"] == "cli" and e["reactor"] == "counter" for e in later)


def test_an_actuator_writes_to_a_serial_device(lab: Lab, tmp_path: Path) -> None:
    # A pseudo-terminal stands in for a USB serial adapter; the agent opens its device path.
    master, slave = os.openpty()
    try:
        config = reactor_config(
            capabilities={"implies": {"admin": ["counter:*", "valve:*"]}},
            reactors=[
                {
                    "id": "valve",
                    "type": "actuator",
                    "options": {"device": os.ttyname(slave), "baudrate": 19200},
                }
            ],
        )
        _, agent = started(lab, tmp_path, config)
        sent = agent.cli("intent", "send", "valve.write", "data=OPEN 30")
        assert sent.stdout.startswith("accepted valve.write (valve seq 1)")
        # acknowledged after the write: the bytes are on the line already
        ready, _, _ = select.select([master], [], [], 0)
        assert ready
        assert os.read(master, 64) == b"OPEN 30\n"
        assert termios.tcgetattr(slave)[4] == termios.B19200
        shown = agent.call("reactors.show", {"id": "valve"})
        assert shown["reactor_state"] == {"writes": 1, "last": "OPEN 30"}
        assert shown["stats"]["effect_errors"] == 0
    finally:
        os.close(master)
        os.close(slave)

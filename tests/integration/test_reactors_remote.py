"""Remote intents between real agents in a namespaced LAN: ``intent send --to`` goes over the
mesh, the receiving device checks it against its own grants for ``peer:<cluster>``, journals it
(or audits the denial) under the sender's trace id, and the sender gets a clear refusal when
the peer is of another cluster, frozen, or dead."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agents import EDGEAGENT, AgentHandle, start_agent, wait_until
from tests.integration.test_mesh import OTHER_KEY, mesh_config, states, wait_all_alive
from tests.netlab import Lab

pytestmark = pytest.mark.netns


def remote_config(name: str, peer_grants: list[str] | None, **mesh: Any) -> dict[str, Any]:
    config = mesh_config(name, **mesh)
    config["principals"] = {"cli": ["admin"]}
    if peer_grants is not None:
        config["principals"][f"peer:{mesh.get('cluster', 'greenhouse')}"] = peer_grants
    return config


def start_devices(
    lab: Lab, tmp_path: Path, configs: dict[str, dict[str, Any]]
) -> dict[str, AgentHandle]:
    lab.add_lan("lan")
    agents = {}
    for number, (name, config) in enumerate(configs.items(), start=1):
        device = lab.add_device(name, [("lan", f"10.77.50.{number}")])
        agents[name] = start_agent(device, tmp_path / name, config)
    return agents


def send(agent: AgentHandle, *args: str) -> tuple[int, dict[str, Any], str]:
    """``intent send ... --json``: exit status, the answer, stderr."""
    result = agent.cli("intent", "send", *args, "--json", check=False)
    return result.returncode, json.loads(result.stdout), result.stderr


def count(agent: AgentHandle) -> int:
    return int(agent.call("reactors.show", {"id": "counter"})["reactor_state"]["count"])


def journal(agent: AgentHandle) -> list[dict[str, Any]]:
    return list(agent.call("journal.tail", {"after": 0, "limit": 1000})["entries"])


def run_events(agent: AgentHandle) -> list[dict[str, Any]]:
    path = agent.root / "state" / "runs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_remote_intent_is_decided_and_journaled_by_the_receiver(lab: Lab, tmp_path: Path) -> None:
    agents = start_devices(
        lab,
        tmp_path,
        {
            "ra": remote_config("ra", None),
            "rb": remote_config("rb", ["counter:write"]),
            "rc": remote_config("rc", None),  # grants nothing to the cluster
        },
    )
    wait_all_alive(agents, set(agents), timeout=20)
    a, b, c = agents["ra"], agents["rb"], agents["rc"]
    ids = {name: agent.info()["device_id"] for name, agent in agents.items()}

    status, answer, _ = send(a, "counter.increment", "by=2", "--to", ids["rb"])
    assert status == 0, answer
    assert answer["accepted"] is True
    assert (answer["to"], answer["cluster"]) == (ids["rb"], "greenhouse")
    assert count(b) == 2
    assert count(a) == 0
    (entry,) = journal(b)
    assert (entry["principal"], entry["source"]) == ("peer:greenhouse", f"peer:{ids['ra']}")
    assert entry["trace_id"] == answer["trace_id"]
    assert journal(a) == []  # the receiver's journal is the record ...
    forwarded = [e for e in run_events(a) if e["kind"] == "forwarded"]
    assert [(e["trace_id"], e["to"], e["accepted"]) for e in forwarded] == [
        (answer["trace_id"], ids["rb"], True)  # ... the sender notes the forward
    ]

    # By hostname, human output, a trace id of our own, and an idempotency key.
    text = a.cli(
        "intent", "send", "counter.increment", "--to", "rb", "--trace-id", "feedc0de", "--key", "k"
    )
    assert text.stdout.startswith(f"accepted counter.increment on {ids['rb']} (greenhouse)")
    assert text.stdout.rstrip().endswith("trace feedc0de")
    status, again, _ = send(a, "counter.increment", "--to", "rb", "--key", "k")
    assert status == 0
    assert again["deliveries"][0]["duplicate"] is True
    assert count(b) == 3
    assert journal(b)[-1]["trace_id"] == "feedc0de"

    # rc grants the cluster nothing: its own check refuses, with its reason, and audits it.
    status, denied, _ = send(a, "counter.increment", "--to", "rc", "--trace-id", "0bad")
    assert status == 1
    assert (denied["accepted"], denied["code"], denied["to"]) == (False, "denied", ids["rc"])
    assert denied["error"].startswith("principal 'peer:greenhouse' lacks counter:write")
    assert denied["trace_id"] == "0bad"
    text = a.cli("intent", "send", "counter.increment", "--to", "rc", check=False)
    assert text.returncode == 1
    assert "denied: principal 'peer:greenhouse' lacks counter:write" in text.stderr
    assert count(c) == 0
    assert journal(c) == []
    audit = c.call("journal.audit", {"limit": 10})
    assert ("peer:greenhouse", "counter.increment", "0bad") in {
        (r["principal"], r["name"], r["trace_id"]) for r in audit
    }
    # The receiver checks the payload too; the sender's own "as" does not travel.
    status, invalid, _ = send(a, "counter.increment", "by=x", "--to", "rb")
    assert (status, invalid["code"], invalid["field"]) == (1, "invalid", "by")
    status, refused, _ = send(a, "counter.increment", "--to", "rb", "--as", "cli")
    assert (status, refused["code"]) == (1, "invalid")
    assert count(b) == 3

    # A stream mixes local and remote lines; each answer says where it was decided.
    lines = [
        {"intent": "counter.increment", "payload": {"by": 10}, "to": ids["rb"]},
        {"intent": "counter.increment", "payload": {"by": 1}},
        {"intent": "counter.increment", "to": "rc"},
    ] * 20
    source = tmp_path / "lines"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    command = " ".join([*EDGEAGENT, "intent", "send", "-", *a.dirs])
    result = a.device.exec("sh", "-c", f"{command} < {source}", check=False, timeout=60)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert [(x["accepted"], x.get("to")) for x in answers] == [
        (True, ids["rb"]),
        (True, None),
        (False, ids["rc"]),
    ] * 20
    assert count(b) == 3 + 200
    assert count(a) == 20


def test_another_cluster_a_frozen_or_a_dead_peer_gives_a_clear_error(
    lab: Lab, tmp_path: Path
) -> None:
    agents = start_devices(
        lab,
        tmp_path,
        {
            "ga": remote_config("ga", None),
            "gb": remote_config("gb", ["counter:write"]),
            "xo": remote_config("xo", ["counter:write"], cluster="lab", key=OTHER_KEY),
        },
    )
    wait_all_alive({n: agents[n] for n in ("ga", "gb")}, {"ga", "gb"}, timeout=20)
    wait_until(lambda: agents["xo"].call("reactors.list"), 15, "xo to run", interval=0.2)
    a, b = agents["ga"], agents["gb"]
    other = agents["xo"].info()["device_id"]
    gb_id = b.info()["device_id"]

    status, answer, _ = send(a, "counter.increment", "--to", other)
    assert (status, answer["code"]) == (1, "unreachable")
    assert f"{other} in cluster 'greenhouse' is not a member" in answer["error"]
    status, answer, _ = send(a, "counter.increment", "--to", other, "--cluster", "lab")
    assert (status, answer["code"]) == (1, "unreachable")
    assert "no cluster 'lab' (configured: greenhouse)" in answer["error"]
    assert count(agents["xo"]) == 0

    # A peer that does not answer in time: frozen for a moment (not long enough to be dead).
    b.proc.send_signal(signal.SIGSTOP)
    try:
        status, answer, _ = send(a, "counter.increment", "--to", gb_id, "--timeout", "0.5")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    assert (status, answer["code"]) == (1, "timeout")
    assert f"{gb_id} did not answer 'intent.send' within 0.5s" in answer["error"]
    # "May or may not have been applied": the request waited in gb's socket and is applied
    # once gb runs again; only its answer came too late.
    wait_until(lambda: count(b) == 1, 10, "the late request to be applied", interval=0.2)
    wait_until(lambda: states(a).get("gb") == "alive", 10, "gb alive again", interval=0.2)

    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    wait_until(lambda: states(a).get("gb") == "dead", 15, "gb dead", interval=0.2)
    status, answer, _ = send(a, "counter.increment", "--to", "gb")
    assert (status, answer["code"], answer["to"]) == (1, "unreachable", gb_id)
    assert f"{gb_id} in cluster 'greenhouse' is dead" in answer["error"]
    text = a.cli("intent", "send", "counter.increment", "--to", gb_id, check=False)
    assert text.returncode == 1
    assert "unreachable" in text.stderr
    assert "is dead" in text.stderr


def test_a_relay_forwards_to_a_peer_and_retries_while_the_peer_is_frozen(
    lab: Lab, tmp_path: Path
) -> None:
    # fa's uplink relays what it gets to fb's counter: a reactor reaching a peer (Forward).
    sender = remote_config("fa", None)
    sender["capabilities"] = {"implies": {"admin": ["counter:*", "uplink:*"]}}
    sender["reactors"] = [
        {"id": "counter", "type": "counter"},
        {"id": "uplink", "type": "relay", "options": {"to": "counter.increment", "peer": "fb"}},
    ]
    agents = start_devices(
        lab, tmp_path, {"fa": sender, "fb": remote_config("fb", ["counter:write"])}
    )
    wait_all_alive(agents, set(agents), timeout=20)
    a, b = agents["fa"], agents["fb"]
    a_id = a.info()["device_id"]

    status, answer, _ = send(a, "uplink.forward", "by=4")
    assert status == 0, answer  # journaled on fa: its forward is now fa's to carry out
    wait_until(lambda: count(b) == 4, 10, "the forward to reach fb", interval=0.1)
    (entry,) = journal(b)
    assert (entry["principal"], entry["source"]) == ("peer:greenhouse", f"peer:{a_id}")
    assert entry["trace_id"] == answer["trace_id"]  # one trace across both devices

    # fb frozen: the forward gets no answer (fb is soon declared dead), is tried again with
    # backoff, and lands once fb runs again and is back in the mesh.
    b.proc.send_signal(signal.SIGSTOP)
    try:
        status, answer, _ = send(a, "uplink.forward", "by=1")
        assert status == 0, answer
        time.sleep(6)  # longer than one request's 5 s timeout
    finally:
        b.proc.send_signal(signal.SIGCONT)

    def tries() -> list[dict[str, Any]]:
        return [
            e
            for e in run_events(a)
            if e["kind"] == "forwarded" and e["trace_id"] == answer["trace_id"]
        ]

    # The request sent while fb was frozen may wait in fb's socket and be applied when fb
    # runs again, while fa, told fb was dead, is still backing off: its next try then gets
    # a duplicate's acknowledgement. Either way the forward ends accepted, and applied once.
    wait_until(lambda: tries() and tries()[-1]["accepted"], 30, "an accepted try", interval=0.2)
    assert count(b) == 5
    entries = journal(b)
    assert [e["payload"] for e in entries] == [{"by": 4}, {"by": 1}]  # applied once
    refused = tries()[0]  # fb was frozen long enough to be declared dead
    assert (refused["accepted"], refused["code"]) in {(False, "timeout"), (False, "unreachable")}
    assert a.call("reactors.show", {"id": "uplink"})["stats"]["effect_errors"] == 0

"""Each client command's requests, text and JSON, against a stand-in for the control client.

The families build their client with ``options.client``; the tests swap that name for a fake
that records the calls and answers from a table, so the exact output is pinned without an
agent or a socket. The real socket path is covered by tests/integration (real agents).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeagent import cli
from edgeagent.cli import mesh, names, reactors
from edgeagent.config.model import Paths

PEERS = [
    {
        "device_id": "abc",
        "hostname": "edge-2",
        "cluster": "home",
        "state": "alive",
        "addresses": ["10.0.0.2"],
        "last_seen": 1.25,
        "rtt_ms": 3.5,
        "roles": ["dns"],
        "offers": [],
    },
    {
        "device_id": None,
        "hostname": None,
        "cluster": "home",
        "state": "suspect",
        "reason": "timeout",
        "last_seen": None,
        "rtt_ms": None,
    },
]
MAILBOX = {
    "waiting": 0,
    "size": 1024,
    "overflow": "reject",
    "admitted": 5,
    "blocked": 0,
    "rejected_full": 2,
    "dropped": 1,
}
STATS = {"applied": 10, "failed": 1, "restarts": 0, "effects": 2, "snapshots": 1}
REACTOR = {
    "id": "counter",
    "type": "counter",
    "state": "running",
    "seq": 12,
    "reactor_state": {"count": 3, "name": "Küche"},
    "options": {"step": 1},
    "verbs": ["increment", "reset"],
    "requires": {"counter.increment": ["counter:write"]},
    "subscribe": {"beat.tick": "increment"},
    "mailbox": MAILBOX,
    "stats": STATS,
    "last_error": "boom",
}
ENTRIES = [
    {
        "seq": 1,
        "at": 1700000000.0,
        "principal": "cli",
        "name": "counter.increment",
        "payload": {"by": 2, "n": "Küche"},
        "reactor": "counter",
        "verb": "increment",
        "trace_id": "t1",
    },
]
AUDIT = [
    {"at": 1700000001.5, "principal": "guest", "name": "b", "reason": "no capability"},
    {"at": 1700000000.5, "principal": "guest", "name": "a", "reason": "no capability"},
]


class FakeControl:
    """Answers like the agent would; ``calls`` records (method, params) in order."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.calls: list[tuple[str, Any]] = []
        self.timeouts: list[float | None] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.calls.append((method, params))
        if method == "intent.send":
            return intent_answer(params or {})
        return self.results[method]

    def stream(self, method: str, params: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for number, batch in enumerate(params, start=1):
            self.calls.append((method, batch))
            yield {"id": number, "result": [intent_answer(item) for item in batch["items"]]}


def intent_answer(params: dict[str, Any]) -> dict[str, Any]:
    if params["name"] == "refuse.me":
        return {"accepted": False, "code": "denied", "error": "guest may not"}
    answer = {
        "accepted": True,
        "intent": params["name"],
        "trace_id": params.get("trace_id", "tr"),
        "deliveries": [{"reactor": "counter", "seq": 7}],
    }
    if params.get("to"):
        answer.update(to=params["to"], cluster=params.get("cluster", "home"))
    return answer


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch) -> FakeControl:
    fake = FakeControl(
        {
            "peers": PEERS,
            "mesh.request": {"echo": {"x": 1}},
            "reactors.list": [REACTOR],
            "reactors.show": REACTOR,
            "reactors.command": {"id": "counter", "state": "stopped"},
            "journal.tail": {"entries": ENTRIES, "last_seq": 1},
            "journal.audit": AUDIT,
            "resolve": [{"name": "edge-2.local", "ttl": 120, "type": "A", "data": "10.0.0.2"}],
            "services.add": {"instance": "edge-1", "type": "_http._tcp", "port": 8080},
            "services.remove": {"id": "web", "type": "_http._tcp"},
        }
    )

    def make(paths: Paths, *, timeout: float | None = None) -> FakeControl:
        fake.timeouts.append(timeout)
        return fake

    for family in (names, mesh, reactors):
        monkeypatch.setattr(family, "client", make)
    return fake


def run(tmp_path: Path, *args: str) -> int:
    return cli.main([*args, "--runtime-dir", str(tmp_path)])


# -- mesh ---------------------------------------------------------------------------------


def test_peers_table(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "peers", "--cluster", "home") == 0
    assert control.calls == [("peers", {"cluster": "home"})]
    assert capsys.readouterr().out.splitlines() == [
        "DEVICE  HOST    CLUSTER  STATE              ADDRESSES  SEEN      RTT    ROLES  OFFERS",
        "abc     edge-2  home     alive              10.0.0.2   1.2s ago  3.5ms  dns    -",
        "?       ?       home     suspect (timeout)             -         -      -      -",
    ]


def test_no_peers_is_a_remark_in_text_and_an_empty_list_in_json(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control.results["peers"] = []
    assert run(tmp_path, "peers") == 0
    assert capsys.readouterr() == ("", "no peers\n")
    assert run(tmp_path, "peers", "--json") == 0
    assert capsys.readouterr() == ("[]\n", "")


def test_peers_call_sends_the_json_body_and_prints_the_answer(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "peers", "call", "abc", "agent.echo", '{"x": 1}', "--timeout", "2") == 0
    assert control.calls == [
        (
            "mesh.request",
            {"device_id": "abc", "method": "agent.echo", "body": {"x": 1}, "cluster": None,
             "timeout": 2.0},
        )
    ]  # fmt: skip
    assert control.timeouts == [7.0]
    assert capsys.readouterr().out == '{\n  "echo": {\n    "x": 1\n  }\n}\n'
    assert run(tmp_path, "peers", "call", "abc", "agent.echo", "{bad") == 1
    assert capsys.readouterr().err.startswith("edgeagent: body is not JSON: ")


# -- names --------------------------------------------------------------------------------


def test_resolve_prints_records_and_fails_on_none(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "resolve", "edge-2.local", "--type", "a", "--timeout", "0.5") == 0
    assert control.calls == [("resolve", {"name": "edge-2.local", "type": "A", "timeout": 0.5})]
    assert capsys.readouterr().out == "edge-2.local\t120\tA\t10.0.0.2\n"
    control.results["resolve"] = []
    assert run(tmp_path, "resolve", "nobody.local", "--type", "srv") == 1
    assert capsys.readouterr() == ("", "edgeagent: nobody.local: no SRV record found\n")
    assert run(tmp_path, "resolve", "nobody.local", "--json") == 1
    assert capsys.readouterr() == ("[]\n", "edgeagent: nobody.local: no A record found\n")


def test_services_add_builds_the_service_and_remove_names_it(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["services", "add", "--id", "w", "--port", "8080", "--protocol", "http"]
    assert run(tmp_path, *args, "--transport", "tcp", "--txt", "a=b", "--priority", "3") == 0
    assert control.calls == [
        (
            "services.add",
            {"service": {"id": "w", "port": 8080, "protocol": "http", "transport": "tcp",
                         "txt": {"a": "b"}, "priority": 3}},
        )
    ]  # fmt: skip
    assert capsys.readouterr().out == "advertising edge-1._http._tcp.local on port 8080\n"
    assert run(tmp_path, *args) == 1
    assert capsys.readouterr().err == "edgeagent: --protocol needs --transport tcp|udp\n"
    assert run(tmp_path, "services", "remove", "web") == 0
    assert capsys.readouterr().out == "removed web (_http._tcp)\n"


# -- reactors -----------------------------------------------------------------------------


def test_reactors_table_show_and_command(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "reactors") == 0
    assert capsys.readouterr().out.splitlines() == [
        "ID       TYPE     STATE    SEQ  WAITING  APPLIED  FAILED  DROPPED",
        "counter  counter  running  12   0/1024   10       1       3",
    ]
    assert run(tmp_path, "reactors", "show", "counter") == 0
    assert capsys.readouterr().out.splitlines() == [
        "counter (counter): running, seq 12",
        '  state:     {"count": 3, "name": "Küche"}',
        '  options:   {"step": 1}',
        "  verbs:     increment, reset",
        "  requires:  counter.increment: counter:write",
        "  subscribes: beat.tick -> increment",
        "  mailbox:   0/1024 waiting (reject), admitted 5, blocked 0, rejected 2, dropped 1",
        "  applied 10, failed 1, restarts 0, effects 2, snapshots 1",
        "  last error: boom",
    ]
    assert run(tmp_path, "reactors", "stop", "counter") == 0
    assert capsys.readouterr().out == "counter: stopped\n"
    assert run(tmp_path, "reactors", "deploy", "counter", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"id": "counter", "state": "stopped"}
    assert control.calls[-1] == ("reactors.command", {"id": "counter", "command": "deploy"})
    assert set(control.timeouts) == {reactors.CONTROL_TIMEOUT}


def test_intent_send_text_json_and_refusal(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "intent", "send", "counter.increment", "by=2", "a.b:=[1]") == 0
    assert control.calls[-1] == (
        "intent.send",
        {"name": "counter.increment", "payload": {"by": 2, "a": {"b": [1]}}},
    )
    assert capsys.readouterr().out == "accepted counter.increment (counter seq 7) trace tr\n"
    args = ["intent", "send", "counter.increment", "--to", "edge-2", "--as", "bob", "--key", "K"]
    assert run(tmp_path, *args, "--timeout", "20") == 0
    assert control.calls[-1] == (
        "intent.send",
        {"name": "counter.increment", "payload": {}, "as": "bob", "to": "edge-2",
         "timeout": 20.0, "idempotency_key": "K"},
    )  # fmt: skip
    assert control.timeouts[-1] == 25.0
    out = capsys.readouterr().out
    assert out == "accepted counter.increment on edge-2 (home) (counter seq 7) trace tr\n"
    assert run(tmp_path, "intent", "send", "counter.increment", "--json") == 0
    assert capsys.readouterr().out == (
        '{"accepted": true, "intent": "counter.increment", "trace_id": "tr", '
        '"deliveries": [{"reactor": "counter", "seq": 7}]}\n'
    )
    assert run(tmp_path, "intent", "send", "refuse.me") == 1
    assert capsys.readouterr() == ("", "edgeagent: denied: guest may not\n")
    assert run(tmp_path, "intent", "send", "refuse.me", "--json") == 1
    assert capsys.readouterr() == (
        '{"accepted": false, "code": "denied", "error": "guest may not"}\n',
        "",
    )


def test_intent_send_stream_answers_each_line_in_order(
    control: FakeControl,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = ['{"intent": "a", "to": "e2"}', "not json", "", '{"intent": "refuse.me"}']
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert run(tmp_path, "intent", "send", "-", "--as", "bob") == 1
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["accepted"] for a in answers] == [True, False, False]
    assert answers[0]["to"] == "e2"
    assert answers[1]["error"].startswith("stdin line 2: not JSON: ")
    assert answers[2]["code"] == "denied"
    items = [item for method, batch in control.calls for item in batch["items"]]
    assert items[0] == {"name": "a", "payload": {}, "as": "bob", "to": "e2", "timeout": 5.0}


def test_journal_lines_json_and_audit(
    control: FakeControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "journal", "-n", "5000") == 0
    assert control.calls == [("journal.tail", {"after": -1, "limit": 1000, "wait": 0.0})]
    assert capsys.readouterr().out == (
        '       1  2023-11-14T22:13:20Z  cli          counter.increment {"by":2,"n":"Küche"}'
        "  -> counter.increment  trace t1\n"
    )
    assert run(tmp_path, "journal", "--json") == 0
    assert json.loads(capsys.readouterr().out) == ENTRIES[0]
    assert run(tmp_path, "journal", "--audit") == 0
    assert capsys.readouterr().out.splitlines() == [
        "2023-11-14T22:13:20Z  denied  guest        a: no capability",
        "2023-11-14T22:13:21Z  denied  guest        b: no capability",
    ]
    assert run(tmp_path, "journal", "--audit", "--json") == 0
    assert [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()] == [
        "a",
        "b",
    ]

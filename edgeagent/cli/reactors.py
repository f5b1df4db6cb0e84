"""Commands for intents, reactors and the journal (``edgeagent intent|reactors|journal``).

Each talks to the running agent over the control socket (``intent.send``, ``reactors.*``,
``journal.*``). ``intent send -`` streams: one JSON object per stdin line in, one JSON
acknowledgement or refusal per line out, in order, each printed as soon as it is decided.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgeagent.cli.options import Commands, add_command, add_json_option, client
from edgeagent.cli.output import Line, Note, Output, json_text, print_item, table
from edgeagent.config.model import Paths
from edgeagent.control.client import ControlClient
from edgeagent.errors import ControlError, PayloadError

# ``journal --follow`` long-polls five seconds per call; the family has always allowed 15.
CONTROL_TIMEOUT = 15.0
REACTOR_COLUMNS = ("ID", "TYPE", "STATE", "SEQ", "WAITING", "APPLIED", "FAILED", "DROPPED")
REACTOR_COMMANDS = (
    ("start", "start a stopped, deployed or failed reactor"),
    ("stop", "stop taking intents (waiting ones are refused)"),
    ("deploy", "deploy an undeployed reactor (its state is rebuilt from the journal)"),
    ("undeploy", "undeploy a stopped or deployed reactor (the journal keeps its history)"),
)


def add_commands(commands: Commands) -> None:
    """Register ``intent send``, ``reactors`` (with its actions) and ``journal``."""
    intent = add_command(commands, "intent", None, help="send intents to reactors")
    intent_actions = intent.add_subparsers(metavar="ACTION")
    send = add_command(
        intent_actions,
        "send",
        _cmd_intent_send,
        help="send one intent (NAME key=value ...), or JSON lines from stdin (NAME is -)",
        description="key=value: numbers, true/false and null are typed, anything else is a "
        "string; key:=JSON takes a JSON value; a.b=1 nests. With NAME '-', each stdin line "
        'is {"intent": NAME, "payload": {...}} (optionally "as", "trace_id", '
        '"idempotency_key", "to", "cluster") and each answer is printed as one JSON line. '
        'With --to (or a line\'s "to"), the intent goes over the mesh to that member, '
        "whose own config decides, as principal peer:<cluster>.",
    )
    send.add_argument("name", help="the intent, e.g. counter.increment; - reads JSON lines")
    send.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    send.add_argument("--as", dest="principal", help="act as this principal (default cli)")
    send.add_argument("--trace-id", help="use this trace id (default: a new one)")
    send.add_argument("--key", help="idempotency key: the same key is applied once")
    add_json_option(send, "print the answer as JSON")
    send.add_argument(
        "--to", metavar="DEVICE", help="send to this mesh member (device id or hostname)"
    )
    send.add_argument("--cluster", help="the cluster to reach --to through (default: its own)")
    send.add_argument(
        "--timeout",
        type=_timeout,
        default=5.0,
        help="seconds to wait for a remote answer (default 5)",
    )

    reactors = add_command(
        commands, "reactors", _cmd_reactors, help="list, show and control reactors"
    )
    add_json_option(reactors)
    reactor_actions = reactors.add_subparsers(metavar="ACTION")
    show = add_command(
        reactor_actions, "show", _cmd_reactors_show, help="one reactor, with its state"
    )
    show.add_argument("id")
    add_json_option(show)
    for command, text in REACTOR_COMMANDS:
        sub = add_command(
            reactor_actions, command, _cmd_reactors_command, help=text, command=command
        )
        sub.add_argument("id")
        add_json_option(sub)

    journal = add_command(
        commands, "journal", _cmd_journal, help="show journaled intents (or denials)"
    )
    journal.add_argument("--follow", "-f", action="store_true", help="keep printing new ones")
    add_json_option(journal, "one JSON object per line")
    journal.add_argument("--limit", "-n", type=int, default=20, help="how many (default 20)")
    journal.add_argument("--after", type=int, help="entries after this seq (default: newest)")
    journal.add_argument("--audit", action="store_true", help="show denied intents instead")


# -- intent send --------------------------------------------------------------------------


def _cmd_intent_send(args: argparse.Namespace, paths: Paths) -> int | Output[dict[str, Any]]:
    # A remote intent may take its whole timeout; the control reply comes after it.
    control = client(paths, timeout=max(CONTROL_TIMEOUT, args.timeout + 5.0))
    if args.name == "-":
        return _stream(control, args)
    payload = _parse_payload(args.assignments)
    params: dict[str, Any] = {"name": args.name, "payload": payload}
    if args.principal:
        params["as"] = args.principal
    params.update(_remote_params(args.to, args.cluster, args.timeout))
    if args.trace_id:
        params["trace_id"] = args.trace_id
    if args.key:
        params["idempotency_key"] = args.key
    answer = control.call("intent.send", params)
    # A script reads the answer as one JSON line, as it reads each answer of a stream.
    return Output(answer, _answer_text, code=0 if answer.get("accepted") else 1, one_line=True)


def _answer_text(answer: Mapping[str, Any]) -> Iterator[Line]:
    if not answer.get("accepted"):
        yield Note(f"edgeagent: {answer['code']}: {answer['error']}")
        return
    seqs = ", ".join(f"{d['reactor']} seq {d['seq']}" for d in answer["deliveries"])
    where = f" on {answer['to']} ({answer['cluster']})" if answer.get("to") else ""
    yield f"accepted {answer['intent']}{where} ({seqs}) trace {answer['trace_id']}"


def _parse_payload(assignments: list[str]) -> dict[str, Any]:
    # The payload parser comes with the reactor schema; only a single send needs it.
    from edgeagent.reactors.schema import parse_assignments

    try:
        return parse_assignments(assignments)
    except PayloadError as exc:
        raise ControlError(str(exc)) from exc


STREAM_BATCH = 256  # lines per intent.send_batch request
STREAM_LINGER = 0.002  # seconds a partial batch waits for more lines already on their way


def _stream(control: ControlClient, args: argparse.Namespace) -> int:
    """JSON lines in, one answer per line out, in input order; bad lines are answered here.

    A thread reads stdin; lines go out in batches (``intent.send_batch``) of whatever arrived
    within a couple of milliseconds, up to STREAM_BATCH: a fast producer gets large batches
    (one JSON decode and one pass through the mailbox per batch), a slow one is not held up.
    """
    lines: queue.Queue[tuple[int, str] | None] = queue.Queue(maxsize=4 * STREAM_BATCH)

    def read() -> None:
        try:
            for number, line in enumerate(sys.stdin, start=1):
                if line.strip():
                    lines.put((number, line))
        finally:
            lines.put(None)

    threading.Thread(target=read, name="edgeagent-cli-stdin", daemon=True).start()
    # Each batch sent: per input line in order, either its local refusal or None (an answer
    # comes from the agent). Appended by the sending thread before the request goes out.
    sent: deque[list[dict[str, Any] | None]] = deque()

    def batches() -> Iterator[dict[str, Any]]:
        finished = False
        while not finished:
            first = lines.get()
            if first is None:
                return
            waiting = [first]
            deadline = time.monotonic() + STREAM_LINGER
            while len(waiting) < STREAM_BATCH:
                try:
                    more = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    finished = True
                    break
                waiting.append(more)
            slots: list[dict[str, Any] | None] = []
            items: list[dict[str, Any]] = []
            for number, line in waiting:
                try:
                    items.append(_stream_params(line, args))
                    slots.append(None)
                except ValueError as exc:
                    slots.append(
                        {
                            "accepted": False,
                            "code": "invalid",
                            "error": f"stdin line {number}: {exc}",
                        }
                    )
            sent.append(slots)
            yield {"items": items}

    refused = 0
    for reply in control.stream("intent.send_batch", batches()):
        slots = sent.popleft()
        result = reply.get("result")
        if result is None:
            error = reply.get("error", {})
            failed = {"accepted": False, "code": error.get("code"), "error": error.get("message")}
            result = [failed] * sum(1 for slot in slots if slot is None)
        answers = iter(result)
        for slot in slots:
            refused += _emit(slot if slot is not None else next(answers))
    return 1 if refused else 0


def _stream_params(line: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(item, dict) or not isinstance(item.get("intent"), str):
        raise ValueError('expected an object like {"intent": "counter.increment", "payload": {}}')
    payload = item.get("payload", {})
    if not isinstance(payload, dict):
        raise ValueError("'payload' must be an object")
    params: dict[str, Any] = {"name": item["intent"], "payload": payload}
    principal = item.get("as", args.principal)
    if principal:
        params["as"] = principal
    for key in ("trace_id", "idempotency_key"):
        if item.get(key):
            params[key] = str(item[key])
    to, cluster = item.get("to", args.to), item.get("cluster", args.cluster)
    for key, value in (("to", to), ("cluster", cluster)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key!r} must be a string")
    params.update(_remote_params(to, cluster, args.timeout))
    return params


def _remote_params(to: str | None, cluster: str | None, timeout: float) -> dict[str, Any]:
    """The ``intent.send`` params that make it a remote intent (none for a local one)."""
    if not to:
        return {}
    params: dict[str, Any] = {"to": to, "timeout": timeout}
    if cluster:
        params["cluster"] = cluster
    return params


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError("more than 0 and at most 60 seconds")
    return value


def _emit(answer: dict[str, Any]) -> int:
    # Flushed per answer: a producer waiting on an answer must see it now, not at exit.
    sys.stdout.write(json_text(answer, one_line=True) + "\n")
    sys.stdout.flush()
    return 0 if answer.get("accepted") else 1


# -- reactors -----------------------------------------------------------------------------


def _cmd_reactors(args: argparse.Namespace, paths: Paths) -> Output[list[dict[str, Any]]]:
    rows = client(paths, timeout=CONTROL_TIMEOUT).call("reactors.list")
    return Output(rows, _reactors_text)


def _reactors_text(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return table([REACTOR_COLUMNS, *(_reactor_row(row) for row in rows)])


def _reactor_row(row: Mapping[str, Any]) -> tuple[str, ...]:
    mailbox, stats = row["mailbox"], row["stats"]
    return (
        row["id"],
        row["type"],
        row["state"],
        str(row["seq"]),
        f"{mailbox['waiting']}/{mailbox['size']}",
        str(stats["applied"]),
        str(stats["failed"]),
        str(mailbox["dropped"] + mailbox["rejected_full"]),
    )


def _cmd_reactors_show(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    doc = client(paths, timeout=CONTROL_TIMEOUT).call("reactors.show", {"id": args.id})
    return Output(doc, _reactor_text)


def _reactor_text(doc: Mapping[str, Any]) -> Iterator[str]:
    mailbox, stats = doc["mailbox"], doc["stats"]
    yield f"{doc['id']} ({doc['type']}): {doc['state']}, seq {doc['seq']}"
    yield f"  state:     {json.dumps(doc['reactor_state'], ensure_ascii=False)}"
    if doc.get("options"):
        yield f"  options:   {json.dumps(doc['options'], ensure_ascii=False)}"
    yield f"  verbs:     {', '.join(doc['verbs'])}"
    for name, caps in doc.get("requires", {}).items():
        yield f"  requires:  {name}: {', '.join(caps)}"
    for name, verb in doc.get("subscribe", {}).items():
        yield f"  subscribes: {name} -> {verb}"
    yield (
        f"  mailbox:   {mailbox['waiting']}/{mailbox['size']} waiting ({mailbox['overflow']}), "
        f"admitted {mailbox['admitted']}, blocked {mailbox['blocked']}, "
        f"rejected {mailbox['rejected_full']}, dropped {mailbox['dropped']}"
    )
    yield (
        f"  applied {stats['applied']}, failed {stats['failed']}, restarts {stats['restarts']}, "
        f"effects {stats['effects']}, snapshots {stats['snapshots']}"
    )
    if doc.get("last_error"):
        yield f"  last error: {doc['last_error']}"


def _cmd_reactors_command(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    params = {"id": args.id, "command": args.command}
    doc = client(paths, timeout=CONTROL_TIMEOUT).call("reactors.command", params)
    return Output(doc, lambda shown: [f"{shown['id']}: {shown['state']}"])


# -- journal ------------------------------------------------------------------------------


def _cmd_journal(args: argparse.Namespace, paths: Paths) -> int:
    control = client(paths, timeout=CONTROL_TIMEOUT)
    limit = max(1, min(args.limit, 1000))
    if args.audit:
        for record in control.call("journal.audit", {"limit": limit})[::-1]:
            print_item(record, _audit_line, as_json=args.json)
        return 0
    after = -1 if args.after is None else args.after
    while True:
        params = {"after": after, "limit": limit, "wait": 5.0 if args.follow else 0.0}
        page = control.call("journal.tail", params)
        for entry in page["entries"]:
            print_item(entry, _entry_line, as_json=args.json)
            after = entry["seq"]
        sys.stdout.flush()
        if after < 0:
            after = page["last_seq"]
        if not args.follow:
            return 0


def _entry_line(entry: Mapping[str, Any]) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry["at"]))
    payload = json.dumps(entry["payload"], ensure_ascii=False, separators=(",", ":"))
    return (
        f"{entry['seq']:>8}  {when}Z  {entry['principal']:<12} {entry['name']} {payload}"
        f"  -> {entry['reactor']}.{entry['verb']}  trace {entry['trace_id']}"
    )


def _audit_line(record: Mapping[str, Any]) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["at"]))
    return f"{when}Z  denied  {record['principal']:<12} {record['name']}: {record['reason']}"

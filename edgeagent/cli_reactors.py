"""CLI commands for intents, reactors and the journal (``edgeagent intent|reactors|journal``).

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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from edgeagent.config.model import Paths
from edgeagent.control.client import ControlClient, control_socket
from edgeagent.errors import ControlError, PayloadError
from edgeagent.reactors.schema import parse_assignments

AddOptions = Callable[[argparse.ArgumentParser], None]


def add_commands(commands: Any, add_global_options: AddOptions) -> None:
    """Register ``intent``, ``reactors`` and ``journal`` on the top-level sub-parsers."""
    intent = commands.add_parser("intent", help="send intents to reactors")
    add_global_options(intent)
    intent_cmds = intent.add_subparsers(metavar="ACTION")
    send = intent_cmds.add_parser(
        "send",
        help="send one intent (NAME key=value ...), or JSON lines from stdin (NAME is -)",
        description="key=value: numbers, true/false and null are typed, anything else is a "
        "string; key:=JSON takes a JSON value; a.b=1 nests. With NAME '-', each stdin line "
        'is {"intent": NAME, "payload": {...}} (optionally "as", "trace_id", '
        '"idempotency_key", "to", "cluster") and each answer is printed as one JSON line. '
        'With --to (or a line\'s "to"), the intent goes over the mesh to that member, '
        "whose own config decides, as principal peer:<cluster>.",
    )
    add_global_options(send)
    send.add_argument("name", help="the intent, e.g. counter.increment; - reads JSON lines")
    send.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    send.add_argument("--as", dest="principal", help="act as this principal (default cli)")
    send.add_argument("--trace-id", help="use this trace id (default: a new one)")
    send.add_argument("--key", help="idempotency key: the same key is applied once")
    send.add_argument("--json", action="store_true", help="print the answer as JSON")
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
    send.set_defaults(handler=_cmd_intent_send)

    reactors = commands.add_parser("reactors", help="list, show and control reactors")
    add_global_options(reactors)
    reactors.add_argument("--json", action="store_true")
    reactors.set_defaults(handler=_cmd_reactors)
    reactor_cmds = reactors.add_subparsers(metavar="ACTION")
    show = reactor_cmds.add_parser("show", help="one reactor, with its state")
    add_global_options(show)
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_cmd_reactors_show)
    for command, text in (
        ("start", "start a stopped, deployed or failed reactor"),
        ("stop", "stop taking intents (waiting ones are refused)"),
        ("deploy", "deploy an undeployed reactor (its state is rebuilt from the journal)"),
        ("undeploy", "undeploy a stopped or deployed reactor (the journal keeps its history)"),
    ):
        sub = reactor_cmds.add_parser(command, help=text)
        add_global_options(sub)
        sub.add_argument("id")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=_cmd_reactors_command, command=command)

    journal = commands.add_parser("journal", help="show journaled intents (or denials)")
    add_global_options(journal)
    journal.add_argument("--follow", "-f", action="store_true", help="keep printing new ones")
    journal.add_argument("--json", action="store_true", help="one JSON object per line")
    journal.add_argument("--limit", "-n", type=int, default=20, help="how many (default 20)")
    journal.add_argument("--after", type=int, help="entries after this seq (default: newest)")
    journal.add_argument("--audit", action="store_true", help="show denied intents instead")
    journal.set_defaults(handler=_cmd_journal)


# -- intent send --------------------------------------------------------------------------


def _cmd_intent_send(args: argparse.Namespace, paths: Paths) -> int:
    # A remote intent may take its whole timeout; the control reply comes after it.
    client = _client(paths, timeout=max(15.0, args.timeout + 5.0))
    if args.name == "-":
        return _stream(client, args)
    payload = _parse_payload(args.assignments)
    params: dict[str, Any] = {"name": args.name, "payload": payload}
    if args.principal:
        params["as"] = args.principal
    params.update(_remote_params(args.to, args.cluster, args.timeout))
    if args.trace_id:
        params["trace_id"] = args.trace_id
    if args.key:
        params["idempotency_key"] = args.key
    answer = client.call("intent.send", params)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
    elif answer.get("accepted"):
        seqs = ", ".join(f"{d['reactor']} seq {d['seq']}" for d in answer["deliveries"])
        where = f" on {answer['to']} ({answer['cluster']})" if answer.get("to") else ""
        print(f"accepted {answer['intent']}{where} ({seqs}) trace {answer['trace_id']}")
    if not answer.get("accepted"):
        if not args.json:
            print(f"edgeagent: {answer['code']}: {answer['error']}", file=sys.stderr)
        return 1
    return 0


def _parse_payload(assignments: list[str]) -> dict[str, Any]:
    try:
        return parse_assignments(assignments)
    except PayloadError as exc:
        raise ControlError(str(exc)) from exc


STREAM_BATCH = 256  # lines per intent.send_batch request
STREAM_LINGER = 0.002  # seconds a partial batch waits for more lines already on their way


def _stream(client: ControlClient, args: argparse.Namespace) -> int:
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
    for reply in client.stream("intent.send_batch", batches()):
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
    sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0 if answer.get("accepted") else 1


# -- reactors -----------------------------------------------------------------------------


def _cmd_reactors(args: argparse.Namespace, paths: Paths) -> int:
    rows = _client(paths).call("reactors.list")
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    header = ("ID", "TYPE", "STATE", "SEQ", "WAITING", "APPLIED", "FAILED", "DROPPED")
    table = [header]
    for row in rows:
        mailbox, stats = row["mailbox"], row["stats"]
        table.append(
            (
                row["id"],
                row["type"],
                row["state"],
                str(row["seq"]),
                f"{mailbox['waiting']}/{mailbox['size']}",
                str(stats["applied"]),
                str(stats["failed"]),
                str(mailbox["dropped"] + mailbox["rejected_full"]),
            )
        )
    print_table(table)
    return 0


def _cmd_reactors_show(args: argparse.Namespace, paths: Paths) -> int:
    doc = _client(paths).call("reactors.show", {"id": args.id})
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    mailbox, stats = doc["mailbox"], doc["stats"]
    print(f"{doc['id']} ({doc['type']}): {doc['state']}, seq {doc['seq']}")
    print(f"  state:     {json.dumps(doc['reactor_state'], ensure_ascii=False)}")
    if doc.get("options"):
        print(f"  options:   {json.dumps(doc['options'], ensure_ascii=False)}")
    print(f"  verbs:     {', '.join(doc['verbs'])}")
    for name, caps in doc.get("requires", {}).items():
        print(f"  requires:  {name}: {', '.join(caps)}")
    for name, verb in doc.get("subscribe", {}).items():
        print(f"  subscribes: {name} -> {verb}")
    print(
        f"  mailbox:   {mailbox['waiting']}/{mailbox['size']} waiting ({mailbox['overflow']}), "
        f"admitted {mailbox['admitted']}, blocked {mailbox['blocked']}, "
        f"rejected {mailbox['rejected_full']}, dropped {mailbox['dropped']}"
    )
    print(
        f"  applied {stats['applied']}, failed {stats['failed']}, restarts {stats['restarts']}, "
        f"effects {stats['effects']}, snapshots {stats['snapshots']}"
    )
    if doc.get("last_error"):
        print(f"  last error: {doc['last_error']}")
    return 0


def _cmd_reactors_command(args: argparse.Namespace, paths: Paths) -> int:
    doc = _client(paths).call("reactors.command", {"id": args.id, "command": args.command})
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(f"{doc['id']}: {doc['state']}")
    return 0


# -- journal ------------------------------------------------------------------------------


def _cmd_journal(args: argparse.Namespace, paths: Paths) -> int:
    client = _client(paths)
    limit = max(1, min(args.limit, 1000))
    if args.audit:
        for record in client.call("journal.audit", {"limit": limit})[::-1]:
            print(json.dumps(record, ensure_ascii=False) if args.json else _audit_line(record))
        return 0
    after = -1 if args.after is None else args.after
    while True:
        params = {"after": after, "limit": limit, "wait": 5.0 if args.follow else 0.0}
        page = client.call("journal.tail", params)
        for entry in page["entries"]:
            print(json.dumps(entry, ensure_ascii=False) if args.json else _entry_line(entry))
            after = entry["seq"]
        sys.stdout.flush()
        if after < 0:
            after = page["last_seq"]
        if not args.follow:
            return 0


def _entry_line(entry: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry["at"]))
    payload = json.dumps(entry["payload"], ensure_ascii=False, separators=(",", ":"))
    return (
        f"{entry['seq']:>8}  {when}Z  {entry['principal']:<12} {entry['name']} {payload}"
        f"  -> {entry['reactor']}.{entry['verb']}  trace {entry['trace_id']}"
    )


def _audit_line(record: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["at"]))
    return f"{when}Z  denied  {record['principal']:<12} {record['name']}: {record['reason']}"


# -- helpers ------------------------------------------------------------------------------


def _client(paths: Paths, timeout: float = 15.0) -> ControlClient:
    return ControlClient(control_socket(paths.runtime_dir), timeout=timeout)


def print_table(table: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())

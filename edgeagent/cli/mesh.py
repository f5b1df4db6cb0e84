"""Mesh commands: ``peers`` (members and devices seen) and ``peers call`` (a mesh request).

Both ask the running agent over the control socket (``peers``, ``mesh.request``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgeagent.cli.options import Commands, add_command, add_json_option, client
from edgeagent.cli.output import Line, Note, Output, json_text, table
from edgeagent.config.model import Paths
from edgeagent.errors import ControlError

PEER_COLUMNS = ("DEVICE", "HOST", "CLUSTER", "STATE", "ADDRESSES", "SEEN", "RTT", "ROLES", "OFFERS")


def add_commands(commands: Commands) -> None:
    """Register ``peers`` and its ``call`` action."""
    peers = add_command(commands, "peers", _cmd_peers, help="list mesh members and devices seen")
    add_json_option(peers, "print JSON instead of a table")
    peers.add_argument("--cluster", help="only this cluster")
    actions = peers.add_subparsers(metavar="ACTION")
    call = add_command(
        actions, "call", _cmd_peers_call, help="send a request to a member over the mesh"
    )
    call.add_argument("device_id")
    call.add_argument("method")
    call.add_argument("body", nargs="?", default="null", help="JSON body (default null)")
    call.add_argument("--cluster", help="the cluster to use (needed with several)")
    call.add_argument("--timeout", type=float, default=5.0)


def _cmd_peers(args: argparse.Namespace, paths: Paths) -> Output[list[dict[str, Any]]]:
    return Output(client(paths).call("peers", {"cluster": args.cluster}), _peers_text)


def _peers_text(rows: Sequence[Mapping[str, Any]]) -> Iterator[Line]:
    if not rows:
        yield Note("no peers")
        return
    yield from table([PEER_COLUMNS, *(_peer_row(row) for row in rows)])


def _peer_row(row: Mapping[str, Any]) -> tuple[str, ...]:
    last = row.get("last_seen")
    rtt = row.get("rtt_ms")
    return (
        str(row.get("device_id") or "?"),
        str(row.get("hostname") or "?"),
        str(row["cluster"]),
        str(row["state"]) + (f" ({row['reason']})" if row.get("reason") else ""),
        ",".join(row.get("addresses", [])),
        "-" if last is None else f"{last:.1f}s ago",
        "-" if rtt is None else f"{rtt:.1f}ms",
        ",".join(row.get("roles", [])) or "-",
        ",".join(row.get("offers", [])) or "-",
    )


def _cmd_peers_call(args: argparse.Namespace, paths: Paths) -> int:
    try:
        body = json.loads(args.body)
    except json.JSONDecodeError as exc:
        raise ControlError(f"body is not JSON: {exc}") from exc
    params = {
        "device_id": args.device_id,
        "method": args.method,
        "body": body,
        "cluster": args.cluster,
        "timeout": args.timeout,
    }
    # The agent answers after the mesh request's own timeout at the latest.
    result = client(paths, timeout=args.timeout + 5).call("mesh.request", params)
    # The member's answer is JSON whatever the flags: there is no text form of it.
    print(json_text(result))
    return 0

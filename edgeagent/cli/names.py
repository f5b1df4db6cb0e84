"""Commands about this device's names: ``info``, ``services list|add|remove``, ``resolve``.

They ask the running agent over the control socket (``info``, ``services.*``, ``resolve``);
``info`` falls back to the records the config would advertise when no agent runs. The info
rendering lives in ``edgeagent.info`` and is imported only when ``info`` runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgeagent.cli.options import Commands, add_command, add_json_option, client
from edgeagent.cli.output import Output, use_color
from edgeagent.config.model import Paths
from edgeagent.errors import ControlError, NotRunningError


def add_commands(commands: Commands) -> None:
    """Register ``info``, ``services`` (with its actions) and ``resolve``."""
    info = add_command(commands, "info", _cmd_info, help="show the records this device advertises")
    info.add_argument("--caches", action="store_true", help="dump the mDNS cache per interface")
    add_json_option(info, "print JSON instead of text")

    services = add_command(
        commands,
        "services",
        _cmd_services_list,
        help="list, add or remove DNS-SD services",
        json=False,
    )
    actions = services.add_subparsers(metavar="ACTION")
    listing = add_command(actions, "list", _cmd_services_list, help="list advertised services")
    add_json_option(listing)
    add = add_command(
        actions, "add", _cmd_services_add, help="advertise a service (kept across restarts)"
    )
    add.add_argument("--id", required=True, help="the id used to remove it later")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--type", help="full service type, e.g. _http._tcp")
    kind.add_argument("--protocol", help="service protocol, e.g. http (with --transport)")
    add.add_argument("--transport", choices=["tcp", "udp"], help="with --protocol")
    add.add_argument("--port", type=int, required=True)
    add.add_argument("--txt", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--instance-name", help="instance label (default: mdns.instance_name)")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--weight", type=int, default=0)
    remove = add_command(actions, "remove", _cmd_services_remove, help="stop advertising a service")
    remove.add_argument("id")

    resolve = add_command(commands, "resolve", _cmd_resolve, help="resolve a name through mDNS")
    resolve.add_argument("name")
    resolve.add_argument("--type", default="A", help="A, AAAA, PTR, SRV, TXT or ANY (default A)")
    resolve.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    add_json_option(resolve)


# -- info -------------------------------------------------------------------------------


def _cmd_info(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    from edgeagent.info import offline_info, render_info

    caches = bool(args.caches)
    try:
        info = client(paths).call("info", {"caches": caches})
    except NotRunningError as exc:
        info = offline_info(paths)
        print(f"edgeagent: {exc}\nshowing the records the config would advertise", file=sys.stderr)
    return Output(info, lambda document: render_info(document, color=use_color(), caches=caches))


# -- services ---------------------------------------------------------------------------


def _cmd_services_list(args: argparse.Namespace, paths: Paths) -> Output[list[dict[str, Any]]]:
    return Output(client(paths).call("services.list"), _services_text)


def _services_text(services: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    for service in services:
        txt = " ".join(f"{k}={v}" for k, v in service.get("txt", {}).items())
        origin = service.get("origin", "")
        yield (
            f"{service['id']:<12} {service['type']:<20} {service['port']:>5}  "
            f"{service['instance']!r} {txt} {origin}".rstrip()
        )


def _cmd_services_add(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    service: dict[str, Any] = {"id": args.id, "port": args.port}
    if args.type:
        service["type"] = args.type
    else:
        if not args.transport:
            raise ControlError("--protocol needs --transport tcp|udp")
        service["protocol"] = args.protocol
        service["transport"] = args.transport
    txt: dict[str, str] = {}
    for item in args.txt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ControlError(f"--txt {item!r}: expected KEY=VALUE")
        txt[key] = value
    if txt:
        service["txt"] = txt
    if args.instance_name:
        service["instance_name"] = args.instance_name
    if args.priority:
        service["priority"] = args.priority
    if args.weight:
        service["weight"] = args.weight
    result = client(paths).call("services.add", {"service": service})
    return Output(
        result,
        lambda r: [f"advertising {r['instance']}.{r['type']}.local on port {r['port']}"],
    )


def _cmd_services_remove(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    result = client(paths).call("services.remove", {"id": args.id})
    return Output(result, lambda r: [f"removed {r['id']} ({r['type']})"])


# -- resolve ----------------------------------------------------------------------------


def _cmd_resolve(args: argparse.Namespace, paths: Paths) -> Output[list[dict[str, Any]]]:
    rtype = args.type.upper()
    params: dict[str, Any] = {"name": args.name, "type": rtype}
    if args.timeout is not None:
        params["timeout"] = args.timeout
    records = client(paths).call("resolve", params)
    if records:
        return Output(records, _records_text)
    return Output(
        records, _records_text, code=1, notes=[f"edgeagent: {args.name}: no {rtype} record found"]
    )


def _records_text(records: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    for record in records:
        yield f"{record['name']}\t{record['ttl']}\t{record['type']}\t{record['data']}"

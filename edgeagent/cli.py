"""The ``edgeagent`` command line.

Every command takes the global options ``-c/--config``, ``--state-dir`` and ``--runtime-dir``
(each also read from ``EDGEAGENT_CONFIG``, ``EDGEAGENT_STATE_DIR``, ``EDGEAGENT_RUNTIME_DIR``).
Commands that talk to a running agent use the control socket in the runtime dir.
Exit codes: 0 success, 1 a failure the message explains, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from edgeagent import __version__
from edgeagent.cli_reactors import add_commands as add_reactor_commands
from edgeagent.cli_reactors import print_table
from edgeagent.config.model import Paths
from edgeagent.control.client import ControlClient, control_socket
from edgeagent.errors import ConfigError, ControlError, EdgeAgentError, NotRunningError

DEFAULT_CONFIG = "/etc/edgeagent/edgeagent.yaml"
DEFAULT_STATE_DIR = "/var/lib/edgeagent"
DEFAULT_RUNTIME_DIR = "/run/edgeagent"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    paths = Paths(
        config_file=args.config,
        state_dir=args.state_dir,
        runtime_dir=args.runtime_dir,
    )
    try:
        return int(args.handler(args, paths))
    except ConfigError as exc:
        print(f"edgeagent: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    except EdgeAgentError as exc:
        print(f"edgeagent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeagent",
        description="Names on the LAN, a DNS bridge and more for small Linux devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the agent in the foreground")
    _add_global_options(run)
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser(
        "check", help="validate the config and its reactor wiring, print the effective config"
    )
    _add_global_options(check)
    check.add_argument(
        "--json", action="store_true", help="print the effective config and diagnostics as JSON"
    )
    check.set_defaults(handler=_cmd_check)

    explain = commands.add_parser(
        "explain", help="print the reactor wiring the config sets up (no agent needed)"
    )
    _add_global_options(explain)
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    explain.set_defaults(handler=_cmd_explain)

    info = commands.add_parser("info", help="show the records this device advertises")
    _add_global_options(info)
    info.add_argument("--caches", action="store_true", help="dump the mDNS cache per interface")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=_cmd_info)

    services = commands.add_parser("services", help="list, add or remove DNS-SD services")
    _add_global_options(services)
    services.set_defaults(handler=_cmd_services_list, json=False)
    services_cmds = services.add_subparsers(metavar="ACTION")
    listing = services_cmds.add_parser("list", help="list advertised services")
    _add_global_options(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_cmd_services_list)
    add = services_cmds.add_parser("add", help="advertise a service (kept across restarts)")
    _add_global_options(add)
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
    add.set_defaults(handler=_cmd_services_add)
    remove = services_cmds.add_parser("remove", help="stop advertising a service")
    _add_global_options(remove)
    remove.add_argument("id")
    remove.set_defaults(handler=_cmd_services_remove)

    resolve = commands.add_parser("resolve", help="resolve a name through mDNS")
    _add_global_options(resolve)
    resolve.add_argument("name")
    resolve.add_argument("--type", default="A", help="A, AAAA, PTR, SRV, TXT or ANY (default A)")
    resolve.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    resolve.add_argument("--json", action="store_true")
    resolve.set_defaults(handler=_cmd_resolve)
    peers = commands.add_parser("peers", help="list mesh members and devices seen")
    _add_global_options(peers)
    peers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    peers.add_argument("--cluster", help="only this cluster")
    peers.set_defaults(handler=_cmd_peers)
    peers_cmds = peers.add_subparsers(metavar="ACTION")
    call = peers_cmds.add_parser("call", help="send a request to a member over the mesh")
    _add_global_options(call)
    call.add_argument("device_id")
    call.add_argument("method")
    call.add_argument("body", nargs="?", default="null", help="JSON body (default null)")
    call.add_argument("--cluster", help="the cluster to use (needed with several)")
    call.add_argument("--timeout", type=float, default=5.0)
    call.set_defaults(handler=_cmd_peers_call)

    add_reactor_commands(commands, _add_global_options)

    keygen = commands.add_parser("keygen", help="make a new cluster key (base64, 32 bytes)")
    keygen.add_argument(
        "--name", metavar="SECRET", help="print as a secrets.yaml line: SECRET: <key>"
    )
    keygen.set_defaults(handler=_cmd_keygen)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Sub-parsers repeat the options so they work before or after the command; only the
    # top-level parser supplies defaults (SUPPRESS keeps a sub-parser from overwriting them).
    def default(value: str) -> str:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default(os.environ.get("EDGEAGENT_CONFIG", DEFAULT_CONFIG)),
        help=f"config file (env EDGEAGENT_CONFIG, default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default(os.environ.get("EDGEAGENT_STATE_DIR", DEFAULT_STATE_DIR)),
        help=f"durable state (env EDGEAGENT_STATE_DIR, default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--runtime-dir",
        metavar="DIR",
        default=default(os.environ.get("EDGEAGENT_RUNTIME_DIR", DEFAULT_RUNTIME_DIR)),
        help=f"control socket and pid (env EDGEAGENT_RUNTIME_DIR, default {DEFAULT_RUNTIME_DIR})",
    )


# -- commands ---------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.agent import run_agent

    return run_agent(paths)


def _cmd_check(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.config.render import config_to_dict, redact_paths, render_yaml
    from edgeagent.device import load_effective
    from edgeagent.reactors.graph import check_graph, has_errors

    loaded, _ = load_effective(paths)
    diagnostics = check_graph(loaded.config)
    failed = has_errors(diagnostics)
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=sys.stderr)
    # Values that came from !secret are shown as redacted, never printed.
    if args.json:
        document = redact_paths(config_to_dict(loaded.config), loaded.secret_paths)
        document["diagnostics"] = [d.as_json() for d in diagnostics]
        print(json.dumps(document, indent=2))
    elif failed:
        errors = sum(d.severity == "error" for d in diagnostics)
        print(f"# {paths.config_file}: {errors} error(s) in the reactor wiring", file=sys.stderr)
    else:
        print(f"# {paths.config_file}: valid", file=sys.stderr)
        rendered = render_yaml(loaded.config, redact=loaded.secret_paths, sources=loaded.sources)
        print(rendered, end="")
    return 1 if failed else 0


def _cmd_explain(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.device import load_effective
    from edgeagent.reactors.graph import check_graph, render_topology, topology

    loaded, _ = load_effective(paths)
    document = topology(loaded.config)
    diagnostics = check_graph(loaded.config)
    if args.json:
        document["diagnostics"] = [d.as_json() for d in diagnostics]
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    for line in render_topology(document):
        print(line)
    # `explain` describes; `check` judges. The findings are still worth a glance here.
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.info import offline_info, render_info

    try:
        info = _client(paths).call("info", {"caches": bool(args.caches)})
    except NotRunningError as exc:
        info = offline_info(paths)
        print(f"edgeagent: {exc}\nshowing the records the config would advertise", file=sys.stderr)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        for line in render_info(info, color=_use_color(), caches=bool(args.caches)):
            print(line)
    return 0


def _cmd_services_list(args: argparse.Namespace, paths: Paths) -> int:
    services = _client(paths).call("services.list")
    if args.json:
        print(json.dumps(services, indent=2, ensure_ascii=False))
        return 0
    for service in services:
        txt = " ".join(f"{k}={v}" for k, v in service.get("txt", {}).items())
        origin = service.get("origin", "")
        print(
            f"{service['id']:<12} {service['type']:<20} {service['port']:>5}  "
            f"{service['instance']!r} {txt} {origin}".rstrip()
        )
    return 0


def _cmd_services_add(args: argparse.Namespace, paths: Paths) -> int:
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
    result = _client(paths).call("services.add", {"service": service})
    print(f"advertising {result['instance']}.{result['type']}.local on port {result['port']}")
    return 0


def _cmd_services_remove(args: argparse.Namespace, paths: Paths) -> int:
    result = _client(paths).call("services.remove", {"id": args.id})
    print(f"removed {result['id']} ({result['type']})")
    return 0


def _cmd_resolve(args: argparse.Namespace, paths: Paths) -> int:
    params: dict[str, Any] = {"name": args.name, "type": args.type.upper()}
    if args.timeout is not None:
        params["timeout"] = args.timeout
    records = _client(paths).call("resolve", params)
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        for record in records:
            print(f"{record['name']}\t{record['ttl']}\t{record['type']}\t{record['data']}")
    if not records:
        print(f"edgeagent: {args.name}: no {args.type.upper()} record found", file=sys.stderr)
        return 1
    return 0


def _cmd_peers(args: argparse.Namespace, paths: Paths) -> int:
    rows = _client(paths).call("peers", {"cluster": args.cluster})
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no peers", file=sys.stderr)
        return 0
    header = ("DEVICE", "HOST", "CLUSTER", "STATE", "ADDRESSES", "SEEN", "RTT", "ROLES", "OFFERS")
    table = [header]
    for row in rows:
        last = row.get("last_seen")
        rtt = row.get("rtt_ms")
        table.append(
            (
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
        )
    print_table(table)
    return 0


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
    result = _client(paths, timeout=args.timeout + 5).call("mesh.request", params)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _cmd_keygen(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.mesh.auth import generate_key

    key = generate_key()
    print(f"{args.name}: {key}" if args.name else key)
    return 0


# -- helpers ----------------------------------------------------------------------------


def _client(paths: Paths, *, timeout: float = 10.0) -> ControlClient:
    return ControlClient(control_socket(paths.runtime_dir), timeout=timeout)


def _use_color() -> bool:
    return (
        sys.stdout.isatty()
        and os.environ.get("NO_COLOR") is None
        and os.environ.get("TERM") != "dumb"
    )

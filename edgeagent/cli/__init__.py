"""The ``edgeagent`` command line: the parser, ``main`` and the command families.

Every command takes the global options ``-c/--config``, ``--state-dir`` and ``--runtime-dir``
(each also read from ``EDGEAGENT_CONFIG``, ``EDGEAGENT_STATE_DIR``, ``EDGEAGENT_RUNTIME_DIR``).
Commands that talk to a running agent use the control socket in the runtime dir.
Exit codes: 0 success, 1 a failure the message explains, 2 bad usage.

Each family module registers its sub-commands (``add_commands``): ``agent`` (run, check,
explain, keygen), ``names`` (info, services, resolve), ``status`` (status, health), ``mesh``
(peers), ``reactors`` (intent, reactors, journal) and ``sensors``. ``options`` holds the
shared options and the control client, ``output`` the JSON and text printing. A handler
returns an exit code or an ``Output``, which ``main`` shows as JSON under ``--json`` and as
text otherwise. Importing this package loads neither the agent nor the config loader: a
client command pays only for what it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgeagent import __version__
from edgeagent.cli import agent, mesh, names, reactors, sensors, status
from edgeagent.cli.options import add_global_options, paths_from
from edgeagent.cli.output import Output, show
from edgeagent.errors import ConfigError, EdgeAgentError

FAMILIES = (agent, names, status, mesh, reactors, sensors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    paths = paths_from(args)
    try:
        result = args.handler(args, paths)
        if isinstance(result, Output):
            return show(result, as_json=bool(getattr(args, "json", False)))
        return int(result)
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
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for family in FAMILIES:
        family.add_commands(commands)
    return parser

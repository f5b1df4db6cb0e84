"""Commands that need no running agent: ``run`` (it starts one), ``check``, ``explain``, ``keygen``.

Each imports what it uses when it runs: ``run`` loads the whole agent and ``check``/``explain``
the config loader and the reactor graph, which the client commands must not pay for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from edgeagent.cli.options import Commands, add_command, add_json_option
from edgeagent.cli.output import Line, Note, Output
from edgeagent.config.model import Paths


def add_commands(commands: Commands) -> None:
    """Register ``run``, ``check``, ``explain`` and ``keygen``."""
    add_command(commands, "run", _cmd_run, help="run the agent in the foreground")

    check = add_command(
        commands,
        "check",
        _cmd_check,
        help="validate the config and its reactor wiring, print the effective config",
    )
    add_json_option(check, "print the effective config and diagnostics as JSON")

    explain = add_command(
        commands,
        "explain",
        _cmd_explain,
        help="print the reactor wiring the config sets up (no agent needed)",
    )
    add_json_option(explain, "print JSON instead of text")

    # keygen reads no config and no state, so it takes none of the global options.
    keygen = commands.add_parser("keygen", help="make a new cluster key (base64, 32 bytes)")
    keygen.add_argument(
        "--name", metavar="SECRET", help="print as a secrets.yaml line: SECRET: <key>"
    )
    keygen.set_defaults(handler=_cmd_keygen)


def _cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.agent import run_agent

    return run_agent(paths)


def _cmd_check(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    from edgeagent.config.render import config_to_dict, redact_paths, render_yaml
    from edgeagent.device import load_effective
    from edgeagent.reactors.graph import check_graph, has_errors

    loaded, _ = load_effective(paths)
    diagnostics = check_graph(loaded.config)
    failed = has_errors(diagnostics)
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=sys.stderr)
    # Values that came from !secret are shown as redacted, never printed.
    document = redact_paths(config_to_dict(loaded.config), loaded.secret_paths)
    document["diagnostics"] = [d.as_json() for d in diagnostics]

    def text(_: dict[str, Any]) -> Iterator[Line]:
        if failed:
            errors = sum(d.severity == "error" for d in diagnostics)
            yield Note(f"# {paths.config_file}: {errors} error(s) in the reactor wiring")
            return
        yield Note(f"# {paths.config_file}: valid")
        rendered = render_yaml(loaded.config, redact=loaded.secret_paths, sources=loaded.sources)
        # The YAML ends in a newline, which printing it as one line adds back.
        yield rendered.removesuffix("\n")

    # The effective config has always been printed with non-ASCII characters escaped.
    return Output(document, text, code=1 if failed else 0, ensure_ascii=True)


def _cmd_explain(args: argparse.Namespace, paths: Paths) -> Output[dict[str, Any]]:
    from edgeagent.device import load_effective
    from edgeagent.reactors.graph import check_graph, render_topology, topology

    loaded, _ = load_effective(paths)
    document = topology(loaded.config)
    diagnostics = check_graph(loaded.config)
    document["diagnostics"] = [d.as_json() for d in diagnostics]

    def text(document: dict[str, Any]) -> Iterator[Line]:
        yield from render_topology(document)
        # `explain` describes; `check` judges. The findings are still worth a glance here.
        for diagnostic in diagnostics:
            yield Note(diagnostic.format())

    return Output(document, text)


def _cmd_keygen(args: argparse.Namespace, paths: Paths) -> int:
    from edgeagent.mesh.auth import generate_key

    key = generate_key()
    print(f"{args.name}: {key}" if args.name else key)
    return 0

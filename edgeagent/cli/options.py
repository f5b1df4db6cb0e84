"""The options every command shares, how a command is registered, and the control client.

``-c/--config``, ``--state-dir`` and ``--runtime-dir`` (each also read from
``EDGEAGENT_CONFIG``, ``EDGEAGENT_STATE_DIR``, ``EDGEAGENT_RUNTIME_DIR``) work before or after
the command name: every sub-parser repeats them, and only the top-level parser supplies the
defaults. ``--json`` belongs to the commands that can answer in JSON (``add_json_option``);
``output.show`` honours it. A handler gets the parsed arguments and the ``Paths`` and returns
an exit code or an ``Output``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, Protocol

from edgeagent.cli.output import Output
from edgeagent.config.model import Paths
from edgeagent.control.client import ControlClient, control_socket

DEFAULT_CONFIG = "/etc/edgeagent/edgeagent.yaml"
DEFAULT_STATE_DIR = "/var/lib/edgeagent"
DEFAULT_RUNTIME_DIR = "/run/edgeagent"
CONTROL_TIMEOUT = 10.0  # seconds for one control call, unless the command needs longer

Handler = Callable[[argparse.Namespace, Paths], "int | Output[Any]"]


class Commands(Protocol):
    """Where sub-commands are added: what ``ArgumentParser.add_subparsers()`` returns."""

    def add_parser(
        self, name: str, *, help: str | None = ..., description: str | None = ...
    ) -> argparse.ArgumentParser: ...


def add_command(
    commands: Commands,
    name: str,
    handler: Handler | None,
    *,
    help: str,
    description: str | None = None,
    **defaults: Any,
) -> argparse.ArgumentParser:
    """A sub-command with the global options; without a handler it only groups actions."""
    parser = commands.add_parser(name, help=help, description=description)
    add_global_options(parser)
    if handler is not None:
        parser.set_defaults(handler=handler, **defaults)
    elif defaults:
        parser.set_defaults(**defaults)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-c``, ``--state-dir``, ``--runtime-dir``; ``top`` for the parser that owns defaults."""

    # A sub-parser's default would overwrite a value given before the command name;
    # SUPPRESS leaves the attribute unset unless the option appears after it.
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


def add_json_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--json``: the command's ``Output`` is printed as JSON instead of rendered."""
    parser.add_argument("--json", action="store_true", help=help)


def paths_from(args: argparse.Namespace) -> Paths:
    """The ``Paths`` the global options name."""
    return Paths(config_file=args.config, state_dir=args.state_dir, runtime_dir=args.runtime_dir)


def client(paths: Paths, *, timeout: float = CONTROL_TIMEOUT) -> ControlClient:
    """A client for the running agent's control socket in the runtime dir."""
    return ControlClient(control_socket(paths.runtime_dir), timeout=timeout)

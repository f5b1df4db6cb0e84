"""The CLI's shared parts: JSON or text printing, tables, the global options and ``main``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeagent import cli
from edgeagent.cli import names
from edgeagent.cli.options import (
    DEFAULT_CONFIG,
    DEFAULT_RUNTIME_DIR,
    add_command,
    add_global_options,
    add_json_option,
    client,
    paths_from,
)
from edgeagent.cli.output import Note, Output, json_text, print_item, show, table, use_color
from edgeagent.config.model import Paths
from edgeagent.control.client import control_socket
from edgeagent.errors import ConfigError, ControlError

DOC = {"name": "Küche", "n": [1, 2]}


def lines(document: dict[str, Any]) -> Iterator[str | Note]:
    yield f"name {document['name']}"
    yield Note("a remark")
    yield "last"


# -- output -------------------------------------------------------------------------------


def test_show_renders_text_to_stdout_and_notes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert show(Output(DOC, lines), as_json=False) == 0
    out, err = capsys.readouterr()
    assert out == "name Küche\nlast\n"
    assert err == "a remark\n"


def test_show_prints_the_document_as_indented_utf8_json_without_the_rendering(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert show(Output(DOC, lines, code=1), as_json=True) == 1
    out, err = capsys.readouterr()
    assert out == '{\n  "name": "Küche",\n  "n": [\n    1,\n    2\n  ]\n}\n'
    assert err == ""


def test_show_one_line_and_ascii_json(capsys: pytest.CaptureFixture[str]) -> None:
    show(Output(DOC, lines, one_line=True), as_json=True)
    show(Output(DOC, lines, ensure_ascii=True), as_json=True)
    one_line, _, indented = capsys.readouterr().out.partition("\n")
    assert one_line == '{"name": "Küche", "n": [1, 2]}'
    assert indented.startswith('{\n  "name": "K\\u00fcche",')


@pytest.mark.parametrize("as_json", [False, True])
def test_notes_go_to_stderr_after_the_output_in_both_modes(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    output = Output([], lambda rows: [], code=1, notes=["nothing found"])
    assert show(output, as_json=as_json) == 1
    out, err = capsys.readouterr()
    assert out == ("[]\n" if as_json else "")
    assert err == "nothing found\n"


def test_print_item_is_one_json_line_or_the_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    print_item(DOC, lambda d: f"item {d['name']}", as_json=False)
    print_item(DOC, lambda d: f"item {d['name']}", as_json=True)
    assert capsys.readouterr().out == 'item Küche\n{"name": "Küche", "n": [1, 2]}\n'


def test_json_text_matches_json_dumps_defaults() -> None:
    assert json_text([1, {"a": None}], one_line=True) == '[1, {"a": null}]'
    assert json_text({"a": 1}) == '{\n  "a": 1\n}'


def test_table_pads_columns_to_the_widest_cell_and_strips_the_end() -> None:
    rows = [("ID", "STATE", "NOTE"), ("counter", "ok", ""), ("x", "running", "-")]
    assert table(rows) == [
        "ID       STATE    NOTE",
        "counter  ok",
        "x        running  -",
    ]


def test_colour_only_on_a_terminal_without_no_color_or_a_dumb_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color() is False  # captured stdout is no terminal
    monkeypatch.setattr("sys.stdout", Terminal())
    assert use_color() is True
    monkeypatch.setenv("TERM", "dumb")
    assert use_color() is False
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "")
    assert use_color() is False


# -- options ------------------------------------------------------------------------------


def parser_with_a_command() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeagent")
    add_global_options(parser, top=True)
    commands = parser.add_subparsers()
    sub = add_command(commands, "thing", lambda args, paths: 0, help="a thing", extra=7)
    add_json_option(sub)
    return parser


def test_global_options_work_before_and_after_the_command() -> None:
    parser = parser_with_a_command()
    before = parser.parse_args(["-c", "a.yaml", "--state-dir", "/s", "thing"])
    after = parser.parse_args(["thing", "-c", "a.yaml", "--runtime-dir", "/r"])
    assert (before.config, before.state_dir) == ("a.yaml", "/s")
    assert (after.config, after.runtime_dir) == ("a.yaml", "/r")
    # A value given before the command is not reset by the sub-parser's (absent) default.
    assert before.runtime_dir == DEFAULT_RUNTIME_DIR
    assert after.extra == 7
    assert after.json is False
    assert parser.parse_args(["thing", "--json"]).json is True


def test_global_options_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEAGENT_CONFIG", raising=False)
    monkeypatch.setenv("EDGEAGENT_STATE_DIR", "/env/state")
    monkeypatch.setenv("EDGEAGENT_RUNTIME_DIR", "/env/run")
    paths = paths_from(parser_with_a_command().parse_args(["thing"]))
    assert paths == Paths(
        config_file=DEFAULT_CONFIG, state_dir="/env/state", runtime_dir="/env/run"
    )


def test_a_command_without_a_handler_only_groups_actions() -> None:
    parser = argparse.ArgumentParser()
    add_global_options(parser, top=True)
    group = add_command(parser.add_subparsers(), "group", None, help="a group")
    group.add_subparsers()
    assert getattr(parser.parse_args(["group"]), "handler", None) is None


def test_the_client_talks_to_the_socket_in_the_runtime_dir(tmp_path: Path) -> None:
    paths = Paths(config_file="c.yaml", state_dir=str(tmp_path), runtime_dir=str(tmp_path))
    with pytest.raises(ControlError, match=str(control_socket(tmp_path))):
        client(paths).call("info")


# -- main ---------------------------------------------------------------------------------


def test_main_without_a_command_prints_help_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith("usage: edgeagent")
    assert cli.main(["intent"]) == 2


def test_main_shows_an_output_as_json_only_with_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    class Control:
        def call(self, method: str, params: Any = None) -> Any:
            assert method == "services.list"
            return [{"id": "web", "type": "_http._tcp", "port": 80, "instance": "w"}]

    monkeypatch.setattr(names, "client", lambda paths, **_: Control())
    dirs = ["--runtime-dir", str(tmp_path)]
    assert cli.main(["services", "list", *dirs]) == 0
    assert capsys.readouterr().out == "web          _http._tcp              80  'w'\n"
    assert cli.main(["services", "list", "--json", *dirs]) == 0
    assert capsys.readouterr().out.startswith('[\n  {\n    "id": "web",')
    # `services` alone lists, in text: it has no --json of its own.
    assert cli.main(["services", *dirs]) == 0
    assert capsys.readouterr().out.startswith("web ")


def test_main_turns_errors_into_exit_1_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def refuse(paths: Paths, **_: Any) -> Any:
        raise ControlError("the agent said no")

    def invalid(paths: Paths, **_: Any) -> Any:
        raise ConfigError(["file.yaml:3: bad", "file.yaml:4: worse"])

    monkeypatch.setattr(names, "client", refuse)
    assert cli.main(["services", "remove", "web", "--runtime-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "edgeagent: the agent said no\n"
    monkeypatch.setattr(names, "client", invalid)
    assert cli.main(["services", "list", "--runtime-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "edgeagent: invalid configuration:\nfile.yaml:3: bad\nfile.yaml:4: worse\n"
    )

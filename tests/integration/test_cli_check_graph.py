"""``edgeagent check`` and ``edgeagent explain`` on the reactor wiring: real subprocesses, temp files.

No agent runs and no network is used: both commands work from the config alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.integration.test_cli import edgeagent

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "firmware-config" / "examples" / "reactors.yaml"

# A schedule that may not send what it emits, and a counter nobody can reach.
BROKEN = """
    principals:
      cli: [admin]
    reactors:
      - id: counter
        type: counter
        requires:
          counter.increment: ["counter:write"]
          counter.reset: ["counter:reset"]
      - id: beat
        type: schedule
        options: {every: 60, emit: counter.increment}
      - id: lonely
        type: counter
"""

# Only a warning: the unreachable counter.
WARNED = """
    principals:
      cli: [admin]
    reactors:
      - id: counter
        type: counter
      - id: lonely
        type: counter
"""


def write(tmp: Path, text: str) -> str:
    path = tmp / "edgeagent.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def test_check_passes_the_reactors_example(tmp_path: Path) -> None:
    result = edgeagent("check", "-c", str(EXAMPLE), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"# {EXAMPLE}: valid"]
    assert yaml.safe_load(result.stdout)["reactors"][0]["id"] == "counter"


def test_check_fails_on_wiring_errors_and_prints_typed_lines(tmp_path: Path) -> None:
    result = edgeagent("check", "-c", write(tmp_path, BROKEN), tmp=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""  # no effective config for a config that will not work
    lines = result.stderr.splitlines()
    assert lines[0].startswith(
        "error[emit-denied] reactors[id=beat].options.emit: emits 'counter.increment' to "
        "counter.increment, but principal 'reactor:beat' lacks counter:write"
    )
    assert lines[1] == (
        "warning[unreachable] reactors[id=lonely]: no principal may send any of its intents "
        "and no reactor emits to it"
    )
    assert lines[2].endswith(": 1 error(s) in the reactor wiring")


def test_check_json_lists_the_diagnostics(tmp_path: Path) -> None:
    result = edgeagent("check", "--json", "-c", write(tmp_path, BROKEN), tmp=tmp_path)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["device"]["hostname"]  # still the effective config, plus the findings
    assert [(d["code"], d["severity"], d["path"]) for d in document["diagnostics"]] == [
        ("emit-denied", "error", "reactors[id=beat].options.emit"),
        ("unreachable", "warning", "reactors[id=lonely]"),
    ]


def test_check_with_warnings_only_succeeds_and_prints_the_config(tmp_path: Path) -> None:
    result = edgeagent("check", "-c", write(tmp_path, WARNED), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning[unreachable] reactors[id=lonely]: ")
    assert lines[1].endswith(": valid")
    assert [r["id"] for r in yaml.safe_load(result.stdout)["reactors"]] == ["counter", "lonely"]


def test_check_reports_options_the_type_refuses(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
        reactors:
          - id: counter
            type: counter
          - id: hot
            type: threshold
            options: {low: 3}
          - id: loop
            type: relay
            options: {to: loop.forward}
        principals:
          cli: [admin, "loop:forward"]
        """,
    )
    result = edgeagent("check", "-c", config, tmp=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error[bad-options] reactors[id=hot].options.high: ")
    assert lines[1].startswith(
        "error[cycle] reactors[id=loop]: reactors emit to each other in a loop: loop -> loop;"
    )


def test_explain_prints_the_tree_without_an_agent(tmp_path: Path) -> None:
    result = edgeagent("explain", "-c", str(EXAMPLE), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "principals"
    at = lines.index("  mqtt:greenhouse/sensors  (grants: sensor:write:temperature)")
    assert lines[at + 3 : at + 6] == [
        "    sensor.temperature  [sensor:write:temperature]",
        "      -> temperature.reading  (window)",
        "      -> fan-alarm.reading  (threshold)",
    ]
    assert "no principal may send" in lines
    assert "  temperature.reading  [temperature:reading]" in lines
    assert any(
        line.startswith("  fan  type actuator; verbs write; mailbox 1024 reject") for line in lines
    )


def test_explain_json_and_its_diagnostics(tmp_path: Path) -> None:
    result = edgeagent("explain", "--json", "-c", write(tmp_path, BROKEN), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"principals", "boot", "intents", "reactors", "diagnostics"}
    assert document["boot"] == ["beat.start"]
    beat = next(r for r in document["reactors"] if r["id"] == "beat")
    assert beat["emits"] == ["counter.increment", "beat.tick"]
    increment = next(i for i in document["intents"] if i["name"] == "counter.increment")
    assert increment["emitted_by"] == ["beat"]
    assert increment["senders"] == ["cli"]
    assert [d["code"] for d in document["diagnostics"]] == ["emit-denied", "unreachable"]


def test_the_cli_does_not_import_the_graph_until_asked() -> None:
    # Start-up time on a Pi: the graph (and what it pulls in) loads only for check/explain.
    code = "import sys, edgeagent.cli; print('edgeagent.reactors.graph' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30,
        check=True,
    )  # fmt: skip
    assert result.stdout.strip() == "False"

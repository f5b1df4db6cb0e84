"""The layering rules, checked on the source (docs/architecture.md explains them):

- a *core* (a module that decides) does no I/O: neither it nor anything it imports from
  edgeagent imports asyncio, socket, sqlite3, aiosqlite, serial or paho;
- no module cycles among edgeagent's modules, counting imports deferred into functions;
- TaskGroups are opened only by the lifecycle module and the composition root.

Imports are read with ``ast`` (every ``import`` statement, wherever it is), not by importing.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "edgeagent"

# The modules that decide things. A new core is added here when it is written.
CORES = (
    "edgeagent.bridge.core",
    "edgeagent.bridge.fastpath",
    "edgeagent.config.grants",
    "edgeagent.config.located",
    "edgeagent.config.model",
    "edgeagent.config.registry",
    "edgeagent.config.render",
    "edgeagent.config.scalars",
    "edgeagent.config.schema",
    "edgeagent.config.sections",
    "edgeagent.config.sections.capabilities",
    "edgeagent.config.sections.device",
    "edgeagent.config.sections.dns_bridge",
    "edgeagent.config.sections.journal",
    "edgeagent.config.sections.log_level",
    "edgeagent.config.sections.mdns",
    "edgeagent.config.sections.mesh",
    "edgeagent.config.sections.principals",
    "edgeagent.config.sections.reactors",
    "edgeagent.control.protocol",
    "edgeagent.dns.names",
    "edgeagent.dns.records",
    "edgeagent.dns.wire",
    "edgeagent.mdns.cache",
    "edgeagent.mdns.dump",
    "edgeagent.mdns.responder",
    "edgeagent.mdns.table",
    "edgeagent.mesh.auth",
    "edgeagent.mesh.discovery.base",
    "edgeagent.mesh.link",
    "edgeagent.mesh.membership",
    "edgeagent.mesh.messages",
    "edgeagent.mesh.roles",
    "edgeagent.net.address",
    "edgeagent.net.model",
    "edgeagent.net.resolv",
    "edgeagent.reactors.capabilities",
    "edgeagent.reactors.dispatch",
    "edgeagent.reactors.graph",
    "edgeagent.reactors.lifecycle",
    "edgeagent.reactors.model",
    "edgeagent.reactors.registry",
    "edgeagent.reactors.schema",
    "edgeagent.reactors.builtin.actuator",
    "edgeagent.reactors.builtin.counter",
    "edgeagent.reactors.builtin.relay",
    "edgeagent.reactors.builtin.schedule",
    "edgeagent.reactors.builtin.threshold",
    "edgeagent.reactors.builtin.window",
    "edgeagent.sensors.filters",
    "edgeagent.sensors.framing",
    "edgeagent.sensors.model",
    "edgeagent.sensors.nmea",
    "edgeagent.sensors.parsers",
    "edgeagent.sensors.pipeline",
    "edgeagent.sensors.simulated",
    "edgeagent.sensors.system",
    "edgeagent.store.plan",
)
IO_MODULES = frozenset({"asyncio", "socket", "sqlite3", "aiosqlite", "serial", "paho"})
TASKGROUP_OWNERS = {"edgeagent/resource.py", "edgeagent/agent.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


@cache
def imports_of(name: str) -> frozenset[str]:
    """Every module ``name`` imports, anywhere in its source (absolute names)."""
    path = modules()[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from edgeagent.x import y` may import the module edgeagent.x.y
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def local_imports(name: str) -> set[str]:
    return {other for other in imports_of(name) if other in modules() and other != name}


def foreign_io(name: str) -> set[str]:
    return {other.split(".")[0] for other in imports_of(name) if other.split(".")[0] in IO_MODULES}


def test_every_listed_core_exists() -> None:
    missing = [core for core in CORES if core not in modules()]
    assert not missing, f"listed as cores but not found: {missing}"


@pytest.mark.parametrize("core", CORES)
def test_cores_do_no_io_not_even_through_what_they_import(core: str) -> None:
    chain: dict[str, str | None] = {core: None}
    queue = [core]
    while queue:
        current = queue.pop()
        io = foreign_io(current)
        if io:
            path = [current]
            while (parent := chain[path[-1]]) is not None:
                path.append(parent)
            pytest.fail(
                f"{core} is a core but imports {sorted(io)} via {' <- '.join(path)}: move the "
                "I/O into an adapter and hand the core values"
            )
        for other in local_imports(current):
            if other not in chain:
                chain[other] = current
                queue.append(other)


def test_no_module_cycles() -> None:
    """Tarjan's strongly connected components over edgeagent's import graph."""
    graph = {name: sorted(local_imports(name)) for name in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_taskgroups_are_opened_only_by_the_lifecycle_module_and_the_root() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE.parent))
        if relative not in TASKGROUP_OWNERS and "TaskGroup()" in path.read_text():
            offenders.append(relative)
    assert not offenders, f"open a TaskGroup only through resource.TaskOwner: {offenders}"


# Lower layers that must not reach up (each pair: importer prefix, forbidden prefix).
FORBIDDEN = (
    ("edgeagent.serial", "edgeagent.reactors.graph"),  # line settings are handed to the ports
    ("edgeagent.mdns", "edgeagent.bridge"),  # shared DNS wire helpers live in dns/
    ("edgeagent.dns", "edgeagent.bridge"),
    ("edgeagent.mesh", "edgeagent.config.schema"),  # addresses are parsed by net/
    ("edgeagent.mesh", "edgeagent.config.loader"),
    ("edgeagent.net", "edgeagent.config.schema"),
    ("edgeagent.resource", "edgeagent."),  # the lifecycle module stands alone
)


def test_lower_layers_do_not_import_upwards() -> None:
    found = [
        f"{name} imports {other}"
        for name in sorted(modules())
        for other in sorted(local_imports(name))
        for low, high in FORBIDDEN
        if (name == low or name.startswith(low + ".")) and other.startswith(high)
    ]
    assert not found, found


# Distribution name -> the top-level module it provides, for the runtime dependencies.
IMPORT_NAMES = {"pyserial": "serial", "pyyaml": "yaml"}


def test_runtime_dependencies_are_exactly_what_the_package_imports() -> None:
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    declared = set()
    for requirement in project["dependencies"]:
        distribution = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        declared.add(IMPORT_NAMES.get(distribution, distribution.replace("-", "_")))
    stdlib = sys.stdlib_module_names
    imported = {
        other.split(".")[0]
        for name in modules()
        for other in imports_of(name)
        if other.split(".")[0] not in stdlib and not other.startswith("edgeagent")
    }
    assert imported == declared, {
        "imported, not declared": sorted(imported - declared),
        "declared, not imported (a test-only tool goes to the dev extra)": sorted(
            declared - imported
        ),
    }

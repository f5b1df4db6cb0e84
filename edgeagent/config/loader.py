"""Loading the configuration: YAML layers (with ``!secret`` and ``${ENV}``) into a ``Config``.

Layers, lowest first: built-in defaults (the dataclass defaults of ``model``) <- the base file
<- the device overlay <- the runtime overrides (a dict the caller read from the state
directory). The merge rule and the validation live in ``schema``; this module reads files,
composes YAML node trees (to keep line numbers) and hands them over.

Public API::

    load(config_file, ...) -> LoadedConfig     # config + sources + merged raw dict + secret paths
    load_config(config_file, ...) -> Config    # just the config
    load_layers(config_file, ...) -> dict      # the merged raw layers, before defaults/validation

All raise ``ConfigError`` whose ``issues`` are ``FILE:LINE: key.path: message`` lines.

YAML dialect: the tags resolved implicitly are a YAML 1.2-like core subset: ``true``/``false``
(not ``yes``/``on``), ``null``/``~``/empty, decimal integers and floats. Everything else is a
string, so ``hosts: [on]`` or ``country: NO`` mean what they say. Explicit tags: ``!secret``,
plus the standard ``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeagent.config.located import (
    Issues,
    Node,
    Scalar,
    Where,
    did_you_mean,
    from_plain,
    join_path,
    secret_paths,
    to_plain,
)
from edgeagent.config.model import Config
from edgeagent.config.scalars import hostname_problem
from edgeagent.config.schema import build_config, check_layer, merge
from edgeagent.identity import DeviceIdentity, read_identity
from edgeagent.net.resolv import RESOLV_CONF, parse_resolv_conf

SECRETS_FILE_NAME = "secrets.yaml"
SECRET_TAG = "!secret"  # noqa: S105 - a YAML tag, not a password


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """The result of :func:`load`.

    ``sources`` names every layer that contributed, lowest first; ``raw`` is the merged
    layers as plain data (before defaults); ``secret_paths`` are the key paths whose values
    came from ``!secret`` (pass them to ``render.render_yaml(redact=...)``).
    """

    config: Config
    sources: tuple[str, ...]
    raw: dict[str, Any]
    secret_paths: frozenset[str]


def load(
    config_file: str | Path | None,
    *,
    overlay_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "runtime overrides",
    secrets_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    identity: DeviceIdentity | None = None,
    resolv_conf: Path = RESOLV_CONF,
) -> LoadedConfig:
    """Load, layer and validate the configuration.

    ``config_file``: the base file; missing, empty or None means built-in defaults.
    ``overlay_file``: the device overlay; by default ``<dir of base>/devices/<hostname>.yaml``
    when it exists (``hostname`` from the base file, else the identity's default). An
    explicitly given overlay must exist.
    ``overrides``: the runtime overrides, already parsed; errors name ``overrides_source``.
    ``secrets_file``: where ``!secret`` looks; by default ``secrets.yaml`` next to the file
    that uses it. ``env``: for ``${VAR}`` (default ``os.environ``). ``identity``: the board
    identity (default: read from /proc and /etc when needed). ``resolv_conf``: the system
    nameservers, read only for a recursive bridge without explicit upstreams.
    """
    issues = Issues()
    state = _Layers.collect(
        config_file,
        overlay_file=overlay_file,
        overrides=overrides,
        overrides_source=overrides_source,
        secrets_file=secrets_file,
        env=os.environ if env is None else env,
        identity=identity,
        issues=issues,
    )
    config = build_config(
        state.merged,
        default_hostname=state.default_hostname,
        system_nameservers=lambda: parse_resolv_conf(_read_optional(resolv_conf)),
        issues=issues,
    )
    return LoadedConfig(
        config=config,
        sources=tuple(state.sources),
        raw=to_plain(state.merged) or {},
        secret_paths=secret_paths(state.merged),
    )


def load_config(
    config_file: str | Path | None,
    *,
    overlay_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "runtime overrides",
    secrets_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    identity: DeviceIdentity | None = None,
    resolv_conf: Path = RESOLV_CONF,
) -> Config:
    """:func:`load` without the extras: just the validated ``Config``."""
    return load(
        config_file,
        overlay_file=overlay_file,
        overrides=overrides,
        overrides_source=overrides_source,
        secrets_file=secrets_file,
        env=env,
        identity=identity,
        resolv_conf=resolv_conf,
    ).config


def load_layers(
    config_file: str | Path | None,
    *,
    overlay_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "runtime overrides",
    secrets_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    identity: DeviceIdentity | None = None,
) -> dict[str, Any]:
    """The merged layers as plain data, before defaults and validation.

    Raises ``ConfigError`` only for problems in reading the layers (syntax, secrets, env).
    """
    issues = Issues()
    state = _Layers.collect(
        config_file,
        overlay_file=overlay_file,
        overrides=overrides,
        overrides_source=overrides_source,
        secrets_file=secrets_file,
        env=os.environ if env is None else env,
        identity=identity,
        issues=issues,
    )
    issues.raise_if_any()
    raw: dict[str, Any] = to_plain(state.merged) or {}
    return raw


def parse_yaml(
    text: str,
    source: str,
    issues: Issues,
    *,
    env: Mapping[str, str],
    secret: Callable[[str, Where], Node | None] | None = None,
) -> Node | None:
    """Compose ``text`` into a located node tree, substituting ``${VAR}`` and ``!secret``.

    ``secret(name, where)`` returns the secret's node or reports an issue and returns None;
    without it ``!secret`` is an error. Problems go to ``issues``; None means empty or broken.
    """
    try:
        document = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Where(source, mark.line + 1 if mark else None)
        issues.add(where, "yaml", f"syntax error: {exc.problem or exc.context}")
        return None
    except yaml.YAMLError as exc:
        issues.add(Where(source), "yaml", f"cannot parse: {exc}")
        return None
    if document is None:
        return None
    return _Composer(source, issues, env, secret).convert(document, "")


def substitute_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${VAR}`` and ``${VAR:-default}``; ``$${`` is a literal ``${``.

    Returns the new text and the problems (unset variables, malformed references). As in the
    shell, the default is used when the variable is unset or empty.
    """
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match["name"]
        if name is None:
            problems.append("malformed '${': write ${NAME} or ${NAME:-default} ($${ for '${')")
            return match.group(0)
        value = env.get(name)
        if match["default"] is not None and not value:
            return match["default"]
        if value is None:
            problems.append(
                f"environment variable '{name}' is not set (write ${{{name}:-default}})"
            )
            return match.group(0)
        return value

    return _ENV_REFERENCE.sub(replace, text), problems


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
_ENV_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?"
)


class _Loader(yaml.SafeLoader):
    """A SafeLoader resolving only the YAML 1.2-like core subset (see the module docstring).

    Each pattern is a subset of PyYAML's YAML 1.1 pattern for the same tag, so text that
    ``yaml.safe_dump`` writes unquoted reads back as the same type here.
    """

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level table


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?)$"
    ),
    list("-+0123456789."),
)
_RESOLVER = _Loader("")

_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


class _Composer:
    """Turns PyYAML nodes into located nodes, reporting problems with file, line and key path."""

    def __init__(
        self,
        source: str,
        issues: Issues,
        env: Mapping[str, str],
        secret: Callable[[str, Where], Node | None] | None,
    ) -> None:
        self.source = source
        self.issues = issues
        self.env = env
        self.secret = secret
        self._active: set[int] = set()  # nodes being converted: recursive aliases

    def where(self, node: yaml.Node) -> Where:
        return Where(self.source, node.start_mark.line + 1)

    def convert(self, node: yaml.Node, path: str) -> Node:
        if id(node) in self._active:
            self.issues.add(self.where(node), path, "recursive alias")
            return Node(None, self.where(node))
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            assert isinstance(node, yaml.ScalarNode)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str) -> Node:
        if node.tag != "tag:yaml.org,2002:map":
            self.issues.add(self.where(node), path, f"unsupported tag {node.tag!r} on a mapping")
        entries: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == SECRET_TAG:
                self.issues.add(self.where(key_node), path, "keys must be plain strings")
                continue
            key = key_node.value
            key_path = join_path(path, key)
            if key == "<<":
                self.issues.add(self.where(key_node), key_path, "YAML merge keys are not supported")
                continue
            if key in entries:
                first = entries[key].key_where
                self.issues.add(
                    self.where(key_node),
                    key_path,
                    f"duplicate key (first at line {first.line})" if first else "duplicate key",
                )
                continue
            child = self.convert(value_node, key_path)
            entries[key] = Node(child.value, child.where, self.where(key_node), child.secret)
        return Node(entries, self.where(node))

    def _sequence(self, node: yaml.SequenceNode, path: str) -> Node:
        if node.tag != "tag:yaml.org,2002:seq":
            self.issues.add(self.where(node), path, f"unsupported tag {node.tag!r} on a list")
        items = tuple(
            self.convert(item, _yaml_item_path(path, index, item))
            for index, item in enumerate(node.value)
        )
        return Node(items, self.where(node))

    def _scalar(self, node: yaml.ScalarNode, path: str) -> Node:
        where = self.where(node)
        if node.tag == SECRET_TAG:
            name = node.value.strip()
            if not name:
                self.issues.add(where, path, "!secret needs a name")
                return Node(None, where)
            if self.secret is None:
                self.issues.add(where, path, f"!secret '{name}': secrets are not available here")
                return Node(None, where)
            found = self.secret(name, where)
            if found is None:
                return Node(None, where)
            return Node(found.value, where, secret=True)
        if node.tag not in _SCALAR_TAGS:
            hint = did_you_mean(node.tag, [SECRET_TAG]) if node.tag.startswith("!") else ""
            self.issues.add(where, path, f"unsupported tag {node.tag!r}{hint}")
            return Node(None, where)
        text, tag = node.value, node.tag
        if tag == _STR and "$" in text:
            text, problems = substitute_env(text, self.env)
            for problem in problems:
                self.issues.add(where, path, problem)
            if problems:
                return Node(None, where)
            if node.style is None:  # plain scalar: ${PORT} may well be meant as a number
                tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        return Node(self._typed(text, tag, where, path), where)

    def _typed(self, text: str, tag: str, where: Where, path: str) -> Scalar:
        try:
            if tag == "tag:yaml.org,2002:int":
                return int(text.replace("_", ""), 10)
            if tag == "tag:yaml.org,2002:float":
                return float(text.replace("_", ""))
        except ValueError:
            self.issues.add(where, path, f"{text!r} is not a {tag.rsplit(':', 1)[-1]}")
            return None
        if tag == "tag:yaml.org,2002:bool":
            if text.lower() not in ("true", "false"):
                self.issues.add(where, path, f"{text!r} is not true or false")
                return None
            return text.lower() == "true"
        if tag == "tag:yaml.org,2002:null":
            return None
        return text


def _yaml_item_path(path: str, index: int, node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "id" and isinstance(value, yaml.ScalarNode) and value.value:
                return f"{path}[{value.value}]"
    return f"{path}[{index}]"


@dataclass(slots=True)
class _Layers:
    """The layers read for one load: their merged tree, the files used, the default name."""

    merged: Node | None
    sources: list[str]
    default_hostname: Callable[[], str]

    @classmethod
    def collect(
        cls,
        config_file: str | Path | None,
        *,
        overlay_file: Path | None,
        overrides: Mapping[str, Any] | None,
        overrides_source: str,
        secrets_file: Path | None,
        env: Mapping[str, str],
        identity: DeviceIdentity | None,
        issues: Issues,
    ) -> _Layers:
        secrets = _SecretStore(secrets_file, env, issues)
        known_identity: list[DeviceIdentity] = [identity] if identity is not None else []

        def default_hostname() -> str:
            if not known_identity:
                known_identity.append(read_identity())
            return known_identity[0].default_hostname

        sources: list[str] = []
        layers: list[Node | None] = []
        base_path = Path(config_file) if config_file is not None else None
        if base_path is not None:
            base = _read_layer(base_path, issues, env, secrets, must_exist=False)
            if base is not _MISSING:
                sources.append(str(base_path))
                layers.append(base)
        if overlay_file is None and base_path is not None:
            hostname = _peek_hostname(layers[0] if layers else None) or default_hostname()
            candidate = base_path.parent / "devices" / f"{hostname}.yaml"
            if candidate.is_file():
                overlay_file = candidate
        if overlay_file is not None:
            overlay = _read_layer(Path(overlay_file), issues, env, secrets, must_exist=True)
            if overlay is not _MISSING:
                sources.append(str(overlay_file))
                layers.append(overlay)

        merged: Node | None = None
        for layer in layers:
            assert layer is not _MISSING
            check_layer(merged, layer, issues)
            merged = merge(merged, layer)
        # Runtime overrides are written by `edgeagent services remove`, which may tombstone a
        # service that no file has (any more): unmatched removals there are not errors.
        if overrides:
            runtime = from_plain(overrides, Where(overrides_source), issues)
            check_layer(merged, runtime, issues, removals_must_match=False)
            merged = merge(merged, runtime)
            sources.append(overrides_source)
        return cls(merged, sources, default_hostname)


_MISSING = Node(None, Where("<missing>"))


def _read_layer(
    path: Path,
    issues: Issues,
    env: Mapping[str, str],
    secrets: _SecretStore,
    *,
    must_exist: bool,
) -> Node | None:
    """The node tree of a YAML file; ``_MISSING`` when it does not exist (an issue if it must)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if must_exist:
            issues.add(Where(str(path)), "(file)", "file not found")
        return _MISSING
    except (OSError, UnicodeDecodeError) as exc:
        issues.add(Where(str(path)), "(file)", f"cannot read: {exc}")
        return _MISSING
    return parse_yaml(text, str(path), issues, env=env, secret=secrets.lookup_for(path))


def _peek_hostname(base: Node | None) -> str | None:
    device = base.child("device") if base is not None else None
    hostname = device.child("hostname") if device is not None else None
    if (
        hostname is not None
        and isinstance(hostname.value, str)
        and hostname_problem(hostname.value) is None
    ):
        return hostname.value
    return None


class _SecretStore:
    """Reads secrets files on first use, once each, and answers ``!secret`` lookups."""

    def __init__(self, explicit: Path | None, env: Mapping[str, str], issues: Issues) -> None:
        self.explicit = explicit
        self.env = env
        self.issues = issues
        self._files: dict[Path, Node | str] = {}

    def lookup_for(self, user: Path) -> Callable[[str, Where], Node | None]:
        secrets_path = self.explicit or user.parent / SECRETS_FILE_NAME

        def lookup(name: str, where: Where) -> Node | None:
            return self.lookup(secrets_path, name, where)

        return lookup

    def lookup(self, secrets_path: Path, name: str, where: Where) -> Node | None:
        path = f"!secret {name}"
        if secrets_path not in self._files:
            self._files[secrets_path] = self._read(secrets_path)
        table = self._files[secrets_path]
        if isinstance(table, str):
            self.issues.add(where, path, f"secret '{name}': secrets file {secrets_path} {table}")
            return None
        assert isinstance(table.value, dict)
        found = table.value.get(name)
        if found is None:
            self.issues.add(
                where,
                path,
                f"secret '{name}' is not in {secrets_path}" + did_you_mean(name, table.value),
            )
            return None
        if isinstance(found.value, dict | tuple):
            self.issues.add(found.where, name, "a secret must be a single value")
            return None
        return found

    def _read(self, path: Path) -> Node | str:
        """The secrets table, or why it cannot be used."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "does not exist"
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot be read: {exc}"
        table = parse_yaml(text, str(path), self.issues, env=self.env)
        if table is None:
            return Node({}, Where(str(path)))
        if not isinstance(table.value, dict):
            return "is not a mapping of names to values"
        return table


def _read_optional(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""

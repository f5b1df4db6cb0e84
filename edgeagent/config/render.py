"""The effective ``Config`` as data: a JSON-able dict and YAML text (``edgeagent check``).

The output uses the keys of the YAML contract and every value explicitly (defaults filled in,
``hostname`` in ``mdns.hosts`` resolved), so loading the rendered text gives the same
``Config`` back. Durations are written as seconds. Each section module renders its own part;
this module puts the parts together, redacts secrets and writes YAML.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import yaml

from edgeagent.config.model import Config
from edgeagent.config.registry import DOCUMENT_ORDER

REDACTED = "<secret>"


def config_to_dict(config: Config) -> dict[str, Any]:
    """The effective config as plain data in the shape of the YAML contract.

    Each section writes its own part (``Section.render``), in ``registry.DOCUMENT_ORDER``.
    """
    return {section.key: section.render(getattr(config, section.key)) for section in DOCUMENT_ORDER}


def render_yaml(
    config: Config,
    *,
    redact: Collection[str] = (),
    sources: Collection[str] = (),
) -> str:
    """The effective config as YAML text.

    ``redact``: key paths (``mdns.services[web].txt.token``, as ``LoadedConfig.secret_paths``)
    whose values are replaced by ``<secret>``. ``sources``: named in a header comment.
    """
    data = _escape_env(config_to_dict(config))
    if redact:
        data = redact_paths(data, redact)
    header = "# effective edgeagent configuration"
    if sources:
        header += " from: " + " <- ".join(["built-in defaults", *sources])
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if yaml.safe_load(body) != data:
        # PyYAML writes NEL and the Unicode line separators raw with allow_unicode and then
        # reads them back as line breaks; escaped output is exact.
        body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return f"{header}\n{body}"


def redact_paths(data: Any, paths: Collection[str], path: str = "") -> Any:
    """A copy of ``data`` with the values at ``paths`` replaced by ``<secret>``."""
    if path in paths:
        return REDACTED
    if isinstance(data, dict):
        return {
            key: redact_paths(value, paths, f"{path}.{key}" if path else str(key))
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            redact_paths(item, paths, f"{path}[{_item_label(item, index)}]")
            for index, item in enumerate(data)
        ]
    return data


def _escape_env(data: Any) -> Any:
    """``${`` becomes ``$${`` so the loader's environment substitution gives the text back."""
    if isinstance(data, str):
        return data.replace("${", "$${")
    if isinstance(data, dict):
        return {key: _escape_env(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_escape_env(item) for item in data]
    return data


def _item_label(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
        return str(item["id"])
    return str(index)

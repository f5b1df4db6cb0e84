"""The section registry: one module per top-level key, built in dependency order, rendered back."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from edgeagent.config.located import FieldReader, Issues, Node, Where
from edgeagent.config.model import Config, DeviceConfig, DnsBridgeConfig, MdnsConfig
from edgeagent.config.registry import DOCUMENT_ORDER, ID_MERGED_LISTS, SECTIONS, build_order
from edgeagent.config.render import config_to_dict
from edgeagent.config.scalars import integer
from edgeagent.config.schema import build_config
from edgeagent.config.sections import BuildContext, Section, device, mdns, principals, reactors


def context() -> BuildContext:
    return BuildContext(Issues(), lambda: "edge-2e6d", lambda: ("10.0.0.1",))


def test_config_has_one_field_per_section_in_build_order() -> None:
    assert list(SECTIONS) == [f.name for f in dataclasses.fields(Config)]
    assert sorted(SECTIONS) == sorted(section.key for section in DOCUMENT_ORDER)


def test_every_section_is_built_after_what_it_needs() -> None:
    built: list[str] = []
    for key, section in SECTIONS.items():
        assert section.key == key
        assert all(need in built for need in section.needs), key
        built.append(key)
    # Written before the reactors, built after them: it checks reactor:<id> names.
    assert principals.SECTION.needs == (reactors.SECTION.key,)
    assert built.index("principals") > built.index("reactors")


def test_the_rendered_document_follows_the_registry() -> None:
    config = build_config(None, default_hostname=lambda: "edge-2e6d")
    assert list(config_to_dict(config)) == [section.key for section in DOCUMENT_ORDER]


def test_each_section_declares_its_id_merged_lists() -> None:
    assert {("mdns", "services"), ("reactors",), ("sensors",)} == ID_MERGED_LISTS
    for section in DOCUMENT_ORDER:
        assert all(path[0] == section.key for path in section.id_merged_lists)


DEFAULTED = [
    f
    for f in dataclasses.fields(Config)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
]


@pytest.mark.parametrize("field", DEFAULTED, ids=lambda f: f.name)
def test_an_absent_section_builds_the_config_default(field: dataclasses.Field[Any]) -> None:
    # The section's answer to "no layer wrote this key" and Config's field default agree.
    ctx = context()
    for key, section in SECTIONS.items():
        ctx.built[key] = section.build(None, key, ctx)
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    assert ctx.built[field.name] == default
    assert not ctx.issues


def test_a_section_reads_only_sections_built_before_it() -> None:
    ctx = context()
    with pytest.raises(KeyError, match="'device' is read before it is built"):
        mdns.SECTION.build(None, "mdns", ctx)
    ctx.built["device"] = device.SECTION.build(None, "device", ctx)
    assert ctx.value(device.SECTION) == DeviceConfig("edge-2e6d")
    assert mdns.SECTION.build(None, "mdns", ctx).hosts == ("edge-2e6d",)


def test_a_section_reads_only_what_it_needs() -> None:
    ctx = context()
    ctx.built["device"] = device.SECTION.build(None, "device", ctx)
    ctx.building = reactors.SECTION
    with pytest.raises(KeyError, match="'reactors' reads 'device': add it to its needs"):
        ctx.value(device.SECTION)
    ctx.building = mdns.SECTION
    assert ctx.value(device.SECTION).hostname == "edge-2e6d"


# -- adding a section ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class HealthConfig:
    interval: int = 30
    reporter: str = ""  # the device's host name


def _build_health(node: Node | None, path: str, ctx: BuildContext) -> HealthConfig:
    reader = FieldReader(node, path, ctx.issues)
    health = HealthConfig(
        interval=reader.get("interval", integer(1, 3600), 30),
        reporter=ctx.value(device.SECTION).hostname,
    )
    reader.finish()
    return health


HEALTH = Section(
    "health", _build_health, lambda h: {"interval": h.interval}, needs=(device.SECTION.key,)
)


def test_a_new_section_is_one_module_and_one_registry_entry() -> None:
    # A section listed first that needs a later one is built after it, the rest stay put.
    order = build_order((HEALTH, *DOCUMENT_ORDER))
    assert list(order)[:2] == ["device", "health"]
    assert list(order)[2:] == [key for key in SECTIONS if key != "device"]
    ctx = context()
    node = Node({"intervl": Node(5, Where("a.yaml", 3), Where("a.yaml", 3))}, Where("a.yaml", 2))
    ctx.built["device"] = device.SECTION.build(None, "device", ctx)
    assert HEALTH.build(node, "health", ctx) == HealthConfig(30, "edge-2e6d")
    assert ctx.issues.items == ["a.yaml:3: health.intervl: unknown key (did you mean 'interval'?)"]


def test_needs_that_cannot_be_met_are_refused() -> None:
    lonely = Section("lonely", _build_health, repr, needs=("nowhere",))
    with pytest.raises(ValueError, match="lonely"):
        build_order((*DOCUMENT_ORDER, lonely))
    first = Section("a", _build_health, repr, needs=("b",))
    second = Section("b", _build_health, repr, needs=("a",))
    with pytest.raises(ValueError, match="wait for"):
        build_order((first, second))


def test_the_models_are_the_sections_own() -> None:
    # config.model re-exports them: components keep importing from one place.
    assert MdnsConfig.__module__ == "edgeagent.config.sections.mdns"
    assert DnsBridgeConfig.__module__ == "edgeagent.config.sections.dns_bridge"

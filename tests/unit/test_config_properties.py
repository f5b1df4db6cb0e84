"""Property tests: layering is associative, and every valid config survives render -> load."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from edgeagent.config.loader import load_config
from edgeagent.config.model import (
    Config,
    DeviceConfig,
    DnsBridgeConfig,
    InterfacesConfig,
    MdnsConfig,
    ServiceConfig,
)
from edgeagent.config.render import config_to_dict, render_yaml
from edgeagent.config.schema import Issues, Where, format_upstream, from_plain, merge, to_plain
from edgeagent.identity import DeviceIdentity

# -- merge is associative -----------------------------------------------------------------------
KEYS = st.sampled_from(["a", "b", "c", "ttl"])
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "y"])
SERVICE_ITEMS: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict, id=st.sampled_from(["ssh", "web", "ipp"]), port=st.integers(1, 3)
) | st.builds(lambda i: {"id": i, "remove": True}, st.sampled_from(["ssh", "web", "ipp"]))
TREES = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=3),
    lambda inner: st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
LAYERS = st.fixed_dictionaries(
    {},
    optional={
        "mdns": st.fixed_dictionaries(
            {},
            optional={
                "services": st.lists(SERVICE_ITEMS, max_size=4, unique_by=lambda s: s["id"]),
                "ttl": SCALARS,
                "x": TREES,
            },
        ),
        "log_level": SCALARS,
        "other": TREES,
    },
)


def node(value: dict[str, Any], name: str) -> Any:
    issues = Issues()
    tree = from_plain(value, Where(name), issues)
    assert not issues
    return tree


def _shapes(tree: Any, path: tuple[str, ...], out: dict[tuple[str, ...], set[bool]]) -> None:
    if isinstance(tree, dict):
        out.setdefault(path, set()).add(True)
        for key, child in tree.items():
            _shapes(child, (*path, key), out)
    elif tree is not None:
        out.setdefault(path, set()).add(False)


def shapes_agree(*layers: dict[str, Any]) -> bool:
    """No key is a mapping in one layer and a scalar or list in another.

    Real layers agree (the schema gives each key one type); where they do not, "a mapping
    replaces a scalar" cannot be associative, since the scalar in the middle layer is what
    tells the outer merge to drop the base mapping's keys.
    """
    seen: dict[tuple[str, ...], set[bool]] = {}
    for layer in layers:
        _shapes(layer, (), seen)
    return all(len(kinds) == 1 for kinds in seen.values())


@given(LAYERS, LAYERS, LAYERS)
def test_merge_is_associative(a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]) -> None:
    assume(shapes_agree(a, b, c))
    na, nb, nc = node(a, "a"), node(b, "b"), node(c, "c")
    left = merge(merge(na, nb), nc)
    right = merge(na, merge(nb, nc))
    assert to_plain(left) == to_plain(right)


@given(LAYERS, LAYERS)
def test_merge_keeps_every_overlay_value(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = to_plain(merge(node(a, "a"), node(b, "b")))
    for key, value in b.items():
        if isinstance(value, dict) or value is None:
            continue
        assert merged[key] == value
    # services by id: the overlay's item (or tombstone) is what the merged list holds
    for item in b.get("mdns", {}).get("services", []):
        (found,) = [s for s in merged["mdns"]["services"] if s["id"] == item["id"]]
        assert found == item


# -- render -> load round trip ------------------------------------------------------------------
LABELS = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z").filter(lambda s: s != "hostname")
TEXT = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "" and len(s.encode()) <= 63)
DURATIONS = st.floats(min_value=0.001, max_value=86400, allow_nan=False, allow_infinity=False)
SERVICE_NAMES = st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z")
TXT = st.dictionaries(
    st.from_regex(r"\A[A-Za-z0-9_.-]{1,9}\Z"), st.text(max_size=20), max_size=3
).map(lambda d: tuple(d.items()))
ADDRESSES = st.ip_addresses().map(str)


@st.composite
def services(draw: st.DrawFn) -> ServiceConfig:
    return ServiceConfig(
        id=draw(LABELS),
        type=f"_{draw(SERVICE_NAMES)}._{draw(st.sampled_from(['tcp', 'udp']))}",
        port=draw(st.integers(1, 65535)),
        txt=draw(TXT),
        priority=draw(st.integers(0, 65535)),
        weight=draw(st.integers(0, 65535)),
        instance_name=draw(st.none() | TEXT),
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    hostname = draw(LABELS)
    hosts = (hostname, *draw(st.lists(LABELS, max_size=3, unique=True)))
    hosts = tuple(dict.fromkeys(hosts))
    instance_name = draw(TEXT)
    service_list = draw(st.lists(services(), max_size=4, unique_by=lambda s: s.id))
    instances = [(s.type, (s.instance_name or instance_name).lower()) for s in service_list]
    assume(len(set(instances)) == len(instances))
    bridge_address = draw(ADDRESSES)
    # not the default mesh cluster's UDP port: an enabled bridge there is a config error
    bridge_port = draw(st.integers(1, 65535).filter(lambda port: port != 4370))
    upstreams = tuple(
        dict.fromkeys(
            format_upstream(ipaddress.ip_address(address), port)
            for address, port in draw(
                st.lists(st.tuples(ADDRESSES, st.integers(1, 65535)), max_size=3)
            )
            if (address, port) != (bridge_address, bridge_port)
        )
    )
    patterns = st.lists(TEXT, max_size=3).map(tuple)
    return Config(
        device=DeviceConfig(hostname=hostname),
        mdns=MdnsConfig(
            hosts=hosts,
            instance_name=instance_name,
            ttl=draw(st.integers(1, 86400)),
            interfaces=InterfacesConfig(include=draw(patterns), exclude=draw(patterns)),
            services=tuple(service_list),
            advertise_agent=draw(st.booleans()),
            agent_port=draw(st.integers(1, 65535)),
            cache_size=draw(st.integers(1, 1_000_000)),
            cache_max_ttl=draw(st.integers(1, 86400)),
            query_timeout=draw(DURATIONS),
        ),
        dns_bridge=DnsBridgeConfig(
            enabled=draw(st.booleans()),
            address=bridge_address,
            port=bridge_port,
            # a recursive bridge without upstreams would read /etc/resolv.conf on reload
            recursive=draw(st.booleans()) and bool(upstreams),
            upstreams=upstreams,
            query_timeout=draw(DURATIONS),
            upstream_timeout=draw(DURATIONS),
            udp_payload_size=draw(st.integers(512, 65535)),
        ),
        log_level=draw(st.sampled_from(["debug", "info", "warning", "error", "critical"])),
    )


def _named(instance_name: str) -> Config:
    hosts = ("edge-ffff",)
    return Config(DeviceConfig("edge-ffff"), MdnsConfig(hosts, instance_name), DnsBridgeConfig())


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
@example(_named("a ${B} c"))  # the loader substitutes ${...}: render must escape it
@example(_named("$${x}"))
@example(_named("\x85a\u2028b"))  # line separators PyYAML mangles with allow_unicode
@example(_named("Gewächshaus 1"))
@example(_named("!secret x"))
def test_render_then_load_gives_the_same_config(config: Config) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "edgeagent.yaml"
        path.write_text(render_yaml(config), encoding="utf-8")
        loaded = load_config(
            path,
            identity=DeviceIdentity("ffff"),
            env={},
            resolv_conf=Path(directory) / "resolv.conf",
        )
    assert loaded == config


@given(configs())
def test_the_dict_form_is_also_loadable_as_overrides(config: Config) -> None:
    # config_to_dict is plain data: as runtime overrides over nothing it is the same config
    loaded = load_config(
        None,
        overrides=config_to_dict(config),
        identity=DeviceIdentity("ffff"),
        env={},
        resolv_conf=Path("/nonexistent/resolv.conf"),
    )
    assert loaded == config

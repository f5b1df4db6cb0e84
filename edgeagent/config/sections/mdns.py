"""The ``mdns:`` section: the names and DNS-SD services the device answers for, and where.

``hosts`` may say ``hostname`` for ``device.hostname`` (so it ``needs`` the device section);
``services`` is a list merged by ``id`` across layers. :class:`InterfacesConfig` (which
interfaces to run on) is also what each mesh cluster's ``interfaces`` reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgeagent.config.located import (
    FieldReader,
    Issues,
    Node,
    default_of,
    describe,
    did_you_mean,
    item_path,
    join_path,
)
from edgeagent.config.scalars import (
    PORT,
    choice,
    integer,
    list_of,
    parse_bool,
    parse_duration,
    parse_hostname,
    parse_pattern,
    parse_text,
)
from edgeagent.config.sections import BuildContext, Section, device, removal_item

HOSTNAME_TOKEN = "hostname"  # noqa: S105 - not a password; in mdns.hosts: "the device hostname"


@dataclass(frozen=True, slots=True)
class InterfacesConfig:
    """Which interfaces mDNS runs on: fnmatch patterns; an empty ``include`` means all."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ("lo", "docker*", "veth*", "ppp*", "wwan*")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One DNS-SD service. ``type`` is the full ``_name._proto`` form."""

    id: str
    type: str
    port: int
    txt: tuple[tuple[str, str], ...] = ()
    priority: int = 0
    weight: int = 0
    instance_name: str | None = None  # None: mdns.instance_name


@dataclass(frozen=True, slots=True)
class MdnsConfig:
    hosts: tuple[str, ...]  # resolved: "hostname" already replaced by device.hostname
    instance_name: str
    ttl: int = 120
    interfaces: InterfacesConfig = field(default_factory=InterfacesConfig)
    services: tuple[ServiceConfig, ...] = ()
    advertise_agent: bool = True  # the agent's own _edgeagent._tcp service
    agent_port: int = 4370
    cache_size: int = 1000
    cache_max_ttl: int = 4500  # 75 minutes, as MdnsLite clamps
    query_timeout: float = 0.5  # a live mDNS query gives up after this long


def _build_mdns(node: Node | None, path: str, ctx: BuildContext) -> MdnsConfig:
    reader = FieldReader(node, path, ctx.issues)
    hostname = ctx.value(device.SECTION).hostname
    hosts = _hosts(reader.node("hosts"), join_path(path, "hosts"), ctx.issues, hostname)
    instance_name = reader.get("instance_name", parse_instance_name, hosts[0])
    interfaces = build_interfaces(reader.node("interfaces"), join_path(path, "interfaces"), ctx)
    services = _services(
        reader.node("services"), join_path(path, "services"), ctx.issues, instance_name
    )
    mdns = MdnsConfig(
        hosts=hosts,
        instance_name=instance_name,
        ttl=reader.get("ttl", integer(1, 86400), default_of(MdnsConfig, "ttl")),
        interfaces=interfaces,
        services=services,
        advertise_agent=reader.get(
            "advertise_agent", parse_bool, default_of(MdnsConfig, "advertise_agent")
        ),
        agent_port=reader.get("agent_port", PORT, default_of(MdnsConfig, "agent_port")),
        cache_size=reader.get(
            "cache_size", integer(1, 1_000_000), default_of(MdnsConfig, "cache_size")
        ),
        cache_max_ttl=reader.get(
            "cache_max_ttl", integer(1, 86400), default_of(MdnsConfig, "cache_max_ttl")
        ),
        query_timeout=reader.get(
            "query_timeout", parse_duration, default_of(MdnsConfig, "query_timeout")
        ),
    )
    reader.finish()
    return mdns


def build_interfaces(node: Node | None, path: str, ctx: BuildContext) -> InterfacesConfig:
    reader = FieldReader(node, path, ctx.issues)
    patterns = list_of(parse_pattern)
    interfaces = InterfacesConfig(
        include=reader.get("include", patterns, default_of(InterfacesConfig, "include")),
        exclude=reader.get("exclude", patterns, default_of(InterfacesConfig, "exclude")),
    )
    reader.finish()
    return interfaces


def parse_instance_name(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    # RFC 6763 section 4.1.1: the instance name is one DNS label, at most 63 octets of UTF-8.
    if len(text.encode()) > 63:
        issues.add(node.where, path, f"is {len(text.encode())} bytes of UTF-8; at most 63")
        return None
    return text


def parse_protocol(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    name = text.lower()
    if name.startswith("_"):
        issues.add(node.where, path, f"write it without '_' (did you mean '{name.lstrip('_')}'?)")
        return None
    problem = _service_name_problem(name)
    if problem:
        issues.add(node.where, path, f"{text!r}: {problem}")
        return None
    return name


def parse_service_type(node: Node, path: str, issues: Issues) -> str | None:
    text = parse_text(node, path, issues)
    if text is None:
        return None
    lowered = text.lower().removesuffix(".local").removesuffix(".")
    match = _SERVICE_TYPE.match(lowered)
    if match is None:
        guess = lowered.strip("_").split(".")[0] if lowered else ""
        hint = f" (did you mean '_{guess}._tcp'?)" if guess and "_" not in guess else ""
        issues.add(node.where, path, f"expected '_name._tcp' or '_name._udp', got {text!r}{hint}")
        return None
    if match["transport"] not in ("tcp", "udp"):
        issues.add(
            node.where,
            path,
            f"the transport must be _tcp or _udp, got '_{match['transport']}'"
            + did_you_mean(match["transport"], ["tcp", "udp"]).replace("'", "'_", 1),
        )
        return None
    problem = _service_name_problem(match["name"])
    if problem:
        issues.add(node.where, path, f"{text!r}: {problem}")
        return None
    return lowered


def parse_txt(node: Node, path: str, issues: Issues) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(node.value, dict):
        issues.add(
            node.where, path, f"expected a mapping of TXT keys to values, got {describe(node)}"
        )
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for key, child in node.value.items():
        at = join_path(path, key)
        where = child.key_where or child.where
        # RFC 6763 section 6.4: keys are printable US-ASCII except '=', at least one character.
        if not key or "=" in key or not all(0x20 <= ord(c) <= 0x7E for c in key):
            issues.add(where, at, "a TXT key is printable ASCII without '='")
            ok = False
            continue
        value = child.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float | str):
            text = str(value)
        else:
            issues.add(
                child.where,
                at,
                f"expected a text value, got {describe(child)} (write '' for empty)",
            )
            ok = False
            continue
        # RFC 6763 section 6.1: each key=value string is at most 255 bytes.
        if len(f"{key}={text}".encode()) > 255:
            issues.add(child.where, at, "key=value is longer than 255 bytes")
            ok = False
            continue
        pairs.append((key, text))
    return tuple(pairs) if ok else None


def _render_mdns(mdns: MdnsConfig) -> dict[str, Any]:
    return {
        "hosts": list(mdns.hosts),
        "instance_name": mdns.instance_name,
        "ttl": mdns.ttl,
        "interfaces": render_interfaces(mdns.interfaces),
        "services": [_render_service(service) for service in mdns.services],
        "advertise_agent": mdns.advertise_agent,
        "agent_port": mdns.agent_port,
        "cache_size": mdns.cache_size,
        "cache_max_ttl": mdns.cache_max_ttl,
        "query_timeout": mdns.query_timeout,
    }


def render_interfaces(interfaces: InterfacesConfig) -> dict[str, Any]:
    return {"include": list(interfaces.include), "exclude": list(interfaces.exclude)}


def _render_service(service: ServiceConfig) -> dict[str, Any]:
    data: dict[str, Any] = {"id": service.id, "type": service.type, "port": service.port}
    if service.txt:
        data["txt"] = dict(service.txt)
    data["priority"] = service.priority
    data["weight"] = service.weight
    if service.instance_name is not None:
        data["instance_name"] = service.instance_name
    return data


SECTION: Section[MdnsConfig] = Section(
    "mdns",
    _build_mdns,
    _render_mdns,
    needs=(device.SECTION.key,),
    id_merged_lists=(("mdns", "services"),),
)


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------
def _hosts(node: Node | None, path: str, issues: Issues, hostname: str) -> tuple[str, ...]:
    if node is None:
        return (hostname,)
    if not isinstance(node.value, tuple):
        issues.add(node.where, path, f"expected a list of host names, got {describe(node)}")
        return (hostname,)
    if not node.value:
        issues.add(node.where, path, "needs at least one host name (e.g. [hostname])")
        return (hostname,)
    hosts: list[str] = []
    for index, item in enumerate(node.value):
        name = (
            hostname
            if item.value == HOSTNAME_TOKEN
            else parse_hostname(item, f"{path}[{index}]", issues)
        )
        if name is not None and name not in hosts:
            hosts.append(name)
    return tuple(hosts) or (hostname,)


def _services(
    node: Node | None, path: str, issues: Issues, default_instance: str
) -> tuple[ServiceConfig, ...]:
    if node is None:
        return ()
    if not isinstance(node.value, tuple):
        issues.add(node.where, path, f"expected a list of services, got {describe(node)}")
        return ()
    # Duplicate ids are reported per layer (check_layer): merging keeps one of each.
    services: list[ServiceConfig] = []
    seen_instances: dict[tuple[str, str], str] = {}
    for index, item in enumerate(node.value):
        item_at = item_path(path, index, item)
        service = _service(item, item_at, issues)
        if service is None:
            continue
        instance = (service.type, (service.instance_name or default_instance).lower())
        if instance in seen_instances:
            issues.add(
                item.where,
                item_at,
                f"service '{seen_instances[instance]}' already advertises instance "
                f"'{service.instance_name or default_instance}' of {service.type}; "
                "give one of them an instance_name",
            )
        seen_instances[instance] = service.id
        services.append(service)
    return tuple(services)


def _service(item: Node, path: str, issues: Issues) -> ServiceConfig | None:
    """One service item, or None for a removal or an invalid item (already reported)."""
    if not isinstance(item.value, dict):
        issues.add(item.where, path, f"expected a service mapping, got {describe(item)}")
        return None
    reader = FieldReader(item, path, issues)
    if removal_item(item, reader, path, issues):
        return None
    before = len(issues)
    ident = reader.get("id", parse_text, None)
    service_type = reader.get("type", parse_service_type, None)
    protocol = reader.get("protocol", parse_protocol, None)
    transport = reader.get("transport", choice(("tcp", "udp")), None)
    port = reader.get("port", PORT, None)
    no_txt: tuple[tuple[str, str], ...] = ()
    txt = reader.get("txt", parse_txt, no_txt)
    priority = reader.get("priority", integer(0, 65535), default_of(ServiceConfig, "priority"))
    weight = reader.get("weight", integer(0, 65535), default_of(ServiceConfig, "weight"))
    instance_name = reader.get("instance_name", parse_instance_name, None)
    reader.finish()
    if reader.node("id") is None:
        issues.add(item.where, path, "missing required key 'id'")
    if reader.node("port") is None:
        issues.add(item.where, path, "missing required key 'port'")
    has_type = reader.node("type") is not None
    has_split = reader.node("protocol") is not None or reader.node("transport") is not None
    if has_type and has_split:
        issues.add(item.where, path, "give either 'type' or 'protocol' + 'transport', not both")
    elif not has_type and not has_split:
        issues.add(item.where, path, "missing 'type' (e.g. _http._tcp) or 'protocol' + 'transport'")
    elif not has_type and (reader.node("protocol") is None or reader.node("transport") is None):
        missing = "transport" if reader.node("transport") is None else "protocol"
        issues.add(
            item.where, path, f"'protocol' and 'transport' go together; '{missing}' is missing"
        )
    if len(issues) != before:
        return None
    if service_type is None:
        service_type = f"_{protocol}._{transport}"
    assert ident is not None
    assert port is not None
    return ServiceConfig(
        id=ident,
        type=service_type,
        port=port,
        txt=txt,
        priority=priority,
        weight=weight,
        instance_name=instance_name,
    )


_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def _service_name_problem(name: str) -> str | None:
    # RFC 6335 section 5.1: 1-15 characters, letters digits and hyphens, at least one letter,
    # no hyphen at either end nor two in a row.
    if not _SERVICE_NAME.match(name) or "--" in name or not re.search("[a-z]", name):
        return "a service name has 1-15 lowercase letters, digits or '-', at least one letter"
    return None


_SERVICE_TYPE = re.compile(r"^_(?P<name>[^.]+)\._(?P<transport>[^.]+)$")

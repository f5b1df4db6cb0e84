"""The effective ``Config`` as data: a JSON-able dict and YAML text (``edgeagent check``).

The output uses the keys of the YAML contract and every value explicitly (defaults filled in,
``hostname`` in ``mdns.hosts`` resolved), so loading the rendered text gives the same
``Config`` back. Durations are written as seconds.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Collection
from typing import Any

import yaml

from edgeagent.config.model import (
    CapabilitiesConfig,
    ClusterConfig,
    Config,
    DeviceConfig,
    DnsBridgeConfig,
    Grants,
    InterfacesConfig,
    JournalConfig,
    MdnsConfig,
    MeshConfig,
    ReactorConfig,
    ServiceConfig,
)

REDACTED = "<secret>"


def config_to_dict(config: Config) -> dict[str, Any]:
    """The effective config as plain data in the shape of the YAML contract."""
    return {
        "device": _device(config.device),
        "mdns": _mdns(config.mdns),
        "dns_bridge": _dns_bridge(config.dns_bridge),
        "log_level": config.log_level,
        "mesh": _mesh(config.mesh),
        "capabilities": _capabilities(config.capabilities),
        "principals": _grants(config.principals),
        "reactors": [_reactor(reactor) for reactor in config.reactors],
        "journal": _journal(config.journal),
    }


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


def _device(device: DeviceConfig) -> dict[str, Any]:
    return {"hostname": device.hostname}


def _mdns(mdns: MdnsConfig) -> dict[str, Any]:
    return {
        "hosts": list(mdns.hosts),
        "instance_name": mdns.instance_name,
        "ttl": mdns.ttl,
        "interfaces": _interfaces(mdns.interfaces),
        "services": [_service(service) for service in mdns.services],
        "advertise_agent": mdns.advertise_agent,
        "agent_port": mdns.agent_port,
        "cache_size": mdns.cache_size,
        "cache_max_ttl": mdns.cache_max_ttl,
        "query_timeout": mdns.query_timeout,
    }


def _interfaces(interfaces: InterfacesConfig) -> dict[str, Any]:
    return {"include": list(interfaces.include), "exclude": list(interfaces.exclude)}


def _service(service: ServiceConfig) -> dict[str, Any]:
    data: dict[str, Any] = {"id": service.id, "type": service.type, "port": service.port}
    if service.txt:
        data["txt"] = dict(service.txt)
    data["priority"] = service.priority
    data["weight"] = service.weight
    if service.instance_name is not None:
        data["instance_name"] = service.instance_name
    return data


def _dns_bridge(bridge: DnsBridgeConfig) -> dict[str, Any]:
    return {
        "enabled": bridge.enabled,
        "address": bridge.address,
        "port": bridge.port,
        "recursive": bridge.recursive,
        "upstreams": list(bridge.upstreams),
        "query_timeout": bridge.query_timeout,
        "upstream_timeout": bridge.upstream_timeout,
        "udp_payload_size": bridge.udp_payload_size,
    }


def _mesh(mesh: MeshConfig) -> dict[str, Any]:
    return {"enabled": mesh.enabled, "clusters": [_cluster(c) for c in mesh.clusters]}


def _cluster(cluster: ClusterConfig) -> dict[str, Any]:
    # Items are labelled by index in key paths (they have no ``id``), as the loader's
    # secret paths are: ``mesh.clusters[0].key``.
    return {
        "name": cluster.name,
        "key": base64.b64encode(cluster.key).decode() if cluster.key is not None else None,
        "strategy": cluster.strategy,
        "port": cluster.port,
        "peers": list(cluster.peers),
        "probe_interval": cluster.probe_interval,
        "probe_timeout": cluster.probe_timeout,
        "indirect_checks": cluster.indirect_checks,
        "suspicion_mult": cluster.suspicion_mult,
        "gossip_interval": cluster.gossip_interval,
        "gossip_fanout": cluster.gossip_fanout,
        "push_pull_interval": cluster.push_pull_interval,
        "reap_after": cluster.reap_after,
        "suspicion_max_mult": cluster.suspicion_max_mult,
        "retransmit_mult": cluster.retransmit_mult,
        "max_local_health": cluster.max_local_health,
        "rejoin_interval": cluster.rejoin_interval,
        "rejoin_max_interval": cluster.rejoin_max_interval,
        "join_defer": cluster.join_defer,
        "dns_name": cluster.dns_name,
        "dns_interval": cluster.dns_interval,
        "interfaces": _interfaces(cluster.interfaces),
        "offers": list(cluster.offers),
        "roles": list(cluster.roles),
    }


def _grants(grants: Grants) -> dict[str, Any]:
    return {name: list(values) for name, values in grants}


def _capabilities(capabilities: CapabilitiesConfig) -> dict[str, Any]:
    return {"implies": _grants(capabilities.implies)}


def _reactor(reactor: ReactorConfig) -> dict[str, Any]:
    return {
        "id": reactor.id,
        "type": reactor.type,
        "requires": _grants(reactor.requires),
        "options": copy.deepcopy(dict(reactor.options)),
        "subscribe": dict(reactor.subscribe),
        "mailbox": reactor.mailbox,
        "overflow": reactor.overflow,
        "snapshot_every": reactor.snapshot_every,
        "enabled": reactor.enabled,
    }


def _journal(journal: JournalConfig) -> dict[str, Any]:
    return {
        "path": journal.path,
        "max_bytes": journal.max_bytes,
        "max_batch": journal.max_batch,
        "audit_keep": journal.audit_keep,
    }

"""The mesh API: the peers document, requests to members, the meta this device shares, and
the methods this device answers over the mesh (``agent.status``, ``agent.echo`` and remote
intents)."""

from __future__ import annotations

import time
from typing import Any

from edgeagent import __version__
from edgeagent.api.context import AgentView
from edgeagent.errors import ControlError
from edgeagent.mdns.table import RecordTable
from edgeagent.mesh.service import RequestContext, RequestHandler
from edgeagent.reactors.remote import PEER_METHOD, serve_remote


def mesh_meta(table: RecordTable) -> dict[str, Any]:
    """What this device tells cluster members about itself, from the record table it
    advertises (offers and roles are added per cluster by the mesh service)."""
    return {
        "hostname": table.hosts[0],
        "version": __version__,
        "services": [
            {"id": s.id, "type": s.type, "port": s.port, "instance": s.instance}
            for s in table.services
        ],
    }


def peers_document(view: AgentView) -> dict[str, Any]:
    """The mesh as ``info`` shows it: members, own roles, clusters and recent events."""
    parts = view.parts
    mesh = parts.mesh
    if mesh is None:
        reason = "mesh.enabled is false" if not parts.config.mesh.enabled else "no clusters"
        return {"enabled": False, "reason": reason, "members": [], "events": []}
    return {
        "enabled": True,
        "members": mesh.peers_document(),
        "roles": mesh.self_roles(),
        "clusters": mesh.status(),
        "events": [
            {
                "cluster": cluster,
                "device_id": event.device_id,
                "kind": str(event.kind),
                "at": event.at,
                "detail": event.detail,
            }
            for cluster, event in mesh.events
        ],
    }


async def peers(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    mesh = view.parts.mesh
    if mesh is None:
        return []
    cluster = params.get("cluster")
    return [r for r in mesh.peers_document() if cluster is None or r["cluster"] == cluster]


async def mesh_request(view: AgentView, params: dict[str, Any]) -> Any:
    mesh = view.parts.need_mesh()
    device_id, method = params.get("device_id"), params.get("method")
    if not isinstance(device_id, str) or not isinstance(method, str):
        raise ControlError("mesh.request needs 'device_id' and 'method'")
    timeout = float(params.get("timeout", 5.0))
    cluster = params.get("cluster")
    return await mesh.request(
        device_id, method, params.get("body"), cluster=cluster, timeout=timeout
    )


def peer_methods(view: AgentView) -> dict[str, RequestHandler]:
    """The methods members of our clusters may call on this device."""

    async def status(request: RequestContext, body: Any) -> Any:
        return {
            "device_id": view.device.device_id,
            "hostname": view.parts.mdns.table.hosts[0],
            "version": __version__,
            "uptime": round(time.monotonic() - view.device.started, 3),
        }

    async def echo(request: RequestContext, body: Any) -> Any:
        return {"from": request.sender, "cluster": request.cluster, "body": body}

    async def intent(request: RequestContext, body: Any) -> Any:
        # Before the reactors run this raises; the sender sees a "remote" refusal.
        return await serve_remote(view.parts.need_reactors(), request, body)

    return {"agent.status": status, "agent.echo": echo, PEER_METHOD: intent}


METHODS = {"peers": peers, "mesh.request": mesh_request}

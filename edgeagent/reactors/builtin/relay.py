"""The ``relay`` reactor type: forwards any payload as another intent, here or on a peer.

Verb: ``forward {...}`` (any object). Options: ``to`` (required), the intent name to send;
``peer`` (optional), a mesh member (device id or hostname) to send it to, and ``cluster``
when that member is in several clusters. Effect: ``Emit(to, payload)``, or with ``peer``
``Forward(peer, to, payload, cluster)``. State: ``{"forwarded": N}``. Useful to rename an
intent, to hand an intent on under this reactor's principal (``reactor:<id>``), whose
capabilities are configured on their own, or to pass readings to another device, which
decides with its grants for ``peer:<cluster>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.errors import PayloadError
from edgeagent.reactors.model import (
    Effect,
    Emit,
    Forward,
    Intent,
    State,
    check_intent_name,
    no_such_verb,
)
from edgeagent.reactors.schema import Field, Schema


def _finish(options: dict[str, Any]) -> dict[str, Any]:
    check_intent_name(options["to"], "to")
    for key in ("peer", "cluster"):
        if options[key] == "":
            raise PayloadError(key, "must not be empty (leave it out instead)")
    if options["cluster"] is not None and options["peer"] is None:
        raise PayloadError("cluster", "only means something with peer (a member to send to)")
    return options


class Relay:
    """Re-emits what it is given under another name, here or on a peer."""

    name = "relay"
    verbs: Mapping[str, Schema] = MappingProxyType({"forward": Schema(extra=True)})
    options = Schema(
        (
            Field("to", "str", required=True, doc="the intent name to send"),
            Field("peer", "str", doc="a mesh member (device id or hostname) to send it to"),
            Field("cluster", "str", doc="the peer's cluster, when it is in several"),
        ),
        finish=_finish,
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"forwarded": 0}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        # A name sent to a peer is the peer's to check: no wire on this device.
        return [] if options["peer"] else [options["to"]]

    def forwards(self, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(intent name, peer) sent to peers, for ``explain``."""
        return [(options["to"], options["peer"])] if options["peer"] else []

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        if verb == "forward":
            payload = dict(intent.payload)
            effect: Effect = (
                Forward(options["peer"], options["to"], payload, options["cluster"])
                if options["peer"]
                else Emit(options["to"], payload)
            )
            return {"forwarded": state["forwarded"] + 1}, [effect]
        raise no_such_verb(self, verb)


RELAY = Relay()

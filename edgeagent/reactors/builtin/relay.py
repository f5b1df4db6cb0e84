"""The ``relay`` reactor type: forwards any payload as another intent.

Verb: ``forward {...}`` (any object). Option ``to`` (required): the intent name to emit.
Effect: ``Emit(to, payload)``. State: ``{"forwarded": N}``. Useful to rename an intent, or
to hand an intent on under this reactor's principal (``reactor:<id>``), whose capabilities
are configured on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.reactors.model import Effect, Emit, Intent, State, check_intent_name, no_such_verb
from edgeagent.reactors.schema import Field, Schema


def _finish(options: dict[str, Any]) -> dict[str, Any]:
    check_intent_name(options["to"], "to")
    return options


class Relay:
    """Re-emits what it is given under another name."""

    name = "relay"
    verbs: Mapping[str, Schema] = MappingProxyType({"forward": Schema(extra=True)})
    options = Schema(
        (Field("to", "str", required=True, doc="the intent name to emit"),), finish=_finish
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"forwarded": 0}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        return [options["to"]]

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        if verb == "forward":
            return {"forwarded": state["forwarded"] + 1}, [
                Emit(options["to"], dict(intent.payload))
            ]
        raise no_such_verb(self, verb)


RELAY = Relay()

"""The ``counter`` reactor type: a count that intents increment and reset.

Verbs: ``increment {by: int = 1}`` (a negative ``by`` counts down), ``reset {}``.
State: ``{"count": N}``. No options, no effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.reactors.model import Effect, Intent, State, no_such_verb
from edgeagent.reactors.schema import Field, Schema


class Counter:
    """Counts; the simplest reactor and the one the examples use."""

    name = "counter"
    verbs: Mapping[str, Schema] = MappingProxyType(
        {
            "increment": Schema((Field("by", "int", default=1, doc="added to the count"),)),
            "reset": Schema(),
        }
    )
    options = Schema()

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"count": 0}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        return []

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        if verb == "increment":
            return {"count": state["count"] + intent.payload["by"]}, []
        if verb == "reset":
            return {"count": 0}, []
        raise no_such_verb(self, verb)


COUNTER = Counter()

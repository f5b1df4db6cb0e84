"""The ``threshold`` reactor type: an alarm with hysteresis over numeric readings.

Verb: ``reading {value: number}``. Options: ``high`` (required), ``low`` (default ``high``,
must be <= ``high``), ``on_alarm`` / ``on_clear`` (intent names to emit, optional).
State: ``{"alarm": bool, "last": value or null, "since": at of the last change or null}``.

The alarm raises when a reading is >= ``high`` and clears when one is <= ``low``; between the
two nothing changes, so a value wobbling around one threshold does not flap. When ``low``
equals ``high``, a reading exactly at that value keeps the current state for the same
reason. Each change emits ``on_alarm`` or ``on_clear`` with ``{"value": v}``, once, on the
change only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.errors import PayloadError
from edgeagent.reactors.model import Effect, Emit, Intent, State, check_intent_name, no_such_verb
from edgeagent.reactors.schema import Field, Schema


def _finish(options: dict[str, Any]) -> dict[str, Any]:
    if options["low"] is None:
        options["low"] = options["high"]
    if options["low"] > options["high"]:
        raise PayloadError("low", f"must be <= high ({options['high']}), got {options['low']}")
    for key in ("on_alarm", "on_clear"):
        if options[key] is not None:
            check_intent_name(options[key], key)
    return options


class Threshold:
    """Raises and clears an alarm, emitting an intent on each change."""

    name = "threshold"
    verbs: Mapping[str, Schema] = MappingProxyType(
        {"reading": Schema((Field("value", "number", required=True, doc="the reading"),))}
    )
    options = Schema(
        (
            Field("high", "number", required=True, doc="the alarm raises at or above this"),
            Field("low", "number", doc="the alarm clears at or below this (default: high)"),
            Field("on_alarm", "str", doc="intent emitted when the alarm raises"),
            Field("on_clear", "str", doc="intent emitted when the alarm clears"),
        ),
        finish=_finish,
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"alarm": False, "last": None, "since": None}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        return [options[key] for key in ("on_alarm", "on_clear") if options[key] is not None]

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        if verb != "reading":
            raise no_such_verb(self, verb)
        value = intent.payload["value"]
        high, low = options["high"], options["low"]
        alarm, since = state["alarm"], state["since"]
        effects: list[Effect] = []
        # Each condition excludes the other's, which only matters when low == high == value.
        if not alarm and value >= high and not value <= low:
            alarm, since = True, intent.context.at
            if options["on_alarm"] is not None:
                effects.append(Emit(options["on_alarm"], {"value": value}))
        elif alarm and value <= low and not value >= high:
            alarm, since = False, intent.context.at
            if options["on_clear"] is not None:
                effects.append(Emit(options["on_clear"], {"value": value}))
        return {"alarm": alarm, "last": value, "since": since}, effects


THRESHOLD = Threshold()

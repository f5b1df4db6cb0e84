"""The ``threshold`` reactor type: an alarm with hysteresis over numeric readings.

Verb: ``reading {value: number}`` (a sensor field's ``unit`` and ``ts`` ride along, unused).
Options: ``high`` (required), ``low`` (default ``high``, must be <= ``high``), ``on_alarm`` /
``on_clear`` (optional): an intent name, sent ``{"value": v}``, or ``{intent: NAME,
payload: {...}}``, sent exactly that payload, so a threshold can switch an actuator directly
(``{intent: fan.write, payload: {data: "FAN ON"}}``).
State: ``{"alarm": bool, "last": value or null, "since": at of the last change or null}``.

The alarm raises when a reading is >= ``high`` and clears when one is <= ``low``; between the
two nothing changes, so a value wobbling around one threshold does not flap. When ``low``
equals ``high``, a reading exactly at that value keeps the current state for the same
reason. Each change emits ``on_alarm`` or ``on_clear`` once, on the change only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.errors import PayloadError
from edgeagent.reactors.model import Effect, Emit, Intent, State, check_intent_name, no_such_verb
from edgeagent.reactors.schema import Field, Schema

#: A numeric reading: what the CLI sends, and what a sensor field's intent carries.
READING = Schema(
    (
        Field("value", "number", required=True, doc="the reading"),
        Field("unit", "str", doc="the sensor field's unit, if it has one"),
        Field("ts", "number", doc="when the sensor read it (seconds since the epoch)"),
    )
)


def _finish(options: dict[str, Any]) -> dict[str, Any]:
    if options["low"] is None:
        options["low"] = options["high"]
    if options["low"] > options["high"]:
        raise PayloadError("low", f"must be <= high ({options['high']}), got {options['low']}")
    for key in ("on_alarm", "on_clear"):
        action = options[key]
        if action is None:
            continue
        if isinstance(action, str):
            check_intent_name(action, key)
            continue
        if not isinstance(action, dict) or set(action) - {"intent", "payload"}:
            raise PayloadError(key, "an intent name, or {intent: NAME, payload: {...}}")
        if not isinstance(action.get("intent"), str):
            raise PayloadError(f"{key}.intent", "the intent name to send is required")
        check_intent_name(action["intent"], f"{key}.intent")
        if not isinstance(action.get("payload", {}), dict):
            raise PayloadError(f"{key}.payload", "must be a mapping (the intent's payload)")
    return options


def _action(action: Any, value: Any) -> Emit:
    """The intent ``on_alarm``/``on_clear`` sends for a reading of ``value``."""
    if isinstance(action, str):
        return Emit(action, {"value": value})
    return Emit(action["intent"], copy.deepcopy(dict(action.get("payload", {}))))


class Threshold:
    """Raises and clears an alarm, emitting an intent on each change."""

    name = "threshold"
    verbs: Mapping[str, Schema] = MappingProxyType({"reading": READING})
    options = Schema(
        (
            Field("high", "number", required=True, doc="the alarm raises at or above this"),
            Field("low", "number", doc="the alarm clears at or below this (default: high)"),
            Field(
                "on_alarm",
                "any",
                doc="intent sent when the alarm raises: a name, or {intent, payload}",
            ),
            Field(
                "on_clear",
                "any",
                doc="intent sent when the alarm clears: a name, or {intent, payload}",
            ),
        ),
        finish=_finish,
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"alarm": False, "last": None, "since": None}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        names = []
        for key in ("on_alarm", "on_clear"):
            action = options[key]
            if action is not None:
                names.append(action if isinstance(action, str) else action["intent"])
        return names

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
                effects.append(_action(options["on_alarm"], value))
        elif alarm and value <= low and not value >= high:
            alarm, since = False, intent.context.at
            if options["on_clear"] is not None:
                effects.append(_action(options["on_clear"], value))
        return {"alarm": alarm, "last": value, "since": since}, effects


THRESHOLD = Threshold()

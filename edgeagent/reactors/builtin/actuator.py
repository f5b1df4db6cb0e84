"""The ``actuator`` reactor type: writes text to a serial device.

Verb: ``write {data: str}`` (required). Options: ``device`` (required, e.g.
``/dev/ttyUSB0``), ``newline`` (default true: a ``\\n`` is appended to every write, whether or
not ``data`` already ends in one), ``baudrate`` (default 115200; the agent opens the port with
it, see ``edgeagent.serial.ports``). Effect: ``SerialWrite(device, data as UTF-8)``.
State: ``{"writes": N, "last": data or null}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.reactors.model import Effect, Intent, SerialWrite, State, no_such_verb
from edgeagent.reactors.schema import Field, Schema


class Actuator:
    """Turns intents into bytes on a serial line."""

    name = "actuator"
    verbs: Mapping[str, Schema] = MappingProxyType(
        {"write": Schema((Field("data", "str", required=True, doc="text to write"),))}
    )
    options = Schema(
        (
            Field("device", "str", required=True, min=1, doc="serial device path"),
            Field("newline", "bool", default=True, doc="append \\n to every write"),
            Field("baudrate", "int", default=115_200, min=50, max=4_000_000, doc="line speed"),
        )
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"writes": 0, "last": None}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        return []  # its effect is a serial write, not an intent

    def devices(self, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {options["device"]: {"baudrate": options["baudrate"]}}

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        if verb == "write":
            text: str = intent.payload["data"]
            data = text.encode() + (b"\n" if options["newline"] else b"")
            new_state = {"writes": state["writes"] + 1, "last": text}
            return new_state, [SerialWrite(options["device"], data)]
        raise no_such_verb(self, verb)


ACTUATOR = Actuator()

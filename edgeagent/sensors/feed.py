"""Readings into the reactors: each reading becomes the intents ``sensor.<id>`` and
``sensor.<id>.<field>``, sent only where a running reactor takes them.

Principal ``sensor:<id>``, source ``sensor``. ``sensor.<id>`` carries every field of the
reading with its unit and the reading's time (``pipeline.reading_payload``); each
``sensor.<id>.<field>`` carries ``{value, unit, ts}``, which the built-in threshold and window
take by subscription (``subscribe: {sensor.air.pm25: reading}``). The subscription is also
the grant (``reactors.graph.principals_of``).

A reading no reactor takes costs nothing: no intent, no journal row, no disk write. A
reading a reactor takes is journaled like any intent. A refused one (a payload the reactor's
verb does not take, a full mailbox that rejects) is counted per sensor and logged once per
name and reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from edgeagent.errors import IntentError
from edgeagent.reactors.dispatch import Receipt, Submission
from edgeagent.resource import Number
from edgeagent.sensors.model import FieldSpec, Reading
from edgeagent.sensors.pipeline import field_payloads, reading_payload

log = logging.getLogger("edgeagent.sensors")


class Intents(Protocol):
    """What the feed needs of the reactor runtime."""

    def takes(self, name: str) -> bool: ...

    async def submit_many(self, items: Sequence[Submission]) -> list[Receipt | IntentError]: ...


class ReactorFeed:
    """A ``service.ReadingSink`` that sends readings to the reactors that take them."""

    def __init__(self, reactors: Intents) -> None:
        self._reactors = reactors
        self.sent = 0  # intents accepted
        self.untaken = 0  # readings no reactor took (no disk write)
        self.refused = 0
        self._warned: set[tuple[str, str]] = set()

    def counters(self) -> dict[str, Number]:
        return {"intents_sent": self.sent, "readings_untaken": self.untaken,
                "intents_refused": self.refused}  # fmt: skip

    async def reading(self, sensor: str, fields: Mapping[str, FieldSpec], reading: Reading) -> None:
        principal = f"sensor:{sensor}"
        offers = [(f"sensor.{sensor}", reading_payload(reading, fields)),
                  *field_payloads(reading, fields)]  # fmt: skip
        items = [
            Submission(name, payload, principal=principal, source="sensor")
            for name, payload in offers
            if self._reactors.takes(name)
        ]
        if not items:
            self.untaken += 1
            return
        for item, result in zip(items, await self._reactors.submit_many(items), strict=True):
            if isinstance(result, IntentError):
                self.refused += 1
                key = (item.name, result.code)
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("sensor %s: %s refused (%s); further refusals of it are only "
                                "counted", sensor, item.name, result)  # fmt: skip
            else:
                self.sent += 1

"""Readings into the reactors: each reading becomes the intents ``sensor.<id>`` and
``sensor.<id>.<field>``, sent only where a running reactor takes them.

Principal ``sensor:<id>``, source ``sensor``. ``sensor.<id>`` carries every field of the
reading with its unit and the reading's time (``pipeline.reading_payload``); each
``sensor.<id>.<field>`` carries ``{value, unit, ts}``, which the built-in threshold and window
take by subscription (``subscribe: {sensor.air.pm25: reading}``). The subscription is also
the grant (``reactors.graph.principals_of``).

A reading no reactor takes costs nothing: no intent, no journal row, no disk write. A
reading a reactor takes is journaled before the reactor applies it, like any intent, but it
may wait up to ``journal.readings_commit_within`` in the reactor's mailbox so that readings
share one commit (docs/sensors.md says what a power cut can lose). A refused one (a payload
the reactor's verb does not take, a full mailbox that rejects) is counted and logged once per
name and reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from edgeagent.errors import IntentError
from edgeagent.reactors.dispatch import Submission
from edgeagent.resource import Number
from edgeagent.sensors.model import FieldSpec, Reading
from edgeagent.sensors.pipeline import field_payloads, reading_payload

log = logging.getLogger("edgeagent.sensors")


MAX_IN_FLIGHT = 4096  # readings posted but not journaled yet; past it readings are dropped


class Intents(Protocol):
    """What the feed needs of the reactor runtime."""

    def takes(self, name: str) -> bool: ...

    def post_many(
        self,
        items: Sequence[Submission],
        done: Callable[[Submission, IntentError | None], None],
    ) -> None: ...


class ReactorFeed:
    """A ``service.ReadingSink`` that posts readings to the reactors that take them.

    Readings are posted, not awaited: a sensor never waits for a commit, and with
    ``durable_within`` (``journal.readings_commit_within``) the reactor lets readings share
    one commit. At most ``MAX_IN_FLIGHT`` are posted and not yet journaled; past that (a
    reactor that cannot keep up) a reading is dropped and counted, never queued without end.
    """

    def __init__(self, reactors: Intents, *, durable_within: float = 0.0) -> None:
        self._reactors = reactors
        self._durable_within = durable_within
        self.sent = 0  # intents journaled and applied
        self.untaken = 0  # readings no reactor took (no disk write)
        self.refused = 0
        self.busy = 0  # readings dropped: too many in flight
        self.in_flight = 0
        self._warned: set[tuple[str, str]] = set()

    def counters(self) -> dict[str, Number]:
        return {"intents_sent": self.sent, "readings_untaken": self.untaken,
                "intents_refused": self.refused, "readings_dropped_busy": self.busy,
                "intents_in_flight": self.in_flight}  # fmt: skip

    async def reading(self, sensor: str, fields: Mapping[str, FieldSpec], reading: Reading) -> None:
        principal = f"sensor:{sensor}"
        offers = [(f"sensor.{sensor}", reading_payload(reading, fields)),
                  *field_payloads(reading, fields)]  # fmt: skip
        items = [
            Submission(
                name,
                payload,
                principal=principal,
                source="sensor",
                durable_within=self._durable_within,
            )
            for name, payload in offers
            if self._reactors.takes(name)
        ]
        if not items:
            self.untaken += 1
            return
        if self.in_flight + len(items) > MAX_IN_FLIGHT:
            self.busy += 1
            return
        self.in_flight += len(items)
        self._reactors.post_many(items, self._done)

    def _done(self, item: Submission, error: IntentError | None) -> None:
        self.in_flight -= 1
        if error is None:
            self.sent += 1
            return
        self.refused += 1
        key = (item.name, error.code)
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s from %s refused (%s); further refusals of it are only counted",
                        item.name, item.principal, error)  # fmt: skip

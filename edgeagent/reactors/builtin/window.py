"""The ``window`` reactor type: mean, min, max and count over a sliding time window.

Verb: ``reading {value: number}``. Options: ``seconds`` (> 0, default 60), ``max_samples``
(default 1000: bounds the state and the work per reading on a small device), ``emit`` (an
intent name, optional: the aggregate is emitted on every reading).

State: ``{"samples": [[at, value], ...], "count": n, "mean": m, "min": x, "max": y}``
(``mean``/``min``/``max`` are null while empty). A reading at time ``t``
(``intent.context.at``) keeps the samples with ``t - seconds < at <= t`` and then the newest
``max_samples``. Samples "after" ``t`` are dropped too: they only exist when the wall clock
stepped back (NTP fixing a Pi without an RTC), and then they belong to a different time line.
``mean`` is ``math.fsum(values) / count``: exactly rounded, so it does not depend on the order
in which samples were added and a replay reproduces it bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.errors import PayloadError
from edgeagent.reactors.builtin.threshold import READING
from edgeagent.reactors.model import Effect, Emit, Intent, State, check_intent_name, no_such_verb
from edgeagent.reactors.schema import Field, Schema


def aggregate(samples: list[list[Any]]) -> dict[str, Any]:
    """``count``, ``mean``, ``min``, ``max`` of ``[at, value]`` samples (nulls when empty)."""
    values = [value for _, value in samples]
    if not values:
        return {"count": 0, "mean": None, "min": None, "max": None}
    return {
        "count": len(values),
        "mean": math.fsum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def _finish(options: dict[str, Any]) -> dict[str, Any]:
    if options["seconds"] <= 0:
        raise PayloadError("seconds", f"must be > 0, got {options['seconds']}")
    if options["emit"] is not None:
        check_intent_name(options["emit"], "emit")
    return options


class Window:
    """Aggregates the readings of the last ``seconds``."""

    name = "window"
    verbs: Mapping[str, Schema] = MappingProxyType({"reading": READING})
    options = Schema(
        (
            Field("seconds", "number", default=60, doc="window length in seconds (> 0)"),
            Field("max_samples", "int", default=1000, min=1, doc="samples kept at most"),
            Field("emit", "str", doc="intent emitted with the aggregate on every reading"),
        ),
        finish=_finish,
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"samples": [], **aggregate([])}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        return [] if options["emit"] is None else [options["emit"]]

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        if verb != "reading":
            raise no_such_verb(self, verb)
        now = intent.context.at
        start = now - options["seconds"]
        # A new list of new pairs: the state we were given stays untouched.
        samples = [[at, value] for at, value in state["samples"] if start < at <= now]
        samples.append([now, intent.payload["value"]])
        samples = samples[-options["max_samples"] :]
        stats = aggregate(samples)
        effects: list[Effect] = []
        if options["emit"] is not None:
            effects.append(Emit(options["emit"], {**stats, "seconds": options["seconds"]}))
        return {"samples": samples, **stats}, effects


WINDOW = Window()

"""The ``schedule`` reactor type: emits an intent periodically, driven by durable timers.

Options: ``emit`` (required: the intent name), ``payload`` (an object, default ``{}``), and
exactly one of ``every`` (seconds, > 0) or ``at``:

- ``"HH:MM"``: daily at that time, UTC (``"07:30"``);
- ``"*:MM"``: hourly at that minute (``"*:05"``).

Times are UTC because ``handle`` must be pure: a local time zone would need the system's zone
database and its daylight-saving rules at replay time.

Verbs:

- ``start {}``: arms timer ``tick`` for the next due time and marks the schedule running
  (starting a running schedule re-arms it from now). Something must send it once (the
  runtime at deploy, or ``edgeagent send <id>.start``); after that the timer is durable.
- ``tick {}``: emits ``emit`` with ``payload``. A tick from the timer (``context.source ==
  "timer"``) of a running schedule also arms the next one; a tick sent by hand just emits,
  leaving the armed timer alone.
- ``stop {}``: cancels the timer.

The timer's intent is ``.tick``: a leading dot names a verb of this same reactor (see
``edgeagent.reactors.model``). ``every`` keeps its phase: the next due time is the previous
due time plus ``every``, not "now plus every", so firing latency does not drift the schedule;
due times missed while the agent was down are coalesced into the one tick that fires at
start-up.

State: ``{"running": bool, "fired": N, "next": due time or null, "last": at of the last
tick or null}``.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from edgeagent.errors import PayloadError
from edgeagent.reactors.model import (
    CancelTimer,
    Effect,
    Emit,
    Intent,
    SetTimer,
    State,
    check_intent_name,
    no_such_verb,
)
from edgeagent.reactors.schema import Field, Schema

TIMER_KEY = "tick"
_AT = re.compile(r"(\*|[01]?[0-9]|2[0-3]):([0-5][0-9])")
_DAY = 86400.0
_HOUR = 3600.0


def parse_at(spec: str) -> tuple[int | None, int]:
    """``(hour, minute)`` of an ``at`` spec; ``hour`` is None for ``*:MM``. ValueError if bad."""
    match = _AT.fullmatch(spec)
    if match is None:
        raise ValueError(f'expected "HH:MM" (daily, UTC) or "*:MM" (hourly), got {spec!r}')
    hour, minute = match.groups()
    return (None if hour == "*" else int(hour)), int(minute)


def next_due(options: Mapping[str, Any], after: float, anchor: float | None = None) -> float:
    """The first due time strictly after ``after``.

    For ``every``, due times are ``anchor + k * every`` (``anchor`` defaults to ``after``,
    giving ``after + every``); for ``at``, the next matching minute.
    """
    every = options["every"]
    if every is not None:
        base = after if anchor is None else anchor
        steps = max(1, math.floor((after - base) / every) + 1)
        due = base + steps * every
        # Rounding in the division may leave due a hair short of after.
        while due <= after:
            due += every
        return float(due)
    hour, minute = parse_at(options["at"])
    if hour is None:
        due = math.floor(after / _HOUR) * _HOUR + minute * 60
        return due if due > after else due + _HOUR
    due = math.floor(after / _DAY) * _DAY + hour * _HOUR + minute * 60
    return due if due > after else due + _DAY


def _finish(options: dict[str, Any]) -> dict[str, Any]:
    every, at = options["every"], options["at"]
    if (every is None) == (at is None):
        raise PayloadError("every", "give exactly one of 'every' (seconds) or 'at' (\"HH:MM\")")
    if every is not None and every <= 0:
        raise PayloadError("every", f"must be > 0, got {every}")
    if at is not None:
        try:
            parse_at(at)
        except ValueError as exc:
            raise PayloadError("at", str(exc)) from exc
    check_intent_name(options["emit"], "emit")
    return options


class Schedule:
    """Emits ``emit`` every ``every`` seconds or at ``at``, through a durable timer."""

    name = "schedule"
    verbs: Mapping[str, Schema] = MappingProxyType(
        {"start": Schema(), "tick": Schema(), "stop": Schema()}
    )
    options = Schema(
        (
            Field("every", "number", doc="period in seconds (> 0); or give 'at'"),
            Field("at", "str", doc='"HH:MM" daily or "*:MM" hourly, UTC; or give \'every\''),
            Field("emit", "str", required=True, doc="intent name emitted on each tick"),
            Field("payload", "object", default={}, doc="payload of the emitted intent"),
        ),
        finish=_finish,
    )

    def initial_state(self, options: Mapping[str, Any]) -> State:
        return {"running": False, "fired": 0, "next": None, "last": None}

    def emits(self, options: Mapping[str, Any]) -> list[str]:
        # ".tick" is its own timer: paced by the clock, so not a loop `check` reports.
        return [options["emit"], ".tick"]

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]:
        now = intent.context.at
        if verb == "start":
            due = next_due(options, now)
            new_state = {**state, "running": True, "next": due}
            return new_state, [SetTimer(TIMER_KEY, due - now, ".tick")]
        if verb == "stop":
            return {**state, "running": False, "next": None}, [CancelTimer(TIMER_KEY)]
        if verb == "tick":
            new_state = {**state, "fired": state["fired"] + 1, "last": now}
            # A deep copy: whoever carries out the effect must not be able to change the options.
            effects: list[Effect] = [Emit(options["emit"], copy.deepcopy(options["payload"]))]
            if state["running"] and intent.context.source == "timer":
                anchor = state["next"]
                # A timer that fires a little early must not be armed for the same due time.
                after = now if anchor is None else max(now, anchor)
                due = next_due(options, after, anchor)
                new_state["next"] = due
                effects.append(SetTimer(TIMER_KEY, due - now, ".tick"))
            return new_state, effects
        raise no_such_verb(self, verb)


SCHEDULE = Schedule()

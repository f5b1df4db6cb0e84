"""The reactor model: intents, effects and the ``ReactorType`` protocol.

Pure: no I/O. Which type a configured name means is ``registry``'s business.

Theory of operation
-------------------
An ``Intent`` is a named request with a validated payload and a ``Context`` (who sent it,
from where, when it was accepted). A reactor type's ``handle`` takes its current state, the
verb and the intent, and returns the next state and a list of **effects**: plain frozen
dataclasses that say what should happen (emit an intent, arm a timer, publish, write to a
serial device, log). The runtime carries them out; tests assert on the list.

``handle`` must be deterministic: no clock (``intent.context.at`` is the time), no
randomness, no I/O, and it must not change the state it was given. ``State`` is made of
JSON values only (dict with str keys, list, str, int, float, bool, None; no tuples), so that
``json.loads(state_json(s)) == s``: the journal snapshots states as JSON and replays intents
through ``handle``, and both must reproduce the state exactly.

Self-addressed names
--------------------
A reactor does not know its own id (one type, many reactors). An intent name in an effect
that starts with ``.`` (``SetTimer("tick", 60, ".tick")``, ``Emit(".reset")``) names a verb
of the reactor that produced the effect; the runtime turns it into ``<reactor-id>.tick``
with ``resolve_name``. Any other name is used as it is.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeAlias, cast

from edgeagent.errors import IntentError, PayloadError
from edgeagent.reactors.schema import Schema, check_json, did_you_mean

# JSON values. Spelled as Any: a recursive union would force a cast on every read of
# ``state["count"]`` in every handler, and ``state_json`` checks the shape at run time anyway.
State: TypeAlias = Any

LOG_LEVELS = ("debug", "info", "warning", "error")

_INTENT_NAME = re.compile(r"\.?[^\s.]+(?:\.[^\s.]+)*")


@dataclass(frozen=True, slots=True)
class Context:
    """Who sent an intent, from where, and when it was accepted (journaled with it)."""

    principal: str
    trace_id: str  # 16 hex chars: given by the sender or made at the edge
    source: str  # "cli", "mqtt", "peer:<device-id>", "timer", "reactor:<id>"
    at: float  # wall-clock seconds (UTC epoch) when accepted
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Intent:
    """A named request: ``<reactor-id>.<verb>`` or a name some reactor subscribes to."""

    name: str
    payload: Mapping[str, Any]
    context: Context


# Setters of the slots in field order. Replay builds an intent per journaled one, and a frozen
# dataclass's __init__ (object.__setattr__ by name) costs twice as much as these: 0.8 us per
# intent, most of a second over a million. ``intent_of`` uses them.
_CONTEXT_SLOTS = tuple(getattr(Context, f.name).__set__ for f in fields(Context))
_INTENT_SLOTS = tuple(getattr(Intent, f.name).__set__ for f in fields(Intent))


def intent_of(
    name: str,
    payload: Mapping[str, Any],
    *,
    principal: str,
    trace_id: str,
    source: str,
    at: float,
    idempotency_key: str | None,
) -> Intent:
    """``Intent(name, payload, Context(principal, trace_id, source, at, idempotency_key))``,
    without the frozen dataclasses' __init__ (the hot path of replay and of the runtime)."""
    new = object.__new__
    principal_, trace_, source_, at_, key_ = _CONTEXT_SLOTS
    context = new(Context)
    principal_(context, principal)
    trace_(context, trace_id)
    source_(context, source)
    at_(context, at)
    key_(context, idempotency_key)
    name_, payload_, context_ = _INTENT_SLOTS
    intent = new(Intent)
    name_(intent, name)
    payload_(intent, payload)
    context_(intent, context)
    return intent


# -- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Emit:
    """Send another intent, as principal ``reactor:<id>``. A leading ``.`` names own verbs."""

    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_name("Emit.name", self.name)


@dataclass(frozen=True)
class Forward:
    """Send intent ``name`` to member ``to`` (device id or hostname) of a mesh cluster.

    The peer decides, with its own grants for ``peer:<cluster>``, and journals it there. The
    runtime retries while the peer is unreachable (the idempotency key makes that safe) and
    counts the effect as done once the peer has answered.
    """

    to: str
    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    cluster: str | None = None

    def __post_init__(self) -> None:
        _require_name("Forward.to", self.to)
        _require_name("Forward.name", self.name)
        if self.cluster is not None:
            _require_name("Forward.cluster", self.cluster)


@dataclass(frozen=True)
class SetTimer:
    """Arm a durable timer: after ``delay`` seconds, send intent ``name`` with ``payload``.

    ``key`` is per reactor: setting a key that is armed replaces that timer.
    """

    key: str
    delay: float
    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_name("SetTimer.key", self.key)
        _require_name("SetTimer.name", self.name)
        if not math.isfinite(self.delay) or self.delay < 0:
            raise ValueError(f"SetTimer.delay must be a finite number >= 0, got {self.delay!r}")


@dataclass(frozen=True)
class CancelTimer:
    """Disarm the reactor's timer ``key``; nothing happens when none is armed."""

    key: str

    def __post_init__(self) -> None:
        _require_name("CancelTimer.key", self.key)


@dataclass(frozen=True)
class Publish:
    """Publish a JSON value on an MQTT topic (the MQTT issue carries it out)."""

    topic: str
    payload: Any
    retain: bool = False
    qos: int = 1

    def __post_init__(self) -> None:
        _require_name("Publish.topic", self.topic)
        if self.qos not in (0, 1, 2):
            raise ValueError(f"Publish.qos must be 0, 1 or 2, got {self.qos!r}")


@dataclass(frozen=True)
class SerialWrite:
    """Write bytes to a serial device (``edgeagent.serial.ports`` carries it out)."""

    device: str
    data: bytes

    def __post_init__(self) -> None:
        _require_name("SerialWrite.device", self.device)
        if not isinstance(self.data, bytes):
            raise TypeError(f"SerialWrite.data must be bytes, got {type(self.data).__name__}")


@dataclass(frozen=True)
class Log:
    """A line in the agent's log, attributed to the reactor and the intent's trace id."""

    level: str
    message: str

    def __post_init__(self) -> None:
        if self.level not in LOG_LEVELS:
            raise ValueError(f"Log.level must be one of {', '.join(LOG_LEVELS)}")


Effect: TypeAlias = Emit | Forward | SetTimer | CancelTimer | Publish | SerialWrite | Log


class ReactorType(Protocol):
    """What a reactor type provides.

    The runtime validates a reactor's configured options with ``options.validate`` and the
    payload of every intent with ``verbs[verb].validate`` before calling the methods, so they
    see checked values with defaults filled in. ``handle`` is called only with a verb in
    ``verbs``; it returns a new state (never changing the one given) and the effects.

    Optional method, not part of the protocol (a type without it still loads)::

        def emits(self, options: Mapping[str, Any]) -> list[str]: ...

    The intent names the type may ``Emit`` or arm a ``SetTimer`` for, given validated
    options (a leading ``.`` names one of its own verbs, as in effects). ``edgeagent check``
    and ``explain`` draw the wiring from it without running ``handle``; for a type without
    it they report that its emits are unknown. It must be pure and cheap, and it should list
    every name ``handle`` can produce: a name left out is a wire ``check`` cannot see.

    And, for a type that sends ``Forward`` effects::

        def forwards(self, options: Mapping[str, Any]) -> list[tuple[str, str]]: ...

    (intent name, peer) pairs it sends to other devices, which ``explain`` shows; they are
    not checked here (the peer checks them with its own grants).

    And, for a type that writes to serial devices (``SerialWrite``)::

        def devices(self, options: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]: ...

    Device path -> line settings (``{"baudrate": 9600}``) the agent opens it with. Reactors
    sharing a device must agree on them (``merge_devices``; ``check`` reports
    ``device-conflict``).
    """

    @property
    def name(self) -> str: ...

    @property
    def verbs(self) -> Mapping[str, Schema]: ...

    @property
    def options(self) -> Schema: ...

    def initial_state(self, options: Mapping[str, Any]) -> State: ...

    def handle(
        self, state: State, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[State, list[Effect]]: ...


# -- names, JSON ---------------------------------------------------------------------------------


def resolve_name(name: str, reactor_id: str) -> str:
    """``.tick`` from reactor ``s1`` is ``s1.tick``; any other name stays as it is."""
    return f"{reactor_id}{name}" if name.startswith(".") else name


def check_intent_name(value: str, field: str) -> str:
    """``value`` if it can name an intent (``a.b``, or ``.verb`` for the reactor's own verb).

    For options that name intents to emit; ``PayloadError`` on ``field`` otherwise.
    """
    if not _INTENT_NAME.fullmatch(value):
        raise PayloadError(
            field, f"not an intent name: {value!r} (dot-separated parts without spaces)"
        )
    return value


def no_such_verb(rtype: ReactorType, verb: str) -> IntentError:
    """The error a ``handle`` raises for a verb it does not take (the router checks first)."""
    known = ", ".join(rtype.verbs)
    return IntentError(
        f"reactor type {rtype.name!r} has no verb {verb!r}{did_you_mean(verb, list(rtype.verbs))}"
        f"; verbs: {known}"
    )


def state_json(state: State) -> str:
    """Canonical JSON (sorted keys, no spaces): for snapshots and comparing states.

    Raises ``ValueError`` naming the path of anything that is not a JSON value
    (``state.samples.0: expected a JSON value, got tuple``): a bug in the reactor type.
    """
    return json.dumps(
        _json_value(state, "state"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def effect_to_json(effect: Effect) -> dict[str, Any]:
    """A JSON object for the journal (timers) and ``explain``; ``effect_from_json`` reverses it.

    Serial data that is UTF-8 text is kept readable as ``data``; other bytes go in
    ``data_b64``.
    """
    if isinstance(effect, Emit):
        return {"type": "emit", "name": effect.name, "payload": _plain(effect.payload)}
    if isinstance(effect, Forward):
        return {
            "type": "forward",
            "to": effect.to,
            "name": effect.name,
            "payload": _plain(effect.payload),
            "cluster": effect.cluster,
        }
    if isinstance(effect, SetTimer):
        return {
            "type": "set_timer",
            "key": effect.key,
            "delay": effect.delay,
            "name": effect.name,
            "payload": _plain(effect.payload),
        }
    if isinstance(effect, CancelTimer):
        return {"type": "cancel_timer", "key": effect.key}
    if isinstance(effect, Publish):
        return {
            "type": "publish",
            "topic": effect.topic,
            "payload": _json_value(effect.payload, "payload"),
            "retain": effect.retain,
            "qos": effect.qos,
        }
    if isinstance(effect, SerialWrite):
        try:
            return {"type": "serial_write", "device": effect.device, "data": effect.data.decode()}
        except UnicodeDecodeError:
            encoded = base64.b64encode(effect.data).decode("ascii")
            return {"type": "serial_write", "device": effect.device, "data_b64": encoded}
    if isinstance(effect, Log):
        return {"type": "log", "level": effect.level, "message": effect.message}
    raise TypeError(f"not an effect: {effect!r}")


def effect_from_json(data: Mapping[str, Any]) -> Effect:
    """The effect ``effect_to_json`` wrote. ``ValueError`` says what is wrong with ``data``."""
    reader = _Fields(data)
    kind = reader.get("type", str)
    try:
        if kind == "emit":
            effect: Effect = Emit(reader.get("name", str), reader.get("payload", dict))
        elif kind == "forward":
            effect = Forward(
                reader.get("to", str),
                reader.get("name", str),
                reader.get("payload", dict),
                reader.get("cluster", str | None),
            )
        elif kind == "set_timer":
            effect = SetTimer(
                reader.get("key", str),
                float(reader.get("delay", int | float)),
                reader.get("name", str),
                reader.get("payload", dict),
            )
        elif kind == "cancel_timer":
            effect = CancelTimer(reader.get("key", str))
        elif kind == "publish":
            effect = Publish(
                reader.get("topic", str),
                reader.get("payload", object),
                reader.get("retain", bool),
                reader.get("qos", int),
            )
        elif kind == "serial_write":
            if "data_b64" in data:
                raw = base64.b64decode(reader.get("data_b64", str), validate=True)
            else:
                raw = reader.get("data", str).encode()
            effect = SerialWrite(reader.get("device", str), raw)
        elif kind == "log":
            effect = Log(reader.get("level", str), reader.get("message", str))
        else:
            raise ValueError(f"unknown effect type {kind!r}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"effect {dict(data)!r}: {exc}") from exc
    reader.check_all_read()
    return effect


# -- devices -------------------------------------------------------------------------------------


def merge_devices(
    claims: Iterable[tuple[str, Mapping[str, Mapping[str, Any]]]],
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """Line settings per device from (reactor id, ``devices(options)``) in config order.

    Returns the settings (the first reactor's for each device) and the conflicts as
    (reactor id, message) for each later reactor that wants other settings.
    """
    settings: dict[str, dict[str, Any]] = {}
    first: dict[str, str] = {}
    conflicts: list[tuple[str, str]] = []
    for reactor, devices in claims:
        for device, wanted in devices.items():
            had = settings.setdefault(device, dict(wanted))
            owner = first.setdefault(device, reactor)
            if had != dict(wanted):
                kind, _, name = (
                    owner.rpartition(":") if owner.startswith("sensor:") else ("reactor", "", owner)
                )
                differs = ", ".join(
                    f"{key} {wanted.get(key)!r} ({kind} {name!r}: {had.get(key)!r})"
                    for key in sorted(set(had) | set(wanted))
                    if had.get(key) != wanted.get(key)
                )
                conflicts.append(
                    (reactor, f"{device} is opened with other settings here: {differs}; "
                              "give every reactor on a device the same line settings")
                )  # fmt: skip
    return settings, conflicts


# -- private helpers -----------------------------------------------------------------------------


def _require_name(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def _plain(payload: Mapping[str, Any]) -> dict[str, Any]:
    # A plain dict whatever Mapping the reactor type used for the payload.
    return cast(dict[str, Any], _json_value(dict(payload), "payload"))


def _json_value(value: Any, path: str) -> Any:
    # ValueError, not PayloadError: a state or effect that is not JSON is a bug in the reactor
    # type, not a sender's bad payload, and must not be reported as "payload.x: ...".
    try:
        return check_json(value)
    except PayloadError as exc:
        raise ValueError(
            f"{path}.{exc.field}: {exc.reason}" if exc.field else f"{path}: {exc.reason}"
        ) from exc


class _Fields:
    """Reads typed keys of an effect's JSON and notices keys nobody read (corrupt data)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"an effect is a JSON object, got {type(data).__name__}")
        self._data = data
        self._read = {"type"}

    def get(self, key: str, kind: Any) -> Any:
        self._read.add(key)
        if key not in self._data:
            raise ValueError(f"effect {dict(self._data)!r} has no {key!r}")
        value = self._data[key]
        if kind is not object and (
            not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        ):
            raise ValueError(f"effect key {key!r} has the wrong type: {value!r}")
        return value

    def check_all_read(self) -> None:
        unread = sorted(set(self._data) - self._read)
        if unread:
            raise ValueError(f"effect {dict(self._data)!r} has unknown keys: {', '.join(unread)}")

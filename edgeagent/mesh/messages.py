"""Mesh messages and their compact JSON body encoding (pure; see docs/mesh.md).

Theory of operation
-------------------
A frame body (``edgeagent.mesh.auth`` seals it) carries one or more messages, so a probe and
the gossip piggybacked on it travel in one datagram. The body is a JSON array; each message is
a positional array ``[kind, field, field, ...]`` in the order of the dataclass fields, with the
kind as the small integer of ``MessageKind``. Positional arrays keep a ``Ping`` with three
piggybacked ``MemberUpdate`` s around 300 bytes, and decoding checks the arity, so a missing or
extra field is an error rather than a silent default.

Encodings of field types: ``bytes`` (nonces) as lowercase hex, an ``Address`` as ``[ip, port]``,
``MemberState`` as its text value, tuples as arrays. ``Meta.data`` is a JSON object;
``Request.body`` / ``Response.body`` any JSON value.

``decode`` never trusts its input: a body over ``MAX_BODY`` bytes, invalid UTF-8 or JSON
(including NaN/Infinity and nesting deep enough to exhaust the parser), an unknown kind, a
wrong arity, a field of the wrong type (``true`` is not an integer here), an integer out of
range or a string/list over its bound all raise ``ProtocolError`` naming the message index and
the field. ``encode`` does not check bounds: the core builds its own messages within them, and
``encoded_size`` / ``body_size`` let it cut gossip to fit ``MAX_DATAGRAM_BODY``.

Decisions where docs/mesh.md is vague (documented here, followed by the core):

- ``Sync`` has a ``reply`` flag: ``True`` asks the receiver to answer with its own full state
  (a periodic push-pull); a ``Join`` always earns that answer, so the chunks that follow a
  ``Join`` carry ``reply=False`` and answers never ask for answers (no ping-pong).
- ``MemberUpdate`` has one field beyond the contract's list, ``by``: the device id that
  asserted a ``suspect``/``dead`` state (empty otherwise). Relays keep it, so the core can count
  *independent* suspicions (Lifeguard), as memberlist's ``Suspect.From`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import Enum, IntEnum
from typing import Any

from edgeagent.errors import ProtocolError

Address = tuple[str, int]

MAX_BODY = 64 * 1024  # a whole UDP payload cannot be larger; anything bigger is not ours
MAX_DATAGRAM_BODY = 1200  # the core keeps bodies this small: frame overhead + IP/UDP < 1400
MAX_META_BODY = 1000  # what Meta.data may take encoded (enforced by the service layer)
MAX_MESSAGES = 256  # messages in one body
MAX_LIST = 256  # members in a Sync chunk
MAX_ADDRESSES = 16  # addresses of one member
MAX_ID = 128  # device ids, hostnames' cousins
MAX_HOSTNAME = 255  # RFC 1035 §2.3.4 name length
MAX_TEXT = 255  # method names, IP text
MAX_NONCE = 64
MAX_INT = 2**63 - 1


class MessageKind(IntEnum):
    """Wire code of each message (the first element of its array)."""

    PING = 1
    PING_ACK = 2
    PING_REQ = 3
    INDIRECT_ACK = 4
    JOIN = 5
    SYNC = 6
    LEAVE = 7
    MEMBER_UPDATE = 8
    META_REQUEST = 9
    META = 10
    REQUEST = 11
    RESPONSE = 12
    CHALLENGE = 13
    CHALLENGE_RESPONSE = 14


class MemberState(Enum):
    """A member's state as gossiped (and as the membership table holds it)."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe; ``target_id`` lets a device reached at a recycled address say "not me"."""

    seq: int
    target_id: str


@dataclass(frozen=True, slots=True)
class PingAck:
    seq: int


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe ``target_id`` at ``target_addr`` and relay the answer."""

    seq: int
    target_id: str
    target_addr: Address


@dataclass(frozen=True, slots=True)
class IndirectAck:
    """The relayed answer to a ``PingReq``: ``seq`` is the requester's."""

    seq: int
    target_id: str


@dataclass(frozen=True, slots=True)
class Join:
    meta_version: int


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """What one member's state is (gossip, and the entries of a ``Sync``)."""

    device_id: str
    state: MemberState
    incarnation: int
    addresses: tuple[str, ...]
    port: int
    meta_version: int
    hostname: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class Sync:
    """A chunk of the sender's full state (push-pull); ``reply`` asks for the receiver's."""

    members: tuple[MemberUpdate, ...]
    reply: bool = False


@dataclass(frozen=True, slots=True)
class Leave:
    incarnation: int


@dataclass(frozen=True, slots=True)
class MetaRequest:
    device_id: str


@dataclass(frozen=True, slots=True)
class Meta:
    device_id: str
    version: int
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    method: str
    body: Any


@dataclass(frozen=True, slots=True)
class Response:
    request_id: int
    ok: bool
    body: Any


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class ChallengeResponse:
    nonce: bytes


Message = (
    Ping
    | PingAck
    | PingReq
    | IndirectAck
    | Join
    | Sync
    | Leave
    | MemberUpdate
    | MetaRequest
    | Meta
    | Request
    | Response
    | Challenge
    | ChallengeResponse
)

KIND_OF: dict[type[Any], MessageKind] = {
    Ping: MessageKind.PING,
    PingAck: MessageKind.PING_ACK,
    PingReq: MessageKind.PING_REQ,
    IndirectAck: MessageKind.INDIRECT_ACK,
    Join: MessageKind.JOIN,
    Sync: MessageKind.SYNC,
    Leave: MessageKind.LEAVE,
    MemberUpdate: MessageKind.MEMBER_UPDATE,
    MetaRequest: MessageKind.META_REQUEST,
    Meta: MessageKind.META,
    Request: MessageKind.REQUEST,
    Response: MessageKind.RESPONSE,
    Challenge: MessageKind.CHALLENGE,
    ChallengeResponse: MessageKind.CHALLENGE_RESPONSE,
}


def kind_of(message: Message) -> MessageKind:
    return KIND_OF[type(message)]


def encode(messages: Sequence[Message]) -> bytes:
    """One body carrying ``messages`` in order (compact JSON, UTF-8)."""
    return _dumps([_to_wire(message) for message in messages])


def decode(body: bytes) -> list[Message]:
    """The messages of one body; raises ``ProtocolError`` saying what is wrong."""
    if len(body) > MAX_BODY:
        raise ProtocolError(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    try:
        raw = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"body is not JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise ProtocolError("body is not a JSON array of messages")
    if len(raw) > MAX_MESSAGES:
        raise ProtocolError(f"body holds {len(raw)} messages, more than {MAX_MESSAGES}")
    return [_from_wire(item, f"message {index}") for index, item in enumerate(raw)]


def encoded_size(message: Message) -> int:
    """Bytes ``message`` takes inside a body (without the separating comma)."""
    return len(_dumps(_to_wire(message)))


def body_size(messages: Sequence[Message]) -> int:
    """``len(encode(messages))`` without building the body twice in callers that add up sizes."""
    if not messages:
        return 2
    return 2 + sum(encoded_size(m) for m in messages) + len(messages) - 1


# --------------------------------------------------------------------------------------------
# Private helpers


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" parses as inf, which encode could not write back
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def _update_to_wire(update: MemberUpdate) -> list[Any]:
    return [
        update.device_id,
        update.state.value,
        update.incarnation,
        list(update.addresses),
        update.port,
        update.meta_version,
        update.hostname,
        update.by,
    ]


def _to_wire(message: Message) -> list[Any]:
    kind = int(kind_of(message))
    match message:
        case MemberUpdate():
            return [kind, *_update_to_wire(message)]
        case Sync():
            return [kind, [_update_to_wire(u) for u in message.members], message.reply]
        case PingReq():
            addr = message.target_addr
            return [kind, message.seq, message.target_id, [addr[0], addr[1]]]
        case Challenge() | ChallengeResponse():
            return [kind, message.nonce.hex()]
        case Meta():
            return [kind, message.device_id, message.version, dict(message.data)]
        case _:
            return [kind, *(getattr(message, f.name) for f in fields(message))]


# Field checkers: each takes the raw value and a path for the error message.
Check = Callable[[Any, str], Any]


def _int(low: int = 0, high: int = MAX_INT) -> Check:
    def check(value: Any, where: str) -> int:
        if type(value) is not int:
            raise ProtocolError(f"{where}: expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ProtocolError(f"{where}: {value} is outside {low}..{high}")
        return value

    return check


def _text(limit: int, *, empty: bool = False) -> Check:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: expected a string, got {type(value).__name__}")
        if len(value) > limit:
            raise ProtocolError(f"{where}: string of {len(value)} characters exceeds {limit}")
        if not value and not empty:
            raise ProtocolError(f"{where}: empty string")
        return value

    return check


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: expected a boolean, got {type(value).__name__}")
    return value


def _any(value: Any, where: str) -> Any:
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _nonce(value: Any, where: str) -> bytes:
    text = _text(2 * MAX_NONCE)(value, where)
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ProtocolError(f"{where}: not hex") from exc


def _array(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: expected an array, got {type(value).__name__}")
    if len(value) > limit:
        raise ProtocolError(f"{where}: {len(value)} items exceed {limit}")
    return value


def _state(value: Any, where: str) -> MemberState:
    try:
        return MemberState(value)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"{where}: unknown member state {value!r}") from exc


def _address(value: Any, where: str) -> Address:
    items = _array(value, where, 2)
    if len(items) != 2:
        raise ProtocolError(f"{where}: an address is [ip, port]")
    return (_text(MAX_TEXT)(items[0], f"{where}[0]"), _int(0, 65535)(items[1], f"{where}[1]"))


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    items = _array(value, where, MAX_ADDRESSES)
    return tuple(_text(MAX_TEXT)(item, f"{where}[{i}]") for i, item in enumerate(items))


_ID = _text(MAX_ID)
_SEQ = _int()

_UPDATE_FIELDS: tuple[tuple[str, Check], ...] = (
    ("device_id", _ID),
    ("state", _state),
    ("incarnation", _int()),
    ("addresses", _addresses),
    ("port", _int(0, 65535)),
    ("meta_version", _int()),
    ("hostname", _text(MAX_HOSTNAME, empty=True)),
    ("by", _text(MAX_ID, empty=True)),
)


def _update(items: list[Any], where: str) -> MemberUpdate:
    if len(items) != len(_UPDATE_FIELDS):
        raise ProtocolError(f"{where}: member update needs {len(_UPDATE_FIELDS)} fields")
    values = [
        check(v, f"{where}.{name}") for (name, check), v in zip(_UPDATE_FIELDS, items, strict=True)
    ]
    return MemberUpdate(*values)


def _sync_members(value: Any, where: str) -> tuple[MemberUpdate, ...]:
    items = _array(value, where, MAX_LIST)
    return tuple(
        _update(_array(item, f"{where}[{i}]", 16), f"{where}[{i}]") for i, item in enumerate(items)
    )


_FIELDS: dict[MessageKind, tuple[type[Any], tuple[tuple[str, Check], ...]]] = {
    MessageKind.PING: (Ping, (("seq", _SEQ), ("target_id", _ID))),
    MessageKind.PING_ACK: (PingAck, (("seq", _SEQ),)),
    MessageKind.PING_REQ: (
        PingReq,
        (("seq", _SEQ), ("target_id", _ID), ("target_addr", _address)),
    ),
    MessageKind.INDIRECT_ACK: (IndirectAck, (("seq", _SEQ), ("target_id", _ID))),
    MessageKind.JOIN: (Join, (("meta_version", _int()),)),
    MessageKind.SYNC: (Sync, (("members", _sync_members), ("reply", _bool))),
    MessageKind.LEAVE: (Leave, (("incarnation", _int()),)),
    MessageKind.MEMBER_UPDATE: (MemberUpdate, _UPDATE_FIELDS),
    MessageKind.META_REQUEST: (MetaRequest, (("device_id", _ID),)),
    MessageKind.META: (Meta, (("device_id", _ID), ("version", _int()), ("data", _object))),
    MessageKind.REQUEST: (
        Request,
        (("request_id", _int()), ("method", _text(MAX_TEXT)), ("body", _any)),
    ),
    MessageKind.RESPONSE: (Response, (("request_id", _int()), ("ok", _bool), ("body", _any))),
    MessageKind.CHALLENGE: (Challenge, (("nonce", _nonce),)),
    MessageKind.CHALLENGE_RESPONSE: (ChallengeResponse, (("nonce", _nonce),)),
}


def _from_wire(item: Any, where: str) -> Message:
    items = _array(item, where, 16)
    if not items:
        raise ProtocolError(f"{where}: empty message")
    code = items[0]
    if type(code) is not int or code not in MessageKind._value2member_map_:
        raise ProtocolError(f"{where}: unknown message kind {code!r}")
    kind = MessageKind(code)
    cls, spec = _FIELDS[kind]
    if len(items) - 1 != len(spec):
        raise ProtocolError(f"{where}: {kind.name} needs {len(spec)} fields, got {len(items) - 1}")
    where = f"{where} ({kind.name})"
    values = [check(v, f"{where}.{name}") for (name, check), v in zip(spec, items[1:], strict=True)]
    message: Message = cls(*values)
    return message

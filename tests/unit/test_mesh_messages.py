"""Mesh message bodies: round trips, sizes and malformed input (never a crash, always ProtocolError)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.errors import ProtocolError
from edgeagent.mesh.messages import (
    KIND_OF,
    MAX_BODY,
    MAX_DATAGRAM_BODY,
    Challenge,
    ChallengeResponse,
    IndirectAck,
    Join,
    Leave,
    MemberState,
    MemberUpdate,
    Message,
    MessageKind,
    Meta,
    MetaRequest,
    Ping,
    PingAck,
    PingReq,
    Request,
    Response,
    Sync,
    body_size,
    decode,
    encode,
    encoded_size,
)

ids = st.text(min_size=1, max_size=40)
seqs = st.integers(min_value=0, max_value=2**63 - 1)
ports = st.integers(min_value=0, max_value=65535)
ips = st.text(min_size=1, max_size=45)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
updates = st.builds(
    MemberUpdate,
    device_id=ids,
    state=st.sampled_from(MemberState),
    incarnation=seqs,
    addresses=st.lists(ips, max_size=4).map(tuple),
    port=ports,
    meta_version=seqs,
    hostname=st.text(max_size=60),
    by=st.text(max_size=40),
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, seqs, ids),
    st.builds(PingAck, seqs),
    st.builds(PingReq, seqs, ids, st.tuples(ips, ports)),
    st.builds(IndirectAck, seqs, ids),
    st.builds(Join, seqs),
    st.builds(Sync, st.lists(updates, max_size=5).map(tuple), st.booleans()),
    st.builds(Leave, seqs),
    updates,
    st.builds(MetaRequest, ids),
    st.builds(Meta, ids, seqs, st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
    st.builds(Request, seqs, ids, json_values),
    st.builds(Response, seqs, st.booleans(), json_values),
    st.builds(Challenge, st.binary(min_size=1, max_size=32)),
    st.builds(ChallengeResponse, st.binary(min_size=1, max_size=32)),
)


@settings(max_examples=300)
@given(st.lists(messages, max_size=6))
def test_round_trip_and_sizes(batch: list[Message]) -> None:
    body = encode(batch)
    assert decode(body) == batch
    assert body_size(batch) == len(body)
    for message in batch:
        assert encoded_size(message) == len(encode([message])) - 2


def test_every_kind_has_a_class() -> None:
    assert set(KIND_OF.values()) == set(MessageKind)


def test_ping_with_three_updates_is_small() -> None:
    update = MemberUpdate(
        "a1b2c3d4e5f60718", MemberState.SUSPECT, 12, ("192.168.1.23",), 4370, 3, "pi-kitchen", "x"
    )
    body = encode([Ping(41, "a1b2c3d4e5f60718"), update, update, update])
    assert len(body) < 300
    assert len(body) < MAX_DATAGRAM_BODY


def raw(*items: Any) -> bytes:
    return json.dumps(list(items)).encode()


UPDATE = ["id", "alive", 0, ["10.0.0.1"], 4370, 0, "h", ""]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"{}", "array of messages"),
        (b"[1]", "expected an array"),
        (raw([]), "empty message"),
        (raw([99, 1]), "unknown message kind"),
        (raw([True, 1]), "unknown message kind"),
        (raw([1, 5]), "PING needs 2 fields"),
        (raw([1, 5, "a", "b"]), "PING needs 2 fields"),
        (raw([1, True, "a"]), "expected an integer"),
        (raw([1, -1, "a"]), "outside"),
        (raw([1, 2**64, "a"]), "outside"),
        (raw([1, 1.5, "a"]), "expected an integer"),
        (raw([1, 1, ""]), "empty string"),
        (raw([1, 1, "x" * 200]), "exceeds"),
        (raw([2, "1"]), "expected an integer"),
        (raw([3, 1, "t", ["1.2.3.4"]]), "an address is"),
        (raw([3, 1, "t", ["1.2.3.4", 70000]]), "outside"),
        (raw([6, [UPDATE], 1]), "expected a boolean"),
        (raw([6, [UPDATE] * 300, False]), "exceed"),
        (raw([6, [UPDATE[:-1]], False]), "member update needs"),
        (raw([8, *UPDATE[:1], "zombie", *UPDATE[2:]]), "unknown member state"),
        (raw([8, *UPDATE[:3], ["a"] * 17, *UPDATE[4:]]), "exceed"),
        (raw([10, "id", 1, []]), "JSON object"),
        (raw([12, 1, "yes", None]), "expected a boolean"),
        (raw([13, "zz"]), "not hex"),
        (raw(*([2, 1] for _ in range(300))), "more than"),
        (b'[[11,1,"m",NaN]]', "not JSON"),
        (b'[[11,1,"m",1e999]]', "not JSON"),
        (b"[" * 100_000, "exceeds"),
        (b'[[11,1,"m",' + b"[" * 50_000 + b"]" * 50_000 + b"]]", "exceeds"),
        (b'[[11,1,"m",' + b"[" * 30_000 + b"]" * 30_000 + b"]]", "not JSON"),
    ],
)
def test_malformed_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode(body)


def test_body_over_the_limit() -> None:
    body = encode([Request(1, "m", "x" * MAX_BODY)])
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(body)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(body)


@settings(max_examples=500)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(min_value=-2, max_value=16),
                st.text(max_size=4),
                st.booleans(),
                st.none(),
                st.lists(st.one_of(st.integers(-1, 5), st.text(max_size=3)), max_size=8),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            ),
            max_size=9,
        ),
        max_size=3,
    )
)
def test_arbitrary_json_shapes_never_crash(items: list[Any]) -> None:
    try:
        decoded = decode(json.dumps(items).encode())
    except ProtocolError:
        return
    assert decode(encode(decoded)) == decoded

"""Mesh frame authentication: HKDF, keys, sealing/opening, replay guard, challenges."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.errors import AuthError, InvalidKeyError, ProtocolError
from edgeagent.mesh.auth import (
    MAX_FRAME_SIZE,
    NONCE_SIZE,
    ChallengeBook,
    ClusterCodec,
    DropStats,
    OpenedFrame,
    ReplayGuard,
    Verdict,
    generate_key,
    hkdf_sha256,
    parse_key,
    peek_cluster_tag,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def codec(
    self_id: str = "node-a", *, cluster: str = "greenhouse", key: bytes = KEY, epoch: int = 7
) -> ClusterCodec:
    return ClusterCodec(cluster, key, self_id=self_id, epoch=epoch)


def frame(sender: str = "a", epoch: int = 1, seq: int = 1) -> OpenedFrame:
    return OpenedFrame(sender, epoch, seq, 0, b"")


# -- HKDF and keys ------------------------------------------------------------------------------
def test_hkdf_matches_rfc5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_matches_rfc5869_test_case_3_empty_salt_and_info() -> None:
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), length=42)
    assert okm == bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_generated_keys_parse_and_differ() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(parse_key(first)) == 32


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(KEY).decode(),
        base64.b64encode(KEY).decode().rstrip("="),
        base64.urlsafe_b64encode(KEY).decode(),
        "  " + base64.b64encode(KEY).decode() + "\n",
    ],
)
def test_parse_key_accepts_padding_optional_and_urlsafe(text: str) -> None:
    assert parse_key(text) == KEY


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("not base64 at all!", "not base64"),
        ("ab$d", "not base64"),
        ("a", "not base64"),
        (base64.b64encode(b"short").decode(), "wrong length: 5 bytes, expected 32"),
        (base64.b64encode(bytes(33)).decode(), "wrong length: 33 bytes"),
    ],
)
def test_parse_key_errors_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidKeyError, match=problem):
        parse_key(text)


def test_invalid_key_is_a_value_error_for_config_validation() -> None:
    with pytest.raises(ValueError, match="keygen"):
        parse_key("xx")


# -- frames -------------------------------------------------------------------------------------
def test_round_trip() -> None:
    sender, receiver = codec("node-a"), codec("node-b")
    data = sender.seal(3, b'{"hello": 1}')
    opened = receiver.open(data)
    assert opened == OpenedFrame("node-a", 7, 1, 3, b'{"hello": 1}', own=False)
    assert receiver.open(sender.seal(3, b"")).seq == 2


def test_layout_follows_the_contract() -> None:
    data = codec("é").seal(9, b"body")
    assert data[:4] == b"EAM1"
    assert data[12] == 2  # "é" is two UTF-8 bytes
    assert data[13:15] == "é".encode()
    assert int.from_bytes(data[15:23], "big") == 7
    assert int.from_bytes(data[23:31], "big") == 1
    assert data[31] == 9
    assert data[32:-16] == b"body"
    assert len(data) == 32 + 4 + 16


def test_own_frames_are_reported() -> None:
    mine = codec("node-a")
    assert mine.open(mine.seal(0, b"x")).own


@settings(max_examples=300)
@given(data=st.data())
def test_tampering_any_byte_fails(data: st.DataObject) -> None:
    sealed = codec("node-a").seal(1, b'{"m": "ping"}')
    position = data.draw(st.integers(0, len(sealed) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(sealed)
    tampered[position] ^= flip
    with pytest.raises(AuthError) as caught:
        codec("node-b").open(bytes(tampered))
    expected = {range(4): "malformed", range(4, 12): "other_cluster"}
    reason = next((r for span, r in expected.items() if position in span), "bad_tag")
    assert caught.value.reason == reason


def test_truncation_and_extension_fail() -> None:
    sealed = codec().seal(1, b"body")
    receiver = codec("node-b")
    for bad in (sealed[:-1], sealed + b"\0", sealed[:20]):
        with pytest.raises(AuthError):
            receiver.open(bad)


def test_wrong_key_fails_as_other_cluster() -> None:
    sealed = codec(key=OTHER_KEY).seal(1, b"x")
    with pytest.raises(AuthError) as caught:
        codec("node-b").open(sealed)
    assert caught.value.reason == "other_cluster"


def test_other_cluster_with_the_same_key_fails() -> None:
    greenhouse, barn = codec(cluster="greenhouse"), codec("node-b", cluster="barn")
    assert greenhouse.cluster_tag != barn.cluster_tag
    with pytest.raises(AuthError) as caught:
        barn.open(greenhouse.seal(1, b"x"))
    assert caught.value.reason == "other_cluster"


def test_other_cluster_key_fails_on_the_tag_even_with_a_copied_cluster_tag() -> None:
    # An attacker can copy the 8-byte cluster tag off the wire; the frame tag still fails.
    sealed = bytearray(codec(cluster="barn").seal(1, b"x"))
    sealed[4:12] = codec(cluster="greenhouse").cluster_tag
    with pytest.raises(AuthError) as caught:
        codec("node-b", cluster="greenhouse").open(bytes(sealed))
    assert caught.value.reason == "bad_tag"


def test_auth_error_is_a_protocol_error() -> None:
    assert issubclass(AuthError, ProtocolError)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_auth_error(blob: bytes) -> None:
    receiver = codec("node-b")
    for data in (blob, b"EAM1" + blob, b"EAM1" + receiver.cluster_tag + blob):
        with pytest.raises(AuthError):
            receiver.open(data)


def test_oversized_frames_are_refused_both_ways() -> None:
    with pytest.raises(ValueError, match="exceed"):
        codec().seal(0, bytes(MAX_FRAME_SIZE))
    with pytest.raises(AuthError) as caught:
        codec().open(b"EAM1" + bytes(MAX_FRAME_SIZE))
    assert caught.value.reason == "malformed"


def test_constructor_and_seal_validate_their_inputs() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ClusterCodec("c", b"short", self_id="a", epoch=1)
    with pytest.raises(ValueError, match="self_id"):
        ClusterCodec("c", KEY, self_id="x" * 65, epoch=1)
    with pytest.raises(ValueError, match="self_id"):
        ClusterCodec("c", KEY, self_id="", epoch=1)
    with pytest.raises(ValueError, match="kind"):
        codec().seal(256, b"")


def test_prefilter() -> None:
    mine, other = codec(), codec(cluster="barn")
    sealed = mine.seal(0, b"")
    assert peek_cluster_tag(sealed) == mine.cluster_tag
    assert mine.matches(sealed)
    assert not other.matches(sealed)
    assert peek_cluster_tag(b"EAM1short") is None
    assert not mine.matches(b"\0" * 100)


# -- replay guard -------------------------------------------------------------------------------
def verified_guard(sender: str = "a", epoch: int = 1, window: int = 64) -> ReplayGuard:
    guard = ReplayGuard(window=window)
    guard.accept_epoch(sender, epoch)
    return guard


def test_unknown_sender_needs_a_challenge() -> None:
    assert ReplayGuard().check(frame()) is Verdict.NEEDS_CHALLENGE


def test_replay_of_the_same_frame_is_rejected() -> None:
    guard = verified_guard()
    assert guard.check(frame(seq=1)) is Verdict.ACCEPT
    assert guard.check(frame(seq=1)) is Verdict.REPLAY


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    guard = verified_guard()
    assert guard.check(frame(seq=10)) is Verdict.ACCEPT
    assert guard.check(frame(seq=5)) is Verdict.ACCEPT
    assert guard.check(frame(seq=5)) is Verdict.REPLAY
    assert guard.check(frame(seq=9)) is Verdict.ACCEPT
    assert guard.check(frame(seq=11)) is Verdict.ACCEPT
    assert guard.check(frame(seq=10)) is Verdict.REPLAY


def test_too_old_for_the_window_is_rejected() -> None:
    guard = verified_guard(window=64)
    assert guard.check(frame(seq=100)) is Verdict.ACCEPT
    assert guard.check(frame(seq=37)) is Verdict.ACCEPT  # offset 63: last slot of the window
    assert guard.check(frame(seq=36)) is Verdict.REPLAY


def test_a_huge_seq_jump_resets_the_window() -> None:
    guard = verified_guard()
    assert guard.check(frame(seq=3)) is Verdict.ACCEPT
    assert guard.check(frame(seq=2**63)) is Verdict.ACCEPT
    assert guard.check(frame(seq=2**63 - 1)) is Verdict.ACCEPT
    assert guard.check(frame(seq=3)) is Verdict.REPLAY


def test_old_epoch_needs_challenge_then_is_accepted() -> None:
    guard = verified_guard(epoch=5)
    assert guard.check(frame(epoch=2, seq=1)) is Verdict.NEEDS_CHALLENGE
    guard.accept_epoch("a", 2, seq=4)  # the frame that answered the challenge
    assert guard.known_epoch("a") == 2
    assert guard.check(frame(epoch=2, seq=4)) is Verdict.REPLAY
    assert guard.check(frame(epoch=2, seq=5)) is Verdict.ACCEPT
    assert guard.check(frame(epoch=5, seq=9)) is Verdict.NEEDS_CHALLENGE


def test_newer_epoch_needs_a_challenge_too() -> None:
    # After a wipe the epoch restarts low: recordings of the old run look "newer".
    guard = verified_guard(epoch=1)
    assert guard.check(frame(epoch=30)) is Verdict.NEEDS_CHALLENGE


def test_reaccepting_the_same_epoch_keeps_its_window() -> None:
    guard = verified_guard()
    assert guard.check(frame(seq=3)) is Verdict.ACCEPT
    guard.accept_epoch("a", 1, seq=4)
    assert guard.check(frame(seq=3)) is Verdict.REPLAY


def test_trust_on_first_use_mode_accepts_newer_epochs() -> None:
    guard = ReplayGuard(strict=False)
    assert guard.check(frame(epoch=3, seq=1)) is Verdict.ACCEPT
    assert guard.check(frame(epoch=3, seq=1)) is Verdict.REPLAY
    assert guard.check(frame(epoch=4, seq=1)) is Verdict.ACCEPT
    assert guard.check(frame(epoch=3, seq=2)) is Verdict.NEEDS_CHALLENGE


def test_guard_is_bounded_and_evicts_the_least_recently_seen() -> None:
    guard = ReplayGuard(max_senders=2)
    guard.accept_epoch("a", 1)
    guard.accept_epoch("b", 1)
    assert guard.check(frame("a", seq=1)) is Verdict.ACCEPT  # "a" is now the most recent
    guard.accept_epoch("c", 1)
    assert len(guard) == 2
    assert guard.known_epoch("b") is None
    assert guard.known_epoch("a") == 1


@given(st.lists(st.integers(1, 300), max_size=200))
def test_each_seq_is_accepted_at_most_once(seqs: list[int]) -> None:
    guard = verified_guard()
    accepted = [s for s in seqs if guard.check(frame(seq=s)) is Verdict.ACCEPT]
    assert len(accepted) == len(set(accepted))


# -- challenges ---------------------------------------------------------------------------------
def test_nonce_is_single_use() -> None:
    book = ChallengeBook()
    nonce = book.issue(0.0, "a")
    assert nonce is not None
    assert len(nonce) == NONCE_SIZE
    assert book.verify(0.1, "a", nonce)
    assert not book.verify(0.2, "a", nonce)


def test_nonce_is_bound_to_its_sender() -> None:
    book = ChallengeBook()
    nonce = book.issue(0.0, "a")
    assert nonce is not None
    assert not book.verify(0.1, "b", nonce)
    assert not book.verify(0.1, "a", b"\0" * NONCE_SIZE)  # a wrong answer does not cancel it
    assert book.verify(0.1, "a", nonce)


def test_nonce_expires() -> None:
    book = ChallengeBook(ttl=5.0)
    nonce = book.issue(0.0, "a")
    assert nonce is not None
    assert not book.verify(5.0, "a", nonce)
    assert len(book) == 0


def test_one_outstanding_challenge_per_sender_with_rate_limited_resends() -> None:
    book = ChallengeBook(ttl=5.0, min_interval=0.5)
    first = book.issue(0.0, "a")
    assert book.issue(0.1, "a") is None
    assert book.issue(0.6, "a") == first  # a resend of the same nonce
    assert book.issue(1.5, "a") is None  # resends back off: 0.5 s, then 1 s, then 2 s
    assert book.issue(1.7, "a") == first
    assert book.issue(3.6, "a") is None
    assert book.issue(3.8, "a") == first
    fresh = book.issue(5.0, "a")
    assert fresh is not None
    assert fresh != first
    assert not book.verify(5.1, "a", first or b"")


def test_pending_challenges_are_bounded() -> None:
    book = ChallengeBook(max_pending=2)
    oldest = book.issue(0.0, "a")
    book.issue(0.0, "b")
    book.issue(0.0, "c")
    assert len(book) == 2
    assert not book.verify(0.1, "a", oldest or b"")


def test_expire_drops_old_nonces() -> None:
    book = ChallengeBook(ttl=1.0)
    book.issue(0.0, "a")
    book.issue(0.5, "b")
    book.expire(1.2)
    assert len(book) == 1


def test_answers_are_rate_limited_per_sender() -> None:
    book = ChallengeBook(min_interval=0.25)
    assert book.may_answer(0.0, "a")
    assert not book.may_answer(0.1, "a")
    assert book.may_answer(0.1, "b")
    assert book.may_answer(0.3, "a")


def test_full_challenge_dance_with_codecs() -> None:
    """A restarts with a wiped state dir (low epoch); B challenges it and accepts its epoch."""
    a_old, a_new, b = codec("a", epoch=9), codec("a", epoch=1), codec("b", epoch=4)
    guard, book = ReplayGuard(), ChallengeBook()
    guard.accept_epoch("a", 9)
    recorded = a_old.seal(0, b"old")
    assert guard.check(b.open(recorded)) is Verdict.ACCEPT

    hello = b.open(a_new.seal(0, b"hello"))
    assert guard.check(hello) is Verdict.NEEDS_CHALLENGE
    nonce = book.issue(0.0, hello.sender)
    assert nonce is not None
    # A echoes the nonce in a fresh frame (the body encoding belongs to messages.py).
    answer = b.open(a_new.seal(0, nonce))
    assert book.verify(0.01, answer.sender, answer.body)
    guard.accept_epoch(answer.sender, answer.epoch, answer.seq)
    assert guard.check(b.open(a_new.seal(0, b"now"))) is Verdict.ACCEPT
    # The answering frame, and recordings of the old run, are not accepted again.
    assert guard.check(answer) is Verdict.REPLAY
    assert guard.check(b.open(recorded)) is Verdict.NEEDS_CHALLENGE
    assert not book.verify(0.02, "a", nonce)


# -- counters -----------------------------------------------------------------------------------
def test_drop_stats_count_by_reason() -> None:
    stats = DropStats()
    for reason in ("bad_tag", "bad_tag", "other_cluster", "replay", "surprise"):
        stats.count(reason)
    counts = stats.as_dict()
    assert counts["bad_tag"] == 2
    assert counts["other_cluster"] == 1
    assert counts["replay"] == 1
    assert counts["malformed"] == 0
    assert counts["surprise"] == 1


class _Node:
    """The service's receive rule from docs/mesh.md, with bodies b"C"+nonce, b"R"+nonce, b"D"."""

    def __init__(self, name: str, epoch: int) -> None:
        self.name = name
        self.codec = codec(name, epoch=epoch)
        self.guard = ReplayGuard()
        self.book = ChallengeBook()
        self.delivered: list[bytes] = []

    def receive(self, now: float, data: bytes) -> list[bytes]:
        opened = self.codec.open(data)
        verdict = self.guard.check(opened)
        if verdict is Verdict.REPLAY:
            return []
        out = []
        tag, payload = opened.body[:1], opened.body[1:]
        if tag == b"C" and self.book.may_answer(now, opened.sender):
            out.append(self.codec.seal(0, b"R" + payload))  # answered whatever the verdict
        if tag == b"R" and self.book.verify(now, opened.sender, payload):
            self.guard.accept_epoch(opened.sender, opened.epoch, opened.seq)
            return out
        if verdict is Verdict.NEEDS_CHALLENGE:
            nonce = self.book.issue(now, opened.sender)
            if nonce is not None:
                out.append(self.codec.seal(0, b"C" + nonce))
            return out
        if tag == b"D":
            self.delivered.append(payload)
        return out


def test_mutual_first_contact_converges_in_a_few_frames() -> None:
    a, b = _Node("a", epoch=3), _Node("b", epoch=8)
    in_flight = [(b, a.codec.seal(0, b"Dfirst"))]
    exchanged = 0
    while in_flight:
        target, data = in_flight.pop(0)
        other = a if target is b else b
        exchanged += 1
        in_flight += [(other, reply) for reply in target.receive(0.0, data)]
    assert exchanged <= 6
    assert a.guard.known_epoch("b") == 8
    assert b.guard.known_epoch("a") == 3
    assert b.delivered == []  # the first data frame came before A was verified: dropped
    assert b.receive(0.1, a.codec.seal(0, b"Dsecond")) == []
    assert b.delivered == [b"second"]

"""Authenticated mesh frames: sealing, opening, replay guard, epoch challenges, keys.

Theory of operation
-------------------
Every mesh datagram is one frame (docs/mesh.md, "Frames")::

    magic "EAM1" | cluster tag (8) | sender len u8 | sender UTF-8 (1..64) | epoch u64 |
    seq u64 | kind u8 | body | tag (16)

Integers are big-endian. A frame is at most ``MAX_FRAME_SIZE`` bytes. From the 32-byte cluster
key we derive ``K = HKDF-SHA256(ikm=key, salt=b"", info=b"edgeagent mesh v1 " + cluster)``
(RFC 5869; an empty salt means 32 zero bytes, section 2.2). The cluster tag is
``HMAC-SHA256(K, b"cluster")[:8]`` and the frame tag ``HMAC-SHA256(K, frame[:-16])[:16]``.
Because the cluster name is in ``info``, two clusters that share a key still have different
``K``, cluster tags and frame tags. The key itself never crosses the wire.

``ClusterCodec.open`` checks, in this order, and raises ``AuthError`` with a reason code:
size and magic (``malformed``), cluster tag (``other_cluster``), frame tag in constant time
(``bad_tag``), then the fields (``malformed``: only a key holder with a bug gets here). The
codec does not interpret ``kind`` or ``body``; they belong to the messages layer. A frame whose
sender is our own id opens normally with ``own=True`` so the caller can drop loops.

Authentication says "some holder of the cluster key sent this once". Freshness is the
``ReplayGuard``'s job. Per sender it remembers one *verified* epoch, the highest seq and a
64-frame sliding window (IPsec-style, RFC 4303 section 3.4.3). Decision, stricter than "accept
newer epochs": a frame is ``ACCEPT``ed only in the sender's verified epoch; an unknown sender or
*any* other epoch (older or newer) is ``NEEDS_CHALLENGE``. Accepting newer epochs unchallenged
would let an attacker replay recorded frames of a device whose state dir was wiped (its epoch
restarts low, so its old frames look "newer"), and would let anyone replay old frames to a
receiver that just restarted and knows no epochs. The price is one round trip on first contact
and after a peer restarts.

Challenge dance (the link core, ``edgeagent.mesh.link.LinkCore``, carries it out):

1. B opens a frame from A and the guard says ``NEEDS_CHALLENGE``. B drops everything in it
   except ``Challenge`` / ``ChallengeResponse`` messages, and sends ``Challenge(nonce)`` with
   ``nonce = book.issue(now, A)`` (``None``: one was sent too recently, send nothing).
2. A answers each ``Challenge`` (from a frame that opened, whatever the guard's verdict, if
   ``book.may_answer(now, B)``) with ``ChallengeResponse(nonce)`` in a freshly sealed frame.
3. B opens that frame; if ``book.verify(now, A, nonce)`` then
   ``guard.accept_epoch(A, frame.epoch, frame.seq)``. The nonce is 16 fresh random bytes,
   single use, bound to A, valid ``ttl`` seconds, so only a live key holder could have sealed
   the answer, and the epoch of the answering frame is A's current one.

Since every party runs the dance for every unverified sender, membership is mutually
authenticated. All members share one key: a key holder can claim any sender id.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass, field, fields

from edgeagent.errors import AuthError as AuthError
from edgeagent.errors import InvalidKeyError as InvalidKeyError

MAGIC = b"EAM1"
KEY_SIZE = 32
CLUSTER_TAG_SIZE = 8
TAG_SIZE = 16
NONCE_SIZE = 16
MAX_SENDER_BYTES = 64
MAX_FRAME_SIZE = 65_536
MAX_U64 = (1 << 64) - 1
INFO_PREFIX = b"edgeagent mesh v1 "

_HEAD = len(MAGIC) + CLUSTER_TAG_SIZE
_FIXED = struct.Struct(">QQB")  # epoch, seq, kind
# magic + cluster tag + sender length + 1-byte sender + epoch/seq/kind + tag
MIN_FRAME_SIZE = _HEAD + 1 + 1 + _FIXED.size + TAG_SIZE

# Reason codes of AuthError (and DropStats fields).
MALFORMED = "malformed"
OTHER_CLUSTER = "other_cluster"
BAD_TAG = "bad_tag"


# -- keys ---------------------------------------------------------------------------------------
def generate_key() -> str:
    """A new cluster key: 32 random bytes as padded standard base64 (44 characters)."""
    return base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode("ascii")


def parse_key(text: str) -> bytes:
    """Decode a cluster key: standard or URL-safe base64, padding optional, whitespace ignored.

    Raises ``InvalidKeyError`` saying whether it is not base64 or has the wrong length.
    """
    compact = "".join(text.split())
    if not compact:
        raise InvalidKeyError("cluster key is empty (make one with 'edgeagent keygen')")
    compact = compact.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKeyError(
            "cluster key is not base64 (make one with 'edgeagent keygen')"
        ) from exc
    if len(raw) != KEY_SIZE:
        raise InvalidKeyError(
            f"cluster key has the wrong length: {len(raw)} bytes, expected {KEY_SIZE}"
            " (make one with 'edgeagent keygen')"
        )
    return raw


def hkdf_sha256(ikm: bytes, *, salt: bytes = b"", info: bytes = b"", length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract (section 2.2) then expand (section 2.3)."""
    if not 0 < length <= 255 * hashlib.sha256().digest_size:
        raise ValueError("HKDF-SHA256 output length must be 1..8160 bytes")
    prk = hmac.digest(salt or bytes(hashlib.sha256().digest_size), ikm, "sha256")
    okm = b""
    block = b""
    counter = 1
    while len(okm) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        okm += block
        counter += 1
    return okm[:length]


# -- frames -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpenedFrame:
    """An authenticated frame. ``own`` is true when we sent it ourselves (a loop)."""

    sender: str
    epoch: int
    seq: int
    kind: int
    body: bytes
    own: bool = False


def peek_cluster_tag(data: bytes) -> bytes | None:
    """The 8-byte cluster tag of something that looks like a frame, else ``None``. No crypto."""
    if len(data) < MIN_FRAME_SIZE or len(data) > MAX_FRAME_SIZE or data[:4] != MAGIC:
        return None
    return bytes(data[4:_HEAD])


class ClusterCodec:
    """Seals and opens frames of one cluster for one sender (``self_id``) in one ``epoch``."""

    def __init__(self, cluster: str, key: bytes, *, self_id: str, epoch: int) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"cluster key must be {KEY_SIZE} bytes, got {len(key)}")
        sender = self_id.encode("utf-8")
        if not 1 <= len(sender) <= MAX_SENDER_BYTES:
            raise ValueError(f"self_id must be 1..{MAX_SENDER_BYTES} UTF-8 bytes")
        if not 0 <= epoch <= MAX_U64:
            raise ValueError("epoch must fit in u64")
        self.cluster = cluster
        self.self_id = self_id
        self.epoch = epoch
        self._key = hkdf_sha256(key, info=INFO_PREFIX + cluster.encode("utf-8"))
        self.cluster_tag = hmac.digest(self._key, b"cluster", "sha256")[:CLUSTER_TAG_SIZE]
        self._sender_field = bytes([len(sender)]) + sender
        self._seq = 0

    def matches(self, data: bytes) -> bool:
        """Cheap pre-filter: does ``data`` carry this cluster's tag? (Not authentication.)"""
        tag = peek_cluster_tag(data)
        return tag is not None and hmac.compare_digest(tag, self.cluster_tag)

    def seal(self, kind: int, body: bytes) -> bytes:
        """A frame carrying ``body``, with the next seq of this epoch (the first is 1)."""
        if not 0 <= kind <= 255:
            raise ValueError("kind must be 0..255")
        if self._seq >= MAX_U64:
            raise ValueError("seq space of this epoch is exhausted; restart with a new epoch")
        seq = self._seq + 1
        head = b"".join(
            (
                MAGIC,
                self.cluster_tag,
                self._sender_field,
                _FIXED.pack(self.epoch, seq, kind),
                body,
            )
        )
        if len(head) + TAG_SIZE > MAX_FRAME_SIZE:
            raise ValueError(f"frame would exceed {MAX_FRAME_SIZE} bytes")
        self._seq = seq
        return head + self._tag(head)

    def open(self, data: bytes) -> OpenedFrame:
        """Authenticate and parse ``data``; raises ``AuthError`` and nothing else."""
        if not MIN_FRAME_SIZE <= len(data) <= MAX_FRAME_SIZE:
            raise AuthError(MALFORMED, f"frame size {len(data)}")
        data = bytes(data)
        if data[:4] != MAGIC:
            raise AuthError(MALFORMED, "bad magic")
        if not hmac.compare_digest(data[4:_HEAD], self.cluster_tag):
            raise AuthError(OTHER_CLUSTER, "cluster tag does not match")
        head, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        if not hmac.compare_digest(tag, self._tag(head)):
            raise AuthError(BAD_TAG, "frame tag does not verify")
        sender_len = head[_HEAD]
        start = _HEAD + 1
        fixed_at = start + sender_len
        if not 1 <= sender_len <= MAX_SENDER_BYTES or fixed_at + _FIXED.size > len(head):
            raise AuthError(MALFORMED, "bad sender length")
        try:
            sender = head[start:fixed_at].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuthError(MALFORMED, "sender is not UTF-8") from exc
        epoch, seq, kind = _FIXED.unpack_from(head, fixed_at)
        body = head[fixed_at + _FIXED.size :]
        return OpenedFrame(sender, epoch, seq, kind, body, own=sender == self.self_id)

    def _tag(self, head: bytes) -> bytes:
        return hmac.digest(self._key, head, "sha256")[:TAG_SIZE]


# -- replay guard -------------------------------------------------------------------------------
class Verdict(enum.Enum):
    ACCEPT = "accept"
    REPLAY = "replay"  # seq already seen in the window, or older than the window
    NEEDS_CHALLENGE = "needs_challenge"  # unknown sender or an epoch we have not verified


@dataclass(slots=True)
class _SenderWindow:
    epoch: int
    highest: int = 0
    seen: int = 0  # bit i set: seq ``highest - i`` was accepted


class ReplayGuard:
    """Per-sender verified epoch + sliding seq window; bounded, least recently seen evicted.

    Feed it only frames that ``ClusterCodec.open`` authenticated (of one cluster).

    ``strict=False`` is trust on first use: an unknown sender's epoch, or a newer epoch, is
    accepted without a challenge (window reset); only older epochs need one. It saves a round
    trip but lets recorded frames be replayed to a receiver that just restarted, or after a
    sender's state was wiped (see the module docstring). Keep the default.
    """

    def __init__(self, max_senders: int = 1024, window: int = 64, *, strict: bool = True) -> None:
        if max_senders < 1 or window < 1:
            raise ValueError("max_senders and window must be positive")
        self.max_senders = max_senders
        self.window = window
        self.strict = strict
        self._senders: OrderedDict[str, _SenderWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._senders)

    def known_epoch(self, sender: str) -> int | None:
        state = self._senders.get(sender)
        return None if state is None else state.epoch

    def check(self, frame: OpenedFrame) -> Verdict:
        """Decide on ``frame`` and, when accepting, remember its seq."""
        state = self._senders.get(frame.sender)
        if not self.strict and (state is None or frame.epoch > state.epoch):
            self.accept_epoch(frame.sender, frame.epoch, frame.seq)
            return Verdict.ACCEPT
        if state is None or frame.epoch != state.epoch:
            return Verdict.NEEDS_CHALLENGE
        self._senders.move_to_end(frame.sender)
        return Verdict.ACCEPT if self._mark(state, frame.seq) else Verdict.REPLAY

    def accept_epoch(self, sender: str, epoch: int, seq: int | None = None) -> None:
        """Trust ``epoch`` of ``sender`` after a valid challenge answer.

        Pass the ``seq`` of the frame that carried the answer so that frame cannot be
        replayed. Re-accepting the epoch already verified keeps its window.
        """
        state = self._senders.get(sender)
        if state is None or state.epoch != epoch:
            state = _SenderWindow(epoch)
            self._senders[sender] = state
        self._senders.move_to_end(sender)
        if seq is not None:
            self._mark(state, seq)
        while len(self._senders) > self.max_senders:
            self._senders.popitem(last=False)

    def forget(self, sender: str) -> None:
        self._senders.pop(sender, None)

    def _mark(self, state: _SenderWindow, seq: int) -> bool:
        if seq > state.highest:
            shift = seq - state.highest
            # A jump past the window forgets it all (and never builds a huge int).
            kept = state.seen << shift if shift < self.window else 0
            state.seen = (kept | 1) & ((1 << self.window) - 1)
            state.highest = seq
            return True
        offset = state.highest - seq
        if offset >= self.window or state.seen >> offset & 1:
            return False
        state.seen |= 1 << offset
        return True


# -- challenges ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _OutstandingNonce:
    nonce: bytes
    issued: float
    sent: float
    resends: int = 0


class ChallengeBook:
    """Nonces we sent to unverified senders, and a limit on the answers we give.

    At most one nonce is outstanding per sender; ``issue`` returns it again (for a resend) after
    ``min_interval`` seconds, then after twice that, and so on, and ``None`` in between. A
    nonce is single use and expires ``ttl`` seconds after it was made. Both maps are bounded
    by ``max_pending`` (oldest dropped first); senders in them come only from authenticated
    frames.
    """

    def __init__(
        self, ttl: float = 5.0, max_pending: int = 256, min_interval: float = 0.25
    ) -> None:
        if ttl <= 0 or max_pending < 1 or min_interval < 0:
            raise ValueError("ttl and max_pending must be positive, min_interval not negative")
        self.ttl = ttl
        self.max_pending = max_pending
        self.min_interval = min_interval
        self._pending: OrderedDict[str, _OutstandingNonce] = OrderedDict()
        self._answered: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, now: float, sender: str) -> bytes | None:
        """The nonce to send to ``sender`` now, or ``None`` if we sent one too recently."""
        pending = self._pending.get(sender)
        if pending is not None and now - pending.issued < self.ttl:
            # Resends back off (min_interval, twice that, ...): a peer busy starting up keeps
            # sending us frames before it can answer, and each used to earn a new Challenge.
            if now - pending.sent < self.min_interval * 2**pending.resends:
                return None
            pending.sent = now
            pending.resends += 1
            return pending.nonce
        self._pending.pop(sender, None)
        self._pending[sender] = _OutstandingNonce(secrets.token_bytes(NONCE_SIZE), now, now)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
        return self._pending[sender].nonce

    def verify(self, now: float, sender: str, nonce: bytes) -> bool:
        """True once for the outstanding, unexpired nonce of ``sender``; it is then used up."""
        pending = self._pending.get(sender)
        if pending is None:
            return False
        if now - pending.issued >= self.ttl:
            del self._pending[sender]
            return False
        if not hmac.compare_digest(pending.nonce, nonce):
            return False  # a stale answer must not cancel the outstanding challenge
        del self._pending[sender]
        return True

    def may_answer(self, now: float, sender: str) -> bool:
        """Whether to answer a ``Challenge`` from ``sender`` now (at most every min_interval).

        Limits how often replayed old ``Challenge`` frames make us send answers.
        """
        last = self._answered.get(sender)
        if last is not None and now - last < self.min_interval:
            return False
        self._answered.pop(sender, None)
        self._answered[sender] = now
        while len(self._answered) > self.max_pending:
            self._answered.popitem(last=False)
        return True

    def expire(self, now: float) -> None:
        """Drop expired nonces (``issue`` and ``verify`` also handle expiry lazily)."""
        for sender in [s for s, p in self._pending.items() if now - p.issued >= self.ttl]:
            del self._pending[sender]


# -- counters -----------------------------------------------------------------------------------
@dataclass(slots=True)
class DropStats:
    """Frames dropped, by reason; field names are the reason codes."""

    malformed: int = 0
    other_cluster: int = 0
    bad_tag: int = 0
    replay: int = 0
    needs_challenge: int = 0
    own: int = 0
    no_key: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        if reason != "extra" and reason in self._names():
            setattr(self, reason, getattr(self, reason) + 1)
        else:
            self.extra[reason] = self.extra.get(reason, 0) + 1

    def as_dict(self) -> dict[str, int]:
        counts = {name: int(getattr(self, name)) for name in self._names()}
        counts.update(self.extra)
        return counts

    @classmethod
    def _names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

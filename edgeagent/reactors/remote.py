"""Remote intents: an intent for a reactor on another member of a mesh cluster.

Theory of operation
-------------------
The sending device does not decide anything about the intent. ``IntentForwarder.forward``
finds the member (``MeshService.locate``: a device id or hostname, and the cluster it is a
member of), picks the trace id if the caller gave none, and sends the mesh request
``intent.send`` ``{name, payload, trace_id, idempotency_key?}`` over that cluster's
authenticated link, then waits for the answer with a timeout.

The receiving device (``serve_remote``, the mesh handler) submits the intent to its own
runtime as principal ``peer:<cluster>``, the cluster whose key sealed the request, and source
``peer:<sender-device-id>``. So the receiver's own ``principals`` config alone says what the
members of a cluster may do, and its journal (or, for a denial, its audit trail) is the record
of the intent. The answer, an acknowledgement or a refusal, is the same object the local
control method ``intent.send`` returns, and travels back unchanged.

The sender turns transport failures into refusals too (``accepted: false``), so a stream of
intents reports each one: ``unreachable`` (no mesh, unknown member, dead or left),
``timeout`` (no answer in time: the intent may or may not have been applied; resending with the
same idempotency key is safe) and ``remote`` (the peer answered with an error, e.g. it is
busy or runs no reactors). Every answer of a forward carries ``to``, ``cluster`` (when known)
and ``trace_id``. The sender journals nothing: it notes each forward in its run metadata
(``forwarded``, with the trace id and outcome), so ``grep <trace-id>`` on both devices tells
the story.

A reactor reaches a peer with the ``Forward`` effect (the ``relay`` type's ``peer`` option
returns one). ``ForwardEffects`` sends it as above with the effect's idempotency key
``<reactor>:<seq>:<n>`` and the causing intent's trace id, retrying transient refusals with
backoff for up to a minute; the runtime keeps the reactor's ``effects_done`` mark below the
intent until the peer has answered, so a forward cut short by a restart is sent again, and
the key makes the peer apply it once.

Idempotency keys from a peer are scoped to the sender on the receiver
(``peer:<device-id>:<key>``): one device's keys can never collide with another's, with the
local CLI's, or with the keys the runtime gives emitted intents.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edgeagent.errors import EdgeAgentError, IntentError, PayloadError
from edgeagent.mesh.service import (
    PeerGoneError,
    RemoteError,
    RequestContext,
    RequestTimeout,
    RequestTooLarge,
)
from edgeagent.reactors.dispatch import Receipt
from edgeagent.reactors.model import Forward
from edgeagent.reactors.runlog import RunLog

PEER_METHOD = "intent.send"
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0
MAX_FORWARDS_IN_FLIGHT = 32  # a receiver serves at most 32 requests per link at once
MAX_KEY_LENGTH = 200
_TRACE_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")


class Submitter(Protocol):
    """The part of ``ReactorRuntime`` a remote intent needs."""

    async def submit(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        principal: str,
        source: str,
        trace_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Receipt: ...


class Requester(Protocol):
    """The part of ``MeshService`` a forward needs."""

    def locate(self, member: str, cluster: str | None = None) -> tuple[str, str]: ...

    async def request(
        self,
        device_id: str,
        method: str,
        body: Any,
        *,
        cluster: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class RemoteIntent:
    """The body of an ``intent.send`` mesh request, checked."""

    name: str
    payload: dict[str, Any]
    trace_id: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def from_body(cls, body: Any) -> RemoteIntent:
        """Raise ``ValueError`` saying which part of ``body`` is wrong."""
        if not isinstance(body, dict):
            raise ValueError(f"a remote intent is a JSON object, got {type(body).__name__}")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("a remote intent needs 'name'")
        payload = body.get("payload", {})
        if not isinstance(payload, dict):
            raise ValueError("payload: must be a JSON object")
        trace_id = body.get("trace_id")
        if trace_id is not None and not (
            isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id)
        ):
            raise ValueError("trace_id: 1-64 letters, digits, '_', '.', ':' or '-'")
        key = body.get("idempotency_key")
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH):
            raise ValueError(f"idempotency_key: a string of 1-{MAX_KEY_LENGTH} characters")
        return cls(name, payload, trace_id, key)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "payload": self.payload}
        if self.trace_id is not None:
            body["trace_id"] = self.trace_id
        if self.idempotency_key is not None:
            body["idempotency_key"] = self.idempotency_key
        return body


def peer_principal(cluster: str) -> str:
    """The principal every member of ``cluster`` acts as on this device."""
    return f"peer:{cluster}"


def peer_source(device_id: str) -> str:
    return f"peer:{device_id}"


def scoped_key(device_id: str, key: str | None) -> str | None:
    """A peer's idempotency key as the receiver journals it (see the module docstring)."""
    return None if key is None else f"peer:{device_id}:{key}"


def refusal(name: str, code: str, reason: str) -> dict[str, Any]:
    """The answer for an intent that was not accepted (the control API's shape)."""
    return {"accepted": False, "intent": name, "code": code, "error": reason}


async def submit_answer(
    runtime: Submitter,
    name: str,
    payload: Mapping[str, Any],
    *,
    principal: str,
    source: str,
    trace_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Submit and answer: the ack, or a refusal with the step's code (never raises for a
    refused intent, so a stream of them reports each)."""
    try:
        ack = await runtime.submit(
            name,
            payload,
            principal=principal,
            source=source,
            trace_id=trace_id,
            idempotency_key=idempotency_key,
        )
    except IntentError as exc:
        return answer_of(name, exc)
    return ack.as_json()


def answer_of(name: str, result: Receipt | IntentError) -> dict[str, Any]:
    """The control API's answer for one intent: the ack, or a refusal with the step's code
    (and the payload field, for an invalid one)."""
    if isinstance(result, PayloadError):
        return {**refusal(name, result.code, str(result)), "field": result.field}
    if isinstance(result, IntentError):
        return refusal(name, result.code, str(result))
    return result.as_json()


async def serve_remote(runtime: Submitter, request: RequestContext, body: Any) -> dict[str, Any]:
    """The mesh handler of ``intent.send``: submit as ``peer:<cluster>``, answer as locally."""
    try:
        intent = RemoteIntent.from_body(body)
    except ValueError as exc:
        name = body.get("name") if isinstance(body, dict) else None
        return refusal(name if isinstance(name, str) else "", "invalid", str(exc))
    answer = await submit_answer(
        runtime,
        intent.name,
        intent.payload,
        principal=peer_principal(request.cluster),
        source=peer_source(request.sender),
        trace_id=intent.trace_id,
        idempotency_key=scoped_key(request.sender, intent.idempotency_key),
    )
    if intent.trace_id is not None:
        answer.setdefault("trace_id", intent.trace_id)
    return answer


class IntentForwarder:
    """Sends intents to reactors on other members (the sending side; see the module doc)."""

    def __init__(
        self,
        mesh: Requester | None,
        *,
        run_log: RunLog | None = None,
        in_flight: int = MAX_FORWARDS_IN_FLIGHT,
    ) -> None:
        self._mesh = mesh
        self._run_log = run_log
        self._slots = asyncio.Semaphore(in_flight)

    async def forward(
        self,
        to: str,
        intent: RemoteIntent,
        *,
        cluster: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Send ``intent`` to member ``to`` and return its answer, or a refusal saying why
        there is none. The trace id is chosen here when ``intent`` has none."""
        if intent.trace_id is None:
            intent = RemoteIntent(
                intent.name, intent.payload, secrets.token_hex(8), intent.idempotency_key
            )
        where: dict[str, Any] = {"to": to}
        if cluster is not None:
            where["cluster"] = cluster
        try:
            if self._mesh is None:
                raise PeerGoneError(
                    "the mesh is not running (mesh.enabled is false or no clusters)"
                )
            found_cluster, device_id = self._mesh.locate(to, cluster)
            where = {"to": device_id, "cluster": found_cluster}
            async with self._slots:
                answer = await self._mesh.request(
                    device_id, PEER_METHOD, intent.body(), cluster=found_cluster, timeout=timeout
                )
            if not isinstance(answer, dict) or not isinstance(answer.get("accepted"), bool):
                answer = refusal(intent.name, "remote", f"{to}: unexpected answer {answer!r}")
        except RequestTimeout as exc:
            answer = refusal(
                intent.name,
                "timeout",
                f"{exc}; it may or may not have been applied (resending with the same "
                "idempotency key applies it at most once)",
            )
        except PeerGoneError as exc:
            answer = refusal(intent.name, "unreachable", str(exc))
        except RemoteError as exc:
            answer = refusal(intent.name, "remote", str(exc))
        except RequestTooLarge as exc:
            answer = refusal(intent.name, "invalid", str(exc))
        except EdgeAgentError as exc:  # ambiguous member, unknown cluster, too many in flight
            answer = refusal(intent.name, "unreachable", str(exc))
        answer = {**answer, **where, "trace_id": answer.get("trace_id") or intent.trace_id}
        if self._run_log is not None:
            self._run_log.write(
                "forwarded",
                trace_id=answer["trace_id"],
                intent=intent.name,
                to=answer["to"],
                cluster=answer.get("cluster"),
                accepted=answer["accepted"],
                code=answer.get("code"),
                error=answer.get("error"),
            )
        return answer


# Refusals worth another try: the peer may come back, or have room again. The others (denied,
# invalid, not running, ...) are the peer's decision, and another try gets the same answer.
RETRY_CODES = frozenset({"unreachable", "timeout", "remote", "full"})
DEFAULT_RETRY_FOR = 60.0
_FIRST_RETRY = 0.5
_MAX_RETRY_DELAY = 10.0


class Forwarder(Protocol):
    """The part of ``IntentForwarder`` that ``ForwardEffects`` needs."""

    async def forward(
        self,
        to: str,
        intent: RemoteIntent,
        *,
        cluster: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> dict[str, Any]: ...


class ForwardEffects:
    """Carries reactors' ``Forward`` effects to peers (the runtime's ``PeerSender``).

    Each try is a forward with the effect's idempotency key (``<reactor>:<seq>:<n>``) and the
    trace id of the intent that caused it, so the peer applies it at most once however often
    it is sent. Transient refusals (``RETRY_CODES``) are retried with backoff for up to
    ``retry_for`` seconds; then, or at once for a refusal that is the peer's decision, it
    raises ``IntentError`` with the peer's answer (the runtime counts and logs it).
    """

    def __init__(
        self,
        forwarder: Forwarder,
        *,
        retry_for: float = DEFAULT_RETRY_FOR,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._forwarder = forwarder
        self._retry_for = retry_for
        self._clock = clock
        self._sleep = sleep

    async def send(self, reactor: str, key: str, trace_id: str, effect: Forward) -> None:
        intent = RemoteIntent(effect.name, dict(effect.payload), trace_id, key)
        give_up = self._clock() + self._retry_for
        delay = _FIRST_RETRY
        tries = 0
        while True:
            tries += 1
            answer = await self._forwarder.forward(effect.to, intent, cluster=effect.cluster)
            if answer["accepted"]:
                return
            code = str(answer.get("code"))
            if code not in RETRY_CODES or self._clock() + delay > give_up:
                error = IntentError(
                    f"forward of {effect.name} to {effect.to} refused ({code}, after {tries}"
                    f" {'try' if tries == 1 else 'tries'}): {answer.get('error')}"
                )
                error.code = code
                raise error
            await self._sleep(delay)
            delay = min(2 * delay, _MAX_RETRY_DELAY)

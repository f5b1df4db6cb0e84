"""The intents API: sending intents (here or to a mesh member), the reactors and the journal
(``intent.send``, ``intent.send_batch``, ``reactors.*``, ``journal.*``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from edgeagent.api.context import AgentView
from edgeagent.errors import ControlError
from edgeagent.reactors.dispatch import Submission
from edgeagent.reactors.remote import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    RemoteIntent,
    answer_of,
    refusal,
    submit_answer,
)

MAX_INTENT_BATCH = 1000  # intents in one intent.send_batch request


async def intent_send(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    """Accept one intent from the CLI, or forward it to member ``to`` of a mesh cluster
    (edgeagent/reactors/remote.py). A refusal is an answer, not an error: the CLI streams
    many and reports each (``accepted: false`` with the step's code)."""
    name = params.get("name")
    payload = params.get("payload", {})
    if not isinstance(name, str) or not name:
        raise ControlError("intent.send needs 'name'")
    if not isinstance(payload, dict):
        return refusal(name, "invalid", "payload: must be a JSON object")
    trace_id = params.get("trace_id")
    key = params.get("idempotency_key")
    to = params.get("to")
    if to and str(to) not in _own_names(view):
        return await _intent_forward(view, name, payload, params)
    return await submit_answer(
        view.parts.need_reactors(),
        name,
        payload,
        principal=str(params.get("as") or "cli"),
        source="cli",
        trace_id=str(trace_id) if trace_id else None,
        idempotency_key=str(key) if key else None,
    )


async def intent_send_batch(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    """``intent.send`` for up to MAX_INTENT_BATCH items, answered in order: how
    ``intent send -`` streams. Local intents are admitted together (one pass through the
    mailboxes, one group commit); items with ``to`` are forwarded concurrently."""
    items = params.get("items")
    if not isinstance(items, list) or len(items) > MAX_INTENT_BATCH:
        raise ControlError(f"intent.send_batch needs 'items': a list of at most "
                           f"{MAX_INTENT_BATCH} intent.send parameter objects")  # fmt: skip
    answers: list[dict[str, Any]] = [{} for _ in items]
    local: list[tuple[int, Submission]] = []
    remote: list[tuple[int, dict[str, Any]]] = []
    own = _own_names(view)
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        payload = item.get("payload", {}) if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(name, str) or not name:
            answers[index] = refusal(str(name), "invalid", "each item needs a 'name'")
        elif not isinstance(payload, dict):
            answers[index] = refusal(name, "invalid", "payload: must be a JSON object")
        elif item.get("to") and str(item["to"]) not in own:
            remote.append((index, item))
        else:
            trace_id, key = item.get("trace_id"), item.get("idempotency_key")
            local.append((index, Submission(
                name, payload, principal=str(item.get("as") or "cli"), source="cli",
                trace_id=str(trace_id) if trace_id else None,
                idempotency_key=str(key) if key else None,
            )))  # fmt: skip
    reactors = view.parts.need_reactors()
    results = await reactors.submit_many([submission for _, submission in local])
    for (index, submission), result in zip(local, results, strict=True):
        answers[index] = answer_of(submission.name, result)
    if remote:
        forwarded = await asyncio.gather(*(intent_send(view, item) for _, item in remote))
        for (index, _), answer in zip(remote, forwarded, strict=True):
            answers[index] = answer
    return answers


async def _intent_forward(
    view: AgentView, name: str, payload: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    to, cluster = str(params["to"]), params.get("cluster")
    if params.get("as"):
        reason = (
            "'as' applies to local intents only: on the receiving device a remote intent "
            "acts as peer:<cluster>"
        )
        return {**refusal(name, "invalid", reason), "to": to}
    timeout = _seconds(params.get("timeout", DEFAULT_TIMEOUT))
    if timeout is None or not 0 < timeout <= MAX_TIMEOUT:
        reason = f"timeout: a number of seconds, more than 0 and at most {MAX_TIMEOUT:g}"
        return {**refusal(name, "invalid", reason), "to": to}
    try:
        intent = RemoteIntent.from_body(
            {k: v for k, v in params.items() if k in ("trace_id", "idempotency_key")}
            | {"name": name, "payload": payload}
        )
    except ValueError as exc:
        return {**refusal(name, "invalid", str(exc)), "to": to}
    return await view.parts.forwarder.forward(
        to, intent, cluster=str(cluster) if cluster else None, timeout=timeout
    )


async def reactors_list(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    return view.parts.need_reactors().reactors()


async def reactors_show(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    return view.parts.need_reactors().show(str(params.get("id", "")))


async def reactors_command(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    reactors = view.parts.need_reactors()
    return await reactors.command(str(params.get("id", "")), str(params.get("command")))


async def journal_tail(view: AgentView, params: dict[str, Any]) -> dict[str, Any]:
    """Entries after ``after`` (or the newest ``limit`` when ``after`` is negative); with
    ``wait`` seconds, a long poll: returns as soon as something is committed."""
    journal = view.parts.need_journal()
    limit = max(1, min(int(params.get("limit", 100)), 1000))
    after = int(params.get("after", -1))
    wait = max(0.0, min(float(params.get("wait", 0)), 30.0))
    entries = await (journal.last(limit) if after < 0 else journal.tail(after, limit))
    if not entries and wait and after >= 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                async for batch in journal.follow(after, limit=limit):
                    entries = batch
                    break
    return {"entries": [dataclasses.asdict(e) for e in entries], "last_seq": journal.last_seq}


async def journal_audit(view: AgentView, params: dict[str, Any]) -> list[dict[str, Any]]:
    limit = max(1, min(int(params.get("limit", 100)), 1000))
    journal = view.parts.need_journal()
    return [dataclasses.asdict(a) for a in await journal.recent_audit(limit)]


def _own_names(view: AgentView) -> tuple[str, str]:
    """An intent addressed ``to`` one of these stays here."""
    return (view.device.device_id, view.parts.mdns.table.hosts[0])


def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


METHODS = {
    "intent.send": intent_send,
    "intent.send_batch": intent_send_batch,
    "reactors.list": reactors_list,
    "reactors.show": reactors_show,
    "reactors.command": reactors_command,
    "journal.tail": journal_tail,
    "journal.audit": journal_audit,
}

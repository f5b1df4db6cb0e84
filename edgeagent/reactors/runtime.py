"""The reactor runtime: routes intents, checks them, journals them, applies them, runs effects.

Theory of operation
-------------------
``ReactorRuntime.submit`` is the one way in, whoever sends (the CLI over the control socket,
MQTT, a peer, a reactor's ``Emit``, a timer). In order:

1. **route**: the name picks reactors and verbs: ``<id>.<verb>``, or a name reactors
   ``subscribe`` to (one intent can go to several reactors);
2. **capability**: the sender's principal must hold what each target requires
   (``requires`` in config; ``<id>:<verb>`` when not configured). A reactor addressing its own
   verbs (timers, ``Emit(".x")``) is not checked. A denial is audited in the journal and
   raises ``CapabilityDenied``: no journal entry, no state change;
3. **payload**: validated against the verb's schema (``PayloadError`` names the field);
4. **mailbox**: each reactor holds the intents admitted but not journaled yet, bounded, with
   its overflow policy (``block`` waits for room, ``reject`` refuses, ``drop-oldest`` refuses
   the oldest waiting one instead);
5. the reactor's task takes everything waiting (bounded), **journals** it in one group
   commit, applies ``handle`` in journal order, **acknowledges** each sender with the seq and
   then carries out the effects.

State is only ever changed by journaled intents, applied in seq order, so replay rebuilds it:
on start each reactor loads its latest snapshot and replays the journal after it. Effects run
at least once: those of intents after the reactor's marks (``Journal.marks``) run again after a
restart, each with the idempotency key ``<reactor>:<seq>:<n>`` (an ``Emit`` carries it into
the journal, which keeps one entry per key; a ``Forward`` carries it to the peer's). Emits
and forwards run in tasks of their own so the reactor goes on meanwhile; they have their own
mark (``handoffs_done``), held below an intent until they have finished. A ``handle`` that
raises leaves the state as it was (the intent is marked failed, and replay skips it); the
reactor then goes ``failed`` and is restarted with backoff, or stays failed after
``max_restarts`` crashes within ``restart_window`` until started again.

Timers are durable rows in the journal; one task fires them (a timer due while the agent was
down fires at start). Effects the runtime cannot carry out itself (``SerialWrite``: the
agent's ``serial.ports.SerialPorts``; ``Publish``) go to a sink registered for their type;
without one they are counted and logged, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from edgeagent.config.model import ReactorConfig
from edgeagent.errors import CapabilityDenied, EdgeAgentError, IntentError, LifecycleError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.journal import AuditRecord, Entry, Journal, Marks, Timer
from edgeagent.reactors.lifecycle import Command, LifecycleState, takes_intents, transition
from edgeagent.reactors.model import (
    CancelTimer,
    Effect,
    Emit,
    Forward,
    Intent,
    Log,
    ReactorType,
    SetTimer,
    intent_of,
    resolve_name,
    state_json,
)
from edgeagent.reactors.registry import find_type
from edgeagent.reactors.runlog import RunLog

log = logging.getLogger("edgeagent.reactors")

MAX_HANDOFFS_IN_FLIGHT = 256  # emits being submitted and forwards being sent, at once
PRESSURE_HIGH = 0.8  # a mailbox this full is reported as queue pressure ...
PRESSURE_LOW = 0.5  # ... until it drains below this


@dataclass(frozen=True, slots=True)
class Delivery:
    reactor: str
    seq: int
    duplicate: bool = False  # the idempotency key was journaled before: not applied again


@dataclass(frozen=True, slots=True)
class Receipt:
    """The receipt for an accepted intent: journaled (durable) and applied, one delivery per
    target. (Not the mesh's ``Ack``, which answers a SWIM ping.)"""

    name: str
    trace_id: str
    deliveries: tuple[Delivery, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": True,
            "intent": self.name,
            "trace_id": self.trace_id,
            "deliveries": [
                {"reactor": d.reactor, "seq": d.seq, "duplicate": d.duplicate}
                for d in self.deliveries
            ],
        }


@dataclass(frozen=True, slots=True)
class Submission:
    """One intent offered to ``submit_many`` (``submit`` takes the same as arguments)."""

    name: str
    payload: Mapping[str, Any]
    principal: str
    source: str
    trace_id: str | None = None
    idempotency_key: str | None = None


class _Denial(CapabilityDenied):
    """A denial on its way to the audit trail (it carries the trace id to audit with)."""

    def __init__(self, reason: str, trace: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trace = trace


class EffectSink(Protocol):
    """Carries out one kind of effect (MQTT publish, serial write) for the runtime."""

    async def execute(self, reactor: str, key: str, effect: Effect) -> None: ...


class PeerSender(Protocol):
    """Carries a ``Forward`` to a peer (``remote.ForwardEffects``, over the mesh). Returns
    once the peer has accepted it; raises ``EdgeAgentError`` when it gives up."""

    async def send(self, reactor: str, key: str, trace_id: str, effect: Forward) -> None: ...


@dataclass(slots=True)
class MailboxStats:
    admitted: int = 0
    rejected_full: int = 0
    dropped: int = 0
    blocked: int = 0
    peak: int = 0


@dataclass(slots=True)
class ReactorStats:
    applied: int = 0
    failed: int = 0
    restarts: int = 0
    effects: int = 0
    effects_unsupported: int = 0
    effect_errors: int = 0
    snapshots: int = 0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    first_backoff: float = 0.1
    max_backoff: float = 30.0
    max_restarts: int = 5
    restart_window: float = 60.0


@dataclass(slots=True)
class _Pending:
    intent: Intent
    verb: str
    future: asyncio.Future[Delivery]


@dataclass(order=True, slots=True)
class _Armed:
    due: float
    reactor: str = field(compare=False)
    key: str = field(compare=False)
    name: str = field(compare=False)
    payload: Mapping[str, Any] = field(compare=False)


class TraceIds:
    """16 hex chars: a random per-run prefix and a counter. Unique within the device's history
    with overwhelming odds, and cheap: minting one per intent at 20k/s matters."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFF:08x}"


class ReactorHost:
    """One reactor: its state, lifecycle, mailbox and counters. The runtime drives it."""

    def __init__(self, config: ReactorConfig, rtype: ReactorType, options: dict[str, Any]) -> None:
        self.config = config
        self.rtype = rtype
        self.options = options
        self.requires = dict(config.requires)
        self.subscribe = dict(config.subscribe)
        self.lifecycle = LifecycleState.UNDEPLOYED
        self.state: Any = rtype.initial_state(options)
        self.seq = 0  # the last journal seq applied to ``state``
        self.mailbox: deque[_Pending] = deque()
        self.mailbox_stats = MailboxStats()
        self.stats = ReactorStats()
        self.crashes: deque[float] = deque()
        self.last_error = ""
        self.since_snapshot = 0
        self.pressure = False
        self.wakeup = asyncio.Event()
        # Intents of senders blocked by a full mailbox (overflow: block), oldest first; they
        # move into the mailbox as it drains, so each sender just awaits its own future. Its
        # length is bounded by the senders themselves, each waiting on one intent.
        self.blocked: deque[_Pending] = deque()
        self.task: asyncio.Task[None] | None = None
        # (seq, intent, [(index, effect)]) replayed past the marks: to run again
        self.unconfirmed: list[tuple[int, Intent, list[tuple[int, Effect]]]] = []
        # seq -> effects of that intent handed to a task (emits, forwards) not finished yet.
        # The handoffs_done mark stays below the lowest of them.
        self.handoffs: dict[int, int] = {}
        self.effects_run = 0  # every effect up to this seq has run or been handed off
        self.marked = Marks(0, 0)  # as last written

    @property
    def id(self) -> str:
        return self.config.id

    def describe(self, *, with_state: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "type": self.rtype.name,
            "state": str(self.lifecycle),
            "seq": self.seq,
            "mailbox": {
                "size": self.config.mailbox,
                "overflow": self.config.overflow,
                "waiting": len(self.mailbox),
                "blocked_senders": len(self.blocked),
                **_asdict(self.mailbox_stats),
            },
            "stats": _asdict(self.stats),
            "verbs": sorted(self.rtype.verbs),
            "subscribe": self.subscribe,
            "last_error": self.last_error,
        }
        if with_state:
            doc["reactor_state"] = self.state
            doc["options"] = self.options
            doc["requires"] = {name: list(caps) for name, caps in sorted(self.requires.items())}
        return doc


class ReactorRuntime:
    """Every configured reactor, the router in front of them and the timers behind them."""

    def __init__(
        self,
        reactors: Sequence[ReactorConfig],
        policy: Policy,
        journal: Journal,
        *,
        run_log: RunLog | None = None,
        sinks: Mapping[type, EffectSink] | None = None,
        peers: PeerSender | None = None,
        clock: Callable[[], float] = time.time,
        max_batch: int = 1024,
        restart: RestartPolicy = RestartPolicy(),
        types: Callable[[str], ReactorType] = find_type,
    ) -> None:
        self._policy = policy
        self._journal = journal
        self._run_log = run_log
        self._sinks = dict(sinks or {})
        self._peers = peers
        self._clock = clock
        self._max_batch = max_batch
        self._restart = restart
        self._hosts: dict[str, ReactorHost] = {}
        self._routes: dict[str, list[tuple[ReactorHost, str]]] = {}
        for config in reactors:
            rtype = types(config.type)
            options = rtype.options.validate(dict(config.options), path="options")
            self._hosts[config.id] = ReactorHost(config, rtype, options)
        self._tasks: asyncio.TaskGroup | None = None
        self._children: set[asyncio.Task[None]] = set()  # cancelled at close
        self._timers: list[_Armed] = []
        self._timer_keys: dict[tuple[str, str], float] = {}
        self._timer_change = asyncio.Event()
        self._handoff_room = asyncio.Semaphore(MAX_HANDOFFS_IN_FLIGHT)
        self._trace_ids = TraceIds()

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> ReactorRuntime:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        try:
            for host in self._hosts.values():
                if host.config.enabled:
                    await self._deploy(host)
                    self._start(host)
            for timer in await self._journal.timers():
                self._arm(timer.reactor, timer.key, timer.due, timer.name, timer.payload)
            self._spawn(self._run_timers(), "edgeagent[reactors].timers")
            for host in self._hosts.values():
                await self._execute_replayed(host)
            for host in self._hosts.values():
                await self._first_start(host)
        except BaseException as exc:
            await self._close_tasks(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_tasks(exc_type, exc, tb)

    async def _close_tasks(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        for host in self._hosts.values():
            self._refuse_waiting(host, "the agent is stopping")
        # Reactor tasks may be mid-commit: what got journaled is replayed at the next start.
        # No await until they are cancelled: with no task group left, they could not spawn.
        for task in list(self._children):
            task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await tasks.__aexit__(exc_type, exc, tb)
        finally:
            # Every task has ended: emits and forwards that finished since the last batch
            # are not to be run again (cancelled ones are, and the marks stay below them).
            for host in self._hosts.values():
                with contextlib.suppress(EdgeAgentError):
                    await self._mark_effects_done(host)

    # -- the way in ----------------------------------------------------------------------------
    async def submit(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        principal: str,
        source: str,
        trace_id: str | None = None,
        idempotency_key: str | None = None,
        sender: str | None = None,
    ) -> Receipt:
        """Route, check, validate, admit, journal and apply one intent (see the module doc).

        ``sender`` is the reactor id when a reactor emits: its own verbs skip the capability
        check. Raises an ``IntentError`` subclass saying which step refused it.
        """
        item = Submission(name, payload or {}, principal, source, trace_id, idempotency_key)
        try:
            trace, deliveries = self._begin(item, sender)
        except _Denial as denial:
            await self._deny(name, principal, denial.trace, denial.reason)
            raise
        return Receipt(name, trace, tuple([await delivery for delivery in deliveries]))

    async def submit_many(self, items: Sequence[Submission]) -> list[Receipt | IntentError]:
        """``submit`` for a batch, in order, answered per item (an error is returned, not
        raised): all are admitted before any is awaited, so a stream's batch costs one pass
        through the mailbox and one group commit instead of one task per intent."""
        begun: list[tuple[str, list[asyncio.Future[Delivery]]] | IntentError] = []
        denied: list[tuple[Submission, _Denial]] = []
        for item in items:  # no await in here: the batch is admitted in its own order
            try:
                begun.append(self._begin(item, None))
            except _Denial as denial:
                denied.append((item, denial))
                begun.append(denial)
            except IntentError as exc:
                begun.append(exc)
        for item, refused in denied:
            await self._deny(item.name, item.principal, refused.trace, refused.reason)
        answers: list[Receipt | IntentError] = []
        for item, started in zip(items, begun, strict=True):
            if isinstance(started, IntentError):
                answers.append(started)
                continue
            trace, deliveries = started
            try:
                answers.append(Receipt(item.name, trace, tuple([await d for d in deliveries])))
            except IntentError as exc:
                answers.append(exc)
        return answers

    def _begin(
        self, item: Submission, sender: str | None
    ) -> tuple[str, list[asyncio.Future[Delivery]]]:
        """Everything up to admission, without awaiting: the trace id and one future per
        target. Raises ``_Denial`` (to be audited by the caller) or another ``IntentError``."""
        name = item.name
        targets = self._route(name)
        trace = item.trace_id or self._trace_ids.next()
        body = dict(item.payload)
        admitted: list[tuple[ReactorHost, str, dict[str, Any]]] = []
        for host, verb in targets:
            if host.id != sender:
                required = host.requires.get(name, (f"{host.id}:{verb}",))
                decision = self._policy.decide(item.principal, required)
                if not decision.allowed:
                    raise _Denial(decision.reason, trace)
            if not takes_intents(host.lifecycle):
                raise IntentError(_not_running(host))
            admitted.append((host, verb, host.rtype.verbs[verb].validate(body)))
        at = self._clock()
        return trace, [
            self._admit(
                host,
                intent_of(
                    name,
                    checked,
                    principal=item.principal,
                    trace_id=trace,
                    source=item.source,
                    at=at,
                    idempotency_key=item.idempotency_key,
                ),
                verb,
            )
            for host, verb, checked in admitted
        ]

    def reactors(self) -> list[dict[str, Any]]:
        return [host.describe() for host in self._hosts.values()]

    def show(self, reactor_id: str) -> dict[str, Any]:
        return self._host(reactor_id).describe(with_state=True)

    def routes(self) -> dict[str, list[str]]:
        """Intent name -> ``<reactor>.<verb>`` targets (for ``explain``)."""
        return {
            name: [f"{host.id}.{verb}" for host, verb in targets]
            for name, targets in sorted(self._routes.items())
        }

    async def command(self, reactor_id: str, command: str) -> dict[str, Any]:
        """``start`` / ``stop`` / ``deploy`` / ``undeploy`` from the CLI or control API."""
        host = self._host(reactor_id)
        try:
            wanted = Command(command)
        except ValueError:
            raise LifecycleError(
                f"unknown command {command!r}; use start, stop, deploy or undeploy"
            ) from None
        if wanted not in (Command.START, Command.STOP, Command.DEPLOY, Command.UNDEPLOY):
            raise LifecycleError(f"{command!r} is the supervisor's, not a user command")
        if wanted is Command.DEPLOY:
            transition(host.lifecycle, wanted, reactor=host.id)  # raises when not allowed
            await self._deploy(host)
        elif wanted is Command.START:
            transition(host.lifecycle, wanted, reactor=host.id)
            if host.lifecycle is LifecycleState.FAILED:
                host.crashes.clear()
            self._start(host)
        else:
            # The task finishes the batch it holds (journaled intents must be applied) and
            # then idles; intents still waiting are refused.
            self._set(host, transition(host.lifecycle, wanted, reactor=host.id))
            self._refuse_waiting(host, _not_running(host))
            if wanted is Command.UNDEPLOY:
                self._unroute(host)
        return host.describe()

    # -- routing and admission -----------------------------------------------------------------
    def _route(self, name: str) -> list[tuple[ReactorHost, str]]:
        targets = self._routes.get(name)
        if targets:
            return targets
        reactor_id, _, verb = name.partition(".")
        host = self._hosts.get(reactor_id)
        if host is not None and verb:
            if verb not in host.rtype.verbs:
                verbs = ", ".join(sorted(host.rtype.verbs))
                raise IntentError(f"reactor {reactor_id!r} has no verb {verb!r}; verbs: {verbs}")
            raise IntentError(_not_running(host))
        known = ", ".join(sorted(self._routes)) or "none"
        raise IntentError(f"no reactor takes {name!r}; known intents: {known}")

    def _admit(self, host: ReactorHost, intent: Intent, verb: str) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        pending = _Pending(intent, verb, future)
        stats = host.mailbox_stats
        if host.blocked or len(host.mailbox) >= host.config.mailbox:
            policy = host.config.overflow
            if policy == "reject":
                stats.rejected_full += 1
                self._note(host, "mailbox_full", intent.context.trace_id, policy=policy)
                error = IntentError(f"reactor {host.id!r} mailbox is full ({host.config.mailbox})")
                error.code = "full"
                raise error
            if policy == "drop-oldest":
                oldest = host.mailbox.popleft()
                stats.dropped += 1
                dropped = IntentError(
                    f"dropped: reactor {host.id!r} mailbox was full (drop-oldest)"
                )
                dropped.code = "dropped"
                if not oldest.future.done():
                    oldest.future.set_exception(dropped)
                self._note(host, "dropped", oldest.intent.context.trace_id)
            else:
                stats.blocked += 1
                host.blocked.append(pending)
                return future
        self._enqueue(host, pending)
        return future

    def _enqueue(self, host: ReactorHost, pending: _Pending) -> None:
        host.mailbox.append(pending)
        stats = host.mailbox_stats
        stats.admitted += 1
        stats.peak = max(stats.peak, len(host.mailbox))
        fill = len(host.mailbox) / host.config.mailbox
        if not host.pressure and fill >= PRESSURE_HIGH:
            host.pressure = True
            self._note(host, "queue_pressure", None, waiting=len(host.mailbox))
        host.wakeup.set()

    async def _deny(self, name: str, principal: str, trace: str, reason: str) -> None:
        record = AuditRecord(self._clock(), principal, name, reason, trace)
        try:
            await self._journal.audit(record)
        except EdgeAgentError as exc:
            log.warning("could not audit a denial of %s: %s", name, exc)
        if self._run_log is not None:
            self._run_log.write("denied", trace_id=trace, intent=name, principal=principal,
                                reason=reason)  # fmt: skip

    # -- one reactor's task --------------------------------------------------------------------
    async def _deploy(self, host: ReactorHost) -> None:
        """Rebuild the state from the latest snapshot and the journal after it."""
        self._set(host, transition(host.lifecycle, Command.DEPLOY, reactor=host.id))
        await self._recover(host)
        self._reroute(host)

    async def _recover(self, host: ReactorHost) -> None:
        """Snapshot plus replay; effects not marked done are kept for ``_execute_replayed``."""
        state = host.rtype.initial_state(host.options)
        seq = 0
        snapshot = await self._journal.latest_snapshot(host.id)
        if snapshot is not None:
            seq, state = snapshot
        failed = await self._journal.failed_seqs(host.id)
        marks = await self._journal.marks(host.id)
        host.marked = host.marked.join(marks)
        # What this process already ran (or handed off) is not run again when a crashed
        # handler makes the reactor recover; the marks cover what an earlier process ran.
        done = max(marks.effects, host.effects_run)
        handed = max(marks.handoffs, host.effects_run)
        # The replay loop: a million intents take seconds, so names are bound once here.
        handle, options, settled = host.rtype.handle, host.options, min(done, handed)
        async for batch in self._journal.replay(host.id, seq):
            for entry in batch:
                seq = entry.seq
                if seq in failed:
                    continue
                intent = _intent_of(entry)
                try:
                    state, effects = handle(state, entry.verb, intent, options)
                except Exception as exc:  # it failed live too; we died before marking it
                    log.debug("replay of %s seq %d failed again: %r", host.id, entry.seq, exc)
                    continue
                if effects and seq > settled:
                    again = [
                        (index, effect)
                        for index, effect in enumerate(effects)
                        if entry.seq > (handed if _handed_off(effect) else done)
                    ]
                    if again:
                        host.unconfirmed.append((entry.seq, intent, again))
        host.state, host.seq = state, seq
        host.since_snapshot = 0

    async def _execute_replayed(self, host: ReactorHost) -> None:
        """At-least-once: effects of intents after the marks run again."""
        work, host.unconfirmed = host.unconfirmed, []
        for seq, intent, effects in work:
            await self._execute(host, seq, intent, effects)
        host.effects_run = host.seq
        if work:
            await self._mark_effects_done(host)

    async def _first_start(self, host: ReactorHost) -> None:
        """A reactor whose type has a ``start`` verb gets ``<id>.start`` once, the first time
        it runs (nothing journaled for it yet): how a schedule arms its first timer. Later
        boots need nothing: its timers are in the journal."""
        if host.seq or "start" not in host.rtype.verbs or not takes_intents(host.lifecycle):
            return
        try:
            await self.submit(
                f"{host.id}.start", {}, principal=f"reactor:{host.id}", source="boot",
                sender=host.id,
            )  # fmt: skip
        except IntentError as exc:
            self._note(host, "start_refused", None, error=str(exc))

    def _start(self, host: ReactorHost) -> None:
        self._set(host, transition(host.lifecycle, Command.START, reactor=host.id))
        if self._tasks is not None and (host.task is None or host.task.done()):
            host.task = self._spawn(self._run(host), f"edgeagent[reactor:{host.id}]")
        host.wakeup.set()

    def _spawn(self, work: Any, name: str) -> asyncio.Task[None]:
        assert self._tasks is not None
        task: asyncio.Task[None] = self._tasks.create_task(work, name=name)
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return task

    async def _run(self, host: ReactorHost) -> None:
        while True:
            await host.wakeup.wait()
            host.wakeup.clear()
            while host.mailbox and takes_intents(host.lifecycle):
                batch = [
                    host.mailbox.popleft() for _ in range(min(len(host.mailbox), self._max_batch))
                ]
                while host.blocked and len(host.mailbox) < host.config.mailbox:
                    self._enqueue(host, host.blocked.popleft())
                if host.pressure and len(host.mailbox) <= PRESSURE_LOW * host.config.mailbox:
                    host.pressure = False
                    self._note(host, "queue_pressure_cleared", None, waiting=len(host.mailbox))
                crashed = await self._apply_batch(host, batch)
                if crashed:
                    await self._supervise(host)
                    break

    async def _apply_batch(self, host: ReactorHost, batch: list[_Pending]) -> bool:
        """Journal ``batch`` (one group commit), apply it in order, acknowledge, run effects."""
        entries = [_entry_of(host.id, p.verb, p.intent) for p in batch]
        try:
            seqs = await self._journal.append(entries)
        except EdgeAgentError as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(IntentError(f"not journaled: {exc}"))
            self._note(host, "journal_error", None, error=str(exc))
            return False
        crashed = False
        work: list[tuple[_Pending, int, list[Effect]]] = []
        for pending, seq in zip(batch, seqs, strict=True):
            if seq <= host.seq:  # an idempotency key journaled before: applied then
                _resolve(pending, Delivery(host.id, seq, duplicate=True))
                continue
            try:
                state, effects = host.rtype.handle(
                    host.state, pending.verb, pending.intent, host.options
                )
            except Exception as exc:
                host.stats.failed += 1
                host.last_error = f"{pending.intent.name} (seq {seq}): {exc!r}"
                host.seq = seq
                await self._journal.mark_failed(host.id, seq, repr(exc))
                self._note(host, "handler_error", pending.intent.context.trace_id,
                           seq=seq, error=repr(exc))  # fmt: skip
                _resolve(pending, Delivery(host.id, seq))  # journaled: acknowledged anyway
                crashed = True
                continue
            host.state, host.seq = state, seq
            host.stats.applied += 1
            host.since_snapshot += 1
            if effects:
                work.append((pending, seq, effects))
            else:
                _resolve(pending, Delivery(host.id, seq))
        # An intent with effects is acknowledged once they have been carried out (or handed
        # on): when `intent send` returns, a timer it set is armed, durably.
        for pending, seq, effects in work:
            await self._execute(host, seq, pending.intent, enumerate(effects))
            _resolve(pending, Delivery(host.id, seq))
        host.effects_run = host.seq
        if work:
            await self._mark_effects_done(host)
        if host.since_snapshot >= host.config.snapshot_every:
            state_json(host.state)  # a state that is not JSON is the type's bug: say which
            await self._journal.snapshot(host.id, host.seq, host.state)
            # Say which effects have run, or compaction could never drop the intents of a
            # reactor whose intents have no effects at all.
            await self._mark_effects_done(host)
            host.stats.snapshots += 1
            host.since_snapshot = 0
        return crashed

    async def _supervise(self, host: ReactorHost) -> None:
        """A handler raised: go failed, rebuild from the journal and restart with backoff."""
        self._set(host, transition(host.lifecycle, Command.CRASH, reactor=host.id))
        now = time.monotonic()
        host.crashes.append(now)
        while host.crashes and now - host.crashes[0] > self._restart.restart_window:
            host.crashes.popleft()
        if len(host.crashes) > self._restart.max_restarts:
            self._refuse_waiting(host, _not_running(host))
            self._note(host, "gave_up", None, crashes=len(host.crashes))
            return
        delay = min(
            self._restart.first_backoff * 2 ** (len(host.crashes) - 1), self._restart.max_backoff
        )
        await asyncio.sleep(delay)
        if host.lifecycle is not LifecycleState.FAILED:
            return  # stopped or undeployed meanwhile
        await self._recover(host)
        self._set(host, transition(host.lifecycle, Command.RESTART, reactor=host.id))
        host.stats.restarts += 1
        await self._execute_replayed(host)
        host.wakeup.set()

    # -- effects -------------------------------------------------------------------------------
    async def _execute(
        self, host: ReactorHost, seq: int, intent: Intent, effects: Iterable[tuple[int, Effect]]
    ) -> None:
        """Carry out ``effects``, each (its index in what ``handle`` returned, the effect)."""
        for index, effect in effects:
            key = f"{host.id}:{seq}:{index}"
            host.stats.effects += 1
            try:
                await self._execute_one(host, seq, key, intent, effect)
            except EdgeAgentError as exc:
                host.stats.effect_errors += 1
                self._note(host, "effect_error", intent.context.trace_id, key=key, error=str(exc))

    async def _execute_one(
        self, host: ReactorHost, seq: int, key: str, intent: Intent, effect: Effect
    ) -> None:
        trace = intent.context.trace_id
        if isinstance(effect, Emit):
            name = resolve_name(effect.name, host.id)
            await self._hand_off(
                host, seq, "emit", self._emit(host, name, effect.payload, trace, key)
            )
        elif isinstance(effect, Forward) and self._peers is not None:
            await self._hand_off(host, seq, "forward", self._forward(host, effect, trace, key))
        elif isinstance(effect, SetTimer):
            due = intent.context.at + effect.delay
            name = resolve_name(effect.name, host.id)
            await self._journal.set_timer(
                Timer(host.id, effect.key, due, name, dict(effect.payload))
            )
            self._arm(host.id, effect.key, due, name, effect.payload)
        elif isinstance(effect, CancelTimer):
            await self._journal.cancel_timer(host.id, effect.key)
            self._timer_keys.pop((host.id, effect.key), None)
            self._timer_change.set()
        elif isinstance(effect, Log):
            level = logging.getLevelName(effect.level.upper())
            log.log(level if isinstance(level, int) else logging.INFO,
                    "reactor %s [%s]: %s", host.id, trace, effect.message)  # fmt: skip
        else:
            sink = self._sinks.get(type(effect))
            if sink is None:
                host.stats.effects_unsupported += 1
                self._note(host, "effect_unsupported", trace, key=key,
                           effect=type(effect).__name__)  # fmt: skip
                return
            await sink.execute(host.id, key, effect)

    async def _emit(
        self, host: ReactorHost, name: str, payload: Mapping[str, Any], trace: str, key: str
    ) -> None:
        try:
            await self.submit(
                name,
                payload,
                principal=f"reactor:{host.id}",
                source=f"reactor:{host.id}",
                trace_id=trace,
                idempotency_key=key,
                sender=host.id,
            )
        except IntentError as exc:
            host.stats.effect_errors += 1
            self._note(host, "emit_refused", trace, key=key, intent=name, error=str(exc))

    async def _forward(self, host: ReactorHost, effect: Forward, trace: str, key: str) -> None:
        assert self._peers is not None
        try:
            await self._peers.send(host.id, key, trace, effect)
        except EdgeAgentError as exc:
            host.stats.effect_errors += 1
            self._note(host, "forward_failed", trace, key=key, to=effect.to, intent=effect.name,
                       error=str(exc))  # fmt: skip

    async def _hand_off(
        self, host: ReactorHost, seq: int, what: str, work: Coroutine[Any, Any, None]
    ) -> None:
        """Run an emit or a forward in a task of its own: the reactor goes on with its next
        intents meanwhile (an emit to its own verbs would otherwise wait for itself). Until the
        task is done, ``handoffs_done`` stays below ``seq``: a restart runs the effect again,
        under the same idempotency key."""
        try:
            await self._handoff_room.acquire()
        except BaseException:
            work.close()
            raise
        host.handoffs[seq] = host.handoffs.get(seq, 0) + 1

        async def run() -> None:
            try:
                await work
            finally:
                self._handoff_room.release()
            # Not reached when cancelled (the agent stopping): that effect is not done.
            left = host.handoffs[seq] - 1
            if left:
                host.handoffs[seq] = left
            else:
                del host.handoffs[seq]

        self._spawn(run(), f"edgeagent[reactor:{host.id}].{what}")

    async def _mark_effects_done(self, host: ReactorHost) -> None:
        """Advance the marks as far as finished effects allow. They are separate so that a
        forward retrying for a minute holds back only the re-run of emits and forwards (which
        their keys make harmless), not of serial writes and timers."""
        ran = host.effects_run
        handed = min(ran, min(host.handoffs) - 1) if host.handoffs else ran
        if ran > host.marked.effects or handed > host.marked.handoffs:
            await self._journal.mark_effects_done(host.id, ran, handoffs=handed)
            host.marked = host.marked.join(Marks(ran, handed))

    # -- timers --------------------------------------------------------------------------------
    def _arm(
        self, reactor: str, key: str, due: float, name: str, payload: Mapping[str, Any]
    ) -> None:
        self._timer_keys[(reactor, key)] = due
        heapq.heappush(self._timers, _Armed(due, reactor, key, name, dict(payload)))
        self._timer_change.set()

    async def _run_timers(self) -> None:
        while True:
            self._timer_change.clear()
            while (
                self._timers
                and self._timer_keys.get((self._timers[0].reactor, self._timers[0].key))
                != self._timers[0].due
            ):
                heapq.heappop(self._timers)  # cancelled or replaced
            wait = None if not self._timers else self._timers[0].due - self._clock()
            if wait is not None and wait <= 0:
                armed = heapq.heappop(self._timers)
                await self._fire(armed)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._timer_change.wait()

    async def _fire(self, armed: _Armed) -> None:
        slot = (armed.reactor, armed.key)
        try:
            await self.submit(
                armed.name,
                armed.payload,
                principal=f"reactor:{armed.reactor}",
                source="timer",
                idempotency_key=f"timer:{armed.reactor}:{armed.key}:{armed.due!r}",
                sender=armed.reactor,
            )
        except IntentError as exc:
            log.warning("timer %s of reactor %s: %s", armed.key, armed.reactor, exc)
            if self._run_log is not None:
                self._run_log.write("timer_refused", reactor=armed.reactor, key=armed.key,
                                    error=str(exc))  # fmt: skip
        if self._timer_keys.get(slot) == armed.due:  # not re-armed by the intent it sent
            del self._timer_keys[slot]
            await self._journal.cancel_timer(armed.reactor, armed.key)

    # -- helpers -------------------------------------------------------------------------------
    def _host(self, reactor_id: str) -> ReactorHost:
        host = self._hosts.get(reactor_id)
        if host is None:
            known = ", ".join(sorted(self._hosts)) or "none"
            raise LifecycleError(f"no reactor {reactor_id!r}; reactors: {known}")
        return host

    def _set(self, host: ReactorHost, state: LifecycleState) -> None:
        if state is not host.lifecycle:
            old, host.lifecycle = host.lifecycle, state
            self._note(host, "lifecycle", None, old=str(old), new=str(state))

    def _reroute(self, host: ReactorHost) -> None:
        self._unroute(host)
        for verb in host.rtype.verbs:
            self._routes.setdefault(f"{host.id}.{verb}", []).append((host, verb))
        for name, verb in host.subscribe.items():
            self._routes.setdefault(name, []).append((host, verb))

    def _unroute(self, host: ReactorHost) -> None:
        for name in list(self._routes):
            targets = [t for t in self._routes[name] if t[0] is not host]
            if targets:
                self._routes[name] = targets
            else:
                del self._routes[name]

    def _refuse_waiting(self, host: ReactorHost, reason: str) -> None:
        while host.mailbox or host.blocked:
            pending = host.mailbox.popleft() if host.mailbox else host.blocked.popleft()
            if not pending.future.done():
                error = IntentError(reason)
                error.code = "stopped"
                pending.future.set_exception(error)

    def _note(self, host: ReactorHost, kind: str, trace_id: str | None, **detail: Any) -> None:
        if self._run_log is not None:
            self._run_log.write(kind, reactor=host.id, trace_id=trace_id, **detail)


def _not_running(host: ReactorHost) -> str:
    hint = f"; start it with `edgeagent reactors start {host.id}`"
    if host.lifecycle is LifecycleState.FAILED and host.last_error:
        return f"reactor {host.id!r} is failed ({host.last_error}){hint}"
    return f"reactor {host.id!r} is {host.lifecycle}{hint}"


def _resolve(pending: _Pending, delivery: Delivery) -> None:
    if not pending.future.done():
        pending.future.set_result(delivery)


def _entry_of(reactor: str, verb: str, intent: Intent) -> Entry:
    context = intent.context
    return Entry(
        seq=0,
        at=context.at,
        reactor=reactor,
        verb=verb,
        name=intent.name,
        payload=dict(intent.payload),
        principal=context.principal,
        source=context.source,
        trace_id=context.trace_id,
        idem=None if context.idempotency_key is None else f"{reactor}/{context.idempotency_key}",
    )


def _handed_off(effect: Effect) -> bool:
    """Run in a task of its own, and covered by the ``handoffs_done`` mark."""
    return isinstance(effect, Emit | Forward)


def _intent_of(entry: Entry) -> Intent:
    idem = entry.idem.partition("/")[2] if entry.idem else None
    return intent_of(
        entry.name,
        entry.payload,
        principal=entry.principal,
        trace_id=entry.trace_id,
        source=entry.source,
        at=entry.at,
        idempotency_key=idem,
    )


def _asdict(stats: Any) -> dict[str, int]:
    return {name: getattr(stats, name) for name in stats.__slots__}

"""The reactor runtime: the asyncio adapter that journals, applies and carries out intents.

Theory of operation
-------------------
``ReactorRuntime.submit`` is the one way in, whoever sends (the CLI over the control socket,
MQTT, a peer, a reactor's ``Emit``, a timer). The rules are the dispatch core's
(``dispatch``: route, capability, payload, mailbox, marks, restarts, timers); this module
carries out what it decides. In order:

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
``max_restarts`` crashes within ``restart_window`` (measured on the runtime's ``clock``)
until started again.

Timers are durable rows in the journal; one task fires them (a timer due while the agent was
down fires at start). Effects the runtime cannot carry out itself (``SerialWrite``: the
agent's ``serial.ports.SerialPorts``; ``Publish``) go to a sink registered for their type;
without one they are counted and logged, never silently dropped.

Tasks. The runtime is a ``resource.TaskOwner`` named ``reactors``: each reactor's loop
(``edgeagent[reactors].reactor:<id>``) and the timer loop are supervised children (a loop
that raises outside a handler, a journal that failed a write say, is logged, counted and run
again after a backoff; a reactor loop run again first rebuilds its state from the journal),
and each emit or forward is a one-off child. Closing refuses the senders still waiting,
cancels every task, and writes the final marks once they have all ended. ``report()`` gives
per-reactor counters, mailbox depths and lifecycle states.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from edgeagent.config.model import ReactorConfig
from edgeagent.errors import EdgeAgentError, IntentError, LifecycleError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.dispatch import (
    Admission,
    ArmedTimer,
    Delivery,
    Denial,
    Dispatcher,
    Mailbox,
    ReactorSlot,
    TimerQueue,
    hold_for,
)
from edgeagent.reactors.dispatch import Receipt as Receipt
from edgeagent.reactors.dispatch import RestartPolicy as RestartPolicy
from edgeagent.reactors.dispatch import Submission as Submission
from edgeagent.reactors.journal import AuditRecord, Entry, Journal, Timer
from edgeagent.reactors.lifecycle import Command, LifecycleState, transition
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
from edgeagent.resource import LoopState, Number, PartState, Report, Supervised, TaskOwner

log = logging.getLogger("edgeagent.reactors")

MAX_HANDOFFS_IN_FLIGHT = 256  # emits being submitted and forwards being sent, at once
DEFAULT_RESTART = RestartPolicy()


class EffectSink(Protocol):
    """Carries out one kind of effect (MQTT publish, serial write) for the runtime."""

    async def execute(self, reactor: str, key: str, effect: Effect) -> None: ...


class PeerSender(Protocol):
    """Carries a ``Forward`` to a peer (``remote.ForwardEffects``, over the mesh). Returns
    once the peer has accepted it; raises ``EdgeAgentError`` when it gives up."""

    async def send(self, reactor: str, key: str, trace_id: str, effect: Forward) -> None: ...


@dataclass(slots=True)
class ReactorStats:
    applied: int = 0
    failed: int = 0
    restarts: int = 0
    effects: int = 0
    effects_unsupported: int = 0
    effect_errors: int = 0
    snapshots: int = 0


@dataclass(slots=True)
class _Pending:
    intent: Intent
    verb: str
    future: asyncio.Future[Delivery]
    hold_until: float | None = None  # monotonic; None: journal with the next batch


class TraceIds:
    """16 hex chars: a random per-run prefix and a counter. Unique within the device's history
    with overwhelming odds, and cheap: one is minted per intent, on the hot path."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFF:08x}"


class ReactorHost(ReactorSlot[_Pending]):
    """One reactor: what the dispatch core keeps for it (``ReactorSlot``: lifecycle, mailbox,
    marks, crashes) and what the runtime adds: its type, state, counters and task."""

    def __init__(
        self,
        config: ReactorConfig,
        rtype: ReactorType,
        options: dict[str, Any],
        restart: RestartPolicy,
    ) -> None:
        super().__init__(
            config.id,
            rtype.verbs,
            requires=dict(config.requires),
            subscribe=dict(config.subscribe),
            mailbox=Mailbox(config.mailbox, config.overflow),
            restart=restart,
        )
        self.config = config
        self.rtype = rtype
        self.options = options
        self.state: Any = rtype.initial_state(options)
        self.seq = 0  # the last journal seq applied to ``state``
        self.stats = ReactorStats()
        self.since_snapshot = 0
        # Set whenever there is something to look at: intents queued, the reactor started.
        self.wakeup = asyncio.Event()
        self.runner: Supervised | None = None  # the reactor's loop, supervised
        self.runs = 0  # how often the loop was started (more than once: after it raised)
        # (seq, intent, [(index, effect)]) replayed past the marks: to run again
        self.unconfirmed: list[tuple[int, Intent, list[tuple[int, Effect]]]] = []

    def describe(self, *, with_state: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "type": self.rtype.name,
            "state": str(self.lifecycle),
            "seq": self.seq,
            "mailbox": self.mailbox.document(),
            "stats": _asdict(self.stats),
            "verbs": sorted(self.verbs),
            "subscribe": self.subscribe,
            "last_error": self.last_error,
        }
        if with_state:
            doc["reactor_state"] = self.state
            doc["options"] = self.options
            doc["requires"] = {name: list(caps) for name, caps in sorted(self.requires.items())}
        return doc

    def counters(self) -> dict[str, Number]:
        mailbox = self.mailbox
        return {
            "accepted": mailbox.stats.admitted,
            **_asdict(self.stats),
            "waiting": len(mailbox.waiting),
            "blocked_senders": len(mailbox.blocked),
            "rejected_full": mailbox.stats.rejected_full,
            "dropped": mailbox.stats.dropped,
            "handoffs_in_flight": self.effect_marks.in_flight,
            "seq": self.seq,
        }


class ReactorRuntime(TaskOwner):
    """Every configured reactor, the router in front of them and the timers behind them.

    ``fatal``: a task of the runtime that fails outside its supervised loops (a bug in an
    emit or forward) ends the runtime's tasks and, by default, asks the composition root to
    stop the agent (``TaskOwner.failed``), as an unexpected crash always did.
    """

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
        restart: RestartPolicy = DEFAULT_RESTART,
        types: Callable[[str], ReactorType] = find_type,
        fatal: bool = True,
    ) -> None:
        super().__init__("reactors", fatal=fatal)
        self._journal = journal
        self._run_log = run_log
        self._sinks = dict(sinks or {})
        self._peers = peers
        self._clock = clock
        self._max_batch = max_batch
        hosts = []
        for config in reactors:
            rtype = types(config.type)
            options = rtype.options.validate(dict(config.options), path="options")
            hosts.append(ReactorHost(config, rtype, options, restart))
        self._dispatch: Dispatcher[ReactorHost] = Dispatcher(policy, hosts)
        self._hosts = {host.id: host for host in hosts}
        self._children: set[asyncio.Task[Any]] = set()  # cancelled first at close
        self._timers = TimerQueue()
        self._timer_change = asyncio.Event()
        self._handoff_room = asyncio.Semaphore(MAX_HANDOFFS_IN_FLIGHT)
        self._trace_ids = TraceIds()
        self._started = False
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Deploy and start the enabled reactors (each replayed from the journal), arm the
        journal's timers, run the effects not marked done, and send first-boot starts."""
        if self._closing:
            raise LifecycleError("the reactor runtime was closed; build a new one to start")
        if self._started:
            return
        self._started = True
        await self.start_tasks()
        try:
            for host in self._hosts.values():
                if host.config.enabled:
                    await self._deploy(host)
                    self._start(host)
            for timer in await self._journal.timers():
                self._arm(timer.reactor, timer.key, timer.due, timer.name, timer.payload)
            self.supervise(self._run_timers, "timers")
            for host in self._hosts.values():
                await self._execute_replayed(host)
            for host in self._hosts.values():
                await self._first_start(host)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Refuse the senders still waiting, cancel every task, and once they have all ended
        write the final marks. Idempotent."""
        if not self._started or self._closing:
            return
        self._closing = True
        for host in self._hosts.values():
            self._refuse_waiting(host, "the agent is stopping")
        # Reactor tasks may be mid-commit: what got journaled is replayed at the next start.
        # Every child is cancelled before anything awaits, so none runs on and spawns into
        # a group that is closing.
        for task in list(self._children):
            task.cancel()
        try:
            await self.stop_tasks()
        finally:
            # Every task has ended: emits and forwards that finished since the last batch
            # are not to be run again (cancelled ones are, and the marks stay below them).
            for host in self._hosts.values():
                with contextlib.suppress(EdgeAgentError):
                    await self._mark_effects_done(host)

    def spawn(
        self, work: Coroutine[Any, Any, Any], what: str, *, isolated: bool = False
    ) -> asyncio.Task[Any]:
        """``TaskOwner.spawn``, keeping the task so ``close`` can cancel it first."""
        task = super().spawn(work, what, isolated=isolated)
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return task

    # -- the stats seam ------------------------------------------------------------------------
    def counters(self) -> Mapping[str, Number]:
        """Totals over the reactors, then ``<reactor>.<counter>`` for each."""
        hosts = self._hosts.values()
        per = {host.id: host.counters() for host in hosts}
        totals: dict[str, Number] = {
            "reactors": len(per),
            "reactors_running": sum(h.lifecycle is LifecycleState.RUNNING for h in hosts),
            "reactors_failed": sum(h.lifecycle is LifecycleState.FAILED for h in hosts),
            "timers_armed": len(self._timers),
        }
        for name in ("accepted", "applied", "failed", "effect_errors", "waiting"):
            totals[name] = sum(counters[name] for counters in per.values())
        for reactor, counters in per.items():
            totals.update({f"{reactor}.{name}": value for name, value in counters.items()})
        return totals

    def detail(self) -> Mapping[str, Any]:
        return {
            "reactors": {
                host.id: {"state": str(host.lifecycle), "last_error": host.last_error}
                for host in self._hosts.values()
            }
        }

    def report(self) -> Report:
        """``TaskOwner.report``; a failed reactor (given up on) makes the runtime degraded."""
        report = super().report()
        if report.state is PartState.RUNNING and any(
            host.lifecycle is LifecycleState.FAILED for host in self._hosts.values()
        ):
            return dataclasses.replace(report, state=PartState.DEGRADED)
        return report

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
        except Denial as denial:
            await self._deny(name, principal, denial.trace, denial.reason)
            raise
        return Receipt(name, trace, tuple([await delivery for delivery in deliveries]))

    def post_many(
        self,
        items: Sequence[Submission],
        done: Callable[[Submission, IntentError | None], None],
    ) -> None:
        """Admit ``items`` now and return without waiting for them to be journaled and
        applied; ``done(item, error)`` is called for each when it is (``error`` None) or when
        it is refused. For senders that need no acknowledgement (sensor readings)."""
        denied: list[tuple[Submission, Denial]] = []
        for item in items:
            try:
                _, deliveries = self._begin(item, None)
            except Denial as denial:
                denied.append((item, denial))
                done(item, denial)
                continue
            except IntentError as exc:
                done(item, exc)
                continue
            for future in deliveries:
                future.add_done_callback(partial(_posted, item, done))
        for item, refused in denied:
            self.spawn(self._deny(item.name, item.principal, refused.trace, refused.reason),
                       "audit", isolated=True)  # fmt: skip

    async def submit_many(self, items: Sequence[Submission]) -> list[Receipt | IntentError]:
        """``submit`` for a batch, in order, answered per item (an error is returned, not
        raised): all are admitted before any is awaited, so a stream's batch costs one pass
        through the mailbox and one group commit instead of one task per intent."""
        begun: list[tuple[str, list[asyncio.Future[Delivery]]] | IntentError] = []
        denied: list[tuple[Submission, Denial]] = []
        for item in items:  # no await in here: the batch is admitted in its own order
            try:
                begun.append(self._begin(item, None))
            except Denial as denial:
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
        target. Raises ``Denial`` (to be audited by the caller) or another ``IntentError``."""
        if self._closing or not self.running:
            raise _stopped("the reactor runtime is not running")
        name = item.name
        targets = self._dispatch.route(name)
        trace = item.trace_id or self._trace_ids.next()
        admitted = self._dispatch.check(
            name, targets, item.payload, principal=item.principal, sender=sender, trace=trace
        )
        at = self._clock()
        hold = time.monotonic() + item.durable_within if item.durable_within > 0 else None
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
                hold,
            )
            for host, verb, checked in admitted
        ]

    def takes(self, name: str) -> bool:
        """Whether some running reactor takes intent ``name`` (see ``Dispatcher.takes``)."""
        return self._dispatch.takes(name)

    def reactors(self) -> list[dict[str, Any]]:
        return [host.describe() for host in self._hosts.values()]

    def show(self, reactor_id: str) -> dict[str, Any]:
        return self._dispatch.slot(reactor_id).describe(with_state=True)

    def routes(self) -> dict[str, list[str]]:
        """Intent name -> ``<reactor>.<verb>`` targets (for ``explain``)."""
        return self._dispatch.routes()

    async def command(self, reactor_id: str, command: str) -> dict[str, Any]:
        """``start`` / ``stop`` / ``deploy`` / ``undeploy`` from the CLI or control API."""
        host = self._dispatch.slot(reactor_id)
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
                host.restart_budget.reset()
            self._start(host)
        else:
            # The task finishes the batch it holds (journaled intents must be applied) and
            # then idles; intents still waiting are refused.
            self._set(host, transition(host.lifecycle, wanted, reactor=host.id))
            self._refuse_waiting(host, host.not_running())
            if wanted is Command.UNDEPLOY:
                self._dispatch.close_routes(host)
        return host.describe()

    # -- admission -----------------------------------------------------------------------------
    def _admit(
        self, host: ReactorHost, intent: Intent, verb: str, hold_until: float | None = None
    ) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        offered = host.mailbox.offer(_Pending(intent, verb, future, hold_until))
        admission = offered.admission
        if admission is Admission.REJECTED:
            self._note(host, "mailbox_full", intent.context.trace_id, policy=host.config.overflow)
            error = IntentError(f"reactor {host.id!r} mailbox is full ({host.config.mailbox})")
            error.code = "full"
            raise error
        if admission is Admission.BLOCKED:
            return future
        if offered.dropped is not None:
            oldest = offered.dropped
            dropped = IntentError(f"dropped: reactor {host.id!r} mailbox was full (drop-oldest)")
            dropped.code = "dropped"
            if not oldest.future.done():
                oldest.future.set_exception(dropped)
            self._note(host, "dropped", oldest.intent.context.trace_id)
        if offered.pressure is not None:
            self._note(host, "queue_pressure", None, waiting=offered.pressure)
        host.wakeup.set()
        return future

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
        self._dispatch.open_routes(host)

    async def _recover(self, host: ReactorHost) -> None:
        """Snapshot plus replay; effects not marked done are kept for ``_execute_replayed``."""
        state = host.rtype.initial_state(host.options)
        seq = 0
        snapshot = await self._journal.latest_snapshot(host.id)
        if snapshot is not None:
            seq, state = snapshot
        failed = await self._journal.failed_seqs(host.id)
        marks = await self._journal.marks(host.id)
        rerun = host.effect_marks.recovered(marks.effects, marks.handoffs)
        # The replay loop: a million intents take seconds, so names are bound once here.
        handle, options, settled, again_of = (
            host.rtype.handle, host.options, rerun.settled, rerun.again
        )  # fmt: skip
        async for batch in self._journal.replay(host.id, seq):
            for entry in batch:
                seq = entry.seq
                if seq in failed:
                    continue
                intent = _replayed_intent(entry)
                try:
                    state, effects = handle(state, entry.verb, intent, options)
                except Exception as exc:  # it failed live too; we died before marking it
                    log.debug("replay of %s seq %d failed again: %r", host.id, entry.seq, exc)
                    continue
                if effects and seq > settled:
                    again = again_of(seq, effects)
                    if again:
                        host.unconfirmed.append((seq, intent, again))
        host.state, host.seq = state, seq
        host.since_snapshot = 0

    async def _execute_replayed(self, host: ReactorHost) -> None:
        """At-least-once: effects of intents after the marks run again."""
        work, host.unconfirmed = host.unconfirmed, []
        for seq, intent, effects in work:
            await self._execute(host, seq, intent, effects)
        host.effect_marks.ran_through(host.seq)
        if work:
            await self._mark_effects_done(host)

    async def _first_start(self, host: ReactorHost) -> None:
        """A reactor whose type has a ``start`` verb gets ``<id>.start`` once, the first time
        it runs (nothing journaled for it yet): how a schedule arms its first timer. Later
        boots need nothing: its timers are in the journal."""
        if host.seq or "start" not in host.verbs or host.lifecycle is not LifecycleState.RUNNING:
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
        if self.running and (host.runner is None or host.runner.state is LoopState.DONE):
            host.runner = self.supervise(partial(self._run, host), f"reactor:{host.id}")
        host.wakeup.set()

    async def _run(self, host: ReactorHost) -> None:
        """The reactor's loop: take a batch, journal and apply it, and after a handler crash
        restart the reactor. Run again by supervision after the loop itself raised, it first
        rebuilds the state from the journal (a batch may be journaled but not applied)."""
        if host.runs:
            await self._recover(host)
            await self._execute_replayed(host)
            host.wakeup.set()
        host.runs += 1
        mailbox = host.mailbox
        while True:
            await host.wakeup.wait()
            host.wakeup.clear()
            while mailbox.waiting and host.lifecycle is LifecycleState.RUNNING:
                wait = hold_for(time.monotonic(), (p.hold_until for p in mailbox.waiting),
                                len(mailbox.waiting), self._max_batch)  # fmt: skip
                if wait > 0:  # readings only: let more join this commit (one fsync for all)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await host.wakeup.wait()
                    host.wakeup.clear()
                    continue
                taken = mailbox.take(self._max_batch)
                if taken.moved:
                    host.wakeup.set()
                if taken.pressure is not None:
                    self._note(host, "queue_pressure", None, waiting=taken.pressure)
                if taken.relieved is not None:
                    self._note(host, "queue_pressure_cleared", None, waiting=taken.relieved)
                try:
                    crashed = await self._apply_batch(host, taken.batch)
                except Exception as exc:
                    reason = (
                        f"reactor {host.id!r} failed applying it ({exc!r}); it may be journaled"
                    )
                    for pending in taken.batch:
                        if not pending.future.done():
                            pending.future.set_exception(IntentError(reason))
                    raise
                if crashed:
                    await self._after_crash(host)
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
        host.effect_marks.ran_through(host.seq)
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

    async def _after_crash(self, host: ReactorHost) -> None:
        """A handler raised: go failed, then rebuild from the journal and restart after the
        backoff the restart budget gives, or stay failed when it gives up."""
        self._set(host, transition(host.lifecycle, Command.CRASH, reactor=host.id))
        verdict = host.restart_budget.crashed(self._clock())
        if verdict.delay is None:
            self._refuse_waiting(host, host.not_running())
            self._note(host, "gave_up", None, crashes=verdict.crashes)
            return
        await asyncio.sleep(verdict.delay)
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
            self._timers.cancel(host.id, effect.key)
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
        marks = host.effect_marks
        marks.handing_off(seq)

        async def run() -> None:
            try:
                await work
            finally:
                self._handoff_room.release()
            # Not reached when cancelled (the agent stopping): that effect is not done.
            marks.handoff_finished(seq)

        self.spawn(run(), f"reactor:{host.id}.{what}")

    async def _mark_effects_done(self, host: ReactorHost) -> None:
        """Advance the journal's marks as far as finished effects allow (``EffectMarks``)."""
        due = host.effect_marks.due()
        if due is not None:
            effects, handoffs = due
            await self._journal.mark_effects_done(host.id, effects, handoffs=handoffs)
            host.effect_marks.written(effects, handoffs)

    # -- timers --------------------------------------------------------------------------------
    def _arm(
        self, reactor: str, key: str, due: float, name: str, payload: Mapping[str, Any]
    ) -> None:
        self._timers.arm(reactor, key, due, name, payload)
        self._timer_change.set()

    async def _run_timers(self) -> None:
        timers = self._timers
        while True:
            self._timer_change.clear()
            wait = None
            next_due = timers.next_due()
            if next_due is not None:
                now = self._clock()
                armed = timers.due(now)
                if armed is not None:
                    await self._fire(armed)
                    continue
                wait = next_due - now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._timer_change.wait()

    async def _fire(self, armed: ArmedTimer) -> None:
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
        if self._timers.fired(armed):  # not re-armed by the intent it sent
            await self._journal.cancel_timer(armed.reactor, armed.key)

    # -- helpers -------------------------------------------------------------------------------
    def _set(self, host: ReactorHost, state: LifecycleState) -> None:
        if state is not host.lifecycle:
            old, host.lifecycle = host.lifecycle, state
            self._note(host, "lifecycle", None, old=str(old), new=str(state))

    def _refuse_waiting(self, host: ReactorHost, reason: str) -> None:
        for pending in host.mailbox.clear():
            if not pending.future.done():
                pending.future.set_exception(_stopped(reason))

    def _note(self, host: ReactorHost, kind: str, trace_id: str | None, **detail: Any) -> None:
        if self._run_log is not None:
            self._run_log.write(kind, reactor=host.id, trace_id=trace_id, **detail)


def _stopped(reason: str) -> IntentError:
    error = IntentError(reason)
    error.code = "stopped"
    return error


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


def _replayed_intent(entry: Entry) -> Intent:
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


def _posted(
    item: Submission,
    done: Callable[[Submission, IntentError | None], None],
    future: asyncio.Future[Delivery],
) -> None:
    if future.cancelled():
        done(item, _stopped("the reactor runtime stopped before it was journaled"))
        return
    error = future.exception()
    done(item, error if isinstance(error, IntentError) or error is None
         else IntentError(f"not applied: {error!r}"))  # fmt: skip

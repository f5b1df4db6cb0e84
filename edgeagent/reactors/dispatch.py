"""The reactor dispatch core: where an intent goes, whether it may, whether there is room for
it, which effects still have to run, and when a crashed reactor or a timer is due. Pure.

Theory of operation
-------------------
``runtime.ReactorRuntime`` is the asyncio adapter around this module: it awaits the journal,
the effects and the sleeps, and asks this module every question whose answer is a rule.
Nothing here imports asyncio or touches the journal: time comes in as ``now`` and what the
adapter has to do comes back as values. ``tests/unit/test_reactors_dispatch.py`` drives it
with a simulated clock, as ``tests/unit/test_mesh_membership.py`` drives the membership core.

Each reactor is a ``ReactorSlot``: its verbs, what senders must hold, its lifecycle state,
its ``Mailbox``, its ``EffectMarks`` and its ``RestartBudget``. The adapter's own per-reactor
object (state, counters, task) extends it.

**Route** (``Dispatcher.route``). ``<id>.<verb>`` for every verb of a deployed reactor, and the
names reactors ``subscribe`` to; one name may go to several reactors. Deploying a reactor
opens its routes, undeploying closes them. An unknown name is refused saying why: no such
verb (listing the verbs), a reactor that is not running, or no taker at all (listing the names
that have one).

**Check** (``Dispatcher.check``), for every target in turn; the first refusal refuses the
whole intent, so nothing is admitted anywhere. The sender's principal must hold what the
target ``requires`` for the name (``<id>:<verb>`` when not configured), unless the sender is
the target itself (its timers, ``Emit(".x")``): a ``Denial`` carries the reason and the trace
id the adapter audits it under. Then the target must be running, and the payload must pass
the verb's schema (``PayloadError`` names the field; defaults are filled in).

**Admit** (``Mailbox.offer``). A mailbox holds the intents admitted but not journaled yet, at
most ``size``. When it is full its overflow policy decides: ``reject`` refuses the new intent,
``drop-oldest`` refuses the oldest waiting one and queues the new one, ``block`` parks the new
one behind the mailbox (its sender waits); parked intents move in, oldest first, as
``Mailbox.take`` drains the mailbox. Queue pressure is raised when the mailbox reaches
``PRESSURE_HIGH`` of its size and cleared when it drains to ``PRESSURE_LOW`` (hysteresis, so
a mailbox hovering at the line does not flood the run log).

**Marks** (``EffectMarks``). Effects run at least once: after a restart, those of intents
above the journal's marks run again. ``effects`` covers the effects the runtime carries out
itself (timers, serial writes, publishes, logs), ``handoffs`` the emits and forwards it hands
to tasks of their own, and it stays below the lowest intent whose handoffs have not finished.
So a forward retrying for a minute holds back only the re-run of emits and forwards (which
their idempotency keys make harmless), never of serial writes. ``EffectMarks.due`` says what
to write; ``EffectMarks.recovered`` turns the journal's marks into a ``Rerun``, which picks
the effects of a replayed intent that must run again.

**Restart** (``RestartBudget``). A handler that raises makes its reactor ``failed``; it is
restarted after ``first_backoff * 2**(n-1)`` seconds (at most ``max_backoff``), where ``n``
counts its crashes within the last ``restart_window`` seconds, until more than
``max_restarts`` fall within the window: then it stays failed until an operator starts it.

**Timers** (``TimerQueue``). Armed timers in due order; arming a key that is armed replaces
it, cancelling forgets it. ``due(now)`` hands out the first timer due by ``now``; after its
intent has been sent, ``fired`` says whether the timer is still the armed one (and so is
forgotten) or was armed again by that very intent.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from edgeagent.config.model import Overflow
from edgeagent.errors import CapabilityDenied, IntentError, LifecycleError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.lifecycle import LifecycleState
from edgeagent.reactors.model import Effect, Emit, Forward
from edgeagent.reactors.schema import Schema

PRESSURE_HIGH = 0.8  # a mailbox this full is reported as queue pressure ...
PRESSURE_LOW = 0.5  # ... until it drains below this

Item = TypeVar("Item")  # what the adapter keeps per admitted intent (the intent, its reply)


# -- what goes in and what comes out -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """One intent offered to ``ReactorRuntime.submit_many`` (``submit`` takes the same).

    ``durable_within``: seconds the intent may wait in the mailbox before it is journaled,
    so that intents that are not commands (sensor readings) share one commit instead of
    costing one each (``hold_for``); 0 journals it with the next batch."""

    name: str
    payload: Mapping[str, Any]
    principal: str
    source: str
    trace_id: str | None = None
    idempotency_key: str | None = None
    durable_within: float = 0.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an accepted intent went: the reactor and the seq the journal gave it there."""

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


class Denial(CapabilityDenied):
    """A refusal for want of a capability, with the trace id to audit it under."""

    def __init__(self, reason: str, trace: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trace = trace


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How a reactor whose handler raised is restarted (see ``RestartBudget``)."""

    first_backoff: float = 0.1
    max_backoff: float = 30.0
    max_restarts: int = 5
    restart_window: float = 60.0


# -- the mailbox -----------------------------------------------------------------------------------


class Admission(enum.Enum):
    """What ``Mailbox.offer`` did with an intent."""

    QUEUED = "queued"
    BLOCKED = "blocked"  # parked behind a full mailbox (overflow: block): its sender waits
    REJECTED = "rejected"  # the mailbox is full (overflow: reject): refuse it
    DROPPED = "dropped"  # queued; the oldest waiting intent made room (refuse that one)


@dataclass(frozen=True, slots=True)
class Offered(Generic[Item]):
    admission: Admission
    dropped: Item | None = None  # DROPPED: the intent to refuse instead
    pressure: int | None = None  # queue pressure was raised: how many were waiting then


@dataclass(frozen=True, slots=True)
class Taken(Generic[Item]):
    batch: list[Item]  # to journal and apply, oldest first
    moved: int  # parked intents that moved into the mailbox
    pressure: int | None  # queue pressure was raised while they moved in: waiting then
    relieved: int | None  # queue pressure cleared: how many wait now


@dataclass(slots=True)
class MailboxStats:
    admitted: int = 0
    rejected_full: int = 0
    dropped: int = 0
    blocked: int = 0
    peak: int = 0


def hold_for(now: float, deadlines: Iterable[float | None], waiting: int, limit: int) -> float:
    """How long a reactor waits before journaling what is in its mailbox: until the earliest
    ``durable_within`` deadline of what waits (``None``: an intent that may not wait, so
    nothing does), and not at all once a full batch (``limit``) is waiting. Pure."""
    if waiting >= limit:
        return 0.0
    earliest = None
    for deadline in deadlines:
        if deadline is None:
            return 0.0
        earliest = deadline if earliest is None else min(earliest, deadline)
    return 0.0 if earliest is None else max(0.0, earliest - now)


class Mailbox(Generic[Item]):
    """One reactor's bounded mailbox, the intents parked behind it, and its queue pressure."""

    def __init__(self, size: int, overflow: Overflow) -> None:
        self.size = size
        self.overflow = overflow
        self.waiting: deque[Item] = deque()
        # Intents of senders blocked by a full mailbox (overflow: block), oldest first. Its
        # length is bounded by the senders themselves, each waiting on one intent.
        self.blocked: deque[Item] = deque()
        self.stats = MailboxStats()
        self.pressure = False

    def __len__(self) -> int:
        return len(self.waiting)

    def offer(self, item: Item) -> Offered[Item]:
        """Admit ``item`` under the overflow policy (see the module doc)."""
        if self.blocked or len(self.waiting) >= self.size:
            if self.overflow == "reject":
                self.stats.rejected_full += 1
                return _REJECTED
            if self.overflow == "drop-oldest":
                oldest = self.waiting.popleft()
                self.stats.dropped += 1
                return Offered(Admission.DROPPED, oldest, self._enqueue(item))
            self.stats.blocked += 1
            self.blocked.append(item)
            return _BLOCKED
        pressure = self._enqueue(item)
        return _QUEUED if pressure is None else Offered(Admission.QUEUED, None, pressure)

    def take(self, limit: int) -> Taken[Item]:
        """Up to ``limit`` waiting intents, oldest first; parked ones move into the room."""
        waiting = self.waiting
        batch = [waiting.popleft() for _ in range(min(len(waiting), limit))]
        moved = 0
        raised = None
        while self.blocked and len(waiting) < self.size:
            crossed = self._enqueue(self.blocked.popleft())
            moved += 1
            if crossed is not None:
                raised = crossed
        relieved = None
        if self.pressure and len(waiting) <= PRESSURE_LOW * self.size:
            self.pressure = False
            relieved = len(waiting)
        return Taken(batch, moved, raised, relieved)

    def clear(self) -> list[Item]:
        """Everything waiting, then everything parked, in order: to be refused."""
        items = [*self.waiting, *self.blocked]
        self.waiting.clear()
        self.blocked.clear()
        return items

    def document(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "overflow": self.overflow,
            "waiting": len(self.waiting),
            "blocked_senders": len(self.blocked),
            **_slots_of(self.stats),
        }

    def _enqueue(self, item: Item) -> int | None:
        """Queue ``item``; the number waiting if that raised queue pressure."""
        waiting = self.waiting
        waiting.append(item)
        stats = self.stats
        stats.admitted += 1
        stats.peak = max(stats.peak, len(waiting))
        if not self.pressure and len(waiting) / self.size >= PRESSURE_HIGH:
            self.pressure = True
            return len(waiting)
        return None


_QUEUED: Offered[Any] = Offered(Admission.QUEUED)
_BLOCKED: Offered[Any] = Offered(Admission.BLOCKED)
_REJECTED: Offered[Any] = Offered(Admission.REJECTED)


# -- effect marks ----------------------------------------------------------------------------------


def handed_off(effect: Effect) -> bool:
    """Whether ``effect`` runs in a task of its own, covered by the ``handoffs`` mark."""
    return isinstance(effect, Emit | Forward)


@dataclass(frozen=True, slots=True)
class Rerun:
    """Which effects of replayed intents run again: those above the mark that covers them."""

    effects: int  # the effects the runtime carries out itself have run up to this seq
    handoffs: int  # the emits and forwards have finished up to this seq
    settled: int  # both: nothing of an intent at or below this runs again

    def again(self, seq: int, effects: Sequence[Effect]) -> list[tuple[int, Effect]]:
        """(index, effect) of the effects of intent ``seq`` to run again, in order."""
        if seq <= self.settled:
            return []
        return [
            (index, effect)
            for index, effect in enumerate(effects)
            if seq > (self.handoffs if handed_off(effect) else self.effects)
        ]


class EffectMarks:
    """How far one reactor's effects have run, and the marks that lets the journal hold."""

    __slots__ = ("_handoffs", "effects_written", "handoffs_written", "ran")

    def __init__(self) -> None:
        self.ran = 0  # every effect up to this seq has run or been handed off
        # seq -> handoffs of that intent (emits, forwards) handed to a task, not finished yet
        self._handoffs: dict[int, int] = {}
        self.effects_written = 0  # the marks as last written (or read back)
        self.handoffs_written = 0

    @property
    def in_flight(self) -> int:
        """Handoffs handed to a task and not finished."""
        return sum(self._handoffs.values())

    def ran_through(self, seq: int) -> None:
        """Every effect of the intents up to ``seq`` has run or been handed off."""
        self.ran = seq

    def handing_off(self, seq: int) -> None:
        """An effect of intent ``seq`` goes to a task of its own."""
        self._handoffs[seq] = self._handoffs.get(seq, 0) + 1

    def handoff_finished(self, seq: int) -> None:
        """A handoff of intent ``seq`` has finished (a cancelled one has not)."""
        left = self._handoffs[seq] - 1
        if left:
            self._handoffs[seq] = left
        else:
            del self._handoffs[seq]

    def due(self) -> tuple[int, int] | None:
        """(effects, handoffs) to write, when either mark can advance; ``None`` otherwise.
        The handoffs mark stays below the lowest intent with a handoff in flight."""
        ran = self.ran
        handed = min(ran, min(self._handoffs) - 1) if self._handoffs else ran
        if ran > self.effects_written or handed > self.handoffs_written:
            return ran, handed
        return None

    def written(self, effects: int, handoffs: int) -> None:
        """The journal holds these marks now (they never move back)."""
        self.effects_written = max(self.effects_written, effects)
        self.handoffs_written = max(self.handoffs_written, handoffs)

    def recovered(self, effects: int, handoffs: int) -> Rerun:
        """The journal's marks, read back for a replay: what of the replayed intents to run
        again. What this process already ran or handed off is not run again when a crashed
        handler makes the reactor recover; the marks cover what an earlier process ran."""
        self.written(effects, handoffs)
        done = max(effects, self.ran)
        handed = max(handoffs, self.ran)
        return Rerun(done, handed, min(done, handed))


# -- restarts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AfterCrash:
    crashes: int  # within the window, this one included
    delay: float | None  # seconds until the restart; None: give up (stay failed)


class RestartBudget:
    """One reactor's crashes within the restart window, and what the next one means."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._crashes: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._crashes)

    def crashed(self, now: float) -> AfterCrash:
        """Count a crash at ``now``: restart after a backoff, or give up."""
        policy = self.policy
        crashes = self._crashes
        crashes.append(now)
        while crashes and now - crashes[0] > policy.restart_window:
            crashes.popleft()
        if len(crashes) > policy.max_restarts:
            return AfterCrash(len(crashes), None)
        delay = min(policy.first_backoff * 2 ** (len(crashes) - 1), policy.max_backoff)
        return AfterCrash(len(crashes), delay)

    def reset(self) -> None:
        """An operator started the reactor: its earlier crashes no longer count."""
        self._crashes.clear()


# -- routing and checks ----------------------------------------------------------------------------


class ReactorSlot(Generic[Item]):
    """One reactor as the dispatch core sees it. The adapter extends it with the reactor's
    state, type and task."""

    def __init__(
        self,
        reactor_id: str,
        verbs: Mapping[str, Schema],
        *,
        requires: Mapping[str, tuple[str, ...]],
        subscribe: Mapping[str, str],
        mailbox: Mailbox[Item],
        restart: RestartPolicy,
    ) -> None:
        self.id = reactor_id
        self.verbs = verbs
        self.requires = dict(requires)
        self.subscribe = dict(subscribe)
        self.lifecycle = LifecycleState.UNDEPLOYED
        self.last_error = ""
        self.mailbox = mailbox
        self.effect_marks = EffectMarks()
        self.restart_budget = RestartBudget(restart)

    def not_running(self) -> str:
        """Why it takes no intents, and what to do about it."""
        hint = f"; start it with `edgeagent reactors start {self.id}`"
        if self.lifecycle is LifecycleState.FAILED and self.last_error:
            return f"reactor {self.id!r} is failed ({self.last_error}){hint}"
        return f"reactor {self.id!r} is {self.lifecycle}{hint}"


Slot = TypeVar("Slot", bound=ReactorSlot[Any])


class Dispatcher(Generic[Slot]):
    """The routes to the deployed reactors and the checks in front of them."""

    def __init__(self, policy: Policy, slots: Iterable[Slot] = ()) -> None:
        self.policy = policy
        self._slots: dict[str, Slot] = {slot.id: slot for slot in slots}
        self._routes: dict[str, list[tuple[Slot, str]]] = {}

    def slot(self, reactor_id: str) -> Slot:
        found = self._slots.get(reactor_id)
        if found is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise LifecycleError(f"no reactor {reactor_id!r}; reactors: {known}")
        return found

    @property
    def slots(self) -> list[Slot]:
        """Every reactor, in config order."""
        return list(self._slots.values())

    def open_routes(self, slot: Slot) -> None:
        """Route ``<id>.<verb>`` and the reactor's subscriptions to it (it was deployed)."""
        self.close_routes(slot)
        for verb in slot.verbs:
            self._routes.setdefault(f"{slot.id}.{verb}", []).append((slot, verb))
        for name, verb in slot.subscribe.items():
            self._routes.setdefault(name, []).append((slot, verb))

    def close_routes(self, slot: Slot) -> None:
        """No name routes to the reactor any more (it was undeployed)."""
        for name in list(self._routes):
            targets = [t for t in self._routes[name] if t[0] is not slot]
            if targets:
                self._routes[name] = targets
            else:
                del self._routes[name]

    def routes(self) -> dict[str, list[str]]:
        """Intent name -> ``<reactor>.<verb>`` targets (for ``explain``)."""
        return {
            name: [f"{slot.id}.{verb}" for slot, verb in targets]
            for name, targets in sorted(self._routes.items())
        }

    def takes(self, name: str) -> bool:
        """Whether a running reactor takes ``name`` now (a sender with nothing to say to
        anyone, a sensor's reading, skips the whole way in)."""
        return bool(self._routes.get(name))

    def route(self, name: str) -> list[tuple[Slot, str]]:
        """The (reactor, verb) targets of ``name``; ``IntentError`` saying why there are none."""
        targets = self._routes.get(name)
        if targets:
            return targets
        reactor_id, _, verb = name.partition(".")
        slot = self._slots.get(reactor_id)
        if slot is not None and verb:
            if verb not in slot.verbs:
                verbs = ", ".join(sorted(slot.verbs))
                raise IntentError(f"reactor {reactor_id!r} has no verb {verb!r}; verbs: {verbs}")
            raise IntentError(slot.not_running())
        known = ", ".join(sorted(self._routes)) or "none"
        raise IntentError(f"no reactor takes {name!r}; known intents: {known}")

    def check(
        self,
        name: str,
        targets: Sequence[tuple[Slot, str]],
        payload: Mapping[str, Any],
        *,
        principal: str,
        sender: str | None,
        trace: str,
    ) -> list[tuple[Slot, str, dict[str, Any]]]:
        """(reactor, verb, checked payload) per target, or the first refusal: ``Denial``,
        ``IntentError`` (not running) or ``PayloadError``. ``sender`` is the reactor id when a
        reactor sends (its own verbs need no capability)."""
        admitted: list[tuple[Slot, str, dict[str, Any]]] = []
        for slot, verb in targets:
            if slot.id != sender:
                required = slot.requires.get(name, (f"{slot.id}:{verb}",))
                decision = self.policy.decide(principal, required)
                if not decision.allowed:
                    raise Denial(decision.reason, trace)
            if slot.lifecycle is not LifecycleState.RUNNING:
                raise IntentError(slot.not_running())
            admitted.append((slot, verb, slot.verbs[verb].validate(payload)))
        return admitted


# -- timers ----------------------------------------------------------------------------------------


@dataclass(order=True, slots=True)
class ArmedTimer:
    due: float
    reactor: str = field(compare=False)
    key: str = field(compare=False)
    name: str = field(compare=False)
    payload: Mapping[str, Any] = field(compare=False)


class TimerQueue:
    """The armed timers of every reactor, first due first (see the module doc)."""

    def __init__(self) -> None:
        self._heap: list[ArmedTimer] = []
        self._armed: dict[tuple[str, str], float] = {}  # (reactor, key) -> due

    def __len__(self) -> int:
        return len(self._armed)

    def arm(
        self, reactor: str, key: str, due: float, name: str, payload: Mapping[str, Any]
    ) -> None:
        """Arm ``key`` of ``reactor`` for ``due``, replacing the timer armed under it."""
        self._armed[(reactor, key)] = due
        heapq.heappush(self._heap, ArmedTimer(due, reactor, key, name, dict(payload)))

    def cancel(self, reactor: str, key: str) -> None:
        self._armed.pop((reactor, key), None)

    def next_due(self) -> float | None:
        """When the first armed timer is due; ``None`` when none is armed."""
        heap = self._heap
        while heap and self._armed.get((heap[0].reactor, heap[0].key)) != heap[0].due:
            heapq.heappop(heap)  # cancelled or replaced
        return heap[0].due if heap else None

    def due(self, now: float) -> ArmedTimer | None:
        """The first timer due by ``now``, taken off the queue; ``None`` when none is."""
        first = self.next_due()
        if first is None or first > now:
            return None
        return heapq.heappop(self._heap)

    def fired(self, timer: ArmedTimer) -> bool:
        """``timer``'s intent has been sent. True: it is forgotten (delete its row); False:
        that intent armed the key again."""
        armed_as = (timer.reactor, timer.key)
        if self._armed.get(armed_as) != timer.due:
            return False
        del self._armed[armed_as]
        return True


def _slots_of(stats: Any) -> dict[str, int]:
    return {name: getattr(stats, name) for name in stats.__slots__}

"""The reactor runtime over a real SQLite journal: the accept path, policies, lifecycle,
supervision, timers, idempotency and replay across restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgeagent.config.model import Overflow, ReactorConfig
from edgeagent.errors import CapabilityDenied, IntentError, LifecycleError, PayloadError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.journal import Entry, Journal, Marks
from edgeagent.reactors.model import (
    Effect,
    Forward,
    Intent,
    ReactorType,
    SerialWrite,
)
from edgeagent.reactors.registry import find_type
from edgeagent.reactors.runlog import RunLog
from edgeagent.reactors.runtime import ReactorRuntime, Receipt, RestartPolicy, Submission
from edgeagent.reactors.schema import Field, Schema
from edgeagent.resource import PartState

COUNTER = ReactorConfig(
    id="counter",
    type="counter",
    requires=(("counter.increment", ("counter:write",)), ("counter.reset", ("counter:reset",))),
)
POLICY = Policy.build({"admin": ["counter:*"]}, {"cli": ["admin"], "guest": ["counter:read"]})


class Fragile:
    """A test type whose ``boom`` verb raises: the supervision path."""

    name = "fragile"
    verbs: Mapping[str, Schema] = {
        "add": Schema((Field("n", "int", default=1),)),
        "boom": Schema(),
    }
    options = Schema()

    def initial_state(self, options: Mapping[str, Any]) -> Any:
        return {"total": 0}

    def handle(
        self, state: Any, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[Any, list[Effect]]:
        if verb == "boom":
            raise RuntimeError("boom")
        return {"total": state["total"] + intent.payload["n"]}, []


def types(name: str) -> ReactorType:
    tests: dict[str, ReactorType] = {"fragile": Fragile(), "beacon": Beacon()}
    return tests[name] if name in tests else find_type(name)


class GatedJournal(Journal):
    """A real journal whose appends wait for a gate: a disk that has fallen behind."""

    gate: asyncio.Event | None = None

    async def append(self, entries: Sequence[Entry]) -> list[int]:
        if self.gate is not None:
            await self.gate.wait()
        return await super().append(entries)


@asynccontextmanager
async def runtime(
    path: Path,
    reactors: Sequence[ReactorConfig] = (COUNTER,),
    policy: Policy = POLICY,
    journal_class: type[Journal] = Journal,
    **kwargs: Any,
) -> AsyncIterator[tuple[ReactorRuntime, Journal]]:
    async with journal_class(path / "journal.sqlite3") as journal:
        run_log = RunLog(path / "runs")
        async with ReactorRuntime(
            reactors, policy, journal, run_log=run_log, types=types, **kwargs
        ) as rt:
            yield rt, journal
        run_log.close()


def events(path: Path) -> list[dict[str, Any]]:
    lines = (path / "runs" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def test_counter_counts_acknowledges_and_survives_a_restart(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, _):
        acks = [
            await rt.submit("counter.increment", {"by": 2}, principal="cli", source="cli")
            for _ in range(3)
        ]
        assert [a.deliveries[0].seq for a in acks] == [1, 2, 3]
        assert all(len(a.trace_id) == 16 for a in acks)
        assert rt.show("counter")["reactor_state"] == {"count": 6}
        await rt.submit("counter.increment", principal="cli", source="cli")  # by defaults to 1
    async with runtime(tmp_path) as (rt, _):
        assert rt.show("counter")["reactor_state"] == {"count": 7}  # replayed from the journal
        await rt.submit("counter.reset", principal="cli", source="cli")
        assert rt.show("counter")["reactor_state"] == {"count": 0}


async def test_denied_intent_leaves_only_an_audit_record(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, journal):
        with pytest.raises(CapabilityDenied, match="guest") as denied:
            await rt.submit("counter.increment", principal="guest", source="cli")
        assert "counter:write" in str(denied.value)
        with pytest.raises(CapabilityDenied):
            await rt.submit("counter.increment", principal="stranger", source="cli")
        assert await journal.tail(0, 10) == []
        audit = await journal.recent_audit(10)
        assert [a.principal for a in audit] == ["guest", "stranger"]
        assert rt.show("counter")["reactor_state"] == {"count": 0}
    assert [e["kind"] for e in events(tmp_path) if e["kind"] == "denied"] == ["denied"] * 2


async def test_bad_payload_and_unknown_names_are_refused_with_reasons(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, journal):
        with pytest.raises(PayloadError) as invalid:
            await rt.submit("counter.increment", {"by": "x"}, principal="cli", source="cli")
        assert invalid.value.field == "by"
        with pytest.raises(IntentError, match="no verb 'incr'"):
            await rt.submit("counter.incr", principal="cli", source="cli")
        with pytest.raises(IntentError, match=r"no reactor takes 'lamp\.on'"):
            await rt.submit("lamp.on", principal="cli", source="cli")
        assert await journal.tail(0, 10) == []


async def test_idempotency_key_applies_once(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, _):
        first = await rt.submit(
            "counter.increment", principal="cli", source="cli", idempotency_key="k1"
        )
        again = await rt.submit(
            "counter.increment", principal="cli", source="cli", idempotency_key="k1"
        )
        assert again.deliveries[0].seq == first.deliveries[0].seq
        assert again.deliveries[0].duplicate
        assert rt.show("counter")["reactor_state"] == {"count": 1}


@pytest.mark.parametrize("overflow", ["reject", "drop-oldest", "block"])
async def test_full_mailbox_applies_its_policy(tmp_path: Path, overflow: Overflow) -> None:
    small = ReactorConfig(
        id="counter", type="counter", mailbox=4, overflow=overflow, requires=COUNTER.requires
    )
    GatedJournal.gate = asyncio.Event()
    try:
        async with runtime(tmp_path, (small,), journal_class=GatedJournal) as (rt, _):

            async def send() -> str:
                try:
                    await rt.submit("counter.increment", principal="cli", source="cli")
                except IntentError as exc:
                    return exc.code
                return "ok"

            # The first intent is taken by the reactor and waits for the disk; 4 fill the
            # mailbox; the next 3 meet the policy.
            sends = [asyncio.create_task(send())]
            await asyncio.sleep(0.05)
            sends += [asyncio.create_task(send()) for _ in range(7)]
            await asyncio.sleep(0.1)
            waiting = rt.show("counter")["mailbox"]
            assert waiting["waiting"] == 4
            GatedJournal.gate.set()
            results = await asyncio.gather(*sends)
            count = rt.show("counter")["reactor_state"]["count"]
            stats = rt.show("counter")["mailbox"]
    finally:
        GatedJournal.gate = None
    if overflow == "reject":
        assert results.count("full") == 3
        assert stats["rejected_full"] == 3
    elif overflow == "drop-oldest":
        assert results.count("dropped") == 3
        assert results[1:4] == ["dropped"] * 3  # the oldest waiting ones made room
        assert stats["dropped"] == 3
    else:
        assert results == ["ok"] * 8
        assert stats["blocked"] == 3
    assert count == results.count("ok")


async def test_lifecycle_commands_gate_intents(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, _):
        await rt.submit("counter.increment", principal="cli", source="cli")
        assert (await rt.command("counter", "stop"))["state"] == "stopped"
        with pytest.raises(IntentError, match="stopped; start it with"):
            await rt.submit("counter.increment", principal="cli", source="cli")
        with pytest.raises(LifecycleError, match="allowed: start, undeploy"):
            await rt.command("counter", "stop")
        await rt.command("counter", "start")
        await rt.submit("counter.increment", principal="cli", source="cli")
        await rt.command("counter", "stop")
        await rt.command("counter", "undeploy")
        with pytest.raises(IntentError, match="undeployed"):
            await rt.submit("counter.increment", principal="cli", source="cli")
        await rt.command("counter", "deploy")
        await rt.command("counter", "start")
        assert rt.show("counter")["reactor_state"] == {"count": 2}  # rebuilt at deploy
        with pytest.raises(LifecycleError, match="no reactor 'nope'"):
            await rt.command("nope", "start")
    kinds = [(e["old"], e["new"]) for e in events(tmp_path) if e["kind"] == "lifecycle"]
    assert ("running", "stopped") in kinds
    assert ("stopped", "undeployed") in kinds


async def test_a_crashing_handler_is_restarted_and_replay_skips_the_failed_intent(
    tmp_path: Path,
) -> None:
    fragile = ReactorConfig(id="f", type="fragile")
    policy = Policy.build({}, {"cli": ["f:*"]})
    fast = RestartPolicy(first_backoff=0.01, max_backoff=0.05, max_restarts=2)
    async with runtime(tmp_path, (fragile,), policy, restart=fast) as (rt, journal):
        await rt.submit("f.add", {"n": 5}, principal="cli", source="cli")
        ack = await rt.submit("f.boom", principal="cli", source="cli")  # journaled: acked
        await asyncio.sleep(0.1)
        shown = rt.show("f")
        assert shown["state"] == "running"
        assert shown["stats"]["restarts"] == 1
        assert "boom" in shown["last_error"]
        await rt.submit("f.add", {"n": 1}, principal="cli", source="cli")
        assert rt.show("f")["reactor_state"] == {"total": 6}
        assert await journal.failed_seqs("f") == {ack.deliveries[0].seq}
        for _ in range(2):  # three crashes within the window, max_restarts 2: it gives up
            await rt.submit("f.boom", principal="cli", source="cli")
            await asyncio.sleep(0.15)
        assert rt.show("f")["state"] == "failed"
        with pytest.raises(IntentError, match="failed"):
            await rt.submit("f.add", principal="cli", source="cli")
        await rt.command("f", "start")
        await rt.submit("f.add", {"n": 1}, principal="cli", source="cli")
    async with runtime(tmp_path, (fragile,), policy) as (rt, _):
        assert rt.show("f")["reactor_state"] == {"total": 7}


async def test_schedule_timers_fire_emit_and_survive_a_restart(tmp_path: Path) -> None:
    schedule = ReactorConfig(
        id="tick", type="schedule", options={"every": 0.2, "emit": "counter.increment"}
    )
    policy = Policy.build(
        {"admin": ["counter:*"]}, {"cli": ["admin"], "reactor:tick": ["counter:write"]}
    )
    async with runtime(tmp_path, (COUNTER, schedule), policy) as (rt, journal):
        await asyncio.sleep(0.75)  # started at boot: its journal was empty
        counted = rt.show("counter")["reactor_state"]["count"]
        assert 2 <= counted <= 4
        assert [t.key for t in await journal.timers()] == ["tick"]
    await asyncio.sleep(0.5)  # down for more than one period: the missed tick fires at start
    async with runtime(tmp_path, (COUNTER, schedule), policy) as (rt, _):
        await asyncio.sleep(0.3)
        assert rt.show("counter")["reactor_state"]["count"] >= counted + 1
        assert rt.show("tick")["reactor_state"]["running"] is True


async def test_emits_need_grants_and_are_audited_when_refused(tmp_path: Path) -> None:
    relay = ReactorConfig(id="r", type="relay", options={"to": "counter.increment"})
    policy = Policy.build({"admin": ["counter:*", "r:*"]}, {"cli": ["admin"]})
    async with runtime(tmp_path, (COUNTER, relay), policy) as (rt, journal):
        await rt.submit("r.forward", {"by": 3}, principal="cli", source="cli")
        await asyncio.sleep(0.1)
        assert rt.show("counter")["reactor_state"] == {"count": 0}  # reactor:r holds nothing
        assert [a.principal for a in await journal.recent_audit(10)] == ["reactor:r"]
    policy = Policy.build(
        {"admin": ["counter:*", "r:*"]}, {"cli": ["admin"], "reactor:r": ["counter:write"]}
    )
    async with runtime(tmp_path, (COUNTER, relay), policy) as (rt, journal):
        ack = await rt.submit("r.forward", {"by": 3}, principal="cli", source="cli")
        await asyncio.sleep(0.1)
        assert rt.show("counter")["reactor_state"] == {"count": 3}
        # the emitted intent carries the trace id of the one that caused it
        entries = [e for e in await journal.tail(0, 10) if e.reactor == "counter"]
        assert entries[-1].trace_id == ack.trace_id
        assert entries[-1].principal == "reactor:r"


async def test_submit_many_admits_a_batch_in_order_and_answers_each(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, journal):
        batch = [
            Submission("counter.increment", {"by": 1}, "cli", "cli"),
            Submission("counter.increment", {}, "guest", "cli"),  # denied
            Submission("counter.increment", {"by": "x"}, "cli", "cli"),  # invalid
            Submission("nope.x", {}, "cli", "cli"),  # unknown
            Submission("counter.increment", {"by": 2}, "cli", "cli", idempotency_key="k"),
            Submission("counter.increment", {"by": 2}, "cli", "cli", idempotency_key="k"),
        ]
        answers = await rt.submit_many(batch)
        kinds = [type(a).__name__ for a in answers]
        assert kinds == ["Receipt", "Denial", "PayloadError", "IntentError", "Receipt", "Receipt"]
        acks = [a for a in answers if isinstance(a, Receipt)]
        assert [a.deliveries[0].seq for a in acks] == [1, 2, 2]
        assert acks[2].deliveries[0].duplicate
        assert rt.show("counter")["reactor_state"] == {"count": 3}
        assert [r.principal for r in await journal.recent_audit(10)] == ["guest"]


class Peers:
    """Stands in for the mesh (``remote.ForwardEffects``): records each forward, and holds
    them while ``gate`` is closed (a peer that has not answered yet)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, Forward]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, reactor: str, key: str, trace_id: str, effect: Forward) -> None:
        self.sent.append((reactor, key, trace_id, effect))
        await self.gate.wait()


UPLINK = ReactorConfig(
    id="up", type="relay", options={"to": "counter.increment", "peer": "rb", "cluster": "g"}
)
UP_POLICY = Policy.build({}, {"cli": ["up:forward"]})


async def test_a_relay_with_a_peer_forwards_with_the_effects_key_and_trace(tmp_path: Path) -> None:
    peers = Peers()
    async with runtime(tmp_path, (UPLINK,), UP_POLICY, peers=peers) as (rt, _):
        ack = await rt.submit("up.forward", {"by": 2}, principal="cli", source="cli")
        assert peers.sent == [
            ("up", "up:1:0", ack.trace_id, Forward("rb", "counter.increment", {"by": 2}, "g"))
        ]
        assert rt.show("up")["reactor_state"] == {"forwarded": 1}
    # Without a way to reach peers (no mesh in the runtime) it is counted, not lost silently.
    async with runtime(tmp_path / "alone", (UPLINK,), UP_POLICY) as (rt, _):
        await rt.submit("up.forward", {}, principal="cli", source="cli")
        assert rt.show("up")["stats"]["effects_unsupported"] == 1


async def test_a_forward_not_answered_before_a_restart_is_sent_again(tmp_path: Path) -> None:
    peers = Peers()
    peers.gate.clear()  # the peer does not answer
    async with runtime(tmp_path, (UPLINK,), UP_POLICY, peers=peers) as (rt, journal):
        await rt.submit("up.forward", {"n": 1}, principal="cli", source="cli")
        # The reactor goes on while the forward waits ...
        await rt.submit("up.forward", {"n": 2}, principal="cli", source="cli")
        await asyncio.sleep(0.05)
        assert [key for _, key, _, _ in peers.sent] == ["up:1:0", "up:2:0"]
        # ... but its effects are not done: the mark stays below the first.
        assert await journal.effects_done("up") == 0
    # Restart (the agent stopped with both forwards unanswered): both go again, same keys.
    peers.gate.set()
    async with runtime(tmp_path, (UPLINK,), UP_POLICY, peers=peers) as (rt, journal):
        await asyncio.sleep(0.05)
        assert [key for _, key, _, _ in peers.sent] == ["up:1:0", "up:2:0"] * 2
        assert rt.show("up")["reactor_state"] == {"forwarded": 2}
    # Answered and stopped cleanly: marked done, nothing is sent again.
    async with runtime(tmp_path, (UPLINK,), UP_POLICY, peers=peers) as (rt, journal):
        await asyncio.sleep(0.05)
        assert len(peers.sent) == 4
        assert await journal.effects_done("up") == 2


class Beacon:
    """A test type whose ``ping`` forwards to a peer and writes a serial line (a sync effect),
    and whose ``boom`` raises: the two marks, and what a crash runs again."""

    name = "beacon"
    verbs: Mapping[str, Schema] = {"ping": Schema((Field("n", "int"),)), "boom": Schema()}
    options = Schema()

    def initial_state(self, options: Mapping[str, Any]) -> Any:
        return {"pings": 0}

    def handle(
        self, state: Any, verb: str, intent: Intent, options: Mapping[str, Any]
    ) -> tuple[Any, list[Effect]]:
        if verb == "boom":
            raise RuntimeError("boom")
        n = intent.payload["n"]
        return {"pings": state["pings"] + 1}, [
            Forward("rb", "counter.increment", {"by": n}),
            SerialWrite("/dev/ttyX", f"{n}\n".encode()),
        ]


class Lines:
    """A serial sink that records what would go on the line."""

    def __init__(self) -> None:
        self.written: list[tuple[str, bytes]] = []

    async def execute(self, reactor: str, key: str, effect: Effect) -> None:
        assert isinstance(effect, SerialWrite)
        self.written.append((key, effect.data))


async def test_a_pending_forward_holds_back_only_the_rerun_of_forwards(tmp_path: Path) -> None:
    beacon = ReactorConfig(id="bc", type="beacon")
    policy = Policy.build({}, {"cli": ["bc:ping", "bc:boom"]})
    peers, lines = Peers(), Lines()
    peers.gate.clear()  # the peer does not answer

    def start() -> Any:
        return runtime(tmp_path, (beacon,), policy, peers=peers, sinks={SerialWrite: lines})

    async with start() as (rt, journal):
        for n in (1, 2):
            await rt.submit("bc.ping", {"n": n}, principal="cli", source="cli")
        assert [key for key, _ in lines.written] == ["bc:1:1", "bc:2:1"]
        # A crashing handler: the reactor recovers in-process and runs nothing again.
        await rt.submit("bc.boom", {}, principal="cli", source="cli")
        await asyncio.sleep(0.3)
        assert rt.show("bc")["state"] == "running"
        assert [key for _, key, _, _ in peers.sent] == ["bc:1:0", "bc:2:0"]
        assert len(lines.written) == 2
        assert await journal.marks("bc") == Marks(effects=2, handoffs=0)  # held back
    # Restarted with both forwards unanswered: they go again; the serial lines do not.
    peers.gate.set()
    async with start() as (rt, journal):
        await asyncio.sleep(0.05)
        assert [key for _, key, _, _ in peers.sent] == ["bc:1:0", "bc:2:0"] * 2
        assert [key for key, _ in lines.written] == ["bc:1:1", "bc:2:1"]
    async with start() as (rt, journal):
        assert await journal.marks("bc") == Marks(3, 3)


async def test_the_runtime_reports_its_reactors_and_owns_named_tasks(tmp_path: Path) -> None:
    fragile = ReactorConfig(id="f", type="fragile")
    policy = Policy.build({"admin": ["counter:*"]}, {"cli": ["admin", "f:*"]})
    once = RestartPolicy(first_backoff=0.01, max_restarts=0)
    async with runtime(tmp_path, (COUNTER, fragile), policy, restart=once) as (rt, _):
        for _ in range(3):
            await rt.submit("counter.increment", principal="cli", source="cli")
        report = rt.report()
        assert report.state is PartState.RUNNING
        counters = report.counters
        assert (counters["reactors"], counters["reactors_running"]) == (2, 2)
        assert (counters["accepted"], counters["applied"], counters["waiting"]) == (3, 3, 0)
        assert (counters["counter.applied"], counters["counter.seq"], counters["f.applied"]) == (
            3,
            3,
            0,
        )
        assert counters["loop_restarts"] == 0
        assert report.detail["reactors"]["counter"] == {"state": "running", "last_error": ""}
        names = {t.get_name() for t in asyncio.all_tasks()}
        names = {name for name in names if "reactors" in name}
        assert names == {
            "edgeagent-owner:reactors",
            "edgeagent[reactors].reactor:counter",
            "edgeagent[reactors].reactor:f",
            "edgeagent[reactors].timers",
        }
        await rt.submit("f.boom", principal="cli", source="cli")  # no restarts allowed
        await asyncio.sleep(0.05)
        report = rt.report()
        assert report.state is PartState.DEGRADED  # a reactor was given up on
        assert (report.counters["reactors_failed"], report.counters["f.failed"]) == (1, 1)
        assert "boom" in report.detail["reactors"]["f"]["last_error"]
    assert rt.report().state is PartState.STOPPED
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("edgeagent[reactors")]
    with pytest.raises(IntentError, match="not running") as refused:
        await rt.submit("counter.increment", principal="cli", source="cli")
    assert refused.value.code == "stopped"


async def test_the_runtime_can_be_started_from_a_task_that_ends(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        rt = ReactorRuntime((COUNTER,), POLICY, journal, types=types)
        await asyncio.create_task(rt.start())  # a reload's request task, say: it ends here
        await rt.submit("counter.increment", principal="cli", source="cli")
        assert rt.show("counter")["reactor_state"] == {"count": 1}
        await rt.close()
        await rt.close()  # idempotent
        with pytest.raises(LifecycleError, match="was closed"):
            await rt.start()


async def test_restarts_count_crashes_on_the_runtimes_clock(tmp_path: Path) -> None:
    fragile = ReactorConfig(id="f", type="fragile")
    policy = Policy.build({}, {"cli": ["f:*"]})
    now = [1000.0]
    fast = RestartPolicy(first_backoff=0.01, max_restarts=1, restart_window=60.0)
    async with runtime(tmp_path, (fragile,), policy, restart=fast, clock=lambda: now[0]) as (
        rt,
        _,
    ):
        for _ in range(3):  # a crash every two minutes of the runtime's clock: never two in 60 s
            await rt.submit("f.boom", principal="cli", source="cli")
            await asyncio.sleep(0.05)
            assert rt.show("f")["state"] == "running"
            now[0] += 120.0
        assert rt.show("f")["stats"]["restarts"] == 3
        await rt.submit("f.boom", principal="cli", source="cli")
        await asyncio.sleep(0.05)
        await rt.submit("f.boom", principal="cli", source="cli")  # two within the window
        await asyncio.sleep(0.05)
        assert rt.show("f")["state"] == "failed"


class Flaky:
    """A serial sink that raises something no effect should (a bug) the first time."""

    def __init__(self) -> None:
        self.calls = 0
        self.written: list[str] = []

    async def execute(self, reactor: str, key: str, effect: Effect) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("sink bug")
        self.written.append(key)


async def test_a_reactor_loop_that_raises_is_run_again_from_the_journal(tmp_path: Path) -> None:
    beacon = ReactorConfig(id="bc", type="beacon")
    policy = Policy.build({}, {"cli": ["bc:ping"]})
    sink = Flaky()
    async with runtime(tmp_path, (beacon,), policy, peers=Peers(), sinks={SerialWrite: sink}) as (
        rt,
        journal,
    ):
        with pytest.raises(IntentError, match=r"failed applying it \(RuntimeError\('sink bug'\)"):
            await rt.submit("bc.ping", {"n": 1}, principal="cli", source="cli")
        # Supervision runs the loop again after its backoff; the loop replays the journal,
        # which holds the intent, and runs its effects again (at least once).
        for _ in range(100):
            if sink.written:
                break
            await asyncio.sleep(0.02)
        assert sink.written == ["bc:1:1"]
        assert rt.report().counters["loop_restarts"] == 1
        ack = await rt.submit("bc.ping", {"n": 2}, principal="cli", source="cli")
        assert ack.deliveries[0].seq == 2
        assert rt.show("bc")["reactor_state"] == {"pings": 2}
        assert sink.written == ["bc:1:1", "bc:2:1"]
        assert [e.seq for e in await journal.tail(0, 10)] == [1, 2]

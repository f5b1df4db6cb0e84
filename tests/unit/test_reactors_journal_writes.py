"""The journal's planner (``JournalWrites``) without SQLite: seqs, kinds, idempotency keys,
and state that changes only once a batch has committed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeagent.reactors.journal import (
    INSERT_INTENT,
    INSERT_KIND,
    JournalWrites,
    _Append,
    _Audit,
    _Write,
)
from edgeagent.store.plan import Execute, ExecuteMany, Planned, Query, Step

KIND = ("counter", "increment", "counter.increment", "cli", "cli")


def row(idem: str | None = None, kind: tuple[str, ...] = KIND) -> tuple[Any, ...]:
    return (1.0, kind, '{"by":1}', "t" * 16, idem)


def drive(writes: JournalWrites, jobs: list[Any], answer: Callable[[Step], Any]) -> Any:
    steps: list[Step] = []
    program = writes.plan(jobs)
    try:
        step = next(program)
        while True:
            steps.append(step)
            step = program.send(answer(step))
    except StopIteration as done:
        planned: Planned = done.value
    return steps, planned


def test_seqs_and_kinds_are_assigned_and_applied_only_on_commit() -> None:
    notified: list[int] = []
    writes = JournalWrites(lambda: notified.append(writes.committed_seq))
    writes.opened_at(10)
    jobs = [
        _Append([row(), row(kind=("b", "v", "b.v", "cli", "cli"))]),
        _Audit((1.0, "guest", "x", "no", "t")),
        _Write("DELETE FROM timers", ()),
    ]
    steps, planned = drive(writes, jobs, lambda step: 1)
    assert steps[0] == ExecuteMany(INSERT_KIND, [(1, *KIND), (2, "b", "v", "b.v", "cli", "cli")])
    assert isinstance(steps[1], ExecuteMany)
    assert steps[1].sql == INSERT_INTENT
    assert [r[0] for r in steps[1].rows] == [11, 12]
    assert steps[-1] == Execute("DELETE FROM timers", ())
    assert list(planned.answers) == [[11, 12], None, None]
    # Planned, not committed: nothing changed, so the batch could be planned again.
    assert (writes.next_seq, writes.committed_seq, writes.kinds) == (11, 10, {})
    assert planned.on_commit is not None
    planned.on_commit()
    assert (writes.next_seq, writes.committed_seq) == (13, 12)
    assert writes.kinds[1] == KIND
    assert (writes.appended, writes.audits, writes.commits, writes.batch_max) == (2, 1, 1, 3)
    assert notified == [12]


def test_keys_already_in_the_file_or_earlier_in_the_batch_get_the_first_seq() -> None:
    writes = JournalWrites()
    writes.opened_at(5)
    writes.learn([(1, *KIND)])

    def answer(step: Step) -> Any:
        if isinstance(step, Query):
            assert list(step.params) == ["a", "b"]  # one lookup for every key of the batch
            return [("a", 3)]
        return 1

    jobs = [_Append([row("a"), row("b")]), _Append([row("b"), row()])]
    steps, planned = drive(writes, jobs, answer)
    assert list(planned.answers) == [[3, 6], [6, 7]]
    assert not any(isinstance(s, ExecuteMany) and s.sql == INSERT_KIND for s in steps)
    assert planned.on_commit is not None
    planned.on_commit()
    assert writes.deduplicated == 2
    assert writes.appended == 2


def test_a_batch_without_intents_does_not_wake_followers() -> None:
    notified: list[int] = []
    writes = JournalWrites(lambda: notified.append(1))
    _, planned = drive(writes, [_Write("DELETE FROM timers", ())], lambda step: 1)
    assert planned.on_commit is not None
    planned.on_commit()
    assert notified == []
    assert writes.commits == 1

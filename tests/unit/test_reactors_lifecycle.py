"""The reactor lifecycle state machine: the table, refusals, and properties over command runs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edgeagent.errors import LifecycleError
from edgeagent.reactors.lifecycle import (
    BOOT,
    OPERATOR_COMMANDS,
    SUPERVISOR_COMMANDS,
    TRANSITIONS,
    Command,
    LifecycleState,
    allowed,
    takes_intents,
    transition,
)

# The diagram of docs/reactors.md, written out independently of the module's table.
EXPECTED = {
    ("undeployed", "deploy"): "deployed",
    ("deployed", "start"): "running",
    ("deployed", "undeploy"): "undeployed",
    ("running", "stop"): "stopped",
    ("running", "crash"): "failed",
    ("stopped", "start"): "running",
    ("stopped", "undeploy"): "undeployed",
    ("failed", "restart"): "running",
    ("failed", "give_up"): "failed",
    ("failed", "start"): "running",
    ("failed", "stop"): "stopped",
}


@pytest.mark.parametrize("state", list(LifecycleState))
@pytest.mark.parametrize("command", list(Command))
def test_every_pair_follows_the_diagram(state: LifecycleState, command: Command) -> None:
    expected = EXPECTED.get((state.value, command.value))
    if expected is None:
        with pytest.raises(LifecycleError, match=f"reactor is {state}; allowed: "):
            transition(state, command)
    else:
        assert transition(state, command) == expected


def test_the_error_names_the_state_and_the_allowed_commands() -> None:
    with pytest.raises(LifecycleError) as caught:
        transition(LifecycleState.STOPPED, Command.STOP)
    assert str(caught.value) == "reactor is stopped; allowed: start, undeploy"
    with pytest.raises(
        LifecycleError, match=r"^reactor 'counter' is running; allowed: stop, crash$"
    ):
        transition("running", "deploy", reactor="counter")


def test_strings_are_accepted_and_unknown_ones_refused() -> None:
    assert transition("deployed", "start") is LifecycleState.RUNNING
    with pytest.raises(LifecycleError, match="unknown lifecycle command 'pause'; known: deploy"):
        transition("running", "pause")
    with pytest.raises(LifecycleError, match="unknown lifecycle state 'paused'"):
        transition("paused", "start")
    with pytest.raises(LifecycleError, match="unknown lifecycle state"):
        allowed("paused")


def test_allowed_lists_the_table_order() -> None:
    assert allowed(LifecycleState.STOPPED) == (Command.START, Command.UNDEPLOY)
    assert allowed("undeployed") == (Command.DEPLOY,)
    assert set(allowed(LifecycleState.FAILED)) == {
        Command.RESTART,
        Command.GIVE_UP,
        Command.START,
        Command.STOP,
    }


def test_boot_reaches_running_and_only_running_takes_intents() -> None:
    state = LifecycleState.UNDEPLOYED
    for command in BOOT:
        state = transition(state, command)
    assert state is LifecycleState.RUNNING
    assert [s for s in LifecycleState if takes_intents(s)] == [LifecycleState.RUNNING]


def test_commands_split_into_operator_and_supervisor() -> None:
    assert set(OPERATOR_COMMANDS) | set(SUPERVISOR_COMMANDS) == set(Command)
    assert not set(OPERATOR_COMMANDS) & set(SUPERVISOR_COMMANDS)


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[LifecycleState.RUNNING][Command.DEPLOY] = LifecycleState.DEPLOYED  # type: ignore[index]


# -- properties ---------------------------------------------------------------------------------
class Lifecycle(RuleBasedStateMachine):
    """Random command runs against the table: valid ones move, invalid ones change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.state: LifecycleState = LifecycleState.UNDEPLOYED
        self.visited: set[LifecycleState] = {self.state}

    @rule(command=st.sampled_from(list(Command)))
    def command(self, command: Command) -> None:
        before = self.state
        if command in allowed(before):
            self.state = transition(before, command)
            assert self.state.value == EXPECTED[(before.value, command.value)]
        else:
            with pytest.raises(LifecycleError):
                self.state = transition(before, command)
            assert self.state is before
        self.visited.add(self.state)

    @invariant()
    def the_state_is_in_the_table(self) -> None:
        assert isinstance(self.state, LifecycleState)
        assert self.state in TRANSITIONS

    @invariant()
    def every_state_can_leave(self) -> None:
        # no dead end: an operator can always act (failed and stopped included)
        assert any(c in OPERATOR_COMMANDS for c in allowed(self.state))


@settings(max_examples=200)
@given(st.lists(st.sampled_from([*Command, "bogus"]), max_size=40))
def test_a_run_of_commands_only_moves_along_the_table(commands: list[str]) -> None:
    state = LifecycleState.UNDEPLOYED
    for command in commands:
        try:
            following = transition(state, command)
        except LifecycleError:
            assert (state.value, command) not in EXPECTED
            continue
        assert following.value == EXPECTED[(state.value, command)]
        state = following
    assert state in TRANSITIONS


Lifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=30)
TestLifecycle = Lifecycle.TestCase


@pytest.mark.parametrize("target", list(LifecycleState))
def test_every_state_is_reachable_from_undeployed(target: LifecycleState) -> None:
    # breadth-first over the table
    seen = {LifecycleState.UNDEPLOYED}
    frontier = [LifecycleState.UNDEPLOYED]
    while frontier:
        state = frontier.pop()
        for following in TRANSITIONS[state].values():
            if following not in seen:
                seen.add(following)
                frontier.append(following)
    assert target in seen

"""A reactor's lifecycle: a table-driven state machine with no side effects.

Theory of operation
-------------------
::

                deploy            start
    undeployed ────────► deployed ──────► running ◄──┐
        ▲                   │               │  ▲     │ restart (supervision, backoff)
        │ undeploy          │ undeploy      │  │     │
        └───────────────────┴───── stopped ◄┘  └─ failed
                                     start ───────────►

:data:`TRANSITIONS` is the whole machine: state -> command -> next state. The operator's
commands are ``deploy``, ``start``, ``stop`` and ``undeploy`` (CLI and control API); the
supervisor's are ``crash`` (``handle`` raised), ``restart`` (after the backoff) and
``give_up`` (too many crashes in the window: the reactor stays ``failed`` until an operator
``start``). An operator may also ``stop`` a failed reactor to end supervision.

:func:`transition` returns the next state or raises ``LifecycleError`` naming the state and
the commands it allows; it holds no state of its own, so a refused command changes nothing.
The runtime keeps each reactor's state and executes what a change means (start the task,
drain the mailbox, arm timers).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from edgeagent.errors import LifecycleError


class LifecycleState(StrEnum):
    UNDEPLOYED = "undeployed"
    DEPLOYED = "deployed"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class Command(StrEnum):
    DEPLOY = "deploy"
    START = "start"
    STOP = "stop"
    UNDEPLOY = "undeploy"
    CRASH = "crash"
    RESTART = "restart"
    GIVE_UP = "give_up"


#: The operator's commands (CLI, control API); the rest belong to the supervisor.
OPERATOR_COMMANDS = (Command.DEPLOY, Command.START, Command.STOP, Command.UNDEPLOY)
SUPERVISOR_COMMANDS = (Command.CRASH, Command.RESTART, Command.GIVE_UP)

#: What a reactor configured with ``enabled: true`` goes through at boot.
BOOT = (Command.DEPLOY, Command.START)

#: state -> command -> next state; a command missing under a state is refused.
TRANSITIONS: Mapping[LifecycleState, Mapping[Command, LifecycleState]] = MappingProxyType(
    {
        LifecycleState.UNDEPLOYED: MappingProxyType({Command.DEPLOY: LifecycleState.DEPLOYED}),
        LifecycleState.DEPLOYED: MappingProxyType(
            {Command.START: LifecycleState.RUNNING, Command.UNDEPLOY: LifecycleState.UNDEPLOYED}
        ),
        LifecycleState.RUNNING: MappingProxyType(
            {Command.STOP: LifecycleState.STOPPED, Command.CRASH: LifecycleState.FAILED}
        ),
        LifecycleState.STOPPED: MappingProxyType(
            {Command.START: LifecycleState.RUNNING, Command.UNDEPLOY: LifecycleState.UNDEPLOYED}
        ),
        LifecycleState.FAILED: MappingProxyType(
            {
                Command.RESTART: LifecycleState.RUNNING,
                Command.GIVE_UP: LifecycleState.FAILED,
                Command.START: LifecycleState.RUNNING,
                Command.STOP: LifecycleState.STOPPED,
            }
        ),
    }
)


def transition(
    state: LifecycleState | str, command: Command | str, *, reactor: str | None = None
) -> LifecycleState:
    """The state after ``command`` in ``state``; ``LifecycleError`` when it is not allowed.

    Plain strings are accepted (from the control API) and checked. ``reactor`` only names the
    reactor in the error message: ``reactor 'counter' is stopped; allowed: start, undeploy``.
    """
    current = _state(state)
    who = f"reactor {reactor!r}" if reactor is not None else "reactor"
    try:
        wanted = Command(command)
    except ValueError:
        known = ", ".join(Command)
        raise LifecycleError(f"unknown lifecycle command {command!r}; known: {known}") from None
    following = TRANSITIONS[current].get(wanted)
    if following is None:
        raise LifecycleError(f"{who} is {current}; allowed: {', '.join(allowed(current))}")
    return following


def allowed(state: LifecycleState | str) -> tuple[Command, ...]:
    """The commands ``state`` accepts, in table order."""
    return tuple(TRANSITIONS[_state(state)])


def takes_intents(state: LifecycleState | str) -> bool:
    """Only a running reactor takes intents; others reject them ("reactor 'x' is stopped")."""
    return _state(state) is LifecycleState.RUNNING


def _state(state: LifecycleState | str) -> LifecycleState:
    try:
        return LifecycleState(state)
    except ValueError:
        known = ", ".join(LifecycleState)
        raise LifecycleError(f"unknown lifecycle state {state!r}; known: {known}") from None

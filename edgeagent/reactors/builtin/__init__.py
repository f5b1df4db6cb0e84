"""The built-in reactor types, one module each; ``TYPES`` is what the registry offers.

Every type here is pure (see ``edgeagent.reactors.model``): ``handle`` reads the time from
``intent.context.at``, never changes the state it is given, and keeps its state in JSON values.
"""

from __future__ import annotations

from edgeagent.reactors.builtin.actuator import ACTUATOR
from edgeagent.reactors.builtin.counter import COUNTER
from edgeagent.reactors.builtin.relay import RELAY
from edgeagent.reactors.builtin.schedule import SCHEDULE
from edgeagent.reactors.builtin.threshold import THRESHOLD
from edgeagent.reactors.builtin.window import WINDOW
from edgeagent.reactors.model import ReactorType

TYPES: tuple[ReactorType, ...] = (COUNTER, THRESHOLD, WINDOW, RELAY, SCHEDULE, ACTUATOR)

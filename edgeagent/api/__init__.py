"""The API layer: the documents and methods the control socket serves (and that a status page,
metrics and MQTT will serve too), one module per subsystem, as plain async functions over the
running parts (``context.AgentView``).

=============  ==============================================================
``names``      info, services.list/add/remove, resolve; renames kept on disk
``mesh``       peers, mesh.request; the meta and methods shared with members
``intents``    intent.send(_batch), reactors.list/show/command, journal.tail/audit
``status``     status, health: every part's ``Report`` (the stats seam)
``sensors``    sensors.list/show/watch: what each sensor reads
=============  ==============================================================
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edgeagent.api import intents, mesh, names, sensors, status
from edgeagent.api.context import AgentView

Method = Callable[[AgentView, dict[str, Any]], Awaitable[Any]]
Handler = Callable[[dict[str, Any]], Awaitable[Any]]

METHODS: Mapping[str, Method] = {
    **names.METHODS,
    **status.METHODS,
    **mesh.METHODS,
    **intents.METHODS,
    **sensors.METHODS,
}


def control_handlers(view: AgentView) -> dict[str, Handler]:
    """Every API method bound to ``view``, as the control server takes them."""
    return {name: functools.partial(method, view) for name, method in METHODS.items()}

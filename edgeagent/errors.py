"""The one error hierarchy of edgeagent.

Foreign exceptions (OSError, yaml errors, dnslib errors) are translated into these at the
adapter boundary, keeping ``__cause__``, so callers catch one family.
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base of every error edgeagent raises on purpose."""


class ConfigError(EdgeAgentError):
    """The configuration is invalid.

    ``issues`` holds every problem found, each already formatted as
    ``file:line: key.path: message (did you mean 'x'?)``; ``str()`` joins them.
    """

    def __init__(self, issues: list[str]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(self.issues))


class ProtocolError(EdgeAgentError):
    """A peer sent bytes that do not follow the protocol (a remote error)."""


class TransportError(EdgeAgentError):
    """A socket could not be opened, bound or used."""


class AddressInUseError(TransportError):
    """A port we must bind is owned by someone else; the message names the config keys."""


class ControlError(EdgeAgentError):
    """The control API refused a request or the agent is not reachable."""


class NotRunningError(ControlError):
    """No agent answers on the control socket."""

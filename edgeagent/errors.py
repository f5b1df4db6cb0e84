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


class AuthError(ProtocolError):
    """A mesh frame failed authentication or parsing; ``reason`` is a short counter key.

    Reasons: ``malformed``, ``other_cluster``, ``bad_tag`` (see ``edgeagent.mesh.auth``).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class InvalidKeyError(EdgeAgentError, ValueError):
    """A cluster key in the configuration is not 32 bytes of base64; the message says why."""


class CapabilityError(EdgeAgentError, ValueError):
    """A capability or principal name is malformed (config or a requirement); says why."""


class IntentError(EdgeAgentError):
    """An intent was refused before it was journaled; ``code`` says which step refused it.

    Codes: ``unknown`` (no reactor takes it), ``denied`` (capability), ``invalid`` (payload),
    ``stopped`` (the reactor does not run), ``full`` / ``dropped`` (mailbox policy).
    """

    code = "refused"


class CapabilityDenied(IntentError):
    """The sending principal lacks a capability the intent requires."""

    code = "denied"


class PayloadError(IntentError):
    """An intent's payload does not match its schema: ``field`` (dotted path) and ``reason``."""

    code = "invalid"

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"payload.{field}: {reason}" if field else f"payload: {reason}")


class LifecycleError(EdgeAgentError):
    """A lifecycle command that is not allowed in the reactor's current state."""


class JournalError(EdgeAgentError):
    """The journal could not be opened, read or written (the message names the file)."""

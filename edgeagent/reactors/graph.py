"""The wiring graph of the configured reactors: ``edgeagent check`` and ``edgeagent explain``.

Pure: it takes a ``Config`` and a reactor type lookup and returns values. The default lookup,
``registry.find_type``, reads installed packages' entry point metadata and nothing else.

Theory of operation
-------------------
The graph has three kinds of nodes and three kinds of edges, drawn from config alone (nothing
runs, no agent is needed):

- **principal -> intent**: the principal may send the intent. An intent can go to several
  reactors (``subscribe``) and the runtime refuses it unless the sender holds what *every*
  target requires, so the edge is ``Policy.decide`` on the union of the targets'
  requirements. A target without a ``requires`` entry needs ``<id>:<verb>`` (as
  ``ReactorRuntime.submit``).
- **intent -> reactor.verb**: routing, as the runtime does it: ``<id>.<verb>`` for every verb
  of the reactor's type, plus its ``subscribe`` names.
- **reactor -> intent**: what the reactor may emit or arm a timer for, from the optional
  ``emits(options)`` of its type (see ``model.ReactorType``). A name with a leading ``.`` is
  the reactor's own verb: the type paces those itself (a schedule's ``.tick`` timer), so they
  are drawn but never count as a loop. A type without ``emits`` has unknown emits.

``check_graph`` walks the graph and returns typed ``Diagnostic`` values; ``topology`` turns it
into a JSON-ready document and ``render_topology`` into indented text. Reachability starts at
the principals that are not reactors (``cli``, ``mqtt:...``, ``peer:...``, plain names) and
at reactors whose type has a ``start`` verb (the runtime sends ``<id>.start`` at first boot),
then follows emits. A requirement that only a ``reactor:<id>`` principal holds still counts as
holdable, but only when that principal is declared: an undeclared principal holds nothing.

Requirements nobody can hold are reported only where they are written (``requires``): the
implicit ``<id>:<verb>`` is closed on purpose (a verb only the reactor's own timers use), and a
reactor that nothing at all can reach is reported once, as ``unreachable``.

``line_settings`` gives the serial line settings each device is opened with (the agent passes
them to ``serial.ports.SerialPorts``, which knows devices and settings, not reactors); it
refuses the conflicts ``check`` reports as ``device-conflict``.

Paths name config keys as ``reactors[id=beat].options.emit`` and ``principals.cli``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgeagent.config.model import Config, ReactorConfig
from edgeagent.errors import ConfigError, PayloadError
from edgeagent.reactors.capabilities import Policy
from edgeagent.reactors.model import ReactorType, check_intent_name, merge_devices, resolve_name
from edgeagent.reactors.registry import ReactorTypeError, find_type
from edgeagent.reactors.schema import did_you_mean
from edgeagent.sensors.fields import known_fields, line_settings_of

log = logging.getLogger("edgeagent.reactors")

Severity = Literal["error", "warning", "info"]
TypeLookup = Callable[[str], ReactorType]

#: Every diagnostic code, its severity (``cycle`` depends on the mailboxes) and what it means.
CODES: Mapping[str, tuple[str, str]] = {
    "unknown-type": ("error", "no built-in or installed reactor type has that name"),
    "bad-options": ("error", "the options fail the type's options schema"),
    "unknown-verb": ("error", "a requires key or subscribe target names a verb the type lacks"),
    "emits-unknown": ("info", "the type does not say what it emits (warning when it fails to)"),
    "unknown-intent": ("error", "a reactor emits an intent name no reactor takes"),
    "emit-denied": ("error", "principal reactor:<id> cannot hold what an emitted intent needs"),
    "unholdable": ("error", "a written requirement that no declared principal can hold"),
    "unreachable": ("warning", "no principal may send any of the reactor's intents, nothing "
                               "that is reached emits to it and it is not started at boot"),
    "cycle": ("error", "reactors emit to each other in a loop; a warning when a mailbox on it "
                       "is drop-oldest or reject (it loses intents instead of deadlocking)"),
    "device-conflict": ("error", "reactors write to one serial device with different line "
                                 "settings (the agent refuses to start)"),
    "unknown-sensor": ("error", "a reactor subscribes to a sensor or a sensor field that no "
                                "configured sensor has"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding of ``check_graph``: a code from ``CODES``, how bad, what, and where."""

    code: str
    severity: Severity
    message: str
    path: str  # config key path: "reactors[id=beat].options.emit"
    loop: tuple[str, ...] = ()  # ``cycle``: the reactor ids around the loop, in emit order

    def format(self) -> str:
        """``error[unreachable] reactors[id=x]: message``, the CLI's line."""
        return f"{self.severity}[{self.code}] {self.path}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
        }
        if self.loop:
            doc["loop"] = list(self.loop)
        return doc


@dataclass(frozen=True, slots=True)
class Target:
    """Where an intent goes: a reactor's verb, and what its sender must hold."""

    reactor: str
    verb: str
    requires: tuple[str, ...]
    written: bool  # False: the implicit "<id>:<verb>"


@dataclass(frozen=True, slots=True)
class Emission:
    """One name a reactor may emit, as its type gave it and resolved."""

    name: str  # resolved: "beat.tick"
    written: str  # as the type gave it: ".tick"
    option: str | None  # the option that named it, when one did

    @property
    def own(self) -> bool:
        """A name the type addresses to its own verb (its timers): paced by the type."""
        return self.written.startswith(".")


@dataclass(frozen=True, slots=True)
class ReactorNode:
    """One configured reactor as the graph sees it."""

    index: int
    config: ReactorConfig
    rtype: ReactorType | None  # None: unknown type
    options: Mapping[str, Any] | None  # validated; None when unknown type or bad options
    emits: tuple[Emission, ...] | None  # None: unknown

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def path(self) -> str:
        return reactor_path(self.config.id)

    @property
    def starts_at_boot(self) -> bool:
        return self.config.enabled and self.rtype is not None and "start" in self.rtype.verbs

    @property
    def bounded_loss(self) -> bool:
        """Whether a full mailbox sheds intents rather than making the sender wait."""
        return self.config.overflow != "block"


def principals_of(config: Config) -> dict[str, list[str]]:
    """The configured principals, plus what subscribing to a sensor's readings grants.

    A reactor that subscribes to ``sensor.<id>`` or ``sensor.<id>.<field>`` of a configured
    sensor lets ``sensor:<id>`` send it: what the subscription requires (``requires`` for the
    name, else ``<reactor>:<verb>``) is added to that principal's grants. The subscription
    is the user saying "this reactor takes that reading", so no second grant is needed.
    """
    principals = {name: list(grants) for name, grants in config.principals}
    sensors = {sensor.id for sensor in config.sensors}
    for reactor in config.reactors:
        requires = dict(reactor.requires)
        for name, verb in reactor.subscribe:
            kind, _, rest = name.partition(".")
            sensor = rest.split(".", 1)[0]
            if kind != "sensor" or sensor not in sensors:
                continue
            grants = principals.setdefault(f"sensor:{sensor}", [])
            for capability in requires.get(name, (f"{reactor.id}:{verb}",)):
                if capability not in grants:
                    grants.append(capability)
    return principals


class WiringGraph:
    """Principals, intents and reactors with the edges between them (see the module doc)."""

    def __init__(self, config: Config, types: TypeLookup = find_type) -> None:
        self.config = config
        self.policy = Policy.build(dict(config.capabilities.implies), principals_of(config))
        self.findings: list[Diagnostic] = []  # found while building: types, options, verbs
        self.reactors: dict[str, ReactorNode] = {}
        for index, reactor in enumerate(config.reactors):
            self.reactors[reactor.id] = self._node(index, reactor, types)
        self.routes: dict[str, list[Target]] = {}
        for node in self.reactors.values():
            self._route(node)

    # -- questions -----------------------------------------------------------------------------
    def requirements(self, name: str) -> tuple[str, ...]:
        """What a sender must hold for ``name``: every target's requirements, in order."""
        return tuple(dict.fromkeys(c for t in self.routes.get(name, ()) for c in t.requires))

    def senders(self, name: str) -> list[str]:
        """The declared principals that may send ``name`` (none when nobody takes it)."""
        if name not in self.routes:
            return []
        required = self.requirements(name)
        return [p for p in self.policy.principals if self.policy.decide(p, required).allowed]

    def emitters(self, name: str) -> list[str]:
        """The reactors that may emit ``name``, in config order."""
        return [
            node.id
            for node in self.reactors.values()
            if node.emits and any(e.name == name for e in node.emits)
        ]

    def successors(self, reactor_id: str) -> list[str]:
        """Reactors ``reactor_id`` emits to, own-verb names (timers) left out."""
        node = self.reactors[reactor_id]
        found: dict[str, None] = {}
        for emission in node.emits or ():
            if not emission.own:
                for target in self.routes.get(emission.name, ()):
                    found[target.reactor] = None
        return list(found)

    # -- building ------------------------------------------------------------------------------
    def _node(self, index: int, reactor: ReactorConfig, types: TypeLookup) -> ReactorNode:
        path = reactor_path(reactor.id)
        try:
            rtype = types(reactor.type)
        except ReactorTypeError as exc:
            self._find("unknown-type", "error", str(exc), f"{path}.type")
            return ReactorNode(index, reactor, None, None, None)
        try:
            options = rtype.options.validate(dict(reactor.options))
        except PayloadError as exc:
            where = f"{path}.options.{exc.field}" if exc.field else f"{path}.options"
            self._find("bad-options", "error", f"{rtype.name} options: {exc.reason}", where)
            return ReactorNode(index, reactor, rtype, None, None)
        return ReactorNode(index, reactor, rtype, options, self._emits(reactor, rtype, options))

    def _emits(
        self, reactor: ReactorConfig, rtype: ReactorType, options: Mapping[str, Any]
    ) -> tuple[Emission, ...] | None:
        path = f"{reactor_path(reactor.id)}.type"
        method = getattr(rtype, "emits", None)
        if not callable(method):
            self._find(
                "emits-unknown",
                "info",
                f"type {rtype.name!r} does not declare what it emits (no emits method), so "
                "its outgoing wires are not checked",
                path,
            )
            return None
        try:
            names = method(options)
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise TypeError(f"expected a list of intent names, got {names!r}")
            for name in names:
                if not isinstance(name, str):
                    raise TypeError(f"expected a list of intent names, got {name!r} in it")
                check_intent_name(name, "emits")
        # A third-party type's method is arbitrary code; its failure is a finding, not a crash
        # of `check`.
        except Exception as exc:
            self._find(
                "emits-unknown",
                "warning",
                f"type {rtype.name!r}: emits() failed ({type(exc).__name__}: {exc}), so its "
                "outgoing wires are not checked",
                path,
            )
            return None
        emissions: dict[str, Emission] = {}
        for written in names:
            option = next((k for k, v in options.items() if v == written), None)
            resolved = resolve_name(written, reactor.id)
            emissions.setdefault(resolved, Emission(resolved, written, option))
        return tuple(emissions.values())

    def _route(self, node: ReactorNode) -> None:
        if node.rtype is None:
            return
        verbs = node.rtype.verbs
        requires = dict(node.config.requires)
        subscribed = dict(node.config.subscribe)
        for name in requires:
            owner, _, verb = name.partition(".")
            if name not in subscribed and owner == node.id and verb not in verbs:
                self._find(
                    "unknown-verb",
                    "error",
                    f"reactor {node.id!r} ({node.rtype.name}) has no verb {verb!r}"
                    f"{did_you_mean(verb, list(verbs))}; verbs: {', '.join(verbs)}",
                    f"{node.path}.requires.{name}",
                )
        targets: list[tuple[str, str]] = [(f"{node.id}.{verb}", verb) for verb in verbs]
        for name, verb in node.config.subscribe:
            if verb not in verbs:
                self._find(
                    "unknown-verb",
                    "error",
                    f"subscribes {name!r} to verb {verb!r}, which {node.rtype.name} lacks"
                    f"{did_you_mean(verb, list(verbs))}; verbs: {', '.join(verbs)}",
                    f"{node.path}.subscribe.{name}",
                )
                continue
            targets.append((name, verb))
        for name, verb in targets:
            written = requires.get(name)
            target = Target(
                node.id,
                verb,
                tuple(written) if written is not None else (f"{node.id}:{verb}",),
                written is not None,
            )
            self.routes.setdefault(name, []).append(target)

    def _find(self, code: str, severity: Severity, message: str, path: str) -> None:
        self.findings.append(Diagnostic(code, severity, message, path))


def build_graph(config: Config, types: TypeLookup = find_type) -> WiringGraph:
    """The wiring graph of ``config``. ``CapabilityError`` when its grants are malformed."""
    return WiringGraph(config, types)


def check_graph(config: Config, types: TypeLookup = find_type) -> list[Diagnostic]:
    """Every problem of the wiring, reactor by reactor in config order, then loops."""
    graph = build_graph(config, types)
    found = list(graph.findings)
    for node in graph.reactors.values():
        found.extend(_emission_problems(graph, node))
        found.extend(_unholdable(graph, node))
    found.extend(_unreachable(graph))
    found.extend(_device_conflicts(graph))
    found.extend(_sensor_subscriptions(config, graph))
    found.extend(_cycles(graph))
    order = {node.path: node.index for node in graph.reactors.values()}
    # Stable: keeps the order found within a reactor; loops come last.
    return sorted(found, key=lambda d: (d.code == "cycle", order.get(_reactor_part(d.path), -1)))


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def line_settings(config: Config, types: TypeLookup = find_type) -> dict[str, dict[str, Any]]:
    """Device -> line settings from the reactors that write to serial devices (the type's
    ``devices``: an actuator's ``baudrate``) and the serial sensors that read them, for
    ``serial.ports.SerialPorts``. ``ConfigError``
    when two disagree on one device, as ``edgeagent check`` reports it (``device-conflict``)."""
    graph = build_graph(config, types)
    claims = [*device_claims(graph.reactors.values()), *sensor_claims(config)]
    settings, conflicts = merge_devices(claims)
    if conflicts:
        raise ConfigError([f"{_claimant_path(who)}: {message}" for who, message in conflicts])
    return settings


def topology(config: Config, types: TypeLookup = find_type) -> dict[str, Any]:
    """The wiring as JSON values: principals, boot starts, intents and reactors."""
    graph = build_graph(config, types)
    emitted = {e.name for n in graph.reactors.values() for e in n.emits or ()}
    names = sorted(set(graph.routes) | emitted)
    senders = {name: graph.senders(name) for name in names}
    return {
        "principals": [
            {
                "name": principal,
                "grants": list(graph.policy.declared(principal)),
                "may_send": [name for name in names if principal in senders[name]],
            }
            for principal in graph.policy.principals
        ],
        "boot": [f"{n.id}.start" for n in graph.reactors.values() if n.starts_at_boot],
        "intents": [
            {
                "name": name,
                "targets": [
                    {
                        "reactor": t.reactor,
                        "verb": t.verb,
                        "requires": list(t.requires),
                        "written": t.written,
                    }
                    for t in graph.routes.get(name, ())
                ],
                "requires": list(graph.requirements(name)),
                "senders": senders[name],
                "emitted_by": graph.emitters(name),
            }
            for name in names
        ],
        "reactors": [_reactor_doc(graph, node) for node in graph.reactors.values()],
    }


def render_topology(doc: Mapping[str, Any]) -> list[str]:
    """``topology``'s document as an indented tree: principal -> intent -> reactor.verb -> emits.

    Each reactor's emits are expanded under the first place it appears; later places say
    "(see above)", and a reactor met again on its own path says "(loop)".
    """
    intents = {i["name"]: i for i in doc["intents"]}
    reactors = {r["id"]: r for r in doc["reactors"]}
    lines: list[str] = []
    expanded: set[str] = set()

    def intent_lines(name: str, depth: int, stack: tuple[str, ...]) -> None:
        intent = intents.get(name)
        pad = "  " * depth
        if intent is None or not intent["targets"]:
            lines.append(f"{pad}-> nobody takes it")
            return
        for target in intent["targets"]:
            reactor = reactors[target["reactor"]]
            line = f"{pad}-> {target['reactor']}.{target['verb']}  ({reactor['type']})"
            quiet = reactor["emits"] == []  # nothing under it to expand or to point back to
            if target["reactor"] in stack:
                lines.append(line + "  (loop)")
            elif target["reactor"] in expanded and not quiet:
                lines.append(line + "  (see above)")
            else:
                lines.append(line)
                emit_lines(target["reactor"], depth + 1, (*stack, target["reactor"]))

    def emit_lines(reactor_id: str, depth: int, stack: tuple[str, ...]) -> None:
        expanded.add(reactor_id)
        reactor = reactors[reactor_id]
        pad = "  " * depth
        if reactor["emits"] is None:
            lines.append(f"{pad}emits: unknown (its type does not say)")
            return
        for name in reactor["emits"]:
            if name in reactor["own_emits"]:
                lines.append(f"{pad}emits {name}  (own verb: a timer or an inner step)")
                continue
            lines.append(f"{pad}emits {name}")
            intent_lines(name, depth + 1, stack)

    lines.append("principals")
    for principal in doc["principals"]:
        grants = ", ".join(principal["grants"]) or "nothing"
        lines.append(f"  {principal['name']}  (grants: {grants})")
        if not principal["may_send"]:
            lines.append("    may send nothing")
        for name in principal["may_send"]:
            required = ", ".join(intents[name]["requires"])
            lines.append(f"    {name}  [{required}]")
            intent_lines(name, 3, ())
    if doc["boot"]:
        lines.append("started at boot")
        for name in doc["boot"]:
            lines.append(f"  {name}")
            intent_lines(name, 2, ())
    closed = [i for i in doc["intents"] if i["targets"] and not i["senders"]]
    if closed:
        lines.append("no principal may send")
        for intent in closed:
            by = f"  (emitted by {', '.join(intent['emitted_by'])})" if intent["emitted_by"] else ""
            lines.append(f"  {intent['name']}  [{', '.join(intent['requires'])}]{by}")
    lines.append("reactors")
    for reactor in doc["reactors"]:
        mailbox = reactor["mailbox"]
        parts = [
            f"  {reactor['id']}  type {reactor['type']}",
            f"verbs {', '.join(reactor['verbs']) or '-'}",
            f"mailbox {mailbox['size']} {mailbox['overflow']}",
        ]
        if reactor["subscribe"]:
            parts.append(
                "subscribes " + ", ".join(f"{k} -> {v}" for k, v in reactor["subscribe"].items())
            )
        emits = reactor["emits"]
        parts.append("emits " + ("unknown" if emits is None else ", ".join(emits) or "nothing"))
        if reactor["forwards"]:
            sent = ", ".join(f"{f['name']} to {f['to']}" for f in reactor["forwards"])
            parts.append(f"forwards {sent}")
        if not reactor["enabled"]:
            parts.append("disabled")
        lines.append("; ".join(parts))
    return lines


def reactor_path(reactor_id: str) -> str:
    return f"reactors[id={reactor_id}]"


# -- private helpers ---------------------------------------------------------------------------


def _reactor_part(path: str) -> str:
    end = path.find("]")
    return path[: end + 1] if path.startswith("reactors[") and end >= 0 else path


def _reactor_doc(graph: WiringGraph, node: ReactorNode) -> dict[str, Any]:
    verbs = sorted(node.rtype.verbs) if node.rtype is not None else []
    requires = {
        name: list(target.requires)
        for name, targets in graph.routes.items()
        for target in targets
        if target.reactor == node.id
    }
    return {
        "id": node.id,
        "type": node.config.type,
        "known_type": node.rtype is not None,
        "enabled": node.config.enabled,
        "verbs": verbs,
        "subscribe": dict(node.config.subscribe),
        "requires": requires,
        "emits": None if node.emits is None else [e.name for e in node.emits],
        "own_emits": [e.name for e in node.emits or () if e.own],
        "forwards": _forwards(node),
        "mailbox": {"size": node.config.mailbox, "overflow": node.config.overflow},
        "starts_at_boot": node.starts_at_boot,
    }


def _device_conflicts(graph: WiringGraph) -> list[Diagnostic]:
    claims = [*device_claims(graph.reactors.values()), *sensor_claims(graph.config)]
    _, conflicts = merge_devices(claims)
    return [
        Diagnostic("device-conflict", "error", message, _claimant_path(claimant))
        for claimant, message in conflicts
    ]


SENSOR_CLAIM = "sensor:"  # a claimant that is a sensor, not a reactor: "sensor:<id>"


def sensor_claims(config: Config) -> list[tuple[str, Mapping[str, Mapping[str, Any]]]]:
    """("sensor:<id>", {port: line settings}) of the serial sensors: a device both read by a
    sensor and written by an actuator is one port, opened once, so they must agree
    (``sensors.fields.line_settings_of``)."""
    claims: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = []
    for sensor in config.sensors:
        if sensor.platform != "serial" or sensor.port is None:
            continue
        claims.append((f"{SENSOR_CLAIM}{sensor.id}", {sensor.port: line_settings_of(sensor)}))
    return claims


def _claimant_path(claimant: str) -> str:
    if claimant.startswith(SENSOR_CLAIM):
        return f"sensors[{claimant[len(SENSOR_CLAIM) :]}]"
    return reactor_path(claimant)


def device_claims(
    nodes: Iterable[ReactorNode],
) -> list[tuple[str, Mapping[str, Mapping[str, Any]]]]:
    """(reactor id, devices) of enabled reactors whose type has ``devices`` (see
    ``model.ReactorType``); a type whose ``devices`` fails claims nothing."""
    claims: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = []
    for node in nodes:
        method = getattr(node.rtype, "devices", None)
        if node.options is None or not node.config.enabled or not callable(method):
            continue
        try:
            claims.append((node.id, dict(method(node.options))))
        except Exception:  # arbitrary third-party code: go on without its claim, but say so
            log.warning("%s: devices() of its type failed", node.path, exc_info=True)
    return claims


def _forwards(node: ReactorNode) -> list[dict[str, str]]:
    """What the reactor sends to peers (the type's optional ``forwards``): shown, not checked;
    the peer checks it."""
    method = getattr(node.rtype, "forwards", None)
    if node.options is None or not callable(method):
        return []
    try:
        return [{"name": str(name), "to": str(to)} for name, to in method(node.options)]
    except Exception:  # arbitrary third-party code, for display only: show none
        return []


def _emission_path(node: ReactorNode, emission: Emission) -> str:
    return f"{node.path}.options.{emission.option}" if emission.option else node.path


def _emission_problems(graph: WiringGraph, node: ReactorNode) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    principal = f"reactor:{node.id}"
    for emission in node.emits or ():
        path = _emission_path(node, emission)
        targets = graph.routes.get(emission.name)
        if not targets:
            found.append(
                Diagnostic("unknown-intent", "error", _no_taker(graph, emission.name), path)
            )
            continue
        for target in targets:
            if target.reactor == node.id:
                continue  # the runtime does not check what a reactor sends itself
            decision = graph.policy.decide(principal, target.requires)
            if not decision.allowed:
                found.append(
                    Diagnostic(
                        "emit-denied",
                        "error",
                        f"emits {emission.name!r} to {target.reactor}.{target.verb}, but "
                        f"{decision.reason}; grant {', '.join(decision.missing)} to "
                        f"{principal!r} under principals",
                        path,
                    )
                )
    return found


def _sensor_subscriptions(config: Config, graph: WiringGraph) -> list[Diagnostic]:
    """``sensor.<id>.<field>`` subscriptions that no configured sensor can satisfy, and
    ``sensor.<id>`` ones naming a configured sensor's field that it cannot produce."""
    sensors = {sensor.id: sensor for sensor in config.sensors}
    found: list[Diagnostic] = []
    for node in graph.reactors.values():
        for name, _ in node.config.subscribe:
            kind, _, rest = name.partition(".")
            if kind != "sensor":
                continue
            ident, _, field = rest.partition(".")
            path = f"{node.path}.subscribe.{name}"
            sensor = sensors.get(ident)
            if sensor is None and not field:
                continue  # `sensor.<name>` may come from elsewhere (an MQTT bridge, the CLI)
            if sensor is None:
                known = ", ".join(sorted(sensors)) or "none"
                message = (
                    f"no sensor {ident!r}{did_you_mean(ident, sorted(sensors))}; sensors: {known}"
                )
                found.append(Diagnostic("unknown-sensor", "error", message, path))
                continue
            fields = known_fields(sensor)
            if field and fields is not None and field not in fields:
                listed = sorted(fields)
                hint = did_you_mean(field, listed)
                message = f"sensor {ident!r} has no field {field!r}{hint}; its fields: " + (
                    ", ".join(listed)
                )
                found.append(Diagnostic("unknown-sensor", "error", message, path))
    return found


def _no_taker(graph: WiringGraph, name: str) -> str:
    owner, _, verb = name.partition(".")
    target = graph.reactors.get(owner)
    if target is not None and target.rtype is not None:
        verbs = ", ".join(target.rtype.verbs)
        return (
            f"emits {name!r}, but reactor {owner!r} ({target.rtype.name}) has no verb {verb!r}"
            f"{did_you_mean(verb, list(target.rtype.verbs))}; verbs: {verbs}"
        )
    return f"emits {name!r}, which no reactor takes{did_you_mean(name, list(graph.routes))}"


def _unholdable(graph: WiringGraph, node: ReactorNode) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    routed = {
        name
        for name, targets in graph.routes.items()
        if any(t.reactor == node.id and t.written for t in targets)
    }
    for name, capabilities in node.config.requires:
        if name not in routed:
            continue  # a verb the type lacks: reported as unknown-verb
        nobody = [c for c in capabilities if not graph.policy.can_ever_hold(c)]
        if nobody:
            found.append(
                Diagnostic(
                    "unholdable",
                    "error",
                    f"no declared principal can hold {', '.join(nobody)}, so nobody may send "
                    f"{name!r}; grant it (or a capability implying it) under principals",
                    f"{node.path}.requires.{name}",
                )
            )
    return found


def _unreachable(graph: WiringGraph) -> list[Diagnostic]:
    # Reactor principals are not roots: they send only what their reactor emits.
    roots = [
        p for p in graph.policy.principals if p.partition(":")[0] not in ("reactor", "schedule")
    ]
    reached: set[str] = set()
    queue: deque[str] = deque()

    def reach(reactor_id: str) -> None:
        if reactor_id not in reached:
            reached.add(reactor_id)
            queue.append(reactor_id)

    for name, targets in graph.routes.items():
        required = graph.requirements(name)
        if any(graph.policy.decide(p, required).allowed for p in roots):
            for target in targets:
                reach(target.reactor)
    for node in graph.reactors.values():
        if node.starts_at_boot:
            reach(node.id)
    while queue:
        for successor in graph.successors(queue.popleft()):
            reach(successor)
    blind = [n.id for n in graph.reactors.values() if n.rtype is not None and n.emits is None]
    note = f" (the emits of {', '.join(blind)} are unknown and may reach it)" if blind else ""
    found: list[Diagnostic] = []
    for node in graph.reactors.values():
        # A reactor that cannot start (unknown type, bad options) is reported as that alone.
        if node.id in reached or node.options is None or not node.config.enabled:
            continue
        senders = [e for e in graph.reactors if node.id in graph.successors(e) and e != node.id]
        if senders:
            why = f"only {', '.join(senders)} emit to it, and they are unreachable too"
        else:
            why = "no principal may send any of its intents and no reactor emits to it"
        found.append(Diagnostic("unreachable", "warning", why + note, node.path))
    return found


def _cycles(graph: WiringGraph) -> list[Diagnostic]:
    ids = [n.id for n in graph.reactors.values() if n.emits]
    edges = {r: graph.successors(r) for r in ids}
    reaches = {r: _reachable(r, edges) for r in ids}
    seen: set[str] = set()
    found: list[Diagnostic] = []
    for start in ids:
        if start in seen or start not in reaches[start]:
            continue
        group = [r for r in ids if r in reaches[start] and start in reaches.get(r, set())]
        seen.update(group)
        loop = _shortest_loop(start, edges, set(group))
        blocking = all(not graph.reactors[r].bounded_loss for r in loop)
        shown = " -> ".join([*loop, loop[0]])
        others = [r for r in group if r not in loop]
        also = f"; {', '.join(others)} also take part in loops with them" if others else ""
        if blocking:
            message = (
                f"reactors emit to each other in a loop: {shown}; every mailbox on it is "
                "'block', so it can loop forever or deadlock when they fill" + also
            )
        else:
            shedding = [r for r in loop if graph.reactors[r].bounded_loss]
            message = (
                f"reactors emit to each other in a loop: {shown}; the mailboxes of "
                f"{', '.join(shedding)} shed intents when full, so it cannot deadlock, "
                "but it may loop" + also
            )
        found.append(
            Diagnostic(
                "cycle",
                "error" if blocking else "warning",
                message,
                reactor_path(start),
                tuple(loop),
            )
        )
    return found


def _reachable(start: str, edges: Mapping[str, list[str]]) -> set[str]:
    """Reactors reachable from ``start`` by one or more edges."""
    found: set[str] = set()
    queue = deque(edges.get(start, ()))
    while queue:
        node = queue.popleft()
        if node not in found:
            found.add(node)
            queue.extend(edges.get(node, ()))
    return found


def _shortest_loop(start: str, edges: Mapping[str, list[str]], group: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself within ``group``, without the repeat."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in edges.get(node, ()):
            if successor not in group:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if successor not in parent:
                parent[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a loop group but no loop leads back to it")

"""The ``capabilities``, ``principals``, ``reactors`` and ``journal`` sections of the config."""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.config.loader import load, load_config
from edgeagent.config.model import (
    DEFAULT_REACTORS,
    CapabilitiesConfig,
    Config,
    JournalConfig,
    ReactorConfig,
)
from edgeagent.config.render import config_to_dict, render_yaml
from edgeagent.config.schema import size_bytes
from edgeagent.errors import ConfigError
from edgeagent.identity import DeviceIdentity
from edgeagent.reactors.capabilities import Policy

IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")
EXAMPLE = Path(__file__).resolve().parents[2] / "firmware-config" / "examples" / "reactors.yaml"


def write(tmp_path: Path, text: str, name: str = "edgeagent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def config_of(path: Path | None, **kwargs: object) -> Config:
    return load_config(path, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV, **kwargs)  # type: ignore[arg-type]


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_of(path)
    return caught.value.issues


def policy_of(config: Config) -> Policy:
    return Policy.build(dict(config.capabilities.implies), dict(config.principals))


# -- defaults ---------------------------------------------------------------------------------
def test_the_built_in_defaults_demo_the_counter() -> None:
    config = config_of(None)
    assert config.capabilities == CapabilitiesConfig(implies=(("admin", ("counter:*",)),))
    assert config.principals == (("cli", ("admin",)),)
    (counter,) = config.reactors
    assert counter == ReactorConfig(
        id="counter",
        type="counter",
        requires=(("counter.increment", ("counter:write",)), ("counter.reset", ("counter:reset",))),
    )
    assert (counter.mailbox, counter.overflow, counter.snapshot_every, counter.enabled) == (
        1024,
        "block",
        1000,
        True,
    )
    assert dict(counter.options) == {}
    assert config.journal == JournalConfig(None, 268435456, 4096, 10000)
    assert policy_of(config).decide("cli", ["counter:write", "counter:reset"]).allowed


def test_the_example_in_the_issue_loads(tmp_path: Path) -> None:
    config = config_of(
        write(
            tmp_path,
            """
            capabilities:
              implies:
                admin: ["counter:*", "sensor:*", "config:*"]
            principals:
              cli: [admin]
              guest: ["counter:read"]
            reactors:
              - id: counter
                type: counter
                requires:
                  counter.increment: ["counter:write"]
                  counter.reset: ["counter:reset"]
            """,
        )
    )
    policy = policy_of(config)
    assert policy.decide("cli", ["sensor:read"]).allowed
    assert policy.decide("guest", ["counter:write"]).reason == (
        "principal 'guest' lacks counter:write (it holds counter:read)"
    )


def test_a_users_reactor_list_replaces_the_default(tmp_path: Path) -> None:
    config = config_of(write(tmp_path, "reactors:\n  - {id: hits, type: counter}\n"))
    assert [r.id for r in config.reactors] == ["hits"]
    assert config_of(write(tmp_path, "reactors: []\n")).reactors == ()
    # an empty value means "not set": the default stays
    assert config_of(write(tmp_path, "reactors:\n")).reactors == DEFAULT_REACTORS


def test_every_field_of_a_reactor(tmp_path: Path) -> None:
    config = config_of(
        write(
            tmp_path,
            """
            reactors:
              - id: greenhouse-temp
                type: threshold
                requires:
                  greenhouse-temp.reading: ["sensor:write"]
                  sensor.temperature: ["sensor:write:temperature"]
                options: {high: 30.5, low: 28, on_alarm: fan.on, tags: [a, b]}
                subscribe: {sensor.temperature: reading}
                mailbox: 10
                overflow: Drop-Oldest
                snapshot_every: 50
                enabled: false
            journal:
              path: /var/lib/edgeagent/j.sqlite3
              max_bytes: 64MB
              max_batch: 512
              audit_keep: 0
            """,
        )
    )
    (reactor,) = config.reactors
    assert reactor.requires == (
        ("greenhouse-temp.reading", ("sensor:write",)),
        ("sensor.temperature", ("sensor:write:temperature",)),
    )
    assert reactor.options == {"high": 30.5, "low": 28, "on_alarm": "fan.on", "tags": ["a", "b"]}
    assert reactor.subscribe == (("sensor.temperature", "reading"),)
    assert (reactor.mailbox, reactor.overflow, reactor.snapshot_every, reactor.enabled) == (
        10,
        "drop-oldest",
        50,
        False,
    )
    assert config.journal == JournalConfig("/var/lib/edgeagent/j.sqlite3", 64_000_000, 512, 0)


def test_sections_default_independently(tmp_path: Path) -> None:
    config = config_of(write(tmp_path, "principals:\n  guest: [counter:read]\n  nobody:\n"))
    assert config.principals == (("guest", ("counter:read",)), ("nobody", ()))
    assert config.capabilities == CapabilitiesConfig()
    config = config_of(write(tmp_path, "capabilities: {implies: {}}\n"))
    assert config.capabilities.implies == ()
    assert config.principals == (("cli", ("admin",)),)


def test_an_overlay_merges_reactors_by_id(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        """
        reactors:
          - {id: a, type: counter}
          - {id: b, type: counter}
        principals:
          cli: [admin]
        """,
    )
    overlay = write(
        tmp_path,
        """
        reactors:
          - {id: b, remove: true}
          - {id: c, type: window, options: {seconds: 60}}
        principals:
          guest: ["counter:read"]
        """,
        "overlay.yaml",
    )
    config = config_of(base, overlay_file=overlay)
    assert [r.id for r in config.reactors] == ["a", "c"]
    assert dict(config.principals) == {"cli": ("admin",), "guest": ("counter:read",)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("64MB", 64_000_000),
        ("256MiB", 256 * 2**20),
        ("1.5 GiB", int(1.5 * 2**30)),
        ("2kb", 2000),
        ("10 b", 10),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert size_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("64M", "did you mean '64MiB'?"),
        ("5 mbs", "did you mean '5MB'?"),
        ("lots", "expected a size"),
    ],
)
def test_bad_sizes_suggest_a_fix(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint.replace("?", r"\?")):
        size_bytes(text)


# -- errors: file:line: key.path: message -------------------------------------------------------
ERROR_CASES = [
    (
        "unknown reactor key",
        """
        reactors:
          - id: counter
            type: counter
            mailbx: 5
        """,
        "E:4: reactors[counter].mailbx: unknown key (did you mean 'mailbox'?)",
    ),
    (
        "duplicate ids in one file",
        """
        reactors:
          - {id: counter, type: counter}
          - {id: counter, type: counter}
        """,
        "E:3: reactors[counter]: duplicate id 'counter' (first at E:2)",
    ),
    (
        "bad id",
        """
        reactors:
          - {id: Counter 1, type: counter}
        """,
        "E:2: reactors[Counter 1].id: reactor id 'Counter 1': a lowercase letter, then up to 62 "
        "of a-z 0-9 '_' '-' (did you mean 'counter-1'?)",
    ),
    (
        "missing type",
        """
        reactors:
          - id: counter
        """,
        "E:2: reactors[counter]: missing required key 'type'",
    ),
    (
        "overflow choice",
        """
        reactors:
          - {id: c, type: counter, overflow: drop_oldest}
        """,
        "E:2: reactors[c].overflow: expected one of block, drop-oldest, reject, got "
        "'drop_oldest' (did you mean 'drop-oldest'?)",
    ),
    (
        "mailbox bound",
        """
        reactors:
          - id: c
            type: counter
            mailbox: 0
        """,
        "E:4: reactors[c].mailbox: must be between 1 and 1000000, got 0",
    ),
    (
        "wildcard requirement",
        """
        reactors:
          - id: counter
            type: counter
            requires:
              counter.increment: ["counter:*"]
        """,
        "E:5: reactors[counter].requires.counter.increment[0]: capability 'counter:*' has a "
        "wildcard '*'; a requirement names one concrete capability (e.g. 'counter:write')",
    ),
    (
        "requirement for another reactor's intent",
        """
        reactors:
          - id: counter
            type: counter
            requires:
              countr.increment: ["counter:write"]
        """,
        "E:5: reactors[counter].requires.countr.increment: reactor 'counter' does not take "
        "'countr.increment': expected 'counter.<verb>' or one of its subscribe keys "
        "(did you mean 'counter.increment'?)",
    ),
    (
        "requirement key is not an intent name",
        """
        reactors:
          - id: counter
            type: counter
            requires:
              increment: ["counter:write"]
        """,
        "E:5: reactors[counter].requires.increment: intent name 'increment': dot-separated parts "
        "of letters, digits, '_' or '-', at least two (e.g. 'counter.increment', "
        "'sensor.temperature')",
    ),
    (
        "requirements as a string",
        """
        reactors:
          - id: counter
            type: counter
            requires:
              counter.increment: counter:write
        """,
        "E:5: reactors[counter].requires.counter.increment: expected a list of capabilities, "
        "got 'counter:write' (write [counter:write])",
    ),
    (
        "requirements not a mapping",
        """
        reactors:
          - id: counter
            type: counter
            requires: ["counter:write"]
        """,
        "E:4: reactors[counter].requires: expected a mapping of each intent name to its "
        "capabilities, got a list",
    ),
    (
        "subscribing to its own intents",
        """
        reactors:
          - id: counter
            type: counter
            subscribe: {counter.bump: increment}
        """,
        "E:4: reactors[counter].subscribe.counter.bump: 'counter.bump' already goes to this "
        "reactor's verb 'bump'; subscribe names intents of other reactors or sources",
    ),
    (
        "bad verb",
        """
        reactors:
          - id: counter
            type: counter
            subscribe:
              sensor.temperature: Reading!
        """,
        "E:5: reactors[counter].subscribe.sensor.temperature: verb 'Reading!': a lowercase "
        "letter, then a-z 0-9 '_' '-' (e.g. reading)",
    ),
    (
        "options not a mapping",
        """
        reactors:
          - {id: c, type: counter, options: [1]}
        """,
        "E:2: reactors[c].options: expected a mapping of options, got a list",
    ),
    (
        "malformed grant",
        """
        principals:
          guest: ["counter: read"]
        """,
        "E:2: principals.guest[0]: capability 'counter: read': segment ' read' has ' '; "
        "segments are letters, digits and _ . - / (did you mean 'counter:read'?)",
    ),
    (
        "bad principal name",
        """
        principals:
          mqt:kitchen: [admin]
        """,
        "E:2: principals.mqt:kitchen: principal 'mqt:kitchen': unknown kind 'mqt'; prefixed "
        "names are mqtt:<...>, peer:<...>, schedule:<...>, reactor:<...>, sensor:<...> "
        "(did you mean 'mqtt:kitchen'?)",
    ),
    (
        "principal for an unknown reactor",
        """
        principals:
          reactor:countr: ["counter:write"]
        """,
        "E:2: principals.reactor:countr: no reactor 'countr' is configured "
        "(did you mean 'reactor:counter'?)",
    ),
    (
        "wildcard implication key",
        """
        capabilities:
          implies:
            "sensor:*": [admin]
        """,
        "E:3: capabilities.implies.sensor:*: capability 'sensor:*': an implication key is "
        "concrete; to grant everything under a prefix, put the pattern in the implied list "
        "instead",
    ),
    (
        "unknown capabilities key",
        """
        capabilities:
          implied: {}
        """,
        "E:2: capabilities.implied: unknown key (did you mean 'implies'?)",
    ),
    (
        "journal size",
        """
        journal:
          max_bytes: 64M
        """,
        "E:2: journal.max_bytes: unknown size unit 'M' in '64M'; use B, kB, MB, GB, TB, KiB, "
        "MiB, GiB, TiB (did you mean '64MiB'?)",
    ),
    (
        "journal size too small",
        """
        journal:
          max_bytes: 1000
        """,
        "E:2: journal.max_bytes: must be between 1048576 and 1099511627776 bytes, got 1000",
    ),
    (
        "journal batch",
        """
        journal:
          max_batch: many
        """,
        "E:2: journal.max_batch: expected an integer, got 'many'",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_name_file_line_and_key_path(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    found = [issue.replace(str(path), "E") for issue in issues_of(path)]
    assert expected in found, found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        principals:
          guest: ["a::b"]
        reactors:
          - {id: c, type: counter, overflow: never}
        journal:
          audit_keep: -1
        """,
    )
    assert len(issues_of(path)) == 3


def test_the_example_file_wires_a_greenhouse() -> None:
    loaded = load(EXAMPLE, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    config = loaded.config
    assert [r.id for r in config.reactors] == ["counter", "temperature", "fan-alarm", "fan"]
    policy = policy_of(config)
    assert policy.decide("cli", ["actuator:write:/dev/ttyUSB0"]).allowed
    assert policy.decide("mqtt:greenhouse/sensors", ["sensor:write:temperature"]).allowed
    assert not policy.decide("guest", ["counter:write"]).allowed
    assert policy.decide("ops", ["counter:reset", "sensor:read"]).allowed
    assert config.journal.max_bytes == 64 * 2**20


# -- render round trip ---------------------------------------------------------------------------
IDS = st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}\Z")
VERBS = st.from_regex(r"\A[a-z][a-z0-9_]{0,6}\Z")
CONCRETE = st.lists(st.from_regex(r"\A[A-Za-z0-9_./-]{1,6}\Z"), min_size=1, max_size=3).map(
    ":".join
)
PATTERNS = st.lists(
    st.from_regex(r"\A[A-Za-z0-9_./-]{1,6}\Z") | st.just("*"), min_size=1, max_size=3
).map(":".join)
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(IDS, inner, max_size=3),
    max_leaves=6,
)


def _pairs(
    keys: st.SearchStrategy[str], values: st.SearchStrategy[str]
) -> st.SearchStrategy[tuple[tuple[str, tuple[str, ...]], ...]]:
    return st.dictionaries(keys, st.lists(values, max_size=3, unique=True), max_size=3).map(
        lambda d: tuple((k, tuple(v)) for k, v in d.items())
    )


@st.composite
def reactors(draw: st.DrawFn) -> ReactorConfig:
    ident = draw(IDS)
    subscribe = draw(
        st.dictionaries(st.from_regex(r"\Aother\.[a-z]{1,5}\Z"), VERBS, max_size=2).map(
            lambda d: tuple(d.items())
        )
    )
    own = st.builds(lambda verb: f"{ident}.{verb}", VERBS)
    requires = draw(
        _pairs(own | st.sampled_from([n for n, _ in subscribe] or [f"{ident}.x"]), CONCRETE)
    )
    return ReactorConfig(
        id=ident,
        type=draw(st.sampled_from(["counter", "window", "my.plugin-type"])),
        requires=requires,
        options=draw(st.dictionaries(IDS, PLAIN, max_size=3)),
        subscribe=subscribe,
        mailbox=draw(st.integers(1, 1_000_000)),
        overflow=draw(st.sampled_from(["block", "drop-oldest", "reject"])),
        snapshot_every=draw(st.integers(1, 10**6)),
        enabled=draw(st.booleans()),
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    base = config_of(None)
    reactor_list = tuple(draw(st.lists(reactors(), max_size=3, unique_by=lambda r: r.id)))
    named = st.sampled_from(
        ["cli", "guest", "peer:home", "mqtt:a/b"] + [f"reactor:{r.id}" for r in reactor_list]
    )
    return Config(
        device=base.device,
        mdns=base.mdns,
        dns_bridge=base.dns_bridge,
        log_level=base.log_level,
        mesh=base.mesh,
        capabilities=CapabilitiesConfig(implies=draw(_pairs(CONCRETE, PATTERNS))),
        reactors=reactor_list,
        principals=draw(_pairs(named, PATTERNS)),
        journal=JournalConfig(
            path=draw(st.none() | st.sampled_from(["j.sqlite3", "/data/journal.db"])),
            max_bytes=draw(st.integers(1 << 20, 1 << 40)),
            max_batch=draw(st.integers(1, 1_000_000)),
            audit_keep=draw(st.integers(0, 100_000_000)),
        ),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_render_then_load_gives_the_same_config(config: Config) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "edgeagent.yaml"
        path.write_text(render_yaml(config), encoding="utf-8")
        assert config_of(path) == config
    assert config_of(None, overrides=config_to_dict(config)) == config

"""The ``mesh:`` section: defaults, validation with file:line:key-path errors, secrets, render."""

from __future__ import annotations

import base64
import dataclasses
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent.config.loader import load, load_config
from edgeagent.config.model import ClusterConfig, Config, InterfacesConfig, MeshConfig
from edgeagent.config.render import REDACTED, config_to_dict, render_yaml
from edgeagent.errors import ConfigError
from edgeagent.identity import DeviceIdentity
from edgeagent.mesh.membership import SwimTiming
from edgeagent.mesh.service import timing_from
from edgeagent.net.address import parse_peer_address

IDENTITY = DeviceIdentity("10000000abcd2e6d")
NO_RESOLV = Path("/nonexistent/resolv.conf")
KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(KEY).decode()


def write(tmp_path: Path, text: str, name: str = "edgeagent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def config_of(path: Path | None) -> Config:
    return load_config(path, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_of(path)
    return caught.value.issues


# -- defaults ---------------------------------------------------------------------------------
def test_no_mesh_key_gives_one_observe_only_mdns_cluster() -> None:
    mesh = config_of(None).mesh
    assert mesh == MeshConfig()
    assert mesh.enabled is True
    (cluster,) = mesh.clusters
    assert (cluster.name, cluster.strategy, cluster.port, cluster.key) == (
        "edgeagent",
        "mdns",
        4370,
        None,
    )
    assert cluster.observe_only


def test_memberlist_lan_like_timing_defaults() -> None:
    cluster = ClusterConfig()
    assert (cluster.probe_interval, cluster.probe_timeout) == (0.5, 0.25)
    assert (cluster.indirect_checks, cluster.suspicion_mult) == (3, 4)
    assert (cluster.gossip_interval, cluster.gossip_fanout) == (0.2, 3)
    assert (cluster.push_pull_interval, cluster.reap_after) == (30.0, 3600.0)
    timing = timing_from(cluster)  # every SWIM timing the core has comes from config
    assert timing == SwimTiming(probe_interval=0.5, probe_timeout=0.25)
    assert cluster.dns_interval == 5.0
    assert cluster.interfaces == InterfacesConfig()


def test_old_constructors_still_work() -> None:
    config = config_of(None)
    rebuilt = Config(config.device, config.mdns, config.dns_bridge)
    assert rebuilt.mesh == MeshConfig()


def test_an_empty_cluster_item_takes_every_default(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters:\n    - {}\n")
    assert config_of(path).mesh.clusters == (ClusterConfig(),)


def test_the_contract_example(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text(f"cluster_key: {KEY_TEXT}\n")
    path = write(
        tmp_path,
        """
        mesh:
          enabled: true
          clusters:
            - name: greenhouse
              key: !secret cluster_key
              strategy: mdns
              port: 4370
              peers: []
              probe_interval: 1s
              probe_timeout: 300ms
              offers: ["sensor:temperature", "bridge:mqtt"]
              roles: [mqtt-gateway]
              interfaces: {include: ["eth*"]}
            - name: lab
              strategy: static
              port: 4371
              peers: ["10.0.0.7:4370", "[fe80::1%eth0]:4371", "gw.local"]
            - name: site
              strategy: dns
              port: 4372
              dns_name: _edgeagent._udp.example.com.
              dns_interval: 10s
        """,
    )
    greenhouse, lab, site = config_of(path).mesh.clusters
    assert greenhouse.key == KEY
    assert not greenhouse.observe_only
    assert greenhouse.probe_timeout == pytest.approx(0.3)
    assert greenhouse.offers == ("sensor:temperature", "bridge:mqtt")
    assert greenhouse.roles == ("mqtt-gateway",)
    assert greenhouse.interfaces == InterfacesConfig(include=("eth*",))
    assert lab.peers == ("10.0.0.7:4370", "[fe80::1%eth0]:4371", "gw.local:4371")
    assert lab.key is None
    assert (site.dns_name, site.dns_interval) == ("_edgeagent._udp.example.com", 10.0)


def test_mesh_can_be_turned_off(tmp_path: Path) -> None:
    mesh = config_of(write(tmp_path, "mesh:\n  enabled: false\n")).mesh
    assert not mesh.enabled
    assert mesh.clusters == (ClusterConfig(),)


# -- keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"short").decode(), "5 bytes"),
        (base64.b64encode(bytes(33)).decode(), "33 bytes"),
    ],
)
def test_a_bad_key_says_how_to_make_one(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, f"mesh:\n  clusters:\n    - key: '{text}'\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:3: mesh.clusters[0].key: ")
    assert fragment in issue
    assert "edgeagent keygen" in issue


def test_urlsafe_keys_are_accepted(tmp_path: Path) -> None:
    key = bytes([0xFB, 0xFF] * 16)
    path = write(
        tmp_path, f"mesh:\n  clusters:\n    - key: {base64.urlsafe_b64encode(key).decode()}\n"
    )
    assert config_of(path).mesh.clusters[0].key == key


def test_a_bad_secret_key_is_reported_without_its_value(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("cluster_key: hunter2-not-a-key\n")
    path = write(tmp_path, "mesh:\n  clusters:\n    - key: !secret cluster_key\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:3: mesh.clusters[0].key: cluster key is not base64")
    assert "hunter2" not in issue


def test_a_key_must_be_text(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters:\n    - key: 12\n")
    assert issues_of(path) == [f"{path}:3: mesh.clusters[0].key: expected a base64 key, got 12"]


def test_secret_keys_are_redacted_in_check_output(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text(f"k1: {KEY_TEXT}\n")
    path = write(
        tmp_path,
        """
        mesh:
          clusters:
            - {name: a, port: 4370}
            - {name: b, port: 4371, key: !secret k1}
        """,
    )
    loaded = load(path, identity=IDENTITY, env={}, resolv_conf=NO_RESOLV)
    assert loaded.secret_paths == {"mesh.clusters[1].key"}
    text = render_yaml(loaded.config, redact=loaded.secret_paths)
    assert KEY_TEXT not in text
    assert REDACTED in text
    assert KEY_TEXT in render_yaml(loaded.config)  # only redacted when asked


# -- validation errors ------------------------------------------------------------------------
def test_cluster_names_and_ports_are_unique(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mesh:
          clusters:
            - {name: a, port: 4370}
            - {name: a, port: 4371}
            - {name: b, port: 4370}
        """,
    )
    assert issues_of(path) == [
        f"{path}:4: mesh.clusters[1].name: duplicate cluster name 'a' (first at {path}:3)",
        f"{path}:5: mesh.clusters[2].port: port 4370 is already used by cluster 'a'; "
        "each cluster needs its own port",
    ]


def test_static_needs_peers_and_mdns_refuses_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mesh:
          clusters:
            - {name: a, strategy: static}
            - name: b
              port: 4371
              peers: ["10.0.0.7:4370"]
        """,
    )
    assert issues_of(path) == [
        f"{path}:3: mesh.clusters[0].peers: strategy static needs peers, "
        "e.g. peers: ['10.0.0.7:4370']",
        f"{path}:6: mesh.clusters[1].peers: peers are used only by strategy static, not mdns; "
        "remove them or set strategy: static",
    ]


def test_bad_peers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mesh:
          clusters:
            - strategy: static
              peers: ["10.0.0.7:99999", "fe80::1:4370", "[10.0.0.1]:4370", "bad host:1", 7]
        """,
    )
    issues = issues_of(path)
    assert len(issues) == 5
    assert all(i.startswith(f"{path}:4: mesh.clusters[0].peers[") for i in issues)
    assert "port '99999' is not between 1 and 65535" in issues[0]
    assert "'[v6]:port'" in issues[1]
    assert "is not an IPv6 address" in issues[2]
    assert "neither an IP address nor a host name" in issues[3]
    assert "expected 'host:port'" in issues[4]


def test_dns_needs_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters:\n    - {strategy: dns}\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:3: mesh.clusters[0].dns_name: strategy dns needs dns_name")


def test_dns_name_only_for_dns(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters:\n    - {dns_name: peers.example.com}\n")
    assert issues_of(path) == [
        f"{path}:3: mesh.clusters[0].dns_name: dns_name is used only by strategy dns, not mdns"
    ]


def test_unknown_strategy_suggests_a_known_one(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters:\n    - {strategy: statc}\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:3: mesh.clusters[0].strategy: unknown discovery strategy")
    assert "'edgeagent.discovery' entry point" in issue
    assert issue.endswith("(did you mean 'static'?)")


def test_a_strategy_from_an_installed_entry_point_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeagent.config.sections import mesh

    monkeypatch.setattr(mesh, "installed_discovery_plugins", lambda: ["consul"])
    path = write(tmp_path, "mesh:\n  clusters:\n    - {strategy: consul, peers: [a:1]}\n")
    (cluster,) = config_of(path).mesh.clusters
    assert (cluster.strategy, cluster.peers) == ("consul", ("a:1",))
    path = write(tmp_path, "mesh:\n  clusters:\n    - {strategy: consl}\n")
    (issue,) = issues_of(path)
    assert "(consul)" in issue
    assert issue.endswith("(did you mean 'consul'?)")


def test_timings_and_counts_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mesh:
          clusters:
            - probe_interval: 1sec
              indirect_checks: -1
              gossip_fanout: 0
              reap_after: 0
        """,
    )
    assert issues_of(path) == [
        f"{path}:3: mesh.clusters[0].probe_interval: unknown duration unit 'sec' in '1sec'; "
        "use ms, s, m or h (did you mean '1s'?)",
        f"{path}:4: mesh.clusters[0].indirect_checks: must be between 0 and 16, got -1",
        f"{path}:5: mesh.clusters[0].gossip_fanout: must be between 1 and 64, got 0",
        f"{path}:6: mesh.clusters[0].reap_after: must be a positive duration, got 0",
    ]


def test_probe_timeout_must_be_shorter_than_the_interval(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters:\n    - {probe_interval: 1s, probe_timeout: 1s}\n")
    (issue,) = issues_of(path)
    assert issue.startswith(
        f"{path}:3: mesh.clusters[0].probe_timeout: must be shorter than probe_interval (1s)"
    )
    path = write(tmp_path, "mesh:\n  clusters:\n    - {probe_interval: 200ms}\n")
    assert issues_of(path) == [
        f"{path}:3: mesh.clusters[0].probe_interval: must be longer than probe_timeout (0.25s)"
    ]


def test_names_offers_and_roles_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mesh:
          clusters:
            - name: Green House
              offers: ["sensor temperature"]
              roles: [MQTT]
              offer: []
        """,
    )
    assert issues_of(path) == [
        f"{path}:3: mesh.clusters[0].name: cluster name 'Green House': 1-63 lowercase letters, "
        "digits, '-' or '_', starting with a letter or digit (did you mean 'green-house'?)",
        f"{path}:4: mesh.clusters[0].offers[0]: capability 'sensor temperature': 1-100 "
        "characters of letters, digits and . _ : / @ + -, e.g. 'sensor:temperature'",
        f"{path}:5: mesh.clusters[0].roles[0]: role 'MQTT': 1-63 lowercase letters, digits "
        "and . _ : -, e.g. 'mqtt-gateway'",
        f"{path}:6: mesh.clusters[0].offer: unknown key (did you mean 'offers'?)",
    ]


def test_unknown_mesh_keys_get_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  enable: true\n  cluster: []\n")
    assert issues_of(path) == [
        f"{path}:2: mesh.enable: unknown key (did you mean 'enabled'?)",
        f"{path}:3: mesh.cluster: unknown key (did you mean 'clusters'?)",
    ]


def test_ports_that_other_parts_use_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        dns_bridge: {enabled: true, port: 5300}
        mesh:
          clusters:
            - {name: a, port: 5353}
            - {name: b, port: 5300}
        """,
    )
    assert issues_of(path) == [
        f"{path}:4: mesh.clusters[0].port: 5353 is the mDNS port; pick another",
        f"{path}:5: mesh.clusters[1].port: port 5300 is dns_bridge.port; "
        "the bridge and the mesh both use UDP",
    ]


def test_the_advertised_cluster_list_fits_one_txt_string(tmp_path: Path) -> None:
    items = "".join(f"    - {{name: {'c' * 40}{i}, port: {5000 + i}}}\n" for i in range(6))
    path = write(tmp_path, "mesh:\n  clusters:\n" + items)
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:3: mesh.clusters: the cluster names and ports take")


def test_clusters_must_be_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "mesh:\n  clusters: {name: a}\n")
    assert issues_of(path) == [
        f"{path}:2: mesh.clusters: expected a list of clusters, got a mapping"
    ]


# -- render / parse helpers ----------------------------------------------------------------
def test_render_round_trips_a_full_mesh(tmp_path: Path) -> None:
    cluster = ClusterConfig(
        name="greenhouse",
        key=KEY,
        strategy="static",
        port=4400,
        peers=("10.0.0.7:4370", "[::1]:4371"),
        probe_interval=2.0,
        probe_timeout=0.25,
        offers=("sensor:temperature",),
        roles=("mqtt-gateway",),
    )
    dns = dataclasses.replace(
        ClusterConfig(), name="site", strategy="dns", port=4401, dns_name="peers.example.com"
    )
    config = dataclasses.replace(
        config_of(None), mesh=MeshConfig(enabled=False, clusters=(cluster, dns))
    )
    data = config_to_dict(config)
    assert data["mesh"]["clusters"][0]["key"] == KEY_TEXT
    path = tmp_path / "rendered.yaml"
    path.write_text(render_yaml(config))
    assert config_of(path) == config


def test_an_empty_cluster_list_is_kept(tmp_path: Path) -> None:
    config = config_of(write(tmp_path, "mesh:\n  clusters: []\n"))
    assert config.mesh.clusters == ()
    path = tmp_path / "rendered.yaml"
    path.write_text(render_yaml(config))
    assert config_of(path).mesh.clusters == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.7:4370", ("10.0.0.7", 4370)),
        ("10.0.0.7", ("10.0.0.7", 4370)),
        ("[::1]:5", ("::1", 5)),
        ("[fe80::1%eth0]", ("fe80::1%eth0", 4370)),
        ("GW.Local:4371", ("gw.local", 4371)),
        ("[FD00:0::1]:5", ("fd00::1", 5)),
    ],
)
def test_peer_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_peer_address(text, 4370) == expected


# -- shipped files -------------------------------------------------------------------------
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-config"


def test_the_shipped_config_is_one_observe_only_mdns_cluster() -> None:
    mesh = config_of(FIRMWARE / "edgeagent.yaml").mesh
    assert mesh == MeshConfig()


def test_the_greenhouse_example_reads_its_keys_as_secrets() -> None:
    loaded = load(
        FIRMWARE / "examples" / "mesh-greenhouse.yaml",
        identity=IDENTITY,
        env={},
        resolv_conf=NO_RESOLV,
    )
    assert loaded.secret_paths == {"mesh.clusters[0].key", "mesh.clusters[1].key"}
    greenhouse, site, campus = loaded.config.mesh.clusters
    assert greenhouse.key is not None
    assert site.key is not None
    assert campus.observe_only
    assert (site.strategy, campus.strategy) == ("static", "dns")
    text = render_yaml(loaded.config, redact=loaded.secret_paths)
    assert base64.b64encode(greenhouse.key).decode() not in text
    assert base64.b64encode(site.key).decode() not in text


# -- render -> load round trip for any valid mesh ---------------------------------------------
NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,15}\Z")
SECONDS = st.floats(min_value=0.001, max_value=86400, allow_nan=False, allow_infinity=False)
PEERS = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]")
).flatmap(lambda host: st.integers(1, 65535).map(lambda port: f"{host}:{port}"))


@st.composite
def clusters(draw: st.DrawFn, name: str, port: int) -> ClusterConfig:
    strategy = draw(st.sampled_from(["mdns", "static", "dns"]))
    interval = draw(SECONDS.filter(lambda s: s > 0.001))
    return ClusterConfig(
        name=name,
        key=draw(st.none() | st.binary(min_size=32, max_size=32)),
        strategy=strategy,
        port=port,
        peers=tuple(draw(st.lists(PEERS, min_size=1, max_size=3, unique=True)))
        if strategy == "static"
        else (),
        probe_interval=interval,
        probe_timeout=draw(st.floats(min_value=0.0005, max_value=interval, exclude_max=True)),
        indirect_checks=draw(st.integers(0, 16)),
        suspicion_mult=draw(st.integers(1, 100)),
        gossip_interval=draw(SECONDS),
        gossip_fanout=draw(st.integers(1, 64)),
        push_pull_interval=draw(SECONDS),
        reap_after=draw(SECONDS),
        suspicion_max_mult=draw(st.integers(1, 100)),
        retransmit_mult=draw(st.integers(1, 100)),
        max_local_health=draw(st.integers(1, 64)),
        rejoin_interval=draw(SECONDS),
        rejoin_max_interval=draw(SECONDS),
        join_defer=draw(SECONDS),
        dns_name=draw(st.from_regex(r"\A_?[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}\Z"))
        if strategy == "dns"
        else None,
        dns_interval=draw(SECONDS),
        interfaces=InterfacesConfig(
            include=tuple(draw(st.lists(NAMES, max_size=2))),
            exclude=tuple(draw(st.lists(NAMES, max_size=2))),
        ),
        offers=tuple(
            draw(st.lists(st.from_regex(r"\A[a-z]{1,8}:[a-z]{1,8}\Z"), max_size=3, unique=True))
        ),
        roles=tuple(draw(st.lists(NAMES, max_size=3, unique=True))),
    )


@st.composite
def meshes(draw: st.DrawFn) -> MeshConfig:
    names = draw(st.lists(NAMES, max_size=3, unique=True))
    ports = draw(
        st.lists(
            st.integers(1, 65535).filter(lambda p: p != 5353),
            min_size=len(names),
            max_size=len(names),
            unique=True,
        )
    )
    return MeshConfig(
        enabled=draw(st.booleans()),
        clusters=tuple(draw(clusters(n, p)) for n, p in zip(names, ports, strict=True)),
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(meshes())
def test_any_valid_mesh_renders_and_loads_back(mesh: MeshConfig) -> None:
    config = dataclasses.replace(config_of(None), mesh=mesh)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "edgeagent.yaml"
        path.write_text(render_yaml(config), encoding="utf-8")
        assert config_of(path) == config

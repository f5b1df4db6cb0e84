"""``edgeagent info`` rendering and the device assembly it relies on (pure parts)."""

from __future__ import annotations

import re
from pathlib import Path

from edgeagent.config.loader import load_config
from edgeagent.device import build_table, device_id
from edgeagent.identity import DeviceIdentity
from edgeagent.info import format_record_lines, records_document, render_info
from edgeagent.mdns.dump import dump_records
from edgeagent.net.model import InterfaceInfo

ETH0 = InterfaceInfo("eth0", 2, ("10.0.0.5",), ("fe80::1",))


def test_renames_from_state_are_applied_to_hosts_and_instances(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        identity=DeviceIdentity("abcd2e6d"),
        overrides={
            "mdns": {"services": [{"id": "ssh", "protocol": "ssh", "transport": "tcp", "port": 22}]}
        },
    )
    table = build_table(
        cfg,
        renames={"host:edge-2e6d": "edge-2e6d-2", "service:ssh": "edge-2e6d-2"},
        device_id="abcd2e6d",
    )
    assert table.hosts == ("edge-2e6d-2",)
    instances = {s.id: s.instance for s in table.services}
    assert instances["ssh"] == "edge-2e6d-2"
    agent = table.service("edgeagent")
    assert agent is not None
    assert ("id", "abcd2e6d") in agent.txt


def test_piped_lines_are_exactly_mdnslite_and_terminal_lines_are_aligned() -> None:
    cfg = load_config(None, identity=DeviceIdentity("2e6d"))
    rows = records_document(list(build_table(cfg, renames={}).records_for(ETH0)))
    plain = list(format_record_lines(rows, color=False))
    assert "edge-2e6d.local: type A, class IN, ttl 120, addr 10.0.0.5" in plain
    names = [line.split(": type ")[0].lower() for line in plain]
    assert names == sorted(names)
    coloured = list(format_record_lines(rows, color=True))
    assert all("\x1b[" in line for line in coloured)
    # Aligned: without the colour codes, the "type" column starts at one offset everywhere,
    # and the text is the plain line with padding after the colon.
    visible = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in coloured]
    assert len({line.index(" type ") for line in visible}) == 1
    assert [re.sub(r":\s+type ", ": type ", line) for line in visible] == plain


def test_render_info_shows_header_bridge_and_other_stacks() -> None:
    cfg = load_config(None, identity=DeviceIdentity("2e6d"))
    info = {
        "running": True,
        "version": "0.1.0",
        "hostname": "edge-2e6d",
        "interfaces": [{"name": "eth0", "ipv4": ["10.0.0.5"], "ipv6": []}],
        "mdns": {"other_stacks": [{"pid": 42, "command": "avahi-daemon"}]},
        "dns_bridge": {"enabled": True, "address": "127.0.0.53", "port": 53},
        "records": records_document(dump_records(build_table(cfg, renames={}), None)),
        "caches": {
            "eth0": [
                {
                    **records_document(dump_records(build_table(cfg, renames={}), None))[0],
                    "source": "10.0.0.9",
                }
            ]
        },
    }
    lines = list(render_info(info, color=False, caches=True))
    assert lines[0] == "# edge-2e6d: edgeagent 0.1.0, running"
    assert "# interface eth0: 10.0.0.5" in lines
    assert "# sharing UDP 5353 with avahi-daemon (pid 42)" in lines
    assert "# dns bridge on 127.0.0.53:53" in lines
    assert "Interface eth0:" in lines
    assert "  Responder: 10.0.0.9" in lines


def test_device_id_is_kept_in_the_state_dir_without_a_board_serial(tmp_path: Path) -> None:
    no_serial = DeviceIdentity("0123456789abcdef", "/etc/machine-id")
    first = device_id(tmp_path, no_serial)
    assert len(first) == 16
    assert device_id(tmp_path, no_serial) == first
    assert device_id(tmp_path / "other", no_serial) != first
    board = DeviceIdentity("10000000abcd2e6d", "/proc/cpuinfo")
    assert device_id(tmp_path, board) == "10000000abcd2e6d"


def test_parts_are_listed_with_state_error_and_non_zero_counters() -> None:
    info = {
        "running": True,
        "hostname": "edge-1",
        "parts": {
            "journal": {"state": "running", "counters": {"commits": 12, "errors": 0}},
            "serial": {
                "state": "degraded",
                "counters": {f"c{i}": i + 1 for i in range(10)},
                "error": "OSError: gone",
            },
        },
    }
    lines = list(render_info(info, color=False, caches=False))
    assert "Parts:" in lines
    assert "  journal  running  commits=12" in lines
    serial = next(line for line in lines if line.startswith("  serial"))
    assert serial.startswith("  serial   degraded (OSError: gone)  c0=1 c1=2")
    assert serial.endswith("c7=8 (+2 more)")

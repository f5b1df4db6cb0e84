"""Small adapters: who else holds UDP 5353, and sd_notify datagrams."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgeagent.net.coexist import parse_proc_net_udp
from edgeagent.systemd import Notifier, watchdog_interval

PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  711: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   107        0 23311 2 0000000000000000 0
  712: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40001 2 0000000000000000 0
  713: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40002 2 0000000000000000 0
"""


def test_parse_proc_net_udp_finds_mdns_sockets() -> None:
    assert parse_proc_net_udp(PROC_NET_UDP) == {23311, 40002}
    assert parse_proc_net_udp(PROC_NET_UDP, "0035") == {40001}


def test_notifier_sends_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier(str(path))
        assert notifier.enabled
        notifier.ready("serving")
        assert server.recv(1024) == b"READY=1\nSTATUS=serving"
        notifier.stopping()
        assert server.recv(1024) == b"STOPPING=1"


def test_notifier_without_socket_is_a_no_op() -> None:
    notifier = Notifier("")
    assert not notifier.enabled
    notifier.ready("x")  # must not raise


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None

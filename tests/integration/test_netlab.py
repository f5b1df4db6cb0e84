"""The lab harness itself: two devices on one LAN reach each other, and teardown is clean."""

from __future__ import annotations

from tests.netlab import Lab, run


def test_two_devices_ping_and_teardown_removes_namespaces(lab: Lab) -> None:
    lab.add_lan("lan")
    a = lab.add_device("a", [("lan", "10.77.0.1")])
    lab.add_device("b", [("lan", "10.77.0.2")])
    result = a.exec("ping", "-c", "1", "-W", "2", "10.77.0.2", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    names = list(lab.namespaces)
    lab.close()
    listed = run("ip", "netns", "list").stdout
    assert not any(name in listed for name in names)

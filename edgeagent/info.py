"""``edgeagent info``: the shape of the info document and how a person reads it.

The agent builds the document (``records`` et al.); this module renders it. On a terminal the
record lines are aligned and coloured; piped, they are exactly MdnsLite's ``dump_records``
lines (``name: type A, class IN, ttl 120, addr 10.0.0.5``) so scripts can rely on them.
When no agent runs, ``offline_info`` shows what the config would advertise, with
``<interface_ipv4>``-style placeholders where addresses depend on the interface.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgeagent import __version__
from edgeagent.config.model import Config, Paths
from edgeagent.device import build_table, load_effective_config
from edgeagent.mdns.dump import dump_records, format_record, record_to_json

_TYPE_ORDER = {"PTR": 0, "SRV": 1, "TXT": 2, "A": 3, "AAAA": 4}
_COLORS = {"PTR": "35", "SRV": "36", "TXT": "33", "A": "32", "AAAA": "32", "NSEC": "90"}


def records_document(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """JSON rows (``{"name","type","class","ttl","data","line"}``), sorted for reading."""
    out = []
    for row in rows:
        item = record_to_json(row)
        item["line"] = format_record(row)
        out.append(item)
    return sorted(out, key=_sort_key)


def offline_info(paths: Paths) -> dict[str, Any]:
    """What the config would advertise, for when no agent answers."""
    config, state = load_effective_config(paths)
    table = build_table(config, renames=state.renames)
    return {
        "running": False,
        "version": __version__,
        **identity_document(config, table.hosts),
        "records": records_document(dump_records(table, None)),
    }


def identity_document(config: Config, hosts: Sequence[str]) -> dict[str, Any]:
    return {
        "hostname": hosts[0] if hosts else config.device.hostname,
        "hosts": [f"{host}.local" for host in hosts],
        "instance_name": config.mdns.instance_name,
    }


def render_info(info: Mapping[str, Any], *, color: bool, caches: bool) -> Iterator[str]:
    state = "running" if info.get("running") else "not running (records from config)"
    yield _bold(
        f"# {info.get('hostname', '?')}: edgeagent {info.get('version', '?')}, {state}", color
    )
    if info.get("interfaces"):
        for iface in info["interfaces"]:
            addresses = ", ".join(iface.get("ipv4", []) + iface.get("ipv6", []))
            yield f"# interface {iface['name']}: {addresses or 'no address'}"
    for stack in info.get("mdns", {}).get("other_stacks", []):
        pid = f" (pid {stack['pid']})" if stack.get("pid") else ""
        yield f"# sharing UDP 5353 with {stack['command']}{pid}"
    bridge = info.get("dns_bridge")
    if bridge:
        if bridge.get("enabled"):
            yield f"# dns bridge on {bridge['address']}:{bridge['port']}"
        else:
            yield "# dns bridge off"
    yield from format_record_lines(info.get("records", []), color=color)
    yield from _peer_lines(info.get("peers"), color=color)
    yield from part_lines(info.get("parts"), color=color)
    if caches:
        for iface, rows in sorted(info.get("caches", {}).items()):
            yield ""
            yield _bold(f"Interface {iface}:", color)
            by_source: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_source.setdefault(row.get("source") or "?", []).append(row)
            for source, source_rows in sorted(by_source.items()):
                yield f"  Responder: {source}"
                for line in format_record_lines(source_rows, color=color):
                    yield "    " + line


def _peer_lines(peers: Mapping[str, Any] | None, *, color: bool) -> Iterator[str]:
    if not peers:
        return
    yield ""
    if not peers.get("enabled"):
        yield _bold(f"Peers: mesh off ({peers.get('reason', 'disabled')})", color)
        return
    held = {c: r for c, r in peers.get("roles", {}).items() if r}
    roles = "; ".join(f"{c}: {', '.join(r)}" for c, r in held.items()) or "none"
    yield _bold(f"Peers (roles held here: {roles}):", color)
    members = peers.get("members", [])
    if not members:
        yield "  none yet"
    for row in sorted(members, key=lambda r: (r["cluster"], str(r.get("hostname")))):
        parts = [
            f"  {row['cluster']}",
            f"{row.get('hostname') or '?'} ({row.get('device_id') or '?'})",
            str(row["state"]),
            ",".join(row.get("addresses", [])) or "-",
        ]
        if row.get("rtt_ms") is not None:
            parts.append(f"rtt {row['rtt_ms']}ms")
        if row.get("roles"):
            parts.append("roles " + ",".join(row["roles"]))
        if row.get("offers"):
            parts.append("offers " + ",".join(row["offers"]))
        if row.get("reason"):
            parts.append(f"({row['reason']})")
        yield "  ".join(parts)


MAX_COUNTERS_SHOWN = 8  # per part in text; --json has them all


def part_lines(parts: Mapping[str, Any] | None, *, color: bool) -> Iterator[str]:
    """One line per part: its state, its error if any, and its non-zero counters (the
    journal's commits and size, the serial ports' writes and errors, ...)."""
    if not parts:
        return
    yield ""
    yield _bold("Parts:", color)
    width = max(len(name) for name in parts)
    for name, report in parts.items():
        counters = {k: v for k, v in report.get("counters", {}).items() if v}
        shown = [
            f"{key}={_number(value)}" for key, value in list(counters.items())[:MAX_COUNTERS_SHOWN]
        ]
        if len(counters) > MAX_COUNTERS_SHOWN:
            shown.append(f"(+{len(counters) - MAX_COUNTERS_SHOWN} more)")
        state = str(report.get("state", "?"))
        error = f" ({report['error']})" if report.get("error") else ""
        yield f"  {name.ljust(width)}  {state}{error}  {' '.join(shown)}".rstrip()


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def format_record_lines(rows: Sequence[Mapping[str, Any]], *, color: bool) -> Iterator[str]:
    """MdnsLite lines; aligned and coloured when ``color`` (a terminal), exact otherwise."""
    ordered = sorted(rows, key=_sort_key)
    width = max((len(row["name"]) for row in ordered), default=0) + 1
    for row in ordered:
        line = str(row["line"])
        if not color:
            yield line
            continue
        name, rest = line[: len(row["name"])], line[len(row["name"]) + 2 :]
        code = _COLORS.get(str(row["type"]), "0")
        yield f"\x1b[1m{(name + ':').ljust(width)}\x1b[0m \x1b[{code}m{rest}\x1b[0m"


def _sort_key(row: Mapping[str, Any]) -> tuple[str, int, str]:
    return (str(row["name"]).lower(), _TYPE_ORDER.get(str(row["type"]), 9), str(row["data"]))


def _bold(text: str, color: bool) -> str:
    return f"\x1b[1m{text}\x1b[0m" if color else text

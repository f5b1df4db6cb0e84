"""Benchmark: the DNS bridge against dnsmasq, side by side, driven by dnsperf on loopback.

Both servers hold the same names (``hostN.local`` A, AAAA and the derived reverse PTRs):
dnsmasq from ``--host-record`` (no resolv.conf, no hosts file, ``--local-ttl=120``), the
bridge — in its own process, on uvloop when installed — from a static name source. Each is
measured twice with dnsperf for ``--duration`` seconds in total, split into ``--rounds``
interleaved rounds that alternate which server goes first (the host is shared and noisy;
drifting load should hit both alike):

1. saturation: as many queries as dnsperf can keep in flight (``-q``): queries per second;
2. half load: both at the same offered rate, half of the slower server's saturation rate
   (``-Q``), with every query's latency recorded (``-v``): p50 / p99 / max.

Prints a table with bridge/dnsmasq ratios and writes JSON to ``bench/results/``.
Processes are started and stopped by PID; traffic stays on 127.0.0.0/8.

    .venv/bin/python bench/dns_bridge.py [--duration 10] [--rounds 5] [--loop auto|uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HOSTS = 10
DNSMASQ_ADDRESS = "127.0.0.2"
BRIDGE_ADDRESS = "127.0.0.3"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_THROUGHPUT = 0.8  # bridge >= 0.8x dnsmasq queries/s
TARGET_P99 = 2.0  # bridge p99 at half load <= 2x dnsmasq's


def host_data() -> list[tuple[str, str, str]]:
    return [(f"host{i}.local", f"10.0.1.{i + 1}", f"fd00::1:{i + 1}") for i in range(HOSTS)]


def query_lines() -> list[str]:
    lines = []
    for name, v4, _v6 in host_data():
        reverse = ".".join(reversed(v4.split("."))) + ".in-addr.arpa"
        lines += [f"{name} A", f"{name} AAAA", f"{reverse} PTR"]
    return lines


# -- the bridge process -----------------------------------------------------------------


def serve_bridge(address: str, port: int, loop_name: str) -> None:
    """Child mode: run the bridge until SIGTERM, then print its stats as JSON."""
    from edgeagent.bridge import BridgeServer, StaticNameSource
    from edgeagent.config.model import DnsBridgeConfig
    from edgeagent.dns.records import a_record, aaaa_record

    records = []
    for name, v4, v6 in host_data():
        records += [a_record(name, v4, 120), aaaa_record(name, v6, 120)]

    async def main() -> None:
        source = StaticNameSource(records)
        config = DnsBridgeConfig(enabled=True, address=address, port=port)
        async with BridgeServer(config, source) as server:
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("READY", type(asyncio.get_running_loop()).__module__, flush=True)
            await stop.wait()
            print(json.dumps(server.stats.as_dict()), flush=True)

    if loop_name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop_name == "uvloop":
                raise
        else:
            uvloop.run(main())
            return
    asyncio.run(main())


# -- the harness ------------------------------------------------------------------------


@dataclass
class Saturation:
    qps: float  # completed queries / total time, over all rounds
    sent: int
    completed: int
    lost: int
    avg_latency_ms: float
    round_qps: list[float] = field(default_factory=list)


@dataclass
class HalfLoad:
    rate: int
    qps: float
    completed: int
    lost: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    round_p99_ms: list[float] = field(default_factory=list)


@dataclass
class ServerResult:
    name: str
    saturation: Saturation | None = None
    half_load: HalfLoad | None = None
    rss_kb: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def free_port(address: str) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def start_dnsmasq(binary: str, port: int) -> subprocess.Popen[bytes]:
    args = [
        binary,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        f"--listen-address={DNSMASQ_ADDRESS}",
        f"--port={port}",
        "--pid-file=",
        "--local-ttl=120",
        "--log-facility=/dev/null",
    ]
    args += [f"--host-record={name},{v4},{v6}" for name, v4, v6 in host_data()]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_bridge(port: int, loop_name: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-bridge",
            "--port",
            str(port),
            "--loop",
            loop_name,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY"):
        stop(proc)
        raise RuntimeError(f"bridge did not start: {line!r}")
    return proc, line.split()[1]


def wait_answers(address: str, port: int, timeout: float = 10.0) -> None:
    """Until the server answers a query over UDP (checked with a raw socket)."""
    from dnslib import DNSRecord

    query = bytes(DNSRecord.question("host0.local").pack())
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            sock.sendto(query, (address, port))
            try:
                reply = DNSRecord.parse(sock.recv(4096))
            except TimeoutError:
                continue
            if [str(rr.rdata) for rr in reply.rr] == ["10.0.1.1"]:
                return
            raise RuntimeError(f"{address}:{port} answered wrongly: {reply}")
    raise RuntimeError(f"{address}:{port} does not answer")


def same_answers(port_a: int, port_b: int) -> None:
    """Both servers must give the same data for every benchmark query."""
    from dnslib import QTYPE, DNSRecord

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for line in query_lines():
            name, qtype = line.split()
            seen = []
            for address, port in ((DNSMASQ_ADDRESS, port_a), (BRIDGE_ADDRESS, port_b)):
                sock.sendto(bytes(DNSRecord.question(name, qtype).pack()), (address, port))
                reply = DNSRecord.parse(sock.recv(4096))
                seen.append(sorted((QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr))
            if seen[0] != seen[1]:
                raise RuntimeError(f"answers differ for {line}: dnsmasq {seen[0]} bridge {seen[1]}")


@dataclass(frozen=True)
class Target:
    """A server under test: where dnsperf sends, with which query file."""

    dnsperf: str
    data: str
    address: str
    port: int


def dnsperf(target: Target, duration: float, extra: list[str]) -> str:
    args = [target.dnsperf, "-s", target.address, "-p", str(target.port), "-d", target.data]
    args += ["-l", str(duration), *extra]
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, check=True)
    return done.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"dnsperf output lacks {pattern!r}:\n{text[-2000:]}")
    return float(match.group(1))


def saturate_round(target: Target, duration: float, outstanding: int) -> Saturation:
    text = dnsperf(target, duration, ["-q", str(outstanding)])
    qps = _number(r"Queries per second:\s+([\d.]+)", text)
    return Saturation(
        qps=qps,
        sent=int(_number(r"Queries sent:\s+(\d+)", text)),
        completed=int(_number(r"Queries completed:\s+(\d+)", text)),
        lost=int(_number(r"Queries lost:\s+(\d+)", text)),
        avg_latency_ms=_number(r"Average Latency \(s\):\s+([\d.]+)", text) * 1000,
        round_qps=[qps],
    )


def merge_saturation(rounds: list[Saturation]) -> Saturation:
    completed = sum(r.completed for r in rounds)
    return Saturation(
        qps=sum(r.qps for r in rounds) / len(rounds),  # equal durations: the overall rate
        sent=sum(r.sent for r in rounds),
        completed=completed,
        lost=sum(r.lost for r in rounds),
        avg_latency_ms=sum(r.avg_latency_ms * r.completed for r in rounds) / max(1, completed),
        round_qps=[q for r in rounds for q in r.round_qps],
    )


def half_load_round(target: Target, duration: float, rate: int) -> tuple[HalfLoad, list[float]]:
    # dnsperf -q left at its default (100): with -q 1000 it loses ~800 queries per run at
    # start-up against any server (dnsmasq included), which would pollute the tail.
    text = dnsperf(target, duration, ["-Q", str(rate), "-v"])
    latencies = sorted(_latencies(text))
    if not latencies:
        raise RuntimeError("dnsperf -v printed no per-query latencies")
    summary = _half_load(
        rate,
        _number(r"Queries per second:\s+([\d.]+)", text),
        int(_number(r"Queries lost:\s+(\d+)", text)),
        latencies,
    )
    return summary, latencies


def merge_half_load(rate: int, rounds: list[tuple[HalfLoad, list[float]]]) -> HalfLoad:
    latencies = sorted(x for _, values in rounds for x in values)
    merged = _half_load(
        rate,
        sum(r.qps for r, _ in rounds) / len(rounds),
        sum(r.lost for r, _ in rounds),
        latencies,
    )
    merged.round_p99_ms = [r.p99_ms for r, _ in rounds]
    return merged


def _half_load(rate: int, qps: float, lost: int, latencies: list[float]) -> HalfLoad:
    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return HalfLoad(
        rate=rate,
        qps=qps,
        completed=len(latencies),
        lost=lost,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=latencies[-1] * 1000,
    )


def _latencies(text: str) -> list[float]:
    """Seconds per answered query from ``dnsperf -v`` lines (``> NOERROR name A 0.000123``);
    lines for lost queries (``> T name A``) carry no latency."""
    values = []
    for line in text.splitlines():
        if line.startswith("> "):
            last = line.rsplit(None, 1)[-1]
            try:
                values.append(float(last))
            except ValueError:
                continue
    return values


def rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) if match else None


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop one process we started, by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _order(keys: list[str], index: int) -> list[str]:
    return keys if index % 2 == 0 else list(reversed(keys))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q at saturation")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds sharing --duration per server"
    )
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument("--serve-bridge", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bridge:
        serve_bridge(BRIDGE_ADDRESS, args.port, args.loop)
        return 0

    dnsmasq_bin = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    dnsperf_bin = shutil.which("dnsperf")
    if dnsmasq_bin is None or dnsperf_bin is None:
        print("needs dnsmasq and dnsperf on PATH", file=sys.stderr)
        return 2

    dnsmasq_port = free_port(DNSMASQ_ADDRESS)
    bridge_port = free_port(BRIDGE_ADDRESS)
    started: list[subprocess.Popen[Any]] = []
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="dnsperf-") as data:
        data.write("\n".join(query_lines()) + "\n")
        data.flush()
        try:
            dnsmasq = start_dnsmasq(dnsmasq_bin, dnsmasq_port)
            started.append(dnsmasq)
            bridge, loop_module = start_bridge(bridge_port, args.loop)
            started.append(bridge)
            wait_answers(DNSMASQ_ADDRESS, dnsmasq_port)
            wait_answers(BRIDGE_ADDRESS, bridge_port)
            same_answers(dnsmasq_port, bridge_port)

            results = {
                "dnsmasq": ServerResult("dnsmasq"),
                "bridge": ServerResult("bridge", extra={"loop": loop_module}),
            }
            targets = {
                "dnsmasq": Target(dnsperf_bin, data.name, DNSMASQ_ADDRESS, dnsmasq_port),
                "bridge": Target(dnsperf_bin, data.name, BRIDGE_ADDRESS, bridge_port),
            }
            procs: dict[str, subprocess.Popen[Any]] = {"dnsmasq": dnsmasq, "bridge": bridge}
            # Interleaved rounds, alternating who goes first: the host is shared and noisy,
            # and load drifting during the run should hit both servers alike.
            seg = args.duration / args.rounds
            sat_rounds: dict[str, list[Saturation]] = {k: [] for k in targets}
            for index in range(args.rounds):
                for key in _order(list(targets), index):
                    print(f"saturating {key}, round {index + 1}: {seg:g} s ...", flush=True)
                    sat_rounds[key].append(saturate_round(targets[key], seg, args.outstanding))
            for key, rounds in sat_rounds.items():
                results[key].saturation = merge_saturation(rounds)
            rate = int(
                0.5 * min(r.saturation.qps for r in results.values() if r.saturation is not None)
            )
            half_rounds: dict[str, list[tuple[HalfLoad, list[float]]]] = {k: [] for k in targets}
            for index in range(args.rounds):
                for key in _order(list(targets), index):
                    print(f"{key} at {rate} q/s, round {index + 1}: {seg:g} s ...", flush=True)
                    half_rounds[key].append(half_load_round(targets[key], seg, rate))
            for key, proc in procs.items():
                results[key].half_load = merge_half_load(rate, half_rounds[key])
                results[key].rss_kb = rss_kb(proc.pid)
        finally:
            for proc in reversed(started):
                stop(proc)
        if bridge.stdout is not None:
            tail = bridge.stdout.read().strip().splitlines()
            if tail:
                results["bridge"].extra["stats"] = json.loads(tail[-1])
            bridge.stdout.close()
        if dnsmasq.stderr is not None:
            dnsmasq.stderr.close()

    report = build_report(results, args, rate)
    print_table(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"dns_bridge-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def build_report(
    results: dict[str, ServerResult], args: argparse.Namespace, rate: int
) -> dict[str, Any]:
    bridge, dnsmasq = results["bridge"], results["dnsmasq"]
    assert bridge.saturation is not None
    assert dnsmasq.saturation is not None
    assert bridge.half_load is not None
    assert dnsmasq.half_load is not None
    ratios = {
        "throughput": bridge.saturation.qps / dnsmasq.saturation.qps,
        "p50_half_load": bridge.half_load.p50_ms / dnsmasq.half_load.p50_ms,
        "p99_half_load": bridge.half_load.p99_ms / dnsmasq.half_load.p99_ms,
    }
    return {
        "benchmark": "dns_bridge",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "settings": {
            "duration_s": args.duration,
            "outstanding": args.outstanding,
            "rounds": args.rounds,
            "half_load_rate": rate,
            "queries": query_lines(),
        },
        "results": {k: asdict(v) for k, v in results.items()},
        "ratios_bridge_over_dnsmasq": ratios,
        "targets": {
            "throughput_min_ratio": TARGET_THROUGHPUT,
            "throughput_met": ratios["throughput"] >= TARGET_THROUGHPUT,
            "p99_max_ratio": TARGET_P99,
            "p99_met": ratios["p99_half_load"] <= TARGET_P99,
        },
    }


def print_table(report: dict[str, Any]) -> None:
    res = report["results"]
    ratios = report["ratios_bridge_over_dnsmasq"]
    rows = [
        ("saturation q/s", "saturation", "qps", "throughput", "{:,.0f}"),
        ("  lost", "saturation", "lost", None, "{:,}"),
        (
            f"p50 ms @ {report['settings']['half_load_rate']:,} q/s",
            "half_load",
            "p50_ms",
            "p50_half_load",
            "{:.3f}",
        ),
        ("p99 ms", "half_load", "p99_ms", "p99_half_load", "{:.3f}"),
        ("max ms", "half_load", "max_ms", None, "{:.3f}"),
        ("  lost", "half_load", "lost", None, "{:,}"),
    ]
    print()
    print(f"{'':28} {'dnsmasq':>12} {'bridge':>12} {'bridge/dnsmasq':>15}")
    for label, section, key, ratio_key, fmt in rows:
        a = fmt.format(res["dnsmasq"][section][key])
        b = fmt.format(res["bridge"][section][key])
        ratio = f"{ratios[ratio_key]:.2f}x" if ratio_key else ""
        print(f"{label:28} {a:>12} {b:>12} {ratio:>15}")
    print(f"{'RSS kB':28} {res['dnsmasq']['rss_kb'] or 0:>12,} {res['bridge']['rss_kb'] or 0:>12,}")
    extra = res["bridge"]["extra"]
    print(
        "per-round saturation q/s: dnsmasq "
        + ", ".join(f"{q:,.0f}" for q in res["dnsmasq"]["saturation"]["round_qps"])
        + "; bridge "
        + ", ".join(f"{q:,.0f}" for q in res["bridge"]["saturation"]["round_qps"])
    )
    print(f"\nbridge loop: {extra.get('loop')}; stats: {extra.get('stats')}")
    targets = report["targets"]
    print(
        f"targets: throughput >= {targets['throughput_min_ratio']}x: "
        f"{'met' if targets['throughput_met'] else 'NOT met'}; "
        f"p99 <= {targets['p99_max_ratio']}x: {'met' if targets['p99_met'] else 'NOT met'}"
    )


if __name__ == "__main__":
    sys.exit(main())

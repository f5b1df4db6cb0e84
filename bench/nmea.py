"""NMEA 0183 parsing side by side with pynmea2: the same sentences, in the same run.

Target (issue "Sensors"): sentences per second, ours / pynmea2 >= 1.0.

    .venv/bin/python bench/nmea.py [--rounds 7] [--seconds 0.3]

Both sides check the checksum: ours always verifies one that is there, pynmea2 runs with
``check=True``. Each mode parses the whole sentence list over and over for ``--seconds`` per
round; rounds interleave the modes (so a noisy neighbour hurts all of them alike) and the
figures are the median round. Modes:

- **ours**: ``NmeaParser().parse(line)`` on the bytes the line framer hands it, returning
  every value (degrees, ints, floats, ISO times);
- **pynmea2 lazy**: ``pynmea2.parse(text, check=True)`` on a ``str`` decoded beforehand
  (its best case: the decode is not timed); it returns an object whose fields are still
  strings, converted only when read;
- **pynmea2 same values**: the same, then reading the values we return (``latitude``,
  ``longitude``, ``gps_qual``, ``datetime``, ...) and converting them the same way.

Two sentence sets: the four types we read (GGA, RMC, GSA, GSV; pynmea2's test vectors and a
u-blox GPS+GLONASS epoch), and the whole epoch as a receiver sends it, with VTG and GLL that
we count as unsupported and pynmea2 parses. Before timing, the script checks that both read
the same numbers from every sentence of the first set.
"""

from __future__ import annotations

import argparse
import functools
import math
import operator
import statistics
import time
from collections.abc import Callable
from typing import Any

import pynmea2
from common import write_result

from edgeagent.sensors.model import ParseError
from edgeagent.sensors.nmea import KNOT, NmeaParser


def with_checksum(body: str) -> str:
    return f"${body}*{functools.reduce(operator.xor, body.encode(), 0):02X}"


# pynmea2's own vectors (test/test_types.py, test/test_pynmea.py) and one epoch of a u-blox
# M8 receiver tracking GPS and GLONASS (bodies after u-blox's protocol description).
READ = [
    "$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D",
    "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68",
    "$GPGSA,A,3,02,,,07,,09,24,26,,,,,1.6,1.6,1.0*3D",
    "$GPGSV,3,3,09,24,03,046,*47",
    with_checksum("GNRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A"),
    with_checksum("GNGGA,083559.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,"),
    with_checksum("GNGSA,A,3,10,23,29,07,08,09,18,26,,,,,1.94,1.18,1.54,1"),
    with_checksum("GNGSA,A,3,65,67,80,81,82,88,66,,,,,,1.94,1.18,1.54,2"),
    with_checksum("GPGSV,3,1,11,10,63,137,17,07,61,098,15,05,59,290,20,08,54,157,30"),
    with_checksum("GPGSV,3,2,11,02,39,223,19,13,28,070,17,26,23,252,,04,14,186,14"),
    with_checksum("GPGSV,3,3,11,29,09,301,24,16,09,020,,36,,,"),
    with_checksum("GLGSV,2,1,06,65,64,037,33,66,47,276,30,80,40,190,28,81,22,068,"),
    with_checksum("GLGSV,2,2,06,82,10,299,,88,05,150,"),
]
EPOCH = [
    *READ[4:],
    with_checksum("GNVTG,77.52,T,,M,0.004,N,0.008,K,A"),
    with_checksum("GNGLL,4717.11364,N,00833.91565,E,083559.00,A,A"),
]


IN_VIEW = {
    "GP": "sats_in_view",
    "GN": "sats_in_view",
    "GL": "sats_in_view.glonass",
    "GA": "sats_in_view.galileo",
    "BD": "sats_in_view.beidou",
    "GB": "sats_in_view.beidou",
}


def ours_parse(parser: NmeaParser) -> Callable[[bytes], Any]:
    def parse(line: bytes) -> Any:
        try:
            return parser.parse(line)
        except ParseError:
            return None  # VTG, GLL: counted as unsupported by the sensor

    return parse


def pynmea2_lazy(line: str) -> Any:
    return pynmea2.parse(line, check=True)


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    return kind(text) if text else None


def pynmea2_values(line: str) -> Any:
    """pynmea2, then the values ``NmeaParser`` returns, read and converted the same way."""
    m = pynmea2.parse(line, check=True)
    kind = m.sentence_type
    if kind == "GGA":
        fix = m.gps_qual
        return {
            "time": m.timestamp.isoformat() if m.timestamp else None,
            "lat": m.latitude if m.lat and fix else None,
            "lon": m.longitude if m.lon and fix else None,
            "fix": fix,
            "sats": _number(m.num_sats, int),
            "hdop": _number(m.horizontal_dil, float),
            "alt": m.altitude if fix else None,
        }
    if kind == "RMC":
        valid = m.status == "A"
        speed = m.spd_over_grnd
        return {
            "time": m.datetime.isoformat() if m.datestamp else None,
            "lat": m.latitude if m.lat and valid else None,
            "lon": m.longitude if m.lon and valid else None,
            "speed": speed * KNOT if speed is not None and valid else None,
            "course": m.true_course if valid else None,
        }
    if kind == "GSA":
        return {
            "fix_type": _number(m.mode_fix_type, int),
            "pdop": _number(m.pdop, float),
            "hdop": _number(m.hdop, float),
            "vdop": _number(m.vdop, float),
        }
    if kind == "GSV":
        return {IN_VIEW[m.talker]: _number(m.num_sv_in_view, int)}
    return m


def agree(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """The same numbers (times differ only in format: ours ISO with Z and the digits sent)."""
    if set(ours) != set(theirs):
        return False
    for key, value in ours.items():
        other = theirs[key]
        if key == "time":
            continue
        if value is None or other is None:
            if value is not other:
                return False
        elif not math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-12):
            return False
    return True


def rate(parse: Callable[[Any], Any], lines: list[Any], seconds: float) -> float:
    """Sentences per second over at least ``seconds`` of whole passes over ``lines``."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for line in lines:
            parse(line)
        done += len(lines)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def measure(sets: dict[str, list[str]], rounds: int, seconds: float) -> dict[str, Any]:
    ours = ours_parse(NmeaParser())
    modes: dict[str, tuple[Callable[[Any], Any], bool]] = {
        "ours": (ours, True),
        "pynmea2_lazy": (pynmea2_lazy, False),
        "pynmea2_same_values": (pynmea2_values, False),
    }
    result: dict[str, Any] = {}
    for name, lines in sets.items():
        as_bytes = [line.encode() for line in lines]
        samples: dict[str, list[float]] = {mode: [] for mode in modes}
        for index in range(rounds):
            order = list(modes)
            if index % 2:
                order.reverse()
            for mode in order:
                parse, wants_bytes = modes[mode]
                samples[mode].append(rate(parse, as_bytes if wants_bytes else lines, seconds))
        medians = {mode: statistics.median(values) for mode, values in samples.items()}
        result[name] = {
            "sentences": len(lines),
            "sentences_per_s": medians,
            "ratio_vs_pynmea2_lazy": medians["ours"] / medians["pynmea2_lazy"],
            "ratio_vs_pynmea2_same_values": medians["ours"] / medians["pynmea2_same_values"],
            "rounds": samples,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="per mode per round")
    args = parser.parse_args()

    ours = NmeaParser()
    disagree = [line for line in READ if not agree(ours.parse(line.encode()), pynmea2_values(line))]
    if disagree:
        raise SystemExit(f"ours and pynmea2 read different values from: {disagree}")

    sets = {"the four types we read": READ, "a receiver's whole epoch": EPOCH}
    result = measure(sets, args.rounds, args.seconds)
    path = write_result(
        "nmea",
        {
            "rounds": args.rounds,
            "seconds_per_mode_per_round": args.seconds,
            "pynmea2": pynmea2.version,
            "target": "ours / pynmea2 >= 1.0",
            "sets": result,
        },
    )
    print(f"NMEA parsing, median of {args.rounds} interleaved rounds (pynmea2 {pynmea2.version})")
    print(f"{'sentences':<28}{'ours':>12}{'pynmea2 lazy':>15}{'same values':>14}{'ratios':>18}")
    for name, row in result.items():
        rates = row["sentences_per_s"]
        print(
            f"{name + ' (' + str(row['sentences']) + ')':<28}"
            f"{rates['ours']:>12,.0f}{rates['pynmea2_lazy']:>15,.0f}"
            f"{rates['pynmea2_same_values']:>14,.0f}"
            f"{row['ratio_vs_pynmea2_lazy']:>9.2f}x{row['ratio_vs_pynmea2_same_values']:>8.2f}x"
        )
    print(f"ratios: ours / pynmea2 lazy, ours / pynmea2 same values; target >= 1.0; {path}")


if __name__ == "__main__":
    main()

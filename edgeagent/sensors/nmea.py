"""NMEA 0183: GGA, RMC, GSA and GSV sentences from a GNSS receiver, into values. Pure.

Theory of operation
-------------------
``NmeaParser.parse(frame)`` takes one line (the ``LineFramer`` has removed ``"\\r\\n"``) and
returns the values of that sentence, or raises ``ParseError`` with the reason it goes to:

1. The sentence starts at the last ``$`` of the line, so a TAG block (``\\s:r1*hh\\``, NMEA 4)
   or noise glued in front of it is skipped; a line without ``$`` is ``SYNTAX`` (``!`` = AIS
   encapsulation: ``UNSUPPORTED``).
2. ``*hh`` at the end is the XOR of every byte between ``$`` and ``*`` in two hex digits: a
   mismatch is ``CHECKSUM``, anything but two hex digits after ``*`` is ``SYNTAX``. Old
   receivers send no checksum: that is accepted unless the parser is ``strict``
   (then ``CHECKSUM``).
3. The address is a talker and a type: talkers GP (GPS), GN (combined), GL (GLONASS),
   GA (Galileo), BD and GB (BeiDou); types GGA, RMC, GSA, GSV. Any other well-formed sentence
   (other talkers, ``$P`` proprietary, GLL, VTG, TXT, ...) is ``UNSUPPORTED``: receivers send
   them all the time, they are counted, not errors. Non-ASCII is ``UTF8``.
4. Too few fields for the type is ``SYNTAX``; a field that does not convert (a latitude with
   61 minutes, a hemisphere ``X``, a time ``25xxxx``) is ``CONVERT``. A sentence is used whole
   or not at all.

An empty field is no data: its value is ``None``, never ``0.0`` (pynmea2 reports a missing
latitude as 0.0, a point in the Gulf of Guinea). A position the receiver itself marks invalid
(GGA quality 0, RMC status ``V``) is no data too: ``lat``, ``lon``, ``alt``, ``speed`` and
``course`` are ``None`` then, while ``time``, ``fix`` and ``sats`` are still reported.

What each sentence yields
-------------------------
========  ================================================================================
GGA       ``time`` (time of day only, ``"18:43:53.07Z"``: GGA has no date), ``lat``, ``lon``
          (decimal degrees, negative south and west), ``fix`` (quality: 0 none, 1 GPS,
          2 DGPS, 3 PPS, 4 RTK fixed, 5 RTK float, 6 estimated, 7 manual, 8 simulated),
          ``sats`` (satellites used), ``hdop``, ``alt`` (metres above mean sea level)
RMC       ``time`` (date and time, ``"1994-11-19T22:54:46Z"``; the time of day alone when the
          date field is empty), ``lat``, ``lon``, ``speed`` (metres per second: the sentence
          gives knots, times 1852/3600), ``course`` (degrees true)
GSA       ``fix_type`` (1 none, 2 2D, 3 3D; named apart from GGA's ``fix`` because the same
          number means another thing), ``pdop``, ``hdop``, ``vdop``
GSV       ``sats_in_view`` for talkers GP and GN; other constellations report their own
          count as ``sats_in_view.glonass``, ``sats_in_view.galileo``, ``sats_in_view.beidou``
          (a multi-constellation receiver sends one GSV series per constellation: one field
          for all would jump between their counts)
========  ================================================================================

Times are UTC in ISO 8601 with the fraction of a second exactly as the receiver sent it. RMC's
two-digit year is 19yy from 80 on and 20yy below (GPS started in 1980).

This is the hot path of a GNSS sensor (a receiver sends 5-10 sentences a second, 10 Hz
receivers ten times that), so it works on bytes and ``str.split`` with no regex;
``bench/nmea.py`` measures it against pynmea2 on the same sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from edgeagent.sensors.model import DropReason, ParseError, Values

KNOT = 1852 / 3600  # metres per second in one knot (one nautical mile an hour)

TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB"})
SENTENCE_TYPES = ("GGA", "RMC", "GSA", "GSV")
# Every field a sentence can yield (the table above), for checking a config against.
FIELDS = frozenset(
    {
        *("time", "lat", "lon", "alt", "fix", "sats", "hdop", "speed", "course"),
        *("fix_type", "pdop", "vdop", "sats_in_view"),
        *("sats_in_view.glonass", "sats_in_view.galileo", "sats_in_view.beidou"),
    }
)


class NmeaParser:
    """GGA, RMC, GSA and GSV sentences into values; ``strict`` requires the checksum."""

    __slots__ = ("strict",)

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict

    def field_names(self) -> frozenset[str]:
        """Every field a sentence can yield."""
        return FIELDS

    def parse(self, frame: bytes) -> Values:
        """The values of one sentence; raises ``ParseError`` for what is not one we read."""
        if frame[:1] != b"$":
            start = frame.rfind(b"$")
            if start < 0:
                stripped = frame.strip()
                if stripped[:1] == b"!":
                    raise ParseError(DropReason.UNSUPPORTED, "encapsulated sentence")
                raise ParseError(DropReason.SYNTAX, "no '$'")
            frame = frame[start:]
        star = frame.rfind(b"*")
        if star >= 0:
            body = frame[1:star]
            given = _HEX.get(frame[star + 1 :])
            if given is None:  # trailing blanks are rare: strip them only when they are there
                given = _HEX.get(frame[star + 1 :].rstrip())
            if given is None:
                raise ParseError(DropReason.SYNTAX, "the checksum is not two hex digits")
            if _xor(body) != given:
                raise ParseError(DropReason.CHECKSUM, f"checksum {given:02X} does not match")
        elif self.strict:
            raise ParseError(DropReason.CHECKSUM, "no checksum")
        else:
            body = frame[1:].rstrip()
        try:
            fields = body.decode("ascii").split(",")
        except UnicodeDecodeError:
            raise ParseError(DropReason.UTF8, "not ASCII") from None
        address = fields[0]
        read = _READERS.get(address)
        if read is None:
            raise ParseError(DropReason.UNSUPPORTED, address[:8])
        try:
            return read(fields)
        except ParseError:
            raise
        except ValueError as exc:
            raise ParseError(DropReason.CONVERT, f"{address}: {exc}") from None


def checksum(body: bytes) -> int:
    """The NMEA checksum of the bytes between ``$`` and ``*``: the XOR of all of them."""
    return _xor(body)


# -- the sentences -------------------------------------------------------------------------------


def _gga(f: list[str]) -> Values:
    # $GPGGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,geoid,M,age,station
    if len(f) < 11:
        raise ParseError(DropReason.SYNTAX, f"GGA with {len(f) - 1} fields")
    quality = _QUALITY.get(f[6], -1)
    if quality == -1:
        raise ValueError(f"fix quality {f[6]!r}")
    if quality == 0:
        lat = lon = alt = None
    else:
        lat = _degrees(f[2], f[3], _NS, 90)
        lon = _degrees(f[4], f[5], _EW, 180)
        alt = float(f[9]) if f[9] else None
        if alt is not None and f[10] != "M":
            raise ValueError(f"altitude unit {f[10]!r}")
    return {
        "time": _time(f[1]) + "Z" if f[1] else None,
        "lat": lat,
        "lon": lon,
        "fix": quality,
        "sats": int(f[7]) if f[7] else None,
        "hdop": float(f[8]) if f[8] else None,
        "alt": alt,
    }


def _rmc(f: list[str]) -> Values:
    # $GPRMC,time,status,lat,N,lon,E,knots,course,date,variation,E[,mode[,nav status]]
    if len(f) < 10:
        raise ParseError(DropReason.SYNTAX, f"RMC with {len(f) - 1} fields")
    status = f[2]
    if status == "A":
        lat = _degrees(f[3], f[4], _NS, 90)
        lon = _degrees(f[5], f[6], _EW, 180)
        speed = float(f[7]) * KNOT if f[7] else None
        course = float(f[8]) if f[8] else None
    elif status in ("V", ""):
        lat = lon = speed = course = None
    else:
        raise ValueError(f"status {status!r}")
    when = None
    if f[1]:
        when = _time(f[1])
        when = (_date(f[9]) + "T" + when + "Z") if f[9] else when + "Z"
    return {"time": when, "lat": lat, "lon": lon, "speed": speed, "course": course}


def _gsa(f: list[str]) -> Values:
    # $GPGSA,mode,fix type,12 x PRN,pdop,hdop,vdop[,system id]
    if len(f) < 18:
        raise ParseError(DropReason.SYNTAX, f"GSA with {len(f) - 1} fields")
    fix_type = _FIX_TYPE.get(f[2], -1)
    if fix_type == -1:
        raise ValueError(f"fix type {f[2]!r}")
    return {
        "fix_type": fix_type,
        "pdop": float(f[15]) if f[15] else None,
        "hdop": float(f[16]) if f[16] else None,
        "vdop": float(f[17]) if f[17] else None,
    }


def _gsv(f: list[str]) -> Values:
    # $GPGSV,parts,part,in view,(prn,elevation,azimuth,snr) x up to 4[,signal id]
    if len(f) < 4:
        raise ParseError(DropReason.SYNTAX, f"GSV with {len(f) - 1} fields")
    return {_IN_VIEW[f[0][:2]]: int(f[3]) if f[3] else None}


# Every address we read (talker + type) to its reader: one lookup checks both.
_READERS: dict[str, Callable[[list[str]], Values]] = {
    talker + kind: read
    for talker in TALKERS
    for kind, read in (("GGA", _gga), ("RMC", _rmc), ("GSA", _gsa), ("GSV", _gsv))
}

# Field texts to their value, so a valid one costs one lookup and anything else is refused.
_QUALITY: dict[str, int | None] = {"": None} | {str(quality): quality for quality in range(9)}
_FIX_TYPE: dict[str, int | None] = {"": None} | {str(kind): kind for kind in range(1, 4)}

_IN_VIEW = {
    "GP": "sats_in_view",
    "GN": "sats_in_view",
    "GL": "sats_in_view.glonass",
    "GA": "sats_in_view.galileo",
    "BD": "sats_in_view.beidou",
    "GB": "sats_in_view.beidou",
}


# -- private helpers -----------------------------------------------------------------------------

# Two hex digits, either case, to their value: one lookup instead of validating for int().
_HEX = {f"{value:02{case}}".encode(): value for value in range(256) for case in ("X", "x")}

# Seconds may be 60 (a leap second); the fraction is kept as the receiver sent it.
_TIME = re.compile(r"([01][0-9]|2[0-3])([0-5][0-9])((?:[0-5][0-9]|60)(?:\.[0-9]+)?)")
_DATE = re.compile(r"(0[1-9]|[12][0-9]|3[01])(0[1-9]|1[0-2])([0-9][0-9])")

_NS = {"N": 1.0, "S": -1.0}
_EW = {"E": 1.0, "W": -1.0}

_M512 = (1 << 512) - 1
_M256 = (1 << 256) - 1
_M128 = (1 << 128) - 1
_M64 = (1 << 64) - 1


def _xor(data: bytes) -> int:
    # XOR of all bytes without a Python-level loop per byte: read them as one integer and fold
    # it in halves (the XOR of the halves keeps the XOR of every byte lane) down to one byte.
    x = int.from_bytes(data, "little")
    while x >> 512:
        x = (x >> 512 ^ x) & _M512
    x = (x >> 256 ^ x) & _M256
    x = (x >> 128 ^ x) & _M128
    x = (x >> 64 ^ x) & _M64
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    return x & 0xFF


def _degrees(text: str, hemisphere: str, signs: dict[str, float], limit: float) -> float | None:
    """``ddmm.mmmm`` (``dddmm.mmmm``) and its hemisphere to signed decimal degrees."""
    if not text:
        return None
    # The minutes are the two digits before the point and the fraction; the degrees whatever
    # is before them (receivers differ on leading zeros). Each part is converted from its own
    # digits: splitting one float at 100 would turn 024°10.506' into 24.175099999999997.
    cut = text.find(".")
    cut = (len(text) if cut < 0 else cut) - 2
    if cut > 0:
        whole = float(text[:cut])
        minutes = float(text[cut:])
    else:
        whole = 0.0
        minutes = float(text)
    sign = signs.get(hemisphere)
    # Written so that NaN fails every comparison.
    if not (0.0 <= minutes < 60.0 and whole >= 0.0 and whole + minutes / 60 <= limit):
        raise ValueError(f"{text!r} is not {'a latitude' if limit == 90 else 'a longitude'}")
    if sign is None:
        raise ValueError(f"hemisphere {hemisphere!r}")
    return sign * (whole + minutes / 60)


def _time(text: str) -> str:
    """``hhmmss[.ss]`` to ``hh:mm:ss[.ss]``."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r}")
    hours, minutes, seconds = match.groups()
    return hours + ":" + minutes + ":" + seconds


def _date(text: str) -> str:
    """``ddmmyy`` to ``yyyy-mm-dd``."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"date {text!r}")
    day, month, year = match.groups()
    return ("19" if year >= "80" else "20") + year + "-" + month + "-" + day

"""NMEA 0183: pynmea2's vectors and bad inputs, what each sentence yields, and noise."""

from __future__ import annotations

import functools
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.sensors.framing import LineFramer
from edgeagent.sensors.model import DropReason, ParseError, Values
from edgeagent.sensors.nmea import KNOT, NmeaParser, checksum

GGA = b"$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D"
RMC = b"$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68"
GSA = b"$GPGSA,A,3,02,,,07,,09,24,26,,,,,1.6,1.6,1.0*3D"
GSV = b"$GPGSV,3,3,09,24,03,046,*47"
NO_FIX = b"$GPGGA,201716.684,,,,,0,00,,,M,0.0,M,,0000*5F"
CORRUPT = b"$GPRMC,172142.00,A,4805.30256324,N,11629.09084774,W,0.D"

parse = NmeaParser().parse


def sentence(body: str) -> bytes:
    """``$body*hh`` with its checksum computed the plain way (a reference for ours)."""
    xor = functools.reduce(operator.xor, body.encode(), 0)
    return f"${body}*{xor:02X}".encode()


def reason(frame: bytes, parser: NmeaParser | None = None) -> DropReason:
    with pytest.raises(ParseError) as caught:
        (parser or NmeaParser()).parse(frame)
    return caught.value.reason


# -- pynmea2's vectors (test/test_pynmea.py, test/test_types.py) --------------------------------


def test_gga() -> None:
    assert parse(GGA) == {
        "time": "18:43:53.07Z",
        "lat": pytest.approx(-19.4840833, abs=1e-7),
        "lon": pytest.approx(24.1751, abs=1e-9),
        "fix": 1,
        "sats": 4,
        "hdop": 2.6,
        "alt": 100.0,
    }


def test_gga_degrees_are_what_pynmea2_computes_to_the_last_bit() -> None:
    values = parse(GGA)
    assert values["lat"] == -19.484083333333334
    assert values["lon"] == 24.1751


def test_rmc() -> None:
    assert parse(RMC) == {
        "time": "1994-11-19T22:54:46Z",
        "lat": 49.274166666666666,
        "lon": -123.18533333333333,
        "speed": pytest.approx(0.5 * 1852 / 3600),
        "course": 54.7,
    }


def test_gsa() -> None:
    assert parse(GSA) == {"fix_type": 3, "pdop": 1.6, "hdop": 1.6, "vdop": 1.0}


def test_gsv() -> None:
    assert parse(GSV) == {"sats_in_view": 9}


def test_no_fix_is_no_data_not_zero() -> None:
    # pynmea2 reports latitude 0.0 here; an empty field is no data.
    assert parse(NO_FIX) == {
        "time": "20:17:16.684Z",
        "lat": None,
        "lon": None,
        "fix": 0,
        "sats": 0,
        "hdop": None,
        "alt": None,
    }


def test_a_wrong_checksum_is_checksum() -> None:
    assert reason(GGA[:-2] + b"00") is DropReason.CHECKSUM


def test_pynmea2_bad_inputs() -> None:
    assert reason(b"FOOBAR") is DropReason.SYNTAX
    assert reason(b"$GPABC,1,2,3") is DropReason.UNSUPPORTED
    # Cut off with no checksum: too few fields lenient, no checksum strict (as pynmea2).
    assert reason(CORRUPT) is DropReason.SYNTAX
    assert reason(CORRUPT, NmeaParser(strict=True)) is DropReason.CHECKSUM
    # A backslash after the checksum.
    assert reason(GSV + b"\\") is DropReason.SYNTAX


# -- the sentence rules -------------------------------------------------------------------------


def test_our_checksum_is_the_xor_between_dollar_and_star() -> None:
    assert checksum(GGA[1:-3]) == 0x6D
    assert checksum(b"") == 0
    long = bytes(range(256)) * 3
    assert checksum(long) == functools.reduce(operator.xor, long, 0)


@given(st.binary(max_size=300))
def test_checksum_matches_the_plain_xor(data: bytes) -> None:
    assert checksum(data) == functools.reduce(operator.xor, data, 0)


def test_lower_case_checksum_and_trailing_blanks_are_accepted() -> None:
    assert parse(GSV + b"  ") == {"sats_in_view": 9}
    body = b"GPGSA,A,3,,,,,,,,,,,,,1.0,1.0,1.0"
    assert checksum(body) > 9  # so its hex has a letter to write in lower case
    assert parse(b"$" + body + f"*{checksum(body):02x}".encode())["fix_type"] == 3


@pytest.mark.parametrize("tail", [b"*6", b"*6DD", b"*XY", b"*+6", b"* 6"])
def test_anything_but_two_hex_digits_after_the_star_is_syntax(tail: bytes) -> None:
    assert reason(GGA[:-3] + tail) is DropReason.SYNTAX


def test_a_missing_checksum_is_accepted_unless_strict() -> None:
    bare = GGA[:-3]
    assert parse(bare) == parse(GGA)
    assert reason(bare, NmeaParser(strict=True)) is DropReason.CHECKSUM
    assert NmeaParser(strict=True).parse(GGA) == parse(GGA)


def test_noise_or_a_tag_block_before_the_dollar_is_skipped() -> None:
    assert parse(b"\x00\xff garbage " + GSV) == {"sats_in_view": 9}
    assert parse(b"\\s:r3669,c:1692620000*5D\\" + GSV) == {"sats_in_view": 9}
    assert parse(b"  " + GSV) == {"sats_in_view": 9}


@pytest.mark.parametrize(
    "body",
    [
        "GPVTG,108.53,T,,M,0.04,N,0.07,K,A",  # a type we do not read
        "GPGLL,4916.45,N,12311.12,W,225444,A,",
        "GNTXT,01,01,02,ROM BASE 2.01",
        "IIMWV,271.0,R,000.2,N,A",  # another talker
        "GQGSV,1,1,01,01,40,083,46",
        "PUBX,00,081350.00,4717.113210,N",  # proprietary
        "CCGPQ,GGA",  # a query
        "GPGGAX,1",
    ],
)
def test_other_well_formed_sentences_are_unsupported(body: str) -> None:
    assert reason(sentence(body)) is DropReason.UNSUPPORTED


def test_encapsulated_ais_is_unsupported() -> None:
    assert reason(b"!AIVDM,1,1,,B,177KQJ5000G?tO`K>RA1wUbN0TKH,0*5C") is DropReason.UNSUPPORTED


def test_non_ascii_with_a_right_checksum_is_utf8() -> None:
    body = "GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,é"
    raw = body.encode("latin-1")
    frame = b"$" + raw + f"*{checksum(raw):02X}".encode()
    assert reason(frame) is DropReason.UTF8


@pytest.mark.parametrize(
    "body",
    [
        "GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00",  # cut before the unit
        "GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7",  # no date field
        "GPGSA,A,3,02,,,07,,09,24,26,,,,,1.6,1.6",  # no VDOP
        "GPGSV,3,3",
    ],
)
def test_too_few_fields_is_syntax(body: str) -> None:
    assert reason(sentence(body)) is DropReason.SYNTAX


@pytest.mark.parametrize(
    "body",
    [
        "GPGGA,184353.07,1961.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",  # 61 minutes
        "GPGGA,184353.07,9130.000,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",  # beyond a pole
        "GPGGA,184353.07,1929.045,X,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",  # hemisphere
        "GPGGA,184353.07,1929.045,S,18100.000,E,1,04,2.6,100.00,M,-33.9,M,,",  # 181 degrees
        "GPGGA,184353.07,-929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",
        "GPGGA,184353.07,nan,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",
        "GPGGA,184353.07,1929.045,S,02410.506,E,9,04,2.6,100.00,M,-33.9,M,,",  # quality 9
        "GPGGA,184353.07,1929.045,S,02410.506,E,1,x4,2.6,100.00,M,-33.9,M,,",
        "GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,F,-33.9,M,,",  # feet?
        "GPGGA,254353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",  # 25 h
        "GPGGA,1843,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",
        "GPGGA,184353.,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,",
        "GPRMC,225446,A,4916.45,N,12311.12,W,0.D,054.7,191194,020.3,E",
        "GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,321194,020.3,E",  # 32nd
        "GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191394,020.3,E",  # month 13
        "GPRMC,225446,X,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E",  # status
        "GPGSA,A,4,02,,,07,,09,24,26,,,,,1.6,1.6,1.0",  # fix type 4
        "GPGSV,3,3,x9,24,03,046,",
    ],
)
def test_a_field_that_does_not_convert_is_convert(body: str) -> None:
    assert reason(sentence(body)) is DropReason.CONVERT


def test_rmc_void_has_no_position_but_keeps_the_time() -> None:
    values = parse(sentence("GPRMC,225446.50,V,4916.45,N,12311.12,W,000.5,054.7,191194,,,N"))
    assert values == {
        "time": "1994-11-19T22:54:46.50Z",
        "lat": None,
        "lon": None,
        "speed": None,
        "course": None,
    }


def test_rmc_without_a_date_reports_the_time_of_day() -> None:
    values = parse(sentence("GPRMC,225446,A,4916.45,N,12311.12,W,,,,,"))
    assert values["time"] == "22:54:46Z"
    assert values["speed"] is None
    assert values["course"] is None
    assert parse(sentence("GPRMC,,V,,,,,,,,,,N"))["time"] is None


def test_rmc_years_before_80_are_this_century() -> None:
    assert parse(sentence("GNRMC,000000,A,0000.00,N,00000.00,E,0,0,010125,,,A"))["time"] == (
        "2025-01-01T00:00:00Z"
    )
    assert parse(sentence("GNRMC,235960,A,0000.00,N,00000.00,E,0,0,311280,,,A"))["time"] == (
        "1980-12-31T23:59:60Z"  # a leap second is a valid second
    )


def test_speed_is_metres_per_second() -> None:
    values = parse(sentence("GPRMC,225446,A,4916.45,N,12311.12,W,10.0,054.7,191194,,"))
    assert values["speed"] == pytest.approx(10 * KNOT)
    assert values["speed"] == pytest.approx(5.1444, abs=1e-4)


def test_gga_with_quality_zero_hides_a_stale_position() -> None:
    values = parse(sentence("GPGGA,184353,1929.045,S,02410.506,E,0,00,99.9,100.0,M,,M,,"))
    assert (values["lat"], values["lon"], values["alt"], values["fix"]) == (None, None, None, 0)
    assert values["hdop"] == 99.9


def test_gsv_of_other_constellations_is_counted_apart() -> None:
    assert parse(sentence("GLGSV,2,1,07,65,12,034,20")) == {"sats_in_view.glonass": 7}
    assert parse(sentence("GAGSV,1,1,03,02,12,034,20")) == {"sats_in_view.galileo": 3}
    assert parse(sentence("BDGSV,1,1,02,01,12,034,20")) == {"sats_in_view.beidou": 2}
    assert parse(sentence("GBGSV,1,1,02,01,12,034,20")) == {"sats_in_view.beidou": 2}
    assert parse(sentence("GNGSV,1,1,12")) == {"sats_in_view": 12}
    assert parse(sentence("GPGSV,1,1,")) == {"sats_in_view": None}


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "BD", "GB"])
def test_every_talker_reads_every_type(talker: str) -> None:
    assert parse(sentence(f"{talker}GGA,120000,4916.45,N,12311.12,W,1,08,0.9,5.0,M,,M,,"))[
        "lat"
    ] == pytest.approx(49.274166666)
    assert parse(sentence(f"{talker}RMC,120000,A,4916.45,N,12311.12,W,0.0,0.0,010124,,"))[
        "time"
    ] == ("2024-01-01T12:00:00Z")
    assert parse(sentence(f"{talker}GSA,A,2,,,,,,,,,,,,,2.0,1.5,1.3,1"))["fix_type"] == 2


def test_longitude_without_leading_zeros_and_minutes_only() -> None:
    assert parse(sentence("GPGGA,120000,4916.45,N,2410.506,E,1,08,0.9,5.0,M,,M,,"))[
        "lon"
    ] == pytest.approx(24.1751)
    assert parse(sentence("GPGGA,120000,0030.0,S,0.0,W,1,08,0.9,5.0,M,,M,,"))["lat"] == -0.5


def test_nmea_4_1_extra_fields_are_ignored() -> None:
    # RMC with mode and navigational status, GSA with the system id, GSV with the signal id.
    assert parse(sentence("GNRMC,120000,A,4916.45,N,12311.12,W,0.0,0.0,010124,,,A,V"))["lat"]
    assert parse(sentence("GNGSA,A,3,01,02,03,,,,,,,,,,1.2,0.8,0.9,1"))["fix_type"] == 3
    assert parse(sentence("GPGSV,1,1,01,01,40,083,46,1"))["sats_in_view"] == 1


def test_field_names_cover_every_sentence() -> None:
    seen: set[str] = set()
    for frame in (GGA, RMC, GSA, GSV, sentence("GLGSV,1,1,01"), sentence("GAGSV,1,1,01")):
        seen |= set(parse(frame))
    seen |= set(parse(sentence("BDGSV,1,1,01")))
    assert seen == NmeaParser().field_names()


# -- properties ----------------------------------------------------------------------------------


def nmea_degrees(value: float, width: int) -> str:
    """``dd[d]mm.mmmm`` as a receiver writes it (rounded to 1e-4 minute, carried)."""
    total = round(abs(value) * 60 * 10_000)
    whole, minutes = divmod(total, 60 * 10_000)
    return f"{whole:0{width}d}{minutes / 10_000:07.4f}"


@settings(max_examples=300)
@given(
    lat=st.floats(min_value=-89.99, max_value=89.99),
    lon=st.floats(min_value=-179.99, max_value=179.99),
    alt=st.one_of(st.none(), st.floats(min_value=-400, max_value=9000).map(lambda a: round(a, 1))),
    sats=st.integers(min_value=0, max_value=40),
    source=st.tuples(
        st.sampled_from(["GP", "GN", "GL", "GA", "BD", "GB"]), st.integers(min_value=1, max_value=8)
    ),
)
def test_a_generated_gga_reads_back(
    lat: float, lon: float, alt: float | None, sats: int, source: tuple[str, int]
) -> None:
    talker, quality = source
    body = (
        f"{talker}GGA,123519.00,{nmea_degrees(lat, 2)},{'N' if lat >= 0 else 'S'},"
        f"{nmea_degrees(lon, 3)},{'E' if lon >= 0 else 'W'},{quality},{sats:02d},0.9,"
        f"{'' if alt is None else alt},M,46.9,M,,"
    )
    values = parse(sentence(body))
    # Four decimals of a minute: within 1e-6 degrees (about 10 cm).
    assert values["lat"] == pytest.approx(lat, abs=2e-6)
    assert values["lon"] == pytest.approx(lon, abs=2e-6)
    assert values["alt"] == alt
    assert (values["fix"], values["sats"], values["time"]) == (quality, sats, "12:35:19.00Z")


@settings(max_examples=500)
@given(st.binary(max_size=120), st.booleans())
def test_noise_is_never_a_crash_and_strict_never_reads_it(data: bytes, strict: bool) -> None:
    try:
        NmeaParser(strict=strict).parse(data)
    except ParseError:
        return
    # Noise that happens to be a sentence we read is read; strict needs its checksum too.
    start = data.rfind(b"$")
    star = data.rfind(b"*")
    assert start >= 0
    if strict:
        assert int(data[star + 1 :].strip(), 16) == checksum(data[start + 1 : star])


@settings(max_examples=500)
@given(
    st.sampled_from([GGA, RMC, GSA, GSV, NO_FIX]),
    st.integers(min_value=1, max_value=70),
    st.integers(min_value=0, max_value=255),
)
def test_one_changed_byte_is_dropped_or_reads_the_same(frame: bytes, at: int, byte: int) -> None:
    # A flipped byte in a checksummed sentence never yields other values (the XOR catches
    # every single-byte change); a change that keeps the values (a blank) may pass.
    at = min(at, len(frame) - 1)
    changed = frame[:at] + bytes([byte]) + frame[at + 1 :]
    try:
        values = parse(changed)
    except ParseError:
        return
    assert values == parse(frame)


def test_a_stream_through_the_line_framer_with_garbage_and_awkward_cuts() -> None:
    stream = (
        b"\xff\xfe\x00partial,line,from,before*3A\r\n"
        + GGA
        + b"\r\n"
        + b"$GPGGA,18435"  # cut off by noise: glued to noise, then a newline
        + b"\x00\x13noise\r\n"
        + RMC
        + b"\r\n"
        + sentence("GPVTG,108.53,T,,M,0.04,N,0.07,K,A")
        + b"\r\n"
        + GSA[:-2]
        + b"00\r\n"  # a bad checksum
        + b"x" * 300
        + b"\r\n"  # overlong
        + GSV
        + b"\r\n"
    )
    for size in (1, 2, 3, 7, 64):
        framer = LineFramer(max_line=122)
        counts: dict[DropReason, int] = {}
        readings: list[Values] = []
        for start in range(0, len(stream), size):
            for frame in framer.feed(stream[start : start + size]):
                try:
                    readings.append(parse(frame))
                except ParseError as exc:
                    counts[exc.reason] = counts.get(exc.reason, 0) + 1
        assert readings == [parse(GGA), parse(RMC), parse(GSV)]
        assert counts == {
            DropReason.SYNTAX: 2,
            DropReason.UNSUPPORTED: 1,
            DropReason.CHECKSUM: 1,
        }
        assert framer.dropped == {DropReason.OVERLONG: 1}

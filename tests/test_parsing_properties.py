"""Property tests for syslogsrc.parsing.

1. Round trip: every RFC 5424 message the renderer below produces (valid by the section 6 ABNF)
   parses back, strictly and untagged, to the fields it was rendered from.
2. Total: any bytes, in any format, parse without an exception.
3. Nothing lost, precisely:
   * raw: MESSAGE is the whole frame (after the trailing LF/CRLF/NUL strip), byte for byte;
   * rfc3164: the frame ends with LEGACY_MSGHDR + MESSAGE (all after the PRI/stamp/host head is
     kept verbatim), and HOST, PROGRAM, PID are verbatim pieces of the head;
   * rfc5424: the frame ends with MESSAGE (after the optional BOM), and HOST, PROGRAM, PID, MSGID
     are verbatim pieces of the frame (SD values are unescaped, so they are not compared here);
   * json: only for frames that are a JSON object (anything else is raw, see above).

Profiles: the default one keeps the run short; HYPOTHESIS_PROFILE=long runs many more examples.
"""

import datetime as dt
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syslogsrc.parsing import FORMATS, parse

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

PRINTUSASCII = st.characters(min_codepoint=33, max_codepoint=126)
SD_NAME_CHARS = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"')
# UTF-8-STRING: any text without surrogates (they cannot be encoded).
UTF8_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def header_field(max_size):
    return st.none() | st.text(PRINTUSASCII, min_size=1, max_size=max_size).filter(
        lambda s: s != "-"
    )


sd_name = st.text(SD_NAME_CHARS, min_size=1, max_size=32)
sd_element = st.tuples(sd_name, st.lists(st.tuples(sd_name, UTF8_TEXT), max_size=3))
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
timestamps = st.none() | st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    offsets,
)
messages = st.none() | st.tuples(st.booleans(), UTF8_TEXT).filter(
    lambda m: not m[1].startswith("\ufeff") and not m[1].endswith(("\n", "\0"))
)


def render_timestamp(ts):
    if ts is None:
        return "-"
    text = (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}"
    )
    if ts.microsecond:
        text += f".{ts.microsecond:06d}"
    offset = ts.utcoffset()
    if offset == dt.timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def escape(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def render(pri, ts, host, app, procid, msgid, sd, msg):
    """An RFC 5424 SYSLOG-MSG from its fields."""
    fields = [f"<{pri}>1", render_timestamp(ts)]
    fields += [v if v is not None else "-" for v in (host, app, procid, msgid)]
    if sd:
        fields.append(
            "".join(
                "[" + sd_id + "".join(f' {n}="{escape(v)}"' for n, v in params) + "]"
                for sd_id, params in sd
            )
        )
    else:
        fields.append("-")
    text = " ".join(fields)
    if msg is not None:
        bom, body = msg
        text += " " + ("\ufeff" if bom else "") + body
    return text.encode("utf-8")


@given(
    st.integers(0, 191),
    timestamps,
    header_field(255),
    header_field(48),
    header_field(128),
    header_field(32),
    st.lists(sd_element, max_size=3),
    messages,
)
def test_rfc5424_round_trip(pri, ts, host, app, procid, msgid, sd, msg):
    frame = render(pri, ts, host, app, procid, msgid, sd, msg)
    parsed = parse(frame)
    assert parsed.format == "rfc5424"
    assert parsed.tags == (() if ts is not None else ("syslog.missing_timestamp",))
    assert parsed.pri == pri
    assert parsed.timestamp == ts
    if ts is not None:
        assert parsed.timestamp.utcoffset() == ts.utcoffset()
    want = {}
    for name, value in (("HOST", host), ("PROGRAM", app), ("PID", procid), ("MSGID", msgid)):
        if value is not None:
            want[name] = value
    for sd_id, params in sd:
        if not params:
            want[".SDATA." + sd_id] = ""
        for name, value in params:
            want[f".SDATA.{sd_id}.{name}"] = value
    want["MESSAGE"] = msg[1] if msg is not None else ""
    assert parsed.pairs == want


def as_bytes(value):
    return value if isinstance(value, bytes) else value.encode("utf-8")


def stripped(frame):
    while frame[-1:] in (b"\n", b"\0"):
        frame = frame[:-2] if frame.endswith(b"\r\n") else frame[:-1]
    return frame


def check_nothing_lost(frame, parsed):
    frame = stripped(frame)
    pairs = {k: as_bytes(v) for k, v in parsed.pairs.items()}
    for value in parsed.pairs.values():
        # str exactly when the bytes are valid UTF-8.
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                raise AssertionError(f"valid UTF-8 left as bytes: {value!r}")
    if parsed.format == "raw":
        assert pairs == {"MESSAGE": frame}
    elif parsed.format == "rfc3164":
        assert frame.endswith(pairs.get("LEGACY_MSGHDR", b"") + pairs["MESSAGE"])
        head = frame[: len(frame) - len(pairs.get("LEGACY_MSGHDR", b"") + pairs["MESSAGE"])]
        assert pairs.get("HOST", b"") in head
        assert pairs.get("PROGRAM", b"") in frame
        assert pairs.get("PID", b"") in frame
    elif parsed.format == "rfc5424":
        assert frame.endswith(pairs["MESSAGE"])
        for name in ("HOST", "PROGRAM", "PID", "MSGID"):
            assert pairs.get(name, b"") in frame
    else:
        assert parsed.format == "json"
        assert frame.lstrip()[:1] == b"{"


# Bytes that look a bit like syslog, so the parsers' deeper branches get exercised too.
syslogish = st.lists(
    st.sampled_from(
        [
            b"<13>",
            b"<191>",
            b"<1",
            b"1 ",
            b" ",
            b"-",
            b"[",
            b"]",
            b'"',
            b"\\",
            b"=",
            b":",
            b"Mar  5 ",
            b"14:02:11",
            b".123",
            b"2024-03-05T14:02:11",
            b"Z",
            b"+01:00",
            b"host",
            b"prog[12]: ",
            b"\xef\xbb\xbf",
            b"\xff",
            b"\n",
            b"\r\n",
            b"\0",
            b"{",
            b"}",
            b"a=b",
        ]
    )
    | st.binary(max_size=8),
    max_size=25,
).map(b"".join)


@given(st.binary(max_size=300) | syslogish, st.sampled_from(FORMATS))
def test_any_bytes_never_raise_and_nothing_is_lost(frame, fmt):
    parsed = parse(frame, fmt)
    assert parsed.format in FORMATS[1:]
    check_nothing_lost(frame, parsed)


@given(syslogish, st.sampled_from(FORMATS))
def test_raw_fallback_tagged(frame, fmt):
    parsed = parse(frame, fmt)
    if parsed.format == "raw" and fmt != "raw":
        assert parsed.tags[-1] == "syslogsrc.raw"

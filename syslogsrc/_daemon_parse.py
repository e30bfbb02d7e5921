"""Which frames the daemon's own parser reads exactly as ours: the ``hybrid`` parser's pre-check.

Inside syslog-ng, ``LogMessage.parse(frame, parse_options)`` (C) builds a message in one call;
ours (:func:`syslogsrc.parsing.parse` plus one call into the daemon per pair) costs 2-3 times
as much. Ours exists for the frames the daemon's parser would read differently or not at all:
fallbacks, tags, non-UTF-8 bytes, the nearest-year rule, our ``time-zone`` option, JSON and raw.
The ``hybrid`` parser gives the daemon's parser only the frames that are *provably* read alike,
and ours everything else. This module says which: one compiled regex, matched against the whole
frame, per format and per day (:func:`frame_test`), or the same regex's headers followed by a
check of the body by bytes operations (:func:`header_test`, the hybrid's own way).

The shapes (each a ``fullmatch``, so the body is checked too: no NUL, no trailing CR or LF, which
the two parsers treat differently):

* RFC 3164, BSD stamp: ``<PRI>Mmm dd hh:mm:ss host prog[pid]: msg``, for the months on which
  both year rules agree (ours: the year nearest to now; the daemon's: the current one, except
  across December/January): this month and the ones either side of it, as seen yesterday, today
  and tomorrow, and only months in which the local UTC offset does not change (no stamp in a
  daylight-saving gap or fold). Not with our ``time-zone`` option set.
* RFC 3164, ISO 8601 stamp with an offset: ``<PRI>YYYY-MM-DDThh:mm:ss[.ffffff]+hh:mm host
  prog[pid]: msg`` (rsyslog's forwarding format); without an offset (loggen's) only in the
  months the BSD stamps are read in, and not with our ``time-zone`` option set.
* RFC 5424 with a stamp that has an offset, the header fields within RFC 5424's lengths, SD
  params without escapes: only when the driver's flags make the daemon read RFC 5424
  (``flags(syslog-protocol)``).

Hosts are host names or IPv4 literals, programs a plain set of characters, PIDs digits. Bytes
past ASCII must be UTF-8 (checked by the caller, cheaply: most frames are ASCII).

The source probes the daemon's parse options with one frame of each shape at start
(:func:`probes`) and keeps only the shapes on which both parsers agree there (the driver's
``flags()``, ``time-zone()``, ``keep-timestamp()``, ``format()``, ``sdata-prefix()``...).
tests/test_daemon_parse.py proves the shapes on both real daemons, frame by frame.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable

__all__ = ["FrameTest", "accepts", "frame_test", "header_test", "probes", "shapes_for"]

#: a test of one frame: True when the daemon's parser reads it exactly as ours
FrameTest = Callable[[bytes], object]

_PRI = rb"<(?:[0-9]|[1-9][0-9]|1[0-8][0-9]|19[01])>"
_TIME = rb"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
_OFFSET = rb"(?:Z|[+-](?:0[0-9]|1[0-4]):(?:00|15|30|45))"
_FRAC = rb"(?:\.[0-9]{1,6})?"
# month-day of an ISO date that exists in every year (no February 29th)
_ISO_MONTH_DAY = (
    rb"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    rb"|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
)
_ISO = rb"(?:19[7-9][0-9]|20[0-9][0-9])-" + _ISO_MONTH_DAY + rb"T" + _TIME + _FRAC + _OFFSET
# a host name (letters, digits, "-", "_", ".") that is not a year (LinkSys stamps end in one)
_HOST = rb"(?![0-9]{4} )[A-Za-z0-9_][A-Za-z0-9._-]{0,62}"
_PROGRAM = rb"[A-Za-z0-9_./()@+=,%-]{1,64}"
_TAG = rb" " + _PROGRAM + rb"(?:\[[0-9]{1,10}\])?: "
# the rest of the frame: no NUL, not ending in CR or LF (ours strips a CRLF's CR, the daemon
# not); bytes past ASCII must be UTF-8 (checked apart: isascii() is cheaper than any regex).
# Other control characters are read alike, unless flags(no-multi-line): the probes have them.
# (The hybrid matches the header only, see header_test, and the rest by bytes operations: in
# syslog-ng 3.38.1, 34 200 instructions per loggen RFC 5424 message against 42 500 with this
# regex over the whole frame, bench/daemon_instructions.py.)
_BODY = rb"(?:[^\x00]*[^\r\n\x00])?"

# RFC 5424 (section 6): header fields within their lengths, "-" for nil, of PRINTUSASCII but
# " = [ \ ] (a host name "a[b" or "a\:" is read differently), a host name without ":" (the
# daemon's parser rejects "h:x"); SD params named without "." and
# no empty SD element (ours orders $SDATA differently for those)
_PRINTUS = rb"[\x21\x23-\x3c\x3e-\x5a\x5e-\x7e]"
_HOSTNAME = rb"[\x21\x23-\x39\x3b\x3c\x3e-\x5a\x5e-\x7e]{1,255}"  # and no ":" (the daemon fails)
_SD_ID = rb"[\x21\x23-\x3c\x3e-\x5b\x5e-\x7e]{1,32}"  # PRINTUSASCII but = SP ] " \
_SD_NAME = rb"[\x21\x23-\x2d\x2f-\x3c\x3e-\x5b\x5e-\x7e]{1,32}"  # and not "."
_PARAM_VALUE = rb"[\x20\x21\x23-\x5b\x5e-\x7e]{0,64}"  # no " \ ] (no escapes to read)
_SD_ELEMENT = rb"\[" + _SD_ID + rb"(?: " + _SD_NAME + rb'="' + _PARAM_VALUE + rb'"){1,8}\]'
# the header through the structured data; the message follows after a space, if at all
_RFC5424_HEADER = (
    _PRI
    + rb"1 "
    + _ISO
    + rb" "
    + _HOSTNAME
    + rb" "
    + _PRINTUS
    + rb"{1,48} "
    + _PRINTUS
    + rb"{1,128} "
    + _PRINTUS
    + rb"{1,32} (?:-|(?:"
    + _SD_ELEMENT
    + rb"){1,8})"
)
_RFC3164_ISO_HEADER = _PRI + _ISO + rb" " + _HOST + _TAG

_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct")
_MONTHS += (b"Nov", b"Dec")
# days of each month that exist in every year
_DAYS = {
    1: rb"(?: [1-9]|0[1-9]|[12][0-9]|3[01])",
    2: rb"(?: [1-9]|0[1-9]|1[0-9]|2[0-8])",
    4: rb"(?: [1-9]|0[1-9]|[12][0-9]|30)",
}
for _m in (3, 5, 7, 8, 10, 12):
    _DAYS[_m] = _DAYS[1]
for _m in (6, 9, 11):
    _DAYS[_m] = _DAYS[4]


_ISO_DAYS = {m: rb"(?:0[1-9]|1[0-9]|2[0-8])" for m in (2,)}
for _m in (1, 3, 5, 7, 8, 10, 12):
    _ISO_DAYS[_m] = rb"(?:0[1-9]|[12][0-9]|3[01])"
for _m in (4, 6, 9, 11):
    _ISO_DAYS[_m] = rb"(?:0[1-9]|[12][0-9]|30)"


def _bsd(months: Iterable[int]) -> bytes | None:
    """The header of RFC 3164 with a BSD stamp, in ``months`` only."""
    parts = [_MONTHS[m - 1] + b" " + _DAYS[m] for m in sorted(set(months))]
    if not parts:
        return None
    return _PRI + rb"(?:" + b"|".join(parts) + rb") " + _TIME + rb" " + _HOST + _TAG


#: the shapes by name
SHAPES = ("rfc3164-bsd", "rfc3164-iso", "rfc3164-iso-local", "rfc5424")
#: the shapes whose stamps have no offset: read in the local time zone by both parsers
LOCAL_SHAPES = ("rfc3164-bsd", "rfc3164-iso-local")


def _offset_changes(first: dt.date, last: dt.date) -> bool:
    """Whether the local UTC offset changes between ``first`` and ``last`` (inclusive): read
    every 6 hours, enough to see any daylight-saving change of a month (they are months apart)."""
    start = dt.datetime(first.year, first.month, first.day)
    offsets = set()
    t = start
    end = dt.datetime(last.year, last.month, last.day, 23, 59)
    while t <= end:
        offsets.add(t.astimezone().utcoffset())
        t += dt.timedelta(hours=6)
    offsets.add(end.astimezone().utcoffset())
    return len(offsets) > 1


def _month_bounds(year: int, month: int) -> tuple[dt.date, dt.date]:
    first = dt.date(year, month, 1)
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def local_months(today: dt.date) -> set[tuple[int, int]]:
    """(year, month) of the months whose stamps without a year or an offset both parsers read
    alike: this month and the ones either side of it, as seen yesterday, today and tomorrow (the
    daemon's clock and ours may straddle midnight), where both year rules agree whatever the
    day; and only those without a local offset change (DST), where no wall-clock time is
    ambiguous or missing."""
    months: set[int] | None = None
    for day in (today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)):
        near = {(day.month - 2) % 12 + 1, day.month, day.month % 12 + 1}
        months = near if months is None else months & near
    assert months is not None
    keep = set()
    for m in months:
        year = today.year + (1 if (today.month == 12 and m == 1) else 0)
        year -= 1 if (today.month == 1 and m == 12) else 0
        if not _offset_changes(*_month_bounds(year, m)):
            keep.add((year, m))
    return keep


def _iso_local(months: Iterable[tuple[int, int]]) -> bytes | None:
    """The header of RFC 3164 with an ISO stamp without offset (loggen's), in ``months`` only."""
    dates = []
    for year, m in sorted(set(months)):
        day = _ISO_DAYS[m]
        dates.append(f"{year:04d}-{m:02d}-".encode() + day)
    if not dates:
        return None
    return _PRI + rb"(?:" + b"|".join(dates) + rb")T" + _TIME + _FRAC + rb" " + _HOST + _TAG


def shapes_for(
    names: Iterable[str],
    today: dt.date,
    daemon_today: dt.date | None = None,
    *,
    headers: bool = False,
) -> bytes | None:
    """One pattern for the shapes ``names`` as of ``today``; None when no frame can be.

    ``daemon_today`` is the date of the daemon's own clock, which decides its year of BSD
    stamps (read at most once a minute, so around midnight it may differ from ``today``): the
    BSD months are those both dates agree on.

    With ``headers``, each shape's header only: for RFC 3164 through the tag's ": ", for
    RFC 5424 through the structured data and the space after it (a frame of a shape is such a
    header followed by a body, ``_BODY``; an RFC 5424 frame may also end at its SD)."""
    tail_3164 = b"" if headers else _BODY
    tail_5424 = b" " if headers else rb"(?: " + _BODY + rb")?"
    parts = []
    for name in names:
        if name == "rfc3164-bsd":
            months = local_months(today)
            if daemon_today is not None and daemon_today != today:
                months &= local_months(daemon_today)
            bsd = _bsd(m for _, m in months)
            if bsd is not None:
                parts.append(bsd + tail_3164)
        elif name == "rfc3164-iso-local":
            iso = _iso_local(local_months(today))
            if iso is not None:
                parts.append(iso + tail_3164)
        elif name == "rfc3164-iso":
            parts.append(_RFC3164_ISO_HEADER + tail_3164)
        elif name == "rfc5424":
            parts.append(_RFC5424_HEADER + tail_5424)
        else:
            raise ValueError(f"unknown shape {name!r}")
    if not parts:
        return None
    return b"|".join(rb"(?:" + p + rb")" for p in parts)


def _never(frame: bytes) -> bool:
    return False


def header_test(
    names: Iterable[str], today: dt.date | None = None, daemon_today: dt.date | None = None
) -> Callable[[bytes], re.Match[bytes] | None]:
    """A match of a frame's header as :func:`frame_test` reads it (``shapes_for(...,
    headers=True)``: for RFC 3164 PRI, stamp, host and tag; for RFC 5424 everything before the
    message and the space before it), or a false value.

    A frame whose header matches passes :func:`frame_test` exactly when its rest is a body: no
    NUL, not ending in CR or LF (no header has a NUL or ends in CR or LF, so the whole frame can
    be checked). So does a frame that starts with the bytes such a match spanned, the same
    header. The hybrid keeps the last header it matched per sender and checks the next frames
    that start with it by two bytes operations, no regex: one sender's headers stay the same
    for a second (unless its RFC 5424 structured data changes with each message). A frame
    whose header does not match may still pass :func:`frame_test`: an RFC 5424 frame without
    a message."""
    return _compiled_test("header", names, today, daemon_today)  # type: ignore[return-value]


_compiled: dict[tuple[str, tuple[str, ...], int, int], Callable[[bytes], object]] = {}


def frame_test(
    names: Iterable[str], today: dt.date | None = None, daemon_today: dt.date | None = None
) -> FrameTest:
    """The test of a frame for the shapes ``names`` as of ``today`` (the local date): compiled
    once a day per set of shapes. Its truth says the daemon's parser may read the frame; a frame
    with bytes past ASCII also needs to be UTF-8 (see :func:`accepts`)."""
    return _compiled_test("frame", names, today, daemon_today)


def _compiled_test(
    kind: str, names: Iterable[str], today: dt.date | None, daemon_today: dt.date | None
) -> Callable[[bytes], object]:
    """The ``fullmatch`` of the shapes ``names`` (``kind`` ``"frame"``) or the ``match`` of
    their headers (``"header"``) as of ``today`` (:func:`_never` when no frame can be),
    compiled once a day per kind of test and set of shapes."""
    if today is None:
        today = dt.date.today()
    if daemon_today is None:
        daemon_today = today
    shapes = tuple(sorted(names))
    key = (kind, shapes, today.toordinal(), daemon_today.toordinal())
    test = _compiled.get(key)
    if test is None:
        headers = kind == "header"
        pattern = shapes_for(shapes, today, daemon_today, headers=headers)
        if pattern is None:
            test = _never
        else:
            compiled = re.compile(pattern, re.DOTALL)
            test = compiled.match if headers else compiled.fullmatch
        if len(_compiled) > 64:
            _compiled.clear()
        _compiled[key] = test
    return test


def accepts(test: FrameTest, frame: bytes) -> bool:
    """``test`` and the UTF-8 rule: the whole decision for one frame (for tests and tools; the
    daemon's builder inlines it)."""
    if not test(frame):
        return False
    if frame.isascii():
        return True
    try:
        frame.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def probes(now: dt.datetime | None = None) -> dict[str, list[bytes]]:
    """Frames of each shape to try on the daemon's parse options at start: a shape is used only
    if both parsers build the same message from each of its probes. The stamps are three hours
    ago (a ``guess-timezone`` would move them), at whole seconds and with microseconds."""
    now = (now or dt.datetime.now().astimezone()) - dt.timedelta(hours=3)
    now = now.replace(microsecond=0)
    bsd = _MONTHS[now.month - 1] + f" {now.day:2d} {now:%H:%M:%S}".encode()
    iso_text = now.isoformat()
    iso = iso_text.encode()
    iso_us = now.replace(microsecond=123456).astimezone(dt.UTC).isoformat().encode()
    iso_us = iso_us.replace(b"+00:00", b"Z")
    local = iso_text[:19].encode()
    # control characters, LF and CR inside (flags(no-multi-line) changes them), UTF-8
    body = b"controls \x01\t\x1b[0m and lines\nand\rreturns, caf\xc3\xa9 ."
    return {
        "rfc3164-bsd": [
            b"<13>" + bsd + b" probe-host probe[42]: a probe of the parse options",
            b"<13>" + bsd + b" h p: " + body,
            b"<165>" + bsd + b" 192.0.2.1 app: x",
        ],
        "rfc3164-iso": [
            b"<38>" + iso + b" probe-host probe[42]: a probe of the parse options",
            b"<13>" + iso_us + b" h p: " + body,
        ],
        "rfc3164-iso-local": [
            b"<38>" + local + b" probe-host probe[42]: a probe of the parse options",
            b"<13>" + local + b".5 h p: " + body,
        ],
        "rfc5424": [
            b"<165>1 " + iso + b" probe-host probe 42 ID47 "
            b'[a@32473 i="3" e="App"][b@32473 c="high"] a probe \xc3\xa9',
            b"<13>1 " + iso_us + b" - - - - - " + body,
            b"<13>1 " + iso + b" h app - - - \xef\xbb\xbf" + body,
            b"<13>1 " + iso + b" h app - - -",
        ],
    }

"""Stamps, as syslog-ng reads them: ISO 8601 / RFC 3339, BSD (yearless: the year nearest to
now), Cisco PIX/ASA and LinkSys, in the sender's offset or the configured zone. Sans-IO,
stdlib only; the parsers of :mod:`syslogsrc.parsing` use them.

The last stamp read and its datetime are kept (one entry per kind): under load most messages
carry the stamp of the message before them, and then the same datetime object is reused.
"""

from __future__ import annotations

import datetime
from time import time as _time

from . import _abnf

_UTC = datetime.UTC
_datetime = datetime.datetime
_fromisoformat = datetime.datetime.fromisoformat


_tz_cache: dict[str, datetime.tzinfo] = {"Z": _UTC, "+00:00": _UTC, "-00:00": _UTC}


def _offset_tz(offset: str) -> datetime.tzinfo:
    """``Z`` or ``+hh:mm`` -> a memoised ``datetime.timezone`` (ValueError if out of range)."""
    tz = _tz_cache.get(offset)
    if tz is None:
        minutes = int(offset[1:3]) * 60 + int(offset[4:6])
        if offset[0] == "-":
            minutes = -minutes
        tz = datetime.timezone(datetime.timedelta(minutes=minutes))
        if len(_tz_cache) < 4096:
            _tz_cache[offset] = tz
    return tz


# Local UTC offsets by (year, month, day, hour) of wall-clock time: asking the C library for each
# message costs a microsecond; offsets change on hour boundaries in every zone in use today.
_local_tz_cache: dict[tuple, datetime.tzinfo] = {}


def _local_tz(year: int, month: int, day: int, hour: int) -> datetime.tzinfo:
    key = (year, month, day, hour)
    tz = _local_tz_cache.get(key)
    if tz is None:
        # astimezone() on a naive value reads it as local time, DST included.
        tz = _datetime(year, month, day, hour).astimezone().tzinfo
        if len(_local_tz_cache) > 4096:
            _local_tz_cache.clear()
        _local_tz_cache[key] = tz
    return tz


def _stamp(year, month, day, hour, minute, second, usec, time_zone) -> datetime.datetime:
    """Wall-clock parts of a stamp without offset -> aware datetime in ``time_zone``.

    None means the local time zone.  Raises ValueError for impossible dates.
    """
    if time_zone is None:
        time_zone = _local_tz(year, month, day, hour)
    return _datetime(year, month, day, hour, minute, second, usec, time_zone)


def _localize(naive: datetime.datetime, time_zone: datetime.tzinfo | None) -> datetime.datetime:
    """Attach ``time_zone`` to a stamp that carried no offset (None: the local time zone)."""
    if time_zone is None:
        time_zone = _local_tz(naive.year, naive.month, naive.day, naive.hour)
    return naive.replace(tzinfo=time_zone)


def _usec(frac: str | None) -> int:
    """Fraction digits -> microseconds: the first six digits count, the rest are dropped."""
    if not frac:
        return 0
    return int(frac[:6].ljust(6, "0"))


_iso_match = _abnf.iso_stamp.match
_pix_match = _abnf.pix_stamp.match
_linksys_match = _abnf.linksys_stamp.match
_bsd_match = _abnf.bsd_stamp.match
_MONTHS = _abnf.MONTHS
_legacy_common = _abnf.legacy_common.match
_legacy_iso_common = _abnf.legacy_iso_common.match
_AIX_FORWARD = "Message forwarded from "
_REPEATED = "last message repeated"


def _iso_stamp(text: str, pos: int, time_zone):
    """ISO 8601 stamp at pos -> (aware datetime, end) or None."""
    m = _iso_match(text, pos)
    if m is None:
        return None
    stamp = _iso_datetime(m.group(0), *m.groups(), time_zone)
    return None if stamp is None else (stamp, m.end())


# The last stamp read and its datetime, per kind of stamp: under load most messages carry the
# stamp of the message before them (stamps have a resolution of a second, or a sender's clock
# of milliseconds), and then the same datetime object is reused. A tuple, replaced whole, so
# that threads never see a stamp with another stamp's value. Outputs rely on the identity
# (one isoformat() per distinct stamp, see outputs.py).
_last_iso: tuple = ("", None, None)  # (text, time_zone, datetime)
_last_bsd: tuple = ("", None, 0, None)  # (text, time_zone, today's ordinal, datetime)


def _rfc3339(stamp: str) -> datetime.datetime:
    """An RFC 3339 stamp (with its offset) -> aware datetime; ValueError if impossible."""
    global _last_iso
    last = _last_iso
    if last[0] == stamp:
        return last[2]
    when = _fromisoformat(stamp)
    _last_iso = (stamp, None, when)
    return when


def _iso_datetime(whole, year, month, day, hour, minute, second, frac, offset, time_zone):
    """The parts of an ISO 8601 stamp (``_abnf.ISO_STAMP``'s groups) -> aware datetime or None."""
    global _last_iso
    last = _last_iso
    if last[0] == whole and last[1] is time_zone:
        return last[2]
    when = _iso_datetime_new(whole, year, month, day, hour, minute, second, frac, offset, time_zone)
    if when is not None:
        _last_iso = (whole, time_zone, when)
    return when


def _iso_datetime_new(whole, year, month, day, hour, minute, second, frac, offset, time_zone):
    if offset is not None and (frac is None or (0 < len(frac) <= 6 and "." in whole)):
        try:  # the common RFC 3339 case: the C parser is fastest
            return _fromisoformat(whole)
        except ValueError:
            return None
    try:
        year, month, day, hour = int(year), int(month), int(day), int(hour)
        if offset is None:  # built aware at once: a naive datetime plus replace() costs 1 us
            return _stamp(year, month, day, hour, int(minute), int(second), _usec(frac), time_zone)
        return _datetime(
            year, month, day, hour, int(minute), int(second), _usec(frac), _offset_tz(offset)
        )
    except (ValueError, OverflowError):
        return None


_today_cache = [0.0, 0, 0]  # valid until (time.time()), year, ordinal of today


def _today() -> tuple[int, int]:
    """(year, proleptic ordinal) of the current local date, looked up at most once a second."""
    t = _time()
    if t >= _today_cache[0]:
        today = datetime.date.today()
        _today_cache[:] = [t + 1.0, today.year, today.toordinal()]
    return _today_cache[1], _today_cache[2]


_year_cache: dict[tuple, int] = {}


def _nearest_year(month: int, day: int, now: datetime.datetime | None) -> int:
    """The year that puts a yearless ``month``/``day`` nearest to ``now`` (to the day).

    Raises ValueError when no year has that day (April 31st).
    """
    if now is None:
        year, today = _today()
    else:
        year, today = now.year, now.toordinal()
    key = (month, day, today)
    best = _year_cache.get(key)
    if best is not None:
        return best
    distance = None
    for candidate in (year, year - 1, year + 1):
        try:
            d = abs(datetime.date(candidate, month, day).toordinal() - today)
        except ValueError:  # February 29th in a common year
            continue
        if distance is None or d < distance:
            distance, best = d, candidate
        if d <= 183:
            break
    if best is None:
        raise ValueError("no year has this date")
    if len(_year_cache) > 4096:
        _year_cache.clear()
    _year_cache[key] = best
    return best


def _bsd_datetime(whole, month, day, hour, minute, second, time_zone, now):
    """A BSD stamp's parts (``Mmm dd hh:mm:ss``, no fraction) -> aware datetime in the year
    nearest to ``now`` (None: today), or None when no year has that date."""
    global _last_bsd
    if now is None:
        today = _today()[1]
        last = _last_bsd
        if last[0] == whole and last[1] is time_zone and last[2] == today:
            return last[3]
    try:
        month = _MONTHS[month.lower()]
        day = int(day)
        year = _nearest_year(month, day, now)
        when = _stamp(year, month, day, int(hour), int(minute), int(second), 0, time_zone)
    except ValueError:
        return None
    if now is None:
        _last_bsd = (whole, time_zone, today, when)
    return when


def _wall_clock(year, month, day, hour, minute, second, time_zone):
    """Stamp parts as text (month as a name) with a year -> aware datetime."""
    naive = _datetime(
        int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second)
    )
    return _localize(naive, time_zone)


def _legacy_stamp(text: str, pos: int, time_zone, now):
    """scan_rfc3164_timestamp: ISO, PIX/ASA, LinkSys or BSD stamp at pos -> (stamp, end)."""
    c = text[pos : pos + 1]
    try:
        if "0" <= c <= "9":
            found = _iso_stamp(text, pos, time_zone)
            if found is None:
                return None
            stamp, end = found
        elif (m := _pix_match(text, pos)) is not None:
            month, day, year, hour, minute, second = m.groups()
            stamp, end = _wall_clock(year, month, day, hour, minute, second, time_zone), m.end()
        elif (m := _linksys_match(text, pos)) is not None:
            month, day, hour, minute, second, year = m.groups()
            stamp, end = _wall_clock(year, month, day, hour, minute, second, time_zone), m.end()
        elif (m := _bsd_match(text, pos)) is not None:
            month, day, hour, minute, second, frac = m.groups()
            month = _MONTHS[month.lower()]
            day = int(day)
            year = _nearest_year(month, day, now)
            stamp = _stamp(
                year, month, day, int(hour), int(minute), int(second), _usec(frac), time_zone
            )
            end = m.end()
        else:
            return None
    except (ValueError, OverflowError):  # 31 Apr, 25:00:00, ...: not a stamp
        return None
    if text.startswith(":", end):  # Cisco's colon after the stamp
        end += 1
    return stamp, end

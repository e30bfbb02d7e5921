"""Sans-IO syslog parsing: one frame of bytes in, syslog-ng's name-value pairs out.

No I/O, no Twisted, stdlib only.  ``parse()`` never raises on any input bytes: a frame that does
not parse as asked falls back (RFC 5424 -> syslog-ng-compatible RFC 5424 -> RFC 3164 -> raw) and
says so in ``tags``.  See docs/parsing.md for the pairs, the tags and the differences from
syslog-ng's own parser (modules/syslogformat/syslog-format.c).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from time import time as _time

from . import _abnf

__all__ = [
    "FORMATS",
    "ParsedMessage",
    "json_bytes",
    "json_number",
    "malformed",
    "parse",
    "parse_json_object",
]

FORMATS = ("auto", "rfc5424", "rfc3164", "json", "raw")

#: The PRI of a frame that has none (user.notice), as syslog-ng's default.
DEFAULT_PRI = 13

# Tag names.  The syslog.* ones are syslog-ng's (lib/logmsg/tags.c); syslogsrc.* are ours.
TAG_MISSING_PRI = "syslog.missing_pri"
TAG_INVALID_PRI = "syslog.invalid_pri"
TAG_MISSING_TIMESTAMP = "syslog.missing_timestamp"
TAG_INVALID_HOSTNAME = "syslog.invalid_hostname"
TAG_RFC3164_MISSING_HEADER = "syslog.rfc3164_missing_header"
TAG_RFC5424_FALLBACK = "syslogsrc.rfc5424_fallback"
TAG_RAW = "syslogsrc.raw"
TAG_JSON_INVALID = "syslogsrc.json_invalid"
TAG_JSON_BAD_NAME = "syslogsrc.json_bad_name"

#: syslog-ng refuses name-value pair names longer than this (and empty ones), with an error in
#: its log for every message (lib/logmsg/nvtable's registry).
MAX_NAME_BYTES = 255

_UTC = datetime.UTC
_datetime = datetime.datetime
_fromisoformat = datetime.datetime.fromisoformat


class ParsedMessage:
    """One parsed frame, a value: treat it as immutable.

    ``pairs`` maps syslog-ng names to values (``str`` when the bytes are UTF-8, else the undecoded
    ``bytes``); ``pri`` is the numeric PRI; ``timestamp`` is aware, or None when the frame has no
    usable stamp; ``tags`` are syslog-ng-style tags; ``format`` is what actually parsed it.

    A bare ``__slots__`` class rather than ``attrs.frozen``: one is built per message, and frozen
    construction costs about 0.4 us more per message (a tenth of the parse budget).
    """

    __slots__ = ("format", "pairs", "pri", "tags", "timestamp")

    pairs: dict[str, str | bytes]
    pri: int
    timestamp: datetime.datetime | None
    tags: tuple[str, ...]
    format: str

    def __init__(self, pairs, pri, timestamp, tags, format):
        self.pairs = pairs
        self.pri = pri
        self.timestamp = timestamp
        self.tags = tags
        self.format = format

    def __eq__(self, other):
        if other.__class__ is not ParsedMessage:
            return NotImplemented
        return (
            self.pairs == other.pairs
            and self.pri == other.pri
            and self.timestamp == other.timestamp
            and self.tags == other.tags
            and self.format == other.format
        )

    __hash__ = None  # pairs is a dict

    def __repr__(self):
        return (
            f"ParsedMessage(pairs={self.pairs!r}, pri={self.pri!r}, timestamp={self.timestamp!r},"
            f" tags={self.tags!r}, format={self.format!r})"
        )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

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


def _strip_trailer(frame: bytes) -> bytes:
    """Drop trailing LF and NUL (as syslog-ng does) and the CR of a trailing CRLF."""
    end = len(frame)
    while end and frame[end - 1] in b"\n\0":
        if frame[end - 1] == 10 and end > 1 and frame[end - 2] == 13:
            end -= 2
        else:
            end -= 1
    return frame if end == len(frame) else frame[:end]


def _restore_bytes(pairs: dict) -> dict:
    """Values that carry escaped non-UTF-8 bytes go back to the exact original bytes."""
    for key, value in pairs.items():
        if isinstance(value, str) and not _is_utf8(value):
            pairs[key] = value.encode("utf-8", "surrogateescape")
    return pairs


# --------------------------------------------------------------------------------------------
# RFC 5424, strict (one regex for the whole message, see _abnf.SYSLOG_MSG)
# --------------------------------------------------------------------------------------------

_syslog_msg_match = _abnf.syslog_msg.fullmatch
_sd_tokens = _abnf.sd_token.findall
_unescape = _abnf.unescape_param_value
_BOM = _abnf.BOM


def _structured_data(sd: str, pairs: dict) -> None:
    """STRUCTURED-DATA (already validated) -> ``.SDATA.<SD-ID>.<PARAM-NAME>`` pairs."""
    prefix = empty = None
    for sd_id, name, value in _sd_tokens(sd):
        if sd_id:
            if empty is not None:
                pairs[empty] = ""
            prefix = ".SDATA." + sd_id + "."
            # syslog-ng marks an element without parameters with an empty ".SDATA.<SD-ID>".
            empty = ".SDATA." + sd_id
        else:
            empty = None
            pairs[prefix + name] = _unescape(value) if "\\" in value else value
    if empty is not None:
        pairs[empty] = ""


def _parse_rfc5424_strict(text: str, clean: bool, tags: list):
    """RFC 5424 section 6, strictly; (pairs, pri, timestamp) or None."""
    m = _syslog_msg_match(text)
    if m is None:
        return None
    prival, stamp, host, app, procid, msgid, sd, msg = m.groups()
    pri = int(prival)
    if pri > 191:
        return None
    if stamp is None:
        timestamp = None
        tags.append(TAG_MISSING_TIMESTAMP)
    else:
        try:
            timestamp = _rfc3339(stamp)
        except ValueError:  # e.g. February 30th, which the ABNF lets through
            return None
    pairs = {}
    if host != "-":
        pairs["HOST"] = host
    if app != "-":
        pairs["PROGRAM"] = app
    if procid != "-":
        pairs["PID"] = procid
    if msgid != "-":
        pairs["MSGID"] = msgid
    if sd != "-":
        _structured_data(sd, pairs)
    if msg is None:
        msg = ""
    elif msg[:1] == _BOM:
        # MSG-UTF8 = BOM UTF-8-STRING: after a BOM the rest must be UTF-8.
        if not clean and not _is_utf8(msg):
            return None
        msg = msg[1:]
    pairs["MESSAGE"] = msg
    return pairs, pri, timestamp


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# RFC 5424 as syslog-ng reads it (_syslog_format_parse_syslog_proto): the second chance for a
# frame that starts like RFC 5424 but breaks the ABNF (long SD-IDs, no offset, ...)
# --------------------------------------------------------------------------------------------

_SD_NAME_SIZE = 256  # syslog-ng's buffer for ".SDATA.<id>.<param>" names, NUL included
_SDATA_PREFIX = ".SDATA."


def _is_sd_name_char(c: str) -> bool:
    return c < "\x80" and c not in '= ]"'


def _compat_sd(text: str, pos: int, pairs: dict) -> int:
    """Port of syslog-ng's SD reader; returns the new position or -1 on error."""
    n = len(text)
    if pos < n and text[pos] == "-":
        return pos + 1
    if not (pos < n and text[pos] == "["):
        return -1
    found = {}
    pos += 1
    if pos < n and text[pos] == " ":
        pos += 1
    while True:
        start = pos
        while pos < n and text[pos] not in " ]":
            if not _is_sd_name_char(text[pos]):
                return -1
            pos += 1
        sd_id = text[start:pos]
        if not sd_id or len(_SDATA_PREFIX) + len(sd_id) >= _SD_NAME_SIZE - 1:
            return -1
        if (pos < n and text[pos] == "]") or text.startswith(" ]", pos):
            if text[pos] == " ":
                pos += 1
            found[_SDATA_PREFIX + sd_id] = ""
        while pos < n and text[pos] != "]":
            if text[pos] != " ":
                return -1
            pos += 1
            start = pos
            while pos < n and text[pos] != "=":
                if not _is_sd_name_char(text[pos]):
                    return -1
                pos += 1
            name = text[start:pos]
            if not name:
                return -1
            key = _SDATA_PREFIX + sd_id + "." + name
            if len(key) >= _SD_NAME_SIZE or pos >= n:
                return -1
            pos += 1  # "="
            if pos < n and text[pos] == '"':
                pos += 1
                value = []
                quote = False
                while pos < n and (text[pos] != '"' or quote):
                    c = text[pos]
                    if not quote and c == "\\":
                        quote = True
                    else:
                        if quote and c not in '"]\\':
                            value.append("\\")
                        elif not quote and c == "]":
                            return -1
                        value.append(c)
                        quote = False
                    pos += 1
                if pos >= n:
                    return -1
                pos += 1  # closing quote
                found[key] = "".join(value)
            elif pos < n:
                start = pos
                while pos < n and text[pos] not in " ]":
                    pos += 1
                found[key] = text[start:pos]
            else:
                return -1
            if text.startswith(" ]", pos):
                pos += 1
        if pos >= n:
            return -1
        pos += 1  # "]"
        if pos < n and text[pos] == "[":
            pos += 1
            if pos < n and text[pos] == " ":
                pos += 1
            continue
        pairs.update(found)
        return pos


def _compat_column(text: str, pos: int, max_length: int):
    """syslog-ng's _syslog_format_parse_column: (value or None, new position)."""
    space = text.find(" ", pos)
    if space < 0:
        return None, len(text)
    value = text[pos:space]
    if value == "-":
        return None, space
    return value[:max_length], space


def _parse_rfc5424_compat(text: str, tags: list, time_zone):
    """syslog-ng's lenient RFC 5424 reader; (pairs, pri, timestamp) or None where it errs."""
    m = _abnf.compat_header.match(text)
    if m is None:
        return None
    pri = int(m.group(1))
    if pri > 191:
        return None
    pos = m.end() + 1  # the SP after VERSION (checked by the regex)
    n = len(text)
    if text.startswith("-", pos):
        timestamp = None
        pos += 1
        tags.append(TAG_MISSING_TIMESTAMP)
    else:
        stamp = _iso_stamp(text, pos, time_zone)
        if stamp is None:
            return None
        timestamp, pos = stamp
    if not text.startswith(" ", pos):
        return None
    pos += 1
    pairs = {}
    host, pos = _hostname(text, pos)
    if not text.startswith(" ", pos):
        return None
    pos += 1
    if host is not None and host != "-":
        pairs["HOST"] = host
    for name, max_length in (("PROGRAM", 48), ("PID", 128), ("MSGID", 32)):
        value, pos = _compat_column(text, pos, max_length)
        if value:
            pairs[name] = value
        if not text.startswith(" ", pos):
            return None
        pos += 1
    if pos < n and text[pos] in "-[":
        pos = _compat_sd(text, pos, pairs)
        if pos < 0:
            return None
    if pos < n:
        if text[pos] != " ":
            return None
        pos += 1
        if text.startswith(_BOM, pos):
            pos += 1
    pairs["MESSAGE"] = text[pos:]
    return pairs, pri, timestamp


# --------------------------------------------------------------------------------------------
# RFC 3164, leniently (_syslog_format_parse_legacy)
# --------------------------------------------------------------------------------------------

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


def _hostname(text: str, pos: int):
    """syslog-ng's hostname detection: (hostname or None, position after it)."""
    n = len(text)
    end = pos
    while end < n and text[end] not in " [" and end - pos < 255:
        end += 1
    candidate = text[pos:end]
    colon = candidate.rfind(":")
    if colon >= 0 and not _abnf.ipv6ish.fullmatch(candidate, 0, colon + 1):
        # A ":" once the IPv6 heuristic failed ends the scan: "prog:" is no hostname.
        return None, pos
    if end < n and text[end] == " " and candidate:
        return candidate, end
    return None, pos


def _legacy_program(text: str, pos: int, pairs: dict) -> int:
    """The ``prog[pid]: `` tag -> PROGRAM, PID, LEGACY_MSGHDR; returns the new position."""
    n = len(text)
    end = pos
    while end < n and text[end] not in " [:":
        end += 1
    if end > pos:
        pairs["PROGRAM"] = text[pos:end]
    if end < n and text[end] == "[":
        pid_start = end + 1
        end = pid_start
        while end < n and text[end] not in " ]:":
            end += 1
        if end < n:
            if end > pid_start:
                pairs["PID"] = text[pid_start:end]
            if text[end] == "]":
                end += 1
    if end < n and text[end] == ":":
        end += 1
    if end < n and text[end] == " ":
        end += 1
    if end > pos:
        pairs["LEGACY_MSGHDR"] = text[pos:end]
    return end


def _skip_spaces(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] == " ":
        pos += 1
    return pos


def _parse_rfc3164(text: str, tags: list, time_zone, now, default_pri: int):
    """RFC 3164 the way syslog-ng reads it; (pairs, pri, timestamp) or None for a bad PRI."""
    # One of the two common shapes is tried, by the stamp's first character: a digit for ISO.
    gt = text.find(">", 1, 5)
    if "0" <= text[gt + 1 : gt + 2] <= "9":
        m = _legacy_iso_common(text)
        if m is not None:
            # The same for an ISO stamp, with the pairs in the order the steps below set them.
            pri = int(m.group(1))
            if pri <= 191:
                last = _last_iso  # the stamp of the message before, mostly
                if last[0] == m.group(2) and last[1] is time_zone:
                    timestamp = last[2]
                else:
                    timestamp = _iso_datetime(*m.group(2, 3, 4, 5, 6, 7, 8, 9, 10), time_zone)
                if timestamp is not None:
                    end = m.end()
                    pairs = {"PROGRAM": m.group(12)}
                    pid = m.group(13)
                    if pid:
                        pairs["PID"] = pid
                    pairs["LEGACY_MSGHDR"] = text[m.start(12) : end]
                    pairs["HOST"] = m.group(11)
                    pairs["MESSAGE"] = text[end:]
                    return pairs, pri, timestamp
    else:
        m = _legacy_common(text)
        if m is not None:
            # The fast path: the same result as the steps below, in one regex match.
            prival, month, day, hour, minute, second, host, program, pid = m.groups()
            pri = int(prival)
            if pri <= 191:
                timestamp = _bsd_datetime(
                    text[m.start(2) : m.end(6)], month, day, hour, minute, second, time_zone, now
                )
                if timestamp is not None:  # else not a date after all: take the long way
                    end = m.end()
                    pairs = {"HOST": host, "PROGRAM": program}
                    if pid:
                        pairs["PID"] = pid
                    pairs["LEGACY_MSGHDR"] = text[m.start(8) : end]
                    pairs["MESSAGE"] = text[end:]
                    return pairs, pri, timestamp

    pairs = {}
    if text[:1] == "<":
        m = _abnf.legacy_pri.match(text)
        if m is None or not m.group(1):
            return None
        pri = int(m.group(1))
        if pri > 191:
            return None
        pos = m.end()
    else:
        pri = default_pri
        pos = 0
        tags.append(TAG_MISSING_PRI)

    # Cisco IOS "52: " sequence number.
    c = text[pos : pos + 1]
    if "0" <= c <= "9":
        m = _abnf.cisco_sequence_id.match(text, pos)
        if m is not None:
            pairs[".SDATA.meta.sequenceId"] = m.group(1)
            pos = m.end()
    pos = _skip_spaces(text, pos)
    # Cisco clock marks: "*" not synchronised, "." synchronised.
    c = text[pos : pos + 1]
    if c == "*" or c == ".":
        pairs[".SDATA.timeQuality.isSynced"] = "0" if c == "*" else "1"
        pos += 1

    found = _legacy_stamp(text, pos, time_zone, now)
    if found is not None:
        timestamp, pos = found
        pos = _skip_spaces(text, pos)
        host = None
        if text.startswith(_AIX_FORWARD, pos):
            pos += len(_AIX_FORWARD)
            colon = text.find(":", pos)
            if colon < 0:
                colon = len(text)
            host = text[pos:colon]
            pos = colon
            while pos < len(text) and text[pos] in " :":
                pos += 1
        if text.startswith(_REPEATED, pos):
            pass  # no hostname or program follows
        else:
            if host is None:
                host, pos = _hostname(text, pos)
                if host is None:
                    tags.append(TAG_INVALID_HOSTNAME)
                pos = _skip_spaces(text, pos)
            pos = _legacy_program(text, pos, pairs)
        if host:
            pairs["HOST"] = host
    else:
        timestamp = None
        tags.append(TAG_MISSING_TIMESTAMP)
        tags.append(TAG_RFC3164_MISSING_HEADER)
        pos = _legacy_program(text, pos, pairs)
    pairs["MESSAGE"] = text[pos:] if pos else text
    return pairs, pri, timestamp


# --------------------------------------------------------------------------------------------
# JSON and raw
# --------------------------------------------------------------------------------------------


class _JsonNumber(str):
    """A JSON number kept as its source text (no float rounding, no int size limit)."""

    __slots__ = ()


# NaN, Infinity and -Infinity are no JSON, but Python's decoder (like json-c) reads them: they
# are kept as written, like numbers. (As floats, one inside an array made _json_text raise.)
_json_decoder = json.JSONDecoder(
    parse_float=_JsonNumber, parse_int=_JsonNumber, parse_constant=_JsonNumber
)
_json_string = json.encoder.encode_basestring  # quotes and escapes like json.dumps
_json_string_ascii = json.encoder.encode_basestring_ascii  # json.dumps(ensure_ascii=True)


def _json_text(value, string=_json_string) -> str:
    """Compact JSON text of a decoded value, numbers as they were written."""
    if isinstance(value, _JsonNumber):
        return str.__str__(value)
    if type(value) is int:  # a decoder with parse_int=int (HTTP): Python's encoder's form
        return int.__repr__(value)
    if isinstance(value, str):
        return string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join([_json_text(v, string) for v in value]) + "]"
    return "{" + ",".join([string(k) + ":" + _json_text(v, string) for k, v in value.items()]) + "}"


def json_bytes(value) -> bytes:
    """Compact JSON of a decoded value (numbers as :func:`json_number` strings), in UTF-8, as
    ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` writes it; a lone surrogate
    (from a ``\\ud800`` escape) cannot be UTF-8, and then the whole text is ASCII-escaped."""
    try:
        return _json_text(value).encode("utf-8")
    except UnicodeEncodeError:
        return _json_text(value, _json_string_ascii).encode("ascii")


def _bad_name(name: str) -> bool:
    """Empty, or longer than syslog-ng takes (a str of 63 characters is at most 252 bytes)."""
    return not name or (
        len(name) > MAX_NAME_BYTES // 4
        and len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    )


def _flatten(obj: dict, prefix: str, pairs: dict) -> bool:
    """Nested objects -> dotted names (as syslog-ng's json-parser); lists -> JSON text.

    A name syslog-ng would refuse (empty, or over 255 bytes) is left out, with what is under it;
    returns False if anything was. (Without the limit a 64 kB object made of one 30 kB key
    holding 3 500 members flattened into 105 MB of names.)
    """
    complete = True
    longest = MAX_NAME_BYTES // 4
    for key, value in obj.items():
        name = prefix + key if prefix else key
        if not name or (len(name) > longest and _bad_name(name)):
            complete = False
            continue
        kind = type(value)  # the decoder's own types first: is costs less than isinstance
        if kind is str:
            pairs[name] = value
        elif kind is int:  # a decoder with parse_int=int (HTTP): Python's encoder's form
            pairs[name] = int.__repr__(value)
        elif kind is dict or isinstance(value, dict):
            if value:
                complete = _flatten(value, name + ".", pairs) and complete
            else:
                pairs[name] = "{}"
        elif isinstance(value, str):  # a number kept as text
            pairs[name] = str.__str__(value)
        elif kind is list or isinstance(value, list):
            pairs[name] = _json_text(value)
        elif value is None:
            pairs[name] = ""
        else:
            pairs[name] = "true" if value else "false"
    return complete


def malformed(message: ParsedMessage) -> bool:
    """True when ``message`` is a frame its format did not fit: kept raw by the fallback, or
    read by the lenient RFC 5424 parser (a listener counts these in ``malformed``)."""
    tags = message.tags
    return bool(tags) and (message.format == "raw" or TAG_RFC5424_FALLBACK in tags)


def json_number(text: str) -> str:
    """A JSON number as the text it is to keep (``parse_int``/``parse_float`` of a decoder
    whose objects go to :func:`parse_json_object`; ``int`` is taken as ``parse_int`` too, and
    an int is kept as Python's encoder writes it)."""
    return _JsonNumber(text)


def parse_json_object(
    obj: dict, text: Callable[[], str] | None = None, *, default_pri: int = DEFAULT_PRI
) -> ParsedMessage:
    """A JSON object someone else decoded (numbers as :func:`json_number` strings or ints):
    the same message as ``parse(text().encode(), "json")``, without encoding and decoding it
    again. ``text`` gives the object's JSON text (default: its compact form, as
    :func:`json_bytes` writes it); it is called only when a name cannot be a pair (the whole
    object is then kept in MESSAGE, as :func:`parse` does)."""
    pairs: dict = {}
    if _flatten(obj, "", pairs):
        return ParsedMessage(pairs, default_pri, None, (), "json")
    pairs.setdefault("MESSAGE", text() if text is not None else json_bytes(obj).decode("utf-8"))
    return ParsedMessage(pairs, default_pri, None, (TAG_JSON_BAD_NAME,), "json")


def _parse_json(text: str):
    """A JSON object -> (pairs, complete), or None when the text is not one."""
    try:
        obj = _json_decoder.decode(text)
        if not isinstance(obj, dict):
            return None
        pairs = {}
        complete = _flatten(obj, "", pairs)
    except (ValueError, RecursionError):
        return None
    return pairs, complete


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------

_looks_like_rfc5424 = _abnf.looks_like_rfc5424.match


def parse(
    frame: bytes,
    format: str = "auto",
    *,
    time_zone: datetime.tzinfo | None = None,
    now: datetime.datetime | None = None,
    default_pri: int = DEFAULT_PRI,
) -> ParsedMessage:
    """Parse one syslog frame into syslog-ng name-value pairs.  Never raises on any bytes.

    ``format``: one of FORMATS.  ``auto`` takes RFC 5424 for frames starting ``<PRI>1 ``, else
    RFC 3164.  ``time_zone`` is used for stamps without an offset (None: local time zone);
    ``now`` decides the year of yearless stamps (None: the current time).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown syslog format {format!r}; expected one of {FORMATS}")
    if frame[-1:] in (b"\n", b"\0"):
        frame = _strip_trailer(frame)
    try:
        text = frame.decode("utf-8")
        clean = True
    except UnicodeDecodeError:
        text = frame.decode("utf-8", "surrogateescape")
        clean = False
    tags = []

    if format == "auto":
        format = "rfc5424" if _looks_like_rfc5424(text) else "rfc3164"

    if format == "rfc5424":
        result = _parse_rfc5424_strict(text, clean, tags)
        if result is None:
            del tags[:]
            tags.append(TAG_RFC5424_FALLBACK)
            result = _parse_rfc5424_compat(text, tags, time_zone)
            if result is None:
                del tags[1:]
                format = "rfc3164"
    if format == "rfc3164":
        result = _parse_rfc3164(text, tags, time_zone, now, default_pri)
        if result is None:
            tags.append(TAG_INVALID_PRI)
            format = "raw"
    elif format == "json":
        parsed = _parse_json(text) if clean else None
        if parsed is None:
            tags.append(TAG_JSON_INVALID)
            format = "raw"
        else:
            pairs, complete = parsed
            if complete:
                return ParsedMessage(pairs, default_pri, None, (), "json")
            # Some names could not be pairs: the whole object is kept, in MESSAGE if free.
            pairs.setdefault("MESSAGE", text)
            return ParsedMessage(pairs, default_pri, None, (TAG_JSON_BAD_NAME,), "json")

    if format == "raw":
        if tags:
            tags.append(TAG_RAW)
        return ParsedMessage(
            {"MESSAGE": text if clean else frame}, default_pri, None, tuple(tags), "raw"
        )

    pairs, pri, timestamp = result
    if not clean:
        _restore_bytes(pairs)
    return ParsedMessage(pairs, pri, timestamp, tuple(tags), format)

"""RFC 3164, leniently, as syslog-ng reads it (``_syslog_format_parse_legacy``): a fast path
for the common shapes in one regex, then step by step. Sans-IO; used by
:func:`syslogsrc.parsing.parse`."""

from __future__ import annotations

from . import _abnf, _stamps
from ._stamps import _bsd_datetime, _iso_datetime, _legacy_stamp
from ._tags import (
    TAG_INVALID_HOSTNAME,
    TAG_MISSING_PRI,
    TAG_MISSING_TIMESTAMP,
    TAG_RFC3164_MISSING_HEADER,
)

_legacy_common = _abnf.legacy_common.match
_legacy_iso_common = _abnf.legacy_iso_common.match
_AIX_FORWARD = "Message forwarded from "
_REPEATED = "last message repeated"


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
                last = _stamps._last_iso  # the stamp of the message before, mostly
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

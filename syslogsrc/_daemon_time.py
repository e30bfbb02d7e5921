"""The daemon's clock and stamps, as a Python source must handle them.

Three facts of syslog-ng, measured in 3.38.1 and 4.8.1, and what this module does about each:

* ``set_timestamp()`` reads a datetime differently per generation: 3.x takes the wall-clock
  digits as UTC and attaches the offset afterwards, 4.x reads a naive datetime as local time;
  neither stores a negative UTC offset (``-05:00`` is read as ``+19:00``: the instant moves a
  day). :func:`stamp_for_daemon` converts so that the instant always survives, and
  :func:`stamp_carrier` makes a header the daemon's own parser stores exactly.
* The daemon's cached clock is stale in a Python source's thread (``Features.stale_receive_time``):
  a message it stamps itself gets an old time. :func:`now_for_daemon` is now, shown as the daemon
  shows its receive time.
* So a natively parsed frame without a stamp of its own would carry that stale time:
  :func:`stamp_shapes_read` tells, by the start of a frame, which stamps the daemon surely read,
  and :func:`restamp_if_stampless` fixes the others.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from syslogsrc._logmsg import value_of
from syslogsrc.runtime import FEATURES, LogMessage

__all__ = [
    "DAEMON_3X",
    "STAMP_SHAPES",
    "no_stamp_known",
    "now_for_daemon",
    "restamp_if_stampless",
    "stamp_carrier",
    "stamp_for_daemon",
    "stamp_shapes_read",
]

_UTC = dt.UTC
_ZERO = dt.timedelta(0)
#: syslog-ng 3.x, whose ``set_timestamp()`` reads the wall-clock digits as UTC (and which calls
#: no ``wakeup()`` after ``request_exit()``); FEATURES is frozen, so this is decided once
DAEMON_3X = FEATURES.in_daemon and not FEATURES.typed_values


def stamp_for_daemon(ts: dt.datetime) -> dt.datetime:
    """The datetime to give ``set_timestamp()`` so that the daemon stores ``ts``.

    3.x reads the wall-clock digits as UTC and attaches the offset afterwards; both generations
    read the offset without its ``days`` field, so a negative offset would come out wrong (see
    ``stamp_carrier`` for those). The instant always survives; a negative offset is given
    as UTC.
    """
    offset = ts.utcoffset()
    if offset is None:
        return ts
    if offset < _ZERO:
        return ts.astimezone(_UTC)
    if offset and DAEMON_3X:  # at offset 0 the UTC digits are ts's own: nothing to convert
        return ts.astimezone(_UTC).replace(tzinfo=ts.tzinfo)
    return ts


def stamp_carrier(ts: dt.datetime) -> bytes:
    """A bare RFC 5424 header stamped ``ts``, for the daemon's own parser.

    ``set_timestamp()`` cannot store a negative UTC offset in either daemon (-05:00 is read as
    +19:00 and the instant moves a day; measured in 3.38.1 and 4.8.1), but ``LogMessage.parse``
    stores it exactly: a message whose stamp has one is made by parsing this header.
    """
    return b"<13>1 " + ts.isoformat().encode() + b" - - - - -"


def now_for_daemon() -> dt.datetime:
    """Now, for ``set_timestamp()`` (the daemon's own clock is stale in a Python source's thread,
    see ``Features.stale_receive_time``), shown in the local offset as the daemon shows its
    receive time. 3.x reads a naive datetime as UTC; 4.x reads it as local time, and takes an
    aware one as given except for a negative offset (see ``stamp_carrier``)."""
    if not FEATURES.typed_values:  # 3.x
        return dt.datetime.now(_UTC).replace(tzinfo=None)
    now = dt.datetime.now().astimezone()
    offset = now.utcoffset()
    if offset is not None and offset >= _ZERO:
        return now
    return now.replace(tzinfo=None)


# Frames whose stamp the daemon's parser surely reads, by the shape of their start: a BSD stamp
# (RFC 3164), an ISO 8601 one (RFC 3164 as rsyslog sends it), an RFC 5424 header. Only the
# shapes the daemon's parse options read are used (asked of the daemon once, at attach); any
# other frame is checked the slow way.
_PRI = rb"<\d{1,3}>"
_TIME = rb"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
_DATE = rb"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T" + _TIME
_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_BSD = _MONTH + rb" (?: [1-9]|[12]\d|3[01]) " + _TIME + b" "
STAMP_SHAPES = {
    b"<13>Jan  2 03:04:05 host prog: probe": _PRI + _BSD,
    b"<13>2024-01-02T03:04:05+01:00 host prog: probe": _PRI + _DATE,
    b"<13>1 2024-01-02T03:04:05+01:00 host prog - - - probe": _PRI + rb"1 " + _DATE,
}


def restamp_if_stampless(msg: Any) -> None:
    """The daemon stamps a message without a stamp with its cached clock, which is stale in a
    Python source's thread: such a stamp equals RECVD, and is set to now. (Two lookups that
    each format a date, the costliest part of a natively parsed message: see STAMP_SHAPES.)"""
    if value_of(msg, "ISODATE") == value_of(msg, "R_ISODATE"):
        msg.set_timestamp(now_for_daemon())


def no_stamp_known(frame: bytes) -> None:
    """The test of :func:`stamp_shapes_read` when no shape's stamp is known to be read."""
    return None


def stamp_shapes_read(parse_options: Any) -> Callable[[bytes], re.Match[bytes] | None]:
    """A test of a frame's start: a match (true) for the shapes whose stamp the daemon reads
    with ``parse_options`` (each probed once: its stamp differs from the receive time), None
    for other frames. The shapes are prefix patterns without lookahead: a frame that starts
    with the bytes a match spans (``frame[:m.end()]``) matches too."""
    read = []
    for probe, shape in STAMP_SHAPES.items():
        try:
            msg = LogMessage.parse(probe, parse_options)
            if value_of(msg, "ISODATE") != value_of(msg, "R_ISODATE"):
                read.append(shape)
        except Exception:  # a parse the daemon refuses: that shape is not known to be read
            continue
    if not read:
        return no_stamp_known
    return re.compile(b"|".join(read)).match  # type: ignore[return-value]

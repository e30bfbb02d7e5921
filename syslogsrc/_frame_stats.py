"""What a frame decoder counts and reports: :class:`FrameStats` (one connection's counters)
and :class:`FramingError` (an invalid octet-counting header, recorded, never raised). Sans-IO.

Both decoders (:mod:`syslogsrc._delimited`, :mod:`syslogsrc._octet_counting`) count into the
same ``FrameStats``; :class:`~syslogsrc.framing.FrameDecoder` is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["ERROR_DATA_BYTES", "FrameStats", "FramingError"]

#: how much of the offending input a FramingError keeps, for the log line that reports it
ERROR_DATA_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class FramingError:
    """An octet-counting header that breaks the RFC 6587 grammar (a record, never raised).

    ``offset`` is where the bad header starts in the connection's byte stream (0 = first byte),
    ``reason`` says what was wrong, and ``data`` holds up to 64 bytes of input from ``offset`` on:
    as much as had arrived when the error was found, so it may be shorter when the input comes in
    small pieces.
    """

    offset: int
    reason: str
    data: bytes


class FrameStats:
    """Counters of one connection's decoder; plain ints, read them whenever you like.

    Every input byte ends up in exactly one place: a delivered frame, ``overhead_bytes``,
    ``discarded_bytes``, or the decoder's buffer (``buffered``) until more input or ``finish()``.
    """

    __slots__ = (
        "bytes",
        "discarded_bytes",
        "empty",
        "error",
        "frames",
        "incomplete",
        "invalid",
        "overhead_bytes",
        "oversize",
        "oversize_length",
        "truncated",
    )

    def __init__(self) -> None:
        self.frames: int = 0  #: frames delivered by feed() and finish()
        self.bytes: int = 0  #: input bytes fed
        self.truncated: int = 0  #: frames cut to max_size
        self.discarded_bytes: int = 0  #: message bytes beyond max_size, dropped
        self.invalid: int = 0  #: invalid octet-counting headers (each one a FramingError)
        self.empty: int = 0  #: empty frames (blank lines) skipped
        self.incomplete: int = 0  #: frames delivered by finish(): cut short by end of stream
        self.overhead_bytes: int = 0  #: framing bytes: MSG-LEN SP headers, trailers, CR before LF
        #: octet counts over max_size, counted when the header is read (each is in truncated too)
        self.oversize: int = 0
        self.oversize_length: int = 0  #: the MSG-LEN of the most recent one (0: none yet)
        self.error: FramingError | None = None  #: the most recent framing error

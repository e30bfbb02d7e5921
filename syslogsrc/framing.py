"""Incremental RFC 6587 frame decoder (sans-IO; stdlib only, never imports Twisted).

A syslog stream over TCP, TLS or a unix socket is cut into messages by one of the two framings of
RFC 6587 section 3.4: *octet counting* (each message is preceded by its length) or
*non-transparent framing* (each message is followed by a trailer byte, LF or NUL; with
``framing="auto"`` either one ends a message, as in syslog-ng's ``network()``).
:class:`FrameDecoder` is fed the bytes of one connection as they arrive, in chunks of any size,
and hands back the complete frames it found::

    decoder = FrameDecoder()                 # framing="auto", max_size=65536, on_error="resync"
    for frame in decoder.feed(chunk):        # for every chunk read from the connection
        post(frame)
    for frame in decoder.finish():           # at end of stream: the frame cut short, if any
        post(frame)

The frames a stream yields do not depend on how it was chunked: one byte at a time gives the same
frames, counters and end state as the whole stream at once.  Memory is O(``max_size``) whatever the
input: a message longer than ``max_size`` is truncated and the rest of it is discarded as it
arrives, and a huge declared octet count is never buffered (over 1 GiB it is not even believed:
it is an invalid header).

The building blocks, :class:`DelimitedDecoder` (non-transparent framing, in
:mod:`syslogsrc._delimited`) and :class:`OctetCountingDecoder` (in
:mod:`syslogsrc._octet_counting`), take the same ``feed``/``finish`` calls and count into a
:class:`FrameStats` (:mod:`syslogsrc._frame_stats`); :class:`FrameDecoder` validates the options,
picks one per connection and counts what passes through.
"""

from __future__ import annotations

from typing import Final, Literal

from syslogsrc import _octet_counting
from syslogsrc._delimited import LF, NUL, DelimitedDecoder
from syslogsrc._frame_stats import FrameStats, FramingError
from syslogsrc._octet_counting import DIGITS, OctetCountingDecoder, OnError

__all__ = [
    "FRAMINGS",
    "MAX_SKIPPED_MSG_LEN",
    "ON_ERROR_POLICIES",
    "DelimitedDecoder",
    "FrameDecoder",
    "FrameStats",
    "FramingError",
    "OctetCountingDecoder",
]

Framing = Literal["auto", "octet-counting", "lf", "nul"]
#: What FrameDecoder.framing can say: the framing asked for, or what "auto" chose.
InUse = Literal["octet-counting", "lf", "nul", "lf-or-nul"]

FRAMINGS: Final = ("auto", "octet-counting", "lf", "nul")
ON_ERROR_POLICIES: Final = ("resync", "close")
#: 1 GiB: the largest MSG-LEN over ``max_size`` that is skipped by count (a larger one is an
#: invalid header)
MAX_SKIPPED_MSG_LEN: Final = _octet_counting.MAX_SKIPPED_MSG_LEN


class FrameDecoder(FrameStats):
    """Cut one connection's byte stream into syslog frames (RFC 6587).

    ``framing``
        ``"octet-counting"`` (RFC 6587 section 3.4.1, ``MSG-LEN SP SYSLOG-MSG``), ``"lf"``
        (non-transparent framing with an LF trailer; a CR right before the LF is removed too),
        ``"nul"`` (NUL trailer), or ``"auto"``: decided by the connection's first byte, a digit
        meaning octet counting and anything else non-transparent framing (RFC 6587 section
        3.4.2) where LF *or* NUL ends a frame, as in syslog-ng's ``network()``: Python's
        ``SysLogHandler`` ends its messages with NUL and no LF.  A CR right before either trailer
        is removed too.  The ``framing`` attribute tells the framing in use: ``None`` until
        ``auto`` has seen a byte, then ``"octet-counting"`` or ``"lf-or-nul"``.
    ``max_size``
        The largest message delivered, in bytes.  A longer one is delivered cut to ``max_size``
        bytes (counted in ``truncated``) and the rest of it is discarded as it arrives (counted in
        ``discarded_bytes``); the connection goes on.  An octet count over ``max_size`` is counted
        in ``oversize`` (and ``truncated``) when its header is read, before any of its bytes, and
        the rest of its message is skipped by count; one over :data:`MAX_SKIPPED_MSG_LEN` (1 GiB)
        as well is an invalid header (below).  Memory stays O(``max_size``) whatever the input,
        a declared octet count of 10**12 included.
    ``on_error``
        What an invalid octet-counting header does (a non-digit where MSG-LEN must be, a leading
        zero, more than 10 digits, no SP after it, a MSG-LEN over both ``max_size`` and 1 GiB).
        ``feed`` never raises: the error is recorded as a :class:`FramingError` in ``error`` (the
        most recent one) and counted in ``invalid``.
        With ``"resync"`` (the default) the bytes from the start of the bad header are taken as
        the start of an LF-terminated frame, which is delivered, so nothing is lost, and octet
        counting resumes with the next frame.  With ``"close"`` decoding stops: ``feed`` returns
        ``[]`` from then on, ``closed`` is true, and the caller should close the connection; the
        bytes from the bad header on (up to ``max_size``) come out of ``finish()``.

    Empty frames (blank lines, empty NUL frames, and LF or CR LF between octet-counted frames)
    are skipped and counted in ``empty``; syslog-ng ignores empty lines too.  ``finish()`` returns
    the frame cut short by the end of the stream (counted in ``incomplete``).

    Counters (plain ints): ``frames``, ``bytes``, ``truncated``, ``discarded_bytes``,
    ``invalid``, ``empty``, ``incomplete``, ``overhead_bytes``, ``oversize`` (and
    ``oversize_length``, the MSG-LEN of the most recent oversize frame).  At every moment
    ``bytes == sum of frame lengths + overhead_bytes + discarded_bytes + buffered``.
    """

    __slots__ = ("_decoder", "_finished", "framing", "max_size", "on_error")

    def __init__(
        self, framing: Framing = "auto", max_size: int = 65536, on_error: OnError = "resync"
    ) -> None:
        super().__init__()
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}; got {framing!r}")
        if not isinstance(max_size, int) or isinstance(max_size, bool):
            raise TypeError(f"max_size must be an int, got {max_size!r}")
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size!r}")
        if on_error not in ON_ERROR_POLICIES:
            raise ValueError(
                f"on_error must be one of {', '.join(ON_ERROR_POLICIES)}; got {on_error!r}"
            )
        self.max_size = max_size
        self.on_error: OnError = on_error
        self.framing: InUse | None = None
        self._decoder: DelimitedDecoder | OctetCountingDecoder | None = None
        self._finished = False
        if framing != "auto":
            self._use(framing)

    def _use(self, framing: InUse) -> DelimitedDecoder | OctetCountingDecoder:
        self.framing = framing
        decoder: DelimitedDecoder | OctetCountingDecoder
        if framing == "octet-counting":
            decoder = OctetCountingDecoder(self.max_size, self, on_error=self.on_error)
        elif framing == "lf":
            decoder = DelimitedDecoder(LF, self.max_size, self, strip_cr=True)
        elif framing == "lf-or-nul":
            decoder = DelimitedDecoder(LF, self.max_size, self, strip_cr=True, also=NUL)
        else:
            decoder = DelimitedDecoder(NUL, self.max_size, self)
        self._decoder = decoder
        return decoder

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of their frame (at most about ``max_size``)."""
        return self._decoder.buffered if self._decoder is not None else 0

    @property
    def closed(self) -> bool:
        """True once an invalid header stopped decoding with ``on_error="close"``."""
        return isinstance(self._decoder, OctetCountingDecoder) and self._decoder.closed

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete frames found so far; keep the rest for the next call."""
        if self._finished:
            raise RuntimeError("feed() after finish(): the stream has ended")
        if not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)  # frames are bytes, whatever the caller's buffer type
        self.bytes += len(data)
        decoder = self._decoder
        if decoder is None:
            # RFC 6587 section 3.4.2: octet-counted frames start with a digit, and nothing
            # else does.  Then LF or NUL ends a frame, as in syslog-ng.
            decoder = self._use("octet-counting" if data[0] in DIGITS else "lf-or-nul")
        frames = decoder.feed(data)
        self.frames += len(frames)
        return frames

    def finish(self) -> list[bytes]:
        """End of stream: return the frame cut short, if any.  Later calls return ``[]``."""
        if self._finished or self._decoder is None:
            self._finished = True
            return []
        self._finished = True
        frames = self._decoder.finish()
        self.frames += len(frames)
        self.incomplete += len(frames)
        return frames

    def __repr__(self) -> str:
        return (
            f"<FrameDecoder framing={self.framing!r} frames={self.frames} bytes={self.bytes}"
            f" buffered={self.buffered} invalid={self.invalid} truncated={self.truncated}>"
        )

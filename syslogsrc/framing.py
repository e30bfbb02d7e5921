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

The building blocks, :class:`DelimitedDecoder` (non-transparent framing) and
:class:`OctetCountingDecoder`, take the same ``feed``/``finish`` calls; :class:`FrameDecoder`
validates the options, picks one per connection and counts what passes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Final, Literal

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
OnError = Literal["resync", "close"]

FRAMINGS: Final = ("auto", "octet-counting", "lf", "nul")
ON_ERROR_POLICIES: Final = ("resync", "close")

# ---------------------------------------------------------------------------------------------
# RFC 6587 section 3.4.1, octet counting
#
#   SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG
#   MSG-LEN = NONZERO-DIGIT *DIGIT
#   NONZERO-DIGIT = %d49-57
#
# The ABNF puts no bound on MSG-LEN; like syslog-ng (RFC6587_MAX_FRAME_LEN_DIGITS) we accept at
# most 10 digits, so a header is at most 11 bytes and is judged before any message byte is kept.
# A message longer than max_size is truncated, as RFC 5424 section 6.1 suggests ("the receiver
# SHOULD truncate the payload"), and the rest of it is skipped by count, never buffered.
#
# Skipping by count swallows everything the sender sends until that count has gone by.  For a
# few hundred kB too many that is right; a count of 2 000 000 000 (an LF-framed line that starts
# with an epoch time, a broken sender) would hold the connection for 2 GB.  No syslog message is
# a gigabyte long, so a MSG-LEN over MAX_SKIPPED_MSG_LEN (and over max_size) is treated as an
# invalid header, like one of 11 digits (syslog-ng closes the connection for any MSG-LEN over
# log-msg-size: "Incoming frame larger than log_msg_size()").
# ---------------------------------------------------------------------------------------------

SP: Final = 0x20
DIGITS: Final = frozenset(b"0123456789")
NONZERO_DIGITS: Final = frozenset(b"123456789")
MAX_MSG_LEN_DIGITS: Final = 10
MAX_HEADER: Final = MAX_MSG_LEN_DIGITS + 1  # MSG-LEN SP
#: 1 GiB: the largest MSG-LEN over ``max_size`` that is skipped by count (a larger one is an
#: invalid header)
MAX_SKIPPED_MSG_LEN: Final = 1 << 30

# ---------------------------------------------------------------------------------------------
# RFC 6587 section 3.4.2, non-transparent framing
#
#   SYSLOG-FRAME = SYSLOG-MSG TRAILER
#   TRAILER = LF / APPLICATION-SPECIFIC
#
# LF is the trailer of nearly every sender; NUL is the application-specific one seen in the wild
# (Python's logging.handlers.SysLogHandler ends every message with NUL and no LF, over TCP and
# unix stream sockets alike).  syslog-ng's text framing ends a message at LF *or* NUL (find_eom
# in lib/logproto/logproto-text-server.c), and so does our "auto" when it picks non-transparent
# framing.  Senders that end lines with CR LF are common, so a CR right before an LF trailer is
# part of the trailer, not of the message.  Like syslog-ng, we ignore empty frames (blank lines).
# ---------------------------------------------------------------------------------------------

LF: Final = b"\n"
NUL: Final = b"\0"
CR: Final = 0x0D

# How much of the offending input a FramingError keeps, for the log line that reports it.
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


class DelimitedDecoder:
    """Non-transparent framing (RFC 6587 section 3.4.2): each frame ends with ``delimiter``.

    With ``strip_cr`` a CR right before the delimiter is removed too (CR LF senders).  ``also`` is
    a second delimiter: it is replaced by ``delimiter`` before the split, so it ends a frame the
    same way (a CR before it is removed too with ``strip_cr``).  Empty frames are skipped and
    counted in ``stats.empty``.  A frame longer than ``max_size`` is delivered cut
    to ``max_size`` bytes as soon as that much has arrived; the rest of it, up to the delimiter, is
    discarded.  Updates ``stats`` except ``frames``, ``bytes`` and ``incomplete``, which
    :class:`FrameDecoder` counts.
    """

    __slots__ = ("_discarding", "_tail", "also", "delimiter", "max_size", "stats", "strip_cr")

    def __init__(
        self,
        delimiter: bytes,
        max_size: int,
        stats: FrameStats,
        *,
        strip_cr: bool = False,
        also: bytes | None = None,
    ) -> None:
        if len(delimiter) != 1:
            raise ValueError(f"delimiter must be a single byte, got {delimiter!r}")
        if also is not None and (len(also) != 1 or also == delimiter):
            raise ValueError(f"also must be another single byte than the delimiter, got {also!r}")
        self.delimiter = delimiter
        self.also = also
        self.max_size = max_size
        self.stats = stats
        self.strip_cr = strip_cr
        self._tail = bytearray()  # start of the frame being received (no delimiter yet)
        self._discarding = False  # dropping the rest of a truncated frame until the delimiter

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of their frame."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        """Return the frames completed by ``data``."""
        # bytes.split does the scanning in C; after it, the hot path touches the frames only
        # with whole-list operations that also run in C (map over a builtin, `in`), never with
        # a Python loop over frames, let alone bytes.
        also = self.also
        if also is not None and also in data:  # a memchr; the copy only when there is one
            # One byte for another: frames, which hold no delimiter, are the bytes received,
            # and every count (overhead, discarded, buffered) is the same length either way.
            data = data.replace(also, self.delimiter)
        lines = data.split(self.delimiter)
        if len(lines) == 1:
            return self._keep_partial(data)
        tail = lines.pop()
        stats = self.stats
        stats.overhead_bytes += len(lines)  # one delimiter after each of them
        if self._discarding:
            self._discarding = False
            stats.discarded_bytes += len(lines[0])
            del lines[0]
        elif self._tail:
            lines[0] = b"".join((self._tail, lines[0]))
            self._tail = bytearray()
        if lines:
            max_size = self.max_size
            # A lone CR is found by memchr, much faster than a search for CR LF.
            if self.strip_cr and (b"\r" in data or lines[0][-1:] == b"\r"):
                frames = list(map(bytes.removesuffix, lines, repeat(b"\r", len(lines))))
                if b"" in frames or max(map(len, frames)) > max_size:
                    lines = self._clean(lines)
                else:
                    stats.overhead_bytes += sum(map(len, lines)) - sum(map(len, frames))
                    lines = frames
            elif b"" in lines or max(map(len, lines)) > max_size:
                lines = self._clean(lines)
        if tail:
            lines += self._keep_partial(tail)
        return lines

    def _clean(self, lines: list[bytes]) -> list[bytes]:
        """The slow path: strip CR, skip empty frames, truncate long ones."""
        stats = self.stats
        max_size = self.max_size
        strip_cr = self.strip_cr
        frames = []
        for raw in lines:
            line = raw[:-1] if strip_cr and raw[-1:] == b"\r" else raw
            if not line:
                stats.empty += 1
                stats.overhead_bytes += len(raw)
            elif len(line) > max_size:
                # Whatever follows the first max_size bytes is discarded, CR included, so the
                # counts come out the same as when the frame is cut before its end arrives.
                stats.truncated += 1
                stats.discarded_bytes += len(raw) - max_size
                frames.append(line[:max_size])
            else:
                stats.overhead_bytes += len(raw) - len(line)
                frames.append(line)
        return frames

    def _keep_partial(self, piece: bytes) -> list[bytes]:
        """Hold ``piece`` (no delimiter in it) until its frame ends; cut the frame if too long."""
        if not piece:
            return []
        stats = self.stats
        if self._discarding:
            stats.discarded_bytes += len(piece)
            return []
        max_size = self.max_size
        held = len(self._tail) + len(piece)
        # One byte past max_size may be kept when it is a CR: the next byte may be the LF that
        # makes it part of the trailer, and then the frame is exactly max_size long.
        if held <= max_size or (self.strip_cr and held == max_size + 1 and piece[-1] == CR):
            self._tail += piece
            return []
        kept = len(self._tail)
        if kept >= max_size:
            frame = bytes(self._tail[:max_size])
        else:
            frame = b"".join((self._tail, piece[: max_size - kept]))
        stats.truncated += 1
        stats.discarded_bytes += held - max_size
        self._tail = bytearray()
        self._discarding = True
        return [frame]

    def finish(self) -> list[bytes]:
        """End of stream: return the frame still waiting for its delimiter, if any."""
        if self._discarding:
            self._discarding = False
            return []
        if not self._tail:
            return []
        frame = bytes(self._tail)
        self._tail = bytearray()
        if len(frame) > self.max_size:
            # max_size bytes and a CR that no LF followed: the CR is message, one byte too many.
            self.stats.truncated += 1
            self.stats.discarded_bytes += len(frame) - self.max_size
            frame = frame[: self.max_size]
        return [frame]


# What a header turned out to be (see _judge_header).
_NEED_MORE: Final = 0
_FRAME: Final = 1
_EMPTY: Final = 2
_INVALID: Final = 3


def _judge_header(head: bytes) -> tuple[int, int | str, int]:
    """Judge the start of an octet-counted frame: ``(verdict, MSG-LEN or reason, header size)``.

    ``head`` holds up to MAX_HEADER bytes from the start of the frame.  _NEED_MORE is returned
    only when every byte of ``head`` fits a header and the verdict depends on bytes not yet seen,
    so the verdict never depends on how the stream was chunked.
    """
    first = head[0]
    # Not RFC 6587: some senders end each octet-counted frame with LF or CR LF as well.  Those
    # are blank lines, skipped and counted in `empty` like the ones of LF framing.
    if first == 0x0A:
        return _EMPTY, 0, 1
    if first == CR:
        if len(head) == 1:
            return _NEED_MORE, 0, 0
        if head[1] == 0x0A:
            return _EMPTY, 0, 2
    # MSG-LEN = NONZERO-DIGIT *DIGIT
    if first not in NONZERO_DIGITS:
        if first == 0x30:
            return _INVALID, "MSG-LEN has a leading zero", 0
        return _INVALID, f"MSG-LEN must start with a NONZERO-DIGIT, got {head[:1]!r}", 0
    end = 1
    while end < len(head) and head[end] in DIGITS:
        end += 1
    if end > MAX_MSG_LEN_DIGITS:
        return _INVALID, f"MSG-LEN longer than {MAX_MSG_LEN_DIGITS} digits", 0
    if end == len(head):
        return _NEED_MORE, 0, 0
    # SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG
    if head[end] != SP:
        return _INVALID, f"expected SP after MSG-LEN, got {head[end : end + 1]!r}", 0
    return _FRAME, int(head[:end]), end + 1


# OctetCountingDecoder states
_HEADER: Final = 0  # expecting MSG-LEN SP
_BODY: Final = 1  # keeping the message
_SKIP: Final = 2  # discarding the message bytes beyond max_size
_RESYNC: Final = 3  # after an invalid header: reading an LF-terminated frame
_CLOSED: Final = 4  # after an invalid header with on_error="close": holding, not decoding


class OctetCountingDecoder:
    """Octet-counting framing (RFC 6587 section 3.4.1).

    A MSG-LEN over ``max_size`` (up to :data:`MAX_SKIPPED_MSG_LEN`) is counted in
    ``stats.oversize`` and ``stats.truncated`` as soon as its header is read; the message is
    delivered cut to ``max_size`` bytes as soon as those have arrived, and the rest of it is
    skipped by count as it arrives: counted, never buffered.

    An invalid header (a non-digit where MSG-LEN must be, a leading zero, more than 10 digits, no
    SP after the digits, a MSG-LEN over both ``max_size`` and :data:`MAX_SKIPPED_MSG_LEN`) is
    recorded as a :class:`FramingError` in ``stats.error`` and counted in
    ``stats.invalid``; then ``on_error`` decides:

    ``"resync"``
        The bytes from the start of the bad header are taken as the start of an LF-terminated
        frame (CR LF too), which is delivered, so nothing is lost; octet counting resumes with the
        next frame.
    ``"close"``
        Decoding stops: ``feed`` returns ``[]`` from then on and the caller should close the
        connection.  The bytes from the start of the bad header on (up to ``max_size`` of them)
        are held and come out of ``finish()`` as one frame, so they can still be delivered.

    A blank line (LF or CR LF) where a header is expected is skipped and counted in
    ``stats.empty``, not treated as an error: some senders end octet-counted frames with a newline.
    """

    __slots__ = (
        "_body",
        "_head",
        "_offset",
        "_overflowed",
        "_pending",
        "_resync",
        "_skip",
        "_state",
        "_want",
        "max_size",
        "on_error",
        "stats",
    )

    def __init__(self, max_size: int, stats: FrameStats, *, on_error: OnError = "resync") -> None:
        self.max_size = max_size
        self.stats = stats
        self.on_error = on_error
        self._state = _HEADER
        self._offset = 0  # stream offset of the first byte of the current feed() call
        self._head = b""  # a header cut by the end of a chunk
        self._body = bytearray()  # a message cut by the end of a chunk
        self._want = 0  # message bytes still to keep
        self._skip = 0  # message bytes to discard after those
        self._resync: DelimitedDecoder | None = None
        self._pending = bytearray()  # with on_error="close": what finish() will return
        self._overflowed = False  # _pending reached max_size (counted as truncated once)

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of their frame."""
        resync = self._resync.buffered if self._resync is not None else 0
        return len(self._head) + len(self._body) + resync + len(self._pending)

    @property
    def closed(self) -> bool:
        """True once an invalid header stopped decoding (``on_error="close"``)."""
        return self._state == _CLOSED

    def feed(self, data: bytes) -> list[bytes]:
        """Return the frames completed by ``data``; never raises on bad input."""
        frames: list[bytes] = []
        end = len(data)
        pos = 0
        while pos < end:
            state = self._state
            if state == _HEADER:
                if not self._head:
                    pos = self._whole_frames(data, pos, frames)
                    if pos == end:
                        break
                pos = self._header(data, pos, frames)
            elif state == _BODY:
                pos = self._message(data, pos, frames)
            elif state == _SKIP:
                skip = min(self._skip, end - pos)
                self.stats.discarded_bytes += skip
                self._skip -= skip
                pos += skip
                if not self._skip:
                    self._state = _HEADER
            elif state == _RESYNC:
                pos = self._resync_line(data, pos, frames)
            else:
                self._hold(data[pos:] if pos else data)
                pos = end
        self._offset += end
        return frames

    def _whole_frames(self, data: bytes, pos: int, frames: list[bytes]) -> int:
        """The hot path: slice out every frame that lies whole in ``data`` from ``pos`` on.

        Stops, returning its position, at the first frame it cannot take whole: a header or
        message cut by the end of ``data``, a message to truncate, or anything that is not a
        valid header; ``_header`` then judges that one frame the slow way.
        """
        end = len(data)
        max_size = self.max_size
        find = data.find
        append = frames.append
        headers = 0
        while True:
            sp = find(b" ", pos, pos + MAX_HEADER)
            if sp <= pos:
                break
            msg_len = data[pos:sp]
            # bytes.isdigit is ASCII-only; int() alone would accept "+1", " 1" and "1_0".
            if not msg_len.isdigit() or data[pos] == 0x30:
                break
            length = int(msg_len)
            start = sp + 1
            stop = start + length
            if stop > end or length > max_size:
                break
            append(data[start:stop])
            headers += start - pos
            pos = stop
        self.stats.overhead_bytes += headers
        return pos

    def _header(self, data: bytes, pos: int, frames: list[bytes]) -> int:
        """Judge the header starting at ``pos`` (and in ``_head``); return where to go on."""
        carry = self._head
        head = carry + data[pos : pos + MAX_HEADER - len(carry)]
        verdict, value, size = _judge_header(head)
        if verdict == _NEED_MORE:
            self._head = head
            return len(data)
        self._head = b""
        stats = self.stats
        max_size = self.max_size
        if verdict == _FRAME:
            assert isinstance(value, int)
            if value <= max_size:
                self._want = value
                self._skip = 0
            elif value <= MAX_SKIPPED_MSG_LEN:
                # Counted now, when the header is read, not when max_size bytes have come:
                # until then the sender's next messages are swallowed, and someone should know.
                stats.oversize += 1
                stats.oversize_length = value
                stats.truncated += 1
                self._want = max_size
                self._skip = value - max_size
            else:
                return self._invalid(
                    data,
                    pos,
                    carry,
                    frames,
                    f"MSG-LEN {value} is over {MAX_SKIPPED_MSG_LEN}, too long to skip"
                    f" (max_size {max_size})",
                )
            stats.overhead_bytes += size
            self._state = _BODY
            return pos + size - len(carry)
        if verdict == _EMPTY:
            stats.empty += 1
            stats.overhead_bytes += size
            return pos + size - len(carry)
        assert isinstance(value, str)
        return self._invalid(data, pos, carry, frames, value)

    def _invalid(
        self, data: bytes, pos: int, carry: bytes, frames: list[bytes], reason: str
    ) -> int:
        """Record the invalid header starting at ``pos`` (``carry``, its start, was cut by the
        end of the previous chunk), then do what ``on_error`` says."""
        stats = self.stats
        stats.invalid += 1
        stats.error = FramingError(
            offset=self._offset + pos - len(carry),
            reason=reason,
            data=carry + data[pos : pos + ERROR_DATA_BYTES - len(carry)],
        )
        if self.on_error == "close":
            self._state = _CLOSED
            self._hold(carry)
            self._hold(data[pos:])
            return len(data)
        self._state = _RESYNC
        if self._resync is None:
            self._resync = DelimitedDecoder(LF, self.max_size, stats, strip_cr=True)
        # The bad header is the start of the LF-terminated frame, and is delivered with it.
        frames += self._resync.feed(carry)
        return pos

    def _message(self, data: bytes, pos: int, frames: list[bytes]) -> int:
        """Take the message bytes of the current frame from ``data``."""
        want = self._want
        available = len(data) - pos
        if available < want:
            self._body += data[pos:]
            self._want = want - available
            return len(data)
        stop = pos + want
        if self._body:
            frames.append(b"".join((self._body, data[pos:stop])))
            self._body = bytearray()
        else:
            frames.append(data[pos:stop])
        self._want = 0
        if self._skip:
            # Delivered now, not when the rest has gone by: the rest may be a gigabyte.
            self._state = _SKIP
        else:
            self._state = _HEADER
        return stop

    def _resync_line(self, data: bytes, pos: int, frames: list[bytes]) -> int:
        """Feed the LF-terminated frame after a bad header to the LF decoder, up to its LF."""
        assert self._resync is not None
        lf = data.find(LF, pos)
        if lf < 0:
            frames += self._resync.feed(data[pos:] if pos else data)
            return len(data)
        frames += self._resync.feed(data[pos : lf + 1])
        self._state = _HEADER
        return lf + 1

    def _hold(self, piece: bytes) -> None:
        """With on_error="close": keep up to max_size bytes for finish(), count the rest."""
        room = self.max_size - len(self._pending)
        if len(piece) > room:
            self.stats.discarded_bytes += len(piece) - room
            if not self._overflowed:
                self._overflowed = True
                self.stats.truncated += 1
            piece = piece[:room]
        self._pending += piece

    def finish(self) -> list[bytes]:
        """End of stream: return what was received of the frame cut short, if anything.

        A message cut short comes out as the bytes received (none when the stream ended right
        after its header); a header cut short comes out as itself, so nothing is lost.
        """
        state = self._state
        if state != _CLOSED:
            self._state = _HEADER
        frame = b""
        if state == _HEADER:
            frame = self._head
        elif state == _BODY:
            frame = bytes(self._body)
        elif state == _RESYNC:
            assert self._resync is not None
            return self._resync.finish()
        elif state == _CLOSED:
            frame = bytes(self._pending)
        self._head = b""
        self._body = bytearray()
        self._pending = bytearray()
        self._want = self._skip = 0
        if len(frame) > self.max_size:  # only a header cut short can be (max_size < 10)
            self.stats.truncated += 1
            self.stats.discarded_bytes += len(frame) - self.max_size
            frame = frame[: self.max_size]
        return [frame] if frame else []


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

"""Octet-counting framing (RFC 6587 section 3.4.1): :class:`OctetCountingDecoder`. Sans-IO.

Each frame is ``MSG-LEN SP SYSLOG-MSG``; see the grammar and the limits below. An invalid header
either resynchronises on the next LF (the bytes are delivered as an LF-terminated frame, by a
:class:`~syslogsrc._delimited.DelimitedDecoder`) or stops decoding (``on_error="close"``).
"""

from __future__ import annotations

from typing import Final, Literal

from syslogsrc._delimited import CR, LF, DelimitedDecoder
from syslogsrc._frame_stats import ERROR_DATA_BYTES, FrameStats, FramingError

__all__ = ["DIGITS", "MAX_SKIPPED_MSG_LEN", "OctetCountingDecoder", "OnError"]

OnError = Literal["resync", "close"]

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

"""Non-transparent framing (RFC 6587 section 3.4.2): :class:`DelimitedDecoder`. Sans-IO.

A frame ends with a trailer byte (LF, NUL, or either); see the grammar below.
"""

from __future__ import annotations

from itertools import repeat
from typing import Final

from syslogsrc._frame_stats import FrameStats

__all__ = ["CR", "LF", "NUL", "DelimitedDecoder"]

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
        # a memchr, the copy only when there is one (a byte looked for by its number: `b"x" in
        # data` first tries the needle as an int, raising and clearing a TypeError)
        if also is not None and also[0] in data:
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
            if self.strip_cr and (CR in data or lines[0][-1:] == b"\r"):
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

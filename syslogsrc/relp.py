"""The server side of RELP, the Reliable Event Logging Protocol (sans-IO; never imports Twisted).

RELP is what rsyslog's ``omrelp`` (librelp) speaks to ``imrelp``: every syslog message is a
command the server answers, so the client knows which messages arrived and sends the others
again on a new connection. :class:`RelpServerConnection` is one connection's state machine, in
the style of h11: it is fed the bytes read with :meth:`~RelpServerConnection.receive_data`,
returns the events they complete, and produces the bytes to send with its ``answer_*`` methods;
it never touches a socket::

    conn = RelpServerConnection(max_data_size=65536)
    for event in conn.receive_data(chunk):
        if isinstance(event, Open):
            write(conn.answer_open(event.txnr))
        elif isinstance(event, Syslog):
            store(event.message)                  # ... and once it is stored:
            write(conn.answer_ok(event.txnr))
        elif isinstance(event, Close):
            write(conn.answer_close(event.txnr))  # once every earlier frame is answered
            disconnect()
        elif isinstance(event, ProtocolError):
            write(event.answer)                   # a 500 answer, then the serverclose hint
            disconnect()

The wire format and its semantics follow librelp (``src/relpframe.c``, ``src/relpsess.c``,
``src/copen.c``, ``src/scsyslog.c``, ``src/cclose.c``), which is what every RELP client in
practice is, and its ``doc/relp.md``; where they differ, librelp wins and the comment says so.

What the server guarantees to a client:

* Frames are answered by transaction number (``rsp`` frames carry the TXNR they answer), **in
  the order the messages are stored, not necessarily the order they arrived**. librelp's client
  looks every ``rsp`` up in its list of unacknowledged frames by TXNR (``relpSessGetUnacked``),
  so any order is understood; ``doc/relp.md`` says both "the server may reply in any order" and
  "in the exact same order", and librelp's behaviour settles it. Answering as acknowledgements
  arrive keeps one slow message from holding back the answers of those stored after it.
* A message is answered ``200 OK`` once stored, ``500 ...`` if it cannot be: librelp's client
  then drops that message (and reports the error) rather than sending it again, so ``500`` is
  for a message that would fail again. A message that is not answered (the connection closed
  first) is sent again by the client on its next connection: RELP delivers at least once.
* Anything that breaks the protocol (a malformed frame, a TXNR out of sequence, a command before
  ``open``, too many unanswered frames) ends the connection: the server answers ``500`` with
  the reason (for the frame's TXNR, or TXNR 0 when the header did not get that far), sends the
  ``serverclose`` hint and closes, as ``doc/relp.md`` ("ERROR HANDLING") asks: recovery is a new
  connection. Nothing the peer sends makes :meth:`~RelpServerConnection.receive_data` raise.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final

import attrs

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_CONTROL_DATA",
    "MAX_TXNR",
    "RELP_VERSION",
    "SERVERCLOSE",
    "Close",
    "Event",
    "LocalProtocolError",
    "Open",
    "ProtocolError",
    "RelpServerConnection",
    "State",
    "Syslog",
    "next_txnr",
    "parse_offers",
]

# ---------------------------------------------------------------------------------------------
# The frame (doc/relp.md, "RELP FRAME"; librelp src/relpframe.c, relpFrameProcessOctetRcvd)
#
#   RELP-FRAME = HEADER DATA TRAILER
#   HEADER     = TXNR SP COMMAND SP DATALEN
#   DATA       = [SP 1*OCTET]   ; if DATALEN is 0, no data is present
#   TRAILER    = LF
#   TXNR       = NUMBER         ; starts at 1, wraps from 999999999 to 1; 0 is for hints
#   COMMAND    = 1*32ALPHA
#   DATALEN    = NUMBER
#   NUMBER     = 1*9DIGIT
#
# librelp is exact about the separator after DATALEN: with DATALEN 0 the next octet must be
# the trailer (a SP there is an invalid frame), with DATALEN > 0 it must be SP. Its server
# accepts only the TXNR it expects next (the previous one plus one, from 1), else it drops the
# session (RELP_RET_INVALID_TXNR); we answer 500 first.
# ---------------------------------------------------------------------------------------------

TXNR: Final = rb"[0-9]{1,9}"
COMMAND: Final = rb"[A-Za-z]{1,32}"
DATALEN: Final = rb"[0-9]{1,9}"
#: A complete header and the octet after DATALEN (SP before DATA, or the TRAILER).
_HEADER: Final = re.compile(rb"(" + TXNR + rb") (" + COMMAND + rb") (" + DATALEN + rb")([ \n])")
#: What a header cut short by the end of the data read so far can look like: anything else
#: cannot become a header, whatever follows (an error now, not after 53 octets of garbage).
_HEADER_START: Final = re.compile(rb"(?:[0-9]{1,9}(?: (?:[A-Za-z]{1,32}(?: [0-9]{0,9})?)?)?)?")

LF: Final = 0x0A
#: The largest TXNR; the next one is 1 (librelp's relpEngineNextTXNR: a TXNR has 9 digits).
MAX_TXNR: Final = 999_999_999
#: The RELP version librelp speaks (RELP_CURR_PROTOCOL_VERSION is 0) and the one we answer:
#: librelp's client refuses a server whose relp_version is above its own.
RELP_VERSION: Final = 0
#: The most frames a client may leave unanswered before the connection is closed. librelp's
#: client sends at most its window (omrelp ``windowSize``, 128 by default) before it waits for
#: answers; a client beyond 1024 is broken or hostile, and each unanswered frame costs us memory.
DEFAULT_WINDOW: Final = 1024
#: The largest DATA of the commands that are not ``syslog`` (the offers of ``open``): librelp's
#: offers are a few hundred octets.
MAX_CONTROL_DATA: Final = 16 * 1024
#: The hint a server sends before it closes a connection (TXNR 0, no answer expected): librelp
#: sends it whenever its server ends a session that is not broken (relpSessSrvDoDisconnect).
SERVERCLOSE: Final = b"0 serverclose 0\n"
#: Commands a client may send. librelp's server also dispatches ``rsp`` and ``serverclose``,
#: which only a server sends; from a client they end the session there, and here.
_COMMANDS: Final = frozenset((b"open", b"syslog", b"close"))
#: The text of an answer is at most 80 octets (librelp's readRspHdr reads no more).
_MAX_TEXT: Final = 80


def next_txnr(txnr: int) -> int:
    """The TXNR after ``txnr``: one more, and 1 after :data:`MAX_TXNR`."""
    return 1 if txnr >= MAX_TXNR else txnr + 1


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Open:
    """The client opened the session; answer it with :meth:`RelpServerConnection.answer_open`.

    ``offers`` are the client's, as sent (name, values), e.g. ``("relp_version", ("0",))``;
    ``version`` and ``commands`` are what the session uses (what both sides support).
    """

    txnr: int
    offers: tuple[tuple[str, tuple[str, ...]], ...]
    version: int
    commands: tuple[str, ...]


@attrs.frozen(slots=True)
class Syslog:
    """A syslog message (the frame's DATA, as sent); answer it once it is stored."""

    txnr: int
    message: bytes


@attrs.frozen(slots=True)
class Close:
    """The client closes the session; answer it once every earlier frame is answered."""

    txnr: int


@attrs.frozen(slots=True)
class ProtocolError:
    """The client broke the protocol. Send ``answer`` (a ``500`` answer with ``reason``, then the
    ``serverclose`` hint) and close the connection; nothing more is read from it.

    ``txnr`` is the TXNR of the frame at fault, None when its header could not be read (the
    answer then carries TXNR 0).
    """

    txnr: int | None
    reason: str
    answer: bytes


Event = Open | Syslog | Close | ProtocolError


class LocalProtocolError(Exception):
    """Our own side misused the connection (answered a TXNR that awaits no answer, closed with
    frames unanswered): a bug in the caller, never caused by what the peer sent."""


class State(enum.Enum):
    AWAIT_OPEN = "await-open"  #: nothing but ``open`` (or ``close``) is accepted
    OPEN = "open"  #: ``syslog`` frames flow
    CLOSING = "closing"  #: ``close`` received: nothing more is read, answers go out
    CLOSED = "closed"  #: an error or a server close: nothing more is read or sent


# ---------------------------------------------------------------------------------------------
# Offers (doc/relp.md, "OFFERS"; librelp src/offers.c, relpOffersConstructFromFrame)
#
#   OFFER       = LF FEATURENAME ["=" VALUE *("," VALUE)]
#   FEATURENAME = *32OCTET
#   VALUE       = *255OCTET
#
# In practice the offers are LF-separated (librelp writes "relp_version=0\nrelp_software=...\n
# commands=syslog", no leading LF). Empty values are skipped, as librelp does.
# ---------------------------------------------------------------------------------------------


def parse_offers(data: bytes) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The offers of an ``open`` (or of its answer): ``((name, (value, ...)), ...)``, in order,
    names and values decoded as Latin-1 (every octet kept)."""
    offers = []
    for line in data.split(b"\n"):
        if not line:
            continue
        name, _, values = line.partition(b"=")
        offers.append(
            (name.decode("latin-1"), tuple(v.decode("latin-1") for v in values.split(b",") if v))
        )
    return tuple(offers)


def _rsp(txnr: int, data: bytes) -> bytes:
    """An ``rsp`` frame answering ``txnr`` with ``data``."""
    if data:
        return b"%d rsp %d %s\n" % (txnr, len(data), data)
    return b"%d rsp 0\n" % txnr


def _text(text: str) -> bytes:
    """A HUMANMSG: printable ASCII on one line, at most 80 octets."""
    raw = text.encode("ascii", "replace")
    return bytes(c if 0x20 <= c < 0x7F else 0x3F for c in raw)[:_MAX_TEXT]


class RelpServerConnection:
    """One RELP connection, server side: bytes in, events out, answers as bytes.

    :param max_data_size: the largest DATA of a ``syslog`` frame (the listener's
        ``max-message-size``); a larger DATALEN is a protocol error (at the header: nothing of
        the frame is buffered). librelp's ``oversizeMode="abort"``.
    :param max_window: the most frames awaiting an answer (:data:`DEFAULT_WINDOW`); one more
        is a protocol error.
    :param software: the ``relp_software`` values we offer (name, then version, then URL).

    Memory is bounded whatever the peer sends: one header, the DATA of one frame
    (``max_data_size`` or :data:`MAX_CONTROL_DATA`), ``max_window`` TXNRs.
    """

    def __init__(
        self,
        max_data_size: int = 65536,
        max_window: int = DEFAULT_WINDOW,
        software: Sequence[str] = ("syslogsrc",),
    ) -> None:
        if max_data_size < 1:
            raise ValueError(f"max_data_size must be at least 1, not {max_data_size}")
        if max_window < 1:
            raise ValueError(f"max_window must be at least 1, not {max_window}")
        self.max_data_size = max_data_size
        self.max_window = max_window
        self.software = tuple(software)
        self.state = State.AWAIT_OPEN
        #: the TXNR the next frame must carry
        self.expected_txnr = 1
        #: frames completed so far (every command): progress for idle timers
        self.frames = 0
        #: the session's RELP version and commands, once opened
        self.version: int | None = None
        self.commands: tuple[str, ...] = ()
        self._buf = bytearray()
        self._header: tuple[int, bytes, int] | None = None  # a header read, its DATA to come
        # TXNRs that await an answer -> their command; dicts keep arrival order
        self._unanswered: dict[int, bytes] = {}
        self._close_txnr: int | None = None

    # Reading

    def receive_data(self, data: bytes) -> list[Event]:
        """The events the bytes ``data`` complete, in order. After a :class:`ProtocolError` (the
        last event), further bytes are ignored; bytes after ``close`` are a protocol error.
        Never raises for what the peer sends."""
        if self.state is State.CLOSED or not data:
            return []
        if self.state is State.CLOSING:
            # A client sends nothing after close (doc/relp.md, librelp's client waits for the
            # answer): bytes now are a broken or hostile client keeping the connection busy.
            return [self._error(None, "data after close")]
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos = 0
        while self.state is State.AWAIT_OPEN or self.state is State.OPEN:
            if self._header is None:
                match = _HEADER.match(buf, pos)
                if match is None:
                    if _HEADER_START.fullmatch(buf, pos) is None:
                        events.append(self._error(None, "invalid frame header"))
                    break  # an error, or a header cut short: wait for more
                txnr = int(match[1])
                command = match[2]
                datalen = int(match[3])
                pos = match.end()
                error = self._check_header(txnr, command, datalen, match[4])
                if error is not None:
                    events.append(self._error(txnr, error))
                    break
                self.expected_txnr = next_txnr(txnr)
                self._unanswered[txnr] = command
                self._header = (txnr, command, datalen)
                if datalen == 0:  # the octet after DATALEN was the trailer
                    self._header = None
                    events.append(self._complete(txnr, command, b""))
                    continue
            txnr, command, datalen = self._header
            end = pos + datalen
            if len(buf) <= end:
                break  # DATA or TRAILER still to come
            if buf[end] != LF:
                events.append(self._error(txnr, "no trailer (LF) after DATALEN octets"))
                break
            data_ = bytes(buf[pos:end])
            pos = end + 1
            self._header = None
            events.append(self._complete(txnr, command, data_))
        if self.state is State.CLOSING and pos < len(buf):
            events.append(self._error(None, "data after close"))
        if self.state is State.CLOSED or self.state is State.CLOSING:
            buf.clear()
        elif pos:
            del buf[:pos]
        return events

    def _check_header(self, txnr: int, command: bytes, datalen: int, after: bytes) -> str | None:
        """Why a frame with this header is refused, or None."""
        name = command.decode("ascii")
        if txnr == 0:
            return "txnr 0 is reserved for hints"
        if txnr in self._unanswered:
            return f"txnr {txnr} reused while unanswered"
        if txnr != self.expected_txnr:
            return f"txnr {txnr} out of sequence, expected {self.expected_txnr}"
        if command not in _COMMANDS:
            return f"command {name!r} not supported"
        if command == b"open" and self.state is State.OPEN:
            return "protocol error: connection already open"  # librelp's words
        if command == b"syslog" and self.state is State.AWAIT_OPEN:
            return "command syslog before open"
        if len(self._unanswered) >= self.max_window:
            return f"window overrun: more than {self.max_window} frames unanswered"
        limit = self.max_data_size if command == b"syslog" else MAX_CONTROL_DATA
        if datalen > limit:
            return f"{name} DATALEN {datalen} over the maximum of {limit}"
        if datalen == 0 and after != b"\n":
            return "DATALEN 0 and no trailer after it"
        if datalen > 0 and after != b" ":
            return f"DATALEN {datalen} and no DATA"
        return None

    def _complete(self, txnr: int, command: bytes, data: bytes) -> Event:
        self.frames += 1
        if command == b"syslog":
            return Syslog(txnr, data)
        if command == b"close":
            self.state = State.CLOSING
            self._close_txnr = txnr
            return Close(txnr)
        return self._open(txnr, data)

    def _open(self, txnr: int, data: bytes) -> Event:
        """librelp's selectOffers (src/copen.c) with ``syslog`` required, as imrelp sets it."""
        offers = parse_offers(data)
        version = RELP_VERSION
        offered: set[str] = set()
        for name, values in offers:
            if name == "relp_version":
                if not values or not values[0].isdigit() or not values[0].isascii():
                    return self._error(txnr, f"invalid offer relp_version={','.join(values)}")
                version = min(int(values[0]), RELP_VERSION)
            elif name == "commands":
                offered.update(values)
            # relp_software is informational; unknown offers are ignored (the client lives
            # without them), as librelp does
        if "syslog" not in offered:
            return self._error(txnr, "required command not supported by client")  # librelp's
        self.state = State.OPEN
        self.version = version
        self.commands = ("syslog",)
        return Open(txnr, offers, version, self.commands)

    def _error(self, txnr: int | None, reason: str) -> ProtocolError:
        self.state = State.CLOSED
        self._unanswered.clear()
        self._header = None
        answer = _rsp(txnr or 0, b"500 " + _text(reason)) + SERVERCLOSE
        return ProtocolError(txnr, reason, answer)

    # Answering

    @property
    def unanswered(self) -> tuple[int, ...]:
        """The TXNRs that await an answer, in the order they arrived."""
        return tuple(self._unanswered)

    def awaiting(self, txnr: int) -> bool:
        """True when ``txnr`` awaits an answer (False once the connection is closed)."""
        return txnr in self._unanswered

    def _answered(self, txnr: int, command: bytes) -> None:
        if self._unanswered.get(txnr) != command:
            raise LocalProtocolError(
                f"txnr {txnr} awaits no answer to {command.decode()}"
                f" (unanswered: {list(self._unanswered.items())[:5]})"
            )
        del self._unanswered[txnr]

    def answer_open(self, txnr: int) -> bytes:
        """The answer to the :class:`Open` of ``txnr``: 200 and our offers (the version and
        the commands of the session, and who we are)."""
        self._answered(txnr, b"open")
        offers = b"relp_version=%d\nrelp_software=%s\ncommands=%s" % (
            self.version,
            ",".join(self.software).encode("latin-1", "replace"),
            ",".join(self.commands).encode("ascii"),
        )
        return _rsp(txnr, b"200 OK\n" + offers)

    def answer_ok(self, txnr: int) -> bytes:
        """``200 OK`` for the :class:`Syslog` of ``txnr`` (its message is stored)."""
        self._answered(txnr, b"syslog")
        return _rsp(txnr, b"200 OK")

    def answer_error(self, txnr: int, text: str) -> bytes:
        """``500 text`` for the :class:`Syslog` of ``txnr`` (its message cannot be stored; the
        client drops it). ``text`` is cut to one line of 80 printable ASCII octets."""
        self._answered(txnr, b"syslog")
        return _rsp(txnr, b"500 " + _text(text))

    def answer_close(self, txnr: int) -> bytes:
        """The answer to the :class:`Close` of ``txnr`` (an empty ``rsp``, as librelp's), then
        the ``serverclose`` hint librelp's server sends as it ends the session. Every earlier
        frame must have been answered: the client takes a frame without an answer for lost."""
        others = [t for t in self._unanswered if t != txnr]
        if others:
            raise LocalProtocolError(f"close answered with frames unanswered: {others[:5]}")
        self._answered(txnr, b"close")
        self.state = State.CLOSED
        return _rsp(txnr, b"") + SERVERCLOSE

    def server_close(self) -> bytes:
        """The ``serverclose`` hint, to send before the server closes the connection (it stops).
        The frames still unanswered get no answer: the client sends them again elsewhere."""
        self.state = State.CLOSED
        self._unanswered.clear()
        self._header = None
        self._buf.clear()
        return SERVERCLOSE

"""RELP over a byte stream (TCP, TLS): rsyslog's ``omrelp`` to a sink, every message answered.

One :class:`RelpProtocol` per connection feeds the bytes it reads to a
:class:`~syslogsrc.relp.RelpServerConnection` (the sans-IO core), posts the messages of each read
to the listener's :class:`~syslogsrc.interfaces.IMessageSink` in one call, and writes the answers
the core produces.

When a message is answered:

* with an :class:`~syslogsrc.interfaces.IAcknowledgingSink`, messages are posted with
  ``post_tracked`` and each one is answered ``200 OK`` when the sink reports it stored
  (``origin.acknowledge(tokens, True)``), ``500`` when it reports it cannot be
  (``stored=False``: librelp's client then drops it rather than send it again), in the order the
  sink reports them, which need not be the order they arrived (librelp matches answers by TXNR);
* with any other sink, when the sink takes it (``post`` counted it): that is as far as such a
  sink can say.

A message read and not answered when the connection ends (an error, the listener stopping, a
paused sink) is not lost: the client sends it again on its next connection. So frames that wait
in a closed connection are dropped, not counted in ``stats.dropped`` and not handed to another
instance (which could not answer them).

Acknowledgement tokens are :class:`RelpToken` values naming the connection by a process-wide
number, not the protocol object: every factory's :meth:`RelpFactory.acknowledge` looks the number
up in one process-wide table and hands the TXNRs to whoever holds the connection now. A token
whose connection is gone, or whose TXNR no longer awaits an answer, is ignored and counted
(``factory.late_acknowledgements``): nothing is written to a closed transport.

A reload (:mod:`syslogsrc.handover`) hands a plain ``relp:`` connection over whole:
:meth:`RelpProtocol.hand_over` gives its :class:`RelpHandover` (the core with its unanswered
TXNRs and partial frame, the frames read and not posted with their TXNRs, the client's close if
it came), acknowledgements arriving meanwhile are kept in it, and :meth:`RelpProtocol.adopt` in
the next instance goes on under the same connection number: the sink's acknowledgements of
messages posted by the old instance answer the client on the new one.

Flow control, two ways:

* the sink pauses us (syslog-ng's ``suspend()``): nothing more is posted, the frames read wait
  here in order, reading stops; the client stops too once its window is full of unanswered
  frames. The frames go through a :class:`~syslogsrc.producers.Backlog`, the producer mechanism
  of every protocol (with an acknowledging sink, as batches with tokens, posted with
  ``post_tracked``; else as batches that answer their frames as the sink takes them);
* the peer does not read its answers: we are a streaming producer of answers to the transport,
  which pauses us when its write buffer is full; reading stops until it drains, so a client
  that never reads cannot make us buffer answers without bound (the idle timer of the
  connection tracker goes on meanwhile).

Counters: ``stats.received`` per syslog frame, ``stats.bytes``; a protocol error counts one
``stats.malformed`` (the frame at fault) and one ``stats.refused`` (the connection closed for
it), and is logged, rate limited.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc.interfaces import IAcknowledgingSink, IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.producers import Backlog, Batch
from syslogsrc.protocols._ratelimit import RateLimitedLog
from syslogsrc.protocols.stream import origin_of
from syslogsrc.relp import (
    Close,
    LocalProtocolError,
    Open,
    ProtocolError,
    RelpServerConnection,
    State,
    Syslog,
)

__all__ = ["RelpFactory", "RelpHandover", "RelpProtocol", "RelpToken"]

#: Connection numbers, unique in the process (across listeners and source instances), so a
#: token can name its connection after a reload hands the connection to a new factory.
_connection_numbers = itertools.count(1)
#: Who holds each open connection now: its protocol, or its RelpHandover between two
#: instances. Process-wide, because an acknowledgement may come through an older instance's
#: origin after a reload. Only single dict operations touch it (each source's reactor thread
#: touches its own connections' entries).
_routes: dict[int, RelpProtocol | RelpHandover] = {}


@attrs.frozen(slots=True)
class RelpToken:
    """What the sink gives back for one message: the connection (by number) and the TXNR."""

    connection: int
    txnr: int


@attrs.define(eq=False)
class RelpHandover:
    """A RELP connection between two instances (a reload): everything its answers depend on.
    While no protocol holds it, acknowledgements for it are kept here, in order, and replayed
    by the protocol that adopts it."""

    number: int  #: the connection's number, which the tokens of its messages carry
    connection: RelpServerConnection  #: the core: TXNRs unanswered, the frame begun
    pending: list[tuple[int, bytes]]  #: frames read and not posted: (txnr, message)
    close_txnr: int | None  #: the client's close, not answered yet
    acknowledgements: list[tuple[list[int], bool]] = attrs.Factory(list)

    @property
    def awaiting_acknowledgement(self) -> int:
        """Messages posted and not answered yet: the next instance answers them when the sink
        acknowledges them (not counting the frames that travel unposted, nor the close)."""
        unposted = {txnr for txnr, _ in self.pending}
        return sum(
            1
            for txnr in self.connection.unanswered
            if txnr not in unposted and txnr != self.close_txnr
        )

    def acknowledged(self, txnrs: Sequence[int], stored: bool) -> None:
        self.acknowledgements.append((list(txnrs), stored))


@implementer(IPushProducer)
class _AnswerFlow:
    """Registered with the transport as the streaming producer of our answers: the transport
    pauses it when its write buffer is full (the peer does not read) and resumes it when the
    buffer drains. Reading stops meanwhile."""

    def __init__(self, protocol: RelpProtocol) -> None:
        self.protocol = protocol

    def pauseProducing(self) -> None:
        self.protocol._set_write_blocked(True)

    def resumeProducing(self) -> None:
        self.protocol._set_write_blocked(False)

    def stopProducing(self) -> None:
        pass  # the connection is closing: connectionLost follows


class _AnswerWhenTaken(Batch):
    """Frames of one read for a sink that does not acknowledge: each is answered ``200 OK`` as
    soon as the sink takes it (``post`` counted it), which is as far as such a sink can say.
    ``txnrs`` runs parallel to ``messages`` and shrinks with it."""

    __slots__ = ("protocol", "txnrs")

    def __init__(
        self, protocol: RelpProtocol, txnrs: list[int], messages: list[bytes], origin: Origin
    ) -> None:
        super().__init__(messages, origin)
        self.protocol = protocol
        self.txnrs = txnrs

    def taken(self, count: int) -> None:
        answered, self.txnrs = self.txnrs[:count], self.txnrs[count:]
        self.protocol.acknowledged(answered, True)

    def join(self, then: Batch) -> bool:
        """The reads of one connection that waited together go in one call: each frame keeps
        its TXNR, and nothing here waits to hear of its end."""
        if not isinstance(then, _AnswerWhenTaken) or then.protocol is not self.protocol:
            return False
        self.messages = [*self.messages, *then.messages]
        self.txnrs = [*self.txnrs, *then.txnrs]
        return True


def _frames_of(batch: Batch) -> list[tuple[int, bytes]]:
    """The (txnr, message) of each frame of one of our batches that waits."""
    if isinstance(batch, _AnswerWhenTaken):
        txnrs = batch.txnrs
    else:
        txnrs = [token.txnr for token in batch.tokens or ()]
    return list(zip(txnrs, batch.messages, strict=True))  # type: ignore[arg-type]


@implementer(IPushProducer)
class RelpProtocol(Protocol):
    """One RELP connection: frames to the sink, answers to the peer, paused by either."""

    factory: RelpFactory

    def __init__(self, factory: RelpFactory) -> None:
        self.factory = factory
        self.connection = RelpServerConnection(
            max_data_size=factory.options.max_message_size,
            max_window=factory.max_window,
            software=factory.software,
        )
        #: this connection's number, which its tokens carry
        self.number = next(_connection_numbers)
        #: the frames read and not taken by the sink, waiting for it to resume us, in order;
        #: its ``paused`` and ``stopped`` are this producer's. The client sends again what it
        #: was not answered for, so what it holds when the connection ends is not dropped.
        self.backlog = Backlog(
            factory.sink, merge=True, on_error=self._sink_raised, sender_resends=True
        )
        self.write_blocked = False  #: the transport's write buffer is full
        self._reading_paused = False
        self._connected = False
        self._registered = False
        self._finished = False  # our last bytes are written (an error, a close): write no more
        self._close_txnr: int | None = None  # the client's close, answered once all else is
        self._origin: Origin | None = None
        self._abort_call: Any = None

    @property
    def pending(self) -> list[tuple[int, bytes]]:
        """The syslog frames read and not posted, in order: (txnr, message) (a copy)."""
        return [frame for batch in self.backlog.batches for frame in _frames_of(batch)]

    @property
    def progress(self) -> int:
        """Frames completed so far: the connection tracker's idle timer restarts when this
        moves, not on every byte."""
        return self.connection.frames

    # IProtocol

    def connectionMade(self) -> None:
        self._connected = True
        self.factory.route(self.number, self)
        self.transport.registerProducer(_AnswerFlow(self), True)  # type: ignore[union-attr]
        self._registered = True
        self.factory.sink.register_producer(self)  # pauses us at once if the sink is paused

    def dataReceived(self, data: bytes) -> None:
        stats = self.factory.stats
        stats.bytes += len(data)
        if self._finished:
            return
        origin = self._origin
        if origin is None:
            # Here, not at connectionMade: behind haproxy: the peer is known once the PROXY
            # header has been read, before our data.
            factory = self.factory
            origin = factory.answered_through(
                origin_of(self.transport, factory.transport_name, stats, factory.format)
            )
            self._origin = origin
        events = self.connection.receive_data(data)
        if events and isinstance(events[-1], ProtocolError):
            # Nothing of this read is posted or answered: the connection ends; the client
            # sends its unanswered frames again on the next one.
            self._protocol_error(events[-1])
            return
        frames: list[tuple[int, bytes]] = []
        out: list[bytes] = []
        for event in events:
            if isinstance(event, Syslog):
                frames.append((event.txnr, event.message))
            elif isinstance(event, Open):
                out.append(self.connection.answer_open(event.txnr))
            elif isinstance(event, Close):
                self._close_txnr = event.txnr
        if out:
            self._write(out)
        if frames:
            stats.received += len(frames)
            self._post(frames, origin)
        self._maybe_answer_close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._connected = False
        self._finished = True
        self._cancel_abort()
        self.factory.forget(self.number, self)
        # Frames read and not posted are not lost: without an answer, the client sends them
        # again on its next connection; posting them now would store them twice.
        self.backlog.stop()
        self._unregister()

    # Answers

    def _write(self, chunks: list[bytes]) -> None:
        if self._connected and not self._finished:
            self.transport.writeSequence(chunks)  # type: ignore[union-attr]

    def acknowledged(self, txnrs: Sequence[int], stored: bool) -> None:
        """The sink stored (or cannot store) the messages of ``txnrs``: answer them. TXNRs
        that await no answer (the connection closed, or answered already) are ignored and
        counted in ``factory.late_acknowledgements``."""
        connection = self.connection
        out = []
        for txnr in txnrs:
            if self._finished or not connection.awaiting(txnr):
                self.factory.late_acknowledgements += 1
                continue
            if stored:
                out.append(connection.answer_ok(txnr))
            else:
                out.append(connection.answer_error(txnr, "message not stored"))
        if out:
            self._write(out)
            self._maybe_answer_close()

    def _maybe_answer_close(self) -> None:
        """The client's close is answered once every frame before it is (librelp's client
        takes a frame without an answer for lost), then the connection is closed."""
        txnr = self._close_txnr
        if txnr is None or self._finished or self.connection.unanswered != (txnr,):
            return
        self._close_txnr = None
        self._finish([self.connection.answer_close(txnr)])

    def _protocol_error(self, event: ProtocolError) -> None:
        """Answer 500, send the serverclose hint and close; count and log it."""
        factory = self.factory
        factory.stats.malformed += 1
        factory.stats.refused += 1
        factory.protocol_errors(peer=self.transport.getPeer(), reason=event.reason)  # type: ignore[union-attr]
        self._finish([event.answer])

    def server_close(self) -> None:
        """The server stops (or drops this client): send the ``serverclose`` hint and close,
        as imrelp does. Frames read and not answered are sent again by the client."""
        if self._finished or not self._connected:
            return
        self._finish([self.connection.server_close()])

    #: called by the connection tracker before it closes the connection (the listener stops)
    before_close = server_close

    def _finish(self, chunks: list[bytes]) -> None:
        """Write our last bytes and close; abort if the peer has not read them in time (it may
        never read: its answers fill our buffer). Nothing more is posted: the frames waiting
        will not be answered, and the client sends them again."""
        self._write(chunks)
        self._finished = True
        self.backlog.stop()
        if self.connection.state is not State.CLOSED:
            self.connection.server_close()
        if self._connected:
            self.transport.loseConnection()  # type: ignore[union-attr]
            timeout = self.factory.close_timeout
            if timeout > 0 and self._abort_call is None:
                self._abort_call = self.factory.reactor.callLater(timeout, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        if self._connected:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel_abort(self) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None

    # A reload: the connection goes on in the next source instance (syslogsrc.handover)

    def hand_over(self) -> tuple[RelpHandover, list[bytes]]:
        """Give up the connection to another instance: return its :class:`RelpHandover` and no
        plain frames (the frames read and not posted travel inside it, with the TXNRs they
        must be answered with). Nothing more is read, posted, written or closed here: the
        socket is the caller's (the tracker detaches it)."""
        pending = [frame for batch in self.backlog.take() for frame in _frames_of(batch)]
        state = RelpHandover(self.number, self.connection, pending, self._close_txnr)
        self.backlog.stop()  # nothing waits in it now
        self._finished = True
        self._connected = False
        self._cancel_abort()
        _routes[self.number] = state  # acknowledgements wait in it for the next protocol
        self._unregister()
        return state, []

    def adopt(self, state: RelpHandover, pending: Sequence[bytes], origin: Origin) -> None:
        """Go on where another instance's protocol stopped (its :meth:`hand_over`): its core,
        its connection number, its frames first, the acknowledgements that came meanwhile,
        its origin (with our listener's stats and our factory's acknowledge)."""
        if pending:  # pragma: no cover - hand_over gives none
            raise ValueError("a RELP connection hands its frames over inside its RelpHandover")
        self.factory.forget(self.number, self)
        self.number = state.number
        self.connection = state.connection
        self._close_txnr = state.close_txnr
        self._origin = self.factory.answered_through(origin)
        self.factory.route(self.number, self)
        for txnrs, stored in state.acknowledgements:
            self.acknowledged(txnrs, stored)
        state.acknowledgements.clear()
        if state.pending:
            self.backlog.put_back([self._batch(state.pending, self._origin)])
        self._maybe_answer_close()

    # IPushProducer, called by the sink

    def pauseProducing(self) -> None:
        if self.backlog.pause():
            self._update_reading()

    def resumeProducing(self) -> None:
        if self.backlog.resume():  # False: not paused, stopped, or paused again by the drain
            self._update_reading()

    def stopProducing(self) -> None:
        """The sink is gone for good: the frames waiting here are dropped (the client sends
        them again, so they are not counted) and the connection closed with the
        ``serverclose`` hint. The sink forgets its producers itself; we do not call it."""
        self._registered = False
        self.server_close()
        self.backlog.stop()  # when not connected any more, server_close has nothing to close

    def _set_write_blocked(self, blocked: bool) -> None:
        self.write_blocked = blocked
        self._update_reading()

    def _update_reading(self) -> None:
        """Read while neither the sink (paused) nor the peer (write_blocked) holds us."""
        hold = self.backlog.paused or self.write_blocked
        if hold == self._reading_paused or not self._connected or self._finished:
            return
        self._reading_paused = hold
        if hold:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        else:
            self.transport.resumeProducing()  # type: ignore[union-attr]

    # Posting

    def _post(self, frames: list[tuple[int, bytes]], origin: Origin) -> None:
        """Frames just read: posted now, after those already waiting."""
        self.backlog.add(self._batch(frames, origin))

    def _batch(self, frames: Sequence[tuple[int, bytes]], origin: Origin) -> Batch:
        """``frames`` as one batch: with tokens for an acknowledging sink, else one that
        answers its frames as the sink takes them."""
        messages = [message for _, message in frames]
        if self.factory.acknowledging:
            number = self.number
            return Batch(messages, origin, [RelpToken(number, txnr) for txnr, _ in frames])
        return _AnswerWhenTaken(self, [txnr for txnr, _ in frames], messages, origin)

    def _sink_raised(self, failure: Failure, batch: Batch) -> None:
        """The sink raised: it has not said what it took, so nothing of the batch is answered;
        the connection is closed and the client sends the batch (and what waits) again."""
        self.factory.sink_errors(failure, peer=batch.origin.peer_host)
        self.server_close()

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self.factory.sink.unregister_producer(self)


class RelpFactory(Factory):
    """Builds one :class:`RelpProtocol` per connection of a RELP listener (``relp:``, and
    ``relps:`` over TLS), with the constructor of
    :class:`~syslogsrc.protocols.stream.SyslogStreamFactory`.

    ``transport_name`` is what each :class:`~syslogsrc.interfaces.Origin` says ("relp",
    "relps"). ``format``, when given, is the format the sink parses this listener's messages
    with; None leaves it to the sink. ``max_window`` is the most frames a client may leave
    unanswered (default: the ``relp-window`` option, ``options.relp_window``; omrelp's
    ``windowSize`` must not be larger). ``close_timeout`` bounds how long a connection we
    close waits for the peer to read our last answers before it is aborted (0: no bound).
    """

    protocol = RelpProtocol
    noisy = False

    def __init__(
        self,
        reactor: IReactorTime,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        transport_name: str = "relp",
        *,
        format: str | None = None,
        max_window: int | None = None,
        close_timeout: float = 30.0,
    ) -> None:
        from syslogsrc import __version__

        self.reactor = reactor
        self.sink = sink
        self.options = options
        self.stats = stats
        self.transport_name = transport_name
        self.format = format
        self.max_window = options.relp_window if max_window is None else max_window
        self.close_timeout = close_timeout
        self.software = ("syslogsrc", __version__)
        #: the sink says when each message is stored (answers wait for it)
        self.acknowledging = IAcknowledgingSink.providedBy(sink)
        #: acknowledgements for a connection gone or a TXNR answered already (ignored)
        self.late_acknowledgements = 0
        self.protocol_errors = RateLimitedLog(
            reactor,
            "{listener}: closed {count} RELP connection(s){span} for protocol errors;"
            " last from {peer}: {reason}",
            listener=stats.name,
        )
        self.sink_errors = RateLimitedLog(
            reactor,
            "{listener}: the sink raised {count} time(s){span}; the RELP connection was"
            " closed unanswered, the client sends its messages again (last from {peer})",
            level=LogLevel.error,
            listener=stats.name,
        )

    def buildProtocol(self, addr: IAddress) -> RelpProtocol:
        return self.protocol(self)

    def answered_through(self, origin: Origin) -> Origin:
        """``origin`` with this factory's :meth:`acknowledge` when the sink acknowledges (the
        sink answers through it), else with none (answers follow ``post``)."""
        acknowledge = self.acknowledge if self.acknowledging else None
        if origin.acknowledge == acknowledge:
            return origin
        return attrs.evolve(origin, acknowledge=acknowledge)

    def route(self, number: int, protocol: RelpProtocol) -> None:
        """Send the acknowledgements of connection ``number`` to ``protocol`` (its own, or the
        one that took it over), whichever factory they come through."""
        _routes[number] = protocol

    def forget(self, number: int, protocol: RelpProtocol) -> None:
        """Connection ``number`` is gone from ``protocol``: unless another holds it now, its
        acknowledgements are ignored from now on."""
        if _routes.get(number) is protocol:
            del _routes[number]

    def acknowledge(self, tokens: Sequence[Any], stored: bool) -> None:
        """``Origin.acknowledge`` of every connection: answer each token's frame on its
        connection, if that connection is still here and still awaits the answer."""
        by_connection: dict[int, list[int]] = {}
        for token in tokens:
            by_connection.setdefault(token.connection, []).append(token.txnr)
        for number, txnrs in by_connection.items():
            protocol = _routes.get(number)
            if protocol is None:
                self.late_acknowledgements += len(txnrs)
                continue
            try:
                protocol.acknowledged(txnrs, stored)
            except LocalProtocolError:  # pragma: no cover - guarded by awaiting()
                self.late_acknowledgements += len(txnrs)

    @property
    def connections(self) -> list[RelpProtocol]:
        """The open connections of this factory."""
        return [
            p for p in list(_routes.values()) if isinstance(p, RelpProtocol) and p.factory is self
        ]

    def flush_logs(self) -> None:
        self.protocol_errors.flush()
        self.sink_errors.flush()

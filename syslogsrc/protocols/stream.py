"""Syslog over a byte stream (TCP, TLS, unix stream sockets): RFC 6587 frames to a sink.

One :class:`SyslogStreamProtocol` per connection cuts the bytes into frames with a
:class:`~syslogsrc.framing.FrameDecoder` and hands the frames of each read to the listener's
:class:`~syslogsrc.interfaces.IMessageSink` in one call (one batch), with the connection's
:class:`~syslogsrc.interfaces.Origin`, computed once.

With ``auto`` framing, a connection to a plain (not TLS) listener that starts with a TLS
handshake record (0x16 0x03, a ClientHello: a TLS client pointed at the wrong port) is closed at
once, counted in ``stats.refused`` and logged; no syslog message starts with those bytes, and the
binary hello would otherwise be posted as a few lines of junk.

Flow control is the heart of it. The protocol is an ``IPushProducer`` registered with the sink,
and posts through a :class:`~syslogsrc.producers.Backlog`. When the sink pauses it (syslog-ng's
``suspend()``, which can arrive synchronously from inside ``sink.post``), the protocol stops
reading from its transport and posts nothing more: the frames the sink did not take wait, in
order, and are posted first when the sink resumes it (the reads that waited together, in one
call). Nothing read from the network is lost, and nothing is posted while paused.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc.framing import FrameDecoder
from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.producers import Backlog, Batch
from syslogsrc.protocols._ratelimit import RateLimitedLog, sink_error_log
from syslogsrc.protocols._sniff import looks_like_tls

__all__ = ["SyslogStreamFactory", "SyslogStreamProtocol", "origin_of"]

_log = Logger(namespace="syslogsrc.listen")


def origin_of(
    transport: object, name: str, stats: ListenerStats, format: str | None = None
) -> Origin:
    """The :class:`~syslogsrc.interfaces.Origin` of a connection: its peer's IP and port
    (those of the PROXY header when behind ``haproxy:``), its local port; no host or port for
    unix sockets; the listener's ``format``."""
    peer = transport.getPeer()  # type: ignore[attr-defined]
    try:
        host = transport.getHost()  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # a TCP transport forgets its socket once closed
        host = None
    return Origin(
        transport=name,
        stats=stats,
        peer_host=getattr(peer, "host", None),
        peer_port=getattr(peer, "port", None),
        local_port=getattr(host, "port", None),
        format=format,
    )


@implementer(IPushProducer)
class SyslogStreamProtocol(Protocol):
    """One stream connection: bytes in, frames to the sink, paused and resumed by the sink."""

    factory: SyslogStreamFactory

    def __init__(self, factory: SyslogStreamFactory) -> None:
        self.factory = factory
        self.decoder = factory.decoder_factory()
        #: the frames read and not taken by the sink, waiting for it to resume us, in order;
        #: its ``paused`` and ``stopped`` are this producer's
        self.backlog = Backlog(factory.sink, merge=True, on_error=factory.log_sink_error)
        self._connected = False
        self._refused = False  # closed for speaking TLS to a plain port
        self._registered = False
        self._origin: Origin | None = None
        self._truncated = 0  # decoder counters already added to the listener's stats
        self._invalid = 0
        self._oversize = 0

    @property
    def pending(self) -> list[bytes]:
        """The frames read and not posted, in order (a copy)."""
        return [frame for batch in self.backlog.batches for frame in batch.messages]  # type: ignore[misc]

    @property
    def progress(self) -> int:
        """Frames decoded so far: the connection tracker's idle timer restarts when this moves,
        not on every byte (a slowloris client completes no frame)."""
        return self.decoder.frames

    # IProtocol

    def connectionMade(self) -> None:
        self._connected = True
        self._registered = True
        self.factory.sink.register_producer(self)  # pauses us at once if the sink is paused

    def dataReceived(self, data: bytes) -> None:
        stats = self.factory.stats
        stats.bytes += len(data)
        if self._refused:
            return
        if self._origin is None:
            # Now, not in _post: the first frame may be posted only by connectionLost, when
            # the socket is gone (and getHost() with it). Not at connectionMade either: behind
            # haproxy: the peer is known once the PROXY header has been read, before our data.
            if looks_like_tls(data) and self.factory.refuse_tls:
                self._refuse_tls()
                return
            self._origin = origin_of(
                self.transport, self.factory.transport_name, stats, self.factory.format
            )
        decoder = self.decoder
        frames = decoder.feed(data)
        if decoder.truncated != self._truncated or decoder.invalid != self._invalid:
            self._count_decoder_events()
        if frames:
            stats.received += len(frames)
            self._take(frames)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._connected = False
        frames = self.decoder.finish()  # the frame cut short by the end of the stream
        self._count_decoder_events()
        if frames:
            self.factory.stats.received += len(frames)
            self._take(frames)
        # With frames still pending (paused), stay registered: resumeProducing posts them.
        if not self.backlog:
            self._unregister()

    # IPushProducer, called by the sink

    def pauseProducing(self) -> None:
        if self.backlog.pause() and self._connected:
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        if not self.backlog.resume():  # not paused, stopped, or paused again by the drain
            return
        if self._connected:
            self.transport.resumeProducing()  # type: ignore[union-attr]
        elif not self.backlog:
            self._unregister()

    def stopProducing(self) -> None:
        """The sink is gone for good: the frames waiting here are dropped (and counted), and
        the connection is closed. The sink forgets its producers itself; we do not call it."""
        if not self.backlog.stop():
            return
        self._registered = False
        if self._connected:
            self.transport.loseConnection()  # type: ignore[union-attr]

    # A reload: the connection goes on in the next source instance (syslogsrc.handover)

    def hand_over(self) -> tuple[FrameDecoder, list[bytes]]:
        """Give up the connection to another instance: return its decoder (with the frame it
        has begun) and the frames read and not posted, in order. Nothing more is read, posted
        or closed here: the socket is the caller's (the tracker detaches it)."""
        decoder, pending = self.decoder, self.take_pending()
        self._count_decoder_events()
        self.backlog.stop()  # nothing waits now: nothing is counted as dropped
        self._connected = False
        self._unregister()
        return decoder, pending

    def take_pending(self) -> list[bytes]:
        """The frames read and not posted, which are the caller's now (a connection that
        cannot be handed over: they go to the next instance, the connection is closed)."""
        return [frame for batch in self.backlog.take() for frame in batch.messages]  # type: ignore[misc]

    def adopt(self, decoder: FrameDecoder, pending: list[bytes], origin: Origin) -> None:
        """Go on where another instance's protocol stopped (its :meth:`hand_over`): its
        decoder, its frames first, its origin (with our listener's stats)."""
        self.decoder = decoder
        self._truncated = decoder.truncated
        self._invalid = decoder.invalid
        self._oversize = decoder.oversize
        self._origin = origin
        if pending:
            self.backlog.put_back([Batch(list(pending), origin)])

    # Posting

    def _take(self, frames: list[bytes]) -> None:
        """Frames just read: posted now, after those already waiting (dropped, and counted,
        once the sink stopped us)."""
        origin = self._origin
        if origin is None:  # pragma: no cover - set by the first dataReceived
            origin = self._origin = origin_of(
                self.transport, self.factory.transport_name, self.factory.stats, self.factory.format
            )
        self.backlog.offer(frames, origin)

    def _refuse_tls(self) -> None:
        self._refused = True
        self.factory.stats.refused += 1
        self.factory.tls_on_plain(peer=self.transport.getPeer())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _count_decoder_events(self) -> None:
        decoder = self.decoder
        stats = self.factory.stats
        # An octet count over max-message-size is in the decoder's truncated and oversize from
        # the moment its header is read: counted in the listener's truncated now, and logged
        # (once, with the declared length) by its own log rather than by the truncation one.
        oversize = decoder.oversize - self._oversize
        if oversize:
            self._oversize = decoder.oversize
            peer = self.transport.getPeer() if self.transport else None  # type: ignore[attr-defined]
            for _ in range(oversize):
                self.factory.oversize_counts(peer=peer, length=decoder.oversize_length)
        truncated = decoder.truncated - self._truncated
        if truncated:
            stats.truncated += truncated
            self._truncated = decoder.truncated
            peer = self.transport.getPeer() if self.transport else None  # type: ignore[attr-defined]
            for _ in range(truncated - oversize):
                self.factory.truncations(peer=peer)
        invalid = decoder.invalid - self._invalid
        if invalid:
            self._invalid = decoder.invalid
            stats.malformed += invalid
            error = decoder.error
            self.factory.framing_errors(
                peer=self.transport.getPeer() if self.transport else None,  # type: ignore[attr-defined]
                reason=getattr(error, "reason", "?"),
                offset=getattr(error, "offset", "?"),
                data=getattr(error, "data", b""),
            )
            if getattr(decoder, "closed", False) and self._connected:
                self.transport.loseConnection()  # type: ignore[union-attr]

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self.factory.sink.unregister_producer(self)


class SyslogStreamFactory(Factory):
    """Builds one :class:`SyslogStreamProtocol` per connection of a stream listener.

    ``transport_name`` is what each :class:`~syslogsrc.interfaces.Origin` says ("tcp", "tls",
    "unix").
    ``decoder_factory`` makes each connection's decoder; by default a
    :class:`~syslogsrc.framing.FrameDecoder` with the framing and the maximum message size of
    ``options`` and the decoder's own invalid-header policy (resync).
    ``refuse_tls`` (default: with ``auto`` framing, unless the transport is "tls") closes
    connections that start with a TLS handshake record.
    ``format``, when given, is the format the sink parses this listener's messages with (the
    spec's ``format=``); None leaves it to the sink.
    """

    protocol = SyslogStreamProtocol
    noisy = False

    def __init__(
        self,
        reactor: IReactorTime,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        transport_name: str = "tcp",
        *,
        decoder_factory: Callable[[], FrameDecoder] | None = None,
        refuse_tls: bool | None = None,
        format: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.sink = sink
        self.options = options
        self.stats = stats
        self.transport_name = transport_name
        #: the format this listener's messages are parsed with; None: the sink's own
        self.format = format
        if decoder_factory is None:

            def decoder_factory() -> FrameDecoder:
                return FrameDecoder(framing=options.framing, max_size=options.max_message_size)

        self.decoder_factory = decoder_factory
        if refuse_tls is None:
            refuse_tls = transport_name != "tls" and options.framing == "auto"
        self.refuse_tls = refuse_tls
        self.tls_on_plain = RateLimitedLog(
            reactor,
            "{listener}: refused {count} connection(s){span} that began a TLS"
            " handshake on a plain port (a TLS client? TLS listens with ssl:); last from {peer}",
            listener=stats.name,
        )
        self.truncations = RateLimitedLog(
            reactor,
            "{listener}: truncated {count} message(s){span} to"
            " max-message-size({max_size}); the rest of each was dropped; last from {peer}",
            listener=stats.name,
            max_size=options.max_message_size,
        )
        self.oversize_counts = RateLimitedLog(
            reactor,
            "{listener}: {count} octet count(s) over max-message-size({max_size}){span};"
            " each message is cut to that size and the rest of its count skipped,"
            " whatever the sender sends meanwhile; last from {peer}: MSG-LEN {length}",
            listener=stats.name,
            max_size=options.max_message_size,
        )
        self.framing_errors = RateLimitedLog(
            reactor,
            "{listener}: {count} invalid octet count(s){span}; last from"
            " {peer} at offset {offset}: {reason} ({data!r})",
            listener=stats.name,
        )
        self.sink_errors = sink_error_log(reactor, stats.name)

    def log_sink_error(self, failure: Failure, batch: Batch) -> None:
        """A connection's sink raised (its :class:`~syslogsrc.producers.Backlog` counted the
        batch as dropped)."""
        self.sink_errors(failure, peer=batch.origin.peer_host)

    def buildProtocol(self, addr: IAddress) -> SyslogStreamProtocol:
        return self.protocol(self)

    def flush_logs(self) -> None:
        self.tls_on_plain.flush()
        self.truncations.flush()
        self.oversize_counts.flush()
        self.framing_errors.flush()
        self.sink_errors.flush()

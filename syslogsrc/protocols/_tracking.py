"""Connection bookkeeping shared by every stream-like listener (tcp, tls, unix, http, https).

:class:`ConnectionTracker` wraps a listener's protocol factory, the way
:class:`twisted.protocols.policies.WrappingFactory` does. It sits outside TLS, so a refused
connection costs no handshake; only ``haproxy:``'s PROXY header reader is further out.
It keeps ``stats.open_connections``, refuses connections beyond ``max-connections``, closes
connections idle for ``idle-timeout`` seconds and closes them all when the listener stops.

Idle means *no progress*, not *no bytes*: a connection that trickles bytes without completing a
message (a slowloris client, an HTTP upload at a byte a second) is as idle as a silent one. The
protocol inside says what a complete unit is through a ``progress`` counter (frames decoded,
HTTP requests received); besides that, every :data:`PROGRESS_BYTES` received count as progress,
so a large message or body arriving at an honest pace is never cut.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from syslogsrc.interfaces import ListenerStats
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols._ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from syslogsrc.access import ListenerAccess

__all__ = [
    "CLOSE_GRACE",
    "FIRST_MESSAGE_GRACE",
    "PROGRESS_BYTES",
    "ConnectionTracker",
    "TrackedConnection",
]

#: Seconds a closing connection gets to say goodbye (flush, TLS close_notify) before it is aborted.
CLOSE_GRACE = 2.0
#: Seconds a new connection has to complete its first message before, at max-connections, it may
#: be closed to make room for a newcomer (the longest-open such connection goes first).
FIRST_MESSAGE_GRACE = 2.0
#: Bytes received that count as progress for the idle timeout even when they complete nothing:
#: with idle-timeout(60) a sender needs about 1 KiB/s to keep a message in flight.
PROGRESS_BYTES = 65536

#: Smallest slice of held bytes fed to a rate-limited connection's protocol at once.
_MIN_SLICE = 64
#: Bytes per frame assumed before a connection's first frame: small, so that the first slice
#: of a rate-limited connection does not pass many more frames than the sender has tokens.
_FIRST_FRAME_GUESS = 32

_log = Logger(namespace="syslogsrc.listen")


def _innermost(protocol: Any) -> Any:
    """The protocol at the bottom of wrappers (TLS, handshake watch, twisted.web's generic
    HTTP channel)."""
    while True:
        if isinstance(protocol, ProtocolWrapper):
            protocol = protocol.wrappedProtocol
        elif hasattr(protocol, "_channel"):  # twisted.web.http._GenericHTTPChannelProtocol
            protocol = protocol._channel
        else:
            return protocol


class TrackedConnection(ProtocolWrapper):
    """One connection as the tracker sees it: idle timer, graceful close with an abort deadline.

    The protocol inside reaches the real transport through this wrapper, so its
    ``pauseProducing``/``resumeProducing`` pass here: time spent paused by flow control is not
    idle time.

    The idle timer restarts when the innermost protocol's ``progress`` counter moves (a
    complete frame or request) or after :data:`PROGRESS_BYTES` received since the last restart;
    bytes alone do not restart it. An inner protocol without ``progress`` restarts it on every
    read.

    With a listener's allow list and rate limit (``factory.access``): behind ``haproxy:`` the
    sender's address is known only once the PROXY header is read, so the allow list is applied
    at the first bytes after it (before any of them reach TLS or the protocol); and after each
    read, the frames it decoded (``progress``) are charged to the sender's token bucket. A
    sender in debt has its connection paused (reading stops; TCP pushes back) until the debt
    is repaid. That pause and the inner protocol's (flow control) are two reasons, kept apart:
    reading resumes only when neither holds.
    """

    factory: ConnectionTracker

    def __init__(self, factory: ConnectionTracker, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self._idle_call: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._paused = False  # paused by the protocol inside (flow control)
        self._throttled = False  # paused by the rate limit
        self._throttle_call: IDelayedCall | None = None
        self._admitted = False  # the allow list has been applied, the sender is known
        self._denied = False
        self._sender: str | None = None  # the sender's IP (rate limit key)
        self._held = b""  # bytes read, not yet given to the protocol inside (rate limit)
        self._in_bytes = 0  # bytes and frames given to it: the bytes per frame of slices
        self._in_frames = 0
        self._progress: int | None = None  # the inner protocol's progress at the last restart
        self._unproductive = 0  # bytes received since the last restart
        self.open = False  #: between makeConnection and connectionLost
        self.closing = False  #: close() was called
        self.quiesced = False  #: reading stopped for good (the source is stopping)
        self.opened_at = 0.0  #: when the connection was made (the tracker's clock)
        self.bytes_in = 0  #: bytes received

    def completed_nothing(self) -> bool:
        """True while the protocol inside has completed no message (no frame, no request)
        and fewer than :data:`PROGRESS_BYTES` have arrived."""
        progress = getattr(_innermost(self.wrappedProtocol), "progress", None)
        return progress == 0 and self.bytes_in < PROGRESS_BYTES

    def makeConnection(self, transport: Any) -> None:
        # The timer starts before the inner protocol runs: it may pause us at once (sink paused).
        self.open = True
        self.opened_at = self.factory.reactor.seconds()
        self._start_idle_timer()
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.bytes_in += len(data)
        access = self.factory.access
        if access is None:
            self._received(data)
        elif self._admitted:
            self._received_limited(access, data)
        elif not self._denied:
            self._admit(access, data)

    def _admit(self, access: ListenerAccess, data: bytes) -> None:
        """The first bytes: behind haproxy: the first after the PROXY header, whose address
        ``getPeer()`` now gives, and which the allow list is applied to."""
        peer = self.getPeer()
        self._sender = access.host_of(peer)
        if self.factory.proxied and not access.allows(self._sender, peer):
            self._denied = True
            self.transport.loseConnection()
            return
        self._admitted = True
        self._received_limited(access, data)

    def _received_limited(self, access: ListenerAccess, data: bytes) -> None:
        buckets = access.buckets
        if buckets is None or self._sender is None:
            self._received(data)
            return
        self._held = self._held + data if self._held else data
        if not self._throttled:
            self._feed(access)

    def _feed(self, access: ListenerAccess) -> None:
        """Give the held bytes to the protocol inside, in slices of about as many frames as
        the sender has tokens (from the bytes per frame seen so far), charging the frames each
        slice decoded. When the sender holds less than a token, the rest is held here and the
        connection paused until it holds one (nothing read is lost: the held bytes go in
        first when reading resumes, or at the end of the connection). A read of 64 KiB of
        small frames thus cannot pass a whole burst over the rate."""
        buckets = access.buckets
        sender = self._sender
        assert buckets is not None and sender is not None
        data, self._held = self._held, b""
        view = memoryview(data)
        offset = 0
        while True:
            if self._paused or self.wrappedProtocol is None:  # flow control holds it
                self._held = data[offset:]
                return
            tokens = buckets.tokens(sender)
            wait = buckets.wait(tokens)
            if wait:
                self._held = data[offset:]
                if self.open and not self.closing:
                    access.limited(sender, self.getPeer())
                    self._throttle(wait)
                return
            if offset >= len(data):
                return
            per_frame = self._in_bytes / self._in_frames if self._in_frames else _FIRST_FRAME_GUESS
            size = max(_MIN_SLICE, int(tokens * per_frame))
            chunk = (
                data if offset == 0 and size >= len(data) else bytes(view[offset : offset + size])
            )
            offset += len(chunk)
            inner = _innermost(self.wrappedProtocol)
            before = getattr(inner, "progress", 0)
            self._received(chunk)
            frames = getattr(inner, "progress", 0) - before
            self._in_bytes += len(chunk)
            self._in_frames += frames
            if frames > 0:
                buckets.charge(sender, frames)

    def _throttle(self, wait: float) -> None:
        """Stop reading for ``wait`` seconds (the sender is in debt); not idle time."""
        self._throttled = True
        self._cancel_idle_timer()
        self.transport.pauseProducing()
        self._throttle_call = self.factory.reactor.callLater(wait, self._unthrottle)

    def _unthrottle(self) -> None:
        self._throttle_call = None
        self._throttled = False
        if not self._paused:  # else flow control holds it: resumeProducing goes on
            self._resume_reading()

    def _resume_reading(self) -> None:
        """Neither reason to pause holds: the held bytes first (which may pause again), then
        the transport."""
        access = self.factory.access
        if not self.open or self.closing:
            return
        if self._held and access is not None:
            self._feed(access)
        if self._throttled or self._paused:
            return
        self._start_idle_timer()
        self.transport.resumeProducing()

    def _received(self, data: bytes) -> None:
        if self._idle_call is None:  # no idle timeout, or paused, or closing
            self.wrappedProtocol.dataReceived(data)
            return
        self._unproductive += len(data)
        self.wrappedProtocol.dataReceived(data)
        progress = getattr(_innermost(self.wrappedProtocol), "progress", None)
        if progress is None or progress != self._progress or self._unproductive >= PROGRESS_BYTES:
            self._progress = progress
            self._unproductive = 0
            if self._idle_call is not None:  # still running: not paused or closed meanwhile
                self._idle_call.reset(self.factory.idle_timeout)

    def connectionLost(self, reason: Failure) -> None:
        self.open = False
        self._cancel_idle_timer()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self._throttle_call is not None and self._throttle_call.active():
            self._throttle_call.cancel()
        self._throttle_call = None
        if self._held:  # read from the network, held by the rate limit: not lost
            held, self._held = self._held, b""
            self._received(held)
        # The protocols inside first, then the tracker: ProtocolWrapper.connectionLost does it
        # the other way round, and unregistering the last connection fires close_all(), so a
        # listener's stop() (and the source's detach after it) finished before the innermost
        # protocol had posted the frame cut short by the end of the stream. Over TLS, and for
        # any connection that outlives its listening port, that frame was counted nowhere and
        # arrived after the summary.
        try:
            self.wrappedProtocol.connectionLost(reason)
        finally:
            self.factory.unregisterProtocol(self)
            self.wrappedProtocol = None  # as ProtocolWrapper does: no reference cycle

    # Reading, as asked by the protocol inside (flow control).

    def pauseProducing(self) -> None:
        self._paused = True
        if not getattr(self.transport, "producerPaused", False):
            # Paused by flow control: that is not idle time. Paused because the peer does not
            # read what we write (our send buffer is full: an HTTP client that never reads its
            # answers), the idle timer goes on.
            self._cancel_idle_timer()
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self.quiesced:  # stopping: the protocol inside posts what it holds, nothing is read
            return
        if self._throttled:  # the rate limit still holds: _unthrottle resumes
            return
        self._resume_reading()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    # Stopping: read no more; a reload hands the socket over (syslogsrc.handover).

    def quiesce(self) -> None:
        """Read no more, for good: what the rate limit holds goes to the protocol inside now
        (read, so not to be lost), the kernel keeps what arrives meanwhile."""
        if self.quiesced or not self.open:
            return
        self.quiesced = True
        self._cancel_idle_timer()
        if self._throttle_call is not None and self._throttle_call.active():
            self._throttle_call.cancel()
        self._throttle_call = None
        self._throttled = False
        self.transport.pauseProducing()
        if self._held and self.wrappedProtocol is not None:
            held, self._held = self._held, b""
            self.wrappedProtocol.dataReceived(held)

    def detach_socket(self) -> tuple[int, int]:
        """Give the socket up without closing the connection: return a duplicate of its
        descriptor and its address family, and forget it (the reactor, the tracker). The
        caller owns the duplicate; the protocol inside must have been handed over first."""
        transport = self.transport
        fd = os.dup(transport.fileno())
        family = transport.socket.family
        self._cancel_idle_timer()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        transport.stopReading()
        transport.stopWriting()
        transport.socket.close()  # our descriptor only: no shutdown(), the duplicate lives on
        self.open = False
        self.factory.forget(self)
        self.wrappedProtocol = None
        return fd, family

    # Closing.

    def close(self) -> None:
        """Close gracefully through the innermost layer (TLS sends close_notify); abort after
        the tracker's grace period if the connection is still open then."""
        if self.closing or not self.open:
            return
        self.closing = True
        self._cancel_idle_timer()
        innermost: Any = self
        inner = self.wrappedProtocol
        while isinstance(inner, ProtocolWrapper):
            innermost = inner
            inner = inner.wrappedProtocol
        grace = self.factory.close_grace
        if grace > 0:
            self._abort_call = self.factory.reactor.callLater(grace, self.abort)
        # A protocol with something to say before the server closes (RELP's serverclose hint)
        # says it now, through the layers above it (TLS), before they close.
        before_close = getattr(_innermost(self.wrappedProtocol), "before_close", None)
        if before_close is not None:
            before_close()
        innermost.loseConnection()
        if grace <= 0:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now (RST), whatever is buffered."""
        self._abort_call = None
        if self.open:
            self.transport.abortConnection()

    def _start_idle_timer(self) -> None:
        timeout = self.factory.idle_timeout
        if (
            timeout > 0
            and self.open
            and not self._paused
            and not self._throttled
            and not self.closing
            and self._idle_call is None
        ):
            self._progress = getattr(_innermost(self.wrappedProtocol), "progress", None)
            self._unproductive = 0
            self._idle_call = self.factory.reactor.callLater(timeout, self._idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None

    def _idle(self) -> None:
        self._idle_call = None
        self.factory.idle_closed += 1
        self.factory.stats.timed_out += 1
        self.factory.timeouts(peer=self.getPeer(), unproductive=self._unproductive)
        self.close()


class _Refused(Protocol):
    """A connection closed as soon as it is made: nothing is read, nothing is sent.

    (Not ``buildProtocol() -> None``, which only a listening port understands: behind
    ``haproxy:`` the tracker's caller is Twisted's PROXY wrapper, which needs a protocol.)
    """

    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class ConnectionTracker(WrappingFactory):
    """Wraps the protocol factory of one stream listener and tracks its connections.

    - ``stats.open_connections`` is the number of connections open now;
    - at ``options.max_connections`` the longest-open connection that has completed no
      message in ``first_message_grace`` seconds is closed to make room for a new one (counted
      in ``stats.timed_out``, logged); without such a connection the new one is closed at once,
      before any byte is read or TLS handshake made, counted in ``stats.refused`` and logged
      (rate-limited);
    - a connection that receives nothing for ``options.idle_timeout`` seconds (0 = never) is
      closed; time paused by flow control does not count;
    - :meth:`close_all` closes every connection and fires when the last one is gone.
    """

    protocol = TrackedConnection
    noisy = False

    def __init__(
        self,
        reactor: IReactorTime,
        wrappedFactory: IProtocolFactory,
        options: ListenerOptions,
        stats: ListenerStats,
        *,
        close_grace: float = CLOSE_GRACE,
        first_message_grace: float = FIRST_MESSAGE_GRACE,
        access: ListenerAccess | None = None,
        proxied: bool = False,
    ) -> None:
        super().__init__(wrappedFactory)
        self.reactor = reactor
        self.stats = stats
        #: the listener's allow list and rate limit (syslogsrc.access), or None
        self.access = access
        #: behind haproxy: the address given to buildProtocol is the proxy's; the sender's is
        #: known after the PROXY header (TrackedConnection applies the allow list then)
        self.proxied = proxied
        self.max_connections = options.max_connections
        self.idle_timeout = options.idle_timeout
        self.close_grace = close_grace
        self.idle_closed = 0  #: connections closed for being idle
        self.refusals = RateLimitedLog(
            reactor,
            "{listener}: refused {count} connection(s){span}:"
            " max-connections({max_connections}) reached; last from {peer}",
            listener=stats.name,
            max_connections=self.max_connections,
        )
        self.first_message_grace = first_message_grace
        self.made_room = RateLimitedLog(
            reactor,
            "{listener}: at max-connections({max_connections}), closed {count} connection(s){span}"
            " that completed no message in {grace}s, to let a new one in; last {peer}, open"
            " {age}s, for {new}",
            level=LogLevel.info,
            listener=stats.name,
            max_connections=self.max_connections,
            grace=first_message_grace,
        )
        self.timeouts = RateLimitedLog(
            reactor,
            "{listener}: closed {count} connection(s){span} that completed"
            " no message in idle-timeout({timeout}); last from {peer}, with {unproductive}"
            " byte(s) of an unfinished one",
            level=LogLevel.info,
            listener=stats.name,
            timeout=self.idle_timeout,
        )
        self._closing = False
        self._all_closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress) -> Protocol:
        if self._closing:
            return _Refused()
        access = self.access
        if (
            access is not None
            and not self.proxied
            and not access.allows(access.host_of(addr), addr)
        ):
            return _Refused()  # before anything is read or any TLS handshake made
        if len(self.protocols) >= self.max_connections and not self._make_room(addr):
            self.stats.refused += 1
            self.refusals(peer=addr)
            return _Refused()
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return _Refused()
        return self.protocol(self, inner)

    def _make_room(self, addr: IAddress) -> bool:
        """At max-connections: close the longest-open connection that has completed no
        message in :data:`FIRST_MESSAGE_GRACE` seconds, so that connections that never send
        cannot lock everyone else out. False when there is none (the newcomer is refused).
        Connections closing already do not count against the limit."""
        now = self.reactor.seconds()
        live = 0
        victim: TrackedConnection | None = None
        for connection in self.protocols:
            if connection.closing:
                continue
            live += 1
            if (
                now - connection.opened_at >= self.first_message_grace
                and (victim is None or connection.opened_at < victim.opened_at)
                and connection.completed_nothing()
            ):
                victim = connection
        if live < self.max_connections:
            return True
        if victim is None:
            return False
        self.stats.timed_out += 1
        self.made_room(peer=victim.getPeer(), new=addr, age=round(now - victim.opened_at, 1))
        victim.close()
        return True

    def registerProtocol(self, p: TrackedConnection) -> None:
        super().registerProtocol(p)
        self.stats.open_connections = len(self.protocols)

    def unregisterProtocol(self, p: TrackedConnection) -> None:
        super().unregisterProtocol(p)
        self.stats.open_connections = len(self.protocols)
        if not self.protocols and self._all_closed:
            waiters, self._all_closed = self._all_closed, []
            for d in waiters:
                d.callback(None)

    def forget(self, p: TrackedConnection) -> None:
        """``p`` left without closing (handed to another instance)."""
        self.protocols.pop(p, None)
        self.stats.open_connections = len(self.protocols)

    def quiesce(self) -> None:
        """Read no more from any connection (the source is stopping)."""
        for connection in list(self.protocols):
            connection.quiesce()

    def close_all(self) -> Deferred[None]:
        """Refuse new connections, close the open ones (gracefully, aborted after the grace
        period); the Deferred fires once none is left."""
        self._closing = True
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._all_closed.append(d)
        for connection in list(self.protocols):
            connection.close()
        return d

    def flush_logs(self) -> None:
        self.refusals.flush()
        self.timeouts.flush()
        self.made_room.flush()

"""The running listeners: one small class per transport family (behind :mod:`syslogsrc.listen`,
which re-exports the public names).

A listener owns one listening socket (or inherited one) and, for stream kinds, the tracker of
its connections; it knows nothing of the kind it was made for beyond its :class:`ListenSpec`
and the endpoint or port opener it is given: what is particular to a kind is its table entry
in :mod:`syslogsrc.listen`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IAddress, IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.haproxy import proxyEndpoint
from zope.interface import Attribute, Interface, implementer

from syslogsrc._listenspec import ListenSpec
from syslogsrc._ports import _OpenDatagramPort, remove_stale_socket, udp_port, unixgram_port
from syslogsrc.access import ListenerAccess
from syslogsrc.handover import ConnectionState, ListenerState
from syslogsrc.interfaces import ListenerStats
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.datagram import SyslogDatagramProtocol
from syslogsrc.protocols.stream import origin_of

if TYPE_CHECKING:
    from syslogsrc.protocols.tls import ReloadableTLS

_log = Logger(namespace="syslogsrc.listen")

# --- Listeners ----------------------------------------------------------------------------


class IListener(Interface):
    """One listening socket (or inherited one) and its connections, for one spec."""

    name = Attribute("The spec text.")
    transport = Attribute('"tcp", "tls", "unix", "udp", "unixgram", "http" or "https".')
    stats = Attribute("The listener's ListenerStats.")
    address = Attribute("The bound IAddress once started (port 0 -> the real port), else None.")

    def start() -> Deferred:
        """Start listening; the Deferred fires with the listener."""

    def reload_tls() -> bool | None:
        """Read this listener's TLS files again for new connections (established ones keep
        theirs): True if taken, False if they did not load (logged; the previous ones stay),
        None for a listener without TLS."""

    def stop() -> Deferred:
        """Stop listening and close every connection (gracefully, then aborted after a short
        grace); the Deferred fires with None when all are closed."""


@implementer(IListener)
class Listener:
    """Base of the listener of each transport family; see :class:`IListener`."""

    def __init__(self, spec: ListenSpec, reactor: Any, stats: ListenerStats) -> None:
        self.spec = spec
        self.name = spec.text
        self.transport = spec.transport
        self.stats = stats
        self.reactor = reactor
        self._port: IListeningPort | None = None

    @property
    def address(self) -> IAddress | None:
        return self._port.getHost() if self._port is not None else None

    def start(self) -> Deferred[Listener]:
        raise NotImplementedError

    def stop(self) -> Deferred[None]:
        raise NotImplementedError

    def reload_tls(self) -> bool | None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} address={self.address}>"


class StreamListener(Listener):
    """tcp, tcp6, ssl, unix, systemd (and their haproxy: forms), http, https."""

    def __init__(
        self,
        spec: ListenSpec,
        reactor: Any,
        stats: ListenerStats,
        endpoint: IStreamServerEndpoint,
        tracker: ConnectionTracker,
        log_flushers: Sequence[Callable[[], None]] = (),
        tls: ReloadableTLS | None = None,
        tls_reload_interval: float = 0,
    ) -> None:
        super().__init__(spec, reactor, stats)
        self.endpoint = endpoint
        self.tracker = tracker
        self._log_flushers = log_flushers
        #: ssl, https: the TLS settings new connections get (see :meth:`reload_tls`)
        self.tls = tls
        self._tls_reload_interval = tls_reload_interval

    def reload_tls(self) -> bool | None:
        """ssl, https: read the key, certificate, chain and CA files again. The listener that
        made them is not needed: a listener handed over to a new source instance (a daemon
        reload) calls this to take the files as they are now."""
        return None if self.tls is None else self.tls.reload()

    def start(self) -> Deferred[Listener]:
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))

        def listening(port: IListeningPort) -> Listener:
            self._port = port
            if self.tls is not None:
                self.tls.start_polling(self._tls_reload_interval)
            return self

        return self.endpoint.listen(self.tracker).addCallback(listening)

    def stop(self) -> Deferred[None]:
        if self.tls is not None:
            self.tls.stop_polling()
        waits: list[Deferred[Any]] = [self.tracker.close_all()]
        if self._port is not None:
            waits.insert(0, maybeDeferred(self._port.stopListening))
        d = gatherResults(waits, consumeErrors=True)
        return d.addBoth(self._stopped)

    # A reload: the socket and the connections go on in the next instance (syslogsrc.handover)

    def quiesce(self) -> None:
        """Accept and read no more, for good (the source is stopping): new connections wait
        in the kernel's backlog, data in the sockets, for whoever takes them over."""
        if self._port is not None:
            self._port.stopReading()  # type: ignore[attr-defined]
        self.tracker.quiesce()

    def hand_over(self) -> ListenerState:
        """Give the listening socket and every plain stream connection up to the next
        instance (call :meth:`quiesce` first). A connection that cannot be handed over (TLS:
        its session lives in this process's OpenSSL objects; HTTP; behind ``haproxy:``) gives
        its frames read and not posted and is closed by ``stop()`` as before."""
        from syslogsrc.protocols._tracking import _innermost

        state = ListenerState(self.name)
        if self.tls is not None:
            self.tls.stop_polling()
        port, self._port = self._port, None
        if port is not None:
            skt = port.socket  # type: ignore[attr-defined]
            port.stopReading()  # type: ignore[attr-defined]
            state.fd, state.family = os.dup(skt.fileno()), skt.family
            if self.spec.path is not None:  # a unix socket file: the next instance keeps it
                state.path = self.spec.path
                state.lock, port.lockFile = getattr(port, "lockFile", None), None  # type: ignore[attr-defined]
            skt.close()  # our descriptor only: the socket lives on in the duplicate
        plain = self.tls is None and not self.spec.proxy
        for connection in list(self.tracker.protocols):
            inner = connection.wrappedProtocol
            if inner is None:
                continue
            if plain and connection.open and not connection.closing and hasattr(inner, "adopt"):
                origin = inner._origin
                decoder, pending = inner.hand_over()
                if origin is None:  # nothing read yet: the new protocol finds its own
                    origin = origin_of(connection, self.transport, self.stats, self.spec.format)
                fd, family = connection.detach_socket()
                state.connections.append(ConnectionState(fd, family, decoder, pending, origin))
                continue
            innermost = _innermost(inner)
            take = getattr(innermost, "take_pending", None)
            origin = getattr(innermost, "_origin", None)
            if take is not None and origin is not None:
                frames = take()
                if frames:
                    state.frames.append((frames, origin))
        return state

    def adopt(self, state: ListenerState) -> Deferred[Listener]:
        """Listen on the socket another instance handed over (its :meth:`hand_over`), and go
        on with its connections; ``state`` keeps what was not taken (its frames)."""
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))
        assert state.fd is not None
        # Twisted's endpoint closes the descriptor once adopted (on failure, state.close() does)
        endpoint: IStreamServerEndpoint = AdoptedStreamServerEndpoint(
            self.reactor, state.fd, state.family
        )
        if self.spec.proxy:
            endpoint = proxyEndpoint(endpoint)

        def listening(port: IListeningPort) -> Listener:
            state.fd = None
            state.path = None  # the socket file is the new port's now
            if state.lock is not None:
                port.lockFile, state.lock = state.lock, None  # type: ignore[attr-defined]
            self._port = port
            if self.tls is not None:
                self.tls.start_polling(self._tls_reload_interval)
            connections, state.connections = state.connections, []
            for connection in connections:
                self._adopt_connection(connection, state)
            return self

        return endpoint.listen(self.tracker).addCallback(listening)

    def _adopt_connection(self, connection: ConnectionState, state: ListenerState) -> None:
        origin = attrs.evolve(connection.origin, stats=self.stats)
        try:
            transport = self.reactor.adoptStreamConnection(
                connection.fd, connection.family, self.tracker
            )
        except Exception:
            transport = None
            _log.failure("{listener}: cannot take over a connection", listener=self.name)
        finally:
            connection.close()
        protocol = getattr(transport, "protocol", None)
        inner = getattr(protocol, "wrappedProtocol", None)
        if inner is None or not hasattr(inner, "adopt"):
            # refused (max-connections, allow list): its frames are posted all the same
            if connection.pending:
                state.frames.append((connection.pending, origin))
            return
        self.stats.taken_over += len(connection.pending)
        inner.adopt(connection.decoder, connection.pending, origin)

    def _stopped(self, result: Any) -> Any:
        for flush in self._log_flushers:
            flush()
        self.tracker.flush_logs()
        return None if isinstance(result, list) else result


class DatagramListener(Listener):
    """udp, udp6, unixgram: one port, read by one protocol. A spec with a ``path`` is a socket
    file (not handed over at a reload, removed at stop); any other is an IP port."""

    def __init__(
        self,
        spec: ListenSpec,
        reactor: Any,
        stats: ListenerStats,
        protocol: SyslogDatagramProtocol,
        open_port: _OpenDatagramPort | None = None,
    ) -> None:
        super().__init__(spec, reactor, stats)
        self.protocol = protocol
        self.access: ListenerAccess | None = None  #: allow list and rate limit, if any
        if open_port is None:
            open_port = udp_port if spec.path is None else unixgram_port
        self._open_port = open_port

    def start(self) -> Deferred[Listener]:
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))
        protocol = self.protocol
        try:
            port = self._open_port(self.spec, self.reactor, protocol)
        except Exception:
            return fail()
        self._port = port
        if protocol.paused:
            # The sink paused us while the port was starting; the port then started reading.
            port.stopReading()
        return succeed(self)

    def quiesce(self) -> None:
        """Read no more, for good (the source is stopping); the kernel keeps what arrives."""
        self.protocol.quiesce()

    def hand_over(self) -> ListenerState:
        """Give the socket up to the next instance with the datagrams read and not posted.
        unixgram sockets are not handed over (Twisted adopts only IP datagram sockets): they
        give their datagrams and are closed by ``stop()``, and the next instance binds anew."""
        state = ListenerState(self.name)
        if self.spec.path is not None or self._port is None:
            self.protocol.quiesce()
            state.frames.extend(self.protocol.take_pending())
            return state
        port, self._port = self._port, None
        state.frames.extend(self.protocol.hand_over())
        skt = port.socket  # type: ignore[attr-defined]
        state.fd, state.family = os.dup(skt.fileno()), skt.family
        skt.close()  # our descriptor only
        self.protocol.flush_logs()
        if self.access is not None:
            self.access.flush_logs()
        return state

    def adopt(self, state: ListenerState) -> Deferred[Listener]:
        """Read the socket another instance handed over (its :meth:`hand_over`)."""
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))
        assert state.fd is not None
        protocol = self.protocol
        try:
            port = self.reactor.adoptDatagramPort(
                state.fd, state.family, protocol, protocol.maxPacketSize
            )
        except Exception:
            return fail()
        finally:
            os.close(state.fd)
            state.fd = None
        self._port = port
        if protocol.paused:
            port.stopReading()
        return succeed(self)

    def stop(self) -> Deferred[None]:
        port = self._port
        if port is None:
            return succeed(None)
        self.protocol.update_kernel_drops()  # the last reading, while the socket is open
        d = maybeDeferred(port.stopListening)

        def stopped(result: Any) -> Any:
            if self.spec.path is not None:
                remove_stale_socket(self.spec.path)
            self.protocol.flush_logs()
            if self.access is not None:
                self.access.flush_logs()
            return result

        return d.addBoth(stopped)

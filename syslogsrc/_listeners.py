"""The running listeners: one small class per transport family (behind :mod:`syslogsrc.listen`,
which re-exports the public names), and the endpoints and ports the kinds' table entries start
them on.

A listener owns one listening socket (or inherited one) and, for stream kinds, the tracker of
its connections; it knows nothing of the kind it was made for beyond its :class:`ListenSpec`:
what is particular to a kind is its table entry in :mod:`syslogsrc.listen`.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet import tcp, udp
from twisted.internet.defer import Deferred, execute, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.haproxy import proxyEndpoint
from twisted.python.systemd import ListenFDs
from zope.interface import Attribute, Interface, implementer

from syslogsrc._listenspec import ListenSpec
from syslogsrc.access import ListenerAccess
from syslogsrc.handover import ConnectionState, ListenerState
from syslogsrc.interfaces import ListenerStats
from syslogsrc.options import OptionError
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
        origin = attrs.evolve(connection.origin, listener=self.stats)
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


#: How a datagram kind opens its port: ``(spec, reactor, protocol) -> IListeningPort``, reading.
_OpenDatagramPort = Callable[[ListenSpec, Any, SyslogDatagramProtocol], IListeningPort]


def udp_port(spec: ListenSpec, reactor: Any, protocol: SyslogDatagramProtocol) -> IListeningPort:
    """udp, udp6: Twisted's UDP port (the family follows the interface), or ours with
    SO_REUSEPORT."""
    assert spec.port is not None
    if spec.reuseport:
        port = _ReusePortUDP(spec.port, protocol, spec.interface, protocol.maxPacketSize, reactor)
        port.startListening()
        return port
    return reactor.listenUDP(  # type: ignore[no-any-return]
        spec.port, protocol, interface=spec.interface, maxPacketSize=protocol.maxPacketSize
    )


def unixgram_port(
    spec: ListenSpec, reactor: Any, protocol: SyslogDatagramProtocol
) -> IListeningPort:
    """unixgram: a socket file at ``spec.path``, replacing a stale socket left there."""
    assert spec.path is not None
    _remove_stale_socket(spec.path)
    return reactor.listenUNIXDatagram(  # type: ignore[no-any-return]
        spec.path, protocol, maxPacketSize=protocol.maxPacketSize, mode=spec.mode
    )


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
                _remove_stale_socket(self.spec.path)
            self.protocol.flush_logs()
            if self.access is not None:
                self.access.flush_logs()
            return result

        return d.addBoth(stopped)


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file left at ``path`` (syslog-ng's unix-dgram does the same); anything
    else at ``path`` is left for bind() to complain about."""
    if path.startswith("\0"):  # Linux abstract namespace: no file
        return
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


# --- Where the kinds listen: endpoints and ports, from a ListenSpec --------------------------


#: How a stream kind listens: ``(spec, reactor) -> IStreamServerEndpoint``.
_StreamEndpoint = Callable[[ListenSpec, Any], IStreamServerEndpoint]


def tcp_endpoint(spec: ListenSpec, reactor: Any) -> IStreamServerEndpoint:
    """Every TCP kind (tcp, tcp6, ssl, http, https): Twisted's TCP endpoint, which binds an
    IPv6 socket when the interface is an IPv6 address (tcp6's default "::" included), or ours
    with SO_REUSEPORT."""
    assert spec.port is not None
    if spec.reuseport:
        return _ReusePortTCPEndpoint(reactor, spec.port, spec.backlog, spec.interface)
    return TCP4ServerEndpoint(reactor, spec.port, spec.backlog, spec.interface)


def unix_endpoint(spec: ListenSpec, reactor: Any) -> IStreamServerEndpoint:
    """unix: Twisted's endpoint (PATH.lock guards the path; a stale socket is replaced)."""
    assert spec.path is not None
    return UNIXServerEndpoint(reactor, spec.path, spec.backlog, spec.mode, spec.lockfile)


def systemd_endpoint(spec: ListenSpec, reactor: Any) -> IStreamServerEndpoint:
    """systemd: the inherited socket, looked up when the listener is made (Twisted's own
    systemd: parser reads LISTEN_FDS once, at import, and fails with a bare IndexError)."""
    fds = ListenFDs.fromEnvironment()
    try:
        if spec.index is not None:
            fileno = fds.inheritedDescriptors()[spec.index]
        else:
            assert spec.fd_name is not None
            fileno = fds.inheritedNamedDescriptors()[spec.fd_name]
    except (IndexError, KeyError):
        raise OptionError(
            "listen", spec.text, "no such socket inherited from systemd (LISTEN_FDS)"
        ) from None
    family = getattr(socket, "AF_" + (spec.domain or "INET"))
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


# --- SO_REUSEPORT ------------------------------------------------------------------------------
#
# Twisted's ports do not set SO_REUSEPORT; these set it on the socket before bind(), which is
# all the difference. Several processes (or listeners) with reuseport=yes then share one port,
# and the kernel spreads connections (TCP) and datagrams (UDP, by the sender's address) over
# them. Linux requires every socket on the port to set it, and to belong to the same user.


def _set_reuseport(skt: socket.socket) -> socket.socket:
    skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return skt


class _ReusePortTCPPort(tcp.Port):
    def createInternetSocket(self) -> socket.socket:
        return _set_reuseport(super().createInternetSocket())


class _ReusePortUDP(udp.Port):
    def createInternetSocket(self) -> socket.socket:
        return _set_reuseport(super().createInternetSocket())


@implementer(IStreamServerEndpoint)
class _ReusePortTCPEndpoint:
    """``TCP4ServerEndpoint`` / ``TCP6ServerEndpoint`` with SO_REUSEPORT (the address family
    follows the interface, as in Twisted's own TCP port)."""

    def __init__(self, reactor: Any, port: int, backlog: int, interface: str) -> None:
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        def start() -> IListeningPort:
            port = _ReusePortTCPPort(
                self._port, protocolFactory, self._backlog, self._interface, self._reactor
            )
            port.startListening()
            return port

        return execute(start)

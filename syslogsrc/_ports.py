"""Where the listener kinds listen: the stream endpoints and datagram ports a kind's table
entry in :mod:`syslogsrc.listen` names, each made from a :class:`ListenSpec` (and SO_REUSEPORT,
which Twisted's ports do not set)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp, udp
from twisted.internet.defer import Deferred, execute
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.systemd import ListenFDs
from zope.interface import implementer

from syslogsrc._listenspec import ListenSpec
from syslogsrc.options import OptionError
from syslogsrc.protocols.datagram import SyslogDatagramProtocol

# --- Datagram ports ---------------------------------------------------------------------------

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
    remove_stale_socket(spec.path)
    return reactor.listenUNIXDatagram(  # type: ignore[no-any-return]
        spec.path, protocol, maxPacketSize=protocol.maxPacketSize, mode=spec.mode
    )


def remove_stale_socket(path: str) -> None:
    """Unlink a socket file left at ``path`` (syslog-ng's unix-dgram does the same); anything
    else at ``path`` is left for bind() to complain about."""
    if path.startswith("\0"):  # Linux abstract namespace: no file
        return
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


# --- Stream endpoints -------------------------------------------------------------------------

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

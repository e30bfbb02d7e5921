"""Syslog over datagrams (UDP over IPv4 and IPv6, unix datagram sockets such as /dev/log).

One datagram is one message (RFC 5426), or, with ``options.udp_split_lines``, one message per
LF-separated line of it. Each datagram ends a batch (``sink.close_batch()``).

Flow control: :class:`SyslogDatagramProtocol` is an ``IPushProducer`` registered with the sink.
Paused, it stops reading its socket (``port.stopReading()``) and datagrams wait in the kernel's
receive buffer, which ``options.so_rcvbuf`` makes large; resumed, it posts what it had already
read and starts reading again. Twisted's port reads several datagrams per wake-up and does not
stop when asked to in the middle, so datagrams that arrive after a pause are kept, in order, in the
protocol, and posted first when it resumes.
"""

from __future__ import annotations

import socket
import sys
from collections import deque
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols._tracking import RateLimitedLog

__all__ = ["UDP_MAX_PACKET", "SyslogDatagramProtocol", "set_receive_buffer"]

#: Receive buffer for one UDP datagram: the largest UDP payload fits (Twisted's default of 8192
#: would silently cut longer datagrams).
UDP_MAX_PACKET = 65535

_log = Logger(namespace="syslogsrc.listen")

# Linux doubles the SO_RCVBUF asked for (bookkeeping overhead) and reports the doubled value.
_REPORTED_FACTOR = 2 if sys.platform.startswith("linux") else 1


def _receive_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // _REPORTED_FACTOR


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer; return the size the kernel granted.

    Linux caps SO_RCVBUF at ``net.core.rmem_max``; SO_RCVBUFFORCE passes the cap but needs
    CAP_NET_ADMIN (root), so it is tried only when the cap bit, and its refusal is not an error.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = _receive_buffer(sock)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if granted < size and force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            pass
        else:
            granted = _receive_buffer(sock)
    return granted


@implementer(IPushProducer)
class SyslogDatagramProtocol(DatagramProtocol):
    """One datagram listener: datagrams in, messages to the sink, paused and resumed by it.

    ``transport_name`` is "udp" or "unixgram". ``maxPacketSize`` is the read buffer the port
    must be given (``listenUDP(..., maxPacketSize=protocol.maxPacketSize)``): 65535 for UDP;
    for unix datagram sockets, whose datagrams can be longer, one byte more than the maximum
    message size, so that a longer datagram is seen to be longer and counted as truncated.
    """

    maxPacketSize = UDP_MAX_PACKET
    noisy = False

    def __init__(
        self,
        reactor: IReactorTime,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        transport_name: str = "udp",
    ) -> None:
        self.reactor = reactor
        self.sink = sink
        self.options = options
        self.stats = stats
        self.transport_name = transport_name
        if transport_name == "unixgram":
            self.maxPacketSize = max(UDP_MAX_PACKET, options.max_message_size + 1)
        self.max_size = options.max_message_size
        self.split_lines = options.udp_split_lines
        #: messages read, waiting for the sink to resume us: (frame, origin, last of its datagram)
        self.pending: deque[tuple[bytes, Origin, bool]] = deque()
        self.paused = False
        self.stopped = False
        self.receive_buffer: int | None = None  #: SO_RCVBUF granted by the kernel
        self._draining = False
        self._listening = False
        self._registered = False
        self._local_port: int | None = None
        self.sink_errors = RateLimitedLog(
            reactor,
            "{listener}: the sink raised {count} time(s) in the last {interval}s;"
            " the message was dropped (last from {peer})",
            level=LogLevel.error,
            listener=stats.name,
        )

    # DatagramProtocol

    def startProtocol(self) -> None:
        self._listening = True
        self._local_port = getattr(self.transport.getHost(), "port", None)
        if self.options.so_rcvbuf:
            self._set_receive_buffer(self.options.so_rcvbuf)
        self._registered = True
        self.sink.register_producer(self)

    def stopProtocol(self) -> None:
        self._listening = False
        if not self.pending:
            self._unregister()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        stats.bytes += len(data)
        if self.split_lines:
            # Like LF framing on streams: a CR before the LF goes too, blank lines are skipped.
            lines = (line[:-1] if line[-1:] == b"\r" else line for line in data.split(b"\n"))
            frames = [line for line in lines if line]
        else:
            frames = [data] if data else []
        if not frames:
            # syslog-ng ignores empty datagrams; so do we, but they are counted.
            stats.malformed += 1
            return
        max_size = self.max_size
        for i, frame in enumerate(frames):
            if len(frame) > max_size:
                frames[i] = frame[:max_size]
                stats.truncated += 1
        stats.received += len(frames)
        if self.stopped:
            stats.dropped += len(frames)
            return
        if isinstance(addr, tuple):
            origin = Origin(self.transport_name, stats, addr[0], addr[1], self._local_port)
        else:  # a unix socket path, or None
            origin = Origin(self.transport_name, stats, None, None, None)
        last = len(frames) - 1
        self.pending.extend((frame, origin, i == last) for i, frame in enumerate(frames))
        if self.paused:
            # The port reads on after a pause until its read budget is spent: keep those.
            return
        self._drain()

    # IPushProducer, called by the sink

    def pauseProducing(self) -> None:
        if self.paused or self.stopped:
            return
        self.paused = True
        if self._listening:
            self.transport.stopReading()

    def resumeProducing(self) -> None:
        if not self.paused or self.stopped:
            return
        self.paused = False
        self._drain()
        if self.paused:
            return
        if self._listening:
            self.transport.startReading()
        elif not self.pending:
            self._unregister()

    def stopProducing(self) -> None:
        """The sink is gone for good: drop (and count) what waits here, read no more."""
        if self.stopped:
            return
        self.stopped = True
        self.paused = True
        self._registered = False
        if self.pending:
            self.stats.dropped += len(self.pending)
            self.pending.clear()
        if self._listening:
            self.transport.stopReading()

    # Posting

    def _drain(self) -> None:
        """Post pending messages in order until none is left or the sink pauses us; one batch
        per datagram (and one for the part of a datagram posted before a pause)."""
        if self._draining or self.paused:
            return
        sink = self.sink
        pending = self.pending
        in_batch = False
        self._draining = True
        try:
            while pending and not self.paused:
                frame, origin, last = pending.popleft()
                try:
                    sink.post(frame, origin)
                except Exception:
                    self.stats.dropped += 1
                    self.sink_errors(Failure(), peer=origin.peer_host)
                else:
                    in_batch = True
                if last and in_batch:
                    in_batch = False
                    self._close_batch()
        finally:
            self._draining = False
        if in_batch:
            self._close_batch()

    def _close_batch(self) -> None:
        try:
            self.sink.close_batch()
        except Exception:
            self.sink_errors(Failure(), peer=None)

    def _set_receive_buffer(self, size: int) -> None:
        try:
            self.receive_buffer = set_receive_buffer(self.transport.getHandle(), size)
        except OSError as e:
            _log.warn(
                "{listener}: cannot set so-rcvbuf({size}): {error}",
                listener=self.stats.name,
                size=size,
                error=e,
            )
            return
        if self.receive_buffer < size:
            _log.warn(
                "{listener}: so-rcvbuf({size}) capped by the kernel to {granted} bytes:"
                " datagrams may be lost in bursts; raise net.core.rmem_max (sysctl) or run"
                " with CAP_NET_ADMIN",
                listener=self.stats.name,
                size=size,
                granted=self.receive_buffer,
            )

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self.sink.unregister_producer(self)

    def flush_logs(self) -> None:
        self.sink_errors.flush()

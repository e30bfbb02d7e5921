"""Syslog over datagrams (UDP over IPv4 and IPv6, unix datagram sockets such as /dev/log).

One datagram is one message (RFC 5426), or, with ``options.udp_split_lines``, one message per
LF-separated line of it. The datagrams one wake-up of the reactor read (Twisted's port reads up
to 256 KiB of them) go to the sink when the reactor turns, one call and one batch per run of
one sender's datagrams: a sender's burst costs one call, not one per datagram.

Flow control: :class:`SyslogDatagramProtocol` is an ``IPushProducer`` registered with the sink,
and posts through a :class:`~syslogsrc.producers.Backlog`. Paused, it stops reading its socket
(``port.stopReading()``) and datagrams wait in the kernel's receive buffer, which
``options.so_rcvbuf`` makes large; resumed, it posts what it had already read and starts
reading again. Twisted's port reads several datagrams per wake-up and does not stop when
asked to in the middle, so datagrams that arrive after a pause are kept, in order, in the
protocol, and posted first when it resumes.

UDP has no push-back: when the receive buffer is full the kernel drops datagrams. Those drops are
made visible in ``stats.kernel_drops`` (and logged): Linux counts them per socket in the ``drops``
column of ``/proc/net/udp`` (``udp6``), read every :data:`KERNEL_DROPS_INTERVAL` seconds and when
the listener stops. (``SO_RXQ_OVFL`` would give the same count as ancillary data of ``recvmsg``,
which Twisted's UDP port does not call.) Unix datagram sockets do not drop: their senders wait.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc.access import ListenerAccess
from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.producers import Backlog, Batch
from syslogsrc.protocols._ratelimit import RateLimitedLog, sink_error_log

__all__ = [
    "KERNEL_DROPS_INTERVAL",
    "SO_RCVBUFFORCE",
    "UDP_MAX_PACKET",
    "SyslogDatagramProtocol",
    "set_receive_buffer",
    "socket_drops",
]

#: Receive buffer for one UDP datagram: the largest UDP payload fits (Twisted's default of 8192
#: would silently cut longer datagrams).
UDP_MAX_PACKET = 65535
#: Seconds between two readings of the kernel's drop counter of a UDP socket.
KERNEL_DROPS_INTERVAL = 1.0

_log = Logger(namespace="syslogsrc.listen")

#: Machines whose Linux takes its socket option numbers from ``asm-generic/socket.h``.
_GENERIC_SOCKET_OPTIONS = ("x86_64", "i386", "i686", "aarch64", "arm", "riscv64", "s390x", "ppc64",
                           "loongarch64")  # fmt: skip


def _rcvbufforce() -> int | None:
    named = getattr(socket, "SO_RCVBUFFORCE", None)
    if named is not None:
        return named
    # CPython's socket module does not name SO_RCVBUFFORCE; it is 33 on the machines above
    # (alpha, mips, parisc and sparc number their options otherwise: there it is not tried).
    machine = platform.machine()
    if sys.platform.startswith("linux") and machine.startswith(_GENERIC_SOCKET_OPTIONS):
        return 33
    return None


#: Linux's SO_RCVBUFFORCE (SO_RCVBUF past ``net.core.rmem_max``, for CAP_NET_ADMIN), or None
#: where it is not known.
SO_RCVBUFFORCE: int | None = _rcvbufforce()

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
    if granted < size and SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            pass
        else:
            granted = _receive_buffer(sock)
    return granted


def socket_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for ``sock`` since it was made (receive buffer full, or
    checksum errors): the ``drops`` column of ``/proc/net/udp`` or ``udp6`` for the socket's
    inode. None where there is no such file, or the socket is not in it."""
    family = {socket.AF_INET: "udp", socket.AF_INET6: "udp6"}.get(getattr(sock, "family", None))
    if family is None:
        return None
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        with open(f"/proc/self/net/{family}", "rb") as table:
            lines = table.read().decode("ascii", "replace").splitlines()[1:]
    except (OSError, ValueError):
        return None
    for line in lines:
        fields = line.split()
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if len(fields) >= 13 and fields[9] == inode:
            try:
                return int(fields[-1])
            except ValueError:
                return None
    return None


#: senders whose Origin a datagram listener remembers (then it forgets them all and starts again)
_ORIGINS_KEPT = 1024


@implementer(IPushProducer)
class SyslogDatagramProtocol(DatagramProtocol):
    """One datagram listener: datagrams in, messages to the sink, paused and resumed by it.

    ``transport_name`` is "udp" or "unixgram"; ``format``, when given, is the format the sink
    parses this listener's messages with (the spec's ``format=``). ``maxPacketSize`` is the
    read buffer the port must be given
    (``listenUDP(..., maxPacketSize=protocol.maxPacketSize)``): 65535 for UDP; for unix
    datagram sockets, whose datagrams can be longer, one byte more than the maximum
    message size, so that a longer datagram is seen to be longer and counted as truncated.
    """

    maxPacketSize = UDP_MAX_PACKET
    noisy = False
    #: the listener's allow list and rate limit (set by the listener), asked before anything
    #: else: a datagram it refuses is dropped, counted in ``denied`` or ``rate_limited`` only
    access: ListenerAccess | None = None

    def __init__(
        self,
        reactor: IReactorTime,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        transport_name: str = "udp",
        *,
        format: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.sink = sink
        self.options = options
        self.stats = stats
        self.transport_name = transport_name
        #: the format this listener's messages are parsed with; None: the sink's own
        self.format = format
        if transport_name == "unixgram":
            self.maxPacketSize = max(UDP_MAX_PACKET, options.max_message_size + 1)
        self.max_size = options.max_message_size
        self.split_lines = options.udp_split_lines
        #: the datagrams read and not taken by the sink, waiting for it to resume us, in order
        self.backlog = Backlog(sink, on_error=self._log_sink_error)
        #: reading stopped for good (the source is stopping): a resume posts what waits only
        self.quiesced = False
        self.receive_buffer: int | None = None  #: SO_RCVBUF granted by the kernel
        self._listening = False
        self._registered = False
        self._local_port: int | None = None
        self._origins: dict[Any, Origin] = {}  # the Origin of each recent sender
        # the datagrams of this turn of the reactor, read from one sender and not yet offered
        self._run: list[bytes] = []
        self._run_origin: Origin | None = None
        self._turn_scheduled = False
        self.sink_errors = sink_error_log(reactor, stats.name)
        self.truncations = RateLimitedLog(
            reactor,
            "{listener}: truncated {count} message(s){span} to"
            " max-message-size({max_size}); last from {peer}",
            listener=stats.name,
            max_size=self.max_size,
        )
        self.empty_datagrams = RateLimitedLog(
            reactor,
            "{listener}: ignored {count} empty datagram(s){span}; last from {peer}",
            level=LogLevel.info,
            listener=stats.name,
        )
        self.kernel_drop_log = RateLimitedLog(
            reactor,
            "{listener}: the kernel dropped {new} datagram(s) since the last look ({total} in"
            " all): the receive buffer ({size} bytes) was full; raise so-rcvbuf (and"
            " net.core.rmem_max)",
            listener=stats.name,
        )
        self._drops_call: LoopingCall | None = None

    @property
    def paused(self) -> bool:
        """Paused by the sink: nothing is posted, the socket is not read."""
        return self.backlog.paused

    @property
    def stopped(self) -> bool:
        """The sink stopped us for good (stopProducing)."""
        return self.backlog.stopped

    # DatagramProtocol

    def startProtocol(self) -> None:
        self._listening = True
        self._local_port = getattr(self.transport.getHost(), "port", None)
        if self.options.so_rcvbuf:
            self._set_receive_buffer(self.options.so_rcvbuf)
        if self.transport_name == "udp" and socket_drops(self.transport.getHandle()) is not None:
            self._drops_call = LoopingCall(self.update_kernel_drops)
            self._drops_call.clock = self.reactor
            self._drops_call.start(KERNEL_DROPS_INTERVAL, now=False)
        self._registered = True
        self.sink.register_producer(self)

    def stopProtocol(self) -> None:
        self._listening = False
        if self._run:  # read in this turn: offered now, while we are still registered
            self._end_run()
        if self._drops_call is not None and self._drops_call.running:
            self._drops_call.stop()
        self._drops_call = None
        if not self.backlog:
            self._unregister()

    def update_kernel_drops(self) -> int:
        """Read the kernel's drop counter of our socket into ``stats.kernel_drops`` (and log
        an increase); returns it. Called every KERNEL_DROPS_INTERVAL seconds and at stop."""
        stats = self.stats
        if not self._listening or self.transport_name != "udp":
            return stats.kernel_drops
        try:
            drops = socket_drops(self.transport.getHandle())
        except Exception:  # a closing port: keep the last reading
            drops = None
        if drops is not None and drops > stats.kernel_drops:
            new, stats.kernel_drops = drops - stats.kernel_drops, drops
            self.kernel_drop_log(new=new, total=drops, size=self.receive_buffer or "default")
        return stats.kernel_drops

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        access = self.access
        if access is not None and not access.admit_datagram(addr):
            return
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
            self.empty_datagrams(peer=_peer(addr))
            return
        max_size = self.max_size
        if len(data) > max_size:
            for i, frame in enumerate(frames):
                if len(frame) > max_size:
                    frames[i] = frame[:max_size]
                    stats.truncated += 1
                    self.truncations(peer=_peer(addr))
        stats.received += len(frames)
        origin = self._origins.get(addr)
        if origin is None:
            origin = self._origin(addr)
        # One read of the socket (Twisted's port reads up to 256 KiB of datagrams per wake-up)
        # is one batch per run of one sender's datagrams, posted when the reactor turns.
        if self._run_origin is origin:
            self._run.extend(frames)
            return
        if self._run:
            self._end_run()
        self._run, self._run_origin = frames, origin
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self.reactor.callLater(0, self._end_turn)

    def _end_turn(self) -> None:
        """The reactor turned: post the datagrams read since the last turn."""
        self._turn_scheduled = False
        if self._run:
            self._end_run()

    def _end_run(self) -> None:
        """Post (or, paused, keep in the backlog) the datagrams of the last run of one sender."""
        frames, origin = self._run, self._run_origin
        self._run, self._run_origin = [], None
        # The port reads on after a pause until its read budget is spent: those wait here.
        self.backlog.offer(frames, origin)  # type: ignore[arg-type]

    def _origin(self, addr: Any) -> Origin:
        """The Origin of a sender, remembered for the next datagrams (most come from a few)."""
        stats = self.stats
        if not isinstance(addr, tuple):  # a unix socket path, or None
            origin = Origin(self.transport_name, stats, None, None, None, self.format)
        else:
            origin = Origin(
                self.transport_name, stats, addr[0], addr[1], self._local_port, self.format
            )
        origins = self._origins
        if len(origins) >= _ORIGINS_KEPT:
            origins.clear()
        origins[addr] = origin
        return origin

    # IPushProducer, called by the sink

    def pauseProducing(self) -> None:
        if self.backlog.pause() and self._listening:
            self.transport.stopReading()

    def resumeProducing(self) -> None:
        if not self.backlog.resume():  # not paused, stopped, or paused again by the drain
            return
        if self._listening and not self.quiesced:
            self.transport.startReading()
        elif not self._listening and not self.backlog:
            self._unregister()

    def stopProducing(self) -> None:
        """The sink is gone for good: drop (and count) what waits here, read no more."""
        if not self.backlog.stop():
            return
        self._registered = False
        if self._listening:
            self.transport.stopReading()

    # Stopping: read no more; a reload hands the socket over (syslogsrc.handover)

    def quiesce(self) -> None:
        """Read no more datagrams, for good; what waits is still posted when the sink resumes
        us (the kernel keeps what arrives meanwhile, for whoever reads the socket next)."""
        self.quiesced = True
        if self._listening:
            self.transport.stopReading()

    def take_pending(self) -> list[tuple[list[bytes], Origin]]:
        """The datagrams read and not posted, in order: the caller's now."""
        pending = [(list(batch.messages), batch.origin) for batch in self.backlog.take()]
        if self._run:
            pending.append((self._run, self._run_origin))
            self._run, self._run_origin = [], None
        return pending  # type: ignore[return-value]

    def hand_over(self) -> list[tuple[list[bytes], Origin]]:
        """Give the socket up to another instance: stop reading and counting, unregister;
        return what was read and not posted. The port is the caller's to detach."""
        self.update_kernel_drops()  # the last reading, while the socket is ours
        pending = self.take_pending()
        self.quiesce()
        self.backlog.stop()  # nothing waits now: nothing is counted as dropped
        self._listening = False
        if self._drops_call is not None and self._drops_call.running:
            self._drops_call.stop()
        self._drops_call = None
        self._unregister()
        return pending

    def _log_sink_error(self, failure: Failure, batch: Batch) -> None:
        """The sink raised (the backlog counted the datagram as dropped)."""
        self.sink_errors(failure, peer=batch.origin.peer_host)

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
        self.truncations.flush()
        self.empty_datagrams.flush()
        self.kernel_drop_log.flush()


def _peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr or "a unix socket")

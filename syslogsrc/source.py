"""Twisted inside a syslog-ng Python source.

:class:`TwistedSource` is the base of every Twisted-based source. A subclass says what to listen
on (:meth:`TwistedSource.listeners`, given the reactor); the base does the rest, following the
contracts of the design card:

1. ``run()`` runs in a daemon thread that is not the main one; ``request_exit()``, ``init()`` and
   ``deinit()`` come from the main thread; every protocol callback, and so every
   ``post_message()``, runs in the ``run()`` thread.
2. Each ``run()`` makes a fresh reactor (never the global one: that cannot run twice in a
   process, and syslog-ng calls ``run()`` again after every reload), runs it without signal
   handlers, closes every listener and connection before returning and releases the reactor's
   epoll and waker descriptors. ``request_exit()`` before or during start-up still ends ``run()``.
3. Flow control is non-blocking: the class defines ``suspend()``/``wakeup()``; on ``suspend()``
   every producer pauses and nothing more is posted; ``wakeup()`` arrives from another thread and
   resumes through ``callFromThread``.
4. Features are asked of ``syslogsrc.runtime.FEATURES``, never assumed.

The same class also runs attached to a reactor that someone else runs (twistd, an application):
:meth:`TwistedSource.attach` and :meth:`TwistedSource.detach`, with no extra thread.

:class:`SyslogSource` is the ready-made source for configurations::

    python(class("syslogsrc.SyslogSource")
           options("listen" "tcp:5514:interface=127.0.0.1 udp:5514:interface=127.0.0.1"));
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorCore
from twisted.logger import (
    ILogObserver,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
)
from twisted.logger import (
    Logger as TwistedLogger,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc import _daemon_parse, handover, optiontable
from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.optiontable import option
from syslogsrc.parsing import ParsedMessage, _strip_trailer, malformed, parse
from syslogsrc.producers import ProducerSet
from syslogsrc.protocols._ratelimit import RateLimitedLog
from syslogsrc.runtime import FEATURES, Logger, LogMessage, LogSource

__all__ = ["SourceOptions", "SyslogSource", "TwistedSource"]

_UTC = dt.UTC
_ZERO = dt.timedelta(0)
#: syslog-ng 3.x reads set_timestamp()'s wall-clock digits as UTC (see _stamp_for_daemon).
#: FEATURES is frozen, so this is decided once.
_DAEMON_3X = FEATURES.in_daemon and not FEATURES.typed_values
_IN_DAEMON = FEATURES.in_daemon
_monotonic = time.monotonic  # the clock of suspended time (tests replace it)
# What the version gives, decided once for every message (FEATURES is frozen).
_CLOSE_BATCH = FEATURES.close_batch
#: the daemon's close_batch() (4.x), called directly from the hot path
_close_batch = getattr(LogSource, "close_batch", None)
_STALE_CLOCK = FEATURES.stale_receive_time
_SET_SOURCE_IP = FEATURES.set_source_ipaddress
#: ``LogMessage.set_source_ipaddress()`` leaks the address it makes, about 44 bytes a call, in
#: every version that has it (3.38.1 has not; 4.8.1 and AxoSyslog up to bf5bd70a1, December
#: 2026: modules/python/python-logmsg.c makes a GSockAddr, log_msg_set_saddr() takes a reference
#: of its own, the first one is never dropped). Called only when a source asks for it
#: (``source-ip saddr``); make this depend on the version once a release fixes the binding.
#: (The emulation's does not leak: hosted sources get the address as before.)
_SOURCE_IP_LEAKS = FEATURES.in_daemon
#: What a source sets of the sender's address: name-value pairs, or the message's own address.
_RAWMSG_SIZE = FEATURES.set_recvd_rawmsg_size

#: pairs that carry what we know of a message's origin when the daemon has no API for it
TAGS_PAIR = "syslogsrc.tags"


# --------------------------------------------------------------------------------------------
# Twisted's log events -> the daemon's internal log


@implementer(ILogObserver)
class _LogBridge:
    """Forwards twisted.logger events to ``syslogng.Logger``: warnings and worse from anyone,
    info from syslogsrc's own namespaces.

    One per process, reference-counted: log events are process-global, and two sources in one
    configuration must not log every event twice.
    """

    def __init__(self) -> None:
        self.logger = Logger()
        self.users = 0
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        namespace = event.get("log_namespace", "twisted")
        # Twisted's own info lines ("Starting factory", "Main loop terminated") are noise in
        # the daemon's log; ours are not.
        if level < LogLevel.warn and not (
            level >= LogLevel.info and namespace.startswith("syslogsrc")
        ):
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        line = f"syslogsrc: {namespace}: {text}"
        if level >= LogLevel.error:
            self.logger.error(line)
        elif level >= LogLevel.warn:
            self.logger.warning(line)
        else:
            self.logger.info(line)

    def acquire(self) -> None:
        with self.lock:
            self.users += 1
            if self.users == 1:
                globalLogPublisher.addObserver(self)
                if FEATURES.in_daemon:
                    # Nobody else starts Twisted's logging inside the daemon: without this its
                    # start-up buffer would keep the last 65536 events, failures and all.
                    _begin_logging_once()

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                globalLogPublisher.removeObserver(self)


_bridge = _LogBridge()
_logging_begun = False
_twisted_log = TwistedLogger(namespace="syslogsrc.source")


def _NoLog(*args: Any, **kwargs: Any) -> None:
    """Before a reactor is attached there is nothing to report with."""


def _begin_logging_once() -> None:
    global _logging_begun
    if not _logging_begun:
        _logging_begun = True
        globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)


def _new_reactor() -> Any:
    """A fresh reactor object, not installed as ``twisted.internet.reactor``."""
    try:
        from twisted.internet.epollreactor import EPollReactor

        return EPollReactor()
    except ImportError:  # pragma: no cover - not Linux
        from twisted.internet.pollreactor import PollReactor

        return PollReactor()


def _release_reactor(reactor: Any) -> None:
    """Close the descriptors a stopped reactor still holds (epoll and the waker's pipe):
    without this every reload leaks three descriptors."""
    waker = getattr(reactor, "waker", None)
    if waker is not None:
        reactor.removeReader(waker)
        reactor._internalReaders.discard(waker)
        waker.connectionLost(None)
        reactor.waker = None
    poller = getattr(reactor, "_poller", None)
    if poller is not None:
        poller.close()


# --------------------------------------------------------------------------------------------
# timestamps as the daemon reads them


def _stamp_for_daemon(ts: dt.datetime) -> dt.datetime:
    """The datetime to give ``set_timestamp()`` so that the daemon stores ``ts``.

    3.x reads the wall-clock digits as UTC and attaches the offset afterwards; both generations
    read the offset without its ``days`` field, so a negative offset would come out wrong (see
    ``_stamp_carrier`` for those). The instant always survives; a negative offset is given
    as UTC.
    """
    offset = ts.utcoffset()
    if offset is None:
        return ts
    if offset < _ZERO:
        return ts.astimezone(_UTC)
    if offset and _DAEMON_3X:  # at offset 0 the UTC digits are ts's own: nothing to convert
        return ts.astimezone(_UTC).replace(tzinfo=ts.tzinfo)
    return ts


def _stamp_carrier(ts: dt.datetime) -> bytes:
    """A bare RFC 5424 header stamped ``ts``, for the daemon's own parser.

    ``set_timestamp()`` cannot store a negative UTC offset in either daemon (-05:00 is read as
    +19:00 and the instant moves a day; measured in 3.38.1 and 4.8.1), but ``LogMessage.parse``
    stores it exactly: a message whose stamp has one is made by parsing this header.
    """
    return b"<13>1 " + ts.isoformat().encode() + b" - - - - -"


def _now_for_daemon() -> dt.datetime:
    """Now, for ``set_timestamp()`` (the daemon's own clock is stale in a Python source's thread,
    see ``Features.stale_receive_time``), shown in the local offset as the daemon shows its
    receive time. 3.x reads a naive datetime as UTC; 4.x reads it as local time, and takes an
    aware one as given except for a negative offset (see ``_stamp_carrier``)."""
    if not FEATURES.typed_values:  # 3.x
        return dt.datetime.now(_UTC).replace(tzinfo=None)
    now = dt.datetime.now().astimezone()
    offset = now.utcoffset()
    if offset is not None and offset >= dt.timedelta(0):
        return now
    return now.replace(tzinfo=None)


# --------------------------------------------------------------------------------------------
# frames a previous instance read and did not post


class _Backlog:
    """The frames the previous instance (a reload) had read and not posted, posted first: a
    producer of the sink like a connection, paused and resumed with the others; what is still
    here when the source stops is counted as dropped (or handed over again)."""

    def __init__(self, sink: IMessageSink, frames: Iterable[tuple[list[Any], Origin]]) -> None:
        self.sink = sink
        self.pending: collections.deque[tuple[list[Any], Origin]] = collections.deque(frames)
        self.paused = False
        self.stopped = False
        self._draining = False
        self._registered = True
        sink.register_producer(self)  # pauses us at once if the sink is paused

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.drain()

    def stopProducing(self) -> None:
        self.stopped = True
        self._registered = False
        for frames, origin in self.pending:
            origin.listener.dropped += len(frames)
        self.pending.clear()

    def take_pending(self) -> list[tuple[list[Any], Origin]]:
        pending = list(self.pending)
        self.pending.clear()
        return pending

    def drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self.pending and not (self.paused or self.stopped):
                frames, origin = self.pending.popleft()
                taken = self.sink.post(frames, origin)
                if taken < len(frames):
                    self.pending.appendleft((frames[taken:], origin))
                    if not self.paused:
                        break
        finally:
            self._draining = False
        if not self.pending and self._registered:
            self._registered = False
            self.sink.unregister_producer(self)


# --------------------------------------------------------------------------------------------
# TwistedSource


@implementer(IMessageSink)
class TwistedSource(LogSource):
    """The base of a Twisted-based syslog-ng source. Subclasses implement :meth:`listeners`
    (and usually :meth:`configure`); they may override :meth:`build_message`."""

    #: seconds that closing listeners and connections may take before the reactor stops anyway
    stop_grace: ClassVar[float] = 5.0
    #: seconds a stopping source keeps posting what its connections had read (waiting for the
    #: daemon's window where it must) before it hands the rest over or counts it as dropped
    drain_grace: ClassVar[float] = 2.0
    #: seconds without a single post after which that wait ends early (the window stays full)
    drain_stall: ClassVar[float] = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._exit_requested = False
        self._exit_wakeup_from: int | None = None  # whose next wakeup() is 4.x's exit one
        self._reactor: Any = None  # the reactor we run or are attached to
        self._own_reactor = False
        self._listeners: list[Any] = []
        self._producers = ProducerSet()
        self._suspended = False
        self._posts = 0  # post_message() calls started, and the one the daemon last suspended in:
        self._suspended_in = 0  # together they tell stale wakeups apart
        self._held: collections.deque[tuple[Any, Origin]] = collections.deque()
        self._stopping: defer.Deferred[Any] | None = None
        # time spent suspended: two clock readings per suspension, none per message
        self._suspended_since = 0.0
        self._suspended_total = 0.0
        #: a Twisted stream endpoint string to serve Prometheus metrics on (``/metrics``),
        #: started and stopped with the listeners; None: no metrics endpoint
        self.metrics_spec: str | None = None
        self._metrics_registry: Any = None
        self._metrics_listener: Any = None
        self.logger = Logger()
        self.paused = False  # IMessageSink: True while suspended
        self.transport_name: str | None = None
        self._check_next = False  # ask whether the daemon took the next post (after a resume)
        #: parsed messages carry MSGFORMAT, as the daemon's parser sets it (4.7+; at attach)
        self._msgformat_pair = False
        self._transport_pair = True  # each message carries TRANSPORT (decided at attach)
        #: seconds a builder made for an origin is used before it is made again; None: for
        #: the origin's life (see :meth:`builder`)
        self.builder_ttl: float | None = None
        #: how the sender's address is given: "pairs" (``PEERIP``/``PEERPORT``, the default),
        #: "saddr" (the message's own source address: ``$SOURCEIP``, ``$SOURCEPORT`` and
        #: ``HOST_FROM`` on 4.x; leaks about 44 bytes a message, see docs/syslog-ng.md) or
        #: "none" (not at all: two calls into the daemon fewer per message)
        self.source_ip = "pairs"
        self._set_source_ip = False  # decided at attach
        #: where the listeners hand their messages: the source itself (inside the daemon, or
        #: hosted), or another sink (twistd's :class:`~syslogsrc.sinks.OutputSink`)
        self.sink: IMessageSink = self
        self._build_errors: Any = _NoLog  # set for each reactor (attach)
        #: at the end of run() the listening sockets, connections and frames not posted go
        #: to the next instance of the same persist name (a reload: in the daemon, or in
        #: syslogsrc-host); see syslogsrc.handover and docs/syslog-ng.md
        self.hand_over = True
        self._claimed: dict[str, Any] = {}  # what the previous instance left us (init)
        self._deposited: str | None = None  # the persist name we left things under
        self._backlog: _Backlog | None = None  # frames the previous instance left, posting

    # -- configuration (main thread) --------------------------------------------------------
    def configure(self, options: dict[str, Any]) -> None:
        """Validate ``options``; raise :class:`~syslogsrc.options.OptionError` naming the bad
        one. Subclasses override this rather than ``init()``."""

    def init(self, options: dict[str, Any]) -> bool:
        try:
            self.configure(dict(options))
        except OptionError as exc:
            self.logger.error(f"{type(self).__name__}: {exc}")
            return False
        # Read by the daemon after init(): one batch per datagram / read / request instead.
        self.auto_close_batches = False
        if self.hand_over:
            self._claim()
        return True

    def listener_names(self) -> list[str]:
        """The names (spec texts) of the listeners :meth:`listeners` will make, known at
        ``init()``: a reload hands a listener's socket to the listener of the same name, even
        under another persist name. The default: none known (only the persist name's)."""
        return []

    def _claim(self) -> None:
        """In ``init()`` (the main thread; every old instance has stopped): take what the
        previous instance of our persist name left, and sockets of our listeners' names that
        another persist name left."""
        name = self._handover_name()
        claimed = handover.claim(name)
        for spec in self.listener_names():
            if spec not in claimed:
                state = handover.claim_spec(spec)
                if state is not None:
                    claimed[spec] = state
        self._claimed = claimed

    def _handover_name(self) -> str:
        return str(getattr(self, "persist_name", "") or type(self).__qualname__)

    def deinit(self) -> None:
        # An instance that never ran (a reload that failed elsewhere, or stopped before run())
        # leaves what it claimed for the next one.
        claimed, self._claimed = self._claimed, {}
        if claimed:
            self._deposit(list(claimed.values()))
        parent = getattr(super(), "deinit", None)
        if parent is not None:
            parent()

    def finalize(self) -> None:
        """The daemon frees this instance: in a reload after the next instance's ``init()``,
        which has claimed what we left; at a shutdown nobody has, and it is closed now."""
        name, self._deposited = self._deposited, None
        if name is not None:
            self._report_unclaimed(*handover.discard(name))
        parent = getattr(super(), "finalize", None)
        if parent is not None:
            parent()

    def _deposit(self, states: list[Any]) -> None:
        name = self._handover_name()
        self._deposited = name
        handover.deposit(name, states, self._report_unclaimed)

    def _report_unclaimed(self, connections: int, frames: int) -> None:
        if frames:
            self.logger.error(
                f"syslogsrc: dropped {frames} message(s) read and not posted: the daemon"
                " took no more before run() returned, and no new instance took them over (a"
                f" shutdown, or their listener left the configuration); {connections}"
                " connection(s) closed"
            )
        elif connections:
            self.logger.info(
                f"syslogsrc: {connections} connection(s) closed: no new instance took them over"
                " (a shutdown, or their listener left the configuration)"
            )

    def listeners(self, reactor: Any) -> Iterable[Any]:
        """What to listen on: objects with ``start() -> Deferred`` and ``stop() -> Deferred``
        (see :func:`syslogsrc.listen.make_listener`), made for ``reactor`` with ``self`` as the
        sink."""
        raise NotImplementedError

    # -- the run() thread ---------------------------------------------------------------------
    def run(self) -> None:
        reactor = _new_reactor()
        with self._lock:
            if self._exit_requested:
                _release_reactor(reactor)
                return
            self._reactor = reactor
            self._own_reactor = True
        _bridge.acquire()
        try:
            reactor.callWhenRunning(self._start_in_own_reactor)
            reactor.run(installSignalHandlers=False)
        finally:
            # 4.8.1 aborts at shutdown when run() returns with a batch still open
            try:
                self.close_batch()
            except Exception as exc:  # never let cleanup keep run() from returning
                self.logger.error(f"syslogsrc: closing the last batch: {exc!r}")
            with self._lock:
                self._reactor = None
                self._own_reactor = False
            _release_reactor(reactor)
            _bridge.release()
            self._log_summary()

    def _start_in_own_reactor(self) -> None:
        d = self.attach(self._reactor)
        d.addErrback(self._log_failure, "starting the listeners")

    def request_exit(self) -> None:
        """From the main thread, any time: before, during or after ``run()`` starts."""
        with self._lock:
            self._exit_requested = True
            # 4.x calls wakeup() next, in this thread, whatever the window (flow control, rule 3)
            self._exit_wakeup_from = None if _DAEMON_3X else threading.get_ident()
            reactor = self._reactor if self._own_reactor else None
            if reactor is not None:
                reactor.callFromThread(self._shutdown_own_reactor)

    def _shutdown_own_reactor(self) -> None:
        """Read no more; post what was read (as far as the daemon's window lets us, within
        :attr:`drain_grace`); hand the sockets and the rest over for the next instance (inside
        the daemon) or drop it, counted; close what remains; stop the reactor."""
        reactor = self._reactor

        def close(_: object) -> defer.Deferred[None]:
            if self.hand_over:
                try:
                    self._hand_over_listeners()
                except Exception:
                    self._log_failure(Failure(), "handing the listeners over")
            d = self.detach()
            timer = reactor.callLater(self.stop_grace, d.cancel)

            def done(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            return d.addBoth(done)

        def stop(_: object) -> None:
            if reactor.running:
                reactor.stop()

        self._drain_before_stop().addBoth(close).addBoth(stop)

    def _drain_before_stop(self) -> defer.Deferred[None]:
        """Every listener stops reading; the Deferred fires once nothing read waits to be
        posted, or after :attr:`drain_grace` seconds (a window that stays full)."""
        for listener in self._listeners:
            quiesce = getattr(listener, "quiesce", None)
            if quiesce is not None:
                quiesce()
        reactor = self._reactor
        now = reactor.seconds()
        deadline = now + self.drain_grace
        progress = [self._posts, now]  # posts so far, and when they last moved
        done: defer.Deferred[None] = defer.Deferred()

        def check() -> None:
            now = reactor.seconds()
            if self._posts != progress[0]:
                progress[:] = [self._posts, now]
            # A window that does not move is not waited for: 3.x sends no wakeup() after
            # request_exit() (a suspended 3.x source cannot post again before run() returns).
            stalled = now - progress[1] >= self.drain_stall or (_DAEMON_3X and self._suspended)
            if not self._holding() or now >= deadline or stalled:
                done.callback(None)
            else:
                reactor.callLater(0.005, check)

        check()
        return done

    def _holding(self) -> bool:
        """Whether anything read waits to be posted (in a producer, or held by us)."""
        if self._held:
            return True
        for producer in self._producers.producers:
            if getattr(producer, "pending", None) or getattr(producer, "_pending", None):
                return True
        return False

    def _hand_over_listeners(self) -> None:
        """Leave our listening sockets, connections and frames not posted for the next
        instance (syslogsrc.handover)."""
        states = []
        for listener in self._listeners:
            hand_over = getattr(listener, "hand_over", None)
            if hand_over is not None:
                states.append(hand_over())
        rest = handover.ListenerState("")
        backlog = self._backlog
        if backlog is not None and backlog.pending:
            rest.frames.extend(backlog.take_pending())
        rest.messages.extend(self._held)
        self._held.clear()
        if rest.frames or rest.messages:
            states.append(rest)
        for state in states:
            for frames, origin in state.frames:
                origin.listener.handed_over += len(frames)
            for connection in state.connections:
                connection.origin.listener.handed_over += len(connection.pending)
            for _, origin in state.messages:
                origin.listener.handed_over += 1
        sockets = sum(1 for s in states if s.fd is not None)
        connections = sum(len(s.connections) for s in states)
        frames = sum(s.unposted() for s in states)
        self._deposit(states)
        _twisted_log.info(
            "handed {sockets} listening socket(s), {connections} connection(s) and {frames}"
            " message(s) read and not posted to the next instance",
            sockets=sockets,
            connections=connections,
            frames=frames,
        )

    # -- attached to somebody else's reactor ------------------------------------------------
    def attach(self, reactor: Any) -> defer.Deferred[list[Any]]:
        """Start listening on ``reactor`` (which someone else runs, or ``run()``'s own). Fires
        with the listeners once all are listening; a listener that fails is logged and the
        others keep serving."""
        if not IReactorCore.providedBy(reactor):
            raise TypeError("attach() needs a reactor")
        self._reactor = reactor
        self._exit_requested = False
        if self.sink is self and FEATURES.set_transport_name and self.transport_name is not None:
            self.set_transport_name(self.transport_name)
        # set_transport_name() gives every message its TRANSPORT; else each carries the pair
        self._transport_pair = self.transport_name is None or not FEATURES.set_transport_name
        self._set_source_ip = self._uses_source_ip_api()
        self._build_errors = RateLimitedLog(
            reactor,
            "{listener}: building a message raised {count} time(s){span}; the message was"
            " dropped (last from {peer})",
            level=LogLevel.error,
            logger=_twisted_log,
        )
        self._listeners = list(self.listeners(reactor))
        claimed = self._take_over(reactor)
        # Messages built and dropped by the daemon go first: each was the first in line of its
        # connection, whose frames the adopted connection posts at once.
        for state in claimed.values():
            self._held.extend((msg, self._our_origin(origin)) for msg, origin in state.messages)
            state.messages = []
        if self._held and not self._suspended:
            self._post_held()
        started = []
        # A copy: a listener that fails at once (a UDP port in use) is removed from
        # self._listeners by its errback, inside this loop, and the next one was skipped.
        for listener in list(self._listeners):
            state = claimed.get(getattr(listener, "name", None))
            if state is not None and state.fd is not None and hasattr(listener, "adopt"):
                d = defer.maybeDeferred(listener.adopt, state)
            else:
                d = defer.maybeDeferred(listener.start)
            d.addErrback(self._listener_failed, listener)
            started.append(d)
        self._post_backlog(claimed)
        if self.metrics_spec is not None:
            started.append(self._start_metrics(reactor, self.metrics_spec))
        return defer.gatherResults(started).addCallback(lambda _: list(self._listeners))

    def _take_over(self, reactor: Any) -> dict[str, Any]:
        """What the previous instance left us that our listeners take over (by name); what
        they do not, and what nobody claimed, is closed before any listener binds, its
        frames still posted (by :meth:`_post_backlog`)."""
        self._backlog = None
        claimed, self._claimed = self._claimed, {}
        if not self.hand_over:
            return {}
        names = {getattr(listener, "name", None) for listener in self._listeners}
        taken = {name: state for name, state in claimed.items() if name in names}
        orphans = [state for name, state in claimed.items() if name not in names]
        orphans += handover.sweep()  # every new instance has claimed its own in init()
        if orphans:
            frames: list[Any] = []
            messages: list[Any] = []
            for state in orphans:
                frames.extend(state.take_frames())
                messages.extend(state.messages)
                state.messages = []
            connections = 0
            for state in orphans:
                connections += state.close()[0]
            if connections:
                _twisted_log.warn(
                    "closed {connections} connection(s) handed over by the previous instance"
                    " whose listener is no longer configured",
                    connections=connections,
                )
            if frames or messages:
                rest = taken.setdefault("", handover.ListenerState(""))
                rest.frames.extend(frames)
                rest.messages.extend(messages)
        return taken

    def _post_backlog(self, claimed: dict[str, Any]) -> None:
        """Post first the frames the previous instance had read and not posted (each with
        its listener's stats where the listener is still there)."""
        frames = []
        for state in claimed.values():
            frames.extend(
                (batch, self._our_origin(origin, len(batch)))
                for batch, origin in state.take_frames()
            )
            state.close()  # what was not adopted (a listener that failed to adopt)
        if frames:
            self._backlog = _Backlog(self.sink, frames)
            self._backlog.drain()

    def _our_origin(self, origin: Origin, count: int = 1) -> Origin:
        """``origin`` of a previous instance, with our listener's stats if it is still
        configured; ``count`` messages of it taken over."""
        for listener in self._listeners:
            if getattr(listener, "name", None) == origin.listener.name:
                origin = attrs.evolve(origin, listener=listener.stats)
                break
        origin.listener.taken_over += count
        return origin

    def _start_metrics(self, reactor: Any, spec: str) -> defer.Deferred[Any]:
        from syslogsrc.metrics import MetricsListener

        listener = self._metrics_listener = MetricsListener(spec, reactor, self.metrics_registry)

        def failed(failure: Failure) -> None:
            self.logger.error(
                f"syslogsrc: cannot serve metrics on {spec}: {failure.getErrorMessage()}"
            )
            if self._metrics_listener is listener:
                self._metrics_listener = None

        return defer.maybeDeferred(listener.start).addErrback(failed)

    @property
    def metrics_registry(self) -> Any:
        """This source's own ``prometheus_client`` ``CollectorRegistry`` (made on first use),
        whose collector reads :attr:`listener_stats` at scrape time; see
        :mod:`syslogsrc.metrics`. Serve it with the ``metrics`` option or any exporter."""
        if self._metrics_registry is None:
            from syslogsrc.metrics import SourceCollector, new_registry

            self._metrics_registry = new_registry(
                SourceCollector(
                    self._current_listeners, lambda: self._suspended, self.suspended_seconds
                )
            )
        return self._metrics_registry

    @property
    def metrics_address(self) -> Any:
        """The bound address of the metrics endpoint while it serves, else None."""
        listener = self._metrics_listener
        return listener.address if listener is not None else None

    def suspended_seconds(self) -> float:
        """Seconds this source has spent suspended, in all (the current suspension too)."""
        total = self._suspended_total
        if self._suspended:
            total += _monotonic() - self._suspended_since
        return total

    def _uses_source_ip_api(self) -> bool:
        """Whether messages get the sender's address by ``set_source_ipaddress()``: where the
        API exists, and in the daemon only when asked for (``source-ip saddr``) while its
        binding leaks."""
        return _SET_SOURCE_IP and (self.source_ip == "saddr" or not _SOURCE_IP_LEAKS)

    def _listener_failed(self, failure: Failure, listener: Any) -> None:
        name = getattr(listener, "name", repr(listener))
        self.logger.error(f"syslogsrc: cannot listen on {name}: {failure.getErrorMessage()}")
        if listener in self._listeners:
            self._listeners.remove(listener)

    def detach(self) -> defer.Deferred[None]:
        """Stop listening, close every connection. Idempotent."""
        if self._stopping is not None:
            return _chain(self._stopping)
        listeners, self._listeners = self._listeners, []
        stops = [defer.maybeDeferred(listener.stop) for listener in listeners]
        metrics, self._metrics_listener = self._metrics_listener, None
        if metrics is not None:
            stops.append(defer.maybeDeferred(metrics.stop))
        for d in stops:
            d.addErrback(self._log_failure, "closing a listener")
        stopping = self._stopping = defer.DeferredList(stops, consumeErrors=True)
        stopping.addBoth(self._detached, listeners)
        return _chain(stopping)

    def _detached(self, result: object, listeners: list[Any]) -> None:
        self._stopping = None
        self._stopped_listeners = listeners
        # Connections still holding frames (read while we were suspended) can no longer post
        # them: stopping them for good counts those frames as dropped instead of losing them
        # silently.
        self._producers.stop()
        flush = getattr(self._build_errors, "flush", None)
        if flush is not None:
            flush()
        while self._held:
            _, origin = self._held.popleft()
            origin.listener.dropped += 1

    def reload_tls(self) -> list[bool]:
        """Read the key, certificate and CA files of every ``ssl:``/``https:`` listener again,
        in the reactor's thread: new connections get the new certificate, established ones keep
        theirs. One result per TLS listener: False where the new files did not load (logged,
        naming the file and the option; that listener keeps its previous ones). twistd calls
        this on SIGHUP; inside syslog-ng a reload makes a new instance, whose listeners read the
        files when they are made."""
        results = []
        for listener in self._listeners:
            reload = getattr(listener, "reload_tls", None)
            result = reload() if reload is not None else None
            if result is not None:
                results.append(result)
        return results

    @property
    def listener_stats(self) -> list[ListenerStats]:
        """The counters of every listener, current or last run."""
        return [listener.stats for listener in self._current_listeners()]

    def _current_listeners(self) -> list[Any]:
        return self._listeners or getattr(self, "_stopped_listeners", [])

    def _log_summary(self) -> None:
        for stats in self.listener_stats:
            counts = ", ".join(f"{k}={v}" for k, v in stats.as_dict().items() if k != "name")
            self.logger.info(f"syslogsrc: listener {stats.name} stopped: {counts}")

    def _log_failure(self, failure: Failure, doing: str) -> None:
        self.logger.error(f"syslogsrc: error {doing}: {failure.getTraceback()}")

    # -- flow control ------------------------------------------------------------------------
    #
    # The daemon's wakeup() can be stale. syslog-ng frees a window slot (in an acknowledging
    # thread, without the GIL) and only then waits for the GIL to call wakeup(); meanwhile the
    # run() thread may post into that slot, empty the window again and be suspended. The wakeup
    # then arrives for a window that is empty again, and a post after it is dropped by the daemon
    # ("Incorrectly suspended source, dropping message"): measured, 200 000 messages through a
    # stalled destination lost 6% in 3.38.1 and 64% in 4.8.1 before this was handled. Two rules:
    #
    # 1. A wakeup() that ran before the post_message() that led to the daemon's latest suspend()
    #    began is stale: its slot was freed before that post, and after the post the daemon found
    #    the window empty. It is ignored; the next freed slot brings a wakeup() after that post
    #    began. (A wakeup() during that post may be stale or not; rule 2 copes with it.)
    # 2. The daemon's pipeline sets HOST_FROM on every message it takes, before post_message()
    #    returns, and a dropped one is left alone. A message without HOST_FROM after posting was
    #    dropped: it is held, every producer pauses, and the next wakeup() posts it first; the
    #    dropped post counts as a suspension for rule 1 (the window was empty when it began).
    #    (Only a wakeup that raced the check itself gets this far: one post, not a burst.)
    #
    # 3. 4.x calls wakeup() right after request_exit(), in the same thread
    #    (lib/logthrsource/logthrsourcedrv.c, _worker_thread_request_exit), whatever the window:
    #    a suspended source that resumed then posted into an empty window (one "Incorrectly
    #    suspended" line per reload or stop that found it suspended: 25 in 100 reloads on
    #    4.8.1). That one wakeup() (the next one in request_exit()'s thread) resumes nothing;
    #    acknowledgements after it still do, so a source may go on posting while it stops.
    #
    # What is left cannot be told apart with the daemon's API: a wakeup() whose slot was freed
    # before the post that emptied the window, but which got the GIL only after that post's
    # suspend(), looks exactly like the wakeup that ends the suspension. Its first post is
    # dropped, logged by the daemon, held and posted again (counted: docs/syslog-ng.md).

    def suspend(self) -> None:
        """The window is full (called by the daemon inside ``post_message``, in our thread)."""
        self._suspended_in = self._posts
        self._pause_all()

    def _pause_all(self) -> None:
        if not self._suspended:
            self._suspended_since = _monotonic()
        self._suspended = True
        self.paused = True
        self._producers.pause()

    def wakeup(self) -> None:
        """The window has room again. Called from the thread that acknowledged (the daemon's
        destination or main thread), or synchronously from inside ``post_message`` by an output
        that acknowledges at once: always deferred to the reactor's next turn, so producers are
        never resumed from inside a protocol's posting loop."""
        with self._lock:
            exiting = self._exit_wakeup_from == threading.get_ident()
            if exiting:
                self._exit_wakeup_from = None
            reactor = self._reactor
            if reactor is not None:
                reactor.callFromThread(self._resume, self._posts, exiting)
        # else: a late acknowledgement after run() ended; nothing to resume

    def _resume(self, posts: int | None = None, exiting: bool = False) -> None:
        if not self._suspended:
            return
        if posts is not None and posts < self._suspended_in:
            return  # rule 1: a stale wakeup
        if exiting:
            return  # rule 3: 4.x's wakeup() at request_exit() says nothing of the window
        self._suspended = False
        self._suspended_total += _monotonic() - self._suspended_since
        self.paused = False
        # A stale wakeup can make the daemon drop the next post (rule 2): check that one.
        self._check_next = True
        if self._held and not self._post_held():
            return
        # A different producer first each time, so one busy connection cannot take the whole
        # window after every wakeup; a backlog that fills the window again stops the round.
        self._producers.resume(lambda: self._suspended)

    def _post_held(self) -> bool:
        """Post the messages the daemon dropped, in order; False if they did not all go."""
        held = self._held
        while held and not self._suspended:
            msg, origin = held[0]
            if not self._post_checked(msg, origin):
                return False
            held.popleft()
        self.close_batch()
        return not held

    def _post_checked(self, msg: Any, origin: Origin) -> bool:
        """post_message(); if the daemon dropped ``msg`` (rule 2), hold it and pause all."""
        self._posts += 1
        self.post_message(msg)
        if _taken(msg):
            origin.listener.posted += 1
            return True
        if not self._held or self._held[0][0] is not msg:
            self._held.append((msg, origin))
        # The window was empty when this post began: a wakeup() that ran before it announced a
        # slot already taken again (rule 1 applies from this post on; the daemon calls no
        # suspend() for a dropped message). Without this, every such wakeup still queued
        # posted the held message into the empty window once more.
        self._suspended_in = self._posts
        if not self._suspended:
            self._pause_all()
        return False

    # -- IMessageSink --------------------------------------------------------------------------
    def register_producer(self, producer: Any) -> None:
        self._producers.register(producer)

    def unregister_producer(self, producer: Any) -> None:
        self._producers.unregister(producer)

    def post(self, messages: Sequence[bytes | ParsedMessage], origin: Origin) -> int:
        """Post the messages of one read / datagram / request as one batch (IMessageSink).

        Per message: :meth:`build_message` and ``post_message()``, nothing else. Whether the
        daemon took a message is asked only of the first post after a resume, the only one a
        stale ``wakeup()`` can make the daemon drop (see *flow control* below)."""
        if self._suspended:
            return 0
        # made once per connection, sender or request (again after builder_ttl seconds)
        made = origin.memo.get(self)
        if made is None or (made[1] is not None and _monotonic() >= made[1]):
            ttl = self.builder_ttl
            made = origin.memo[self] = (
                self.builder(origin),
                None if ttl is None else _monotonic() + ttl,
            )
        build = made[0]
        post_message = self.post_message
        stats = origin.listener
        taken = posted = 0
        try:
            for message in messages:
                taken += 1
                try:
                    msg = build(message)
                except Exception:
                    stats.dropped += 1
                    self._build_errors(Failure(), listener=stats.name, peer=origin.peer_host)
                    continue
                if self._check_next:
                    self._check_next = False
                    if not self._post_checked(msg, origin):
                        break  # held: posted first at the next wakeup
                    if self._suspended:
                        break
                    continue
                self._posts += 1
                post_message(msg)
                posted += 1
                if self._suspended:  # suspend() came from inside post_message()
                    break
        finally:
            stats.posted += posted
            if taken and _CLOSE_BATCH:
                self.close_batch()  # a subclass may hook it (tests/test_integration_fields.py)
        return taken

    def close_batch(self) -> None:  # type: ignore[override]
        if _CLOSE_BATCH:
            _close_batch(self)

    def builder(self, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
        """What builds the ``LogMessage`` of each message from ``origin``: :meth:`build_message`
        with the origin bound. Asked once per origin (a connection, a datagram's sender, an
        HTTP request; kept in ``origin.memo``), after :meth:`attach`, and again every
        :attr:`builder_ttl` seconds when that is set (a builder that depends on the date). A
        subclass may return something faster for the origin (:class:`SyslogSource` does, for
        the daemon's parser)."""
        return functools.partial(self.build_message, origin=origin)

    def build_message(self, message: bytes | ParsedMessage, origin: Origin) -> Any:
        """Turn one message into a ``LogMessage``. The default keeps a raw frame whole as
        MESSAGE, and takes a parsed message's pairs as they are; :class:`SyslogSource` parses
        frames. ``origin.format`` is the listener's format, ``origin.pairs`` what every
        message of the origin carries (:meth:`annotate` adds them)."""
        if type(message) is not bytes:
            return self.message_from(message, origin, len(message.pairs.get("MESSAGE", "")))
        msg = LogMessage(message)
        if _STALE_CLOCK:
            msg.set_timestamp(_now_for_daemon())
        self.annotate(msg, origin, len(message))
        return msg

    def message_from(self, parsed: ParsedMessage, origin: Origin, size: int) -> Any:
        """A ``LogMessage`` of a parsed message: its stamp (or now), pairs, PRI and tags, then
        :meth:`annotate`. ``size`` is the frame's size (``$RAWMSG_SIZE`` where the daemon has
        it)."""
        if parsed.timestamp is not None:
            msg = self._message_at(parsed.timestamp, parsed.format)
        else:
            msg = LogMessage()
            if _STALE_CLOCK:
                msg.set_timestamp(_now_for_daemon())
        pairs = _sdata_last_first(parsed.pairs) if _IN_DAEMON else parsed.pairs.items()
        for name, value in pairs:
            msg[name] = value
        msg.set_pri(parsed.pri)
        if parsed.tags:
            msg[TAGS_PAIR] = ",".join(parsed.tags)
            if malformed(parsed):
                origin.listener.malformed += 1
        if self._msgformat_pair:  # as the daemon's parser names it (4.7+)
            msg["MSGFORMAT"] = parsed.format
        self.annotate(msg, origin, size)
        return msg

    def _parsed_message(self, parsed: ParsedMessage) -> Any:
        """:meth:`message_from` without what the origin adds (for the hybrid's probes)."""
        if parsed.timestamp is not None:
            msg = self._message_at(parsed.timestamp, parsed.format)
        else:
            msg = LogMessage()
            if _STALE_CLOCK:
                msg.set_timestamp(_now_for_daemon())
        pairs = _sdata_last_first(parsed.pairs) if _IN_DAEMON else parsed.pairs.items()
        for name, value in pairs:
            msg[name] = value
        msg.set_pri(parsed.pri)
        if parsed.tags:
            msg[TAGS_PAIR] = ",".join(parsed.tags)
        if self._msgformat_pair:  # as the daemon's parser names it (4.7+)
            msg["MSGFORMAT"] = parsed.format
        return msg

    def _message_at(self, ts: dt.datetime, format: str) -> Any:
        """A new ``LogMessage`` stamped ``ts`` (instant and offset)."""
        offset = ts.utcoffset()
        if offset is not None and offset < _ZERO:
            parse_options = getattr(self, "parse_options", None)
            if parse_options is not None:
                msg = LogMessage.parse(_stamp_carrier(ts), parse_options)
                # flags(no-parse) or another format() would leave the header in MESSAGE
                if not _value(msg, "MESSAGE"):
                    if _value(msg, "MSGFORMAT"):  # 4.7+ names the carrier's format
                        msg["MSGFORMAT"] = format
                    return msg
        msg = LogMessage()
        msg.set_timestamp(_stamp_for_daemon(ts))
        return msg

    def annotate(self, msg: Any, origin: Origin, size: int) -> None:
        """What every message carries of its origin, by each version's means (decided once):
        the origin's pairs, ``TRANSPORT`` unless ``set_transport_name()`` gives it, the
        sender's address, the frame's size where the daemon keeps it."""
        pairs = origin.pairs
        if pairs:
            for name, value in pairs.items():
                msg[name] = value
        if self._transport_pair:
            msg["TRANSPORT"] = origin.transport
        host = origin.peer_host
        if host is not None and self.source_ip != "none":
            if self._set_source_ip:
                msg.set_source_ipaddress(host, origin.peer_port or 0)
            else:  # 3.x has no API; 4.x's leaks (source-ip saddr asks for it all the same)
                msg["PEERIP"] = host
                msg["PEERPORT"] = str(origin.peer_port or 0)
        if _RAWMSG_SIZE:
            msg.set_recvd_rawmsg_size(size)


# Frames whose stamp the daemon's parser surely reads, by the shape of their start: a BSD stamp
# (RFC 3164), an ISO 8601 one (RFC 3164 as rsyslog sends it), an RFC 5424 header. Only the
# shapes the daemon's parse options read are used (asked of the daemon once, at attach); any
# other frame is checked the slow way.
_PRI = rb"<\d{1,3}>"
_TIME = rb"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
_DATE = rb"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T" + _TIME
_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_BSD = _MONTH + rb" (?: [1-9]|[12]\d|3[01]) " + _TIME + b" "
_STAMP_SHAPES = {
    b"<13>Jan  2 03:04:05 host prog: probe": _PRI + _BSD,
    b"<13>2024-01-02T03:04:05+01:00 host prog: probe": _PRI + _DATE,
    b"<13>1 2024-01-02T03:04:05+01:00 host prog - - - probe": _PRI + rb"1 " + _DATE,
}


def _restamp_if_stampless(msg: Any) -> None:
    """The daemon stamps a message without a stamp with its cached clock, which is stale in a
    Python source's thread: such a stamp equals RECVD, and is set to now. (Two lookups that
    each format a date, the costliest part of a natively parsed message: see _STAMP_SHAPES.)"""
    if _value(msg, "ISODATE") == _value(msg, "R_ISODATE"):
        msg.set_timestamp(_now_for_daemon())


def _no_stamp_known(frame: bytes) -> bool:
    return False


def _stamp_shapes_read(parse_options: Any) -> Callable[[bytes], bool]:
    """A test of a frame's start: True for the shapes whose stamp the daemon reads with
    ``parse_options`` (each probed once: its stamp differs from the receive time)."""
    read = []
    for probe, shape in _STAMP_SHAPES.items():
        try:
            msg = LogMessage.parse(probe, parse_options)
            if _value(msg, "ISODATE") != _value(msg, "R_ISODATE"):
                read.append(shape)
        except Exception:  # a parse the daemon refuses: that shape is not known to be read
            continue
    if not read:
        return _no_stamp_known
    return re.compile(b"|".join(read)).match  # type: ignore[return-value]


#: what the daemon's parse options can change of a message, compared on the hybrid's probes
_PROBED_NAMES = (
    "HOST",
    "PROGRAM",
    "PID",
    "MSGID",
    "MESSAGE",
    "LEGACY_MSGHDR",
    "RAWMSG",
    "SDATA",
    "PRI",
    "ISODATE",
    "TAGS",
    TAGS_PAIR,
    "MSGFORMAT",
)


def _probe_sd_names(frame: bytes) -> list[str]:
    """The ``.SDATA.<id>.<param>`` names of a probe frame's SD (no escapes in probes)."""
    names = []
    for element in re.findall(rb"\[([^ \]]+)((?: [^=]+=\"[^\"]*\")*)\]", frame):
        sd_id = element[0].decode()
        for param in re.findall(rb' ([^=]+)="', element[1]):
            names.append(f".SDATA.{sd_id}.{param.decode()}")
    return names


def _probe_value(msg: Any, name: str) -> bytes:
    """:func:`_value`, with 4.x's typed empty list (``TAGS`` of a message without tags) as
    the empty value it is."""
    value = _value(msg, name)
    return b"" if value == b"[]" else value


def _is_utf8(frame: bytes) -> bool:
    try:
        frame.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _today() -> dt.date:
    return dt.date.today()


def _sdata_last_first(pairs: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    """The items of ``pairs`` in the order that makes the daemon render ``$SDATA`` as sent.

    Set one by one (not by its own parser), a ``.SDATA`` name of a new SD element goes before
    every other element, and one of a known element right after that element's last name (both
    daemons, lib/logmsg/logmsg.c ``log_msg_update_sdata_slow``): elements set first-to-last come
    out last-to-first. So the elements are set last-first, each one's params in order.
    """
    # Most messages have no SD: then nothing moves. One C-level search over the names finds out
    # (a name holding "\0.SDATA." only sends its message down the longer way).
    if "\0.SDATA." not in "\0" + "\0".join(pairs):
        return pairs.items()
    blocks: dict[str, list[tuple[str, str]]] = {}
    other: list[tuple[str, str]] = []
    for name, value in pairs.items():
        if name.startswith(".SDATA."):
            blocks.setdefault(name[: name.rindex(".")], []).append((name, value))
        else:
            other.append((name, value))
    if len(blocks) < 2:
        return other + [item for block in blocks.values() for item in block]
    return other + [item for block in reversed(blocks.values()) for item in block]


def _value(msg: Any, name: str) -> bytes:
    """``msg[name]``, or b"" when unset (4.x raises KeyError for unset names)."""
    try:
        value = msg[name]
    except KeyError:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()


def _taken(msg: Any) -> bool:
    """Did the daemon take ``msg``? Its source pipeline sets HOST_FROM on every message it
    takes (to the sender's name, or the local host name), synchronously inside
    ``post_message()``; a message dropped for an empty window is left untouched."""
    try:
        return bool(msg["HOST_FROM"])
    except KeyError:  # 4.x: an unset name
        return False


def _chain(d: defer.Deferred[Any]) -> defer.Deferred[None]:
    """A new Deferred that fires when ``d`` does, leaving ``d``'s result alone."""
    out: defer.Deferred[None] = defer.Deferred()

    def fire(result: object) -> object:
        out.callback(None)
        return result

    d.addBoth(fire)
    return out


# --------------------------------------------------------------------------------------------
# SyslogSource


PARSERS = optiontable.PARSERS
DEFAULT_LISTEN = optiontable.DEFAULT_LISTEN
parse_time_zone = optiontable.parse_time_zone


@attrs.frozen(kw_only=True)
class SourceOptions:
    """Every option of :class:`SyslogSource`, validated (the syslog-ng names, ``-`` or ``_``):
    what each means, its default and its limits are declared in :mod:`syslogsrc.optiontable`
    (and the table of docs/syslog-ng.md)."""

    listen: tuple[str, ...] = option("listen").default
    format: str = option("format").default
    parser: str = option("parser").default
    time_zone: dt.tzinfo | None = option("time-zone").default
    metrics: str | None = option("metrics").default
    source_ip: str = option("source-ip").default
    listener: ListenerOptions = attrs.Factory(ListenerOptions)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SourceOptions:
        """Build from what ``init()`` receives (strings in 3.x, typed values in 4.2+)."""
        kwargs: dict[str, Any] = {}
        listener: dict[str, Any] = {}
        for key, value in options.items():
            name = str(key).replace("_", "-")
            declared = optiontable.OPTIONS_BY_NAME.get(name)
            if declared is None or "daemon" not in declared.drivers:
                raise OptionError(name, value, "is not an option of SyslogSource")
            into = listener if declared.scope == "listener" else kwargs
            into[declared.attr] = declared.parse(value)
        kwargs["listener"] = ListenerOptions(**listener)
        return cls(**kwargs)


class SyslogSource(TwistedSource):
    """The ready-made source: listens where ``listen`` says and parses each message.

    See :class:`SourceOptions` for the options, and ``docs/syslog-ng.md``.
    """

    options: SourceOptions

    @staticmethod
    def generate_persist_name(options: Mapping[str, Any]) -> str:
        """Called by the daemon before ``init()``: a name from the listen option, so that two
        SyslogSources in one configuration do not collide (without it syslog-ng refuses to
        start: "conflicting persist-names", both being ``python-source(<class>)``)."""
        # unchecked: the daemon asks before init(), which reports a bad spec
        listen = optiontable.split_listen(options.get("listen", DEFAULT_LISTEN))
        return "syslogsrc(" + ",".join(listen) + ")"

    def configure(self, options: dict[str, Any]) -> None:
        self.options = SourceOptions.from_options(options)
        from syslogsrc.listen import parse_listen

        self._specs = [s for text in self.options.listen for s in parse_listen(text)]
        kinds = {s.transport for s in self._specs}
        # set_transport_name() overwrites TRANSPORT at every post: only right for one kind.
        self.transport_name = kinds.pop() if len(kinds) == 1 else None
        self._format = self.options.format
        self._time_zone = self.options.time_zone
        self._native = self.options.parser == "native"
        self._hybrid = self.options.parser == "hybrid"
        # the hybrid's pre-check depends on the date (ours and the daemon's, read once a minute)
        self.builder_ttl = 60.0 if self._hybrid else None
        #: format -> the shapes of frames the daemon's parser reads as ours (hybrid; at attach)
        self._c_shapes: dict[str, tuple[str, ...]] = {}
        self._daemon_today_until = 0.0  # when to ask the daemon's date again (monotonic)
        self._daemon_today_value: dt.date | None = None
        self.metrics_spec = self.options.metrics
        self.source_ip = self.options.source_ip
        self._stamp_read: Any = _no_stamp_known  # set at the first native parse (attach)

    def listener_names(self) -> list[str]:
        return [spec.text for spec in self._specs]

    def attach(self, reactor: Any) -> defer.Deferred[list[Any]]:
        if self._native and _STALE_CLOCK and self.sink is self:
            self._stamp_read = _stamp_shapes_read(self.parse_options)
        self._c_shapes = {}
        if _IN_DAEMON and self.sink is self:
            probe = LogMessage.parse(_stamp_carrier(dt.datetime.now(_UTC)), self.parse_options)
            self._msgformat_pair = bool(_value(probe, "MSGFORMAT"))
        if self._hybrid and _IN_DAEMON and self.sink is self:
            formats = {self._format} | {s.format for s in self._specs if s.format is not None}
            for fmt in sorted(formats):
                self._c_shapes[fmt] = self._shapes_read_alike(fmt)
            self.logger.info(
                "syslogsrc: parser hybrid: the daemon's parser for "
                + "; ".join(
                    f"format {fmt}: {', '.join(names) or 'no frame'}"
                    for fmt, names in sorted(self._c_shapes.items())
                )
            )
        return super().attach(reactor)

    def _frame_test(self, names: tuple[str, ...]) -> _daemon_parse.FrameTest:
        """The hybrid's pre-check for the shapes ``names``, as of today by our clock and the
        daemon's."""
        daemon_today = self._daemon_today()
        if daemon_today is None:  # the daemon's date unknown: its year of BSD stamps too
            names = tuple(n for n in names if n != "rfc3164-bsd")
        return _daemon_parse.frame_test(names, _today(), daemon_today)

    def _daemon_today(self) -> dt.date | None:
        """The date of the daemon's clock as its parser sees it (stale in a Python source's
        thread: it decides the year of BSD stamps), asked at most once a minute."""
        now = time.monotonic()
        if now >= self._daemon_today_until:
            self._daemon_today_until = now + 60.0
            try:
                probe = LogMessage.parse(b"<13>probe", self.parse_options)
                self._daemon_today_value = dt.date.fromisoformat(
                    _value(probe, "R_ISODATE")[:10].decode()
                )
            except Exception:  # no date to read: no BSD stamp for the daemon's parser
                self._daemon_today_value = None
        return self._daemon_today_value

    def _shapes_read_alike(self, fmt: str) -> tuple[str, ...]:
        """The shapes of frames (:mod:`syslogsrc._daemon_parse`) that the daemon's parser,
        with this driver's parse options, reads as ours does in format ``fmt``: each tried on
        probe frames, once."""
        if fmt == "auto":
            wanted: tuple[str, ...] = _daemon_parse.SHAPES
        elif fmt == "rfc3164":
            wanted = tuple(n for n in _daemon_parse.SHAPES if n.startswith("rfc3164"))
        elif fmt == "rfc5424":
            wanted = ("rfc5424",)
        else:  # json, raw: the daemon has no such parser
            wanted = ()
        if self._time_zone is not None:  # ours reads stamps without offset in another zone
            wanted = tuple(n for n in wanted if n not in _daemon_parse.LOCAL_SHAPES)
        alike = []
        for name, frames in _daemon_parse.probes().items():
            if name not in wanted:
                continue
            try:
                if all(self._read_alike(frame, fmt) for frame in frames):
                    alike.append(name)
            except Exception as exc:  # a probe the daemon refuses: not known to be read alike
                self.logger.debug(f"syslogsrc: probe of {name} failed: {exc!r}")
        return tuple(alike)

    def _read_alike(self, frame: bytes, fmt: str) -> bool:
        """Whether both parsers make the same message of ``frame``, as far as the daemon's
        parse options can change it (fields, stamp, PRI, tags, raw message)."""
        mine = self._parsed_message(parse(frame, fmt, time_zone=self._time_zone))
        theirs = LogMessage.parse(frame, self.parse_options)
        names = [*_PROBED_NAMES, *(n for n in _probe_sd_names(frame))]
        for name in names:
            a, b = _probe_value(mine, name), _probe_value(theirs, name)
            if a != b:
                self.logger.debug(
                    f"syslogsrc: parser hybrid: {name} differs for {frame!r}: {a!r} (ours) != {b!r}"
                )
                return False
        get_timestamp = getattr(theirs, "get_timestamp", None)
        if get_timestamp is not None and get_timestamp() != mine.get_timestamp():
            return False
        return True

    def listeners(self, reactor: Any) -> list[Any]:
        from syslogsrc.listen import make_listener

        return [make_listener(s, reactor, self.sink, self.options.listener) for s in self._specs]

    def builder(self, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
        if (
            type(self).build_message is SyslogSource.build_message
            and type(self).annotate is TwistedSource.annotate
        ):
            if self._native and origin.format is None:
                return self._native_builder(origin)
            if self._c_shapes:
                return self._hybrid_builder(origin)
        return super().builder(origin)

    def _hybrid_builder(self, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
        """The hybrid parser for one batch from ``origin``: the daemon's parser for a frame
        of a shape it reads as ours (:mod:`syslogsrc._daemon_parse`, one regex), ours for any
        other; then what :meth:`annotate` adds, decided here for the origin."""
        fmt = origin.format or self._format
        names = self._c_shapes.get(fmt, ())
        if not names:
            return functools.partial(self.build_message, origin=origin)
        read_alike = self._frame_test(names)
        c_parse = LogMessage.parse
        parse_options = self.parse_options
        ours = parse
        time_zone = self._time_zone
        pairs = origin.pairs
        transport = origin.transport if self._transport_pair else None
        host = origin.peer_host
        port = origin.peer_port or 0
        set_source_ip = self._set_source_ip and host is not None
        peer_pairs = not self._set_source_ip and host is not None
        port_text = str(port)
        message_from = self.message_from

        def build(frame: bytes | ParsedMessage) -> Any:
            if type(frame) is not bytes:
                return message_from(frame, origin, len(frame.pairs.get("MESSAGE", "")))
            # A datagram's trailing LF (or NUL, CR LF) is no part of the message for either
            # parser (ours drops it first): the daemon's is given the frame without it.
            bare = _strip_trailer(frame) if frame[-1:] in b"\n\0" else frame
            if not (read_alike(bare) and (bare.isascii() or _is_utf8(bare))):
                return message_from(ours(frame, fmt, time_zone=time_zone), origin, len(frame))
            msg = c_parse(bare, parse_options)
            if pairs:
                for name, value in pairs.items():
                    msg[name] = value
            if transport is not None:
                msg["TRANSPORT"] = transport
            if set_source_ip:
                msg.set_source_ipaddress(host, port)
            elif peer_pairs:
                msg["PEERIP"] = host
                msg["PEERPORT"] = port_text
            if _RAWMSG_SIZE:
                msg.set_recvd_rawmsg_size(len(frame))
            return msg

        return build

    def _native_builder(self, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
        """:meth:`build_message` with the daemon's parser and :meth:`annotate` in one function
        made for ``origin``, with what depends on the origin and the version decided here:
        per message one Python call, and the calls into the daemon the message needs."""
        parse = LogMessage.parse
        parse_options = self.parse_options
        stamp_read = self._stamp_read
        pairs = origin.pairs
        transport = origin.transport if self._transport_pair else None
        host = origin.peer_host if self.source_ip != "none" else None
        port = origin.peer_port or 0
        set_source_ip = self._set_source_ip and host is not None
        peer_pairs = not self._set_source_ip and host is not None
        port_text = str(port)
        message_from = self.message_from

        def build(frame: bytes | ParsedMessage) -> Any:
            if type(frame) is not bytes:
                return message_from(frame, origin, len(frame.pairs.get("MESSAGE", "")))
            msg = parse(frame, parse_options)
            if _STALE_CLOCK and not stamp_read(frame):
                _restamp_if_stampless(msg)
            if pairs:
                for name, value in pairs.items():
                    msg[name] = value
            if transport is not None:
                msg["TRANSPORT"] = transport
            if set_source_ip:
                msg.set_source_ipaddress(host, port)
            elif peer_pairs:
                msg["PEERIP"] = host
                msg["PEERPORT"] = port_text
            if _RAWMSG_SIZE:
                msg.set_recvd_rawmsg_size(len(frame))
            return msg

        return build

    def build_message(self, message: bytes | ParsedMessage, origin: Origin) -> Any:
        if type(message) is not bytes:
            return self.message_from(message, origin, len(message.pairs.get("MESSAGE", "")))
        fmt = origin.format
        names = self._c_shapes.get(fmt or self._format) if self._c_shapes else None
        bare = _strip_trailer(message) if message[-1:] in b"\n\0" else message
        if names and _daemon_parse.accepts(self._frame_test(names), bare):
            # hybrid: the same decision as _hybrid_builder's
            msg = LogMessage.parse(bare, self.parse_options)
            self.annotate(msg, origin, len(message))
            return msg
        if self._native and fmt is None:
            msg = LogMessage.parse(message, self.parse_options)
            # asked only of frames whose stamp the daemon may not have read
            if _STALE_CLOCK and not self._stamp_read(message):
                _restamp_if_stampless(msg)
            self.annotate(msg, origin, len(message))
            return msg
        parsed = parse(message, fmt or self._format, time_zone=self._time_zone)
        return self.message_from(parsed, origin, len(message))

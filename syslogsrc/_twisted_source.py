"""The base of every Twisted-based source: :class:`TwistedSource`, the contract between
syslog-ng's ``LogSource``, a reactor and the listeners' sink.

What it guarantees, following the contracts of docs/architecture.md and the design card:

1. ``run()`` runs in a daemon thread that is not the main one; ``request_exit()``, ``init()`` and
   ``deinit()`` come from the main thread; every protocol callback, and so every
   ``post_message()``, runs in the ``run()`` thread.
2. Each ``run()`` makes a fresh reactor (:mod:`syslogsrc._reactors`), runs it without signal
   handlers, closes every listener and connection before returning and releases the reactor's
   descriptors. ``request_exit()`` before or during start-up still ends ``run()``.
3. Flow control is non-blocking: ``suspend()`` pauses every producer and nothing more is posted;
   ``wakeup()`` arrives from another thread and resumes through ``callFromThread`` (the rules
   for the daemon's stale wakeups are in :mod:`syslogsrc._posting`).
4. Features are asked of ``syslogsrc.runtime.FEATURES``, once, never assumed.

The class is assembled from four parts: this module (the lifecycle: ``init()``, ``run()``,
``request_exit()``, ``attach()``/``detach()``, the listeners and metrics),
:mod:`syslogsrc._posting` (the :class:`~syslogsrc.interfaces.IMessageSink` ``post()`` and flow
control), :mod:`syslogsrc._source_handover` (what a reload hands over) and
:mod:`syslogsrc._building` (one message into a ``LogMessage``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from typing import Any, ClassVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger as TwistedLogger
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from syslogsrc import runtime
from syslogsrc._acks import AckRouter
from syslogsrc._building import MessageBuilding
from syslogsrc._daemon_time import DAEMON_3X
from syslogsrc._logbridge import bridge
from syslogsrc._posting import Posting
from syslogsrc._reactors import new_reactor, release_reactor
from syslogsrc._source_handover import Backlog, HandOver
from syslogsrc.interfaces import IAcknowledgingSink, IMessageSink, ListenerStats, Origin
from syslogsrc.options import OptionError
from syslogsrc.producers import ProducerSet
from syslogsrc.protocols._ratelimit import RateLimitedLog
from syslogsrc.runtime import FEATURES, Logger, LogSource

__all__ = ["TwistedSource"]

_log = TwistedLogger(namespace="syslogsrc.source")
#: the daemon has ``LogMessage.set_source_ipaddress()`` (4.x)
_SET_SOURCE_IP = FEATURES.set_source_ipaddress
#: ``LogMessage.set_source_ipaddress()`` leaks the address it makes, about 44 bytes a call, in
#: every version that has it (3.38.1 has not; 4.8.1 and AxoSyslog up to bf5bd70a1, December
#: 2026: modules/python/python-logmsg.c makes a GSockAddr, log_msg_set_saddr() takes a reference
#: of its own, the first one is never dropped). So the daemon's is called only when a source asks
#: for it (``source-ip saddr``); the emulation's does not leak, and hosted sources always get it.
_SOURCE_IP_LEAKS = FEATURES.in_daemon


def _no_log(*args: Any, **kwargs: Any) -> None:
    """Before a reactor is attached there is nothing to report with."""


@implementer(IMessageSink)
class TwistedSource(Posting, HandOver, MessageBuilding, LogSource):
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
        self._build_errors: Any = _no_log  # set for each reactor (attach)
        #: at the end of run() the listening sockets, connections and frames not posted go
        #: to the next instance of the same persist name (a reload: in the daemon, or in
        #: syslogsrc-host); see syslogsrc.handover and docs/syslog-ng.md
        self.hand_over = True
        self._claimed: dict[str, Any] = {}  # what the previous instance left us (init)
        self._deposited: str | None = None  # the persist name we left things under
        self._backlog: Backlog | None = None  # frames the previous instance left, posting
        #: some listener answers its senders once their messages are stored (RELP,
        #: ``http-ack``): set by :meth:`configure`; init() then sets an ack tracker
        self.acknowledging = False
        self._acks: AckRouter | None = None
        self._bookmarking = False  # an ack tracker is set: every message gets a bookmark

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
        # Read by the daemon after init(): one batch per read / sender's datagrams of a wake-up /
        # request instead.
        self.auto_close_batches = False
        if self.acknowledging:
            # Read by the daemon after init() too. The router reaches whichever instance of
            # this persist name runs when the destination acknowledges (a reload's next one).
            self._acks = AckRouter(self._handover_name())
            self.ack_tracker = self._acks.tracker(runtime)
            self._bookmarking = True
            alsoProvides(self, IAcknowledgingSink)
        if self.hand_over:
            self._claim()
        return True

    def listeners(self, reactor: Any) -> Iterable[Any]:
        """What to listen on: objects with ``start() -> Deferred`` and ``stop() -> Deferred``
        (see :func:`syslogsrc.listen.make_listener`), made for ``reactor`` with ``self`` as the
        sink."""
        raise NotImplementedError

    # -- the run() thread ---------------------------------------------------------------------
    def run(self) -> None:
        reactor = new_reactor()
        with self._lock:
            if self._exit_requested:
                release_reactor(reactor)
                return
            self._reactor = reactor
            self._own_reactor = True
        bridge.acquire()
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
            if self._acks is not None:
                self._acks.detach(reactor)  # what comes now waits for the next instance
            release_reactor(reactor)
            bridge.release()
            self._log_summary()

    def _start_in_own_reactor(self) -> None:
        d = self.attach(self._reactor)
        d.addErrback(self._log_failure, "starting the listeners")

    def request_exit(self) -> None:
        """From the main thread, any time: before, during or after ``run()`` starts."""
        with self._lock:
            self._exit_requested = True
            # 4.x calls wakeup() next, in this thread, whatever the window (flow control, rule 3)
            self._exit_wakeup_from = None if DAEMON_3X else threading.get_ident()
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
            stalled = now - progress[1] >= self.drain_stall or (DAEMON_3X and self._suspended)
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

    # -- attached to somebody else's reactor ------------------------------------------------
    def attach(self, reactor: Any) -> defer.Deferred[list[Any]]:
        """Start listening on ``reactor`` (which someone else runs, or ``run()``'s own). Fires
        with the listeners once all are listening; a listener that fails is logged and the
        others keep serving."""
        if not IReactorCore.providedBy(reactor):
            raise TypeError("attach() needs a reactor")
        self._reactor = reactor
        self._exit_requested = False
        if self._acks is not None:
            self._acks.attach(reactor)
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
            logger=_log,
        )
        self._listeners = list(self.listeners(reactor))
        claimed = self._take_over()
        # Messages built and dropped by the daemon go first: each was the first in line of its
        # connection, whose frames the adopted connection posts at once.
        for state in claimed.values():
            self._held.extend((msg, self._our_origin(origin)) for msg, origin in state.messages)
            state.messages = []
        if self._held and not self._suspended:
            self._post_held()
        started = []
        # Over a copy: a listener that fails at once (a UDP port in use) is removed from
        # self._listeners by its errback, inside this loop, and every other one must still start.
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
            origin.stats.dropped += 1

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


def _chain(d: defer.Deferred[Any]) -> defer.Deferred[None]:
    """A new Deferred that fires when ``d`` does, leaving ``d``'s result alone."""
    out: defer.Deferred[None] = defer.Deferred()

    def fire(result: object) -> object:
        out.callback(None)
        return result

    d.addBoth(fire)
    return out

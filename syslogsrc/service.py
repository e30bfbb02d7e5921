"""syslogsrc without syslog-ng: the ``twistd syslogsrc`` service and the embedding API.

No ``LogMessage`` and no emulation on this path: protocols hand their batches to a sink of
:mod:`syslogsrc.sinks`, which parses each frame once and hands the parsed message on.

* :class:`SourceService` runs :class:`~syslogsrc.source.SyslogSource` *attached* to the reactor
  that twistd (or an application) runs — no second reactor — with an
  :class:`~syslogsrc.sinks.OutputSink` as its sink: messages are rendered in the reactor's
  thread and written by a writer thread, a batch at a time. When more than ``log-iw-size``
  messages wait for the output, streams pause and HTTP answers 503, as inside the daemon. At
  stop the listeners close first (what they still hold is taken), then everything taken is
  written and flushed.
* :class:`SyslogService` is for applications: ``SyslogService(listen=[...], sink=...)``, whose
  sink is a callable ``sink(message, origin)`` (a parsed :class:`~syslogsrc.parsing.ParsedMessage`
  and its :class:`~syslogsrc.interfaces.Origin`) or any
  :class:`~syslogsrc.interfaces.IMessageSink`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import ILogObserver, textFileLogObserver
from twisted.logger import Logger as TwistedLogger
from twisted.python import usage
from twisted.python.components import Componentized

from syslogsrc import optiontable
from syslogsrc.host import SourceInitError, normalise_options
from syslogsrc.interfaces import IMessageSink, Origin
from syslogsrc.listen import make_listener, parse_listen
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.outputs import Output, Received, open_output
from syslogsrc.parsing import FORMATS, ParsedMessage
from syslogsrc.sinks import CallbackSink, OutputSink
from syslogsrc.source import DEFAULT_LISTEN, SourceOptions, SyslogSource

__all__ = ["Options", "SourceService", "SyslogService", "makeService"]

_log = TwistedLogger(namespace="syslogsrc.service")


def _reactor_or_global(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


class _StatsLogger:
    """The opt-in periodic stats line and the summary at stop, per listener."""

    def __init__(self, stats: Callable[[], Iterable[Any]], interval: float, reactor: Any) -> None:
        self.stats = stats
        self.loop: task.LoopingCall | None = None
        if interval > 0:
            self.loop = task.LoopingCall(self.log, "stats")
            self.loop.clock = reactor
            self.loop.start(interval, now=False)

    def log(self, what: str) -> None:
        for s in self.stats():
            counts = s.as_dict()
            del counts["name"]
            # received, posted and dropped first (how messages went), then every other counter
            # ListenerStats has, so a new counter shows up here without a change
            first = {k: counts.pop(k) for k in ("received", "posted", "dropped")}
            line = " ".join(f"{k}={v}" for k, v in {**first, **counts}.items())
            _log.info("{what} {name}: {counts}", what=what, name=s.name, counts=line)

    def stop(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.log("summary")


class SourceService(service.Service):
    """Runs a :class:`~syslogsrc.source.SyslogSource` attached to the given reactor (no second
    reactor, no thread for it), its messages parsed once and written to ``output``.

    The source makes and manages the listeners (its options, TLS reloading, metrics, counters);
    its sink is an :class:`~syslogsrc.sinks.OutputSink`, so no ``LogMessage`` is built: each
    batch a protocol hands over is parsed, rendered and given to the output's writer thread.

    :param options: the source's ``options()``, as in a syslog-ng configuration.
    :param output: where messages go (see :mod:`syslogsrc.outputs`).
    :param log_iw_size: how many messages may wait for the output before the listeners pause.
    :param keep_hostname: keep ``HOST`` from the message (else the sender's address).
    :param stats_interval: seconds between stats lines in the log; 0 = only the summary at stop.
    :param output_fsync: acknowledge messages (RELP, HTTP acknowledgement mode) only once the
        output is fsync'ed.
    """

    name = "syslogsrc"

    def __init__(
        self,
        options: Mapping[str, Any],
        output: Output,
        *,
        log_iw_size: int = 1000,
        keep_hostname: bool = True,
        stats_interval: float = 0,
        output_fsync: bool = False,
        reactor: Any = None,
    ) -> None:
        self.options = dict(options)
        self.output_fsync = output_fsync
        self.output = output
        self.log_iw_size = log_iw_size
        self.keep_hostname = keep_hostname
        self.stats_interval = stats_interval
        self.reactor = reactor
        self.source: SyslogSource | None = None
        self.sink: OutputSink | None = None
        self._stats: _StatsLogger | None = None
        self._previous_hup: Any = None
        #: twistd: log to stderr, not stdout (set by :func:`makeService` when messages go to
        #: stdout)
        self.log_to_stderr = False

    def startService(self) -> None:
        reactor = self.reactor = _reactor_or_global(self.reactor)
        source = self.source = SyslogSource()
        if not source.init(normalise_options(self.options)):
            raise SourceInitError(f"syslogsrc: the options were refused: {self.options!r}")
        self.output.received = Received(keep_hostname=self.keep_hostname)
        sink = self.sink = OutputSink(
            self.output,
            reactor,
            format=source.options.format,
            time_zone=source.options.time_zone,
            high_water=self.log_iw_size,
            sync=self.output_fsync,
        )
        source.sink = sink
        source.attach(reactor)
        self._stats = _StatsLogger(lambda: source.listener_stats, self.stats_interval, reactor)
        if threading.current_thread() is threading.main_thread():
            self._previous_hup = signal.signal(
                signal.SIGHUP, lambda *_: reactor.callFromThread(self._hup)
            )
        super().startService()

    def setServiceParent(self, parent: Any) -> None:
        if self.log_to_stderr and isinstance(parent, Componentized):
            # twistd's application: the log observer it finds there replaces its default one
            # (twisted.application.app.AppLogger.start)
            parent.setComponent(ILogObserver, textFileLogObserver(sys.stderr))
        super().setServiceParent(parent)

    def _hup(self) -> None:
        """SIGHUP: reopen the output (logrotate) and re-read the TLS files (certificate
        rotation); neither closes a connection."""
        if self.sink is not None and hasattr(self.output, "reopen"):
            _log.info("SIGHUP: reopening the output")
            self.sink.reopen()
        reload_tls = getattr(self.source, "reload_tls", None)
        if reload_tls is not None:
            results = reload_tls()
            if results:
                _log.info(
                    "SIGHUP: TLS files of {taken} of {total} listener(s) reloaded",
                    taken=sum(results),
                    total=len(results),
                )

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self.source is None or self.sink is None:
            return
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
        # What the connections hold, and what they read while closing, is taken, not dropped
        self.sink.drain()
        yield self.source.detach()
        if self._stats is not None:
            self._stats.stop()
        # everything taken is written and flushed before the process exits
        yield self.sink.close()
        self.source.deinit()


# --------------------------------------------------------------------------------------------
# embedding


class SyslogService(service.Service):
    """Listeners for an application: ``SyslogService(listen=["tcp:5514"], sink=print)``.

    :param listen: listener specs (see ``docs/listeners.md``).
    :param sink: a callable ``sink(message, origin)`` or an ``IMessageSink``. A callable
        that returns a ``Deferred`` acknowledges a message (RELP, HTTP acknowledgement mode)
        when it fires.
    :param options: the listeners' :class:`~syslogsrc.options.ListenerOptions`.
    :param format: how frames are parsed for a callable sink.
    """

    def __init__(
        self,
        listen: Iterable[str],
        sink: Callable[[ParsedMessage, Origin], Any] | IMessageSink,
        *,
        options: ListenerOptions | None = None,
        format: str = "auto",
        reactor: Any = None,
    ) -> None:
        if format not in FORMATS:
            raise OptionError("format", format, f"must be one of {', '.join(FORMATS)}")
        self.specs = [s for text in listen for s in parse_listen(text)]
        self.sink = sink if IMessageSink.providedBy(sink) else CallbackSink(sink, format)
        self.options = options or ListenerOptions()
        self.reactor = reactor
        self.listeners: list[Any] = []

    def startService(self) -> defer.Deferred[Any]:  # type: ignore[override]
        super().startService()
        reactor = self.reactor = _reactor_or_global(self.reactor)
        if isinstance(self.sink, CallbackSink) and self.sink.reactor is None:
            self.sink.reactor = reactor  # acknowledgements in the reactor's next turn
        self.listeners = [make_listener(s, reactor, self.sink, self.options) for s in self.specs]
        return defer.gatherResults([defer.maybeDeferred(lis.start) for lis in self.listeners])

    def stopService(self) -> defer.Deferred[Any]:  # type: ignore[override]
        super().stopService()
        return defer.DeferredList([defer.maybeDeferred(lis.stop) for lis in self.listeners])

    @property
    def stats(self) -> list[Any]:
        return [lis.stats for lis in self.listeners]


# --------------------------------------------------------------------------------------------
# twistd syslogsrc

#: twistd's flags: every option the table gives to twistd, but ``listen`` (``--listen``,
#: repeatable); source and listener options go to SourceOptions as given
_FLAGS = [o for o in optiontable.OPTIONS if "twistd" in o.drivers and o.name != "listen"]


class Options(usage.Options):
    """``twistd syslogsrc`` flags: every SyslogSource option under its own name."""

    synopsis = "[--listen SPEC]... [--output PATH|-] [source options]"
    longdesc = (
        "Receive syslog over TCP, TLS, unix sockets, UDP and HTTP and write JSON lines. "
        f"Default listeners: {' '.join(DEFAULT_LISTEN)} (loopback only)."
    )
    optParameters = [
        [o.name, "o" if o.name == "output" else None, o.default_text(), o.help] for o in _FLAGS
    ]
    optFlags = [
        ["replace-hostname", None, "the same as --keep-hostname no"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, spec: str) -> None:
        """a listener spec (repeatable), e.g. tcp:5514, udp:5514:interface=::1, http:8080"""
        self["listen"].append(spec)

    opt_l = opt_listen

    def postOptions(self) -> None:
        source_options: dict[str, Any] = {"listen": " ".join(self["listen"] or DEFAULT_LISTEN)}
        #: the output options' values (output, output-format, log-iw-size, ...)
        self.output_options: dict[str, Any] = {}
        try:
            for o in _FLAGS:
                if o.scope != "output":
                    if self[o.name] is not None:
                        source_options[o.name] = self[o.name]
                elif self[o.name] is not None:
                    self.output_options[o.attr] = o.parse(self[o.name])
            SourceOptions.from_options(source_options)
        except OptionError as exc:
            raise usage.UsageError(str(exc)) from exc
        if self["replace-hostname"]:
            self.output_options["keep_hostname"] = False
        self.source_options = source_options


def _twistd_logs_to_stdout(options: usage.Options) -> bool:
    """True when twistd, as started, would write its own log lines to stdout: ``-n`` without
    ``--logfile``, ``--syslog`` or ``--logger`` (its default)."""
    server = getattr(options, "parent", None)  # twistd's ServerOptions
    if server is None:
        return False
    return bool(
        server.get("nodaemon")
        and not server.get("logfile")
        and not server.get("syslog")
        and not server.get("logger")
    )


def makeService(options: Options) -> SourceService:
    """The twistd entry point."""
    out = options.output_options
    output = open_output(out["output"], out["output_format"], non_utf8=out["output_non_utf8"])
    service = SourceService(
        options.source_options,
        output,
        log_iw_size=out["log_iw_size"],
        keep_hostname=out["keep_hostname"],
        stats_interval=out["stats_interval"],
        output_fsync=out["output_fsync"],
    )
    # Messages to stdout and twistd's log to stdout would interleave two formats in one
    # stream (`twistd -n syslogsrc | jq` would break at the first log line): stdout is
    # the messages', the log goes to stderr.
    service.log_to_stderr = out["output"] == "-" and _twistd_logs_to_stdout(options)
    return service

"""Logs of conditions that can recur thousands of times a second, at most a line per interval.

:class:`RateLimitedLog` is how every listener, sink and source reports a condition that a
sender can make recur without bound (refusals, TLS failures, framing errors, sink errors, build
errors) without flooding the log: a line per interval with a count, the first at once, none left
unsaid. :class:`RateLimitedLogs` keeps one per cause, for a listener whose causes are many.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = ["LOG_INTERVAL", "RateLimitedLog", "RateLimitedLogs", "sink_error_log"]

#: Seconds between two log lines about the same recurring condition of one listener.
LOG_INTERVAL = 10.0

_log = Logger(namespace="syslogsrc.listen")


class RateLimitedLog:
    """Log a recurring condition at most once per ``interval`` seconds, with a count.

    Each call counts one occurrence. The first one is logged at once; later ones within
    ``interval`` of the last line are held, and logged together when that interval ends (a
    timer), so a lone late occurrence is never left unsaid until another comes. Each line says
    what is true of the occurrences it reports. Fields available to ``format``, besides the
    constructor's and the call's own:

    ``{count}``
        occurrences reported by this line (since the previous line);
    ``{span}``
        ``" in the last 37.2s"``: the time since the previous line, which covers them all;
        empty on the first line (one occurrence, now);
    ``{repeats}``
        empty for a single occurrence, else ``" (3 times in the last 37.2s)"``: for formats
        that describe one occurrence (the latest).

    :meth:`flush` logs what is held and cancels the timer (call it when the listener stops).
    """

    def __init__(
        self,
        clock: IReactorTime,
        format: str,
        *,
        level: LogLevel = LogLevel.warn,
        interval: float = LOG_INTERVAL,
        logger: Logger = _log,
        **fields: Any,
    ) -> None:
        self._clock = clock
        self._format = format
        self._level = level
        self._interval = interval
        self._logger = logger
        self._fields = fields
        self._last: float | None = None  # when the previous line was logged
        self._latest: tuple[Failure | None, dict[str, Any]] = (None, {})
        self._due: IDelayedCall | None = None
        self.count = 0  #: occurrences not logged yet
        self.total = 0  #: occurrences ever

    def __call__(self, failure: Failure | None = None, **fields: Any) -> None:
        self.count += 1
        self.total += 1
        now = self._clock.seconds()
        last = self._last
        if last is not None and now - last < self._interval:
            self._latest = (failure, fields)
            if self._due is None:
                self._due = self._clock.callLater(last + self._interval - now, self._on_due)
            return
        self._emit(now, failure, fields)

    def flush(self) -> None:
        """Log the occurrences not logged yet, if any; nothing stays scheduled."""
        self._cancel()
        if self.count:
            failure, fields = self._latest
            self._emit(self._clock.seconds(), failure, fields)

    def _on_due(self) -> None:
        self._due = None
        if self.count:
            failure, fields = self._latest
            self._emit(self._clock.seconds(), failure, fields)

    def _cancel(self) -> None:
        if self._due is not None:
            if self._due.active():
                self._due.cancel()
            self._due = None

    def _emit(self, now: float, failure: Failure | None, fields: dict[str, Any]) -> None:
        self._cancel()
        count = self.count
        span = "" if self._last is None else f" in the last {now - self._last:.1f}s"
        repeats = "" if count == 1 else f" ({count} times{span})"
        values = {**self._fields, **fields, "count": count, "span": span, "repeats": repeats}
        if failure is not None:
            self._logger.failure(self._format, failure, level=self._level, **values)
        else:
            self._logger.emit(self._level, self._format, **values)
        self.count = 0
        self._last = now
        self._latest = (None, {})


class RateLimitedLogs:
    """One :class:`RateLimitedLog` per cause, made at the cause's first occurrence: for a
    listener whose conditions are many and each described by its own format (HTTP refusals)."""

    def __init__(
        self, clock: IReactorTime, *, interval: float = LOG_INTERVAL, logger: Logger = _log
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._logger = logger
        self._by_cause: dict[str, RateLimitedLog] = {}

    def emit(
        self,
        level: LogLevel,
        cause: str,
        format: str,
        failure: Failure | None = None,
        **fields: Any,
    ) -> None:
        """One occurrence of ``cause``, described by ``format`` (its latest occurrence is what
        a held line shows; ``{repeats}`` is appended to say how many it stands for)."""
        log = self._by_cause.get(cause)
        if log is None:
            log = self._by_cause[cause] = RateLimitedLog(
                self._clock,
                format + "{repeats}",
                level=level,
                interval=self._interval,
                logger=self._logger,
                cause=cause,
            )
        log(failure, **fields)

    def flush(self) -> None:
        for log in self._by_cause.values():
            log.flush()


def sink_error_log(clock: IReactorTime, listener: str) -> RateLimitedLog:
    """The log of a listener's sink errors, which a :class:`~syslogsrc.producers.Backlog`'s
    ``on_error`` reports to: a sink that raised lost the batch it was given; logged with the
    failure, at most once per interval."""
    return RateLimitedLog(
        clock,
        "{listener}: the sink raised {count} time(s){span};"
        " the messages it was given were dropped (last from {peer})",
        level=LogLevel.error,
        listener=listener,
    )

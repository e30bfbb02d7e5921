"""Twisted's log events into the daemon's internal log (``syslogng.Logger``).

Inside syslog-ng nothing else reads Twisted's log: a source's warnings, errors and failures
(a listener that cannot bind, a protocol that raised) reach the operator only through this
bridge. Outside the daemon ``Logger`` is the emulation's, which writes to Python's logging.
"""

from __future__ import annotations

import threading
from typing import Any

from twisted.logger import (
    ILogObserver,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
)
from zope.interface import implementer

from syslogsrc.runtime import FEATURES, Logger

__all__ = ["LogBridge", "bridge"]


@implementer(ILogObserver)
class LogBridge:
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
                    begin_logging_once()

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                globalLogPublisher.removeObserver(self)


bridge = LogBridge()
_logging_begun = False


def begin_logging_once() -> None:
    global _logging_begun
    if not _logging_begun:
        _logging_begun = True
        globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)

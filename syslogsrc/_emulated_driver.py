"""The daemon's side of the emulation: :class:`SourceDriver`, what syslog-ng's C code does around
one Python source instance (the thread check, the window of ``log-iw-size``, blocking or
suspend/wakeup mode, batches, acknowledgements), and the daemon's texts for what it refuses.
Exported by :mod:`syslogsrc.emulation`, used by :mod:`syslogsrc.host`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from syslogsrc._emulated_acks import ConsecutiveAckTracker
from syslogsrc._emulated_message import LogMessage

if TYPE_CHECKING:
    from syslogsrc.emulation import LogSource

__all__ = [
    "BATCH_THREAD_ERROR",
    "BOOKMARK_ERROR",
    "DROP_ERROR",
    "MISSING_BOOKMARK_ERROR",
    "NOT_A_MESSAGE_ERROR",
    "THREAD_ERROR",
    "SourceDriver",
]

_log = logging.getLogger("syslogng")

#: the daemon's texts, so that logs and exceptions read the same in and out of syslog-ng
THREAD_ERROR = "post_message must be called from main thread"
BATCH_THREAD_ERROR = "close_batch() must be called from main thread"
NOT_A_MESSAGE_ERROR = "LogMessage expected in the first parameter"
BOOKMARK_ERROR = (
    "Bookmarks can not be used without creating an AckTracker instance (self.ack_tracker)"
)
MISSING_BOOKMARK_ERROR = (
    "a source with an ack_tracker must set a bookmark on every message it posts "
    "(syslog-ng crashes on one without)"
)
DROP_ERROR = "Incorrectly suspended source, dropping message"


class SourceDriver:
    """What syslog-ng's C code does around one Python source instance.

    ``consumer(msg)`` receives every posted message when its batch is closed (it must not block
    for long: put it on a queue); the consumer's thread later calls :meth:`ack` once per
    message, which frees its window slot, fires ack trackers and, in suspend mode, calls
    ``wakeup()`` when the window has refilled. ``on_batch()`` is called for every closed batch.
    """

    def __init__(
        self,
        source: LogSource,
        *,
        log_iw_size: int = 100,
        consumer: Callable[[LogMessage], None],
        on_batch: Callable[[], None] | None = None,
        persist_name: str = "",
        keep_hostname: bool = False,
    ) -> None:
        if log_iw_size < 1:
            raise ValueError(f"log-iw-size must be >= 1, not {log_iw_size}")
        self.source = source
        self.window_size = log_iw_size
        self.free = log_iw_size
        self.consumer = consumer
        self.on_batch = on_batch or (lambda: None)
        self.persist_name = persist_name
        self.keep_hostname = keep_hostname
        # Looked up once, like the daemon (right after __init__, before init()).
        self.nonblocking = callable(getattr(source, "suspend", None))
        if self.nonblocking and not callable(getattr(source, "wakeup", None)):
            raise TypeError(f"{type(source).__name__} defines suspend() but not wakeup()")
        # 3.38.1 and 4.8.1 both call wakeup() on the first acknowledgement after suspend()
        # (tests/test_agreement.py, WakeupThreshold); axo HEAD waits for min(batch, iw/4).
        self.wakeup_threshold = 1
        self.run_thread: int | None = None
        self.exit_requested = False
        self.suspended = False
        self.auto_close_batches = True
        self.transport_name: str | None = None
        self.cond = threading.Condition()
        #: stands in for the GIL where the daemon's ordering depends on it (suspend/wakeup)
        self.gil = threading.RLock()
        self.open_batch: list[LogMessage] = []
        self.stats = {"posted": 0, "dropped": 0, "acked": 0, "batches": 0, "suspends": 0}
        self.hostname = socket.gethostname()
        source.__dict__["_driver"] = self

    # -- the run() thread's side -----------------------------------------------------------
    def post(self, msg: LogMessage) -> None:
        if threading.get_ident() != self.run_thread:
            raise RuntimeError(THREAD_ERROR)
        if not isinstance(msg, LogMessage):
            raise TypeError(NOT_A_MESSAGE_ERROR)
        with self.cond:
            if self.free <= 0:
                self.stats["dropped"] += 1
                _log.error(DROP_ERROR)
                return
            tracker = self.source.ack_tracker
            if msg._bookmark is not None and tracker is None:
                raise RuntimeError(BOOKMARK_ERROR)
            if msg._bookmark is None and tracker is not None:
                # The daemon's ack trackers dereference the bookmark of every tracked message:
                # 3.38.1 and 4.8.1 segfault (4.8.1's ConsecutiveAckTracker asserts) on one
                # without. Here it fails loudly instead (tests/test_agreement.py).
                raise RuntimeError(MISSING_BOOKMARK_ERROR)
            self.free -= 1
            self.stats["posted"] += 1
        self.track_bookmark(msg)
        self._apply_source_attributes(msg)
        msg._read_only = True
        # The daemon hands a message on only when its batch is closed (4.1+; at once before).
        self.open_batch.append(msg)
        if self.auto_close_batches:
            self.close_batch()
        if self.nonblocking:
            # Like the daemon: the window is looked at after the post (an acknowledgement may
            # have come meanwhile), and the check and suspend() happen under the GIL, which
            # wakeup() needs too, so a wakeup cannot slip in between.
            with self.gil:
                with self.cond:
                    empty = self.free <= 0
                    if empty:
                        self.suspended = True
                        self.stats["suspends"] += 1
                if empty:
                    self.source.suspend()  # type: ignore[attr-defined]
            return
        with self.cond:
            if self.free > 0:
                return
        # Blocking mode. 4.8.1 closes the batch before sleeping, so a manual batch cannot stall.
        self.close_batch()
        with self.cond:
            while self.free <= 0 and not self.exit_requested:
                self.cond.wait()

    def close_batch(self) -> None:
        if threading.get_ident() != self.run_thread:
            raise RuntimeError(BATCH_THREAD_ERROR)
        batch, self.open_batch = self.open_batch, []
        for msg in batch:
            self.consumer(msg)
        self.stats["batches"] += 1
        self.on_batch()

    def run_returned(self) -> int:
        """``run()`` has returned: what is left in an unclosed batch is lost (4.8.1 delivers none
        of it and aborts on shutdown). Returns how many messages that was."""
        lost, self.open_batch = len(self.open_batch), []
        if lost:
            self.stats["dropped"] += lost
            _log.error(
                "run() returned with %d messages in an unclosed batch (auto_close_batches is "
                "False and close_batch() was not called): syslog-ng 4.8.1 aborts on shutdown",
                lost,
            )
        return lost

    def _apply_source_attributes(self, msg: LogMessage) -> None:
        values = msg._values
        if self.transport_name is not None:
            values["TRANSPORT"] = self.transport_name.encode()
        # use-dns(no): HOST_FROM is the address itself, or the local host name without one
        values["HOST_FROM"] = (msg._source_ip or self.hostname).encode()
        if not self.keep_hostname or not values.get("HOST"):
            values["HOST"] = values["HOST_FROM"]

    # -- the consumer's side ---------------------------------------------------------------
    def ack(self, msg: LogMessage) -> None:
        """A message was delivered: free its slot (from any thread)."""
        with self.cond:
            before = self.free
            self.free += 1
            self.stats["acked"] += 1
            # Like the daemon, every climb of the window to the threshold wakes the source, and
            # the slot is freed first, without the GIL: by the time wakeup() has the GIL the
            # run() thread may have posted into the slot and been suspended again. Such a stale
            # wakeup() happens in both daemons (and, more rarely, here); a source must check.
            wake = self.nonblocking and before < self.wakeup_threshold <= self.free
            self.cond.notify_all()
        tracker = self.source.ack_tracker
        if msg._bookmark is not None and tracker is not None:
            if isinstance(tracker, ConsecutiveAckTracker):
                tracker._ack_seq(msg._bookmark[0])
            else:
                tracker._ack(msg._bookmark)
        if wake:
            with self.gil:
                self.suspended = False
                self.source.wakeup()  # type: ignore[attr-defined]

    def track_bookmark(self, msg: LogMessage) -> None:
        tracker = self.source.ack_tracker
        if msg._bookmark is not None and isinstance(tracker, ConsecutiveAckTracker):
            msg._bookmark = (tracker._track(msg._bookmark),)

    # -- the controlling thread's side ------------------------------------------------------
    def request_exit(self) -> None:
        with self.cond:
            self.exit_requested = True
            self.cond.notify_all()

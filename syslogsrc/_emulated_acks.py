"""The emulation's ack trackers (``syslogng.InstantAckTracker``, ``ConsecutiveAckTracker``,
``BatchedAckTracker``): how a source learns that the messages it posted were delivered.
:class:`~syslogsrc.emulation.SourceDriver` calls a tracker's ``_ack`` once per acknowledged
message and ``_close`` when the source stops. Exported by :mod:`syslogsrc.emulation`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["AckTracker", "BatchedAckTracker", "ConsecutiveAckTracker", "InstantAckTracker"]


class AckTracker:
    """The base of the trackers: the driver calls ``_ack(bookmark)`` for each message delivered
    and ``_close()`` once, when the source stops (a batched tracker flushes then)."""

    def _ack(self, bookmark: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _close(self) -> None:
        pass


class InstantAckTracker(AckTracker):
    """Calls ``ack_callback(bookmark_data)`` for each acknowledged message, in any order."""

    def __init__(self, ack_callback: Callable[[Any], None]) -> None:
        self._callback = ack_callback

    def _ack(self, bookmark: Any) -> None:
        self._callback(bookmark)


class ConsecutiveAckTracker(AckTracker):
    """Calls back with the newest bookmark whose predecessors are all acknowledged."""

    def __init__(self, ack_callback: Callable[[Any], None]) -> None:
        self._callback = ack_callback
        self._lock = threading.Lock()
        self._next_seq = 0  # sequence given to the next posted message
        self._acked: set[int] = set()
        self._first_unacked = 0
        self._bookmarks: dict[int, Any] = {}

    def _track(self, bookmark: Any) -> int:
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._bookmarks[seq] = bookmark
            return seq

    def _ack_seq(self, seq: int) -> None:
        newest = None
        with self._lock:
            self._acked.add(seq)
            while self._first_unacked in self._acked:
                self._acked.discard(self._first_unacked)
                newest = self._bookmarks.pop(self._first_unacked)
                self._first_unacked += 1
        if newest is not None:
            self._callback(newest)


class BatchedAckTracker(AckTracker):
    """Calls ``batched_ack_callback(list_of_bookmarks)`` every ``batch_size`` acks or
    ``timeout`` milliseconds, whichever comes first."""

    def __init__(
        self, timeout: int, batch_size: int, batched_ack_callback: Callable[[list[Any]], None]
    ) -> None:
        self._timeout = timeout / 1000.0
        self._batch_size = batch_size
        self._callback = batched_ack_callback
        self._lock = threading.Lock()
        self._batch: list[Any] = []
        self._timer: threading.Timer | None = None

    def _ack(self, bookmark: Any) -> None:
        with self._lock:
            self._batch.append(bookmark)
            if len(self._batch) < self._batch_size:
                if self._timer is None:
                    self._timer = threading.Timer(self._timeout, self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if batch:
            self._callback(batch)

    def _close(self) -> None:
        self._flush()

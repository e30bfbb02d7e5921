"""Acknowledgements from syslog-ng's destinations back to the protocols that wait for them.

Inside syslog-ng a source learns that a message was delivered through its ack tracker: the
daemon calls it, from a destination's or the main thread, with the bookmark each message was
posted with. A source whose listeners answer senders only once their messages are stored (RELP;
HTTP in acknowledgement mode) sets a ``BatchedAckTracker`` in ``init()`` and posts every
message with a bookmark: ``(acknowledge, token)`` for a message somebody waits for
(:meth:`~syslogsrc.interfaces.IAcknowledgingSink.post_tracked`), :data:`UNTRACKED` for the
others (the daemon's trackers dereference the bookmark of every message: 3.38.1 and 4.8.1 crash
on a message without one while a tracker is set).

The tracker's callback hands the acknowledgements to the reactor that runs the source *now*,
found by the source's persist name: after a reload that is the next instance's reactor (the
connections were handed over to it, :mod:`syslogsrc.handover`), and acknowledgements that come
while no instance runs wait for the next one. ``acknowledge`` itself must therefore reach
whichever protocol holds the connection then (the RELP protocol's receipts do), and is called
in that reactor's thread, once per token.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import Logger

__all__ = ["UNTRACKED", "AckRouter", "deliver"]

_log = Logger(namespace="syslogsrc.acks")

#: the bookmark of a message nobody waits for
UNTRACKED = 0

#: how long the daemon's BatchedAckTracker gathers acknowledgements before calling back (ms),
#: and how many make it call back at once: a RELP client's window (librelp: 128) fits in one
BATCH_TIMEOUT_MS = 5
BATCH_SIZE = 128

#: acknowledgements that arrived while no instance of a source ran (between a reload's old and
#: new run()): at most this many per source are kept for the next one; RELP windows bound them
MAX_WAITING = 100_000

_lock = threading.Lock()
_reactors: dict[str, Any] = {}  # persist name -> the reactor of the instance running now
#: persist name -> acknowledgements not delivered yet, in the order they came: taken in the
#: reactor's thread by the drain scheduled for them (:meth:`AckRouter._drain`). They stay here
#: until a running reactor takes them: a call handed to a reactor that stops before running it
#: (a reload) is lost with it, so the acknowledgements must not travel inside that call.
_waiting: dict[str, list[tuple[Any, Any]]] = defaultdict(list)


def deliver(acknowledged: Sequence[tuple[Callable[[Sequence[Any], bool], None], Any]]) -> None:
    """In a reactor's thread: ``acknowledge(tokens, True)`` once per callback, with its tokens
    in the order they came."""
    grouped: dict[Any, list[Any]] = {}
    for acknowledge, token in acknowledged:
        tokens = grouped.get(acknowledge)
        if tokens is None:
            grouped[acknowledge] = [token]
        else:
            tokens.append(token)
    for acknowledge, tokens in grouped.items():
        try:
            acknowledge(tokens, True)
        except Exception:
            _log.failure("an acknowledgement callback raised")


class AckRouter:
    """The acknowledgements of one source (by persist name), from the daemon's thread that
    acknowledges to the reactor of the instance that runs now.

    :param key: the source's persist name (the same for the instances a reload makes).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        #: acknowledgements delivered, and dropped because too many waited for an instance
        self.delivered = 0
        self.dropped = 0

    def tracker(self, runtime: Any) -> Any:
        """The ack tracker to set as the source's ``ack_tracker`` in ``init()``."""
        return runtime.BatchedAckTracker(BATCH_TIMEOUT_MS, BATCH_SIZE, self.acked)

    def attach(self, reactor: Any) -> None:
        """``reactor`` runs the source now (``run()`` started): acknowledgements go to it,
        those that waited first."""
        with _lock:
            _reactors[self.key] = reactor
            waiting = bool(_waiting.get(self.key))
        if waiting:
            reactor.callFromThread(self._drain, reactor)

    def detach(self, reactor: Any) -> None:
        """``reactor`` stopped (``run()`` ends): acknowledgements wait for the next instance,
        with those whose drain the stopped reactor did not run."""
        with _lock:
            if _reactors.get(self.key) is reactor:
                del _reactors[self.key]

    def acked(self, bookmarks: list[Any]) -> None:
        """The daemon's callback (any thread, the GIL held): keep what somebody waits for and
        have the reactor that runs the source now take it."""
        tracked = [b for b in bookmarks if b is not UNTRACKED and type(b) is tuple]
        if not tracked:
            return
        with _lock:
            reactor = _reactors.get(self.key)
            waiting = _waiting[self.key]
            scheduled = bool(waiting)  # a drain is on its way already (or waits for attach)
            if reactor is None:
                room = MAX_WAITING - len(waiting)
                if room < len(tracked):
                    self.dropped += len(tracked) - max(room, 0)
                    tracked = tracked[: max(room, 0)]
            waiting.extend(tracked)
        if reactor is not None and not scheduled:
            try:
                reactor.callFromThread(self._drain, reactor)
            except Exception:  # a reactor closing under us: attach() of the next one drains
                pass

    def _drain(self, reactor: Any) -> None:
        """In ``reactor``'s thread: deliver what waits, unless another reactor took over."""
        with _lock:
            if _reactors.get(self.key) is not reactor:
                return  # detached meanwhile: the next instance's attach() drains
            waiting = _waiting.pop(self.key, None)
        if waiting:
            self.delivered += len(waiting)
            deliver(waiting)


def forget(key: str) -> None:
    """Drop what waits for ``key`` and its reactor (tests start each case clean). Nothing in
    the daemon calls it: a source that is gone for good leaves at most :data:`MAX_WAITING`
    acknowledgements here until the process ends, and their senders send again."""
    with _lock:
        _waiting.pop(key, None)
        _reactors.pop(key, None)

"""The reactor of one ``run()``: made fresh, never installed, and closed completely.

syslog-ng calls ``run()`` again after every reload, in the same process: the global reactor
cannot run twice, so each ``run()`` gets a reactor object of its own, and gives back every
descriptor that reactor opened when it ends.
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_reactor", "release_reactor"]


def new_reactor() -> Any:
    """A fresh reactor object, not installed as ``twisted.internet.reactor``."""
    try:
        from twisted.internet.epollreactor import EPollReactor

        return EPollReactor()
    except ImportError:  # pragma: no cover - not Linux
        from twisted.internet.pollreactor import PollReactor

        return PollReactor()


def release_reactor(reactor: Any) -> None:
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

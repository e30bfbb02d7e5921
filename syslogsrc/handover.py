"""What a stopping source instance hands to the next one: a reload inside syslog-ng.

A reload inside syslog-ng ends every source's ``run()``, calls its ``deinit()``, makes a new
instance of each source of the new configuration and calls its ``init()``; only then is the old
instance finalized and the new ``run()`` started (observed in 3.38.1 and 4.8.1: strictly in that
order, in the same process, the module imported once). A true shutdown goes the same way
without the new instance: ``deinit()``, then ``finalize()``.

So the old instance, before its ``run()`` returns, deposits here, under its persist name, what
a new instance can take over: each listening socket (a duplicate of its descriptor), and for
each plain stream connection its socket, its decoder (the partial frame) and the frames it had
read but not posted; frames of connections that cannot be handed over (TLS, HTTP, PROXY) and
of datagrams ride along. The next instance of the same persist name claims the bundle in
``init()`` and adopts the sockets in its reactor (``adoptStreamPort``,
``adoptStreamConnection``, ``adoptDatagramPort``); the frames are posted first. A listener
whose spec is not in the new configuration is closed then. What nobody claims is closed when
the old instance is finalized (a shutdown, or a persist name that changed) or, at the latest,
:data:`UNCLAIMED_GRACE` seconds after it was deposited; the connections and frames lost are
counted in the daemon's log.

The module holds no Twisted object: descriptors, decoders (sans-IO) and frames only, so
nothing here belongs to a reactor that has stopped.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable
from typing import Any

import attrs

from syslogsrc.interfaces import Origin

__all__ = [
    "UNCLAIMED_GRACE",
    "ConnectionState",
    "ListenerState",
    "claim",
    "claim_spec",
    "deposit",
    "discard",
    "sweep",
]

#: Seconds a deposited bundle waits for a new instance before it is closed and counted (a
#: safety net: ``finalize()`` of the old instance normally decides sooner).
UNCLAIMED_GRACE = 10.0


@attrs.define(eq=False)
class ConnectionState:
    """One stream connection between two instances."""

    fd: int  #: a duplicate of the connected socket's descriptor: ours to close
    family: int  #: its address family
    decoder: Any  #: its FrameDecoder, with the frame it has begun
    pending: list[bytes]  #: frames read, not posted yet, in order
    origin: Origin  #: where its messages come from (its listener's stats are the old ones)

    def close(self) -> None:
        _close(self.fd)
        self.fd = -1


@attrs.define(eq=False)
class ListenerState:
    """One listener between two instances: its socket, its connections, frames read."""

    spec: str  #: the spec text: the new instance's listener of the same text adopts it
    fd: int | None = None  #: a duplicate of the listening socket, or None (re-opened)
    family: int = socket.AF_INET
    connections: list[ConnectionState] = attrs.Factory(list)
    #: frames read and not posted, of datagrams and of connections that were closed
    frames: list[tuple[list[bytes], Origin]] = attrs.Factory(list)
    #: messages built and posted, which the daemon dropped (a stale wakeup; see
    #: TwistedSource's flow control): posted again first
    messages: list[tuple[Any, Origin]] = attrs.Factory(list)
    #: unix: the socket file, removed if nobody takes the socket over
    path: str | None = None
    #: unix: the lock file (``PATH.lock``) the old port held: the adopting port holds it next
    lock: Any = None

    def unposted(self) -> int:
        """Frames read and not posted, the partial frames of the connections not counted."""
        held = sum(len(frames) for frames, _ in self.frames) + len(self.messages)
        return held + sum(len(c.pending) for c in self.connections)

    def close(self) -> tuple[int, int]:
        """Close everything; return (connections, frames) lost."""
        lost = (len(self.connections), self.unposted())
        for connection in self.connections:
            connection.close()
        self.connections = []
        self.frames = []
        self.messages = []
        if self.fd is not None:
            _close(self.fd)
            self.fd = None
        if self.path is not None and not self.path.startswith("\0"):
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)
            except OSError:
                pass
            self.path = None
        if self.lock is not None:
            lock, self.lock = self.lock, None
            try:
                lock.unlock()
            except Exception:  # a lock file already gone: nothing left to undo
                pass
        return lost

    def take_frames(self) -> list[tuple[list[bytes], Origin]]:
        """Every complete frame read and not posted, in order per sender: the datagrams' and
        closed connections' first, then each handed-over connection's. They are the caller's
        now (the connections keep their partial frames)."""
        frames = self.frames
        self.frames = []
        for connection in self.connections:
            if connection.pending:
                frames.append((connection.pending, connection.origin))
                connection.pending = []
        return frames


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


_lock = threading.Lock()
_bundles: dict[str, dict[str, ListenerState]] = {}
_timers: dict[str, threading.Timer] = {}


def deposit(
    name: str,
    states: list[ListenerState],
    on_unclaimed: Callable[[int, int], None] | None = None,
    grace: float = UNCLAIMED_GRACE,
) -> None:
    """Leave ``states`` for the next instance of persist name ``name``. After ``grace`` seconds
    unclaimed, they are closed and ``on_unclaimed(connections, frames)`` says what was lost."""
    for state in states:  # what the old instance memoised (its builders) must not outlive it
        for connection in state.connections:
            connection.origin.memo.clear()
        for _, origin in state.frames:
            origin.memo.clear()
        for _, origin in state.messages:
            origin.memo.clear()
    with _lock:
        old = _bundles.pop(name, None)
        _bundles[name] = {state.spec: state for state in states}
        timer = _timers.pop(name, None)
        if old:  # never claimed, and a new one comes: the old one is closed
            _close_all(old.values())
    if timer is not None:
        timer.cancel()
    timer = threading.Timer(grace, _expire, (name, on_unclaimed))
    timer.daemon = True
    with _lock:
        _timers[name] = timer
    timer.start()


def claim(name: str) -> dict[str, ListenerState]:
    """Take the bundle of persist name ``name`` (empty if there is none)."""
    with _lock:
        bundle = _bundles.pop(name, None) or {}
        timer = _timers.pop(name, None)
    if timer is not None:
        timer.cancel()
    return bundle


def claim_spec(spec: str) -> ListenerState | None:
    """Take the listener of spec ``spec`` from any unclaimed bundle (a persist name that
    changed with the configuration): its socket is bound where the new listener would bind."""
    with _lock:
        for bundle in _bundles.values():
            state = bundle.pop(spec, None)
            if state is not None:
                return state
    return None


def sweep() -> list[ListenerState]:
    """Take every bundle still unclaimed. Called by a new instance when it starts running:
    every instance of the new configuration has claimed its own by then (syslog-ng calls all
    ``init()`` before any ``run()``), so what is left belongs to nobody."""
    with _lock:
        bundles = list(_bundles.values())
        _bundles.clear()
        timers = list(_timers.values())
        _timers.clear()
    for timer in timers:
        timer.cancel()
    return [state for bundle in bundles for state in bundle.values()]


def discard(name: str) -> tuple[int, int]:
    """Close the bundle of ``name`` if it is still unclaimed; (connections, frames) lost.

    Closed under the lock: a new instance's :func:`sweep` (in another thread, right before it
    binds) waits until these sockets are closed, so that it can bind the same ports."""
    with _lock:
        bundle = _bundles.pop(name, None) or {}
        timer = _timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        return _close_all(bundle.values())


def _close_all(states: Any) -> tuple[int, int]:
    connections = frames = 0
    for state in states:
        c, f = state.close()
        connections += c
        frames += f
    return connections, frames


def _expire(name: str, on_unclaimed: Callable[[int, int], None] | None) -> None:
    with _lock:
        if _timers.get(name) is threading.current_thread():
            del _timers[name]
        bundle = _bundles.pop(name, None)
        if bundle is None:
            return
        lost = _close_all(bundle.values())  # under the lock: see discard()
    if on_unclaimed is not None:
        on_unclaimed(*lost)

"""What a :class:`~syslogsrc.source.TwistedSource` hands to the next instance, and takes from
the previous one, at a reload.

A reload inside syslog-ng (or in ``syslogsrc-host``) makes a new source instance in the same
process. At the end of ``run()`` the old instance deposits its listening sockets, open
connections and the frames it read and did not post (:mod:`syslogsrc.handover`); the new one
claims them in ``init()`` and takes them over in ``attach()``: its listeners adopt the sockets
of the same name, and :class:`Backlog` posts the frames first. What nobody claims is closed at
``finalize()``, its frames counted as dropped and logged.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.logger import Logger as TwistedLogger

from syslogsrc import handover
from syslogsrc.interfaces import IMessageSink, Origin

__all__ = ["Backlog", "HandOver"]

_log = TwistedLogger(namespace="syslogsrc.source")


class Backlog:
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
            origin.stats.dropped += len(frames)
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


class HandOver:
    """The hand-over methods of :class:`~syslogsrc.source.TwistedSource` (a mixin: the state
    it uses, ``hand_over``, ``_claimed``, ``_deposited``, ``_backlog``, ``_listeners``,
    ``_held`` and ``sink``, is the source's, set in its ``__init__``)."""

    hand_over: bool
    sink: IMessageSink
    logger: Any
    _claimed: dict[str, Any]
    _deposited: str | None
    _backlog: Backlog | None
    _listeners: list[Any]
    _held: collections.deque[tuple[Any, Origin]]

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
                origin.stats.handed_over += len(frames)
            for connection in state.connections:
                connection.origin.stats.handed_over += len(connection.pending)
            for _, origin in state.messages:
                origin.stats.handed_over += 1
        sockets = sum(1 for s in states if s.fd is not None)
        connections = sum(len(s.connections) for s in states)
        frames = sum(s.unposted() for s in states)
        # messages posted whose senders still wait for their answer (RELP): the next instance
        # answers them as the destination acknowledges them
        awaiting = sum(
            getattr(c.decoder, "awaiting_acknowledgement", 0) for s in states for c in s.connections
        )
        self._deposit(states)
        _log.info(
            "handed {sockets} listening socket(s), {connections} connection(s) and {frames}"
            " message(s) read and not posted to the next instance{awaiting}",
            sockets=sockets,
            connections=connections,
            frames=frames,
            awaiting=(
                f"; {awaiting} message(s) posted and not acknowledged, answered by it"
                if awaiting
                else ""
            ),
        )

    def _take_over(self) -> dict[str, Any]:
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
                _log.warn(
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
            self._backlog = Backlog(self.sink, frames)
            self._backlog.drain()

    def _our_origin(self, origin: Origin, count: int = 1) -> Origin:
        """``origin`` of a previous instance, with our listener's stats if it is still
        configured; ``count`` messages of it taken over."""
        for listener in self._listeners:
            if getattr(listener, "name", None) == origin.stats.name:
                origin = attrs.evolve(origin, stats=listener.stats)
                break
        origin.stats.taken_over += count
        return origin

"""Sinks outside syslog-ng: parsed messages straight to a callable or an output, in batches.

Inside syslog-ng the sink is the source itself (:class:`~syslogsrc.source.TwistedSource`), the
only code that builds a ``LogMessage``. Outside it no ``LogMessage`` is needed: these sinks take
what a protocol hands them (one read, one sender's datagrams of one wake-up, one HTTP
request), parse each raw frame
once into a :class:`~syslogsrc.parsing.ParsedMessage` (a message a protocol already parsed is
taken as it is) and hand it on.

- :class:`CallbackSink` calls ``callback(message, origin)`` for each message (embedding:
  :class:`~syslogsrc.service.SyslogService`).
- :class:`OutputSink` renders each message for an :class:`~syslogsrc.outputs.Output` in the
  reactor's thread and gives the writer thread one ``bytes`` per batch: flow control is a
  high-water mark of messages handed to the writer and not yet written. Above it every producer
  pauses (streams stop reading, HTTP answers 503), and they resume once the writer is down to
  half of it.
"""

from __future__ import annotations

import datetime as dt
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc.interfaces import IAcknowledgingSink, Origin
from syslogsrc.outputs import Output
from syslogsrc.parsing import ParsedMessage, malformed, parse
from syslogsrc.producers import ProducerSet
from syslogsrc.protocols._ratelimit import RateLimitedLog

__all__ = ["CallbackSink", "OutputSink"]

_log = Logger(namespace="syslogsrc.sinks")


class _ParsingSink:
    """Parses raw frames (``origin.format``, else the sink's ``format``) and adds the origin's
    pairs; the producers' registry. Subclasses say what happens to each parsed message."""

    def __init__(self, format: str = "auto", time_zone: dt.tzinfo | None = None) -> None:
        self.format = format
        self.time_zone = time_zone
        self._producers = ProducerSet()

    @property
    def paused(self) -> bool:
        return self._producers.paused

    def parsed(self, message: bytes | ParsedMessage, origin: Origin) -> ParsedMessage:
        """One message of ``origin``, parsed, with the origin's pairs."""
        if type(message) is bytes:
            parsed = parse(message, origin.format or self.format, time_zone=self.time_zone)
        else:
            parsed = message  # type: ignore[assignment]
        if parsed.tags and malformed(parsed):
            origin.stats.malformed += 1
        return parsed

    def post(self, messages: Sequence[bytes | ParsedMessage], origin: Origin) -> int:
        return self._take(messages, origin, None)

    def post_tracked(
        self, messages: Sequence[bytes | ParsedMessage], origin: Origin, tokens: Sequence[Any]
    ) -> int:
        """As ``post``, and ``origin.acknowledge(tokens, stored)`` once each is stored (what
        that means: the subclass's ``acknowledgement``)."""
        return self._take(messages, origin, tokens)

    def _take(
        self,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        tokens: Sequence[Any] | None,
    ) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def register_producer(self, producer: Any) -> None:
        self._producers.register(producer)

    def unregister_producer(self, producer: Any) -> None:
        self._producers.unregister(producer)

    def pause(self) -> None:
        """Stop taking messages (streams pause, HTTP answers 503) until :meth:`resume`."""
        self._producers.pause()

    def resume(self) -> None:
        self._producers.resume()


@implementer(IAcknowledgingSink)
class CallbackSink(_ParsingSink):
    """Parses each frame and hands ``(ParsedMessage, Origin)`` to a callable. The callable may
    call ``pause()`` (and later ``resume()``, from the reactor's thread): the messages of
    the batch after the one it was given wait in their protocol. ``origin.pairs`` are in
    ``message.pairs``.

    Acknowledgements (``post_tracked``: RELP, HTTP in acknowledgement mode): a message is
    stored when the callable returned, or, if it returned a ``Deferred``, when that fires (an
    errback: not stored). Given a ``reactor``, acknowledgements of callables that returned at
    once are reported in its next turn; without one, before ``post_tracked`` returns.
    """

    #: what an acknowledgement means (:class:`~syslogsrc.interfaces.IAcknowledgingSink`)
    acknowledgement = "handed to the callback (or its Deferred fired)"

    def __init__(
        self,
        callback: Callable[[ParsedMessage, Origin], Any],
        format: str = "auto",
        time_zone: dt.tzinfo | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        super().__init__(format, time_zone)
        self.callback = callback
        self.reactor = reactor

    def _take(
        self,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        tokens: Sequence[Any] | None,
    ) -> int:
        callback = self.callback
        pairs = origin.pairs
        taken = 0
        stats = origin.stats
        stored: list[Any] = []
        lost: list[Any] = []
        for message in messages:
            if self._producers.paused:
                break
            taken += 1
            parsed = self.parsed(message, origin)
            if pairs:
                parsed = ParsedMessage(
                    {**parsed.pairs, **pairs},
                    parsed.pri,
                    parsed.timestamp,
                    parsed.tags,
                    parsed.format,
                )
            try:
                result = callback(parsed, origin)
            except Exception:
                stats.dropped += 1
                _log.failure("the sink's callback failed; the message was dropped")
                if tokens is not None:
                    lost.append(tokens[taken - 1])
                continue
            stats.posted += 1
            if tokens is None:
                continue
            if isinstance(result, defer.Deferred):
                token = [tokens[taken - 1]]
                ack = origin.acknowledge
                result.addCallbacks(
                    lambda _, t=token, a=ack: _acknowledge([(a, t)], True),
                    lambda f, t=token, a=ack: _acknowledge([(a, t)], False),
                )
            else:
                stored.append(tokens[taken - 1])
        for ok, done in ((True, stored), (False, lost)):
            if done:
                acks: Acks = [(origin.acknowledge, done)]  # type: ignore[list-item]
                if self.reactor is not None:
                    self.reactor.callLater(0, _acknowledge, acks, ok)
                else:
                    _acknowledge(acks, ok)
        return taken


#: what a writer reports back per write: the ``(acknowledge, tokens)`` of the messages in it
Acks = list[tuple[Callable[[Sequence[Any], bool], None], list[Any]]]


class _Writer:
    """The output's own thread (file writes block): it writes whole rendered batches, flushes
    when nothing more waits, and tells the reactor how many messages each write took.

    A batch that carries acknowledgements (:meth:`OutputSink.post_tracked`) is flushed (and,
    with ``sync``, fsync'ed) before they are reported, whatever else waits: an acknowledged
    message is in the file, not in a buffer."""

    _STOP = object()

    def __init__(
        self,
        output: Output,
        reactor: IReactorThreads,
        written: Callable[[int, Acks, Acks], None],
        sync: bool = False,
    ):
        self.output = output
        self.reactor = reactor
        self.written = written
        self.sync = sync
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="syslogsrc-output", daemon=True)
        self.thread.start()

    def write(self, data: bytes, count: int, acks: Acks | None = None) -> None:
        self.queue.put((data, count, acks))

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the writer's thread, after what was queued before it (reopen)."""
        self.queue.put((fn, -1, None))

    def _failed(self) -> None:
        if self.error is None:
            _log.failure("the output failed; messages are being lost", Failure())
        self.error = sys.exc_info()[1]

    def _loop(self) -> None:
        q = self.queue
        output = self.output
        stop = False
        while not stop:
            # Everything that waits is written in one go and acknowledged with one call into
            # the reactor (a wakeup of its thread): under load, one per many batches.
            items = [q.get()]
            while not q.empty():
                items.append(q.get())
            written = 0
            stored: Acks = []
            lost: Acks = []
            for item in items:
                if item is self._STOP:
                    stop = True
                    break
                data, count, acks = item
                try:
                    if count < 0:
                        data()
                        continue
                    output.write_rendered(data, count)
                except BaseException:  # keep counting: a broken output must not hang us
                    self._failed()
                    if acks:
                        lost.extend(acks)
                else:
                    if acks:
                        stored.extend(acks)
                if count > 0:
                    written += count
            if stored or q.empty():
                try:
                    output.flush()
                    if stored and self.sync:
                        output.sync()
                except BaseException:
                    self._failed()
                    lost.extend(stored)
                    stored = []
            if written or lost:
                self.reactor.callFromThread(self.written, written, stored, lost)
        output.flush()

    def close(self) -> None:
        """Write what waits, flush, close the output (blocks: call it in a thread)."""
        self.queue.put(self._STOP)
        self.thread.join()
        self.output.close()


@implementer(IAcknowledgingSink)
class OutputSink(_ParsingSink):
    """Parsed messages into an output, a batch per call, through a writer thread.

    :param output: an :class:`~syslogsrc.outputs.Output` (JSON lines or text).
    :param high_water: messages handed to the writer and not written yet above which the
        producers pause (``--log-iw-size`` of twistd); they resume at half of it.
    :param sync: acknowledge messages (``post_tracked``: RELP, HTTP in acknowledgement
        mode) only once the output is fsync'ed, not only written and flushed.
    """

    def __init__(
        self,
        output: Output,
        reactor: Any,
        *,
        format: str = "auto",
        time_zone: dt.tzinfo | None = None,
        high_water: int = 1000,
        sync: bool = False,
    ) -> None:
        super().__init__(format, time_zone)
        if high_water < 1:
            raise ValueError(f"high_water must be >= 1, not {high_water}")
        self.output = output
        self.reactor = reactor
        self.high_water = high_water
        self.low_water = high_water // 2
        self.in_flight = 0  #: messages handed to the writer, not written yet
        self.suspends = 0  #: times the producers were paused for the output
        #: what an acknowledgement means (:class:`~syslogsrc.interfaces.IAcknowledgingSink`)
        self.acknowledgement = "synced" if sync else "written"
        self._writer = _Writer(output, reactor, self._written, sync)
        self._render_errors = RateLimitedLog(
            reactor,
            "{listener}: rendering a message for the output raised {count} time(s){span};"
            " the message was dropped",
            level=LogLevel.error,
            logger=_log,
        )
        self._stopping = False
        self._rendered: list[bytes] = []  # rendered this turn of the reactor, not handed over
        self._rendered_count = 0
        self._rendered_acks: Acks = []  # the acknowledgements those carry
        self._hand_over_scheduled = False

    def _take(
        self,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        tokens: Sequence[Any] | None,
    ) -> int:
        if self._producers.paused:
            return 0
        stats = origin.stats
        fmt = origin.format or self.format
        time_zone = self.time_zone
        batch = []  # a loop, not comprehensions: a datagram's batch has one message
        append = batch.append
        for message in messages:
            if type(message) is bytes:
                message = parse(message, fmt, time_zone=time_zone)
            if message.tags and malformed(message):
                stats.malformed += 1
            append(message)
        try:  # the renderer takes the origin's pairs from the origin
            data = self.output.render_batch(batch, origin)
            count = len(batch)
            stored = tokens
        except Exception:  # one at a time, to lose only the message that cannot be rendered
            data, count, stored = self._render_each(batch, origin, tokens)
        if count:
            stats.posted += count
            self.in_flight += count
            # Handed to the writer once per turn of the reactor (a UDP port reads up to 256
            # datagrams in one turn, each its own batch), not once per batch.
            self._rendered.append(data)
            self._rendered_count += count
            if stored:
                self._rendered_acks.append((origin.acknowledge, list(stored)))  # type: ignore[arg-type]
            if not self._hand_over_scheduled:
                self._hand_over_scheduled = True
                self.reactor.callLater(0, self._hand_over)
            if self.in_flight >= self.high_water and not self._stopping:
                self.suspends += 1
                self._producers.pause()
        return len(messages)

    def _render_each(
        self, batch: list[ParsedMessage], origin: Origin, tokens: Sequence[Any] | None
    ) -> tuple[bytes, int, list[Any]]:
        render = self.output.render
        stats = origin.stats
        lines = []
        stored, lost = [], []
        for i, one in enumerate(batch):
            try:
                lines.append(render(one, origin))
            except Exception:
                stats.dropped += 1
                self._render_errors(Failure(), listener=stats.name)
                if tokens is not None:
                    lost.append(tokens[i])
            else:
                if tokens is not None:
                    stored.append(tokens[i])
        if lost:  # answered in the reactor's next turn, never from inside post_tracked
            self.reactor.callLater(0, _acknowledge, [(origin.acknowledge, lost)], False)
        return b"".join(lines), len(lines), stored

    def _hand_over(self) -> None:
        self._hand_over_scheduled = False
        if self._rendered_count:
            data, count = b"".join(self._rendered), self._rendered_count
            acks = self._rendered_acks
            self._rendered, self._rendered_count, self._rendered_acks = [], 0, []
            self._writer.write(data, count, acks or None)

    def _written(self, count: int, stored: Acks, lost: Acks) -> None:
        self.in_flight -= count
        if stored:
            _acknowledge(stored, True)
        if lost:
            _acknowledge(lost, False)
        if self._producers.paused and self.in_flight <= self.low_water:
            self._producers.resume(lambda: self._producers.paused)

    def reopen(self) -> None:
        """Reopen the output's file (log rotation), in the writer's thread, between writes."""
        reopen = getattr(self.output, "reopen", None)
        if reopen is not None:
            self._hand_over()  # what was taken before the signal goes to the old file
            self._writer.call(reopen)

    def drain(self) -> None:
        """The listeners are stopping: take everything still read from now on, so that what
        connections hold is written rather than dropped."""
        self._stopping = True
        if self._producers.paused:
            self._producers.resume()

    def close(self) -> defer.Deferred[None]:
        """Write and flush everything taken, close the output; fires when done."""
        self._producers.stop()
        self._hand_over()
        return _in_thread(self.reactor, self._writer.close)


def _acknowledge(acks: Acks, stored: bool) -> None:
    """Report ``acks`` (``(acknowledge, tokens)`` pairs) to their protocols, in the reactor
    thread; a protocol whose callback raises is logged and does not stop the others."""
    for acknowledge, tokens in acks:
        try:
            acknowledge(tokens, stored)
        except Exception:
            _log.failure("an acknowledgement callback raised")


def _in_thread(reactor: IReactorTime, fn: Callable[[], Any]) -> defer.Deferred[Any]:
    """Run a blocking ``fn`` in a short-lived thread, without the reactor's thread pool."""
    d: defer.Deferred[Any] = defer.Deferred()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the Deferred
            reactor.callFromThread(d.errback, exc)  # type: ignore[attr-defined]
        else:
            reactor.callFromThread(d.callback, result)  # type: ignore[attr-defined]

    threading.Thread(target=work, name="syslogsrc-flush", daemon=True).start()
    return d

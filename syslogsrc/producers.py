"""Producers and their sink: both sides of flow control.

A protocol hands its sink the messages of one read of a stream, of the datagrams of one sender
read at one wake-up, or of one HTTP request in one call
(:meth:`~syslogsrc.interfaces.IMessageSink.post`); the sink takes what it can and pauses every
producer when it cannot take more. This module holds the two halves of that exchange:

:class:`ProducerSet` (the sink's side)
    the ``IPushProducer`` of each connection, datagram port or HTTP site that posts to a sink,
    paused and resumed together.

:class:`Backlog` (the producer's side)
    what one producer read and its sink has not taken yet, and the loop that posts it. Every
    protocol (stream, datagram, HTTP, RELP) posts through one, and keeps only what is its own:
    what pausing means for its transport (stop reading a socket, hold an HTTP connection).

A :class:`Backlog` guarantees, for the producer that owns it:

- **nothing is posted while paused**: from :meth:`Backlog.pause` (which may come from inside
  ``sink.post``, as syslog-ng's ``suspend()`` does) until :meth:`Backlog.resume`, messages
  offered wait, in order;
- **every message once, in order**: what the sink did not take of a batch stays first in line
  and is posted first after the resume, before anything offered later; a ``post`` that
  resumes us from inside the sink (re-entry) does not post around the batch being posted;
- **one call to the sink per batch**: a read, a datagram or a request is one batch, and a
  batch cut by a pause is posted, after each resume, in one call (with ``merge``, batches of
  one origin that waited together are posted in one call: the reads of one connection);
- **nothing is lost silently**: a sink that raises has not said what it took, so the rest of
  the batch is counted in ``origin.stats.dropped`` and reported (``on_error``); what waits
  at :meth:`Backlog.stop` is counted there too; :meth:`Backlog.take` gives what waits to the
  caller instead (a reload hands it to the next instance). A producer whose sender sends
  again whatever was not answered (RELP: ``sender_resends``) loses nothing there, and counts
  nothing.

A protocol that answers its sender once its messages are taken (HTTP; RELP without an
acknowledging sink) hands :meth:`Backlog.add` a :class:`Batch` subclass, which hears when the
sink took some of it (:meth:`Batch.taken`) and when the batch leaves the backlog and why
(:meth:`Batch.finished`). A batch posted with tokens goes through the sink's
``post_tracked`` (``IAcknowledgingSink`` in :mod:`syslogsrc.interfaces`: the protocol chose
that mode because its sink provides the interface); without tokens, through ``post``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

from syslogsrc.interfaces import IMessageSink, Origin

if TYPE_CHECKING:
    from syslogsrc.parsing import ParsedMessage

__all__ = ["Backlog", "Batch", "ProducerSet", "ProducerStopped"]


class ProducerSet:
    """The producers of a sink, paused and resumed together. A resume starts with a different
    producer each time, so that one busy connection cannot take all the room every time."""

    def __init__(self) -> None:
        self.producers: list[Any] = []
        self.paused = False
        self._next = 0

    def register(self, producer: Any) -> None:
        self.producers.append(producer)
        if self.paused:
            producer.pauseProducing()

    def unregister(self, producer: Any) -> None:
        try:
            self.producers.remove(producer)
        except ValueError:
            pass

    def pause(self) -> None:
        self.paused = True
        for producer in list(self.producers):
            producer.pauseProducing()

    def resume(self, still_paused: Callable[[], bool] | None = None) -> None:
        """Resume every producer, unless ``still_paused()`` says the sink paused again on the
        way (the producers after that one stay paused)."""
        self.paused = False
        producers = self.producers
        if not producers:
            return
        start = self._next % len(producers)
        self._next += 1
        for producer in producers[start:] + producers[:start]:
            if self.paused or (still_paused is not None and still_paused()):
                break
            producer.resumeProducing()

    def stop(self) -> None:
        """Stop every producer for good (they count what they still hold as dropped)."""
        producers, self.producers = self.producers, []
        for producer in producers:
            producer.stopProducing()


class ProducerStopped(Exception):
    """The sink stopped the producer for good before all of a batch was posted."""


class Batch:
    """Messages that go to the sink in one call, with their origin, and the sender's tokens
    when they are posted with ``post_tracked`` (parallel to ``messages``).

    A protocol that must hear when its batch leaves the backlog (HTTP answers its request)
    subclasses it and overrides :meth:`finished`; one that answers each message as soon as
    the sink takes it (RELP without an acknowledging sink) overrides :meth:`taken`.
    ``messages`` (and ``tokens``) shrink as the sink takes them: what is left is what waits.
    """

    __slots__ = ("messages", "origin", "tokens")

    def __init__(
        self,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        tokens: Sequence[Any] | None = None,
    ) -> None:
        self.messages = messages
        self.origin = origin
        self.tokens = tokens

    def taken(self, count: int) -> None:
        """Called after each call to the sink that took some of the batch: the first
        ``count`` (at least one) of ``messages``, which still holds them during the call and
        loses them after it. Called before :meth:`finished` when the sink took the rest."""

    def join(self, then: Batch) -> bool:
        """Take ``then``'s messages (and tokens) after ours, so that both are posted in one
        call (a :class:`Backlog` with ``merge`` asks, for two batches of one origin, mode and
        class); False leaves ``then`` a batch of its own. A subclass that hears
        :meth:`finished` joins nothing unless it overrides this: ``then`` would never be told.
        """
        if type(self) is not Batch:
            return False
        self.messages = [*self.messages, *then.messages]
        if self.tokens is not None and then.tokens is not None:
            self.tokens = [*self.tokens, *then.tokens]
        return True

    def finished(self, failure: Failure | None) -> None:
        """Called once, when the batch leaves the backlog: ``None`` when the sink took every
        message; else why the rest (``messages``, counted as dropped) was not posted: the
        sink raised, or :class:`ProducerStopped`."""


class Backlog:
    """What one producer read and its sink has not taken, in order, and the loop that posts
    it (see the module's docstring for what it guarantees).

    The producer calls :meth:`offer` (or :meth:`add`) with each batch it reads, and forwards
    its ``IPushProducer`` calls: ``pauseProducing`` to :meth:`pause`, ``resumeProducing`` to
    :meth:`resume`, ``stopProducing`` to :meth:`stop`; each says whether the transport should
    follow (stop or start reading).

    ``merge``: a batch offered while another of the same origin (and the same mode, tokens or
    not) is last in line joins it, so one connection's reads that waited together are posted
    in one call. ``on_error(failure, batch)`` reports a sink that raised (the rest of the batch
    is counted as dropped already, unless ``sender_resends``).

    ``sender_resends``: the sender sends again every message it was not answered for (RELP's
    client does, on its next connection), so what a stop or a raising sink leaves unposted is
    not lost and is not counted in ``origin.stats.dropped`` (batches are still told
    :meth:`Batch.finished` with the reason).
    """

    __slots__ = (
        "_draining",
        "_merge",
        "_on_error",
        "_queue",
        "_resends",
        "paused",
        "sink",
        "stopped",
    )

    def __init__(
        self,
        sink: IMessageSink,
        *,
        merge: bool = False,
        on_error: Callable[[Failure, Batch], object] | None = None,
        sender_resends: bool = False,
    ) -> None:
        self.sink = sink
        self.paused = False  #: paused by the sink: nothing is posted
        self.stopped = False  #: stopped for good: nothing more is posted, what comes is dropped
        # a list, not a deque: one backlog per connection, almost always empty (an empty list
        # is a tenth of an empty deque), and a few batches long when not
        self._queue: list[Batch] = []
        self._draining = False
        self._merge = merge
        self._on_error = on_error
        self._resends = sender_resends

    def __len__(self) -> int:
        """Batches waiting."""
        return len(self._queue)

    def __bool__(self) -> bool:
        return bool(self._queue)

    @property
    def batches(self) -> list[Batch]:
        """The batches waiting, first in line first (a copy)."""
        return list(self._queue)

    @property
    def waiting(self) -> int:
        """Messages waiting."""
        return sum(len(batch.messages) for batch in self._queue)

    # What the producer read

    def offer(
        self,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        tokens: Sequence[Any] | None = None,
    ) -> None:
        """One batch read: posted now if nothing waits and we are not paused, else after what
        waits. Stopped, it is counted as dropped. No messages: nothing is posted (a sink is
        never called without a message). (The fast path of :meth:`add`: no :class:`Batch` is
        made unless some of it must wait.)"""
        if not messages:
            return
        if self._queue or self.paused or self._draining:
            if self.stopped:
                self._count_dropped(origin, len(messages))
                return
            self._append(Batch(messages, origin, tokens))
            if not self.paused:
                self.drain()
            return
        self._draining = True
        try:
            posted = self._post(None, messages, origin, tokens)
        finally:
            self._draining = False
        if posted and self._queue and not self.paused:  # offered from inside the sink
            self.drain()

    def add(self, batch: Batch) -> None:
        """A batch the producer made (a subclass that hears :meth:`Batch.finished`): posted as
        :meth:`offer` posts; stopped, it is dropped and told so at once. No messages: it is
        told at once that all were posted."""
        if not batch.messages:
            batch.finished(None)
            return
        if self.stopped:
            self._drop(batch, Failure(ProducerStopped()))
            return
        self._append(batch)
        if not self.paused:
            self.drain()

    def put_back(self, batches: Iterable[Batch]) -> None:
        """Batches that go first in line, in their order (another instance's backlog, taken
        over); posted now unless paused. Stopped, they are dropped (and counted)."""
        batches = list(batches)
        if self.stopped:
            for batch in batches:
                self._drop(batch, Failure(ProducerStopped()))
            return
        for batch in reversed(batches):
            self._prepend(batch)
        if self._queue and not self.paused:
            self.drain()

    def take(self) -> list[Batch]:
        """What waits, in order; the caller's now (nothing of it is counted here)."""
        batches = list(self._queue)
        self._queue.clear()
        return batches

    # IPushProducer, as the producer forwards it

    def pause(self) -> bool:
        """Post nothing until :meth:`resume`. True when this paused us (the producer then stops
        reading); False when we were paused or stopped already."""
        if self.paused or self.stopped:
            return False
        self.paused = True
        return True

    def resume(self) -> bool:
        """Post what waits. True when we are still not paused after that (the producer then
        reads again); False when we were not paused, are stopped, or were paused again by a
        post of the drain."""
        if not self.paused or self.stopped:
            return False
        self.paused = False
        self.drain()
        return not self.paused

    def stop(self) -> bool:
        """Stop for good: what waits is counted as dropped (each batch told so; not counted
        with ``sender_resends``). True when this stopped us; False when we were stopped
        already."""
        if self.stopped:
            return False
        self.stopped = True
        self.paused = True
        stopped = Failure(ProducerStopped())
        for batch in self.take():
            self._drop(batch, stopped)
        return True

    # Posting

    def drain(self) -> None:
        """Post what waits, one batch per call to the sink, until nothing waits or the sink
        pauses us; the part of a batch it did not take stays first in line."""
        if self._draining:
            return  # re-entered from inside sink.post (a resume): the loop below goes on
        queue = self._queue
        self._draining = True
        try:
            while queue and not self.paused:
                batch = queue.pop(0)
                if not self._post(batch, batch.messages, batch.origin, batch.tokens):
                    break  # a sink that takes less pauses us; wait for it all the same
        finally:
            self._draining = False

    def _post(
        self,
        batch: Batch | None,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        tokens: Sequence[Any] | None,
    ) -> bool:
        """One call to the sink. False when it took less without pausing us. ``batch`` is None
        on :meth:`offer`'s fast path: one is made only if some of it must wait."""
        try:
            if tokens is None:
                taken = self.sink.post(messages, origin)
            else:
                taken = self.sink.post_tracked(messages, origin, tokens)  # type: ignore[attr-defined]
        except Exception:
            # A sink that raises has not said what it took: the batch is lost.
            failure = Failure()
            self._count_dropped(origin, len(messages))
            if batch is None:
                batch = Batch(messages, origin, tokens)
            if self._on_error is not None:
                self._on_error(failure, batch)
            batch.finished(failure)
            return True
        if batch is not None and taken > 0:
            batch.taken(min(taken, len(messages)))
        if taken >= len(messages):
            if batch is not None:
                batch.finished(None)
            return True
        rest_tokens = None if tokens is None else tokens[taken:]
        if batch is None:
            batch = Batch(messages[taken:], origin, rest_tokens)
        else:
            batch.messages, batch.tokens = messages[taken:], rest_tokens
        if self.stopped:  # stopped from inside the sink: the rest will not be posted
            self._drop(batch, Failure(ProducerStopped()))
            return False
        self._prepend(batch)
        return self.paused

    def _drop(self, batch: Batch, failure: Failure) -> None:
        self._count_dropped(batch.origin, len(batch.messages))
        batch.finished(failure)

    def _count_dropped(self, origin: Origin, count: int) -> None:
        if not self._resends:
            origin.stats.dropped += count

    def _append(self, batch: Batch) -> None:
        queue = self._queue
        if not (self._merge and queue and _joins(queue[-1], batch) and queue[-1].join(batch)):
            queue.append(batch)

    def _prepend(self, batch: Batch) -> None:
        queue = self._queue
        if self._merge and queue and _joins(batch, queue[0]) and batch.join(queue[0]):
            queue[0] = batch
        else:
            queue.insert(0, batch)


def _joins(first: Batch, then: Batch) -> bool:
    """``first`` may be asked to :meth:`~Batch.join` ``then``: same origin, same mode (tokens or
    not), same class."""
    return (
        first.origin is then.origin
        and (first.tokens is None) == (then.tokens is None)
        and type(first) is type(then)
    )

"""How :class:`~syslogsrc.source.TwistedSource` posts: the
:class:`~syslogsrc.interfaces.IMessageSink` side (:meth:`Posting.post`, one batch per call) and
the daemon's flow control (``suspend()``/``wakeup()``), including the daemon's stale wakeups.

:class:`Posting` is a part of ``TwistedSource`` (a mixin): the state it reads and writes (the
producers, the counters of posts and suspensions, the held messages, the reactor and its lock)
is the source's, set in ``TwistedSource.__init__``. It runs in the reactor's thread, except
``wakeup()``, which the daemon calls from another thread.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.python.failure import Failure

from syslogsrc._acks import UNTRACKED
from syslogsrc._daemon_time import refresh_clock
from syslogsrc.interfaces import Origin
from syslogsrc.parsing import ParsedMessage
from syslogsrc.producers import ProducerSet
from syslogsrc.runtime import FEATURES, LogSource

__all__ = ["Posting"]

_monotonic = time.monotonic  # the clock of suspended time and of builder_ttl (tests replace it)
# What the version gives, decided once for every batch (FEATURES is frozen).
_CLOSE_BATCH = FEATURES.close_batch
#: the daemon's close_batch() (4.x), called directly from the hot path
_close_batch = getattr(LogSource, "close_batch", None)
#: the daemon's clock is not refreshed in our thread: once per batch, before its messages are
#: made, so that each has the time its batch was read (RECVD, and the stamp of a stampless one)
_REFRESH_CLOCK = FEATURES.stale_receive_time


class Posting:
    """The posting methods of :class:`~syslogsrc.source.TwistedSource` (a mixin: see the
    module's description)."""

    builder_ttl: float | None
    paused: bool
    _lock: threading.Lock
    _reactor: Any
    _exit_wakeup_from: int | None
    _producers: ProducerSet
    _suspended: bool
    _posts: int
    _suspended_in: int
    _suspended_since: float
    _suspended_total: float
    _held: collections.deque[tuple[Any, Origin]]
    _check_next: bool
    _build_errors: Any
    #: an ack tracker is set: every message is posted with a bookmark (syslogsrc._acks)
    _bookmarking: bool
    post_message: Callable[[Any], None]
    builder: Callable[[Origin], Callable[[bytes | ParsedMessage], Any]]

    # -- flow control ------------------------------------------------------------------------
    #
    # The daemon's wakeup() can be stale. syslog-ng frees a window slot (in an acknowledging
    # thread, without the GIL) and only then waits for the GIL to call wakeup(); meanwhile the
    # run() thread may post into that slot, empty the window again and be suspended. The wakeup
    # then arrives for a window that is empty again, and a post after it is dropped by the daemon
    # ("Incorrectly suspended source, dropping message"). Without the rules below, 200 000
    # messages through a stalled destination lose 6% in 3.38.1 and 64% in 4.8.1 (measured).
    #
    # 1. A wakeup() that ran before the post_message() that led to the daemon's latest suspend()
    #    began is stale: its slot was freed before that post, and after the post the daemon found
    #    the window empty. It is ignored; the next freed slot brings a wakeup() after that post
    #    began. (A wakeup() during that post may be stale or not; rule 2 copes with it.)
    # 2. The daemon's pipeline sets HOST_FROM on every message it takes, before post_message()
    #    returns, and a dropped one is left alone. A message without HOST_FROM after posting was
    #    dropped: it is held, every producer pauses, and the next wakeup() posts it first; the
    #    dropped post counts as a suspension for rule 1 (the window was empty when it began).
    #    (Only a wakeup that raced the check itself gets this far: one post, not a burst.)
    #
    # 3. 4.x calls wakeup() right after request_exit(), in the same thread
    #    (lib/logthrsource/logthrsourcedrv.c, _worker_thread_request_exit), whatever the window:
    #    a suspended source that resumed on it would post into an empty window (one "Incorrectly
    #    suspended" line per reload or stop that finds it suspended: 25 in 100 reloads on 4.8.1,
    #    measured without this rule). That one wakeup() (the next one in request_exit()'s
    #    thread) resumes nothing; acknowledgements after it still do, so a source may go on
    #    posting while it stops.
    #
    # What is left cannot be told apart with the daemon's API: a wakeup() whose slot was freed
    # before the post that emptied the window, but which got the GIL only after that post's
    # suspend(), looks exactly like the wakeup that ends the suspension. Its first post is
    # dropped, logged by the daemon, held and posted again (counted: docs/syslog-ng.md).

    def suspend(self) -> None:
        """The window is full (called by the daemon inside ``post_message``, in our thread)."""
        self._suspended_in = self._posts
        self._pause_all()

    def _pause_all(self) -> None:
        if not self._suspended:
            self._suspended_since = _monotonic()
        self._suspended = True
        self.paused = True
        self._producers.pause()

    def wakeup(self) -> None:
        """The window has room again. Called from the thread that acknowledged (the daemon's
        destination or main thread), or synchronously from inside ``post_message`` by an output
        that acknowledges at once: always deferred to the reactor's next turn, so producers are
        never resumed from inside a protocol's posting loop."""
        with self._lock:
            exiting = self._exit_wakeup_from == threading.get_ident()
            if exiting:
                self._exit_wakeup_from = None
            reactor = self._reactor
            if reactor is not None:
                reactor.callFromThread(self._resume, self._posts, exiting)
        # else: a late acknowledgement after run() ended; nothing to resume

    def _resume(self, posts: int | None = None, exiting: bool = False) -> None:
        if not self._suspended:
            return
        if posts is not None and posts < self._suspended_in:
            return  # rule 1: a stale wakeup
        if exiting:
            return  # rule 3: 4.x's wakeup() at request_exit() says nothing of the window
        self._suspended = False
        self._suspended_total += _monotonic() - self._suspended_since
        self.paused = False
        # A stale wakeup can make the daemon drop the next post (rule 2): check that one.
        self._check_next = True
        if self._held and not self._post_held():
            return
        # A different producer first each time, so one busy connection cannot take the whole
        # window after every wakeup; a backlog that fills the window again stops the round.
        self._producers.resume(lambda: self._suspended)

    def _post_held(self) -> bool:
        """Post the messages the daemon dropped, in order; False if they did not all go."""
        held = self._held
        while held and not self._suspended:
            msg, origin = held[0]
            if not self._post_checked(msg, origin):
                return False
            held.popleft()
        self.close_batch()
        return not held

    def _post_checked(self, msg: Any, origin: Origin) -> bool:
        """post_message(); if the daemon dropped ``msg`` (rule 2), hold it and pause all."""
        self._posts += 1
        self.post_message(msg)
        if _taken(msg):
            origin.stats.posted += 1
            return True
        if not self._held or self._held[0][0] is not msg:
            self._held.append((msg, origin))
        # The window was empty when this post began: a wakeup() that ran before it announced a
        # slot already taken again (rule 1 applies from this post on; the daemon calls no
        # suspend() for a dropped message), so no wakeup() still queued posts the held message
        # into the empty window once more.
        self._suspended_in = self._posts
        if not self._suspended:
            self._pause_all()
        return False

    # -- IMessageSink --------------------------------------------------------------------------
    def register_producer(self, producer: Any) -> None:
        self._producers.register(producer)

    def unregister_producer(self, producer: Any) -> None:
        self._producers.unregister(producer)

    def post(self, messages: Sequence[bytes | ParsedMessage], origin: Origin) -> int:
        """Post the messages of one read / datagram / request as one batch (IMessageSink).

        Per batch, inside the daemon, the daemon's clock is read again (its receive time).
        Per message: :meth:`build_message` and ``post_message()``, nothing else (and, while an
        ack tracker is set, a bookmark that says nobody waits for it). Whether the daemon took
        a message is asked only of the first post after a resume, the only one a stale
        ``wakeup()`` can make the daemon drop (see the rules above :meth:`suspend`)."""
        if self._suspended:
            return 0
        if _REFRESH_CLOCK:
            refresh_clock()
        build = self._builder_of(origin)
        if self._bookmarking:
            build = _untracked(build)
        return self._post(messages, origin, build)

    def post_tracked(
        self, messages: Sequence[bytes | ParsedMessage], origin: Origin, tokens: Sequence[Any]
    ) -> int:
        """As :meth:`post` (:class:`~syslogsrc.interfaces.IAcknowledgingSink`, provided while
        the source has an ack tracker: RELP and ``http-ack`` listeners): each message is
        posted with the bookmark ``(origin.acknowledge, token)``, which the daemon hands back
        once its destination acknowledged it (:mod:`syslogsrc._acks`). A message that cannot
        be built is reported not stored."""
        if self._suspended:
            return 0
        if _REFRESH_CLOCK:
            refresh_clock()
        return self._post(
            list(zip(messages, tokens, strict=True)),
            origin,
            _tracked(self._builder_of(origin), origin, self._reactor),
        )

    def _builder_of(self, origin: Origin) -> Callable[[Any], Any]:
        """The builder of ``origin``'s messages, made once per connection, sender or request
        (again after builder_ttl seconds)."""
        made = origin.memo.get(self)
        if made is None or (made[1] is not None and _monotonic() >= made[1]):
            ttl = self.builder_ttl
            made = origin.memo[self] = (
                self.builder(origin),
                None if ttl is None else _monotonic() + ttl,
            )
        return made[0]

    def _post(self, messages: Sequence[Any], origin: Origin, build: Callable[[Any], Any]) -> int:
        post_message = self.post_message
        stats = origin.stats
        taken = posted = 0
        try:
            for message in messages:
                taken += 1
                try:
                    msg = build(message)
                except Exception:
                    stats.dropped += 1
                    self._build_errors(Failure(), listener=stats.name, peer=origin.peer_host)
                    continue
                if self._check_next:
                    self._check_next = False
                    if not self._post_checked(msg, origin):
                        break  # held: posted first at the next wakeup
                    if self._suspended:
                        break
                    continue
                self._posts += 1
                post_message(msg)
                posted += 1
                if self._suspended:  # suspend() came from inside post_message()
                    break
        finally:
            stats.posted += posted
            if taken and _CLOSE_BATCH:
                self.close_batch()  # a subclass may hook it (tests/test_integration_fields.py)
        return taken

    def close_batch(self) -> None:  # type: ignore[override]
        if _CLOSE_BATCH:
            _close_batch(self)

    def suspended_seconds(self) -> float:
        """Seconds this source has spent suspended, in all (the current suspension too)."""
        total = self._suspended_total
        if self._suspended:
            total += _monotonic() - self._suspended_since
        return total


def _untracked(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``build`` with the bookmark of a message nobody waits for: while an ack tracker is set
    the daemon dereferences every message's bookmark (3.38.1 and 4.8.1 crash without one)."""

    def build_untracked(message: Any) -> Any:
        msg = build(message)
        msg.set_bookmark(UNTRACKED)
        return msg

    return build_untracked


def _tracked(build: Callable[[Any], Any], origin: Origin, reactor: Any) -> Callable[[Any], Any]:
    """A builder of ``(message, token)`` items: the message, bookmarked for its sender's
    acknowledgement; one that cannot be built is reported not stored (in the next turn)."""
    acknowledge = origin.acknowledge

    def build_tracked(item: tuple[Any, Any]) -> Any:
        message, token = item
        try:
            msg = build(message)
        except Exception:
            if acknowledge is not None and reactor is not None:
                reactor.callLater(0, acknowledge, [token], False)
            raise
        msg.set_bookmark((acknowledge, token))
        return msg

    return build_tracked


def _taken(msg: Any) -> bool:
    """Did the daemon take ``msg``? Its source pipeline sets HOST_FROM on every message it
    takes (to the sender's name, or the local host name), synchronously inside
    ``post_message()``; a message dropped for an empty window is left untouched."""
    try:
        return bool(msg["HOST_FROM"])
    except KeyError:  # 4.x: an unset name
        return False

"""The seams between layers: what a protocol hands messages to, and what it says about them.

Protocols (``syslogsrc.protocols``) never import a driver. They hand the messages of one natural
unit (one read of a stream, the datagrams of one sender read at one wake-up, one HTTP request)
to an :class:`IMessageSink` in one
call, with the :class:`Origin` they share; the sink says how many it took. Raw frames cross as
``bytes`` and are parsed in the sink (inside syslog-ng the sink may choose the daemon's own
parser); a message a protocol has already decoded (an HTTP JSON object) crosses as a
:class:`~syslogsrc.parsing.ParsedMessage`, never re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from syslogsrc.parsing import ParsedMessage

__all__ = ["IAcknowledgingSink", "IMessageSink", "ListenerStats", "Origin"]


@attrs.define(slots=True)
class ListenerStats:
    """Counters of one listener. Protocols and sinks increment them in the reactor thread."""

    name: str
    received: int = 0  #: frames (messages) read from the network
    posted: int = 0  #: messages handed to the daemon / output
    bytes: int = 0  #: payload bytes read
    truncated: int = 0  #: messages cut at the maximum message size
    malformed: int = 0  #: frames that failed parsing or framing (still delivered, tagged)
    refused: int = 0  #: connections refused (max-connections, TLS failures)
    open_connections: int = 0  #: connections open now
    dropped: int = 0  #: messages lost (HTTP requests answered 503/413 count their messages here)
    timed_out: int = 0  #: connections closed by idle-timeout (no complete message in time)
    #: datagrams the kernel dropped for this socket (receive buffer full), from /proc/net/udp
    kernel_drops: int = 0
    #: times a sender went over its rate limit: a stream connection paused, a datagram dropped,
    #: an HTTP request answered 429
    rate_limited: int = 0
    #: senders outside the listener's allow list: connections closed, datagrams dropped, HTTP
    #: requests answered 403
    denied: int = 0
    #: messages read and not posted when the source stopped, left for the next instance (a
    #: reload inside the daemon); at a shutdown nobody takes them: the log says they were dropped
    handed_over: int = 0
    #: messages a previous instance read and did not post, taken over (and posted) by this one
    taken_over: int = 0

    def as_dict(self) -> dict[str, int | str]:
        return attrs.asdict(self)


@attrs.frozen(slots=True)
class Origin:
    """Where messages came from, computed once: for a connection, for a datagram, for an HTTP
    request. Everything every message of it carries is here."""

    transport: str  #: "tcp", "tls", "unix", "udp", "unixgram", "http", "https"
    stats: ListenerStats  #: the counters of the listener the messages came through
    peer_host: str | None = None  #: IP literal of the peer (None for unix sockets)
    peer_port: int | None = None
    local_port: int | None = None
    #: the format raw frames are parsed with (a listener's ``format=``); None: the sink's own
    format: str | None = None
    #: name-value pairs every message of this origin carries (HTTP path, query, headers)
    pairs: Mapping[str, str] | None = None
    #: what a sink or an output computes once per origin rather than per message (e.g. the
    #: constant part of a rendered line), keyed by the object that computed it
    memo: dict = attrs.field(factory=dict, eq=False, repr=False)
    #: for messages posted with :meth:`IAcknowledgingSink.post_tracked`: called in the reactor
    #: thread as ``acknowledge(tokens, stored)`` with the tokens of messages that are stored
    #: (``stored`` True) or that the sink could not store (False: a message it could not build
    #: or write), each token once, in any order and any grouping
    acknowledge: Callable[[Sequence[Any], bool], None] | None = attrs.field(
        default=None, eq=False, repr=False
    )


class IMessageSink(Interface):
    """Takes messages from protocols, in the reactor thread, a batch at a time.

    Flow control: a sink pauses every registered producer (``pauseProducing``) when it cannot
    take more, and resumes them later. A protocol does not post while it is paused: what it
    has read waits inside it, in order, and is posted first after ``resumeProducing``.
    """

    paused = Attribute("True while the sink takes no messages (producers are paused).")

    def post(messages: Sequence[bytes | ParsedMessage], origin: Origin) -> int:
        """Take the messages of one read, datagram or HTTP request, in order, as one batch.

        Returns how many were taken, from the first: all of them, or fewer when the sink paused
        its producers on the way (the rest stays with the caller and is posted first after
        the resume). A message the sink cannot handle (a ``build_message`` that raised) is
        taken, counted in ``origin.stats.dropped`` and logged by the sink: ``post`` itself
        does not raise for a bad message. ``bytes`` are raw frames, parsed with
        ``origin.format`` or the sink's own format; a ``ParsedMessage`` is taken as it is.
        ``origin.pairs`` are added to every message.
        """

    def register_producer(producer: object) -> None:
        """Start pausing/resuming ``producer`` (an ``IPushProducer``) with the sink. If the sink is
        paused now, the producer is paused at once."""

    def unregister_producer(producer: object) -> None:
        """Forget ``producer`` (its connection closed)."""


class IAcknowledgingSink(IMessageSink):
    """A sink that can say when each message it took is stored (end-to-end acknowledgement).

    A protocol whose sender waits for an answer (RELP; HTTP in acknowledgement mode) posts with
    :meth:`post_tracked` and an ``origin`` whose ``acknowledge`` is set; it answers the sender
    when ``origin.acknowledge`` reports the message's token. What "stored" means depends on the
    sink (:attr:`acknowledgement`). A sink without this interface takes messages with ``post``
    only: a protocol then answers when they are taken.
    """

    acknowledgement = Attribute(
        "What an acknowledgement means here, for the docs and the logs: 'delivered' (inside"
        " syslog-ng: the destination acknowledged the message; with flags(flow-control) that"
        " is once it is written or in a reliable disk buffer), 'written' (written and flushed to"
        " the output), 'synced' (and fsync'ed)."
    )

    def post_tracked(
        messages: Sequence[bytes | ParsedMessage], origin: Origin, tokens: Sequence[Any]
    ) -> int:
        """As :meth:`IMessageSink.post`, and each message taken is acknowledged later:
        ``origin.acknowledge`` is called (in the reactor thread) with ``tokens[i]`` once
        ``messages[i]`` is stored, or with ``stored=False`` if it cannot be. ``tokens`` is
        parallel to ``messages``. A message posted and not acknowledged when the sink stops
        (the process ends) gets no call: the sender, which has no answer, sends it again."""

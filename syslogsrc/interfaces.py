"""The seams between layers: what a protocol hands messages to, and what it says about them.

Protocols (``syslogsrc.protocols``) never import a driver. They feed raw frames to an
:class:`IMessageSink`; :class:`syslogsrc.source.TwistedSource` is one sink, an embedding
application's callback is another. Parsing happens in the sink, because inside syslog-ng the
sink may choose the daemon's own parser (``LogMessage.parse``).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from zope.interface import Attribute, Interface

__all__ = ["IMessageSink", "ListenerStats", "Origin"]


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

    def as_dict(self) -> dict[str, int | str]:
        return attrs.asdict(self)


@attrs.frozen(slots=True)
class Origin:
    """Where a frame came from: stable for a connection, new for each datagram."""

    transport: str  #: "tcp", "tls", "unix", "udp", "unixgram", "http", "https"
    listener: ListenerStats
    peer_host: str | None = None  #: IP literal of the peer (None for unix sockets)
    peer_port: int | None = None
    local_port: int | None = None


class IMessageSink(Interface):
    """Receives frames from protocols, in the reactor thread.

    Flow control: a sink pauses every registered producer (``pauseProducing``) when it cannot take
    more, and resumes them later. A protocol must not call :meth:`post` while it is paused: frames
    it has already read wait inside it and are posted, in order, after ``resumeProducing``.
    """

    paused = Attribute("True while the sink takes no messages (producers are paused).")

    def post(
        frame: bytes,
        origin: Origin,
        format: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Take one message. ``format`` overrides the sink's parser format (e.g. "json" for an
        HTTP JSON body); ``extra`` are name-value pairs to add (HTTP query arguments, headers)."""

    def close_batch() -> None:
        """End of one natural unit: a datagram, one read of a stream, one HTTP request."""

    def register_producer(producer: object) -> None:
        """Start pausing/resuming ``producer`` (an ``IPushProducer``) with the sink. If the sink is
        paused now, the producer is paused at once."""

    def unregister_producer(producer: object) -> None:
        """Forget ``producer`` (its connection closed)."""

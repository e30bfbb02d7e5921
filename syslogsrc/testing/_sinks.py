"""Sinks and fake transports for tests of protocols and sources (:mod:`syslogsrc.testing`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from syslogsrc.interfaces import IAcknowledgingSink, IMessageSink, Origin
from syslogsrc.parsing import ParsedMessage, parse

_Message = bytes | ParsedMessage


@implementer(IMessageSink)
class RecordingSink:
    """Records what protocols post: every message with its origin, and each call's batch.

    :param window: pause every producer once this many messages were taken since the last
        :meth:`resume` (from inside ``post``: what was not taken stays with the protocol);
        None: never.
    :param raise_on: raw frames whose post raises ``ValueError`` (a sink that fails).

    A post while paused takes nothing and is recorded in :attr:`posted_while_paused` (the
    daemon would drop those messages): a protocol that keeps flow control leaves it empty. A
    post of no messages raises ``ValueError``: a protocol with nothing to post has no batch.
    """

    def __init__(self, window: int | None = None, raise_on: Sequence[bytes] = ()) -> None:
        self.window = window
        self.raise_on = set(raise_on)
        self.paused = False
        #: every message taken, with its origin, in order
        self.posts: list[tuple[_Message, Origin]] = []
        #: the messages each ``post`` call took (one read, one sender's datagrams of a
        #: wake-up, one request)
        self.batches: list[list[_Message]] = []
        #: messages offered while paused (none were taken)
        self.posted_while_paused: list[_Message] = []
        #: the registered producers (connections, ports, HTTP sites)
        self.producers: list[Any] = []
        #: called after each message is taken, with it (e.g. to pause or stop mid-batch)
        self.on_post: Callable[[_Message], object] | None = None
        self._since_resume = 0

    @property
    def messages(self) -> list[_Message]:
        """Every message taken, in order (raw frames as ``bytes``)."""
        return [message for message, _ in self.posts]

    def parsed(self, format: str = "auto") -> list[ParsedMessage]:
        """Every message taken, parsed as the standalone sinks parse them."""
        return [
            parse(m, origin.format or format) if type(m) is bytes else m  # type: ignore[misc]
            for m, origin in self.posts
        ]

    def post(self, messages: Sequence[_Message], origin: Origin) -> int:
        if not messages:
            raise ValueError("post() of an empty batch")
        if self.paused:
            self.posted_while_paused.extend(messages)
            return 0
        if self.raise_on.intersection(m for m in messages if type(m) is bytes):
            raise ValueError(f"the sink refuses one of {list(messages)!r}")
        batch: list[_Message] = []
        for message in messages:
            if self.paused:
                break
            self.posts.append((message, origin))
            batch.append(message)
            origin.stats.posted += 1
            self._since_resume += 1
            if self.on_post is not None:
                self.on_post(message)
            if self.window is not None and self._since_resume >= self.window:
                self.pause()
        if batch:
            self.batches.append(batch)
        return len(batch)

    def register_producer(self, producer: Any) -> None:
        self.producers.append(producer)
        if self.paused:
            producer.pauseProducing()

    def unregister_producer(self, producer: Any) -> None:
        self.producers.remove(producer)

    def pause(self) -> None:
        """Pause every producer (the daemon's ``suspend()``)."""
        self.paused = True
        for producer in list(self.producers):
            producer.pauseProducing()

    def resume(self) -> None:
        """Resume every producer (the daemon's ``wakeup()``); the window starts again."""
        self.paused = False
        self._since_resume = 0
        for producer in list(self.producers):
            producer.resumeProducing()

    def stop(self) -> None:
        """Stop every producer for good (the source is going away) and forget them."""
        for producer in list(self.producers):
            producer.stopProducing()
        self.producers.clear()


@implementer(IAcknowledgingSink)
class AcknowledgingSink(RecordingSink):
    """A :class:`RecordingSink` that acknowledges what it takes with ``post_tracked``.

    :param acknowledge: ``"at-once"``: each message taken is acknowledged from inside
        ``post_tracked`` (a sink whose storage is immediate); ``"manual"``: the test calls
        :meth:`acknowledge` (a destination that acknowledges later, in any order).
    :param refuse: raw frames acknowledged with ``stored=False`` (a message the sink cannot
        store), at once in either mode.

    Other arguments as :class:`RecordingSink`'s. Messages posted with plain ``post`` are
    recorded and never acknowledged.
    """

    acknowledgement = "recorded"

    def __init__(
        self,
        acknowledge: Literal["at-once", "manual"] = "at-once",
        refuse: Sequence[bytes] = (),
        window: int | None = None,
        raise_on: Sequence[bytes] = (),
    ) -> None:
        if acknowledge not in ("at-once", "manual"):
            raise ValueError(f"acknowledge must be 'at-once' or 'manual', not {acknowledge!r}")
        super().__init__(window=window, raise_on=raise_on)
        self.mode = acknowledge
        self.refuse = set(refuse)
        #: tokens taken and not acknowledged yet (manual mode), in order, with their origins
        self.unacknowledged: list[tuple[Any, Origin]] = []
        #: every acknowledgement made: (token, stored), in order
        self.acknowledged: list[tuple[Any, bool]] = []

    def post_tracked(
        self, messages: Sequence[_Message], origin: Origin, tokens: Sequence[Any]
    ) -> int:
        if len(tokens) != len(messages):
            raise ValueError(f"{len(messages)} messages and {len(tokens)} tokens")
        if origin.acknowledge is None:
            raise ValueError("post_tracked() with an origin that has no acknowledge")
        taken = self.post(messages, origin)
        stored, refused = [], []
        for message, token in zip(messages[:taken], tokens[:taken], strict=True):
            if message in self.refuse:
                refused.append(token)
            elif self.mode == "at-once":
                stored.append(token)
            else:
                self.unacknowledged.append((token, origin))
        if refused:
            self._call(origin, refused, False)
        if stored:
            self._call(origin, stored, True)
        return taken

    def acknowledge(self, tokens: Sequence[Any] | None = None, stored: bool = True) -> list[Any]:
        """Acknowledge ``tokens`` (default: every one waiting), in the order given, one call
        per origin; returns the tokens acknowledged. A token not waiting raises ``KeyError``."""
        waiting = self.unacknowledged
        if tokens is None:
            chosen, self.unacknowledged = waiting, []
        else:
            index = {token: i for i, (token, _) in enumerate(waiting)}
            missing = [t for t in tokens if t not in index]
            if missing:
                raise KeyError(f"not waiting for an acknowledgement: {missing}")
            chosen = [waiting[index[t]] for t in tokens]
            drop = {index[t] for t in tokens}
            self.unacknowledged = [w for i, w in enumerate(waiting) if i not in drop]
        groups: dict[int, tuple[Origin, list[Any]]] = {}
        for token, origin in chosen:
            groups.setdefault(id(origin), (origin, []))[1].append(token)
        for origin, group in groups.values():
            self._call(origin, group, stored)
        return [token for token, _ in chosen]

    def _call(self, origin: Origin, tokens: list[Any], stored: bool) -> None:
        self.acknowledged.extend((token, stored) for token in tokens)
        assert origin.acknowledge is not None
        origin.acknowledge(tokens, stored)


def connect(
    factory: IProtocolFactory,
    peer: tuple[str, int] = ("192.0.2.7", 40000),
    local: tuple[str, int] = ("127.0.0.1", 5514),
) -> tuple[IProtocol, StringTransport]:
    """A protocol of ``factory``, connected to a fake transport: feed it with
    ``protocol.dataReceived(b"...")``; what it writes back is ``transport.value()``."""

    def address(host: str, port: int) -> IPv4Address | IPv6Address:
        return IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)

    protocol = factory.buildProtocol(address(*peer))
    if protocol is None:
        raise ValueError(f"{factory!r} refused the connection from {peer}")
    transport = StringTransport(hostAddress=address(*local), peerAddress=address(*peer))
    protocol.makeConnection(transport)
    return protocol, transport

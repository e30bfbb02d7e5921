"""RelpProtocol and RelpFactory: omrelp's conversation on in-memory transports, flow control
both ways (a paused sink, a client that does not read its answers), acknowledgement in any
order, hostile clients, the serverclose hint; then the same over real loopback sockets."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Generator
from typing import Any

import attrs
import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_relp import LIBRELP_OFFERS, frame
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from syslogsrc.interfaces import IAcknowledgingSink, ListenerStats
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.relp import RelpFactory, RelpProtocol, RelpToken
from syslogsrc.relp import SERVERCLOSE
from syslogsrc.testing import AcknowledgingSink, RecordingSink, free_port

PEER = IPv4Address("TCP", "192.0.2.7", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 2514)
OPEN = frame(1, b"open", LIBRELP_OFFERS)
TIMEOUT = 10.0


def make(
    sink: RecordingSink | None = None,
    options: ListenerOptions | None = None,
    **kwargs: Any,
) -> tuple[RelpFactory, RecordingSink, ListenerStats, Clock]:
    sink = sink if sink is not None else RecordingSink()
    stats = ListenerStats(name="relp:2514")
    clock = Clock()
    factory = RelpFactory(clock, sink, options or ListenerOptions(), stats, **kwargs)
    return factory, sink, stats, clock


def connect(factory: RelpFactory) -> tuple[RelpProtocol, StringTransport]:
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, transport


def opened(factory: RelpFactory) -> tuple[RelpProtocol, StringTransport]:
    protocol, transport = connect(factory)
    protocol.dataReceived(OPEN)
    assert transport.value().startswith(b"1 rsp ")
    transport.clear()
    return protocol, transport


def syslogs(first: int, *messages: bytes) -> bytes:
    return b"".join(frame(first + i, b"syslog", m) for i, m in enumerate(messages))


def ok(*txnrs: int) -> bytes:
    return b"".join(b"%d rsp 6 200 OK\n" % t for t in txnrs)


def rsp500(txnr: int, text: str) -> bytes:
    data = b"500 " + text.encode()
    return b"%d rsp %d %s\n" % (txnr, len(data), data)


def test_the_acknowledging_sink_provides_the_interface() -> None:
    assert verifyObject(IAcknowledgingSink, AcknowledgingSink())


def test_the_acknowledging_sink_acknowledges_what_and_when_told() -> None:
    from syslogsrc.interfaces import Origin

    calls: list[tuple[list[Any], bool]] = []
    stats = ListenerStats(name="x")
    origin = Origin(
        "relp", stats, acknowledge=lambda tokens, stored: calls.append((tokens, stored))
    )
    other = Origin("relp", stats, acknowledge=lambda tokens, stored: calls.append((tokens, stored)))
    sink = AcknowledgingSink("manual", refuse=[b"bad"])
    assert sink.post_tracked([b"a", b"bad", b"c"], origin, ["ta", "tbad", "tc"]) == 3
    assert calls == [(["tbad"], False)]  # refused at once
    sink.post_tracked([b"d"], other, ["td"])
    assert sink.acknowledge(["tc"]) == ["tc"]
    assert calls[-1] == (["tc"], True)
    with pytest.raises(KeyError):
        sink.acknowledge(["tc"])  # not waiting any more
    assert sink.acknowledge(stored=False) == ["ta", "td"]
    assert calls[-2:] == [(["ta"], False), (["td"], False)]  # one call per origin
    assert sink.unacknowledged == []
    with pytest.raises(ValueError, match="tokens"):
        sink.post_tracked([b"a"], origin, [])
    with pytest.raises(ValueError, match="acknowledge"):
        sink.post_tracked([b"a"], Origin("relp", stats), ["t"])
    with pytest.raises(ValueError, match="at-once"):
        AcknowledgingSink("later")  # type: ignore[arg-type]


def test_the_acknowledging_sink_acknowledges_only_what_it_took() -> None:
    from syslogsrc.interfaces import Origin

    calls: list[tuple[list[Any], bool]] = []
    origin = Origin("relp", ListenerStats(name="x"), acknowledge=lambda t, s: calls.append((t, s)))
    sink = AcknowledgingSink("at-once", window=2)
    assert sink.post_tracked([b"a", b"b", b"c"], origin, [1, 2, 3]) == 2
    assert calls == [([1, 2], True)]


# --- the conversation ---------------------------------------------------------------------


def test_open_is_answered_with_our_offers() -> None:
    factory, _, _, _ = make()
    protocol, transport = connect(factory)
    protocol.dataReceived(OPEN)
    answer = transport.value()
    assert answer.startswith(b"1 rsp ")
    assert b"200 OK\nrelp_version=0\nrelp_software=syslogsrc," in answer
    assert answer.endswith(b"\ncommands=syslog\n")


def test_a_plain_sink_gets_each_read_as_one_batch_answered_when_taken() -> None:
    factory, sink, stats, _ = make(transport_name="relp")
    protocol, transport = opened(factory)
    data = syslogs(2, b"<13>one", b"<13>two", b"<13>three")
    protocol.dataReceived(data)
    assert sink.batches == [[b"<13>one", b"<13>two", b"<13>three"]]
    assert transport.value() == ok(2, 3, 4)
    assert stats.received == 3 and stats.posted == 3
    origin = sink.posts[0][1]
    assert (origin.transport, origin.peer_host, origin.peer_port, origin.local_port) == (
        "relp",
        "192.0.2.7",
        40000,
        2514,
    )
    assert origin.acknowledge is None


def test_an_acknowledging_sink_answers_at_once() -> None:
    factory, sink, _, _ = make(AcknowledgingSink("at-once"))
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a", b"b"))
    assert transport.value() == ok(2, 3)
    origin = sink.posts[0][1]
    assert origin.acknowledge == factory.acknowledge
    assert sink.acknowledged == [
        (RelpToken(protocol.number, 2), True),
        (RelpToken(protocol.number, 3), True),
    ]


def test_answers_wait_for_the_acknowledgement_and_follow_its_order() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, _, _ = make(sink)
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a", b"b", b"c", b"d"))
    assert sink.messages == [b"a", b"b", b"c", b"d"]
    assert transport.value() == b""  # taken is not stored
    n = protocol.number
    sink.acknowledge([RelpToken(n, 4)])
    sink.acknowledge([RelpToken(n, 2), RelpToken(n, 5)])
    assert transport.value() == ok(4, 2, 5)
    sink.acknowledge([RelpToken(n, 3)], stored=False)
    assert transport.value() == ok(4, 2, 5) + rsp500(3, "message not stored")
    assert protocol.connection.unanswered == ()


def test_a_message_the_sink_refuses_is_answered_500() -> None:
    factory, _, _, _ = make(AcknowledgingSink("at-once", refuse=[b"bad"]))
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"good", b"bad", b"good"))
    assert transport.value() == rsp500(3, "message not stored") + ok(2, 4)


def test_close_is_answered_once_everything_before_it_is() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, _, _ = make(sink)
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a", b"b") + frame(4, b"close"))
    assert transport.value() == b"" and not transport.disconnecting
    sink.acknowledge([RelpToken(protocol.number, 3)])
    assert transport.value() == ok(3) and not transport.disconnecting
    sink.acknowledge()
    assert transport.value() == ok(3, 2) + b"4 rsp 0\n" + SERVERCLOSE
    assert transport.disconnecting


def test_close_with_nothing_unanswered_is_answered_at_once() -> None:
    factory, _, _, _ = make()
    protocol, transport = opened(factory)
    protocol.dataReceived(frame(2, b"close"))
    assert transport.value() == b"2 rsp 0\n" + SERVERCLOSE
    assert transport.disconnecting


# --- flow control ---------------------------------------------------------------------------


def test_a_paused_sink_gets_nothing_and_frames_wait_in_order() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, stats, _ = make(sink)
    protocol, transport = opened(factory)
    sink.pause()
    assert transport.producerState == "paused"  # reading stops
    protocol.dataReceived(syslogs(2, b"a", b"b"))
    protocol.dataReceived(syslogs(4, b"c"))
    assert sink.posts == [] and sink.posted_while_paused == []
    assert [m for _, m in protocol.pending] == [b"a", b"b", b"c"]
    assert transport.value() == b""
    assert stats.received == 3
    sink.resume()
    assert sink.messages == [b"a", b"b", b"c"]
    assert transport.producerState == "producing"
    assert transport.value() == b""  # posted, not acknowledged yet
    sink.acknowledge()
    assert transport.value() == ok(2, 3, 4)


def test_a_paused_plain_sink_answers_what_waited_as_it_takes_it() -> None:
    factory, sink, _, _ = make()
    protocol, transport = opened(factory)
    sink.pause()
    protocol.dataReceived(syslogs(2, b"a", b"b"))
    protocol.dataReceived(syslogs(4, b"c"))
    assert protocol.pending == [(2, b"a"), (3, b"b"), (4, b"c")]
    assert transport.value() == b""
    sink.resume()
    assert sink.batches == [[b"a", b"b", b"c"]]  # the reads that waited, in one call
    assert sink.posted_while_paused == []
    assert transport.value() == ok(2, 3, 4)
    assert protocol.pending == []


def test_a_sink_that_pauses_mid_batch_keeps_the_rest_in_order() -> None:
    sink = RecordingSink(window=2)
    factory, _, _, _ = make(sink)
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a", b"b", b"c", b"d", b"e"))
    assert sink.messages == [b"a", b"b"]
    assert transport.value() == ok(2, 3)
    assert transport.producerState == "paused"
    sink.resume()  # takes two more, pauses again
    assert sink.messages == [b"a", b"b", b"c", b"d"]
    sink.resume()
    assert sink.messages == [b"a", b"b", b"c", b"d", b"e"]
    assert transport.value() == ok(2, 3, 4, 5, 6)
    assert sink.posted_while_paused == []


def test_a_full_write_buffer_stops_reading_until_it_drains() -> None:
    factory, sink, _, _ = make()
    protocol, transport = opened(factory)
    answers = transport.producer
    assert transport.streaming and answers is not None
    answers.pauseProducing()  # the transport: the peer does not read its answers
    assert protocol.write_blocked and transport.producerState == "paused"
    sink.pause()
    answers.resumeProducing()  # drained, but the sink still holds us
    assert transport.producerState == "paused"
    answers.pauseProducing()
    sink.resume()  # the sink lets go, the buffer is still full
    assert transport.producerState == "paused"
    answers.resumeProducing()
    assert transport.producerState == "producing"


# --- acknowledgements that come late, tokens that name a connection --------------------------


def test_an_acknowledgement_after_the_connection_closed_is_ignored() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, _, _ = make(sink)
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a", b"b"))
    protocol.connectionLost(Failure(ConnectionError("gone")))
    written = transport.value()
    sink.acknowledge()  # must not write to the closed transport, nor raise
    assert transport.value() == written
    assert factory.late_acknowledgements == 2
    assert factory.connections == []


def test_a_second_acknowledgement_of_a_frame_is_ignored() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, _, _ = make(sink)
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a"))
    token = RelpToken(protocol.number, 2)
    factory.acknowledge([token], True)
    factory.acknowledge([token], False)
    assert transport.value() == ok(2)
    assert factory.late_acknowledgements == 1


def test_tokens_name_the_connection_and_can_be_routed_elsewhere() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, _, _ = make(sink)
    first, first_transport = opened(factory)
    second, second_transport = opened(factory)
    assert first.number != second.number
    first.dataReceived(syslogs(2, b"from first"))
    second.dataReceived(syslogs(2, b"from second"))
    sink.acknowledge()
    assert first_transport.value() == ok(2) and second_transport.value() == ok(2)
    # a hand-over: the connection's number now leads to another protocol object
    third, third_transport = connect(factory)
    factory.route(first.number, third)
    factory.acknowledge([RelpToken(first.number, 9)], True)
    assert third_transport.value() == b""  # txnr 9 awaits no answer there
    assert factory.late_acknowledgements == 1


# --- stopping ---------------------------------------------------------------------------------


def test_a_stopping_sink_closes_with_the_serverclose_hint() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, stats, _ = make(sink)
    protocol, transport = opened(factory)
    sink.pause()
    protocol.dataReceived(syslogs(2, b"a"))
    sink.stop()
    assert transport.value() == SERVERCLOSE
    assert transport.disconnecting
    assert protocol.pending == [] and stats.dropped == 0  # the client sends it again
    assert sink.posts == []


def test_the_tracker_sends_the_serverclose_hint_when_the_listener_stops() -> None:
    factory, _, stats, clock = make()
    tracker = ConnectionTracker(clock, factory, ListenerOptions(), stats)
    wrapper = tracker.buildProtocol(PEER)
    transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
    wrapper.makeConnection(transport)
    wrapper.dataReceived(OPEN + syslogs(2, b"a"))
    transport.clear()
    done = tracker.close_all()
    assert transport.value() == SERVERCLOSE
    assert transport.disconnecting
    wrapper.connectionLost(Failure(ConnectionError("closed")))
    assert done.called


def test_a_peer_that_never_reads_our_last_bytes_is_aborted() -> None:
    factory, _, _, clock = make(close_timeout=5.0)
    protocol, transport = opened(factory)
    aborted = []
    transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    protocol.dataReceived(b"junk\n")
    assert transport.disconnecting and not aborted
    clock.advance(5.0)
    assert aborted == [True]


def test_a_sink_that_raises_closes_the_connection_unanswered() -> None:
    factory, _, stats, clock = make(RecordingSink(raise_on=[b"boom"]))
    protocol, transport = opened(factory)
    with capturedLogs() as events:
        protocol.dataReceived(syslogs(2, b"boom"))
        factory.flush_logs()
    assert transport.value() == SERVERCLOSE
    assert transport.disconnecting
    assert any("the sink raised 1 time" in formatEvent(e) for e in events)
    assert stats.received == 1 and stats.malformed == 0
    assert stats.dropped == 0  # unanswered: the client sends it again
    assert clock.getDelayedCalls()  # the abort deadline


def test_reads_that_waited_are_lost_together_to_a_sink_that_raises() -> None:
    sink = RecordingSink(raise_on=[b"boom"])
    factory, _, stats, _ = make(sink)
    protocol, transport = opened(factory)
    sink.pause()
    protocol.dataReceived(syslogs(2, b"a"))
    protocol.dataReceived(syslogs(3, b"boom"))
    protocol.dataReceived(syslogs(4, b"after"))
    assert protocol.pending == [(2, b"a"), (3, b"boom"), (4, b"after")]
    sink.resume()  # one call with the three: it raises, so none of them is answered
    assert sink.messages == []
    assert transport.value() == SERVERCLOSE  # the client sends the three again
    assert protocol.pending == [] and stats.dropped == 0
    protocol.dataReceived(syslogs(5, b"late"))  # read after the close: not posted
    assert sink.messages == []


def test_a_sink_that_stops_inside_post_answers_only_what_it_took() -> None:
    sink = RecordingSink()
    factory, _, stats, _ = make(sink)
    protocol, transport = opened(factory)

    def stop(message: object) -> None:
        if message == b"a":  # the source stops while the sink takes the batch
            sink.pause()
            sink.stop()

    sink.on_post = stop
    protocol.dataReceived(syslogs(2, b"a", b"b"))
    assert sink.messages == [b"a"]
    assert transport.value() == SERVERCLOSE  # closed before "a" was answered: sent again
    assert transport.disconnecting
    assert protocol.pending == [] and stats.dropped == 0


# --- a reload: the connection goes on in the next instance ---------------------------------


def test_a_handed_over_connection_is_answered_by_the_next_instance() -> None:
    old_sink = AcknowledgingSink("manual")
    old_factory, _, _, _ = make(old_sink)
    old, old_transport = opened(old_factory)
    old.dataReceived(syslogs(2, b"a", b"b"))  # posted, not acknowledged
    old_sink.pause()
    old.dataReceived(syslogs(4, b"c") + b"5 sys")  # read, not posted; a frame begun
    number = old.number
    state, frames = old.hand_over()
    assert frames == [] and state.number == number
    assert [m for _, m in state.pending] == [b"c"]
    old_sink.acknowledge([RelpToken(number, 2)])  # between the two instances: kept
    assert old_transport.value() == b""
    assert state.acknowledgements == [([2], True)]

    new_sink = AcknowledgingSink("manual")
    new_factory, _, new_stats, _ = make(new_sink)
    new, new_transport = connect(new_factory)
    origin = old._origin
    assert origin is not None
    new.adopt(state, [], attrs.evolve(origin, stats=new_stats))
    assert new.number == number
    assert new_transport.value() == ok(2)  # the acknowledgement that waited
    assert new_sink.messages == [b"c"]  # the frame read by the old instance
    assert new_sink.posts[0][1].acknowledge == new_factory.acknowledge
    old_sink.acknowledge()  # through the old instance's origin: reaches the new protocol
    new_sink.acknowledge()
    assert new_transport.value() == ok(2, 3, 4)
    new.dataReceived(b"log 1 d\n" + frame(6, b"close"))  # the frame begun, then the close
    assert new_sink.messages == [b"c", b"d"]
    new_sink.acknowledge()
    assert new_transport.value() == ok(2, 3, 4, 5) + b"6 rsp 0\n" + SERVERCLOSE
    assert old_factory.late_acknowledgements == new_factory.late_acknowledgements == 0
    assert new_factory.connections == [new] and old_factory.connections == []


def test_a_plain_sink_answers_the_frames_handed_over_on_the_new_connection() -> None:
    old_factory, old_sink, _, _ = make()
    old, old_transport = opened(old_factory)
    old_sink.pause()
    old.dataReceived(syslogs(2, b"a") + syslogs(3, b"b"))
    state, _ = old.hand_over()
    assert state.pending == [(2, b"a"), (3, b"b")] and old.pending == []
    new_factory, new_sink, new_stats, _ = make()
    new, new_transport = connect(new_factory)
    new.adopt(state, [], attrs.evolve(old._origin, stats=new_stats))
    assert new_sink.messages == [b"a", b"b"]
    assert new_transport.value() == ok(2, 3) and old_transport.value() == b""
    assert new_sink.posts[0][1].acknowledge is None
    assert old_sink.posts == [] and new_stats.dropped == 0


def test_a_close_handed_over_is_answered_by_the_next_instance() -> None:
    old_sink = AcknowledgingSink("manual")
    old_factory, _, _, _ = make(old_sink)
    old, _ = opened(old_factory)
    old.dataReceived(syslogs(2, b"a") + frame(3, b"close"))
    state, _ = old.hand_over()
    new_factory, _, new_stats, _ = make(AcknowledgingSink("manual"))
    new, new_transport = connect(new_factory)
    new.adopt(state, [], attrs.evolve(old._origin, stats=new_stats))
    assert new_transport.value() == b""
    old_sink.acknowledge()
    assert new_transport.value() == ok(2) + b"3 rsp 0\n" + SERVERCLOSE
    assert new_transport.disconnecting


# --- hostile clients ------------------------------------------------------------------------

HOSTILE = [
    pytest.param(syslogs(1, b"early"), rsp500(1, "command syslog before open"), id="before"),
    pytest.param(b"2 syslog 1 x\n", rsp500(2, "txnr 2 out of sequence, expected 1"), id="seq"),
    pytest.param(b"hello\n", rsp500(0, "invalid frame header"), id="junk"),
]


@pytest.mark.parametrize(("data", "answer"), HOSTILE)
def test_hostile_first_frames_are_answered_counted_logged_and_closed(
    data: bytes, answer: bytes
) -> None:
    factory, sink, stats, _ = make()
    protocol, transport = connect(factory)
    with capturedLogs() as events:
        protocol.dataReceived(data)
        factory.flush_logs()
    assert transport.value() == answer + SERVERCLOSE
    assert transport.disconnecting
    assert (stats.malformed, stats.refused) == (1, 1)
    assert sink.posts == []
    [line] = [formatEvent(e) for e in events]
    assert "closed 1 RELP connection(s) for protocol errors" in line and "192.0.2.7" in line
    protocol.dataReceived(OPEN)  # nothing more is read
    assert transport.value() == answer + SERVERCLOSE


def test_bad_txnrs_after_open() -> None:
    factory, sink, stats, _ = make()
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a") + frame(2, b"syslog", b"again"))
    assert sink.messages == []  # the good frame before the error is not posted unanswerable
    assert transport.value() == rsp500(2, "txnr 2 reused while unanswered") + SERVERCLOSE
    assert stats.malformed == 1


def test_an_oversize_frame_is_refused_at_its_header() -> None:
    factory, sink, stats, _ = make(options=ListenerOptions(max_message_size=64))
    protocol, transport = opened(factory)
    protocol.dataReceived(b"2 syslog 100000 " + b"x" * 10)
    assert transport.value().startswith(rsp500(2, "syslog DATALEN 100000 over the maximum of 64"))
    assert transport.disconnecting and stats.malformed == 1
    assert sink.posts == []


def test_a_window_overrun_is_refused() -> None:
    sink = AcknowledgingSink("manual")
    factory, _, stats, _ = make(sink, max_window=3)
    protocol, transport = opened(factory)
    protocol.dataReceived(syslogs(2, b"a", b"b", b"c"))
    assert transport.value() == b""
    protocol.dataReceived(syslogs(5, b"d"))
    assert transport.value() == (
        rsp500(5, "window overrun: more than 3 frames unanswered") + SERVERCLOSE
    )
    sink.acknowledge()  # the acknowledgements of the closed connection go nowhere
    assert transport.value().endswith(SERVERCLOSE)
    assert factory.late_acknowledgements == 3
    assert (stats.received, stats.malformed, stats.refused) == (3, 1, 1)


# --- real sockets ---------------------------------------------------------------------------


class Client(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.lost.callback(None)


def wait_until(predicate: Any, timeout: float = TIMEOUT) -> Generator:
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        yield deferLater(reactor, 0.01, lambda: None)


def listen(sink: RecordingSink, **kwargs: Any) -> tuple[Any, RelpFactory, ListenerStats]:
    stats = ListenerStats(name="relp")
    options = ListenerOptions()
    factory = RelpFactory(reactor, sink, options, stats, **kwargs)
    tracker = ConnectionTracker(reactor, factory, options, stats)
    port = reactor.listenTCP(free_port(), tracker, interface="127.0.0.1")
    return port, factory, stats


def answers_of(received: bytes) -> list[int]:
    """The TXNRs of the syslog frames answered 200 in ``received``."""
    return [int(m[1]) for m in re.finditer(rb"^([0-9]+) rsp 6 200 OK$", received, re.M)]


@pytest_twisted.inlineCallbacks
def test_a_session_over_a_real_socket() -> Generator:
    sink = AcknowledgingSink("at-once")
    port, factory, stats = listen(sink)
    try:
        client = Client()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield connectProtocol(endpoint, client).addTimeout(TIMEOUT, reactor)
        count = 500
        client.transport.write(OPEN + syslogs(2, *(b"<13>message %d" % i for i in range(count))))
        yield from wait_until(lambda: len(answers_of(client.received)) == count)
        client.transport.write(frame(count + 2, b"close"))
        yield client.lost.addTimeout(TIMEOUT, reactor)
        assert answers_of(client.received) == list(range(2, count + 2))
        assert client.received.endswith(b"%d rsp 0\n" % (count + 2) + SERVERCLOSE)
        assert sink.messages == [b"<13>message %d" % i for i in range(count)]
        assert stats.received == count and stats.malformed == 0
        assert factory.late_acknowledgements == 0
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_relp_listener_from_its_spec_answers_when_the_sink_acknowledges() -> Generator:
    from syslogsrc.listen import make_listener, parse_listen

    sink = AcknowledgingSink("manual")
    (spec,) = parse_listen(f"relp:{free_port()}:interface=127.0.0.1")
    listener = make_listener(spec, reactor, sink, ListenerOptions())
    yield listener.start().addTimeout(TIMEOUT, reactor)
    try:
        client = Client()
        address = listener.address
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
        yield connectProtocol(endpoint, client).addTimeout(TIMEOUT, reactor)
        client.transport.write(OPEN + syslogs(2, b"<13>one", b"<13>two", b"<13>three"))
        yield from wait_until(lambda: len(sink.unacknowledged) == 3)
        assert answers_of(client.received) == []  # taken, not stored yet
        origin = sink.posts[0][1]
        assert (origin.transport, origin.peer_host) == ("relp", "127.0.0.1")
        sink.acknowledge([sink.unacknowledged[1][0]])
        yield from wait_until(lambda: answers_of(client.received) == [3])
        sink.acknowledge()
        yield from wait_until(lambda: answers_of(client.received) == [3, 2, 4])
        client.transport.write(frame(5, b"close"))
        yield client.lost.addTimeout(TIMEOUT, reactor)
        assert client.received.endswith(b"5 rsp 0\n" + SERVERCLOSE)
        assert sink.messages == [b"<13>one", b"<13>two", b"<13>three"]
        assert (listener.stats.received, listener.stats.dropped) == (3, 0)
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_a_client_that_does_not_read_its_answers_is_not_buffered_without_bound() -> Generator:
    sink = RecordingSink()
    # a window as large as the test: it is about the answers written, not the frames unanswered
    port, factory, stats = listen(sink, max_window=100_000)
    try:
        client = Client()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield connectProtocol(endpoint, client).addTimeout(TIMEOUT, reactor)
        client.transport.pauseProducing()  # the client reads nothing
        yield from wait_until(lambda: factory.connections)
        [server] = factory.connections
        tcp = server.transport.transport  # under the tracker
        tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        count = 30_000
        client.transport.write(OPEN + syslogs(2, *(b"<13>m%05d" % i for i in range(count))))
        yield from wait_until(lambda: server.write_blocked)
        # reading stopped: what waits to be written is about one read's answers over the
        # transport's buffer size, not every answer
        yield deferLater(reactor, 0.2, lambda: None)
        buffered = len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen
        assert stats.received < count
        assert buffered < tcp.bufferSize + 70_000
        client.transport.resumeProducing()
        yield from wait_until(lambda: len(answers_of(client.received)) == count)
        assert sink.messages == [b"<13>m%05d" % i for i in range(count)]
    finally:
        client.transport.loseConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_stopping_the_listener_sends_serverclose_over_a_real_socket() -> Generator:
    sink = AcknowledgingSink("manual")
    port, factory, stats = listen(sink)
    tracker = port.factory
    try:
        client = Client()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield connectProtocol(endpoint, client).addTimeout(TIMEOUT, reactor)
        client.transport.write(OPEN + syslogs(2, b"unanswered"))
        yield from wait_until(lambda: len(sink.messages) == 1)
        yield tracker.close_all().addTimeout(TIMEOUT, reactor)
        yield client.lost.addTimeout(TIMEOUT, reactor)
        assert client.received.endswith(b"\n" + SERVERCLOSE)
        assert answers_of(client.received) == []
        sink.acknowledge()  # too late: ignored, nothing raised
        assert factory.late_acknowledgements == 1
        assert (stats.received, stats.dropped) == (1, 0)
    finally:
        yield port.stopListening()


# --- fuzz: whatever the client sends and whatever the sink does, the protocol does not raise,
# posts nothing while paused, answers each frame at most once, and ends with serverclose

PIECES = st.sampled_from(
    [
        OPEN,
        frame(1, b"open", b"commands=eventlog"),
        syslogs(2, b"a"),
        syslogs(3, b"b", b"c"),
        syslogs(5, b"d"),
        frame(3, b"close"),
        frame(6, b"close"),
        b"2 syslog 1",
        b" x\n",
        b"junk",
        b"\n",
        b"0 serverclose 0\n",
    ]
)
ACTIONS = st.sampled_from(["pause", "resume", "ack", "nack", "write-full", "write-drained"])


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES") or 200),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.lists(st.tuples(st.one_of(PIECES, st.binary(max_size=12)), ACTIONS), max_size=25))
def test_fuzz_the_protocol_never_raises_and_keeps_its_promises(
    steps: list[tuple[bytes, str]],
) -> None:
    sink = AcknowledgingSink("manual")
    factory, _, stats, _ = make(sink, options=ListenerOptions(max_message_size=64), max_window=4)
    protocol, transport = connect(factory)
    answers = transport.producer
    for data, action in steps:
        if transport.disconnecting:
            break
        protocol.dataReceived(data)
        if action == "pause":
            sink.pause()
        elif action == "resume":
            sink.resume()
        elif action in ("ack", "nack") and sink.unacknowledged:
            sink.acknowledge([sink.unacknowledged[-1][0]], stored=action == "ack")
        elif action == "write-full" and not transport.disconnecting:
            answers.pauseProducing()
        elif action == "write-drained" and not transport.disconnecting:
            answers.resumeProducing()
    assert sink.posted_while_paused == []
    written = transport.value()
    # each frame is answered 200 at most once (an error answer may repeat a TXNR: it answers
    # the broken frame that carried it)
    answered = re.findall(rb"^([0-9]+) rsp [0-9]+ 200 OK$", written, re.M)
    assert len(answered) == len(set(answered))
    if transport.disconnecting:
        assert written.endswith(SERVERCLOSE)
        assert written.count(SERVERCLOSE) == 1
    assert stats.malformed == stats.refused <= 1


# --- relps: the same over TLS, wrapped as the listener wraps stream factories -----------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from certs import make_certs

    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
@pytest_twisted.inlineCallbacks
def test_a_session_over_tls_and_serverclose_through_it(certs: Any) -> Generator:
    from twisted.internet.endpoints import wrapClientTLS
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    from syslogsrc.protocols.tls import ReloadableTLS, tls_server_factory

    sink = AcknowledgingSink("at-once")
    stats = ListenerStats(name="relps")
    options = ListenerOptions(
        tls_key_file=str(certs.server_key), tls_cert_file=str(certs.server_cert)
    )
    factory = RelpFactory(reactor, sink, options, stats, "relps")
    tls = ReloadableTLS.from_options(options, name="relps", reactor=reactor)
    wrapped, _ = tls_server_factory(reactor, factory, tls, stats)
    tracker = ConnectionTracker(reactor, wrapped, options, stats)
    port = reactor.listenTCP(free_port(), tracker, interface="127.0.0.1")
    try:
        client = Client()
        endpoint = wrapClientTLS(
            optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(certs.ca.read_bytes())),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        yield connectProtocol(endpoint, client).addTimeout(TIMEOUT, reactor)
        client.transport.write(OPEN + syslogs(2, b"<13>over tls", b"<13>again"))
        yield from wait_until(lambda: answers_of(client.received) == [2, 3])
        assert sink.posts[0][1].transport == "relps"
        yield tracker.close_all().addTimeout(TIMEOUT, reactor)
        yield client.lost.addTimeout(TIMEOUT, reactor)
        assert client.received.endswith(ok(3) + SERVERCLOSE)
    finally:
        yield port.stopListening()

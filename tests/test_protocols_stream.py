"""SyslogStreamProtocol and the connection tracker, on in-memory transports (no sockets).

The sink is ``syslogsrc.testing.RecordingSink``: it records posts and batches, and can pause
every producer after N posts, from inside ``post`` (syslog-ng's window).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols._ratelimit import RateLimitedLog, RateLimitedLogs
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.stream import SyslogStreamFactory, SyslogStreamProtocol
from syslogsrc.testing import RecordingSink

PEER = IPv4Address("TCP", "192.0.2.7", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 5514)


def test_the_recording_sink_provides_the_interface() -> None:
    assert verifyObject(IMessageSink, RecordingSink())


def connect(
    sink: RecordingSink | None = None,
    options: ListenerOptions | None = None,
    *,
    transport_name: str = "tcp",
    peer: object = PEER,
) -> tuple[SyslogStreamProtocol, StringTransport, RecordingSink, ListenerStats]:
    sink = sink if sink is not None else RecordingSink()
    stats = ListenerStats(name="tcp:5514")
    factory = SyslogStreamFactory(
        Clock(), sink, options or ListenerOptions(), stats, transport_name
    )
    protocol = factory.buildProtocol(peer)
    transport = StringTransport(hostAddress=HOST, peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport, sink, stats


# --- framing and batches ------------------------------------------------------------------


def test_lf_frames_of_one_read_are_one_batch() -> None:
    protocol, _, sink, stats = connect()
    data = b"<13>one\n<13>two\r\n<13>three\n"
    protocol.dataReceived(data)
    assert sink.messages == [b"<13>one", b"<13>two", b"<13>three"]
    assert sink.batches == [[b"<13>one", b"<13>two", b"<13>three"]]
    assert (stats.received, stats.bytes, stats.posted) == (3, len(data), 3)


def test_octet_counting_frames_split_across_reads() -> None:
    protocol, _, sink, stats = connect()
    protocol.dataReceived(b"15 <13>hello w")
    assert sink.posts == [] and sink.batches == []  # nothing complete: no batch
    protocol.dataReceived(b"orld5 <13>a")
    protocol.dataReceived(b"7 <13>b c")
    assert sink.batches == [[b"<13>hello world", b"<13>a"], [b"<13>b c"]]
    assert stats.received == 3


def test_octet_counting_exact_frames() -> None:
    protocol, _, sink, stats = connect()
    protocol.dataReceived(b"8 <13>abcd8 <13>ef")
    protocol.dataReceived(b"gh")
    assert sink.messages == [b"<13>abcd", b"<13>efgh"]
    assert sink.batches == [[b"<13>abcd"], [b"<13>efgh"]]
    assert stats.received == 2


def test_configured_framing_is_used() -> None:
    protocol, _, sink, _ = connect(options=ListenerOptions(framing="nul"))
    protocol.dataReceived(b"<13>a\n b\0<13>c\0")
    assert sink.messages == [b"<13>a\n b", b"<13>c"]


def test_origin_names_peer_listener_and_transport() -> None:
    protocol, _, sink, stats = connect(transport_name="tls")
    protocol.dataReceived(b"x\n")
    origin = sink.posts[0][1]
    assert origin == Origin("tls", stats, "192.0.2.7", 40000, 5514)


def test_unix_peer_has_no_host_or_port() -> None:
    protocol, _, sink, _ = connect(transport_name="unix", peer=UNIXAddress(None))
    protocol.transport.hostAddr = UNIXAddress(b"/run/x.sock")
    protocol.dataReceived(b"x\n")
    origin = sink.posts[0][1]
    assert (origin.transport, origin.peer_host, origin.peer_port, origin.local_port) == (
        "unix",
        None,
        None,
        None,
    )


def test_truncation_is_counted() -> None:
    protocol, _, sink, stats = connect(options=ListenerOptions(max_message_size=64))
    protocol.dataReceived(b"x" * 100 + b"\nshort\n")
    assert sink.messages == [b"x" * 64, b"short"]
    assert stats.truncated == 1


def test_partial_frame_is_posted_at_connection_loss() -> None:
    protocol, _, sink, stats = connect()
    protocol.dataReceived(b"<13>a\n<13>cut sh")
    protocol.connectionLost(Failure(Exception("gone")))
    assert sink.messages == [b"<13>a", b"<13>cut sh"]
    assert sink.batches == [[b"<13>a"], [b"<13>cut sh"]]
    assert stats.received == 2
    assert sink.producers == []


def test_invalid_octet_count_is_counted_resynced_and_logged_once_per_interval() -> None:
    sink = RecordingSink()
    stats = ListenerStats(name="tcp:5514")
    clock = Clock()
    factory = SyslogStreamFactory(clock, sink, ListenerOptions(framing="octet-counting"), stats)
    protocol = factory.buildProtocol(PEER)
    protocol.makeConnection(StringTransport(hostAddress=HOST, peerAddress=PEER))
    with capturedLogs() as events:
        protocol.dataReceived(b"5 <13>a<13>bad one\n")
        protocol.dataReceived(b"0 leading zero\n")
        clock.advance(10)  # the second one is logged when its interval ends
        protocol.dataReceived(b"x again\n")  # held: a line was logged just now
        factory.flush_logs()  # the listener stops
    assert stats.malformed == 3
    assert sink.messages == [b"<13>a", b"<13>bad one", b"0 leading zero", b"x again"]
    logged = [e for e in events if "invalid octet count" in e["log_format"]]
    assert [e["count"] for e in logged] == [1, 1, 1]
    assert not clock.getDelayedCalls()


def test_oversize_octet_count_is_counted_and_logged_when_its_header_arrives() -> None:
    # Not when max-message-size bytes have come: until then what follows is swallowed.
    protocol, _, sink, stats = connect(options=ListenerOptions(max_message_size=64))
    with capturedLogs() as events:
        protocol.dataReceived(b"5 <13>a100 <13>start of a long one")
        assert stats.truncated == 1
        assert len(events) == 1
        line = formatEvent(events[0])
        for word in ("tcp:5514", "192.0.2.7", "MSG-LEN 100", "max-message-size(64)"):
            assert word in line, line
        protocol.dataReceived(b"x" * 77 + b"5 <13>b")
    assert sink.messages == [b"<13>a", b"<13>start of a long one" + b"x" * 41, b"<13>b"]
    assert (stats.truncated, stats.malformed) == (1, 0)
    assert len(events) == 1  # no second line from the truncation itself


def test_absurd_octet_count_is_malformed_logged_at_once_and_nothing_after_it_lost() -> None:
    protocol, _, sink, stats = connect(options=ListenerOptions(max_message_size=64))
    with capturedLogs() as events:
        protocol.dataReceived(b"2000000000 <13>1 - h app - - - hi\n")
        assert stats.malformed == 1
        assert len(events) == 1
        line = formatEvent(events[0])
        for word in ("tcp:5514", "192.0.2.7", "MSG-LEN 2000000000", "max_size 64"):
            assert word in line, line
        protocol.dataReceived(b"15 <13>1 - h app -17 <13>1 - h app - -")
    assert sink.messages == [
        b"2000000000 <13>1 - h app - - - hi",
        b"<13>1 - h app -",
        b"<13>1 - h app - -",
    ]
    assert (stats.malformed, stats.truncated, stats.received) == (1, 0, 3)
    assert len(events) == 1
    assert not protocol.transport.disconnecting


def test_oversize_counts_flushed_at_stop() -> None:
    sink = RecordingSink()
    stats = ListenerStats(name="tcp:5514")
    factory = SyslogStreamFactory(Clock(), sink, ListenerOptions(max_message_size=64), stats)
    protocol = factory.buildProtocol(PEER)
    protocol.makeConnection(StringTransport(hostAddress=HOST, peerAddress=PEER))
    with capturedLogs() as events:
        for data in (b"100 ", b"x" * 100 + b"200 ", b"y" * 200 + b"65 "):
            protocol.dataReceived(data)
        factory.flush_logs()
    assert sink.messages == [b"x" * 64, b"y" * 64]
    assert stats.truncated == 3
    assert [(e["count"], e["length"]) for e in events] == [(1, 100), (2, 65)]


def test_registered_on_connect_unregistered_on_disconnect() -> None:
    protocol, _, sink, _ = connect()
    assert sink.producers == [protocol]
    protocol.connectionLost(Failure(Exception("gone")))
    assert sink.producers == []


# --- flow control -------------------------------------------------------------------------


def test_pause_inside_post_keeps_the_rest_in_order_until_resume() -> None:
    protocol, transport, sink, stats = connect(RecordingSink(window=2))
    protocol.dataReceived(b"1\n2\n3\n4\n5\n")
    assert sink.messages == [b"1", b"2"]
    assert sink.batches == [[b"1", b"2"]]  # the posted part is a batch
    assert transport.producerState == "paused"
    assert list(protocol.pending) == [b"3", b"4", b"5"]

    protocol.dataReceived(b"6\n")  # a read already under way: kept, not posted
    assert sink.messages == [b"1", b"2"]

    sink.resume()  # window of 2 again: 3, 4 then paused again, transport stays paused
    assert sink.messages == [b"1", b"2", b"3", b"4"]
    assert transport.producerState == "paused"
    sink.resume()
    assert sink.messages == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert sink.batches == [[b"1", b"2"], [b"3", b"4"], [b"5", b"6"]]
    assert sink.posted_while_paused == []
    assert stats.received == stats.posted == 6
    # 5 and 6 filled the window again: paused, nothing pending.
    assert transport.producerState == "paused"
    assert not protocol.pending


def test_resume_drains_then_resumes_the_transport() -> None:
    protocol, transport, sink, _ = connect(RecordingSink(window=1))
    protocol.dataReceived(b"a\nb\n")
    assert transport.producerState == "paused"
    sink.window = None
    sink.resume()
    assert sink.messages == [b"a", b"b"]
    assert transport.producerState == "producing"


def test_nothing_is_posted_while_the_sink_is_paused() -> None:
    sink = RecordingSink()
    sink.pause()
    protocol, transport, _, stats = connect(sink)
    assert transport.producerState == "paused"  # paused at registration
    protocol.dataReceived(b"a\nb\n")
    assert sink.posts == [] and sink.posted_while_paused == []
    assert stats.received == 2
    sink.resume()
    assert sink.messages == [b"a", b"b"]
    assert sink.batches == [[b"a", b"b"]]
    assert transport.producerState == "producing"


def test_resume_from_inside_post_keeps_order() -> None:
    protocol, _, sink, _ = connect()

    def flap(frame: bytes) -> None:
        if frame == b"2":
            sink.pause()
            sink.resume()  # re-entrant resume while the loop is running

    sink.on_post = flap
    protocol.dataReceived(b"1\n2\n3\n4\n")
    assert sink.messages == [b"1", b"2", b"3", b"4"]
    assert sink.batches == [[b"1", b"2", b"3", b"4"]]


def test_connection_lost_while_paused_keeps_frames_for_the_resume() -> None:
    protocol, _, sink, stats = connect(RecordingSink(window=1))
    protocol.dataReceived(b"a\nb\npartial")
    protocol.connectionLost(Failure(Exception("gone")))
    assert sink.messages == [b"a"]
    assert sink.producers == [protocol]  # still registered: frames wait
    sink.window = None
    sink.resume()
    assert sink.messages == [b"a", b"b", b"partial"]
    assert sink.producers == []
    assert stats.dropped == 0


def test_stop_producing_drops_pending_frames_and_closes() -> None:
    protocol, transport, sink, stats = connect(RecordingSink(window=1))
    protocol.dataReceived(b"a\nb\nc\n")
    sink.stop()
    assert stats.dropped == 2
    assert transport.disconnecting
    protocol.dataReceived(b"late\n")
    protocol.connectionLost(Failure(Exception("gone")))
    assert sink.messages == [b"a"]
    assert stats.dropped == 3


def test_stop_producing_after_disconnect_drops_what_waited() -> None:
    protocol, _, sink, stats = connect(RecordingSink(window=1))
    protocol.dataReceived(b"a\nb\nc")
    protocol.connectionLost(Failure(Exception("gone")))
    sink.stop()
    assert stats.dropped == 2
    assert sink.messages == [b"a"]


def test_sink_exception_drops_the_batch_logs_and_goes_on() -> None:
    # A sink that raises has not said what it took: the read it was given is counted as
    # dropped (a sink handles a bad message itself: TwistedSource's test of build_message)
    protocol, _, sink, stats = connect()
    sink.raise_on = {b"bad"}
    with capturedLogs() as events:
        protocol.dataReceived(b"ok1\nbad\n")
        protocol.dataReceived(b"ok2\n")
        protocol.dataReceived(b"bad\nok3\n")
    assert sink.messages == [b"ok2"]
    assert stats.dropped == 4
    assert not protocol.transport.disconnecting
    logged = [e for e in events if "the sink raised" in e.get("log_format", "")]
    assert len(logged) == 1
    assert logged[0]["log_failure"].check(ValueError)


# --- RateLimitedLog -----------------------------------------------------------------------


def test_rate_limited_log_counts_what_it_did_not_log() -> None:
    clock = Clock()
    limited = RateLimitedLog(clock, "{what}: {count}{span}", interval=10, what="x")
    with capturedLogs() as events:
        for _ in range(5):
            limited()
            clock.advance(1)
        clock.advance(10)
        limited()
        limited()
        limited.flush()
        limited.flush()
    # t=0 at once; t=1..4 when their interval ends (t=10); t=15 twice, at the flush
    assert [e["count"] for e in events] == [1, 4, 2]
    assert limited.total == 7
    assert not clock.getDelayedCalls()


def test_rate_limited_log_says_what_is_true_and_logs_held_occurrences_when_due() -> None:
    clock = Clock()
    limited = RateLimitedLog(clock, "{what}: refused {count}{span}; {peer}", what="x")
    with capturedLogs() as events:
        limited(peer="a")  # t=0: logged at once, alone
        clock.advance(5)
        limited(peer="b")
        clock.advance(4)
        limited(peer="c")  # t=9: held with b
        assert len(events) == 1
        clock.advance(1)  # t=10: the interval ends, the held ones are logged without waiting
        assert len(events) == 2
        clock.advance(27)
        limited(peer="d")  # t=37: 27 s after the last line, logged at once
        clock.advance(3)
        limited(peer="e")  # t=40: held...
        clock.advance(7)  # ...and logged at t=47, though nothing else happened
        clock.advance(20)
    lines = [formatEvent(e) for e in events]
    assert lines == [
        "x: refused 1; a",
        "x: refused 2 in the last 10.0s; c",
        "x: refused 1 in the last 27.0s; d",
        "x: refused 1 in the last 10.0s; e",
    ]
    assert not clock.getDelayedCalls()


def test_rate_limited_logs_keep_one_count_per_cause() -> None:
    clock = Clock()
    logs = RateLimitedLogs(clock)
    with capturedLogs() as events:
        for path in ("/a", "/b", "/c"):
            logs.emit(LogLevel.warn, "404", "HTTP 404 for {path}", path=path)
        logs.emit(LogLevel.warn, "413", "HTTP 413 for {path}", path="/big")
        clock.advance(3)
        logs.flush()
    assert [formatEvent(e) for e in events] == [
        "HTTP 404 for /a",
        "HTTP 413 for /big",
        "HTTP 404 for /c (2 times in the last 3.0s)",
    ]
    assert not clock.getDelayedCalls()


# --- ConnectionTracker --------------------------------------------------------------------


class Inner(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.lost = True


class InnerFactory:
    def __init__(self) -> None:
        self.built: list[Inner] = []

    def doStart(self) -> None: ...

    def doStop(self) -> None: ...

    def buildProtocol(self, addr: object) -> Inner:
        self.built.append(Inner())
        return self.built[-1]


def tracker(**options: object) -> tuple[ConnectionTracker, Clock, ListenerStats]:
    clock = Clock()
    stats = ListenerStats(name="tcp:5514")
    tracked = ConnectionTracker(
        clock, InnerFactory(), ListenerOptions(**options), stats, close_grace=2.0
    )
    return tracked, clock, stats


def open_connection(tracked: ConnectionTracker) -> tuple[object, StringTransport]:
    protocol = tracked.buildProtocol(PEER)
    assert protocol is not None
    transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, transport


def refused(tracked: ConnectionTracker) -> bool:
    """Is a new connection closed at once, without reaching the wrapped factory?"""
    built = len(tracked.wrappedFactory.built)
    protocol = tracked.buildProtocol(PEER)
    transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
    protocol.makeConnection(transport)
    return transport.disconnecting and len(tracked.wrappedFactory.built) == built


def test_tracker_counts_open_connections() -> None:
    tracked, _, stats = tracker()
    first, _ = open_connection(tracked)
    open_connection(tracked)
    assert stats.open_connections == 2
    first.connectionLost(Failure(Exception("gone")))
    assert stats.open_connections == 1


def test_max_connections_refuses_counts_and_logs_without_flooding() -> None:
    tracked, clock, stats = tracker(max_connections=2)
    open_connection(tracked)
    open_connection(tracked)
    with capturedLogs() as events:
        assert refused(tracked)
        assert refused(tracked)
        assert refused(tracked)
        clock.advance(10)  # the two held ones are logged when the interval ends
        assert refused(tracked)  # held: a line was logged just now
        tracked.flush_logs()
    assert stats.refused == 4
    assert stats.open_connections == 2
    logged = [e for e in events if "refused" in e["log_format"]]
    assert [e["count"] for e in logged] == [1, 2, 1]
    assert logged[0]["max_connections"] == 2


def test_idle_timeout_closes_a_silent_connection() -> None:
    tracked, clock, _ = tracker(idle_timeout=5)
    protocol, transport = open_connection(tracked)
    clock.advance(4)
    protocol.dataReceived(b"x\n")
    clock.advance(4)
    assert not transport.disconnecting
    clock.advance(1.5)
    assert transport.disconnecting
    assert tracked.idle_closed == 1
    clock.advance(2)  # not gone after the grace: aborted
    assert transport.disconnected


def test_idle_timer_stops_while_paused_by_flow_control() -> None:
    tracked, clock, _ = tracker(idle_timeout=5)
    protocol, transport = open_connection(tracked)
    protocol.pauseProducing()
    assert transport.producerState == "paused"
    clock.advance(60)
    assert not transport.disconnecting
    protocol.resumeProducing()
    clock.advance(5)
    assert transport.disconnecting


def test_no_idle_timeout_by_default() -> None:
    tracked, clock, _ = tracker()
    _, transport = open_connection(tracked)
    clock.advance(86400)
    assert not transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_close_all_closes_then_aborts_and_fires_when_all_are_gone() -> None:
    tracked, clock, stats = tracker()
    one, t1 = open_connection(tracked)
    two, t2 = open_connection(tracked)
    d = tracked.close_all()
    fired: list[object] = []
    d.addCallback(fired.append)
    assert t1.disconnecting and t2.disconnecting and not t1.disconnected
    one.connectionLost(Failure(Exception("closed")))
    assert fired == []
    clock.advance(2)
    assert t2.disconnected  # aborted after the grace
    assert not t1.disconnected
    two.connectionLost(Failure(Exception("aborted")))
    assert fired == [None]
    assert stats.open_connections == 0
    assert refused(tracked)  # closing: no new connections
    assert stats.refused == 0
    assert clock.getDelayedCalls() == []


def test_close_all_without_connections_fires_at_once() -> None:
    tracked, _, _ = tracker()
    fired: list[object] = []
    d: Deferred[None] = tracked.close_all()
    d.addCallback(fired.append)
    assert fired == [None]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_frames_do_not_depend_on_read_size(chunk: int) -> None:
    protocol, _, sink, _ = connect()
    data = b"<13>one\n12 <13>two\nxx\n<13>three\n"
    for i in range(0, len(data), chunk):
        protocol.dataReceived(data[i : i + chunk])
    protocol.connectionLost(Failure(Exception("gone")))
    whole, _, whole_sink, _ = connect()
    whole.dataReceived(data)
    whole.connectionLost(Failure(Exception("gone")))
    assert sink.messages == whole_sink.messages


@given(
    messages=st.lists(
        st.binary(min_size=1, max_size=12).filter(
            lambda b: b"\n" not in b and not b.endswith(b"\r")
        ),
        max_size=20,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    window=st.integers(min_value=1, max_value=5),
)
def test_any_pause_pattern_posts_every_frame_once_in_order(
    messages: list[bytes], cuts: list[int], window: int
) -> None:
    data = b"".join(m + b"\n" for m in messages)
    expected = list(messages)
    protocol, transport, sink, stats = connect(
        RecordingSink(window=window), ListenerOptions(framing="lf")
    )
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in itertools.pairwise(bounds):
        protocol.dataReceived(data[start:end])
        if transport.producerState == "paused" and end % 2:
            sink.resume()  # sometimes resume between reads, sometimes let frames pile up
    protocol.connectionLost(Failure(Exception("gone")))
    while sink.producers:
        sink.resume()
    assert sink.messages == expected
    assert sink.posted_while_paused == []
    assert all(len(batch) <= window for batch in sink.batches)
    assert stats.received == stats.posted == len(expected)


# --- making room at max-connections -------------------------------------------------------


class Counting(Inner):
    """An inner protocol that says how many messages it completed (like the real ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = 0

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.progress += data.count(b"\n")


class CountingFactory(InnerFactory):
    def buildProtocol(self, addr: object) -> Inner:
        protocol = Counting()
        self.built.append(protocol)
        return protocol


def _silent_flood_tracker() -> tuple[ConnectionTracker, Clock, ListenerStats]:
    clock = Clock()
    stats = ListenerStats(name="tcp:5514")
    tracked = ConnectionTracker(
        clock, CountingFactory(), ListenerOptions(max_connections=3), stats, close_grace=2.0
    )
    return tracked, clock, stats


def test_at_the_limit_the_longest_silent_connection_makes_room() -> None:
    tracked, clock, stats = _silent_flood_tracker()
    talker, talker_transport = open_connection(tracked)
    talker.dataReceived(b"<13>a message\n")  # completed one: never closed to make room
    clock.advance(1)
    _, first_silent = open_connection(tracked)
    clock.advance(1)
    _, second_silent = open_connection(tracked)
    assert refused(tracked)  # the silent ones are younger than FIRST_MESSAGE_GRACE: refused
    assert stats.refused == 1
    clock.advance(1.5)  # the first silent one is 2.5 s old, the second 1.5 s
    with capturedLogs() as events:
        newcomer, _ = open_connection(tracked)
    assert first_silent.disconnecting and not second_silent.disconnecting
    assert not talker_transport.disconnecting
    assert stats.timed_out == 1 and stats.refused == 1
    assert [e["count"] for e in events if "to let a new one in" in e["log_format"]] == [1]
    # the newcomer is served; the one closing no longer counts against the limit
    newcomer.dataReceived(b"<13>hello\n")
    assert tracked.wrappedFactory.built[-1].received == [b"<13>hello\n"]
    clock.advance(2)  # the second silent one is now old enough: the next newcomer gets its slot
    open_connection(tracked)
    assert second_silent.disconnecting and stats.timed_out == 2


def test_connections_that_completed_a_message_are_never_closed_to_make_room() -> None:
    tracked, clock, stats = _silent_flood_tracker()
    transports = []
    for _ in range(3):
        protocol, transport = open_connection(tracked)
        protocol.dataReceived(b"<13>m\n")
        transports.append(transport)
    clock.advance(60)
    assert refused(tracked)
    assert not any(t.disconnecting for t in transports)
    assert stats.timed_out == 0 and stats.refused == 1

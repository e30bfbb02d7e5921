"""SyslogDatagramProtocol on a fake port (no sockets): one message per datagram, one batch per
read of the socket and sender, flow control by stopping and starting the port's reading,
SO_RCVBUF."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols.datagram import SO_RCVBUFFORCE, UDP_MAX_PACKET, SyslogDatagramProtocol
from syslogsrc.testing import RecordingSink

PEER = ("192.0.2.9", 5140)


class FakeSocket:
    """SO_RCVBUF the Linux way: the kernel keeps twice the size asked, capped at rmem_max."""

    def __init__(self, rmem_max: int = 1 << 30, can_force: bool = True) -> None:
        self.rmem_max = rmem_max
        self.can_force = can_force
        self.rcvbuf = 212992
        self.calls: list[tuple[int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append((option, value))
        if option == socket.SO_RCVBUF:
            self.rcvbuf = 2 * min(value, self.rmem_max)
        elif option == SO_RCVBUFFORCE:
            if not self.can_force:
                raise PermissionError(1, "Operation not permitted")
            self.rcvbuf = 2 * value

    def getsockopt(self, level: int, option: int) -> int:
        assert option == socket.SO_RCVBUF
        return self.rcvbuf


class FakePort:
    def __init__(self, sock: FakeSocket | None = None, host: Any = None) -> None:
        self.reading = True
        self.socket = sock or FakeSocket()
        self.host = host or IPv4Address("UDP", "127.0.0.1", 514)

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True

    def getHandle(self) -> FakeSocket:
        return self.socket

    def getHost(self) -> Any:
        return self.host


def listen(
    sink: RecordingSink | None = None,
    options: ListenerOptions | None = None,
    *,
    name: str = "udp",
    port: FakePort | None = None,
) -> tuple[SyslogDatagramProtocol, FakePort, RecordingSink, ListenerStats]:
    sink = sink if sink is not None else RecordingSink()
    stats = ListenerStats(name="udp:514")
    protocol = SyslogDatagramProtocol(Clock(), sink, options or ListenerOptions(), stats, name)
    port = port or FakePort()
    protocol.makeConnection(port)
    return protocol, port, sink, stats


def read(protocol: SyslogDatagramProtocol, *datagrams: bytes | tuple[bytes, Any]) -> None:
    """One read of the port (Twisted's reads every datagram waiting, up to 256 KiB), then the
    reactor's turn: each datagram from PEER unless given as ``(data, addr)``."""
    for datagram in datagrams:
        data, addr = datagram if isinstance(datagram, tuple) else (datagram, PEER)
        protocol.datagramReceived(data, addr)
    protocol.reactor.advance(0)  # type: ignore[attr-defined]


def test_one_message_per_datagram_and_one_batch_per_read_and_sender() -> None:
    protocol, _, sink, stats = listen()
    other = ("192.0.2.10", 9)
    protocol.datagramReceived(b"<13>one\n<13>still one", PEER)
    protocol.datagramReceived(b"<13>two", PEER)
    assert sink.posts == []  # posted when the reactor turns, after the read
    read(protocol, (b"<13>three", other), b"<13>four")
    read(protocol, b"<13>five")
    assert sink.batches == [
        [b"<13>one\n<13>still one", b"<13>two"],
        [b"<13>three"],
        [b"<13>four"],
        [b"<13>five"],
    ]
    assert sink.posts[1][1] == Origin("udp", stats, "192.0.2.9", 5140, 514)
    assert sink.posts[2][1].peer_host == "192.0.2.10"
    assert sink.posts[0][1] is sink.posts[4][1]  # one Origin per sender, remembered
    assert (stats.received, stats.posted, stats.bytes) == (5, 5, 53)


def test_split_lines_posts_each_line_in_one_batch() -> None:
    protocol, _, sink, stats = listen(options=ListenerOptions(udp_split_lines=True))
    read(protocol, b"<13>a\n<13>b\r\n\n<13>c\n")
    assert sink.batches == [[b"<13>a", b"<13>b", b"<13>c"]]
    assert stats.received == 3


def test_largest_udp_datagram_is_read_whole() -> None:
    protocol, _, sink, stats = listen()
    assert protocol.maxPacketSize == UDP_MAX_PACKET == 65535
    big = b"<13>" + b"x" * (65535 - 4)
    read(protocol, big)
    assert sink.messages == [big]
    assert stats.truncated == 0


def test_unixgram_reads_one_byte_past_the_maximum_message_size() -> None:
    options = ListenerOptions(max_message_size=256 * 1024)
    protocol, _, _, _ = listen(
        options=options, name="unixgram", port=FakePort(host=UNIXAddress(None))
    )
    assert protocol.maxPacketSize == 256 * 1024 + 1


def test_longer_than_max_message_size_is_truncated_and_counted() -> None:
    protocol, _, sink, stats = listen(options=ListenerOptions(max_message_size=64))
    read(protocol, b"y" * 100)
    assert sink.messages == [b"y" * 64]
    assert stats.truncated == 1


def test_empty_datagram_is_counted_not_posted() -> None:
    protocol, _, sink, stats = listen()
    read(protocol, b"")
    assert sink.posts == [] and sink.batches == []
    assert (stats.malformed, stats.received) == (1, 0)


def test_unixgram_origin_has_no_peer() -> None:
    protocol, _, sink, stats = listen(name="unixgram", port=FakePort(host=UNIXAddress(b"/dev/log")))
    read(protocol, (b"<13>local", None), (b"<13>again", None))
    assert sink.posts[0][1] == Origin("unixgram", stats, None, None, None)
    assert sink.batches == [[b"<13>local", b"<13>again"]]


def test_registered_at_start_unregistered_at_stop() -> None:
    protocol, _, sink, _ = listen()
    assert sink.producers == [protocol]
    protocol.doStop()
    assert sink.producers == []


def test_pause_stops_reading_and_resume_starts_it_after_posting_what_waited() -> None:
    protocol, port, sink, stats = listen(RecordingSink(window=1))
    read(protocol, b"1", b"2", (b"3", ("192.0.2.10", 9)))
    assert not port.reading
    assert sink.messages == [b"1"]
    assert sink.posted_while_paused == []
    sink.window = None
    sink.resume()
    assert sink.messages == [b"1", b"2", b"3"]
    # the rest of the first sender's batch, then the other sender's
    assert sink.batches == [[b"1"], [b"2"], [b"3"]]
    assert sink.posts[2][1].peer_host == "192.0.2.10"
    assert port.reading
    assert stats.posted == 3


def test_datagrams_read_after_a_pause_in_the_same_read_wait_in_order() -> None:
    # The port's read loop goes on after a pause until its budget is spent: those datagrams
    # are offered when the reactor turns, and wait.
    protocol, port, sink, _ = listen()
    protocol.datagramReceived(b"1", PEER)
    sink.pause()
    assert not port.reading
    protocol.datagramReceived(b"2", PEER)
    read(protocol, (b"3", ("192.0.2.10", 9)))
    assert sink.posts == [] and sink.posted_while_paused == []
    sink.resume()
    assert sink.batches == [[b"1", b"2"], [b"3"]]
    assert port.reading


def test_pause_in_the_middle_of_split_lines() -> None:
    options = ListenerOptions(udp_split_lines=True)
    protocol, port, sink, _ = listen(RecordingSink(window=2), options)
    read(protocol, b"a\nb\nc\nd")
    assert sink.batches == [[b"a", b"b"]]
    assert not port.reading
    sink.resume()  # window 2: c, d, then paused again, still not reading
    assert sink.batches == [[b"a", b"b"], [b"c", b"d"]]
    assert not port.reading
    sink.window = None
    sink.resume()
    assert port.reading


def test_paused_at_registration_reads_nothing() -> None:
    sink = RecordingSink()
    sink.pause()
    protocol, port, _, _ = listen(sink)
    assert not port.reading
    read(protocol, b"early")
    assert sink.posts == []
    sink.resume()
    assert sink.messages == [b"early"]
    assert port.reading


def test_stop_producing_drops_what_waited() -> None:
    protocol, port, sink, stats = listen(RecordingSink(window=1))
    read(protocol, b"1", b"2")
    sink.stop()
    read(protocol, b"3")
    assert stats.dropped == 2
    assert not port.reading
    assert sink.messages == [b"1"]


def test_sink_exception_drops_its_batch_and_goes_on() -> None:
    # A sink that raises has not said what it took: the rest of that batch (one read of one
    # sender, as for a stream) is counted as dropped; the next batches are posted.
    protocol, _, sink, stats = listen()
    sink.raise_on = {b"bad"}
    with capturedLogs() as events:
        read(protocol, b"bad")
        read(protocol, b"good", (b"other", ("192.0.2.10", 9)))
    assert sink.messages == [b"good", b"other"]
    assert stats.dropped == 1
    assert sum("the sink raised" in e.get("log_format", "") for e in events) == 1


def test_so_rcvbuf_is_applied() -> None:
    sock = FakeSocket()
    protocol, _, _, _ = listen(
        options=ListenerOptions(so_rcvbuf=8 * 1024 * 1024), port=FakePort(sock)
    )
    assert sock.calls[0] == (socket.SO_RCVBUF, 8 * 1024 * 1024)
    assert protocol.receive_buffer == 8 * 1024 * 1024


def test_so_rcvbuf_cap_is_forced_when_allowed() -> None:
    sock = FakeSocket(rmem_max=212992, can_force=True)
    protocol, _, _, _ = listen(options=ListenerOptions(so_rcvbuf=4 << 20), port=FakePort(sock))
    assert sock.calls == [(socket.SO_RCVBUF, 4 << 20), (SO_RCVBUFFORCE, 4 << 20)]
    assert protocol.receive_buffer == 4 << 20


def test_so_rcvbuf_cap_is_logged_when_it_cannot_be_forced() -> None:
    sock = FakeSocket(rmem_max=212992, can_force=False)
    with capturedLogs() as events:
        protocol, _, _, _ = listen(options=ListenerOptions(so_rcvbuf=4 << 20), port=FakePort(sock))
    assert protocol.receive_buffer == 212992
    capped = [e for e in events if "capped" in e.get("log_format", "")]
    assert len(capped) == 1
    assert capped[0]["granted"] == 212992


def test_so_rcvbuf_zero_leaves_the_kernel_default() -> None:
    sock = FakeSocket()
    protocol, _, _, _ = listen(options=ListenerOptions(so_rcvbuf=0), port=FakePort(sock))
    assert sock.calls == []
    assert protocol.receive_buffer is None

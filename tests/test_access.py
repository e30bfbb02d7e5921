"""Allow lists and per-sender rate limits (syslogsrc.access), without sockets: the rules, the bad
values, the bound on memory, and how a rate-limit pause composes with flow control.

Real clients on loopback: tests/test_access_clients.py; inside syslog-ng:
tests/test_access_daemon.py.
"""

from __future__ import annotations

import tracemalloc

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure

from syslogsrc.access import MAX_SENDERS, AllowList, ListenerAccess, TokenBuckets, parse_allow
from syslogsrc.interfaces import ListenerStats
from syslogsrc.listen import make_listener, parse_spec
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.datagram import SyslogDatagramProtocol
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.service import Options
from syslogsrc.source import SourceOptions
from syslogsrc.testing import RecordingSink

PEER = IPv4Address("TCP", "192.0.2.7", 40000)

# --- allow lists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("192.0.2.7", True),  # a single address
        ("192.0.2.8", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped IPv6: matched as IPv4
        ("::ffff:11.1.2.3", False),
        ("::1", True),
        ("::2", False),
        ("2001:db8:1::5", True),
        ("2001:db8:2::5", False),
        ("fe80::1%eth0", False),  # scoped: the scope is ignored, the address is not in the list
        ("not an address", False),
        (None, False),  # a unix socket: no address
    ],
)
def test_allow_list_matches(host: str | None, allowed: bool) -> None:
    allow = AllowList(parse_allow("10.0.0.0/8, 192.0.2.7,::1 2001:db8:1::/48"))
    assert allow.allows(host) is allowed


def test_mapped_ipv6_networks_match_ipv4_senders() -> None:
    allow = AllowList(parse_allow("::ffff:10.0.0.0/104"))
    assert allow.allows("10.9.9.9") and allow.allows("::ffff:10.9.9.9")
    assert not allow.allows("11.0.0.1")


def test_parse_allow_normalises() -> None:
    assert parse_allow("10.0.0.0/8,::1") == ("10.0.0.0/8", "::1/128")
    assert parse_allow(["192.0.2.1"]) == ("192.0.2.1/32",)


# --- bad values: an OptionError naming the option -------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"allow": "10.0.0.0/33"}, "allow"),
        ({"allow": "10.0.0.1/8"}, "allow"),  # host bits set: a typo, say so
        ({"allow": "example.com"}, "allow"),
        ({"allow": ","}, "allow"),
        ({"rate": 0}, "rate"),
        ({"rate": -5}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
    ],
)
def test_bad_listener_options(options: dict, named: str) -> None:
    with pytest.raises(OptionError) as e:
        ListenerOptions(**options)
    assert e.value.option == named


def test_host_bits_error_says_the_network_meant() -> None:
    with pytest.raises(OptionError, match=r"did you mean 10\.0\.0\.0/8"):
        ListenerOptions(allow="10.0.0.1/8")


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("tcp:514:allow=10.0.0.0/33", "bad allow="),
        ("tcp:514:allow=", "bad allow="),
        ("udp:514:allow=::1", "bad allow="),  # unescaped ':' cuts the spec: '' is no network
        ("tcp:514:rate=0", "bad rate="),
        ("tcp:514:rate=-1", "bad rate="),
        ("tcp:514:rate=fast", "bad rate="),
        ("http:8080:rate=inf", "bad rate="),
        ("tcp:514:rate=5:burst=0", "bad burst="),
        ("tcp:514:rate=5:burst=1.5", "bad burst="),
        ("unix:/tmp/x.sock:allow=10.0.0.0/8", "unix sockets have none"),
        ("unixgram:/dev/log:rate=10", "unix sockets have none"),
        ("systemd:domain=UNIX:index=0:allow=10.0.0.0/8", "unix sockets have none"),
    ],
)
def test_bad_spec_settings_name_listen(spec: str, why: str) -> None:
    with pytest.raises(OptionError, match=why) as e:
        parse_spec(spec)
    assert e.value.option == "listen"


def test_spec_settings_parse() -> None:
    spec = parse_spec("udp6:514:allow=10.0.0.0/8,\\:\\:1:rate=2.5:burst=7")
    assert (spec.allow, spec.rate, spec.burst) == (("10.0.0.0/8", "::1/128"), 2.5, 7)
    assert parse_spec("haproxy:unix:/tmp/p.sock:allow=10.0.0.0/8").allow == ("10.0.0.0/8",)


def test_burst_without_any_rate_is_an_error() -> None:
    with pytest.raises(OptionError, match="burst= needs a rate"):
        make_listener(parse_spec("tcp:0:burst=5"), Clock(), RecordingSink(), ListenerOptions())
    # with a process-wide rate, the spec's burst applies to it
    listener = make_listener(
        parse_spec("tcp:0:burst=5"), Clock(), RecordingSink(), ListenerOptions(rate=1)
    )
    assert listener.tracker.access.buckets.burst == 5


@pytest.mark.parametrize(
    "args",
    [["--allow", "10.0.0.0/40"], ["--rate", "0"], ["--burst", "0"], ["--rate", "-2"]],
)
def test_bad_values_are_twistd_usage_errors(args: list[str]) -> None:
    with pytest.raises(usage.UsageError, match=args[0][2:]):
        Options().parseOptions(args)


def test_source_options_set_the_defaults() -> None:
    options = SourceOptions.from_options({"allow": "10.0.0.0/8 ::1", "rate": "50", "burst": 100})
    assert options.listener.allow == ("10.0.0.0/8", "::1/128")
    assert (options.listener.rate, options.listener.burst) == (50.0, 100)


# --- token buckets --------------------------------------------------------------------------


def test_bucket_burst_then_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock, rate=2, burst=3)
    assert [buckets.admit("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.admit("a") == pytest.approx(0.5)  # the next token in 1/rate s
    assert buckets.admit("b") == 0  # per sender
    clock.advance(0.5)
    assert buckets.admit("a") == 0
    clock.advance(100)
    assert buckets.tokens("a") == 3  # never more than burst


def test_charge_goes_into_debt() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock, rate=10, burst=5)
    assert buckets.charge("a", 5) == 0
    assert buckets.charge("a", 20) == pytest.approx(2.0)  # 20 in debt at 10/s
    clock.advance(2)
    assert buckets.tokens("a") == pytest.approx(0)


def test_bucket_table_is_bounded_with_100000_senders() -> None:
    """A flood from 100 000 spoofed addresses keeps at most MAX_SENDERS buckets."""
    clock = Clock()
    buckets = TokenBuckets(clock, rate=1, burst=1)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            buckets.admit(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(buckets) == MAX_SENDERS
    assert buckets.forgotten == 100_000 - MAX_SENDERS
    # about 200 bytes a sender: ~2 MB for the 10 000 kept, whatever the number seen
    assert grown < 4 * 1024 * 1024, grown
    # the most recent sender is still remembered (and limited), the oldest forgotten
    assert buckets.admit("10.1.134.159") > 0
    assert buckets.admit("10.0.0.0") == 0


def test_datagram_listener_memory_is_bounded_with_100000_senders() -> None:
    clock = Clock()
    stats = ListenerStats(name="udp")
    sink = RecordingSink()
    protocol = SyslogDatagramProtocol(clock, sink, ListenerOptions(), stats)
    buckets = TokenBuckets(clock, rate=1, burst=1, max_senders=1000)
    protocol.access = ListenerAccess(clock, stats, buckets=buckets, what="datagram")
    for i in range(100_000):
        addr = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 514)
        protocol.datagramReceived(b"<13>one", addr)
        protocol.datagramReceived(b"<13>two", addr)  # over the limit: dropped
    clock.advance(0)  # the reactor turns: the last sender's datagram is posted
    assert len(buckets) == 1000
    assert stats.received == 100_000 and stats.rate_limited == 100_000
    assert len(sink.posts) == 100_000


def test_datagrams_denied_and_limited_are_counted_not_read() -> None:
    clock = Clock()
    stats = ListenerStats(name="udp")
    sink = RecordingSink()
    protocol = SyslogDatagramProtocol(clock, sink, ListenerOptions(), stats)
    protocol.access = ListenerAccess(
        clock,
        stats,
        allow=AllowList(parse_allow("127.0.0.1")),
        buckets=TokenBuckets(clock, rate=1, burst=2),
        what="datagram",
    )
    for _ in range(5):
        protocol.datagramReceived(b"<13>in", ("127.0.0.1", 1000))
        protocol.datagramReceived(b"<13>out", ("127.0.0.2", 1000))
    clock.advance(0)
    assert sink.messages == [b"<13>in", b"<13>in"]
    assert (stats.denied, stats.rate_limited, stats.received, stats.bytes) == (5, 3, 2, 12)


# --- stream connections: a pause of its own, composed with flow control -------------------


MSG = b"<13>Dec  2 08:00:00 host app: a message\n"  # 40 bytes, like a short syslog line


def _tracked(rate: float, burst: int, allow: str | None = None, *, proxied: bool = False):
    clock = Clock()
    stats = ListenerStats(name="tcp")
    sink = RecordingSink()
    factory = SyslogStreamFactory(clock, sink, ListenerOptions(), stats)
    access = ListenerAccess(
        clock,
        stats,
        allow=AllowList(parse_allow(allow)) if allow else None,
        buckets=TokenBuckets(clock, rate, burst),
    )
    tracker = ConnectionTracker(
        clock, factory, ListenerOptions(), stats, access=access, proxied=proxied
    )
    return clock, stats, sink, tracker


def _connect(tracker: ConnectionTracker, peer=PEER):
    connection = tracker.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    connection.makeConnection(transport)
    return connection, transport


def test_over_the_rate_a_connection_pauses_and_resumes_when_repaid() -> None:
    clock, stats, sink, tracker = _tracked(rate=10, burst=5)
    connection, transport = _connect(tracker)
    connection.dataReceived(MSG * 4)
    assert transport.producerState == "producing"  # within the burst
    connection.dataReceived(MSG * 16)  # one read: the burst's last token, then held
    assert transport.producerState == "paused"
    assert stats.rate_limited == 1
    posted = len(sink.posts)
    assert 5 <= posted < 8  # a slice of about the frames the tokens pay for, no more
    for _ in range(10):
        clock.advance(0.1)
    assert 14 <= len(sink.posts) <= 17  # paced at 10/s: about 10 more in 1 s
    for _ in range(10):
        clock.advance(0.1)
    assert [f for f, _ in sink.posts] == [MSG[:-1]] * 20  # all of it, once, in order
    assert transport.producerState == "producing"


def test_held_bytes_are_delivered_at_the_end_of_the_connection() -> None:
    clock, _stats, sink, tracker = _tracked(rate=1, burst=1)
    connection, _transport = _connect(tracker)
    connection.dataReceived(b"".join(b"<13>message number %d\n" % i for i in range(100)))
    assert len(sink.posts) < 5
    connection.connectionLost(Failure(ConnectionDone()))
    assert [f for f, _ in sink.posts] == [b"<13>message number %d" % i for i in range(100)]
    assert clock.getDelayedCalls() == []


def test_rate_pause_and_flow_control_pause_compose() -> None:
    """Reading resumes only when neither the rate limit nor the sink holds it."""
    clock, _stats, sink, tracker = _tracked(rate=10, burst=1)
    connection, transport = _connect(tracker)
    protocol = connection.wrappedProtocol
    connection.dataReceived(MSG * 11)  # 1 token: one slice, the rest held
    assert transport.producerState == "paused"
    protocol.pauseProducing()  # the sink pauses too
    protocol.resumeProducing()  # and resumes before the debt is repaid
    assert transport.producerState == "paused"
    protocol.pauseProducing()  # the sink pauses again
    posted = len(sink.posts)
    clock.advance(5)  # the debt is repaid, the sink still holds it: nothing fed, not read
    assert transport.producerState == "paused" and len(sink.posts) == posted
    protocol.resumeProducing()  # held bytes go in first, up to the tokens refilled
    assert transport.producerState == "paused"  # and the rest is held again (burst 1)
    for _ in range(20):
        clock.advance(0.1)
    assert len(sink.posts) == 11
    assert transport.producerState == "producing"


def test_two_connections_of_one_sender_share_its_bucket() -> None:
    clock, _stats, _sink, tracker = _tracked(rate=10, burst=10)
    first, t1 = _connect(tracker)
    second, t2 = _connect(tracker, IPv4Address("TCP", PEER.host, PEER.port + 1))
    first.dataReceived(MSG * 10)  # the whole burst
    assert t1.producerState == "paused"
    second.dataReceived(MSG)  # the same sender: no token left
    assert t2.producerState == "paused"
    clock.advance(0.1)
    assert t1.producerState == "producing"  # the first one took the token
    assert t2.producerState == "paused"
    clock.advance(0.1)
    assert t2.producerState == "producing"


def test_denied_connection_is_refused_before_anything_is_read() -> None:
    _clock, stats, _sink, tracker = _tracked(rate=10, burst=1, allow="127.0.0.1")
    _connection, transport = _connect(tracker)  # from 192.0.2.7
    assert transport.disconnecting
    assert stats.denied == 1 and stats.refused == 0 and stats.open_connections == 0


def test_behind_haproxy_the_allow_list_applies_to_the_header_address() -> None:
    from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory

    _clock, stats, sink, tracker = _tracked(rate=10, burst=10, allow="203.0.113.0/24", proxied=True)
    proxy = HAProxyWrappingFactory(tracker)
    peer = IPv4Address("TCP", "127.0.0.1", 40000)  # the proxy: not in the list

    def connect(header: bytes) -> StringTransport:
        connection = proxy.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        connection.makeConnection(transport)
        connection.dataReceived(header + b"<13>hello\n")
        return transport

    allowed = connect(b"PROXY TCP4 203.0.113.5 198.51.100.1 56324 514\r\n")
    denied = connect(b"PROXY TCP4 192.0.2.9 198.51.100.1 56324 514\r\n")
    assert not allowed.disconnecting and denied.disconnecting
    assert [o.peer_host for _, o in sink.posts] == ["203.0.113.5"]
    assert stats.denied == 1

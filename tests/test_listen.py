"""Listener specs (parsing) and listeners on real sockets on 127.0.0.1 / ::1 / unix paths.

Socket tests run on the global reactor through pytest-twisted; every port is chosen by the
kernel (port 0, then ``listener.address``) and every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from certs import make_certs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from syslogsrc import _listenspec
from syslogsrc._ports import tcp_endpoint, udp_port
from syslogsrc.listen import (
    KINDS,
    LISTENER_KINDS,
    DatagramListener,
    DatagramStart,
    ListenerKind,
    ListenSpec,
    StreamListener,
    StreamStart,
    make_listener,
    parse_listen,
    parse_spec,
    protocol_factory,
)
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.testing import RecordingSink, has_ipv6

TIMEOUT = 5.0


# --- parsing ------------------------------------------------------------------------------


def test_specs_are_split_on_whitespace() -> None:
    specs = parse_listen("  tcp:5514\tudp:5514\n http:8080 ")
    assert [(s.kind, s.transport, s.port) for s in specs] == [
        ("tcp", "tcp", 5514),
        ("udp", "udp", 5514),
        ("http", "http", 8080),
    ]
    assert [s.text for s in specs] == ["tcp:5514", "udp:5514", "http:8080"]
    assert parse_listen("") == [] == parse_listen("   ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp:514", {"kind": "tcp", "transport": "tcp", "port": 514, "interface": ""}),
        ("tcp:514:interface=127.0.0.1:backlog=5", {"interface": "127.0.0.1", "backlog": 5}),
        ("tcp:514:127.0.0.1", {"interface": "127.0.0.1"}),  # positional, as in Twisted
        ("tcp:514:interface=\\:\\:1", {"interface": "::1"}),  # ':' escaped
        ("tcp6:514", {"kind": "tcp6", "transport": "tcp", "interface": "::"}),
        ("ssl:6514", {"kind": "ssl", "transport": "tls", "private_key": None}),
        (
            "ssl:6514:privateKey=/k\\:1.pem:certKey=c.pem:extraCertChain=chain.pem",
            {"private_key": "/k:1.pem", "cert_key": "c.pem", "extra_cert_chain": "chain.pem"},
        ),
        ("unix:/run/s.sock", {"transport": "unix", "path": "/run/s.sock", "mode": 0o666}),
        ("unix:/run/s.sock:mode=660:lockfile=0", {"mode": 0o660, "lockfile": False}),
        ("systemd:domain=INET:index=0", {"transport": "tcp", "index": 0}),
        ("systemd:domain=UNIX:name=log", {"transport": "unix", "fd_name": "log"}),
        ("udp:514", {"kind": "udp", "transport": "udp", "interface": ""}),
        ("udp:514:interface=127.0.0.1", {"interface": "127.0.0.1"}),
        ("udp6:514", {"kind": "udp6", "transport": "udp", "interface": "::"}),
        ("unixgram:/dev/log", {"transport": "unixgram", "path": "/dev/log"}),
        ("unixgram:/my\\ log:mode=600", {"path": "/my log", "mode": 0o600}),
        ("http:8080:interface=127.0.0.1", {"transport": "http", "port": 8080}),
        ("https:8443:privateKey=k.pem", {"transport": "https", "private_key": "k.pem"}),
        ("haproxy:tcp:514", {"kind": "tcp", "proxy": True, "port": 514}),
        ("haproxy:ssl:6514", {"kind": "ssl", "transport": "tls", "proxy": True}),
        ("haproxy:unix:/run/p.sock", {"transport": "unix", "proxy": True}),
        ("tcp:0", {"port": 0}),
        ("tcp:514", {"framing": None, "format": None}),  # the source's options apply
        ("tcp:514:framing=nul:format=rfc3164", {"framing": "nul", "format": "rfc3164"}),
        ("haproxy:ssl:6514:framing=octet-counting", {"proxy": True, "framing": "octet-counting"}),
        ("unix:/s:framing=lf", {"framing": "lf"}),
        ("udp:514:format=json", {"format": "json", "framing": None}),
        ("unixgram:/dev/log:format=rfc3164", {"format": "rfc3164"}),
    ],
)
def test_spec_fields(text: str, expected: dict[str, Any]) -> None:
    spec = parse_spec(text)
    assert spec.text == text
    for field, value in expected.items():
        assert getattr(spec, field) == value, field


def test_escaped_whitespace_stays_in_one_spec() -> None:
    [spec] = parse_listen("unix:/tmp/with\\ space.sock")
    assert spec.path == "/tmp/with space.sock"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("smtp:25", "unknown kind 'smtp'"),
        ("tcp", "missing a required argument: 'port'"),
        ("tcp:http", "bad port 'http'"),
        ("tcp:65536", "bad port '65536'"),
        ("tcp:-1", "bad port '-1'"),
        ("udp:514:bogus=1", "unexpected keyword argument 'bogus'"),
        ("udp:514:interface=localhost", "must be an IP address"),
        ("udp6:514:interface=127.0.0.1", "must be an IPv6 address"),
        ("tcp6:514:interface=127.0.0.1", "must be an IPv6 address"),
        ("tcp:514:backlog=0", "bad backlog"),
        ("unix:/s:mode=999", "must be octal"),
        ("unix:/s:lockfile=yes", "bad lockfile"),
        ("unix:", "socket path is empty"),
        ("unixgram", "missing a required argument"),
        ("systemd:domain=INET", "exactly one of index= and name="),
        ("systemd:domain=IPX:index=0", "bad domain"),
        ("haproxy:udp:514", "haproxy: wraps one of"),
        ("haproxy:http:80", "haproxy: wraps one of"),
        ("ssl:6514:sslmethod=TLSv1_METHOD", "unexpected keyword argument 'sslmethod'"),
        ("http:80:1:2:3", "too many positional arguments"),
        ("tcp:514:framing=crlf", "bad framing 'crlf': must be one of auto"),
        ("udp:514:framing=lf", "framing= applies to stream kinds"),
        ("http:80:framing=lf", "framing= applies to stream kinds"),
        ("tcp:514:format=cef", "bad format 'cef': must be one of auto"),
        ("https:443:format=json", "format= does not apply to http"),
    ],
)
def test_bad_specs_raise_option_error_naming_listen(text: str, why: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_listen(f"udp:514 {text}")
    assert info.value.option == "listen"
    assert info.value.value == text
    assert why in str(info.value)


def test_usage_is_in_the_error() -> None:
    with pytest.raises(OptionError, match=r"usage: udp:PORT\[:interface=\.\.\.\]"):
        parse_spec("udp:1:x=2")


@pytest.mark.parametrize("text", ["unix:/s\\", "unix:/s\\\\\\", "tcp:514:interface=\\"])
def test_a_trailing_backslash_is_an_option_error(text: str) -> None:
    # Twisted's tokenizer fails on it with a RuntimeError; the user gets the reason instead.
    with pytest.raises(OptionError, match="escapes nothing") as info:
        parse_listen(f"udp:514 {text}")
    assert info.value.value == text


def test_an_escaped_trailing_backslash_is_a_backslash() -> None:
    assert parse_spec("unix:/s\\\\").path == "/s\\"


@given(
    st.sampled_from(["", "haproxy:", "tcp:", "udp6:", "unix:", "systemd:", "http:", "ssl:"]),
    st.text(alphabet="ab1:=\\ x", max_size=30),
)
def test_any_text_parses_or_is_an_option_error(kind: str, rest: str) -> None:
    try:
        specs = parse_listen(kind + rest)
    except OptionError as e:
        assert e.option == "listen"
    else:
        assert all(isinstance(spec, ListenSpec) for spec in specs)


@pytest.mark.parametrize(
    "description",
    [
        "tcp:514",
        "tcp:514:127.0.0.1:7",
        "tcp:port=514:backlog=9:interface=\\:\\:1",
        "tcp6:514",
        "tcp6:514:interface=\\:\\:1",
        "unix:/run/s.sock",
        "unix:/run/a\\:b.sock:mode=600:backlog=3:lockfile=0",
    ],
)
def test_twisted_stream_kinds_listen_where_server_from_string_would(description: str) -> None:
    # Twisted's kinds keep Twisted's arguments and defaults: the endpoint is the one Twisted
    # makes of the same text (compared by its settings: tcp6 binds through the same listenTCP).
    listener = make_listener(
        parse_spec(description + ":framing=lf"), reactor, RecordingSink(), ListenerOptions()
    )
    assert isinstance(listener, StreamListener)
    assert vars(listener.endpoint) == vars(serverFromString(reactor, description))


def test_make_listener_picks_the_class_and_transport() -> None:
    sink = RecordingSink()
    options = ListenerOptions()
    tcp = make_listener(parse_spec("tcp:0"), reactor, sink, options)
    udp = make_listener(parse_spec("udp:0"), reactor, sink, options)
    assert isinstance(tcp, StreamListener) and tcp.transport == "tcp" and tcp.name == "tcp:0"
    assert isinstance(udp, DatagramListener) and udp.transport == "udp"
    assert tcp.stats.name == "tcp:0"
    assert tcp.address is None  # not started


def test_tls_listener_without_a_key_is_an_option_error() -> None:
    with pytest.raises(OptionError, match="tls-key-file"):
        make_listener(parse_spec("ssl:0"), reactor, RecordingSink(), ListenerOptions())


def test_systemd_without_inherited_socket_is_an_option_error() -> None:
    with pytest.raises(OptionError, match="LISTEN_FDS"):
        make_listener(
            parse_spec("systemd:domain=INET:index=0"), reactor, RecordingSink(), ListenerOptions()
        )


def test_http_listener_uses_the_http_site_behind_the_tracker() -> None:
    http = pytest.importorskip("syslogsrc.protocols.http")
    listener = make_listener(
        parse_spec("http:0:interface=127.0.0.1"), reactor, RecordingSink(), ListenerOptions()
    )
    assert isinstance(listener, StreamListener) and listener.transport == "http"
    assert isinstance(listener.tracker.wrappedFactory, http.HTTPIngestSite)


# --- helpers for socket tests ---------------------------------------------------------------


@defer.inlineCallbacks
def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> Generator:
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {predicate.__doc__ or predicate}")
        yield deferLater(reactor, 0.005, lambda: None)


def start(text: str, sink: RecordingSink, options: ListenerOptions | None = None) -> defer.Deferred:
    listener = make_listener(parse_spec(text), reactor, sink, options or ListenerOptions())
    return listener.start().addTimeout(TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def serve():
    """:func:`start` for a test that does not stop the listener itself:
    ``listener = yield serve(spec, sink[, options])``. Every listener it started is stopped at
    teardown, also when the test failed."""
    started = []

    @defer.inlineCallbacks
    def serve_(text: str, sink: RecordingSink, options: ListenerOptions | None = None):
        listener = yield start(text, sink, options)
        started.append(listener)
        return listener

    yield serve_
    for listener in started:
        await listener.stop().addTimeout(TIMEOUT, reactor)


class Client(Protocol):
    """A stream client; ``lost`` fires when the server closes the connection."""

    def __init__(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason
        self.lost.callback(None)


def connect(endpoint: Any) -> defer.Deferred:
    return connectProtocol(endpoint, Client()).addTimeout(TIMEOUT, reactor)


needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 on ::1")


@pytest.fixture
def short_tmp(tmp_path: Path) -> Generator[Path, None, None]:
    """A directory with a short path: unix socket paths are limited to 107 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sl") as name:
        yield Path(name)


# --- stream sockets -----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_tcp_listener_receives_and_stop_closes_connections() -> Generator:
    sink = RecordingSink()
    listener = yield start("tcp:0:interface=127.0.0.1", sink)
    try:
        address = listener.address
        assert address.host == "127.0.0.1" and address.port > 0
        client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port))
        client.transport.write(b"<13>one\n<13>two\n")
        yield wait_until(lambda: len(sink.posts) == 2)
        assert sink.messages == [b"<13>one", b"<13>two"]
        origin = sink.posts[0][1]
        assert origin.transport == "tcp"
        assert origin.peer_host == "127.0.0.1"
        assert origin.peer_port == client.transport.getHost().port
        assert origin.local_port == address.port
        assert listener.stats.open_connections == 1
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)
    yield client.lost.addTimeout(TIMEOUT, reactor)
    assert listener.stats.open_connections == 0
    assert listener.stats.received == listener.stats.posted == 2


@needs_ipv6
@pytest_twisted.inlineCallbacks
def test_tcp6_listener_on_ipv6_loopback(serve) -> Generator:
    sink = RecordingSink()
    listener = yield serve("tcp6:0:interface=\\:\\:1", sink)
    client = yield connect(TCP6ClientEndpoint(reactor, "::1", listener.address.port))
    client.transport.write(b"<13>six\n")
    yield wait_until(lambda: len(sink.posts) == 1)
    assert sink.posts[0][1].peer_host == "::1"
    assert sink.posts[0][1].transport == "tcp"


@pytest_twisted.inlineCallbacks
def test_unix_listener(short_tmp: Path) -> Generator:
    sink = RecordingSink()
    path = str(short_tmp / "s.sock")
    listener = yield start(f"unix:{path}", sink)
    try:
        client = yield connect(UNIXClientEndpoint(reactor, path))
        client.transport.write(b"<13>local\n<13>partial")
        yield wait_until(lambda: len(sink.posts) == 1)
        client.transport.loseConnection()
        yield wait_until(lambda: len(sink.posts) == 2)  # the partial frame, at close
        origin = sink.posts[1][1]
        assert (origin.transport, origin.peer_host, origin.peer_port) == ("unix", None, None)
        assert sink.messages == [b"<13>local", b"<13>partial"]
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)
    assert not os.path.exists(path)


@pytest_twisted.inlineCallbacks
def test_max_connections_refuses_at_once(serve) -> Generator:
    sink = RecordingSink()
    options = ListenerOptions(max_connections=1)
    listener = yield serve("tcp:0:interface=127.0.0.1", sink, options)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port)
    first = yield connect(endpoint)
    yield wait_until(lambda: listener.stats.open_connections == 1)
    second = yield connect(endpoint)
    yield second.lost.addTimeout(TIMEOUT, reactor)  # closed by the server
    assert listener.stats.refused == 1
    first.transport.write(b"<13>still here\n")
    yield wait_until(lambda: len(sink.posts) == 1)


@pytest_twisted.inlineCallbacks
def test_flow_control_over_a_socket(serve) -> Generator:
    sink = RecordingSink(window=2)
    listener = yield serve("tcp:0:interface=127.0.0.1", sink)
    client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
    client.transport.write(b"".join(b"<13>%d\n" % i for i in range(10)))
    yield wait_until(lambda: len(sink.posts) == 2 and listener.stats.received == 10)
    yield deferLater(reactor, 0.05, lambda: None)
    assert len(sink.posts) == 2  # paused: nothing more posted
    while len(sink.posts) < 10:
        sink.resume()
        yield deferLater(reactor, 0.001, lambda: None)
    assert sink.messages == [b"<13>%d" % i for i in range(10)]
    assert sink.posted_while_paused == []


@pytest_twisted.inlineCallbacks
def test_stop_while_paused_keeps_frames_for_the_resume() -> Generator:
    sink = RecordingSink(window=1)
    listener = yield start("tcp:0:interface=127.0.0.1", sink)
    listener.tracker.close_grace = 0.2
    client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
    client.transport.write(b"<13>a\n<13>b\n<13>c\n")
    yield wait_until(lambda: listener.stats.received == 3)
    yield listener.stop().addTimeout(TIMEOUT, reactor)
    assert sink.messages == [b"<13>a"]
    sink.window = None
    sink.resume()
    assert sink.messages == [b"<13>a", b"<13>b", b"<13>c"]
    assert sink.producers == []


@pytest_twisted.inlineCallbacks
def test_port_in_use_fails_start() -> Generator:
    sink = RecordingSink()
    first = yield start("tcp:0:interface=127.0.0.1", sink)
    try:
        with pytest.raises(CannotListenError):
            yield start(f"tcp:{first.address.port}:interface=127.0.0.1", sink)
    finally:
        yield first.stop()


# --- haproxy: PROXY v1 and v2 -----------------------------------------------------------------


def proxy_v2_ipv4(src: str, dst: str, sport: int, dport: int) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 203.0.113.5 198.51.100.1 56324 514\r\n",
        proxy_v2_ipv4("203.0.113.5", "198.51.100.1", 56324, 514),
    ],
    ids=["v1", "v2"],
)
@pytest_twisted.inlineCallbacks
def test_haproxy_origin_is_the_proxied_address(header: bytes, serve) -> Generator:
    sink = RecordingSink()
    listener = yield serve("haproxy:tcp:0:interface=127.0.0.1", sink)
    client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
    client.transport.write(header + b"<13>via proxy\n")
    yield wait_until(lambda: len(sink.posts) == 1)
    origin = sink.posts[0][1]
    assert sink.messages == [b"<13>via proxy"]
    assert (origin.peer_host, origin.peer_port, origin.local_port) == (
        "203.0.113.5",
        56324,
        514,
    )


# --- datagram sockets ---------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_udp_listener_reads_the_largest_ipv4_datagram_whole() -> Generator:
    sink = RecordingSink()
    listener = yield start("udp:0:interface=127.0.0.1", sink)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = listener.address.port
        big = b"<13>" + b"x" * (65507 - 4)  # the largest UDP payload over IPv4
        sender.sendto(b"<13>small", ("127.0.0.1", port))
        sender.sendto(big, ("127.0.0.1", port))
        yield wait_until(lambda: len(sink.posts) == 2)
        assert sink.messages == [b"<13>small", big]
        # one batch if both were read at one wake-up, else one each
        assert sink.batches in ([[b"<13>small", big]], [[b"<13>small"], [big]])
        origin = sink.posts[0][1]
        assert origin == type(origin)(
            "udp", listener.stats, "127.0.0.1", sender.getsockname()[1], port
        )
        assert listener.stats.truncated == 0
    finally:
        sender.close()
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_udp_datagrams_read_at_one_wake_up_are_one_batch_per_sender() -> Generator:
    """Sent while the reactor is busy (this test runs in it), the datagrams of two senders wait
    in the socket; the port reads them all at its next wake-up, and the sink gets each
    sender's run in one call, in order."""
    sink = RecordingSink()
    listener = yield start("udp:0:interface=127.0.0.1", sink)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        port = listener.address.port
        a = [b"<13>a%d" % i for i in range(50)]
        b = [b"<13>b%d" % i for i in range(50)]
        for datagram in a:
            senders[0].sendto(datagram, ("127.0.0.1", port))
        for datagram in b:
            senders[1].sendto(datagram, ("127.0.0.1", port))
        yield wait_until(lambda: len(sink.posts) == 100)
        assert sink.batches == [a, b]
        assert [origin.peer_port for _, origin in sink.posts] == (
            [senders[0].getsockname()[1]] * 50 + [senders[1].getsockname()[1]] * 50
        )
        assert listener.stats.received == listener.stats.posted == 100
    finally:
        for sender in senders:
            sender.close()
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_udp_so_rcvbuf_is_applied_to_the_socket(serve) -> Generator:
    sink = RecordingSink()
    listener = yield serve("udp:0:interface=127.0.0.1", sink, ListenerOptions(so_rcvbuf=1 << 20))
    granted = listener.protocol.receive_buffer
    assert granted is not None and granted > 0
    sock = listener._port.getHandle()
    factor = 2 if os.uname().sysname == "Linux" else 1
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // factor == granted
    if os.geteuid() == 0 or granted >= 1 << 20:
        assert granted == 1 << 20


def _can_net_admin() -> bool:
    """CAP_NET_ADMIN in this process's effective set (what SO_RCVBUFFORCE needs)."""
    try:
        with open("/proc/self/status") as status:
            caps = next(line for line in status if line.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caps.split()[1], 16) & (1 << 12))


def test_udp_so_rcvbuf_past_rmem_max_is_forced_with_cap_net_admin() -> None:
    """Above ``net.core.rmem_max`` only SO_RCVBUFFORCE gets the buffer asked for: with
    CAP_NET_ADMIN (root) the real kernel must grant it in full."""
    from syslogsrc.protocols.datagram import SO_RCVBUFFORCE, set_receive_buffer

    if not sys.platform.startswith("linux") or not _can_net_admin():
        pytest.skip("needs Linux and CAP_NET_ADMIN")
    assert SO_RCVBUFFORCE is not None, "SO_RCVBUFFORCE unknown on this Linux machine"
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    wanted = 2 * rmem_max + 4096
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert set_receive_buffer(sock, wanted) == wanted


@needs_ipv6
@pytest_twisted.inlineCallbacks
def test_udp6_listener() -> Generator:
    sink = RecordingSink()
    listener = yield start("udp6:0:interface=\\:\\:1", sink)
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"<13>v6", ("::1", listener.address.port))
        yield wait_until(lambda: len(sink.posts) == 1)
        assert sink.posts[0][1].peer_host == "::1"
    finally:
        sender.close()
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_udp_pause_stops_reading_until_resume() -> Generator:
    sink = RecordingSink(window=1)
    listener = yield start("udp:0:interface=127.0.0.1", sink)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(5):
            sender.sendto(b"<13>%d" % i, ("127.0.0.1", listener.address.port))
        yield wait_until(lambda: len(sink.posts) == 1)
        yield deferLater(reactor, 0.05, lambda: None)
        assert len(sink.posts) == 1
        sink.window = None
        sink.resume()
        yield wait_until(lambda: len(sink.posts) == 5)
        assert sink.messages == [b"<13>%d" % i for i in range(5)]
    finally:
        sender.close()
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_unixgram_listener_replaces_a_stale_socket(short_tmp: Path) -> Generator:
    path = str(short_tmp / "log")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()  # the file stays: a socket left by a crashed daemon
    sink = RecordingSink()
    listener = yield start(f"unixgram:{path}:mode=600", sink)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
        big = b"<13>" + b"y" * (65535 - 4)
        sender.sendto(b"<13>dgram", path)
        sender.sendto(big, path)
        yield wait_until(lambda: len(sink.posts) == 2)
        assert sink.messages == [b"<13>dgram", big]
        assert sink.posts[0][1].transport == "unixgram"
        assert sink.posts[0][1].peer_host is None
    finally:
        sender.close()
        yield listener.stop().addTimeout(TIMEOUT, reactor)
    assert not os.path.exists(path)


def test_listen_spec_is_a_value() -> None:
    assert parse_spec("tcp:1") == parse_spec("tcp:1")
    assert isinstance(parse_spec("tcp:1"), ListenSpec)


# --- a kind is one table entry ----------------------------------------------------------------
#
# Each test adds one ListenerKind to LISTENER_KINDS (monkeypatch takes it out again) and nothing
# else: the new kind then parses, is named in errors, and starts the way its entry says.


def recording(calls: list[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, noting ``name`` in ``calls`` at each call: shows the entry's is used."""

    def call(*args: Any) -> Any:
        calls.append(name)
        return function(*args)

    return call


@pytest_twisted.inlineCallbacks
def test_a_stream_kind_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> Generator:
    calls: list[str] = []
    monkeypatch.setitem(
        LISTENER_KINDS,
        "lines",
        ListenerKind(
            "lines",
            "lines-transport",
            _listenspec.parse_tcp_port,
            StreamStart(
                # imported by name when the first listener is made, as an optional protocol is
                protocol_factory("syslogsrc.protocols.stream:SyslogStreamFactory"),
                recording(calls, "endpoint", tcp_endpoint),
            ),
            frozenset({"format"}),
        ),
    )
    assert KINDS["lines"] == "lines-transport"
    with pytest.raises(OptionError, match=r"usage: lines:PORT\[:interface=\.\.\.\]\[:backlog"):
        parse_spec("lines:0:bogus=1")
    with pytest.raises(OptionError, match="framing= applies to stream kinds"):
        parse_spec("lines:0:framing=lf")
    with pytest.raises(
        OptionError, match=r"haproxy: wraps one of tcp, tcp6, ssl, unix, systemd, relp, relps$"
    ):
        parse_spec("haproxy:lines:0")
    with pytest.raises(
        OptionError, match=r"must be one of haproxy, .*, https, relp, relps, lines$"
    ):
        parse_spec("smtp:25")

    spec = parse_spec("lines:0:interface=127.0.0.1:format=rfc3164:allow=127.0.0.0/8")
    assert (spec.kind, spec.transport, spec.port, spec.stream) == (
        "lines",
        "lines-transport",
        0,
        True,
    )
    sink = RecordingSink()
    listener = make_listener(spec, reactor, sink, ListenerOptions())
    assert calls == ["endpoint"]
    assert isinstance(listener, StreamListener)
    factory = listener.tracker.wrappedFactory
    assert isinstance(factory, SyslogStreamFactory)
    assert (factory.transport_name, factory.format) == ("lines-transport", "rfc3164")
    yield listener.start().addTimeout(TIMEOUT, reactor)
    try:
        client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
        client.transport.write(b"<13>one\n")
        yield wait_until(lambda: len(sink.posts) == 1)
        assert sink.messages == [b"<13>one"]
        assert sink.posts[0][1].transport == "lines-transport"
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)
    yield client.lost.addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_a_tls_stream_kind_is_one_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Generator:
    # relps:'s shape: ssl:'s arguments, and a reloadable TLS context because the entry says tls.
    monkeypatch.setitem(
        LISTENER_KINDS,
        "liness",
        ListenerKind(
            "liness",
            "liness",
            _listenspec.parse_tls,
            StreamStart(protocol_factory(SyslogStreamFactory), tls=True),
            frozenset({"format"}),
            proxyable=True,
        ),
    )
    certs = make_certs(tmp_path)
    spec = parse_spec(
        f"haproxy:liness:0:interface=127.0.0.1:privateKey={certs.server_key}"
        f":certKey={certs.server_cert}"
    )
    assert (spec.proxy, spec.private_key) == (True, str(certs.server_key))
    spec = attrs.evolve(spec, proxy=False)  # the client below sends no PROXY header
    sink = RecordingSink()
    listener = make_listener(spec, reactor, sink, ListenerOptions())
    yield listener.start().addTimeout(TIMEOUT, reactor)
    try:
        trust = Certificate.loadPEM(certs.ca.read_bytes())
        endpoint = wrapClientTLS(
            optionsForClientTLS("localhost", trustRoot=trust),
            TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port),
        )
        client = yield connect(endpoint)
        client.transport.write(b"<13>secret\n")
        yield wait_until(lambda: len(sink.posts) == 1)
        assert sink.messages == [b"<13>secret"]
        assert sink.posts[0][1].transport == "liness"
        assert listener.reload_tls() is True  # the files are read again, as for ssl:
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_a_datagram_kind_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> Generator:
    calls: list[str] = []
    monkeypatch.setitem(
        LISTENER_KINDS,
        "dgram",
        ListenerKind(
            "dgram",
            "dgram",
            _listenspec.parse_udp,
            DatagramStart(recording(calls, "port", udp_port)),
            frozenset({"format"}),
        ),
    )
    with pytest.raises(OptionError, match="framing= applies to stream kinds"):
        parse_spec("dgram:0:framing=lf")
    spec = parse_spec("dgram:0:interface=127.0.0.1")
    assert not spec.stream and spec.addressed
    sink = RecordingSink()
    listener = make_listener(spec, reactor, sink, ListenerOptions())
    assert isinstance(listener, DatagramListener)
    yield listener.start().addTimeout(TIMEOUT, reactor)
    assert calls == ["port"]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"<13>datagram", ("127.0.0.1", listener.address.port))
        yield wait_until(lambda: len(sink.posts) == 1)
        assert sink.messages == [b"<13>datagram"]
        assert sink.posts[0][1].transport == "dgram"
    finally:
        sender.close()
        yield listener.stop().addTimeout(TIMEOUT, reactor)

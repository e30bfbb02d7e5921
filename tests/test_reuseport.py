"""``reuseport=yes`` on tcp, tcp6, udp and udp6 listeners: SO_REUSEPORT, so that several
processes (bench/reuseport.py) or listeners share one port.

Socket tests run on the global reactor through pytest-twisted, on a port chosen free for the test
(the second listener must bind the same number, so port 0 cannot be used).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted
from daemons import free_port
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.task import deferLater

from syslogsrc.listen import make_listener, parse_spec
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.testing import RecordingSink

TIMEOUT = 5.0


# --- the spec -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp:5514", False),
        ("tcp:5514:reuseport=yes", True),
        ("tcp:5514:interface=127.0.0.1:reuseport=no", False),
        ("tcp6:5514:reuseport=true", True),
        ("udp:5514:reuseport=1", True),
        ("udp6:5514:interface=\\:\\:1:reuseport=YES", True),
        ("udp:5514:reuseport=false", False),
        ("haproxy:tcp:5514:reuseport=yes", True),
    ],
)
def test_reuseport_is_parsed(text: str, expected: bool) -> None:
    assert parse_spec(text).reuseport is expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("tcp:5514:reuseport=maybe", "bad reuseport 'maybe': must be yes or no"),
        ("udp:5514:reuseport=", "bad reuseport '': must be yes or no"),
        ("unix:/run/x.sock:reuseport=yes", "unexpected keyword argument 'reuseport'"),
        ("unixgram:/run/x.sock:reuseport=yes", "unexpected keyword argument 'reuseport'"),
        ("http:8080:reuseport=yes", "unexpected keyword argument 'reuseport'"),
    ],
)
def test_reuseport_errors_name_the_spec(text: str, why: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_spec(text)
    assert info.value.option == "listen"
    assert why in str(info.value)


# --- on sockets ---------------------------------------------------------------------------


def _reuseport(listener) -> int:
    return listener._port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


def _start(text: str, sink: RecordingSink):
    return make_listener(parse_spec(text), reactor, sink, ListenerOptions())


@pytest_twisted.inlineCallbacks
def test_two_tcp_listeners_share_a_port_and_both_receive() -> None:
    port = free_port("tcp")
    sinks = [RecordingSink(), RecordingSink()]
    listeners = [_start(f"tcp:{port}:interface=127.0.0.1:reuseport=yes", s) for s in sinks]
    for listener in listeners:
        yield listener.start().addTimeout(TIMEOUT, reactor)
    try:
        assert [_reuseport(listener) for listener in listeners] == [1, 1]
        assert [listener.address.port for listener in listeners] == [port, port]
        # the kernel spreads connections by a hash of the peer: enough of them reach both
        clients = []
        for i in range(64):
            c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            c.sendall(b"<13>1 - - - - - - hello %d\n" % i)
            clients.append(c)
        for c in clients:
            c.close()
        deadline = reactor.seconds() + TIMEOUT
        while sum(len(s.messages) for s in sinks) < 64 and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.01, lambda: None)
        assert sum(len(s.messages) for s in sinks) == 64
        assert all(s.messages for s in sinks)
    finally:
        yield defer.gatherResults([listener.stop() for listener in listeners])


@pytest_twisted.inlineCallbacks
def test_two_udp_listeners_share_a_port() -> None:
    port = free_port("udp")
    sinks = [RecordingSink(), RecordingSink()]
    listeners = [_start(f"udp:{port}:interface=127.0.0.1:reuseport=yes", s) for s in sinks]
    for listener in listeners:
        yield listener.start().addTimeout(TIMEOUT, reactor)
    try:
        assert [_reuseport(listener) for listener in listeners] == [1, 1]
        # datagrams go by a hash of the sender's address: one sender per socket
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
        for i, sender in enumerate(senders):
            sender.sendto(b"<13>1 - - - - - - datagram %d" % i, ("127.0.0.1", port))
        deadline = reactor.seconds() + TIMEOUT
        while sum(len(s.messages) for s in sinks) < 32 and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.01, lambda: None)
        for sender in senders:
            sender.close()
        assert sum(len(s.messages) for s in sinks) == 32
        assert all(s.messages for s in sinks)
    finally:
        yield defer.gatherResults([listener.stop() for listener in listeners])


@pytest_twisted.inlineCallbacks
def test_tcp6_listener_with_reuseport() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port("tcp")
    listener = _start(f"tcp6:{port}:interface=\\:\\:1:reuseport=yes", RecordingSink())
    try:
        yield listener.start().addTimeout(TIMEOUT, reactor)
    except CannotListenError as e:
        pytest.skip(f"no ::1 here: {e}")
    try:
        assert _reuseport(listener) == 1
        assert listener._port.socket.family == socket.AF_INET6
    finally:
        yield listener.stop()


@pytest.mark.parametrize("kind", ["tcp", "udp"])
@pytest_twisted.inlineCallbacks
def test_without_reuseport_the_second_bind_fails(kind: str) -> None:
    port = free_port(kind)
    first = _start(f"{kind}:{port}:interface=127.0.0.1:reuseport=yes", RecordingSink())
    yield first.start().addTimeout(TIMEOUT, reactor)
    try:
        second = _start(f"{kind}:{port}:interface=127.0.0.1", RecordingSink())
        with pytest.raises(CannotListenError):
            yield second.start().addTimeout(TIMEOUT, reactor)
    finally:
        yield first.stop()


def test_two_processes_share_a_port(tmp_path) -> None:
    """What bench/reuseport.py relies on: two twistd-like processes bind the same TCP and UDP
    port (here two Pythons holding listeners in reactors of their own)."""
    port = free_port("both")
    script = textwrap.dedent(
        f"""
        import sys
        from twisted.internet import reactor
        from syslogsrc.listen import make_listener, parse_spec
        from syslogsrc.options import ListenerOptions
        from syslogsrc.service import CallbackSink

        sink = CallbackSink(lambda message, origin: None)
        listeners = [
            make_listener(parse_spec(text), reactor, sink, ListenerOptions())
            for text in ("tcp:{port}:interface=127.0.0.1:reuseport=yes",
                         "udp:{port}:interface=127.0.0.1:reuseport=yes")
        ]
        def started(_):
            print("listening", flush=True)
            sys.stdin.readline()
            reactor.stop()
        def failed(f):
            print("failed", f.getErrorMessage(), flush=True)
            reactor.stop()
        from twisted.internet.defer import gatherResults
        reactor.callWhenRunning(
            lambda: gatherResults([l.start() for l in listeners]).addCallbacks(started, failed)
        )
        reactor.run()
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        lines = [p.stdout.readline().strip() for p in procs]
        assert lines == ["listening", "listening"]
    finally:
        for p in procs:
            p.communicate("\n", timeout=TIMEOUT)

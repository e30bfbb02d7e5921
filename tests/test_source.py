"""TwistedSource's lifecycle: a fresh reactor per run(), request_exit() at any moment, no
descriptor or thread left behind after any number of reloads, errors logged, options checked.

These use a minimal line listener written here, so that they test the base class and nothing of
the protocols (those have their own tests)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
from twisted.internet import defer, protocol
from twisted.protocols.basic import LineReceiver

from syslogsrc.host import SourceHost, SourceInitError
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.source import SourceOptions, SyslogSource, TwistedSource, parse_time_zone


class _Line(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.factory.connections.add(self)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.connections.discard(self)

    def lineReceived(self, line: bytes) -> None:
        if line == b"boom":
            raise RuntimeError("boom in a protocol callback")
        self.factory.sink.post([line], Origin("tcp", self.factory.stats, "127.0.0.1", 1))


class LineListener:
    """The smallest thing TwistedSource accepts as a listener."""

    def __init__(self, reactor: object, sink: TwistedSource, port: int = 0) -> None:
        self.reactor = reactor
        self.factory = protocol.Factory.forProtocol(_Line)
        self.factory.sink = sink
        self.factory.stats = self.stats = ListenerStats("line")
        self.factory.connections = set()
        self.port_number = port
        self.name = f"line:{port}"

    def start(self) -> None:
        self.port = self.reactor.listenTCP(self.port_number, self.factory, interface="127.0.0.1")
        type(self).bound.append(self.port.getHost().port)

    bound: list[int] = []

    def stop(self) -> defer.Deferred[object]:
        for conn in list(self.factory.connections):
            conn.transport.abortConnection()
        return defer.maybeDeferred(self.port.stopListening)


class LineSource(TwistedSource):
    def configure(self, options: dict[str, object]) -> None:
        self.port_number = int(options.get("port", 0))

    def listeners(self, reactor: object) -> list[LineListener]:
        return [LineListener(reactor, self, self.port_number)]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _send(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(line + b"\n" for line in lines))


def _port_of(host: SourceHost) -> int:
    assert host.wait_for(lambda: LineListener.bound, timeout=5)
    return LineListener.bound[-1]


@pytest.fixture(autouse=True)
def _reset_bound() -> None:
    LineListener.bound.clear()


def test_messages_flow_through_a_fresh_reactor() -> None:
    with SourceHost(LineSource, {}) as host:
        _send(_port_of(host), [b"one", b"two"])
        assert host.wait_for(lambda: len(host.messages) == 2)
    assert [m["MESSAGE"] for m in host.messages] == [b"one", b"two"]
    assert host.messages[0]["TRANSPORT"] == b"tcp"


def test_reloads_leak_no_descriptors_nor_threads() -> None:
    # Without releasing the reactor's epoll fd and waker pipe, each reload leaks 3 descriptors.
    host = SourceHost(LineSource, {})

    def listening_after(reload: bool) -> None:
        n = len(LineListener.bound)
        host.reload() if reload else host.start()
        assert host.wait_for(lambda: len(LineListener.bound) > n, timeout=5)

    listening_after(reload=False)
    _send(LineListener.bound[-1], [b"warm-up"])
    listening_after(reload=True)
    fds, threads = _fds(), threading.active_count()  # one running reactor, listening
    for _ in range(25):
        listening_after(reload=True)
    # a leak is growth that stays: give sockets and threads of the last run a moment to go
    assert host.wait_for(lambda: _fds() <= fds + 1, timeout=5), (_fds(), fds)
    assert host.wait_for(lambda: threading.active_count() <= threads, timeout=5)
    host.close()


def test_reload_rebinds_the_same_port() -> None:
    # Every listener is closed before run() returns, so the next instance can bind again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SourceHost(LineSource, {"port": port}) as host:
        _port_of(host)  # a reload before the first bind would (rightly) never listen
        for i in range(5):
            host.reload()
            assert host.wait_for(lambda n=i: len(LineListener.bound) == n + 2)
            _send(port, [b"after reload %d" % i])
            assert host.wait_for(lambda n=i: len(host.messages) == n + 1)


def test_request_exit_before_run_ends_run() -> None:
    source = LineSource()
    source.request_exit()
    done = threading.Event()
    t = threading.Thread(target=lambda: (source.run(), done.set()))
    t.start()
    assert done.wait(5), "run() must end when request_exit() came first"


def test_request_exit_racing_start_up_always_ends_run() -> None:
    for _ in range(20):
        source = LineSource()
        source.configure({})
        t = threading.Thread(target=source.run)
        t.start()
        source.request_exit()  # anywhere between "not yet made the reactor" and "running"
        t.join(5)
        assert not t.is_alive()


def test_request_exit_is_idempotent() -> None:
    host = SourceHost(LineSource, {})
    host.start()
    _port_of(host)
    host.source.request_exit()
    host.source.request_exit()
    host.stop()


def test_exception_in_a_protocol_callback_is_logged_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="syslogng")
    with SourceHost(LineSource, {}) as host:
        port = _port_of(host)
        _send(port, [b"boom"])
        assert host.wait_for(lambda: "boom in a protocol callback" in caplog.text)
        _send(port, [b"still serving"])
        assert host.wait_for(lambda: len(host.messages) == 1)
        assert host.running


def test_a_listener_that_cannot_bind_is_logged_and_run_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="syslogng")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with SourceHost(LineSource, {"port": port}) as host:
            assert host.wait_for(lambda: f"cannot listen on line:{port}" in caplog.text)
            assert host.running


def test_wakeup_after_run_ended_is_harmless() -> None:
    source = LineSource()
    source.wakeup()  # no reactor: a late acknowledgement


def test_stop_summary_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="syslogng")
    with SourceHost(LineSource, {}) as host:
        _send(_port_of(host), [b"x"])
        assert host.wait_for(lambda: len(host.messages) == 1)
    assert "listener line stopped: received=0, posted=1" in caplog.text


# -- SyslogSource options -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"format": "xml"}, "format('xml')"),
        ({"parser": "fast"}, "parser('fast')"),
        ({"max-connections": "many"}, "max-connections('many')"),
        ({"max_connections": "0"}, "max-connections(0)"),
        ({"framing": "crlf"}, "framing('crlf')"),
        ({"udp-split-lines": "maybe"}, "udp-split-lines('maybe')"),
        ({"time-zone": "Mars/Olympus"}, "time-zone('Mars/Olympus')"),
        ({"colour": "blue"}, "colour('blue')"),
        ({"listen": "carrier-pigeon:1"}, "listen("),
        ({"listen": ""}, "listen"),
        ({"tls-peer-verify": "required"}, "tls-peer-verify('required')"),
        # access control: allow lists and rate limits
        ({"allow": "10.0.0.0/8,bogus"}, "allow("),
        ({"rate": "0"}, "rate("),
        ({"rate": "lots"}, "rate("),
        ({"burst": "0"}, "burst("),
        ({"listen": "tcp:5514:rate=-1"}, "listen("),
    ],
)
def test_a_bad_option_fails_init_naming_it(
    options: dict[str, str], named: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="syslogng")
    with pytest.raises(SourceInitError, match="init\\(\\) returned FALSE"):
        SourceHost(SyslogSource, options).start()
    assert named in caplog.text


def test_options_accept_strings_and_typed_values() -> None:
    a = SourceOptions.from_options(
        {"max-connections": "5", "udp_split_lines": "yes", "idle-timeout": "2.5"}
    )
    b = SourceOptions.from_options(
        {"max_connections": 5, "udp_split_lines": True, "idle_timeout": 2.5}
    )
    assert a == b
    assert a.listener.max_connections == 5
    assert a.listener.udp_split_lines is True


def test_time_zone_forms() -> None:
    assert parse_time_zone("+02:00").utcoffset(None).total_seconds() == 7200
    assert parse_time_zone("-05:30").utcoffset(None).total_seconds() == -19800
    assert str(parse_time_zone("Europe/Budapest")) == "Europe/Budapest"


def test_twisted_source_does_not_install_the_global_reactor_when_hosted() -> None:
    # The global reactor cannot be run twice in a process: run() must never use it.
    import sys

    before = sys.modules.get("twisted.internet.reactor")
    with SourceHost(LineSource, {}) as host:
        _send(_port_of(host), [b"x"])
        assert host.wait_for(lambda: len(host.messages) == 1)
    assert sys.modules.get("twisted.internet.reactor") is before


def test_stop_closes_idle_connections_at_once() -> None:
    # A stop with a connected, silent client still ends quickly: connections are closed.
    host = SourceHost(LineSource, {})
    host.start()
    port = _port_of(host)
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.05)
        t0 = time.monotonic()
        host.close()
        assert time.monotonic() - t0 < 3


def test_inside_a_daemon_each_batch_refreshes_the_daemons_clock_before_its_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon's cached clock is never refreshed in a Python source's thread: one
    # LogMessage() per batch, before its first message is made, gives each batch its receive
    # time (RECVD, and the stamp of a stampless message; checked in the daemons by
    # tests/test_integration_fields.py). Not per message, and not for a batch not taken.
    import syslogsrc._posting as posting

    events: list[object] = []
    monkeypatch.setattr(posting, "_REFRESH_CLOCK", True)
    monkeypatch.setattr(posting, "_CLOSE_BATCH", False)
    monkeypatch.setattr(posting, "refresh_clock", lambda: events.append("refresh"))

    class Recording(TwistedSource):
        def listeners(self, reactor: object) -> list[object]:
            return []

        def build_message(self, message: object, origin: Origin) -> object:
            events.append(message)
            return message

        def post_message(self, msg: object) -> None:  # type: ignore[override]
            pass

    source = Recording()
    origin = Origin("tcp", ListenerStats("tcp:5514"), "192.0.2.7", 40000, 5514)
    assert source.post([b"a", b"b", b"c"], origin) == 3
    assert source.post([b"d"], origin) == 1
    assert events == ["refresh", b"a", b"b", b"c", "refresh", b"d"]
    events.clear()
    source.suspend()
    assert source.post([b"e"], origin) == 0
    assert events == []


@pytest.mark.parametrize(("mode", "peer_pairs"), [(None, True), ("pairs", True), ("saddr", False)])
def test_source_ip_pairs_by_default_the_leaking_api_only_when_asked(
    mode: str | None, peer_pairs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LogMessage.set_source_ipaddress() leaks in every daemon that has it: not by default
    import syslogsrc._twisted_source as twisted_source
    from syslogsrc.emulation import ParseOptions

    source = SyslogSource()
    options = {"listen": "tcp:5514"} if mode is None else {"listen": "tcp:5514", "source-ip": mode}
    assert source.init(options)
    source.parse_options = ParseOptions("auto")
    monkeypatch.setattr(twisted_source, "_SOURCE_IP_LEAKS", True)  # as in the daemons
    source._set_source_ip = source._uses_source_ip_api()  # what attach() decides
    origin = Origin("tcp", ListenerStats("tcp:5514"), "192.0.2.7", 40000, 5514)
    for native in (False, True):
        source._native = native
        msg = source.builder(origin)(b"<13>Nov 24 06:00:00 h app: m")
        assert ("PEERIP" in msg._values) is peer_pairs
        assert (msg._source_ip == "192.0.2.7") is not peer_pairs


def test_source_ip_none_gives_no_address() -> None:
    from syslogsrc.emulation import ParseOptions

    source = SyslogSource()
    assert source.init({"listen": "tcp:5514", "source-ip": "none"})
    source.parse_options = ParseOptions("auto")
    origin = Origin("tcp", ListenerStats("tcp:5514"), "192.0.2.7", 40000, 5514)
    for native in (False, True):
        source._native = native
        msg = source.builder(origin)(b"<13>Nov 24 06:00:00 h app: m")
        assert "PEERIP" not in msg._values and "PEERPORT" not in msg._values
        assert msg._source_ip is None
        assert msg._values["MESSAGE"] == b"m"


def test_a_bad_source_ip_fails_init_naming_it() -> None:
    source = SyslogSource()
    assert not source.init({"listen": "tcp:5514", "source-ip": "both"})

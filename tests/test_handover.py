"""The hand-over of sockets, connections and unposted frames from a stopping source instance to
the next one (syslogsrc.handover), through SourceHost, which reloads the way the daemon does
(stop, new instance's init(), old instance's finalize(), new run()). The same in both real
daemons: tests/test_integration_reload.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from syslogsrc import SyslogSource, handover
from syslogsrc.host import SourceHost
from syslogsrc.testing import CountingOutput

WAIT = 15.0


def _host(listen: str, output: CountingOutput, **kwargs: object) -> SourceHost:
    host = SourceHost(SyslogSource, {"listen": listen}, output=output, **kwargs)  # type: ignore[arg-type]
    host.start()
    _wait_listening(host)
    return host


def _wait_listening(host: SourceHost) -> None:
    assert host.wait_for(
        lambda: (
            bool(host.source._listeners)
            and all(lst.address is not None for lst in host.source._listeners)
        ),
        timeout=WAIT,
    )


def _lines(tag: str, n: int) -> bytes:
    line = b"<13>Nov 24 06:00:00 good app: good-%s-%d\n"
    return b"".join(line % (tag.encode(), i) for i in range(n))


def _port(host: SourceHost, index: int = 0) -> int:
    return host.source._listeners[index].address.port


def test_a_reload_keeps_the_listening_socket_the_connection_and_a_split_frame() -> None:
    output = CountingOutput()
    host = _host("tcp:0:interface=127.0.0.1", output)
    try:
        port = _port(host)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>Nov 24 06:00:00 good app: good-keep-0\n<13>Nov 24 06:00:00 g")
            assert host.wait_for(lambda: len(output.good.get("keep", [])) == 1, WAIT)
            first = host.source
            host.reload()
            assert host.source is not first
            _wait_listening(host)
            assert _port(host) == port  # the same socket, not a new bind
            s.sendall(b"ood app: good-keep-1\n<13>Nov 24 06:00:00 good app: good-keep-2\n")
            assert host.wait_for(lambda: len(output.good.get("keep", [])) == 3, WAIT)
            s.settimeout(0.2)
            try:  # still open: the new instance owns it
                assert s.recv(1) != b""
            except TimeoutError:
                pass
        assert output.good["keep"] == [0, 1, 2]
    finally:
        host.close()


def test_frames_read_while_suspended_are_posted_by_the_next_instance() -> None:
    output = CountingOutput()
    output.hold()  # the output takes nothing: the window (10) fills, the source is suspended
    host = _host("tcp:0:interface=127.0.0.1 udp:0:interface=127.0.0.1", output, log_iw_size=10)
    try:
        tcp, udp = _port(host, 0), _port(host, 1)
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            s.sendall(
                b"".join(b"<13>Nov 24 06:00:00 good app: good-t-%d\n" % i for i in range(200))
            )
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as d:
                for i in range(20):
                    d.sendto(b"<13>Nov 24 06:00:00 good app: good-u-%d" % i, ("127.0.0.1", udp))
            time.sleep(0.3)
            old = host.source
            # The host waits for its output before the new instance starts: released once
            # the old run() has returned (the window never moved: what was read is handed over)
            threading.Timer(1.5, output.release).start()
            host.reload()
            stats = [lst.stats for lst in old._stopped_listeners]
            assert host.wait_for(
                lambda: (
                    len(output.good.get("t", [])) == 200 and len(output.good.get("u", [])) == 20
                ),
                WAIT,
            ), output.good
        assert output.good["t"] == list(range(200))
        assert sorted(output.good["u"]) == list(range(20))
        handed = sum(st.handed_over for st in stats)
        assert handed > 0  # read and not posted when the old instance stopped
        taken = sum(lst.stats.taken_over for lst in host.source._listeners)
        assert taken == handed
    finally:
        host.close()


def test_what_nobody_takes_over_is_closed_at_finalize_and_counted() -> None:
    output = CountingOutput()
    output.hold()
    host = _host("tcp:0:interface=127.0.0.1", output, log_iw_size=5)
    port = _port(host)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"".join(b"<13>Nov 24 06:00:00 good app: good-s-%d\n" % i for i in range(50)))
        time.sleep(0.3)
        source = host.source
        threading.Timer(1.5, output.release).start()  # once run() has returned
        host.stop()  # stop: finalize() after deinit(), nobody claims
        stats = source._stopped_listeners[0].stats
        assert stats.handed_over > 0
        assert stats.received == stats.posted + stats.dropped + stats.handed_over
        s.settimeout(WAIT)
        assert s.recv(1) == b""  # closed at finalize
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the listening socket too
    host.close()


def test_an_unclaimed_unix_socket_is_unlinked_and_its_lock_released(tmp_path) -> None:
    path = str(tmp_path / "log.sock")
    output = CountingOutput()
    host = _host(f"unix:{path}", output)
    host.reload()  # handed over and adopted: same file, lock moved to the new port
    _wait_listening(host)
    assert os.path.exists(path) and os.path.lexists(path + ".lock")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"<13>Nov 24 06:00:00 good app: good-x-0\n")
    assert host.wait_for(lambda: output.good.get("x") == [0], WAIT)
    host.close()
    assert not os.path.exists(path) and not os.path.lexists(path + ".lock")


def test_a_bundle_nobody_claims_expires() -> None:
    a, b = socket.socketpair()
    try:
        state = handover.ListenerState("tcp:1", fd=os.dup(a.fileno()), family=socket.AF_UNIX)
        lost: list[tuple[int, int]] = []
        handover.deposit("test-expiry", [state], lambda c, f: lost.append((c, f)), grace=0.05)
        deadline = time.monotonic() + WAIT
        while not lost and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lost == [(0, 0)]
        assert state.fd is None
        assert handover.claim("test-expiry") == {}
    finally:
        a.close()
        b.close()


def test_a_stop_posts_everything_read_before_run_returns() -> None:
    # A slow output keeps the window (10) full: at the stop the connection holds frames read
    # and not posted. The host wakes the source at request_exit() as 4.x does; they are all
    # posted (and written) before run() returns, none handed over or dropped.
    output = CountingOutput(delay=0.0002)  # ~5000 msg/s: well within drain_grace (2 s)
    host = _host("tcp:0:interface=127.0.0.1", output, log_iw_size=10)
    with socket.create_connection(("127.0.0.1", _port(host))) as s:
        s.sendall(_lines("stop", 2000))
        assert host.wait_for(lambda: len(output.good.get("stop", [])) >= 50, WAIT)
        source = host.source
        host.stop()
    stats = source._stopped_listeners[0].stats
    assert (stats.dropped, stats.handed_over) == (0, 0), stats
    assert stats.posted == stats.received
    assert output.good["stop"] == list(range(stats.received))
    host.close()


def test_haproxy_keeps_its_listening_socket_and_closes_its_connections() -> None:
    # The PROXY header of a connection was read by the old instance: the connection is not
    # handed over (closed after posting what it read); the listening socket is.
    output = CountingOutput()
    host = _host("haproxy:tcp:0:interface=127.0.0.1", output)
    try:
        port = _port(host)
        header = b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 %d\r\n" % port
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(header + _lines("p", 3))
            assert host.wait_for(lambda: output.good.get("p") == [0, 1, 2], WAIT)
            host.reload()
            _wait_listening(host)
            assert _port(host) == port
            s.settimeout(WAIT)
            assert s.recv(1) == b""
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(header + _lines("q", 2))
            assert host.wait_for(lambda: output.good.get("q") == [0, 1], WAIT)
    finally:
        host.close()


def test_a_listener_keeps_its_connection_when_another_is_added() -> None:
    # Another listen option is another persist name: the unchanged listener is found by its
    # spec, and its connection goes on.
    output = CountingOutput()
    host = _host("tcp:0:interface=127.0.0.1", output)
    try:
        port = _port(host)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(_lines("a", 2))
            assert host.wait_for(lambda: output.good.get("a") == [0, 1], WAIT)
            host.options = {"listen": "tcp:0:interface=127.0.0.1 udp:0:interface=127.0.0.1"}
            host.reload()
            _wait_listening(host)
            assert _port(host) == port
            s.sendall(_lines("b", 2))
            assert host.wait_for(lambda: output.good.get("b") == [0, 1], WAIT)
    finally:
        host.close()

"""A SyslogSource's life in the real daemons: reloads, stop under load, several sources, bad
options, exceptions in user code.

- 20 reloads while a sender stays connected (it would reconnect if the daemon closed its
  connection): the connection survives every reload (handed from instance to instance), nothing
  is lost or doubled, the daemon's descriptors and threads do not grow.
- SIGTERM while loggen sends as fast as it can: the daemon exits 0 within 5 s.
- Two SyslogSources in one configuration (their persist names differ).
- A bad option: the daemon does not start, and its message names the option.
- An exception in user code (examples/custom_source.py, told to raise on a line): logged, that
  line dropped and counted, the source serves on.
"""

from __future__ import annotations

import collections
import re
import select
import socket
import threading
import time

import pytest
from daemons import DaemonStartError, free_port
from integration import (
    PRELUDE,
    JsonOutput,
    json_file,
    log_path,
    loggen_popen,
    one_source_config,
    send_tcp,
    stop_summary,
    syslogsrc_source,
)

RELOADS = 20


class ReconnectingSender(threading.Thread):
    """Sends numbered messages over TCP, several thousand a second, as a careful client does:
    before each send it looks whether the server closed the connection, and reconnects (every
    20 ms until it can) when it did or when a send fails. A number whose send failed is sent
    again on the next connection. ``connections`` lists, per connection, the numbers sent."""

    def __init__(self, port: int, interval: float = 0.0002) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.connections: list[list[int]] = []
        self.next = 0
        self.failures: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        sock: socket.socket | None = None
        while not self._halt.is_set():
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                except OSError:
                    time.sleep(0.02)
                    continue
                self.connections.append([])
            n = self.next
            try:
                if select.select([sock], [], [], 0)[0] and not sock.recv(1):
                    raise ConnectionResetError("closed by the server")
                sock.sendall(b"<13>1 - - reload - - - n=%d\n" % n)
            except OSError as e:
                self.failures.append(type(e).__name__)
                sock.close()
                sock = None
                continue
            self.connections[-1].append(n)
            self.next += 1
            time.sleep(self.interval)
        if sock is not None:
            sock.shutdown(socket.SHUT_WR)  # a clean end: the server reads it all
            sock.close()


_N = re.compile(r"n=(\d+)")


def test_reloads_with_a_connected_sender(syslog_ng):
    port = free_port()
    d = syslog_ng(one_source_config(f"tcp:{port}:interface=127.0.0.1"), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    received: collections.Counter[int] = collections.Counter()

    def collect() -> None:
        for record in out.new_records():
            received[int(_N.search(record["MESSAGE"]).group(1))] += 1

    def wait_for_number(n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            collect()
            if received and max(received) >= n:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing sent after #{n} arrived within {timeout}s")
            time.sleep(0.02)

    sender = ReconnectingSender(port)
    sender.start()
    try:
        wait_for_number(50)
        usage = {}
        reload_seconds = []
        for i in range(1, RELOADS + 1):
            started = time.monotonic()
            d.reload()
            reload_seconds.append(time.monotonic() - started)
            # back: a message sent after the reload finished arrives
            wait_for_number(sender.next + 5)
            if i in (1, RELOADS):
                usage[i] = (d.fds(), d.threads())
    finally:
        sender.stop()
    assert not sender.is_alive()
    out.settle(quiet=0.5)
    collect()

    doubled = {n: c for n, c in received.items() if c > 1}
    assert not doubled, f"received twice: {sorted(doubled)[:10]}"
    sent = [n for conn in sender.connections for n in conn]
    assert set(received) <= set(sent)
    lost_per_connection = []
    for conn in sender.connections:
        arrived = [n in received for n in conn]
        kept = arrived.index(False) if False in arrived else len(arrived)
        assert all(arrived[:kept]) and not any(arrived[kept:]), (
            f"a gap inside a connection: {conn[kept:][:5]} lost, later ones arrived"
        )
        lost_per_connection.append(len(conn) - kept)
    assert lost_per_connection[-1] == 0  # the last connection ended cleanly: all of it arrived
    assert len(sender.connections) == 1, sender.failures  # no reload closed the connection
    assert sum(lost_per_connection) == 0
    (fds1, threads1), (fds20, threads20) = usage[1], usage[RELOADS]
    assert fds20 - fds1 <= 2, usage
    assert threads20 - threads1 <= 1, usage
    assert d.stop() == 0
    print(
        f"{syslog_ng.name}: {RELOADS} reloads ({min(reload_seconds):.2f}-"
        f"{max(reload_seconds):.2f}s each), {len(sent)} sent over {len(sender.connections)}"
        f" connections, {len(received)} received, {sum(lost_per_connection)} lost in flight"
        f" (per connection at most {max(lost_per_connection)}); fds {fds1}->{fds20},"
        f" threads {threads1}->{threads20}"
    )


def test_sigterm_under_load_stops_within_5s(syslog_ng):
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    d = syslog_ng(one_source_config(listen), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    sender = loggen_popen(
        "-i", "-S", "--active-connections=4", "-r", "100000", "-I", "60", "127.0.0.1", str(port)
    )
    try:
        out.wait(10_000)  # under load
        started = time.monotonic()
        rc = d.stop(timeout=5)  # SIGKILL and DaemonError after 5 s
        elapsed = time.monotonic() - started
    finally:
        sender.kill()
        sender.wait()
    assert rc == 0
    assert elapsed < 5
    summary = stop_summary(d.stderr(), listen)
    print(
        f"{syslog_ng.name}: stopped in {elapsed:.2f}s under load, after {summary['posted']}"
        f" messages; {summary['dropped']} read but not posted"
    )


def test_two_syslog_sources_in_one_configuration(syslog_ng):
    p1, p2 = free_port(), free_port()
    config = (
        PRELUDE
        + syslogsrc_source("s_one", f"tcp:{p1}:interface=127.0.0.1")
        + syslogsrc_source("s_two", f"tcp:{p2}:interface=127.0.0.1")
        + json_file("d_json", "out.json")
        + log_path(["s_one", "s_two"], ["d_json"])
    )
    d = syslog_ng(config, wait_ports=[p1, p2])
    out = JsonOutput(d.state_dir / "out.json")
    send_tcp(p1, [b"<13>1 - - app - - - to one"])
    send_tcp(p2, [b"<13>1 - - app - - - to two"])
    records = out.wait(2)
    assert {r["MESSAGE"]: r["SOURCE"] for r in records} == {"to one": "s_one", "to two": "s_two"}
    stats = d.ctl("stats")
    for port in (p1, p2):  # each under its own persist name
        assert f"syslogsrc(tcp:{port}:interface=127.0.0.1)" in stats, stats
    d.reload()  # the names stay distinct across a reload
    send_tcp(p2, [b"<13>1 - - app - - - two again"])
    out.wait(3)
    assert d.stop() == 0


@pytest.mark.parametrize(
    "options,named",
    [
        ({"no-such-option": "1"}, "no-such-option"),
        ({"max-connections": "lots"}, "max-connections"),
        ({"format": "xml"}, "format"),
        ({"tls-peer-verify": "required"}, "tls-peer-verify"),
    ],
)
def test_a_bad_option_fails_start_up_naming_it(syslog_ng, options, named):
    port = free_port()
    with pytest.raises(DaemonStartError) as excinfo:
        syslog_ng(one_source_config(f"tcp:{port}:interface=127.0.0.1", options), timeout=15)
    message = str(excinfo.value)
    assert f"option {named}(" in message, message
    assert "init() returned FALSE" in message, message


def test_a_bad_listen_spec_fails_start_up_naming_it(syslog_ng):
    with pytest.raises(DaemonStartError) as excinfo:
        syslog_ng(one_source_config("tcp:99999:interface=127.0.0.1"), timeout=15)
    assert "option listen('tcp:99999:interface=127.0.0.1'): bad port" in str(excinfo.value)


def test_an_exception_in_user_code_is_logged_and_the_source_serves_on(syslog_ng):
    port = free_port()
    config = (
        PRELUDE
        + 'source s_lines { python(class("examples.custom_source.LineSource")'
        + f' options("port" "{port}" "site" "lab-1" "crash-on" "boom")); }};\n'
        + json_file("d_json", "out.json")
        + log_path(["s_lines"], ["d_json"])
    )
    d = syslog_ng(config, wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    send_tcp(port, [b"before", b"boom", b"after"])
    send_tcp(port, [b"on a new connection"])
    records = out.wait(3)
    assert [r["MESSAGE"] for r in records] == ["before", "after", "on a new connection"]
    assert {(r["PROGRAM"], r["example"]["site"]) for r in records} == {("lines", "lab-1")}
    d.wait_for_stderr("ValueError: LineSource was told to crash on b'boom'")
    assert "building a message raised 1 time(s)" in d.stderr()
    assert d.stop() == 0
    summary = stop_summary(d.stderr(), f"tcp:{port}:interface=127.0.0.1")
    assert (summary["received"], summary["posted"], summary["dropped"]) == (4, 3, 1)

"""``twistd -n syslogsrc`` against real clients, for what those clients found (issue "[2.0] What
real clients found"):

* a stamp with a negative UTC offset (``logger`` in America/New_York, ``-03:00`` over TCP, UDP
  and HTTP) must keep its offset, as ``syslogsrc-host`` does, and ``--time-zone -05:00`` must
  apply to stamps without one;
* a frame without its trailing LF, still in flight when twistd is stopped, must be written and
  counted: over TLS (``openssl s_client``) as over plain TCP.

Nothing here depends on the calendar or the machine's time zone: every client runs with TZ set,
fixed stamps are compared exactly, and ``logger``'s own stamps are compared with the time they
were sent.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from certs import Certs, make_certs
from test_listen import TIMEOUT, connect, wait_until
from twistd_process import Twistd, json_lines
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure

from syslogsrc import testing
from syslogsrc.interfaces import ListenerStats
from syslogsrc.listen import make_listener, parse_spec
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.testing import RecordingSink

LOGGER = shutil.which("logger")
CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")

needs_logger = pytest.mark.skipif(LOGGER is None, reason="logger (util-linux) is not installed")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

#: a POSIX TZ without daylight saving time: always -03:00, whatever the date
MINUS_3 = "<-03>3"
#: and always -05:00
MINUS_5 = "<-05>5"


def _new_york() -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database entry for America/New_York")


class Server:
    """One twistd for several tests; each test finds its messages by PROGRAM."""

    def __init__(self, twistd: Twistd, out: Path, port: int, http: int) -> None:
        self.twistd = twistd
        self.out = out
        self.port = port
        self.http = http

    def wait_for(self, program: str, n: int = 1) -> list[dict]:
        def found() -> list[dict]:
            return [line for line in json_lines(self.out) if line.get("PROGRAM") == program]

        assert testing.wait_until(lambda: len(found()) >= n), self.twistd.logtext()
        return found()

    def send_tcp(self, data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(data)

    def send_udp(self, data: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(data, ("127.0.0.1", self.port))


def _start(directory: Path, *args: str, http: bool = True) -> Server:
    port, http_port = testing.free_port(), testing.free_port()
    out = directory / "out.jsonl"
    listen = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    listen += ["--listen", f"udp:{port}:interface=127.0.0.1"]
    if http:
        listen += ["--listen", f"http:{http_port}:interface=127.0.0.1"]
    t = Twistd(directory, *listen, "--output", str(out), *args)
    assert testing.wait_until(
        lambda: testing.accepts(port) and (not http or testing.accepts(http_port))
    ), t.logtext()
    return Server(t, out, port, http_port)


def _stop(server: Server) -> None:
    try:
        assert server.twistd.stop(), server.twistd.logtext()
    finally:
        if server.twistd.proc.poll() is None:
            server.twistd.proc.kill()
            server.twistd.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """twistd with the defaults: no --time-zone."""
    s = _start(tmp_path_factory.mktemp("twistd"))
    yield s
    _stop(s)


@pytest.fixture(scope="module")
def server_minus_5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """twistd --time-zone -05:00."""
    s = _start(tmp_path_factory.mktemp("twistd-tz"), "--time-zone", "-05:00", http=False)
    yield s
    _stop(s)


def _logger(*args: str, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """Run logger with TZ=tz; the instants just before and just after it ran."""
    assert LOGGER is not None
    before = dt.datetime.now(dt.UTC)
    subprocess.run(
        [LOGGER, *args],
        check=True,
        timeout=10,
        env={**os.environ, "TZ": tz},
    )
    return before, dt.datetime.now(dt.UTC)


def _isodate(line: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(line["ISODATE"])


# --- negative UTC offsets -------------------------------------------------------------------


@needs_logger
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_logger_in_new_york_keeps_its_offset(server: Server, transport: str) -> None:
    program = f"ny{transport}"
    flag = "-T" if transport == "tcp" else "-d"
    before, after = _logger(
        "--rfc5424", flag, "-n", "127.0.0.1", "-P", str(server.port), "-t", program, "hello",
        tz="America/New_York",
    )  # fmt: skip
    (line,) = server.wait_for(program)
    stamp = _isodate(line)
    # the offset New York had at that instant (-05:00 or -04:00, depending on the season)
    assert stamp.utcoffset() == stamp.astimezone(_new_york()).utcoffset(), line["ISODATE"]
    assert stamp.utcoffset() < dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= stamp <= after + dt.timedelta(seconds=1)


@needs_logger
def test_logger_at_minus_3_keeps_minus_3(server: Server) -> None:
    before, after = _logger(
        "--rfc5424", "-T", "-n", "127.0.0.1", "-P", str(server.port), "-t", "minus3", "hello",
        tz=MINUS_3,
    )  # fmt: skip
    (line,) = server.wait_for("minus3")
    assert line["ISODATE"].endswith("-03:00"), line["ISODATE"]
    stamp = _isodate(line)
    assert before - dt.timedelta(seconds=1) <= stamp <= after + dt.timedelta(seconds=1)


RFC5424_MINUS_3 = b"<13>1 2026-12-02T10:00:00.5-03:00 h %s - - - x"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_an_explicit_minus_3_is_kept(server: Server, transport: str) -> None:
    program = f"raw{transport}"
    frame = RFC5424_MINUS_3 % program.encode()
    if transport == "tcp":
        server.send_tcp(frame + b"\n")
    else:
        server.send_udp(frame)
    (line,) = server.wait_for(program)
    assert line["ISODATE"] == "2026-12-02T10:00:00.500000-03:00"


@needs_curl
def test_an_explicit_minus_3_over_http_is_kept(server: Server) -> None:
    assert CURL is not None
    subprocess.run(
        [
            CURL, "-sf", "-H", "Content-Type: text/plain",
            "--data-binary", (RFC5424_MINUS_3 % b"rawhttp").decode(),
            f"http://127.0.0.1:{server.http}/",
        ],
        check=True,
        timeout=10,
        capture_output=True,
    )  # fmt: skip
    (line,) = server.wait_for("rawhttp")
    assert line["ISODATE"] == "2026-12-02T10:00:00.500000-03:00"


def test_a_positive_offset_is_kept_too(server: Server) -> None:
    server.send_tcp(b"<13>1 2026-12-02T10:00:00.5+03:00 h plus3 - - - x\n")
    (line,) = server.wait_for("plus3")
    assert line["ISODATE"] == "2026-12-02T10:00:00.500000+03:00"


# --- --time-zone for stamps without one -----------------------------------------------------


def test_time_zone_minus_5_applies_to_an_rfc3164_stamp(server_minus_5: Server) -> None:
    server_minus_5.send_tcp(b"<13>Dec  2 10:00:00 h tz3164: x\n")
    (line,) = server_minus_5.wait_for("tz3164")
    # RFC 3164 has no year: the receiver guesses it, the rest is exact
    assert re.fullmatch(r"\d{4}-12-02T10:00:00(\.0+)?-05:00", line["ISODATE"]), line["ISODATE"]


def test_time_zone_does_not_override_an_explicit_offset(server_minus_5: Server) -> None:
    server_minus_5.send_tcp(RFC5424_MINUS_3 % b"tzexplicit" + b"\n")
    (line,) = server_minus_5.wait_for("tzexplicit")
    assert line["ISODATE"] == "2026-12-02T10:00:00.500000-03:00"


@needs_logger
def test_logger_rfc3164_at_minus_5_with_time_zone_minus_5(server_minus_5: Server) -> None:
    before, after = _logger(
        "--rfc3164", "-d", "-n", "127.0.0.1", "-P", str(server_minus_5.port), "-t", "lg3164",
        "hello",
        tz=MINUS_5,
    )  # fmt: skip
    (line,) = server_minus_5.wait_for("lg3164")
    assert line["ISODATE"].endswith("-05:00"), line["ISODATE"]
    stamp = _isodate(line)  # whole seconds in RFC 3164
    assert before - dt.timedelta(seconds=2) <= stamp <= after + dt.timedelta(seconds=1)


def test_parser_native_parses_and_keeps_minus_3(tmp_path: Path) -> None:
    # LogMessage.parse needs the parse_options the daemon gives a source: without them every
    # message was dropped ("the sink raised").
    s = _start(tmp_path, "--parser", "native", http=False)
    try:
        s.send_tcp(RFC5424_MINUS_3 % b"native" + b"\n")
        (line,) = s.wait_for("native")
        assert line["ISODATE"] == "2026-12-02T10:00:00.500000-03:00"
    finally:
        _stop(s)


# --- a partial frame at SIGTERM -------------------------------------------------------------

PARTIAL = b"<13>1 2026-01-01T00:00:00Z h app - - - partial-%s"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


def test_close_all_fires_after_the_innermost_protocol_is_gone() -> None:
    """The tracker's close_all() (what a listener's stop() waits for) fires only once the
    protocol at the bottom (under a wrapper, as under TLS) has run connectionLost: the frame
    cut short by the end of the stream is posted by then."""
    clock, sink, stats = Clock(), RecordingSink(), ListenerStats(name="t")
    stream = SyslogStreamFactory(clock, sink, ListenerOptions(), stats, "tls")
    tracker = ConnectionTracker(clock, WrappingFactory(stream), ListenerOptions(), stats)
    connection = tracker.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
    connection.makeConnection(StringTransport())
    connection.dataReceived(PARTIAL % b"unit")
    assert stats.open_connections == 1 and sink.messages == []

    seen: list[tuple[list[bytes], int]] = []
    tracker.close_all().addCallback(lambda _: seen.append((list(sink.messages), stats.received)))
    assert seen == []
    connection.connectionLost(Failure(ConnectionDone()))
    assert seen == [([PARTIAL % b"unit"], 1)]
    assert stats.open_connections == 0


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("kind", ["ssl", "tcp"])
def test_a_listener_stops_after_its_connections_posted_their_partial_frames(pki: Certs, kind: str):
    sink = RecordingSink()
    options = ListenerOptions(tls_key_file=str(pki.server_key), tls_cert_file=str(pki.server_cert))
    spec = parse_spec(f"{kind}:0:interface=127.0.0.1")
    listener = (
        yield make_listener(spec, reactor, sink, options).start().addTimeout(TIMEOUT, reactor)
    )
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port)
    if kind == "ssl":
        trust = Certificate.loadPEM(pki.ca.read_bytes())
        endpoint = wrapClientTLS(optionsForClientTLS("localhost", trustRoot=trust), endpoint)
    client = yield connect(endpoint)
    frame = PARTIAL % kind.encode()
    client.transport.write(frame)  # no LF
    yield wait_until(lambda: listener.stats.bytes == len(frame))
    assert sink.messages == []
    seen: list[tuple[list[bytes], int]] = []
    stopped = listener.stop().addCallback(
        lambda _: seen.append((list(sink.messages), listener.stats.received))
    )
    yield stopped.addTimeout(TIMEOUT, reactor)
    yield client.lost.addTimeout(TIMEOUT, reactor)
    assert seen == [([frame], 1)]


def _stats_line(log: str, name: str, what: str) -> str | None:
    """The last ``what`` line ("stats" or "summary") of listener ``name`` in twistd's log."""
    found = None
    for line in log.splitlines():
        if f"{what} {name}: " in line:
            found = line.split(f"{what} {name}: ", 1)[1]
    return found


def _counters(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}


def _partial_frame_at_sigterm(
    tmp_path: Path, spec: str, name: str, connect: Callable[[], subprocess.Popen | socket.socket]
) -> None:
    out = tmp_path / "out.jsonl"
    t = Twistd(tmp_path, "--listen", spec, "--output", str(out), "--stats-interval", "0.05")
    client = None
    try:
        port = int(spec.split(":")[1])
        assert testing.wait_until(lambda: testing.accepts(port)), t.logtext()
        client = connect()
        frame = PARTIAL % name.encode()

        def read_by_twistd() -> bool:
            stats = _stats_line(t.logtext(), spec, "stats")
            return stats is not None and _counters(stats)["bytes"] == len(frame)

        # twistd has read the frame (not complete: no LF yet) before it is stopped
        assert testing.wait_until(read_by_twistd), t.logtext()
        assert t.stop(), t.logtext()
        summary = _stats_line(t.logtext(), spec, "summary")
        assert summary is not None, t.logtext()
        counters = _counters(summary)
        assert [line["MESSAGE"] for line in json_lines(out)] == [f"partial-{name}"], t.logtext()
        assert (counters["received"], counters["posted"], counters["dropped"]) == (1, 1, 0), summary
    finally:
        if isinstance(client, subprocess.Popen):
            if client.poll() is None:
                client.kill()
            client.communicate(timeout=10)
        elif client is not None:
            client.close()
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


@needs_openssl
def test_a_partial_tls_frame_is_written_and_counted_at_sigterm(tmp_path: Path) -> None:
    assert OPENSSL is not None
    pki = tmp_path / "pki"
    pki.mkdir()
    certs = make_certs(pki)
    port = testing.free_port()
    spec = (
        f"ssl:{port}:privateKey={certs.server_key}:certKey={certs.server_cert}:interface=127.0.0.1"
    )

    def connect() -> subprocess.Popen:
        client = subprocess.Popen(
            [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-quiet"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert client.stdin is not None
        client.stdin.write(PARTIAL % b"tls")  # no LF, and stdin stays open
        client.stdin.flush()
        return client

    _partial_frame_at_sigterm(tmp_path, spec, "tls", connect)


def test_a_partial_tcp_frame_is_written_and_counted_at_sigterm(tmp_path: Path) -> None:
    port = testing.free_port()

    def connect() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(PARTIAL % b"tcp")  # no LF, and the connection stays open
        return s

    _partial_frame_at_sigterm(tmp_path, f"tcp:{port}:interface=127.0.0.1", "tcp", connect)

"""``twistd -n syslogsrc`` against real clients, for what those clients found (issue "[2.0] What
real clients found"):

* a stamp with a negative UTC offset (``logger`` in America/New_York, ``-03:00`` over TCP, UDP
  and HTTP) must keep its offset, as ``syslogsrc-host`` does, and ``--time-zone -05:00`` must
  apply to stamps without one.

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
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_standalone import Twistd, _accepts, _free_port, _lines, _wait

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
            return [line for line in _lines(self.out) if line.get("PROGRAM") == program]

        assert _wait(lambda: len(found()) >= n), self.twistd.logtext()
        return found()

    def send_tcp(self, data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(data)

    def send_udp(self, data: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(data, ("127.0.0.1", self.port))


def _start(directory: Path, *args: str, http: bool = True) -> Server:
    port, http_port = _free_port(), _free_port()
    out = directory / "out.jsonl"
    listen = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    listen += ["--listen", f"udp:{port}:interface=127.0.0.1"]
    if http:
        listen += ["--listen", f"http:{http_port}:interface=127.0.0.1"]
    t = Twistd(directory, *listen, "--output", str(out), *args)
    assert _wait(lambda: _accepts(port) and (not http or _accepts(http_port))), t.logtext()
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

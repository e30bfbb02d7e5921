"""The rsyslog fixture (tests/rsyslog.py) against rsyslog itself: omrelp into a second rsyslogd's
imrelp, plain and TLS, every injected message arrives once with its fields. This is what the
RELP tests of our listener rely on: the omrelp config the fixture writes is one that a real RELP
receiver accepts.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from certs import Certs, make_certs
from rsyslog import (
    HOST,
    PID,
    PROGRAM,
    RFC3164,
    RFC5424,
    RsyslogError,
    RsyslogFactory,
    assert_each_once,
    imrelp_input,
    message_line,
    message_number,
    omfile_lines,
    omfwd_tcp,
    omfwd_udp,
    omrelp,
    parse_line,
    probe_rsyslog,
    require_rsyslog,
    rsyslog,  # noqa: F401 - the fixture
)

from syslogsrc import testing

N = 2000


@pytest.fixture
def pki(tmp_path: Path) -> Certs:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_certs(directory)


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.splitlines()


def _relp(
    rsyslog: RsyslogFactory,  # noqa: F811
    tmp_path: Path,
    tls: Certs | None,
    count: int = N,
    **options: int,
) -> None:
    port = testing.free_port()
    stored = tmp_path / "received.log"
    receiver = rsyslog.start_config(
        imrelp_input(port, tls=tls) + omfile_lines(stored), wait_ports=[port]
    )
    sender = rsyslog.start(omrelp(port, tls=tls, **options))
    sender.inject(count)
    sender.wait_sent(count)
    assert testing.wait_until(lambda: len(_lines(stored)) >= count, timeout=60), (
        f"{len(_lines(stored))} of {count} arrived\n{sender.stderr()}\n{receiver.stderr()}"
    )
    assert sender.stop() == 0, sender.stderr()
    assert receiver.stop() == 0, receiver.stderr()
    records = [parse_line(line) for line in _lines(stored)]
    assert_each_once((r["MESSAGE"] for r in records), count)
    assert {(r["HOST"], r["PROGRAM"], r["PID"]) for r in records} == {(HOST, PROGRAM, PID)}
    assert [message_number(r["MESSAGE"]) for r in records] == list(range(count))  # RELP keeps order


@pytest.mark.daemon
def test_omrelp_into_imrelp(rsyslog: RsyslogFactory, tmp_path: Path) -> None:  # noqa: F811
    _relp(rsyslog, tmp_path, None)


@pytest.mark.daemon
def test_omrelp_into_imrelp_over_tls(rsyslog: RsyslogFactory, tmp_path: Path, pki: Certs) -> None:  # noqa: F811
    _relp(rsyslog, tmp_path, pki)


@pytest.mark.daemon
def test_omrelp_window_size_and_timeout(rsyslog: RsyslogFactory, tmp_path: Path) -> None:  # noqa: F811
    # rsyslog to rsyslog, a full window costs ~0.2 s (a delayed TCP ACK): 4 frames in flight
    # move ~20 messages a second, so fewer messages here
    _relp(rsyslog, tmp_path, None, count=100, window_size=4, timeout=5)


@pytest.mark.daemon
def test_omrelp_refuses_a_receiver_from_another_ca(
    rsyslog: RsyslogFactory,  # noqa: F811
    tmp_path: Path,
    pki: Certs,
) -> None:
    """The TLS settings are not decoration: against a receiver whose certificate comes from
    another CA, omrelp suspends itself and nothing arrives (so the TLS test above did check
    the receiver's certificate)."""
    port = testing.free_port()
    stored = tmp_path / "received.log"
    other = tmp_path / "other-pki"
    other.mkdir()
    strangers = make_certs(other)
    receiver = rsyslog.start_config(
        imrelp_input(port, tls=strangers) + omfile_lines(stored), wait_ports=[port]
    )
    sender = rsyslog.start(omrelp(port, tls=pki))
    sender.inject(10)
    # omrelp says why ("certificate validation failed", and disables itself for a while)
    assert testing.wait_until(lambda: "certificate" in sender.stderr().lower()), sender.stderr()
    with pytest.raises(RsyslogError, match="did not send"):
        sender.wait_sent(1, timeout=3)
    assert _lines(stored) == []
    assert receiver.stop() == 0, receiver.stderr()


@pytest.mark.daemon
def test_a_config_error_fails_the_start_with_rsyslogs_reason(rsyslog: RsyslogFactory) -> None:  # noqa: F811
    with pytest.raises(RsyslogError, match="exited during start-up") as failed:
        rsyslog.start('action(type="omfwd" name="out" target="127.0.0.1" protocl="tcp")\n')
    assert "protocl" in failed.value.stderr


class _Capture:
    """A loopback TCP or UDP server keeping every byte it receives (one connection, or every
    datagram), on a thread, until :meth:`close`."""

    def __init__(self, kind: str) -> None:
        udp = kind == "udp"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.chunks: list[bytes] = []
        if not udp:
            self.sock.listen(1)
        self.thread = threading.Thread(target=self._datagrams if udp else self._stream)
        self.thread.start()

    def _stream(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            while chunk := conn.recv(65536):
                self.chunks.append(chunk)

    def _datagrams(self) -> None:
        while True:
            try:
                self.chunks.append(self.sock.recv(65536))
            except OSError:
                return

    def data(self) -> bytes:
        return b"".join(self.chunks)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


LINE_5424 = b"<14>1 2026-12-02T10:00:00.000001Z rshost rsapp 4242 - - rsyslog message %06d\n"
LINE_3164 = b"<14>Dec  2 10:00:00 rshost rsapp[4242]: rsyslog message %06d"
LINE_3164_FROM_5424 = b"<14>Dec  2 10:00:00 rshost rsapp[4242] rsyslog message %06d"

#: (transport, framing, template, injected as): what rsyslog sends for message n. Its RFC 5424
#: template ends with a LF of its own: kept in datagrams, counted in octet-counted frames, and
#: the only LF of a traditional frame.
WIRE = {
    ("tcp", "traditional", RFC3164, "rfc3164"): lambda n: LINE_3164 % n + b"\n",
    ("tcp", "traditional", RFC3164, "rfc5424"): lambda n: LINE_3164_FROM_5424 % n + b"\n",
    ("tcp", "traditional", RFC5424, "rfc5424"): lambda n: LINE_5424 % n,  # no second LF
    ("tcp", "octet-counted", RFC5424, "rfc5424"): lambda n: (
        b"%d " % len(LINE_5424 % n) + LINE_5424 % n
    ),
    ("udp", None, RFC3164, "rfc3164"): lambda n: LINE_3164 % n,
    ("udp", None, RFC5424, "rfc5424"): lambda n: LINE_5424 % n,
}


@pytest.mark.daemon
@pytest.mark.parametrize(("kind", "framing", "template", "syntax"), list(WIRE))
def test_what_omfwd_puts_on_the_wire(
    rsyslog: RsyslogFactory,  # noqa: F811
    kind: str,
    framing: str | None,
    template: str,
    syntax: str,
) -> None:
    """The exact bytes the helpers make rsyslog send: the frames the real-client tests feed our
    listeners, and the header fields those tests expect back."""
    capture = _Capture(kind)
    expected = [WIRE[kind, framing, template, syntax](n) for n in range(3)]
    try:
        if kind == "udp":
            action = omfwd_udp(capture.port, template=template)
        else:
            assert framing is not None
            action = omfwd_tcp(capture.port, framing=framing, template=template)
        sender = rsyslog.start(action)
        sender.inject(3, syntax=syntax)
        sender.wait_sent(3)
        assert sender.stop() == 0, sender.stderr()
        assert testing.wait_until(lambda: len(capture.data()) >= len(b"".join(expected))), (
            capture.data()
        )
    finally:
        capture.close()
    if kind == "udp":
        assert capture.chunks == expected
    else:
        assert capture.data() == b"".join(expected)


def test_the_injected_lines_are_what_the_fields_say() -> None:
    assert (
        message_line(7)
        == (
            f"<14>1 2026-12-02T10:00:00.000001Z {HOST} {PROGRAM} {PID} - - rsyslog message 000007"
        ).encode()
    )
    assert (
        message_line(7, "rfc3164")
        == (f"<14>Dec  2 10:00:00 {HOST} {PROGRAM}[{PID}]: rsyslog message 000007").encode()
    )
    with pytest.raises(ValueError, match="syntax"):
        message_line(7, "rfc3339")
    assert message_number(" rsyslog message 000007") == 7
    with pytest.raises(AssertionError):
        message_number("something else 7")
    with pytest.raises(AssertionError, match="missing"):
        assert_each_once(["rsyslog message 0", "rsyslog message 2"], 3)
    with pytest.raises(AssertionError, match="doubled"):
        assert_each_once(["rsyslog message 0", "rsyslog message 0", "rsyslog message 1"], 2)


def test_without_the_unpacked_rsyslog_a_test_skips_or_with_the_variable_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYSLOGSRC_RSYSLOG", str(tmp_path / "nothing-here"))
    probe_rsyslog.cache_clear()
    try:
        monkeypatch.delenv("SYSLOGSRC_REQUIRE_SYSLOG_NG", raising=False)
        with pytest.raises(pytest.skip.Exception, match="rsyslog-unpacked setup"):
            require_rsyslog()
        monkeypatch.setenv("SYSLOGSRC_REQUIRE_SYSLOG_NG", "1")
        with pytest.raises(pytest.fail.Exception, match="nothing-here"):
            require_rsyslog()
    finally:
        probe_rsyslog.cache_clear()  # the next test probes the real place again

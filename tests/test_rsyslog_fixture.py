"""The rsyslog fixture (tests/rsyslog.py) against rsyslog itself: omrelp into a second rsyslogd's
imrelp, plain and TLS, every injected message arrives once with its fields. This is what the
RELP tests of our listener rely on: the omrelp config the fixture writes is one that a real RELP
receiver accepts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from certs import Certs, make_certs
from rsyslog import (
    HOST,
    PID,
    PROGRAM,
    RsyslogError,
    RsyslogFactory,
    assert_each_once,
    imrelp_input,
    message_line,
    message_number,
    omfile_lines,
    omrelp,
    parse_line,
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


def test_the_injected_lines_are_what_the_fields_say() -> None:
    assert (
        message_line(7)
        == (
            f"<14>1 2026-12-02T10:00:00.000001Z {HOST} {PROGRAM} {PID} - - rsyslog message 000007"
        ).encode()
    )
    assert message_number(" rsyslog message 000007") == 7
    with pytest.raises(AssertionError):
        message_number("something else 7")
    with pytest.raises(AssertionError, match="missing"):
        assert_each_once(["rsyslog message 0", "rsyslog message 2"], 3)
    with pytest.raises(AssertionError, match="doubled"):
        assert_each_once(["rsyslog message 0", "rsyslog message 0", "rsyslog message 1"], 2)

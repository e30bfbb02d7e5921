"""The real rsyslog as a client of ``twistd syslogsrc`` and of ``SyslogSource`` inside the real
syslog-ng daemons: omfwd over TCP with LF framing and octet-counted (RFC 6587), UDP, and TLS
(GnuTLS, ``StreamDriver="gtls"``, with a client certificate the listener requires); omrelp into
our RELP listener, plain and TLS (``relp:`` / ``relps:``).

rsyslog is fed numbered messages (tests/rsyslog.py), in RFC 3164 as a local program hands them
over or in RFC 5424 as a relay receives them, and forwards them with its own templates:
``RSYSLOG_TraditionalForwardFormat`` (omfwd's default: RFC 3164 with a BSD stamp, and the TAG
``rsapp[4242]:``, or ``rsapp[4242]`` without a colon for what came in as RFC 5424) or
``RSYSLOG_SyslogProtocol23Format`` (RFC 5424, with a LF of its own at the end; the exact bytes
are pinned in tests/test_rsyslog_fixture.py). Every message must arrive once, with the HOST,
PROGRAM, PID and MESSAGE it was injected with: what rsyslog's templates put in a frame is what
we take out of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from certs import Certs, make_certs
from daemons import RunningDaemon
from integration import (
    JsonOutput,
    daemon_dir,  # noqa: F401 - a fixture
    one_source_config,
    stop_summary,
)
from rsyslog import (
    HOST,
    PID,
    PROGRAM,
    RFC3164,
    RFC5424,
    RsyslogFactory,
    assert_each_once,
    message_number,
    omfwd_tcp,
    omfwd_tls,
    omfwd_udp,
    omrelp,
    rsyslog,  # noqa: F401 - the fixture
)
from twistd_process import Twistd, json_lines

from syslogsrc import testing

pytestmark = pytest.mark.daemon

N = 2000  # messages per stream test
N_UDP = 500  # per UDP test: sent 0.5 ms apart, so a receiver that stalls for a moment loses none

TEMPLATES = {"rfc3164": RFC3164, "rfc5424": RFC5424}


def _action(transport: str, port: int, template: str, certs: Certs | None) -> str:
    if transport == "tcp-lf":
        return omfwd_tcp(port, framing="traditional", template=template)
    if transport == "tcp-octet":
        return omfwd_tcp(port, framing="octet-counted", template=template)
    if transport == "udp":
        return omfwd_udp(port, template=template, send_delay_us=500)
    if transport == "relp":
        return omrelp(port, template=template)
    assert certs is not None
    if transport == "relps":
        return omrelp(port, tls=certs, template=template)
    framing = "octet-counted" if transport == "tls-octet" else "traditional"
    return omfwd_tls(port, certs, framing=framing, template=template)


_TEXT = re.compile(r"rsyslog message \d{6}")


def _check(records: list[dict], count: int) -> None:
    """Each of the ``count`` injected messages once, all with the injected fields."""
    assert_each_once((r["MESSAGE"] for r in records), count)
    fields = {(r.get("HOST"), r.get("PROGRAM"), r.get("PID")) for r in records}
    assert fields == {(HOST, PROGRAM, PID)}
    # MESSAGE is the text alone: no header, no TAG, no leading space (RFC 3164's TAG: MSG),
    # no trailing LF (rsyslog's RFC 5424 template ends with one, in datagrams and counted in
    # octet-counted frames)
    odd = [r["MESSAGE"] for r in records if not _TEXT.fullmatch(r["MESSAGE"])]
    assert not odd, odd[:3]


def _send(rsyslog: RsyslogFactory, action: str, count: int, syntax: str) -> None:  # noqa: F811
    sender = rsyslog.start(action)
    sender.inject(count, syntax=syntax)
    sender.wait_sent(count)
    assert sender.stop() == 0, sender.stderr()


@pytest.fixture
def pki(tmp_path: Path) -> Certs:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_certs(directory)


# --- twistd syslogsrc -----------------------------------------------------------------------


def _twistd(directory: Path, pki: Certs) -> tuple[Twistd, Path, int, int]:
    """twistd with a TCP and a UDP listener on one port and a TLS listener (client certificates
    required) on another; returns (twistd, its output file, the port, the TLS port)."""
    port, tls_port = testing.free_port(), testing.free_port()
    out = directory / "out.jsonl"
    t = Twistd(
        directory,
        "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--listen", f"udp:{port}:interface=127.0.0.1",
        "--listen",
        f"ssl:{tls_port}:privateKey={pki.server_key}:certKey={pki.server_cert}:interface=127.0.0.1",
        "--tls-ca-file", str(pki.ca),
        "--tls-peer-verify", "required",
        "--output", str(out),
    )  # fmt: skip
    assert testing.wait_until(
        lambda: testing.accepts(port) and testing.accepts(tls_port), timeout=30
    ), t.logtext()
    return t, out, port, tls_port


def _case(transport: str, template: str, injected: str | None = None):
    """A test case: rsyslog forwards over ``transport`` with ``template`` what it was fed in
    ``injected`` (default: the template's own syntax). RFC 3164 in is what local programs hand
    rsyslog (``TAG[PID]: MSG``); RFC 5424 in and RFC 3164 out is a relay that forwards in the
    old format (rsyslog writes the TAG without a colon)."""
    injected = injected or template
    name = f"{transport}-{template}" + (f"-from-{injected}" if injected != template else "")
    return pytest.param(transport, template, injected, id=name)


TWISTD_CASES = [
    _case("tcp-lf", "rfc3164"),
    _case("tcp-lf", "rfc3164", "rfc5424"),
    _case("tcp-lf", "rfc5424"),
    _case("tcp-octet", "rfc3164"),
    _case("tcp-octet", "rfc5424"),
    _case("udp", "rfc3164"),
    _case("udp", "rfc5424"),
    _case("tls-lf", "rfc3164"),
    _case("tls-octet", "rfc5424"),
]


@pytest.mark.parametrize(("transport", "template", "injected"), TWISTD_CASES)
def test_rsyslog_omfwd_into_twistd(
    rsyslog: RsyslogFactory,  # noqa: F811
    tmp_path: Path,
    pki: Certs,
    transport: str,
    template: str,
    injected: str,
) -> None:
    t, out, port, tls_port = _twistd(tmp_path, pki)
    try:
        count = N_UDP if transport == "udp" else N
        target = tls_port if transport.startswith("tls") else port
        _send(rsyslog, _action(transport, target, TEMPLATES[template], pki), count, injected)
        assert testing.wait_until(lambda: len(json_lines(out)) >= count, timeout=60), (
            f"{len(json_lines(out))} of {count}\n{t.logtext()}"
        )
        assert t.stop(), t.logtext()
        records = json_lines(out)
        _check(records, count)
        if template == "rfc5424":
            # the fixed stamp rsyslog forwards, microseconds and all
            assert {r["ISODATE"] for r in records} == {"2026-12-02T10:00:00.000001+00:00"}
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


RELP_CASES = [
    pytest.param("relp", {}, N, id="relp"),
    pytest.param("relps", {}, N, id="relps"),
    # a window of 4 frames in flight: rsyslog waits ~0.2 s per full window, hence 100 messages
    pytest.param("relp", {"window_size": 4, "timeout": 5}, 100, id="relp-window-4"),
]


@pytest.mark.parametrize(("kind", "options", "count"), RELP_CASES)
def test_rsyslog_omrelp_into_twistd(
    rsyslog: RsyslogFactory,  # noqa: F811
    tmp_path: Path,
    pki: Certs,
    kind: str,
    options: dict[str, int],
    count: int,
) -> None:
    """omrelp into our RELP listener, plain and TLS (client certificate required): every
    message once, in order (RELP is one ordered stream), and each answered: rsyslog has nothing
    left to send when it stops."""
    port = testing.free_port()
    out = tmp_path / "out.jsonl"
    if kind == "relps":
        spec = (
            f"relps:{port}:privateKey={pki.server_key}:certKey={pki.server_cert}"
            ":interface=127.0.0.1"
        )
    else:
        spec = f"relp:{port}:interface=127.0.0.1"
    t = Twistd(
        tmp_path,
        "--listen", spec,
        "--tls-ca-file", str(pki.ca),
        "--tls-peer-verify", "required",
        "--output", str(out),
    )  # fmt: skip
    try:
        assert testing.wait_until(lambda: testing.accepts(port), timeout=30), t.logtext()
        action = omrelp(port, tls=pki if kind == "relps" else None, **options)
        _send(rsyslog, action, count, "rfc5424")
        assert testing.wait_until(lambda: len(json_lines(out)) >= count, timeout=60), (
            f"{len(json_lines(out))} of {count}\n{t.logtext()}"
        )
        assert t.stop(), t.logtext()
        records = json_lines(out)
        _check(records, count)
        assert [message_number(r["MESSAGE"]) for r in records] == list(range(count))
        assert {r["ISODATE"] for r in records} == {"2026-12-02T10:00:00.000001+00:00"}
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


# --- SyslogSource inside syslog-ng ------------------------------------------------------------


@pytest.fixture
def daemon_certs(daemon_dir) -> tuple[Certs, str]:  # noqa: F811 - the fixture imported above
    """A PKI the daemon reads (inside the chroot for the chroot's daemon) and rsyslog reads at
    its host path: (certs, the directory as the daemon sees it)."""
    host_dir, inner_dir = daemon_dir
    return make_certs(host_dir), inner_dir


def _daemon(
    syslog_ng, listen: str, options: dict[str, str] | None, port: int | tuple[str, int]
) -> RunningDaemon:
    return syslog_ng(one_source_config(listen, options), wait_ports=[port])


DAEMON_CASES = [
    _case("tcp-lf", "rfc3164"),
    _case("tcp-lf", "rfc3164", "rfc5424"),
    _case("tcp-octet", "rfc5424"),
    _case("udp", "rfc5424"),
    _case("tls-lf", "rfc3164"),
    _case("tls-octet", "rfc5424"),
    _case("relp", "rfc5424"),
    _case("relps", "rfc5424"),
]


@pytest.mark.parametrize(("transport", "template", "injected"), DAEMON_CASES)
def test_rsyslog_omfwd_into_syslogsource(
    syslog_ng,
    rsyslog: RsyslogFactory,  # noqa: F811
    daemon_certs: tuple[Certs, str],
    transport: str,
    template: str,
    injected: str,
) -> None:
    pki, inner = daemon_certs
    port = testing.free_port()
    options = None
    if transport.startswith("tls") or transport == "relps":
        kind = "relps" if transport == "relps" else "ssl"
        listen = (
            f"{kind}:{port}:privateKey={inner}/server.key:certKey={inner}/server.pem"
            ":interface=127.0.0.1"
        )
        options = {"tls-ca-file": f"{inner}/ca.pem", "tls-peer-verify": "required"}
    elif transport == "udp":
        port = testing.free_port("udp")
        listen = f"udp:{port}:interface=127.0.0.1"
    elif transport == "relp":
        listen = f"relp:{port}:interface=127.0.0.1"
    else:
        listen = f"tcp:{port}:interface=127.0.0.1"
    d = _daemon(syslog_ng, listen, options, ("udp", port) if transport == "udp" else port)
    out = JsonOutput(d.state_dir / "out.json")
    count = N_UDP if transport == "udp" else N
    _send(rsyslog, _action(transport, port, TEMPLATES[template], pki), count, injected)
    out.wait(count, timeout=60)
    assert d.stop() == 0
    records = out.records()
    _check(records, count)
    assert {r["TRANSPORT"] for r in records} == {transport.split("-")[0]}
    if template == "rfc5424":
        assert {r["ISODATE"] for r in records} == {"2026-12-02T10:00:00.000001+00:00"}
    summary = stop_summary(d.stderr(), listen)
    assert summary["received"] == summary["posted"] == count, summary
    assert summary["malformed"] == summary["dropped"] == 0, summary

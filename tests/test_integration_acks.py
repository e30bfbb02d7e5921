"""Acknowledgements from the real daemons' destinations (issue 2.5 items 2 and 3), in syslog-ng
3.38.1 and 4.8.1.

``SyslogSource`` with a RELP listener, or an HTTP listener with ``http-ack``, sets a
``BatchedAckTracker`` and answers a sender only once the destination acknowledged its messages
(syslogsrc/_acks.py). The destination here is :data:`GATED_DESTINATION`, a Python destination
that writes each message to its own file (the receiver) and returns from ``send()`` (which
acknowledges the message) only afterwards; while a "stall" file exists it holds the message,
and with ``delay`` it takes that long per message. With ``flags(flow-control)`` the source's
window fills behind it. A Python destination is used rather than ``network()`` to a receiver
that stops reading: the loopback socket buffers (megabytes, autotuned) would acknowledge tens of
thousands of messages before the stall showed, while this one stalls at the next message.

- HTTP in acknowledgement mode, with curl: requests answer ``200 stored`` while the destination
  is healthy, ``503 not-acknowledged`` after ``http-ack-timeout`` while it stalls, ``200`` again
  once it goes on; every message of every request answered 200 is at the receiver.
- RELP across reloads, with rsyslog's omrelp: the plain ``relp:`` connection is handed to the
  next instance at each reload, and messages posted and not acknowledged yet are answered by it
  (syslogsrc/_acks.py routes the acknowledgements); every message arrives exactly once.
- ``relps:`` (TLS) cannot hand its connection over: a reload closes it with the
  ``serverclose`` hint; rsyslog reconnects and sends again what was not answered: duplicates
  are allowed there, nothing may be missing.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import threading
import time

import pytest
from certs import Certs, make_certs
from daemons import RunningDaemon
from integration import (
    PRELUDE,
    curl_post,
    daemon_dir,  # noqa: F401 - a fixture
    log_path,
    stop_summary,
    syslogsrc_source,
)
from rsyslog import (
    RsyslogError,
    RsyslogFactory,
    message_number,
    omrelp,
    rsyslog,  # noqa: F401 - the fixture
)

from syslogsrc import testing

pytestmark = pytest.mark.daemon

#: A destination that writes MESSAGE to ``path`` (one line each, flushed) and acknowledges it
#: (returns from send()) only then; while the file ``stall`` exists it holds the message, and it
#: takes ``delay`` seconds per message. 3.38 takes any class; 4.x wants a LogDestination.
GATED_DESTINATION = """
python {
import os
import time

try:
    from syslogng import LogDestination as _Base
except ImportError:
    _Base = object


class Gated(_Base):
    def init(self, options):
        self.path = options["path"]
        self.stall = options["stall"]
        self.delay = float(options["delay"])
        self.out = open(self.path, "ab")
        return True

    def deinit(self):
        self.out.close()

    def send(self, msg):
        while os.path.exists(self.stall):
            time.sleep(0.02)
        if self.delay:
            time.sleep(self.delay)
        text = msg["MESSAGE"]
        if isinstance(text, str):
            text = text.encode()
        self.out.write(text + b"\\n")
        self.out.flush()
        return True
};
"""


def _gated(name: str, delay: float = 0.0) -> str:
    return (
        f"destination {name} {{ python(class(Gated) options("
        f'"path" "@STATE@/received.txt" "stall" "@STATE@/stall" "delay" "{delay}")); }};\n'
    )


def _received(d: RunningDaemon) -> list[str]:
    try:
        text = (d.state_dir / "received.txt").read_text(errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()


def _wait_received(d: RunningDaemon, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(lines := _received(d)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(lines)} of {count} at the receiver after {timeout}s")
        time.sleep(0.05)
    return lines


# --- HTTP in acknowledgement mode, the destination stalled ------------------------------------

ACK_TIMEOUT = 2  # http-ack-timeout, seconds
PER_REQUEST = 20  # messages per request
WINDOW = 100  # log-iw-size: the messages of 5 requests


def _body(request: int) -> bytes:
    return b"".join(
        b"<13>1 - h app - - - req %03d msg %02d\n" % (request, i) for i in range(PER_REQUEST)
    )


def _post(port: int, request: int) -> tuple[int, str]:
    return curl_post(f"http://127.0.0.1:{port}/", _body(request), timeout=ACK_TIMEOUT + 15)


def _status(text: str) -> str:
    return json.loads(text)["status"]


def test_http_ack_answers_503_while_the_destination_stalls_and_200_again_after(syslog_ng):
    """Healthy: 200 ``stored``. Stalled: the first requests (as many as fill the source's
    window of WINDOW messages) are posted and wait: 503 ``not-acknowledged`` after the
    timeout; once the window is full the daemon has suspended the source, and the next ones
    are answered 503 too (``flow-controlled`` at once, nothing posted). Going on: 200 again,
    and every message of every request answered 200 is at the receiver, once."""
    port = testing.free_port()
    listen = f"http:{port}:interface=127.0.0.1"
    options = {"http-ack": "yes", "http-ack-timeout": str(ACK_TIMEOUT)}
    config = (
        PRELUDE
        + GATED_DESTINATION
        + syslogsrc_source("s_src", listen, options, driver_options=f"log-iw-size({WINDOW})")
        + _gated("d_gated")
        + log_path(["s_src"], ["d_gated"], flags="flow-control")
    )
    d = syslog_ng(config, wait_ports=[port])
    stall = d.state_dir / "stall"
    answers: dict[int, tuple[int, str]] = {}
    request = 0

    def post_some(count: int) -> list[int]:
        nonlocal request
        numbers = list(range(request, request + count))
        request += count
        for n in numbers:
            answers[n] = _post(port, n)
        return numbers

    healthy = post_some(5)
    stall.touch()
    try:
        # one after the other: the window's worth is posted and waits for the destination
        within_window = post_some(WINDOW // PER_REQUEST)
        beyond = post_some(2)
        # and a few at once
        concurrent: dict[int, tuple[int, str]] = {}
        numbers = list(range(request, request + 3))
        request += 3
        threads = [
            threading.Thread(target=lambda n=n: concurrent.__setitem__(n, _post(port, n)))
            for n in numbers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(ACK_TIMEOUT + 20)
        answers.update(concurrent)
        beyond += numbers
    finally:
        stall.unlink(missing_ok=True)
    # the destination goes on, the window empties, the daemon wakes the source up
    health = f"http://127.0.0.1:{port}/health"
    assert testing.wait_until(lambda: _get_ok(health), timeout=30), "still paused"
    after = post_some(5)

    statuses = {n: (status, _status(text)) for n, (status, text) in answers.items()}
    assert {statuses[n] for n in healthy + after} == {(200, "stored")}, statuses
    assert {statuses[n] for n in within_window} == {(503, "not-acknowledged")}, statuses
    assert {statuses[n][0] for n in beyond} == {503}, statuses
    assert {s for _, s in (statuses[n] for n in beyond)} <= {"not-acknowledged", "flow-controlled"}

    ok = [n for n, (status, _) in statuses.items() if status == 200]
    expected = {f"req {n:03d} msg {i:02d}" for n in ok for i in range(PER_REQUEST)}
    stalled = within_window + beyond
    late_expected = {f"req {n:03d} msg {i:02d}" for n in within_window for i in range(PER_REQUEST)}
    # the messages of the requests answered not-acknowledged were posted: they reach the
    # receiver too, once the destination goes on (a client that retried would double them)
    deadline = time.monotonic() + 30
    while not (expected | late_expected) <= set(_received(d)) and time.monotonic() < deadline:
        time.sleep(0.1)
    got = collections.Counter(_received(d))
    missing = expected - set(got)
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    doubled = {k: v for k, v in got.items() if v > 1}
    assert not doubled, list(doubled.items())[:5]
    assert d.stop() == 0
    summary = stop_summary(d.stderr(), listen)
    late = sum(1 for n in stalled for i in range(PER_REQUEST) if f"req {n:03d} msg {i:02d}" in got)
    kinds = collections.Counter(statuses[n] for n in stalled)
    print(
        f"{syslog_ng.name}: http-ack-timeout {ACK_TIMEOUT}s, window {WINDOW}: {len(ok)} requests"
        f" answered 200 ({len(expected)} messages, all at the receiver, none twice);"
        f" {len(stalled)} during the stall: {dict(kinds)}; of their"
        f" {len(stalled) * PER_REQUEST} messages {late} reached the receiver after the stall;"
        f" listener {summary}"
    )


def _get_ok(url: str) -> bool:
    proc = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return proc.stdout.strip() == "200"


# --- RELP across reloads ----------------------------------------------------------------------

RELP_MESSAGES = 3000
RELOADS = 5
DELAY = 0.002  # seconds the destination takes per message: ~500 msg/s, so acks lag


def _relp_config(listen: str, options: dict[str, str] | None = None) -> str:
    return (
        PRELUDE
        + GATED_DESTINATION
        + syslogsrc_source("s_src", listen, options, driver_options="log-iw-size(1000)")
        + _gated("d_gated", DELAY)
        + log_path(["s_src"], ["d_gated"], flags="flow-control")
    )


_HANDED = re.compile(r"handed 1 listening socket\(s\), (\d+) connection\(s\)")
#: the hand-over's log line, with the RELP messages posted and not acknowledged (when any)
_HAND_OVER = re.compile(
    r"handed 1 listening socket\(s\), \d+ connection\(s\)[^;\n]*"
    r"(?:; (\d+) message\(s\) posted and not acknowledged)?",
    re.M,
)


def _reload_under_load(
    d: RunningDaemon, factory: RsyslogFactory, action: str
) -> tuple[list[str], dict, list[int], int | str]:
    """rsyslog sends RELP_MESSAGES with ``action`` while ``d`` reloads RELOADS times, spread over
    the sending; returns what the receiver got, rsyslog's counters of the action, and how many
    messages had reached the receiver at each reload."""
    sender = factory.start(action)
    sender.inject(RELP_MESSAGES)
    at_reload = []
    step = RELP_MESSAGES // (RELOADS + 1)
    for k in range(1, RELOADS + 1):
        _wait_received(d, k * step, timeout=40)
        at_reload.append(len(_received(d)))
        d.reload()
    counters = sender.wait_sent(RELP_MESSAGES, timeout=60)
    _wait_received(d, RELP_MESSAGES, timeout=40)
    counters = sender.stats().get("out", counters)
    # omrelp closes its session at the stop, and its close is answered only after every
    # frame before it: a frame never answered keeps rsyslogd from stopping
    try:
        stopped: int | str = sender.stop(timeout=25)
    except RsyslogError as e:
        stopped = str(e).splitlines()[0]
    # read after the stop: a frame is answered once the destination wrote its message, so
    # what rsyslogd sent is all there once it stopped cleanly (with relps the count above
    # includes the copies sent again, and can be reached before the last messages are in)
    return _received(d), counters, at_reload, stopped


def test_relp_across_reloads_every_message_exactly_once(
    syslog_ng,
    rsyslog: RsyslogFactory,  # noqa: F811
):
    port = testing.free_port()
    listen = f"relp:{port}:interface=127.0.0.1"
    d = syslog_ng(_relp_config(listen), wait_ports=[port])
    lines, counters, at_reload, stopped = _reload_under_load(d, rsyslog, omrelp(port))
    numbers = collections.Counter(message_number(line) for line in lines)
    doubled = {n: c for n, c in numbers.items() if c > 1}
    missing = sorted(set(range(RELP_MESSAGES)) - set(numbers))
    stderr = d.stderr()
    handed = [int(n) for n in _HANDED.findall(stderr)]
    awaiting = [int(n or 0) for n in _HAND_OVER.findall(stderr)]
    report = (
        f"{syslog_ng.name}: relp, {RELOADS} reloads (at {at_reload} received): {len(lines)}"
        f" lines, {len(numbers)} distinct, {len(doubled)} doubled, {len(missing)} missing;"
        f" connections handed over {handed}; posted and not acknowledged at each hand-over"
        f" {awaiting}; rsyslog out={counters}, stopped: {stopped}"
    )
    print(report)
    assert not doubled, f"{report}; doubled e.g. {sorted(doubled.items())[:5]}"
    assert not missing, f"{report}; missing e.g. {missing[:5]}"
    # the connection went on across every reload (omrelp did not reconnect)
    assert handed == [1] * RELOADS, report
    # the reloads found messages posted and not acknowledged, answered by the next instance
    assert len(awaiting) == RELOADS and sum(awaiting) > 0, report
    assert stopped == 0, report  # every frame answered
    assert d.stop() == 0


@pytest.fixture
def daemon_certs(daemon_dir) -> tuple[Certs, str]:  # noqa: F811 - the fixture imported above
    """A PKI the daemon reads (inside the chroot for the chroot's daemon) and rsyslog reads at
    its host path: (certs, the directory as the daemon sees it)."""
    host_dir, inner_dir = daemon_dir
    return make_certs(host_dir), inner_dir


def test_relps_across_reloads_is_closed_and_resent_nothing_missing(
    syslog_ng,
    rsyslog: RsyslogFactory,  # noqa: F811
    daemon_certs: tuple[Certs, str],
):
    """A TLS session lives in the old instance's OpenSSL objects: a reload closes the
    connection with the ``serverclose`` hint, and omrelp sends again, on a new connection,
    every frame it had no answer for. Those the old instance had posted arrive twice; none
    may be missing."""
    pki, inner = daemon_certs
    port = testing.free_port()
    listen = (
        f"relps:{port}:privateKey={inner}/server.key:certKey={inner}/server.pem:interface=127.0.0.1"
    )
    options = {"tls-ca-file": f"{inner}/ca.pem", "tls-peer-verify": "required"}
    d = syslog_ng(_relp_config(listen, options), wait_ports=[port])
    lines, counters, at_reload, stopped = _reload_under_load(d, rsyslog, omrelp(port, tls=pki))
    numbers = collections.Counter(message_number(line) for line in lines)
    doubled = {n: c for n, c in numbers.items() if c > 1}
    missing = sorted(set(range(RELP_MESSAGES)) - set(numbers))
    extra = sorted(set(numbers) - set(range(RELP_MESSAGES)))
    stderr = d.stderr()
    handed = [int(n) for n in _HANDED.findall(stderr)]
    report = (
        f"{syslog_ng.name}: relps, {RELOADS} reloads (at {at_reload} received): {len(lines)}"
        f" lines, {len(numbers)} distinct, {len(doubled)} doubled"
        f" ({sum(doubled.values()) - len(doubled)} extra copies), {len(missing)} missing;"
        f" connections handed over {handed}; rsyslog out={counters}, stopped: {stopped}"
    )
    print(report)
    assert not missing and not extra, f"{report}; missing e.g. {missing[:5]}"
    assert handed == [0] * RELOADS, report  # TLS connections are closed, never handed over
    assert stopped == 0, report  # every frame of the last connection answered
    assert d.stop() == 0

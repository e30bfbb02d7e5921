"""Flow control in the real daemons: a stalled destination pauses the sender, nothing is lost.

``flags(flow-control)`` and ``log-iw-size(100)``: the source may have 100 messages on their way
to the destinations. A Python destination that sleeps in its first ``send()`` for a few seconds
holds them, so the daemon suspends the source; our listener stops reading, the kernel's buffers
fill and loggen blocks. When the destination wakes up, everything flows again. 200 000 messages
over one TCP connection: each of loggen's sequence numbers must be in the file destination
exactly once.

What the daemon does wrong here without care: its ``wakeup()`` can be stale (a slot freed, then
taken again before the GIL lets wakeup() run), and a post after a stale wakeup is dropped with
"Incorrectly suspended source, dropping message". TwistedSource ignores the provably stale
wakeups and re-posts the few it cannot tell (syslogsrc/source.py, flow control); the test
counts those daemon errors and requires every message once.
"""

from __future__ import annotations

import time

from daemons import free_port
from integration import (
    MESSAGE_ONLY,
    PRELUDE,
    JsonOutput,
    assert_each_once,
    json_file,
    log_path,
    loggen_ids,
    loggen_popen,
    stop_summary,
    syslogsrc_source,
)

N = 200_000
WINDOW = 100
STALL = 3.0  # seconds the destination sleeps in its first send()

# 3.38 takes any class as a Python destination; 4.x wants a syslogng.LogDestination.
STALLING_DESTINATION = """
python {
import time

try:
    from syslogng import LogDestination as _Base
except ImportError:
    _Base = object


class Stall(_Base):
    def init(self, options):
        self.seconds = float(options["seconds"])
        self.until = None
        return True

    def send(self, msg):
        if self.until is None:
            self.until = time.monotonic() + self.seconds
        wait = self.until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return True
};
"""


def test_flow_control_loses_and_doubles_nothing(syslog_ng):
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    config = (
        PRELUDE
        + STALLING_DESTINATION
        + syslogsrc_source("s_src", listen, driver_options=f"log-iw-size({WINDOW})")
        + f'destination d_stall {{ python(class(Stall) options("seconds" "{STALL}")); }};\n'
        + json_file("d_json", "out.json", MESSAGE_ONLY)
        + log_path(["s_src"], ["d_stall", "d_json"], flags="flow-control")
    )
    d = syslog_ng(config, wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    started = time.monotonic()
    sender = loggen_popen(
        "-i", "-S", "-n", str(N), "-r", "1000000", "-I", "120", "127.0.0.1", str(port)
    )
    try:
        # stalled: the window's worth reaches the file, then nothing until the stall ends
        time.sleep(STALL * 0.6)
        assert sender.poll() is None, "loggen finished although the destination stalls"
        during_stall = out.count()
        assert 0 < during_stall <= WINDOW, during_stall
        out.wait(N, timeout=60)
        elapsed = time.monotonic() - started
        _, err = sender.communicate(timeout=30)
        assert sender.returncode == 0, err
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert out.settle(quiet=0.5) == N
    assert_each_once(loggen_ids(r["MESSAGE"] for r in out.records()), N)
    assert d.stop() == 0
    stderr = d.stderr()
    summary = stop_summary(stderr, listen)
    assert summary["received"] == summary["posted"] == N, summary
    assert summary["dropped"] == 0, summary
    reposted = stderr.count("Incorrectly suspended source, dropping message")
    print(
        f"{syslog_ng.name}: {N} messages through a {STALL}s stall in {elapsed:.1f}s;"
        f" {during_stall} written during the stall; {reposted} refused by the daemon and re-posted"
    )

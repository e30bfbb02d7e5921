"""Allow lists and rate limits of SyslogSource inside the real daemons (3.38.1, 4.8.1)."""

from __future__ import annotations

import socket
import time

from daemons import free_port
from integration import (
    MESSAGE_ONLY,
    JsonOutput,
    one_source_config,
    send_tcp,
    stop_summary,
)


def _config(listen: str) -> str:
    return one_source_config(listen, template=MESSAGE_ONLY)


def test_allow_list_in_the_daemon(syslog_ng):
    port = free_port()
    tcp = f"tcp:{port}:interface=127.0.0.1:allow=127.0.0.1/32,10.0.0.0/8"
    udp = f"udp:{port}:interface=127.0.0.1:allow=127.0.0.1"
    d = syslog_ng(_config(f"{tcp} {udp}"), wait_ports=[port, ("udp", port)])
    out = JsonOutput(d.state_dir / "out.json")
    send_tcp(port, [b"<13>t: from 127.0.0.1"], source_ip="127.0.0.1")
    try:
        send_tcp(port, [b"<13>t: from 127.0.0.2"], source_ip="127.0.0.2")
    except OSError:
        pass  # closed at once: the write may find it reset
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        s.sendto(b"<13>t: udp from 127.0.0.2", ("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"<13>t: udp from 127.0.0.1", ("127.0.0.1", port))
    records = out.wait(2)
    time.sleep(0.3)
    records = out.wait(2)
    assert sorted(r["MESSAGE"] for r in records) == ["from 127.0.0.1", "udp from 127.0.0.1"]
    assert d.stop() == 0
    assert stop_summary(d.stderr(), tcp)["denied"] == 1
    assert stop_summary(d.stderr(), udp)["denied"] == 1


def test_rate_limit_in_the_daemon(syslog_ng):
    port = free_port()
    rate, burst, n = 200, 20, 300
    tcp = f"tcp:{port}:interface=127.0.0.1:rate={rate}:burst={burst}"
    d = syslog_ng(_config(tcp), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    started = time.monotonic()
    send_tcp(port, [b"<13>t: m %d" % i for i in range(n)])
    records = out.wait(n, timeout=30)
    took = time.monotonic() - started
    assert [r["MESSAGE"] for r in records] == [f"m {i}" for i in range(n)]  # paused, not lost
    assert took >= 0.9 * (n - burst) / rate, took
    assert d.stop() == 0
    summary = stop_summary(d.stderr(), tcp)
    assert summary["received"] == summary["posted"] == n
    assert summary["rate_limited"] >= 1

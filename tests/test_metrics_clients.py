"""The metrics endpoint with real programs on both ends: ``twistd -n syslogsrc --metrics`` and
``SyslogSource`` inside the real daemons (``options("metrics" ...)``), loaded by loggen and
logger, scraped by curl, checked by ``promtool check metrics``; inside the daemon the endpoint
must serve again after reloads, with the daemon's descriptors flat."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from integration import JsonOutput, loggen, one_source_config
from prom import parse, promtool_check, value
from twistd_process import Twistd, json_lines

from syslogsrc.testing import accepts, free_port, wait_until

N = 500
N_UDP = 20


def curl_metrics(port: int, timeout: float = 10) -> str:
    """GET /metrics with curl, retried while the endpoint is not up yet."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            ["curl", "-sS", "--fail", "--max-time", "5", f"http://127.0.0.1:{port}/metrics"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return proc.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"curl /metrics on {port}: {proc.stderr}")
        time.sleep(0.1)


def _counter(text: str, field: str, listener: str, transport: str) -> float:
    return value(
        parse(text), f"syslogsrc_listener_{field}_total", listener=listener, transport=transport
    )


def test_twistd_metrics_count_loggen_and_logger(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    tcp = f"tcp:{port}:interface=127.0.0.1"
    udp = f"udp:{port}:interface=127.0.0.1"
    out = tmp_path / "out.jsonl"
    server = Twistd(
        tmp_path,
        "--listen",
        tcp,
        "--listen",
        udp,
        "--metrics",
        f"tcp:{mport}:interface=127.0.0.1",
        "--output",
        str(out),
    )
    try:
        assert wait_until(lambda: accepts(port) and accepts(mport)), server.log.read_text()
        proc = loggen("-i", "-S", "-n", str(N), "-r", "20000", "127.0.0.1", str(port))
        assert proc.returncode == 0, proc.stderr
        for i in range(N_UDP):
            subprocess.run(
                ["logger", "-n", "127.0.0.1", "-P", str(port), "-d", f"udp {i}"], check=True
            )
        assert wait_until(lambda: len(json_lines(out)) == N + N_UDP), len(json_lines(out))
        text = curl_metrics(mport)
        assert _counter(text, "received", tcp, "tcp") == N
        assert _counter(text, "posted", tcp, "tcp") == N
        assert _counter(text, "received", udp, "udp") == N_UDP
        assert _counter(text, "posted", udp, "udp") == N_UDP
        assert _counter(text, "dropped", tcp, "tcp") == 0
        assert _counter(text, "malformed", tcp, "tcp") == 0
        assert value(parse(text), "syslogsrc_source_suspended") == 0
        check = promtool_check(text)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        assert server.stop(), server.log.read_text()
    assert not accepts(mport)  # closed with the listeners


def _config(listen: str, metrics_port: int) -> str:
    return one_source_config(listen, {"metrics": f"tcp:{metrics_port}:interface=127.0.0.1"})


def test_daemon_metrics_count_loggen_and_serve_after_reloads(syslog_ng) -> None:
    port, mport = free_port(), free_port()
    tcp = f"tcp:{port}:interface=127.0.0.1"
    d = syslog_ng(_config(tcp, mport), wait_ports=[port, mport])
    out = JsonOutput(d.state_dir / "out.json")
    proc = loggen("-i", "-S", "-n", str(N), "-r", "20000", "127.0.0.1", str(port))
    assert proc.returncode == 0, proc.stderr
    out.wait(N)
    text = curl_metrics(mport)
    assert _counter(text, "received", tcp, "tcp") == N
    assert _counter(text, "posted", tcp, "tcp") == N
    assert _counter(text, "dropped", tcp, "tcp") == 0
    assert _counter(text, "bytes", tcp, "tcp") > 0
    check = promtool_check(text)
    assert check.returncode == 0, check.stdout + check.stderr

    fds = []
    for i in range(1, 4):
        d.reload()  # a new SyslogSource instance in the same process, new counters
        more = 10 * i
        curl_metrics(mport)  # listening again: the endpoint starts after the listeners
        proc = loggen("-i", "-S", "-n", str(more), "127.0.0.1", str(port))
        assert proc.returncode == 0, proc.stderr
        out.wait(N + sum(10 * k for k in range(1, i + 1)))
        text = curl_metrics(mport)
        assert _counter(text, "received", tcp, "tcp") == more, (syslog_ng.name, i)
        assert _counter(text, "posted", tcp, "tcp") == more
        fds.append(d.fds())
    assert fds[-1] - fds[0] <= 2, fds
    assert d.stop() == 0
    assert not accepts(mport)
    print(f"{syslog_ng.name}: metrics after 3 reloads; daemon fds {fds}")

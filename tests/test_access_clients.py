"""Allow lists and rate limits against real clients on loopback, through ``twistd -n syslogsrc``.

Senders are told apart by their source address: 127.0.0.1 is allowed, 127.0.0.2 (any
127.x.y.z is loopback on Linux) is not. ``logger`` cannot bind, so the denied senders are Python
sockets bound to 127.0.0.2, and ``curl --interface 127.0.0.2``.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from twistd_process import Twistd, json_lines

from syslogsrc.testing import accepts, free_port, has_ipv6, wait_until

LOGGER = shutil.which("logger")
CURL = shutil.which("curl")


def _stats(log: str, listener: str) -> dict[str, int]:
    """The counters of the last summary line of ``listener`` in twistd's log."""
    found: dict[str, int] = {}
    for m in re.finditer(r"summary (\S+): (.*)", log):
        if m.group(1) == listener:
            found = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    assert found, f"no summary of {listener}:\n{log}"
    return found


def _messages(out: Path) -> list[str]:
    return [line.get("MESSAGE", "") for line in json_lines(out)]


def _tcp_from(source: str, port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Connect from ``source``, send ``data``, return what the server sent before closing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect((host, port))
        try:
            s.sendall(data)
            return s.recv(100)  # b"" once the server closes
        except ConnectionResetError:
            return b""


def _udp_from(source: str, port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(data, ("127.0.0.1", port))


def _curl(url: str, body: bytes, *extra: str) -> tuple[int, dict[str, str]]:
    proc = subprocess.run(
        [
            CURL or "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--max-time",
            "10",
            *extra,
            "--data-binary",
            "@-",
            url,
        ],
        input=body,
        capture_output=True,
        timeout=20,
        check=True,
    )
    lines = proc.stdout.decode("latin-1").splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers


@pytest.mark.skipif(LOGGER is None or CURL is None, reason="needs logger and curl")
def test_allow_lists_with_real_clients(tmp_path: Path) -> None:
    tcp, http, proxy, tcp6 = free_port(), free_port(), free_port(), free_port()
    out = tmp_path / "out.jsonl"
    allow = "allow=127.0.0.1/32"
    listeners = {
        "tcp": f"tcp:{tcp}:interface=127.0.0.1:{allow}",
        "udp": f"udp:{tcp}:interface=127.0.0.1:{allow}",
        "http": f"http:{http}:interface=127.0.0.1:{allow}",
        "proxy": f"haproxy:tcp:{proxy}:interface=127.0.0.1:allow=203.0.113.0/24",
    }
    ipv6 = has_ipv6()
    if ipv6:  # ::1 allowed on one listener; on another, only 10/8, which ::1 is not
        listeners["tcp6"] = f"tcp6:{tcp6}:interface=\\:\\:1:allow=10.0.0.0/8,\\:\\:1"
        tcp6_denied = free_port()
        listeners["tcp6-denied"] = f"tcp6:{tcp6_denied}:interface=\\:\\:1:allow=10.0.0.0/8"
    args = [a for spec in listeners.values() for a in ("--listen", spec)]
    t = Twistd(tmp_path, *args, "--output", str(out))
    try:
        assert wait_until(lambda: accepts(tcp) and accepts(http) and accepts(proxy)), t.logtext()

        # TCP: logger from 127.0.0.1 gets in; a client from 127.0.0.2 is closed at once
        subprocess.run([LOGGER, "-n", "127.0.0.1", "-P", str(tcp), "-T", "tcp-allowed"], check=True)
        assert _tcp_from("127.0.0.2", tcp, b"<13>t: tcp-denied\n") == b""
        # UDP: the same
        subprocess.run([LOGGER, "-n", "127.0.0.1", "-P", str(tcp), "-d", "udp-allowed"], check=True)
        for _ in range(3):
            _udp_from("127.0.0.2", tcp, b"<13>t: udp-denied")
        # HTTP: 403 for 127.0.0.2, for every path
        url = f"http://127.0.0.1:{http}/"
        assert _curl(url, b"<13>t: http-denied", "--interface", "127.0.0.2")[0] == 403
        assert _curl(url + "health", b"", "--interface", "127.0.0.2", "-X", "GET")[0] == 403
        assert _curl(url, b"<13>t: http-allowed", "--interface", "127.0.0.1")[0] == 200
        # behind haproxy: the header's address is what counts, not the proxy's
        header = b"PROXY TCP4 %s 127.0.0.1 40000 514\r\n"
        assert (
            _tcp_from("127.0.0.1", proxy, header % b"192.0.2.9" + b"<13>t: proxy-denied\n") == b""
        )
        with socket.create_connection(("127.0.0.1", proxy)) as s:
            s.sendall(header % b"203.0.113.5" + b"<13>t: proxy-allowed\n")
        if ipv6:
            subprocess.run([LOGGER, "-n", "::1", "-P", str(tcp6), "-T", "tcp6-allowed"], check=True)
            assert _tcp_from("::1", tcp6_denied, b"<13>t: tcp6-denied\n", host="::1") == b""

        allowed = {"tcp-allowed", "udp-allowed", "http-allowed", "proxy-allowed"}
        if ipv6:
            allowed.add("tcp6-allowed")

        def arrived() -> bool:
            return all(any(m.endswith(a) for m in _messages(out)) for a in allowed)

        assert wait_until(arrived), (_messages(out), t.logtext())
        time.sleep(0.3)  # anything denied would have arrived by now too
        assert not [m for m in _messages(out) if "denied" in m]
    finally:
        assert t.stop(), t.logtext()
    log = t.logtext()
    assert _stats(log, listeners["tcp"])["denied"] == 1
    assert _stats(log, listeners["udp"])["denied"] == 3
    assert _stats(log, listeners["http"])["denied"] == 2
    assert _stats(log, listeners["proxy"])["denied"] == 1
    if ipv6:
        assert _stats(log, listeners["tcp6-denied"])["denied"] == 1
        assert _stats(log, listeners["tcp6"])["denied"] == 0
    # logged once per cause per interval, saying the list and the sender
    assert re.search(r"denied 1 connection\(s\) from outside allow\(127.0.0.1/32\)", log)
    assert "last from 127.0.0.2" in log


@pytest.mark.skipif(CURL is None, reason="needs curl")
def test_rate_limits_with_real_clients(tmp_path: Path) -> None:
    tcp, http = free_port(), free_port()
    out = tmp_path / "out.jsonl"
    rate, burst, n = 200, 50, 450
    listeners = {
        "tcp": f"tcp:{tcp}:interface=127.0.0.1:rate={rate}:burst={burst}",
        "udp": f"udp:{tcp}:interface=127.0.0.1:rate=5:burst=5",
        "http": f"http:{http}:interface=127.0.0.1:rate=1",
    }
    args = [a for spec in listeners.values() for a in ("--listen", spec)]
    t = Twistd(tmp_path, *args, "--output", str(out))
    try:
        assert wait_until(lambda: accepts(tcp) and accepts(http)), t.logtext()
        # TCP: n messages sent at once all arrive, paced: at least (n - burst) / rate seconds
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            s.sendall(b"".join(b"<13>t: tcp %d\n" % i for i in range(n)))

        def tcp_done() -> bool:
            return sum(m.startswith("tcp ") for m in _messages(out)) >= n

        assert wait_until(tcp_done, timeout=30), t.logtext()
        took = time.monotonic() - started
        assert took >= 0.9 * (n - burst) / rate, took
        tcp_messages = [m for m in _messages(out) if m.startswith("tcp ")]
        assert tcp_messages == [f"tcp {i}" for i in range(n)]  # all, once, in order

        # UDP: 50 datagrams at once: the burst gets in, the rest is dropped and counted
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(50):
                s.sendto(b"<13>t: udp %d" % i, ("127.0.0.1", tcp))
        assert wait_until(lambda: sum(m.startswith("udp ") for m in _messages(out)) >= 5)

        # HTTP: one message a second: the second request at once is told when to come back
        url = f"http://127.0.0.1:{http}/"
        assert _curl(url, b"<13>t: http 1")[0] == 200
        code, headers = _curl(url, b"<13>t: http 2")
        assert code == 429 and int(headers["retry-after"]) >= 1
    finally:
        assert t.stop(), t.logtext()
    log = t.logtext()
    tcp_stats = _stats(log, listeners["tcp"])
    assert tcp_stats["received"] == tcp_stats["posted"] == n
    assert tcp_stats["rate_limited"] >= 1 and tcp_stats["dropped"] == 0
    udp_stats = _stats(log, listeners["udp"])
    assert udp_stats["received"] + udp_stats["rate_limited"] == 50
    assert udp_stats["received"] <= 6  # the burst, perhaps one token refilled meanwhile
    assert _stats(log, listeners["http"])["rate_limited"] == 1
    assert "answered 429" in log

"""Connections that connect and never send cannot lock a listener: at max-connections the
longest-open one that completed no message in FIRST_MESSAGE_GRACE seconds makes room for a
newcomer. 300 silent connections, then a well-behaved sender: in twistd and in both daemons.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemons import free_port
from integration import PRELUDE, JsonOutput, json_file, log_path, syslogsrc_source

from syslogsrc.protocols._tracking import FIRST_MESSAGE_GRACE
from syslogsrc.testing import accepts, wait_until

ROOT = Path(__file__).resolve().parent.parent
SILENT = 300
GOOD = 5000


@contextlib.contextmanager
def _silent_connections(port: int, count: int = SILENT) -> Iterator[list[socket.socket]]:
    """``count`` connections that send nothing (the ones beyond max-connections are refused
    and closed by the listener; they are kept open on this side all the same)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            sockets.append(s)
        yield sockets
    finally:
        for s in sockets:
            s.close()


def _well_behaved(port: int, tag: str, count: int = GOOD) -> float:
    """Connect (retrying while refused), send ``count`` LF-framed messages; the seconds it took
    to be let in."""
    start = time.monotonic()
    while True:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"<13>Nov 24 06:00:00 good app: %s-first\n" % tag.encode())
        s.settimeout(0.3)
        try:
            if s.recv(1) == b"":  # refused: closed at once
                s.close()
                time.sleep(0.2)
                continue
        except TimeoutError:
            pass  # still open: let in
        waited = time.monotonic() - start
        s.settimeout(10)
        s.sendall(
            b"".join(
                b"<13>Nov 24 06:00:00 good app: %s-%d\n" % (tag.encode(), i) for i in range(count)
            )
        )
        s.close()
        return waited


def _lines_with(path: Path, tag: str) -> int:
    try:
        return path.read_bytes().count(f"{tag}-".encode())
    except FileNotFoundError:
        return 0


def test_silent_connections_do_not_lock_out_twistd(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out.jsonl"
    log = tmp_path / "twistd.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "-l", str(log), "syslogsrc", "--listen",
         f"tcp:{port}:interface=127.0.0.1", "--output", str(out)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert wait_until(
            lambda: (log.exists() and "Site starting" in log.read_text()) or accepts(port),
            timeout=30,
        )
        with _silent_connections(port):
            time.sleep(FIRST_MESSAGE_GRACE + 0.5)
            waited = _well_behaved(port, "twistd")
            assert wait_until(lambda: _lines_with(out, "twistd") == GOOD + 1, timeout=30), (
                _lines_with(out, "twistd")
            )
        assert waited < 5, waited
        text = log.read_text()
        assert "to let a new one in" in text, text[-2000:]
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.daemon
def test_silent_connections_do_not_lock_out_the_daemon(syslog_ng) -> None:
    port = free_port()
    config = (
        PRELUDE
        + syslogsrc_source("s_src", f"tcp:{port}:interface=127.0.0.1")
        + json_file("d_json", "out.json")
        + log_path(["s_src"], ["d_json"])
    )
    d = syslog_ng(config, wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    with _silent_connections(port):
        time.sleep(FIRST_MESSAGE_GRACE + 0.5)
        waited = _well_behaved(port, "daemon")
        out.wait(GOOD + 1, timeout=30)
    assert waited < 5, waited
    assert "to let a new one in" in d.stderr()

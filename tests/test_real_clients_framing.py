"""Framing as real clients send it: Python's ``logging.handlers.SysLogHandler`` over TCP and a
unix stream socket, into ``twistd -n syslogsrc`` with the default framing (auto).

SysLogHandler ends every message with NUL (``append_nul=True``, its default) and sends no LF, so
a stream of its messages is ``<PRI>msg\\0<PRI>msg\\0...``. syslog-ng's ``network()`` ends a
non-transparent frame at LF or NUL; so must ``auto``, or the messages come out glued together.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from twistd_process import Twistd

from syslogsrc.testing import accepts, free_port, wait_until

COUNT = 100


@pytest.fixture
def twistd(tmp_path: Path) -> Iterator[list[Twistd]]:
    started: list[Twistd] = []
    yield started
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


def _log_through(handler: logging.Handler, tag: str) -> None:
    logger = logging.Logger(f"real-client-{tag}")  # not registered: no global state touched
    handler.setFormatter(logging.Formatter("pyapp: %(message)s"))
    logger.addHandler(handler)
    try:
        for i in range(COUNT):
            logger.warning("%s message %d", tag, i)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _check_output(out: Path, t: Twistd, tag: str) -> None:
    raw = out.read_bytes() if out.exists() else b""
    assert b"\0" not in raw and b"\\u0000" not in raw, raw[:300]
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert len(records) == COUNT, (len(records), records[:3], t.logtext())
    messages = sorted(r["MESSAGE"] for r in records)
    assert messages == sorted(f"{tag} message {i}" for i in range(COUNT))
    assert all(r["PROGRAM"] == "pyapp" for r in records)


def _unix_socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def test_python_syslog_handler_over_tcp_one_record_per_message(
    twistd: list[Twistd], tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "out.jsonl"
    listen = f"tcp:{port}:interface=127.0.0.1"
    t = Twistd(tmp_path, "--listen", listen, "--output", str(out))
    twistd.append(t)
    assert wait_until(lambda: accepts(port)), t.logtext()
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", port), socktype=socket.SOCK_STREAM
    )
    _log_through(handler, "tcp")
    wait_until(lambda: out.exists() and len(out.read_bytes().splitlines()) >= COUNT, timeout=10)
    assert t.stop(), t.logtext()
    _check_output(out, t, "tcp")
    assert f"summary {listen}: received={COUNT}" in t.logtext()


def test_python_syslog_handler_over_a_unix_stream_socket_one_record_per_message(
    twistd: list[Twistd], tmp_path: Path
) -> None:
    path = tmp_path / "log.sock"
    out = tmp_path / "out.jsonl"
    t = Twistd(tmp_path, "--listen", f"unix:{path}", "--output", str(out))
    twistd.append(t)
    assert wait_until(lambda: path.exists() and _unix_socket_accepts(path)), t.logtext()
    handler = logging.handlers.SysLogHandler(address=str(path), socktype=socket.SOCK_STREAM)
    _log_through(handler, "unix")
    wait_until(lambda: out.exists() and len(out.read_bytes().splitlines()) >= COUNT, timeout=10)
    assert t.stop(), t.logtext()
    _check_output(out, t, "unix")

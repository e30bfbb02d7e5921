"""Faults: the output stalls and recovers, reloads under load, SIGTERM at peak load, an exception
in a callback of ``run()``'s reactor. Fast versions here (a 2 s stall, a few reloads); the long
ones are ``tests/soak/stall_30s.py`` and ``tests/soak/reload_100.py`` (docs/reliability.md).

What must hold: TCP loses nothing (every message the sender wrote arrives, in order, once);
HTTP answers 503 while the source is suspended and 200 afterwards, and a message answered 200
arrives exactly once; a reload or a stop delivers everything the source had accepted; an
exception in the reactor is logged and serving goes on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from test_hostile_http import GoodHTTPSender, post
from test_hostile_streams import (
    WAIT,
    CountingOutput,
    DaemonCase,
    GoodSender,
    Hostile,
    daemon_config,
)

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# the output stalls, then recovers


# ---------------------------------------------------------------------------------------------
# a listener that cannot listen


def test_a_listener_that_cannot_listen_does_not_keep_the_others_from_serving() -> None:
    # Before the fix a listener failing at once (a UDP port in use) was removed from the list
    # being started, and the next one was skipped: "udp:514 tcp:5514" with 514 taken never
    # listened on TCP.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with Hostile(f"udp:{port}:interface=127.0.0.1", "tcp:0:interface=127.0.0.1",
                     "udp:0:interface=127.0.0.1") as h:  # fmt: skip
            assert [lst.name for lst in h.listeners] == [
                "tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"
            ]
            good = GoodSender(h, "survivor", count=20)
            good.start()
            good.check()
            assert len(h.logs.matching(rf"cannot listen on udp:{port}")) == 1


# ---------------------------------------------------------------------------------------------
# reloads under load


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Flood(threading.Thread):
    """Sends LF-framed messages as fast as it can, reconnecting when a reload closes the
    connection; counts what ``sendall`` accepted (``written``) and what may have been in flight
    when a connection broke (the last ``sendall`` that failed)."""

    def __init__(self, port_of: Any, tag: str) -> None:
        super().__init__(daemon=True)
        self.port_of, self.tag = port_of, tag
        self.stop_event = threading.Event()
        self.written = 0
        self.broken = 0

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port_of()), timeout=5) as s:
                    while not self.stop_event.is_set():
                        s.sendall(b"<13>Nov 24 06:00:00 good app: good-%s-%d\n" % (self.tag.encode(), i))
                        i += 1
                        self.written = i
            except OSError:
                self.broken += 1
                time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# SIGTERM at peak load

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


_SENDER = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
line = b"<13>Nov 24 06:00:00 h app: m%d\n"
with socket.create_connection(("127.0.0.1", port)) as s:
    try:
        for start in range(0, n, 1000):
            s.sendall(b"".join(line % i for i in range(start, min(n, start + 1000))))
    except OSError:
        pass
"""


# ---------------------------------------------------------------------------------------------
# an exception in a callback of run()'s reactor


_EXPLODING = '''
python {
from syslogsrc import SyslogSource

class ExplodingSource(SyslogSource):
    """Raises from build_message for frames saying "explode", and from a timer of the
    reactor every 0.2 s."""

    def listeners(self, reactor):
        def boom():
            reactor.callLater(0.2, boom)
            raise RuntimeError("boom in a reactor callback")
        reactor.callLater(0.2, boom)
        return super().listeners(reactor)

    def build_message(self, frame, origin, format=None, extra=None):
        if b"explode" in frame:
            raise ValueError("cannot build this one")
        return super().build_message(frame, origin, format, extra)
};
'''

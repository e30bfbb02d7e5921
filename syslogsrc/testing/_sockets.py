"""Real loopback sockets in tests: ports, readiness, TLS clients (:mod:`syslogsrc.testing`)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

#: Seconds the helpers below wait for a network event at most (a limit for a loaded machine,
#: not an expectation).
WAIT = 15.0


def free_port(kind: str = "tcp", host: str = "127.0.0.1") -> int:
    """A port free for ``kind`` ("tcp" or "udp") on ``host`` now (another process may take it
    before the test does: bind at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(family, sock_type) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def has_ipv6() -> bool:
    """True when a socket can be bound on the IPv6 loopback ``::1`` (containers and CI runners
    often have IPv6 turned off): mark IPv6 tests with
    ``pytest.mark.skipif(not has_ipv6(), reason="no IPv6 on ::1")``."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host``:``port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last
    value as a bool. Bound every wait in a test by what a loaded machine needs, not a quiet
    one: the timeout is a limit, not an expectation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Wait until the server closes ``s`` (EOF or reset), reading and discarding what it
    sends; True if it did within ``timeout`` seconds."""
    s.settimeout(timeout)
    try:
        while True:
            if s.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def tls_connect(
    port: int,
    ca: str,
    cert: str | None = None,
    key: str | None = None,
    *,
    host: str = "127.0.0.1",
    server_hostname: str = "localhost",
) -> ssl.SSLSocket:
    """A TLS connection to ``host``:``port`` that trusts the CA file ``ca`` and presents the
    client certificate ``cert`` (with ``key``) when given; the handshake is done."""
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    raw = socket.create_connection((host, port), timeout=WAIT)
    return context.wrap_socket(raw, server_hostname=server_hostname)


#: Frames with invalid UTF-8 and NUL bytes in every field, which a receiver must deliver byte
#: for byte (as syslog-ng does): a message is bytes, not text.

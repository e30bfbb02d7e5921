"""Certificate rotation inside the real daemons (3.38 and 4.8).

- ``syslog-ng-ctl reload``: the reload makes a new source instance whose listeners read the TLS
  files when they are made, so new connections get the rotated certificate. (The listening
  socket is handed to the new instance; TLS connections are closed, their sessions cannot be.)
- ``tls-reload-interval``: without any reload, a rotated certificate is taken for new
  connections, and a connection made before it goes on delivering.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

from certs import make_certs, reissue_server
from cryptography import x509
from daemons import free_port
from integration import (
    JsonOutput,
    daemon_dir,  # noqa: F401 - a fixture
    one_source_config,
    tls_client,
)


def _serial(s: ssl.SSLSocket) -> int:
    der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _new_connection_serial(port: int, ca: Path, wanted: int, timeout: float = 20) -> int:
    """Connect until a new connection gets the certificate ``wanted`` (or time runs out); send
    one line on it. Returns the serial last seen."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        try:
            with tls_client(port, ca) as s:
                seen = _serial(s)
                if seen == wanted:
                    s.sendall(b"<13>1 - h app - - - new connection, new certificate\n")
                    s.unwrap()
                    return seen
        except (OSError, ssl.SSLError):
            pass  # the reload's new instance is not listening yet
        time.sleep(0.1)
    return seen


def _start(syslog_ng, daemon_dir, extra: dict[str, str]):  # noqa: F811 - the fixture
    host_dir, inner = daemon_dir
    pki = make_certs(host_dir)
    port = free_port()
    listen = f"ssl:{port}:interface=127.0.0.1"
    options = {"tls-key-file": f"{inner}/server.key", "tls-cert-file": f"{inner}/server.pem"}
    d = syslog_ng(one_source_config(listen, {**options, **extra}), wait_ports=[port])
    return d, pki, port, JsonOutput(d.state_dir / "out.json")


def test_daemon_reload_takes_a_rotated_certificate(syslog_ng, daemon_dir):  # noqa: F811
    d, pki, port, out = _start(syslog_ng, daemon_dir, {})
    with tls_client(port, pki.ca) as s:
        first = _serial(s)
        s.sendall(b"<13>1 - h app - - - before the rotation\n")
        s.unwrap()
    out.wait(1)

    second = reissue_server(pki).serial_number
    assert second != first
    d.reload()
    assert _new_connection_serial(port, pki.ca, second) == second
    records = out.wait(2)
    assert [r["MESSAGE"] for r in records] == [
        "before the rotation",
        "new connection, new certificate",
    ]

    # a broken certificate file, then a reload: the new instance keeps what the previous took
    errors = d.stderr().count("not reloaded")
    pki.server_cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ntruncated")
    d.reload()
    assert _new_connection_serial(port, pki.ca, second) == second
    out.wait(3)
    lines = [x for x in d.stderr().splitlines() if "not reloaded" in x]
    assert len(lines) == errors + 1, d.stderr()
    inner = daemon_dir[1]
    assert f"option tls-cert-file('{inner}/server.pem')" in lines[-1], lines[-1]
    assert d.stop() == 0


def test_tls_reload_interval_keeps_established_connections(syslog_ng, daemon_dir):  # noqa: F811
    d, pki, port, out = _start(syslog_ng, daemon_dir, {"tls-reload-interval": "0.2"})
    first = 0
    with tls_client(port, pki.ca) as kept:
        first = _serial(kept)
        kept.sendall(b"<13>1 - h app - - - kept, before\n")
        out.wait(1)

        second = reissue_server(pki).serial_number
        assert _new_connection_serial(port, pki.ca, second) == second
        out.wait(2)
        kept.sendall(b"<13>1 - h app - - - kept, after\n")
        records = out.wait(3)
        try:
            kept.unwrap()
        except (ssl.SSLError, OSError):
            pass
    assert first != second
    assert [r["MESSAGE"] for r in records] == [
        "kept, before",
        "new connection, new certificate",
        "kept, after",
    ]
    line = d.wait_for_stderr("TLS files reloaded")
    assert f"serial {second:#x}" in line, line
    assert d.stop() == 0

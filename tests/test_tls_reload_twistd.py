"""Certificate rotation in ``twistd -n syslogsrc``: SIGHUP re-reads the TLS files.

Real clients on loopback: ``openssl s_client`` tells which certificate a new connection gets;
Python's ssl keeps a connection open across the reload and sends on it afterwards; messages are
checked in the JSON lines twistd writes.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import pytest
from certs import Certs, make_certs, reissue_server
from cryptography import x509
from integration import tls_client
from twistd_process import json_lines, twistd  # noqa: F401 - fixture

from syslogsrc.testing import accepts, free_port, wait_until

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl command")


def s_client_serial(port: int, ca: Path) -> int:
    """The serial of the certificate a new connection gets, as ``openssl s_client`` sees it
    (verified against ``ca``)."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-CAfile", str(ca), "-verify_return_error"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    out = proc.stdout
    begin, end = out.find(b"-----BEGIN CERTIFICATE-----"), out.find(b"-----END CERTIFICATE-----")
    assert proc.returncode == 0 and begin >= 0, (proc.returncode, out[-2000:], proc.stderr)
    return x509.load_pem_x509_certificate(out[begin : end + 25]).serial_number


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def messages(out: Path) -> list[str]:
    return [r["MESSAGE"] for r in json_lines(out)]


def hup_and_wait(t, text: str, times: int) -> None:
    t.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: t.logtext().count(text) >= times), t.logtext()


def test_sighup_rotates_the_certificate_for_new_connections(
    twistd,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    certs: Certs = make_certs(tmp_path)
    port = free_port()
    out = tmp_path / "out.jsonl"
    t = twistd(
        "--listen", f"ssl:{port}:interface=127.0.0.1",
        "--tls-key-file", str(certs.server_key), "--tls-cert-file", str(certs.server_cert),
        "--output", str(out),
    )  # fmt: skip
    assert wait_until(lambda: accepts(port)), t.logtext()
    first = serial_of(certs.server_cert)
    assert s_client_serial(port, certs.ca) == first

    with tls_client(port, certs.ca) as kept:
        kept.sendall(b"<13>1 - h app - - - before the rotation\n")
        assert wait_until(lambda: messages(out) == ["before the rotation"])
        assert x509.load_der_x509_certificate(kept.getpeercert(True)).serial_number == first

        second = reissue_server(certs).serial_number
        hup_and_wait(t, "TLS files reloaded", 1)
        assert f"serial {second:#x}" in t.logtext()
        assert s_client_serial(port, certs.ca) == second
        kept.sendall(b"<13>1 - h app - - - after the rotation, same connection\n")
        assert wait_until(lambda: len(messages(out)) == 2), messages(out)

        # a broken certificate file: logged with the file and the option, the second stays
        certs.server_cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ntruncated")
        hup_and_wait(t, "not reloaded", 1)
        line = next(x for x in t.logtext().splitlines() if "not reloaded" in x)
        assert f"option tls-cert-file('{certs.server_cert}')" in line, line
        assert s_client_serial(port, certs.ca) == second
        kept.sendall(b"<13>1 - h app - - - after the broken file, same connection\n")
        assert wait_until(lambda: len(messages(out)) == 3), messages(out)
        kept.unwrap()
    assert t.stop(), t.logtext()
    assert messages(out) == [
        "before the rotation",
        "after the rotation, same connection",
        "after the broken file, same connection",
    ]


def _accepted(port: int, certs: Certs, cert: Path, key: Path, text: str) -> bool:
    """Send one line with this client certificate; False if the listener refused it (TLS 1.3:
    the refusal comes with the first read after the handshake)."""
    try:
        with tls_client(port, certs.ca, cert, key) as s:
            s.sendall(text.encode() + b"\n")
            s.settimeout(1)
            try:
                return s.recv(100) != b""
            except TimeoutError:
                s.unwrap()
                return True  # nothing said: still open, accepted
    except (ssl.SSLError, ConnectionError):
        return False


def test_sighup_rotates_the_ca_file(twistd, tmp_path: Path) -> None:  # noqa: F811 - fixture
    certs = make_certs(tmp_path)
    trusted = tmp_path / "trusted-ca.pem"
    shutil.copy(certs.ca, trusted)
    port = free_port()
    out = tmp_path / "out.jsonl"
    t = twistd(
        "--listen", f"ssl:{port}:interface=127.0.0.1",
        "--tls-key-file", str(certs.server_key), "--tls-cert-file", str(certs.server_cert),
        "--tls-ca-file", str(trusted), "--tls-peer-verify", "required",
        "--output", str(out),
    )  # fmt: skip
    assert wait_until(lambda: accepts(port)), t.logtext()
    ours = (certs.client_cert, certs.client_key)
    theirs = (certs.other_client_cert, certs.other_client_key)
    assert _accepted(port, certs, *ours, "<13>1 - h app - - - first CA, before")
    assert not _accepted(port, certs, *theirs, "<13>1 - h app - - - other CA, before")

    shutil.copy(certs.other_ca, trusted)
    hup_and_wait(t, "TLS files reloaded", 1)
    assert _accepted(port, certs, *theirs, "<13>1 - h app - - - other CA, after")
    assert not _accepted(port, certs, *ours, "<13>1 - h app - - - first CA, after")
    assert wait_until(lambda: len(messages(out)) == 2)
    assert t.stop(), t.logtext()
    assert messages(out) == ["first CA, before", "other CA, after"]

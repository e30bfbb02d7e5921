"""SyslogSource in the real daemons, one transport at a time, each with a real client.

loggen over TCP (RFC 3164 in LF frames; RFC 5424 octet-counted, loggen's default with ``-P``;
RFC 5424 in LF frames with ``-P -F``) and UDP; TLS with a test CA, where clients without a
certificate (loggen ``-U``, Python's ssl) or with one from another CA are refused; HTTP with curl;
unix stream (loggen ``-x``, ``logger -T -u``) and unix datagram (``logger -d -u``) sockets.
Each message is counted in the daemon's file destination; loggen's sequence numbers show that
none is missing or doubled.
"""

from __future__ import annotations

import json
import ssl
import subprocess

import pytest
from certs import make_certs
from daemons import free_port
from integration import (
    JsonOutput,
    assert_each_once,
    curl_post,
    daemon_dir,  # noqa: F401 - a fixture
    loggen,
    loggen_ids,
    one_source_config,
    stop_summary,
    tls_client,
    tls_send,
)

N = 2000  # messages per loggen run


def test_loggen_tcp_rfc3164_and_rfc5424_framed_and_not(syslog_ng):
    port = free_port()
    d = syslog_ng(one_source_config(f"tcp:{port}:interface=127.0.0.1"), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    runs = {
        "rfc3164": [],
        "octet": ["-P", "-p", '[run name="octet"]'],
        "lf": ["-P", "-F", "-p", '[run name="lf"]'],
    }
    for i, (name, flags) in enumerate(runs.items()):
        proc = loggen("-i", "-S", *flags, "-n", str(N), "-r", "20000", "127.0.0.1", str(port))
        assert proc.returncode == 0, proc.stderr
        records = out.wait((i + 1) * N)
        mine = [r for r in records if r.get("_SDATA", {}).get("run", {}).get("name") == name]
        if name == "rfc3164":
            mine = [r for r in records if "_SDATA" not in r]
        assert len(mine) == N, (name, len(mine))
        assert_each_once(loggen_ids(r["MESSAGE"] for r in mine), N)
        fields = {
            (r["HOST"], r["PROGRAM"], r["PID"], r["TRANSPORT"], r["FACILITY"], r["SEVERITY"])
            for r in mine
        }
        assert fields == {("localhost", "prg00000", "1234", "tcp", "auth", "info")}  # <38>
        if name != "rfc3164":
            assert {r["SDATA"] for r in mine} == {f'[run name="{name}"]'}
        assert all(r["MESSAGE"].startswith("seq: ") for r in mine)  # no BOM, no header left
    assert d.stop() == 0
    summary = stop_summary(d.stderr(), f"tcp:{port}:interface=127.0.0.1")
    assert summary["received"] == summary["posted"] == 3 * N
    assert summary["malformed"] == summary["dropped"] == 0


def test_loggen_udp(syslog_ng):
    port = free_port("udp")
    d = syslog_ng(one_source_config(f"udp:{port}:interface=127.0.0.1"), wait_ports=[("udp", port)])
    out = JsonOutput(d.state_dir / "out.json")
    proc = loggen("-i", "-D", "-n", str(N), "-r", "5000", "127.0.0.1", str(port))
    assert proc.returncode == 0, proc.stderr
    records = out.wait(N)
    assert_each_once(loggen_ids(r["MESSAGE"] for r in records), N)
    assert {r["TRANSPORT"] for r in records} == {"udp"}
    assert d.stop() == 0


@pytest.fixture
def certs(daemon_dir):  # noqa: F811 - the fixture imported above
    host_dir, inner_dir = daemon_dir
    return make_certs(host_dir), inner_dir


def _refused(port, ca, cert=None, key=None) -> bool:
    try:
        with tls_client(port, ca, cert, key) as s:
            s.sendall(b"<13>1 - - intruder - - - must not arrive\n")
            return s.recv(100) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_tls_with_client_certificates_required(syslog_ng, certs):
    pki, inner = certs
    port = free_port()
    listen = (
        f"ssl:{port}:privateKey={inner}/server.key:certKey={inner}/server.pem:interface=127.0.0.1"
    )
    options = {"tls-ca-file": f"{inner}/ca.pem", "tls-peer-verify": "required"}
    d = syslog_ng(one_source_config(listen, options), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")

    # refused: loggen (TLS without a client certificate), Python without one, and a certificate
    # from another CA. TLS 1.3 lets the client finish its handshake; the server's alert comes
    # with the first read.
    proc = loggen("-U", "-n", "10", "-r", "1000", "127.0.0.1", str(port))
    assert _refused(port, pki.ca)
    assert _refused(port, pki.ca, pki.other_client_cert, pki.other_client_key)

    # accepted: a certificate of the CA the listener trusts
    lines = [b"<13>1 2026-01-02T03:04:05Z client app - - - tls message %d" % i for i in range(100)]
    tls_send(port, pki.ca, pki.client_cert, pki.client_key, lines)
    records = out.wait(100)
    assert sorted(r["MESSAGE"] for r in records) == sorted(f"tls message {i}" for i in range(100))
    assert {r["TRANSPORT"] for r in records} == {"tls"}
    assert out.settle(quiet=0.5) == 100  # nothing from the refused clients
    assert d.stop() == 0
    summary = stop_summary(d.stderr(), listen)
    assert summary["refused"] >= 3, (summary, proc.stderr)
    assert "handshake failed" in d.stderr()


def test_http_with_curl(syslog_ng):
    port = free_port()
    d = syslog_ng(one_source_config(f"http:{port}:interface=127.0.0.1"), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    lines = b"".join(
        b"<14>1 2026-01-02T03:04:05.5+01:00 web%d app 42 - - line %d\n" % (i, i) for i in range(50)
    )
    status, body = curl_post(f"http://127.0.0.1:{port}/", lines)
    assert status == 200, body
    ndjson = b"".join(json.dumps({"event": f"e{i}", "n": i}).encode() + b"\n" for i in range(5))
    status, body = curl_post(
        f"http://127.0.0.1:{port}/", ndjson, {"Content-Type": "application/x-ndjson"}
    )
    assert status == 200, body
    records = out.wait(55)
    raw = [r for r in records if r.get("MESSAGE", "").startswith("line ")]
    assert sorted(r["MESSAGE"] for r in raw) == sorted(f"line {i}" for i in range(50))
    assert {(r["PROGRAM"], r["PID"], r["ISODATE"]) for r in raw} == {
        ("app", "42", "2026-01-02T03:04:05.500000+01:00")
    }
    events = [r for r in records if "event" in r]
    assert sorted(r["event"] for r in events) == [f"e{i}" for i in range(5)]
    assert {r["TRANSPORT"] for r in records} == {"http"}
    assert d.stop() == 0


def test_unix_stream_and_datagram_sockets(syslog_ng):
    listen = "unix:@STATE@/stream.sock unixgram:@STATE@/dgram.sock"
    d = syslog_ng(
        one_source_config(listen), wait_unix=["@STATE@/stream.sock", "@STATE@/dgram.sock"]
    )
    out = JsonOutput(d.state_dir / "out.json")
    stream, dgram = d.state_dir / "stream.sock", d.state_dir / "dgram.sock"
    proc = loggen("-x", "-S", "-n", str(N), "-r", "20000", str(stream), "0")
    assert proc.returncode == 0, proc.stderr
    for flag, path, text in (("-T", stream, "by logger over unix"), ("-d", dgram, "datagram")):
        subprocess.run(
            ["logger", flag, "-u", str(path), "--rfc5424", "-t", "lgr", text], check=True
        )
    records = out.wait(N + 2)
    from_loggen = [r for r in records if r.get("PROGRAM") == "prg00000"]
    assert_each_once(loggen_ids(r["MESSAGE"] for r in from_loggen), N)
    assert {r["TRANSPORT"] for r in from_loggen} == {"unix"}
    by_logger = {r["MESSAGE"]: r for r in records if r.get("PROGRAM") == "lgr"}
    assert by_logger["by logger over unix"]["TRANSPORT"] == "unix"
    assert by_logger["datagram"]["TRANSPORT"] == "unixgram"
    assert d.stop() == 0

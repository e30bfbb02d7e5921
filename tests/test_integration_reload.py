"""Reloads keep every socket and lose nothing, in syslog-ng 3.38.1 and 4.8.1 (issue 2.2 item 3).

A reload ends every source's ``run()`` and makes a new instance; the old one hands its listening
sockets, its connections (with their partial frames) and the frames it read and did not post to
the new one of the same persist name (``syslogsrc.handover``).

- loggen over 4 TCP connections while the daemon reloads a few times: every (thread, seq) once,
  no connection broken (loggen does not reconnect), the frames handed over all taken over;
- a unix stream connection and UDP datagrams across reloads: the same connection goes on, the
  datagrams that arrived while no instance read wait in the kernel;
- a listener that left the configuration is closed, one whose spec changed is re-opened;
- TLS: the listening socket is kept, the connection is closed after what it read was posted.

The long loop (100 reloads under 20k msg/s, both daemons, and syslog-ng's own ``network()``)
is ``tests/soak/reload_loggen.py``; its figures are in docs/reliability.md.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
from certs import make_certs
from daemons import free_port
from integration import (
    MESSAGE_ONLY,
    JsonOutput,
    assert_each_once,
    daemon_dir,  # noqa: F401 - a fixture
    loggen_ids,
    loggen_popen,
    one_source_config,
    send_tcp,
    tls_client,
)

RELOADS = 6
PER_CONNECTION = 12_000  # at 3000/s each: 4 s of load


def _config(listen: str, options: dict[str, str] | None = None) -> str:
    return one_source_config(listen, options, template=MESSAGE_ONLY, flags="flow-control")


def _summaries(stderr: str) -> list[dict[str, int]]:
    found = re.findall(r"listener (\S+) stopped: (.*?);?$", stderr, re.M)
    return [{k: int(v) for k, v in (c.split("=") for c in text.split(", "))} for _, text in found]


def test_reloads_under_loggen_load_lose_nothing_and_keep_the_connections(syslog_ng):
    port = free_port()
    d = syslog_ng(_config(f"tcp:{port}:interface=127.0.0.1"), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    sender = loggen_popen(
        "-S", "--active-connections=4", "-r", "3000", "-n", str(PER_CONNECTION),
        "127.0.0.1", str(port),
    )  # fmt: skip
    try:
        out.wait(2000)
        usage = []
        for _ in range(RELOADS):
            d.reload()
            usage.append((d.fds(), d.threads()))
            time.sleep(0.3)
        _, errors = sender.communicate(timeout=60)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 0, errors
    records = out.wait(4 * PER_CONNECTION, timeout=30)
    assert_each_once(loggen_ids(r["MESSAGE"] for r in records), 4 * PER_CONNECTION, threads=4)
    assert d.stop() == 0
    runs = _summaries(d.stderr())
    assert len(runs) == RELOADS + 1
    handed = sum(r["handed_over"] for r in runs)
    assert handed == sum(r["taken_over"] for r in runs) + runs[-1]["handed_over"]
    assert sum(r["received"] + r["taken_over"] for r in runs) == sum(
        r["posted"] + r["dropped"] + r["handed_over"] for r in runs
    )
    # the connections were handed over from reload to reload until loggen was done with them
    # (it does not reconnect: a connection closed by a reload would have ended its thread short)
    handovers = [
        int(n) for n in re.findall(r"handed 1 listening socket\(s\), (\d+) connection", d.stderr())
    ]
    assert handovers[0] == 4 and handovers == sorted(handovers, reverse=True), handovers
    (fds1, threads1), (fds_n, threads_n) = usage[0], usage[-1]
    assert fds_n - fds1 <= 2 and threads_n - threads1 <= 1, usage
    print(
        f"{syslog_ng.name}: {RELOADS} reloads under loggen, {4 * PER_CONNECTION} messages each"
        f" once; {handed} handed over read and not posted; fds {fds1}->{fds_n}"
    )


def test_a_unix_stream_connection_and_udp_datagrams_go_on_across_reloads(syslog_ng):
    udp = free_port("udp")
    d = syslog_ng(
        _config(f"unix:@STATE@/log.sock udp:{udp}:interface=127.0.0.1"),
        wait_ports=[("udp", udp)],
        wait_unix=["@STATE@/log.sock"],
    )
    out = JsonOutput(d.state_dir / "out.json")
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect(str(d.state_dir / "log.sock"))
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    try:
        for reload in range(3):
            for i in range(50):
                n = reload * 50 + i
                stream.sendall(b"<13>1 - - app - - - unix-%d\n" % n)
                datagrams.sendto(b"<13>1 - - app - - - udp-%d" % n, ("127.0.0.1", udp))
                sent += 1
            # a frame begun before the reload and finished after it
            stream.sendall(b"<13>1 - - app - - - split-")
            d.reload()
            stream.sendall(b"%d\n" % reload)
        records = out.wait(2 * sent + 3, timeout=20)
    finally:
        stream.close()
        datagrams.close()
    messages = sorted(r["MESSAGE"] for r in records)
    expected = sorted(
        [f"unix-{n}" for n in range(sent)]
        + [f"udp-{n}" for n in range(sent)]
        + [f"split-{n}" for n in range(3)]
    )
    assert messages == expected
    assert d.stop() == 0


def test_a_listener_left_out_is_closed_and_a_changed_one_reopened(syslog_ng):
    kept, dropped = free_port(), free_port()
    d = syslog_ng(
        _config(f"tcp:{kept}:interface=127.0.0.1 tcp:{dropped}:interface=127.0.0.1"),
        wait_ports=[kept, dropped],
    )
    out = JsonOutput(d.state_dir / "out.json")
    held = socket.create_connection(("127.0.0.1", dropped))
    held.sendall(b"<13>1 - - app - - - before the reload\n")
    out.wait(1)
    # another persist name (the listen option changed), the same port with another spec
    text = d.config_path.read_text().replace(
        f"tcp:{kept}:interface=127.0.0.1 tcp:{dropped}:interface=127.0.0.1",
        f"tcp:{kept}:interface=127.0.0.1:format=raw",
    )
    d.config_path.write_text(text)
    d.reload()
    held.settimeout(5)
    assert held.recv(1) == b""  # closed by the daemon
    held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", dropped), timeout=2).close()
    send_tcp(kept, [b"<13>1 - - app - - - raw now"])
    record = out.wait_for(lambda r: r["MESSAGE"].endswith("raw now"))
    assert record["MESSAGE"] == "<13>1 - - app - - - raw now"  # format=raw: the spec changed
    assert d.stop() == 0


def test_tls_keeps_its_listening_socket_and_closes_its_connections(
    syslog_ng,
    daemon_dir,  # noqa: F811 - the fixture
):
    host_dir, inner = daemon_dir
    pki = make_certs(host_dir)
    port = free_port()
    options = {"tls-key-file": f"{inner}/server.key", "tls-cert-file": f"{inner}/server.pem"}
    d = syslog_ng(_config(f"ssl:{port}:interface=127.0.0.1", options), wait_ports=[port])
    out = JsonOutput(d.state_dir / "out.json")
    inode = _listening_inode(port)
    with tls_client(port, pki.ca) as s:
        s.sendall(b"".join(b"<13>1 - h app - - - tls-%d\n" % i for i in range(100)))
        out.wait(100)
        d.reload()
        s.settimeout(5)
        # the session lives in the old instance's OpenSSL objects: closed, with close_notify
        assert s.recv(1) == b""
    assert _listening_inode(port) == inode  # the same listening socket, handed over
    with tls_client(port, pki.ca) as s:
        s.sendall(b"<13>1 - h app - - - tls-after\n")
        s.unwrap()
    out.wait(101)
    assert d.stop() == 0


def _listening_inode(port: int) -> str:
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                return cols[9]
    raise AssertionError(f"nothing listens on {port}")

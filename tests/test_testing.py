"""syslogsrc.testing is public: what it promises, checked on the real protocols."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from syslogsrc import testing
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.source import SyslogSource


def _factory(sink: testing.RecordingSink) -> SyslogStreamFactory:
    from twisted.internet.task import Clock

    return SyslogStreamFactory(Clock(), sink, ListenerOptions(), ListenerStats("tcp:5514"))


def test_a_recording_sink_records_batches_and_pauses_at_its_window() -> None:
    sink = testing.RecordingSink(window=2)
    protocol, transport = testing.connect(_factory(sink), peer=("2001:db8::7", 1234))
    protocol.dataReceived(b"<13>1 - h p - - - a\n<13>1 - h p - - - b\n<13>1 - h p - - - c\n")
    assert sink.messages == [b"<13>1 - h p - - - a", b"<13>1 - h p - - - b"]
    assert len(sink.batches) == 1
    assert transport.producerState == "paused"
    assert sink.posts[0][1].peer_host == "2001:db8::7"
    sink.resume()  # what waited in the protocol goes first, as its own batch
    assert sink.batches[-1] == [b"<13>1 - h p - - - c"]
    assert sink.posted_while_paused == []
    assert [p.pairs["MESSAGE"] for p in sink.parsed()] == ["a", "b", "c"]


def test_a_recording_sink_can_fail() -> None:
    sink = testing.RecordingSink(raise_on=[b"<13>bad"])
    origin = Origin("tcp", ListenerStats("x"))
    assert sink.post([b"<13>good"], origin) == 1
    with pytest.raises(ValueError, match="refuses"):
        sink.post([b"<13>bad"], origin)
    assert sink.messages == [b"<13>good"]


def test_free_port_accepts_and_wait_until() -> None:
    port = testing.free_port()
    assert not testing.accepts(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert testing.accepts(port)
    assert testing.free_port("udp") > 0
    assert testing.wait_until(lambda: True, timeout=0.1)
    assert not testing.wait_until(lambda: False, timeout=0.1)


def test_has_ipv6_says_whether_the_ipv6_loopback_can_be_used() -> None:
    if testing.has_ipv6():
        port = testing.free_port(host="::1")
        with socket.socket(socket.AF_INET6) as server:
            server.bind(("::1", port))
            server.listen()
            assert testing.accepts(port, host="::1")
    else:
        with pytest.raises(OSError), socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))


def test_the_module_docstring_example_runs() -> None:
    # the example a user copies: a source with a listener, a real socket, its messages
    port = testing.free_port()
    with testing.SourceHost(SyslogSource, {"listen": f"tcp:{port}:interface=127.0.0.1"}) as host:
        assert testing.wait_until(lambda: testing.accepts(port))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>1 - h app - - - hello\n")
        assert testing.wait_until(lambda: len(host.messages) == 1)
    assert host.messages[0]["MESSAGE"] == b"hello"


# -- a running source and its senders ----------------------------------------------------------


class _Message(dict):  # what SourceHost hands an output: values by name
    pass


def test_a_counting_output_keeps_good_numbers_counts_the_rest_and_can_stall() -> None:
    out = testing.CountingOutput(keep=True)
    out.write(_Message(MESSAGE=b"good-a-0"))
    out.write(_Message(MESSAGE=b"good-a.b-1"))
    out.write(_Message(MESSAGE=b"evil \xff"))
    out.write(_Message(HOST=b"no message"))
    assert out.good == {"a": [0], "a.b": [1]}
    assert (out.others, out.other_bytes, out.samples) == (2, 6, [b"evil \xff", b""])
    assert len(out.kept) == 4
    out.hold()
    writer = threading.Thread(target=out.write, args=(_Message(MESSAGE=b"good-a-1"),))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive() and out.good["a"] == [0]  # stalled
    out.release()
    writer.join(testing.WAIT)
    assert out.good["a"] == [0, 1]


def test_log_records_match_and_pick_errors() -> None:
    records = testing.LogRecords()
    logger = logging.getLogger("syslogsrc-test-testing")
    logger.addHandler(records.handler)
    try:
        logger.warning("refused %d connection(s)", 3)
        logger.error("the sink raised")
    finally:
        logger.removeHandler(records.handler)
    assert records.matching(r"refused \d+") == ["refused 3 connection(s)"]
    assert records.errors() == ["the sink raised"]


def test_a_listening_source_with_good_senders_on_tcp_and_http() -> None:
    with testing.ListeningSource(
        "tcp:0:interface=127.0.0.1", "http:0:interface=127.0.0.1", log_iw_size=10
    ) as src:
        assert len(src.listeners) == 2 and src.port(0) != src.port(1)
        tcp = testing.GoodSender(src, "tcp", count=30, interval=0)
        web = testing.GoodHTTPSender(src, "web", count=5, interval=0, port=src.port(1))
        tcp.start()
        web.start()
        tcp.check()
        web.check()
        assert set(web.statuses) <= {200, 503}
        status, answer = testing.http_post(src.port(1), b"<13>Nov 24 06:00:00 h app: one more")
        assert (status, answer) == (200, {"status": "received", "messages": 1})
        assert src.wait(lambda: src.output.others == 1)
        assert src.stats(0).received == 30 and src.stats(1).received == 6
        with socket.create_connection(("127.0.0.1", src.port(0))) as s:
            s.sendall(b"<13>Nov 24 06:00:00 h app: partial")
            assert src.wait(lambda: len(src.decoders(0)) == 1)
        # a sender one of whose messages is lost fails its check
        skipping = _SkippingSender(src, "skip", count=2, interval=0)
        skipping.start()
        with pytest.raises(AssertionError, match="lost, duplicated or reordered"):
            skipping.check()


class _SkippingSender(testing.GoodSender):
    def message(self, i: int) -> bytes:
        return super().message(2 * i)  # 0, 2: number 1 never comes


def test_parse_responses_skips_interim_answers_and_leaves_an_incomplete_one() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\nshort"
    )
    [response] = testing.parse_responses(data)
    assert response == testing.HTTPResponse(
        200, {"content-type": "application/json", "content-length": "2"}, b"{}"
    )
    assert response.json() == {}


def test_closed_by_peer_tells_a_close_from_a_silence() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            assert not testing.closed_by_peer(client, 0.2)
            peer.sendall(b"bye")
            peer.close()
            assert testing.closed_by_peer(client, testing.WAIT)


def test_tls_connect_presents_the_client_certificate(tmp_path: Path) -> None:
    from certs import make_certs

    pki = make_certs(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.load_verify_locations(str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        seen: list[Any] = []

        def accept() -> None:
            conn, _ = server.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.getpeercert())
                tls.sendall(b"ok")

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        client = testing.tls_connect(port, str(pki.ca), str(pki.client_cert), str(pki.client_key))
        with client:
            assert client.recv(2) == b"ok"
        thread.join(testing.WAIT)
    assert seen and seen[0]


def test_peak_rss_sees_memory_grow() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak_rss reads Linux's /proc")
    with testing.peak_rss() as rss:
        block = bytearray(32 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touched: resident
    del block
    assert rss.growth >= 16 * 1024 * 1024


def test_hostile_bytes_are_bytes_that_are_not_utf8_or_hold_nul() -> None:
    for frame in testing.HOSTILE_BYTES:
        assert b"\x00" in frame or not _is_utf8(frame)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True

"""Hostile HTTP against a running ``SyslogSource`` (SourceHost, an ``http:`` listener on port 0).

As in test_hostile_streams.py, a well-behaved client posts at the same time and every one of its
messages must arrive; refusals are counted and logged at most once per cause and 10 s; memory is
bounded: the body kept is at most ``http-max-body`` (1 MiB here) whatever is sent, and peak RSS
grows by less than ``http-max-body`` + :data:`RSS_BOUND` (a 256 MiB gzip bomb included).
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
import socket
import ssl
import time
import zlib
from typing import Any

import pytest

from syslogsrc.testing import (
    CountingOutput,
    GoodHTTPSender,
    ListeningSource,
    closed_by_peer,
    http_post,
    parse_responses,
    peak_rss,
)

#: Peak RSS growth allowed while one hostile case runs (as in test_hostile_streams.py).
RSS_BOUND = 24 * 1024 * 1024
WAIT = 15.0
MAX_BODY = 1024 * 1024
TOKEN = "s3cret-token"


# ---------------------------------------------------------------------------------------------
# clients


def read_responses(s: socket.socket, n: int, timeout: float = WAIT) -> list[tuple[int, bytes]]:
    """Read ``n`` HTTP/1.1 responses (Content-Length bodies) from a raw socket, or those that
    came before it closed."""
    s.settimeout(timeout)
    buf = b""
    while len(responses := parse_responses(buf)) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [(r.code, r.body) for r in responses[:n]]


def request_bytes(body: bytes, headers: dict[str, str] | None = None, path: str = "/") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_hostile(**options: Any) -> ListeningSource:
    options.setdefault("http_max_body", MAX_BODY)
    return ListeningSource("http:0:interface=127.0.0.1", **options)


# ---------------------------------------------------------------------------------------------
# a body over the limit


def test_body_over_the_limit_is_413_and_nothing_of_it_posted() -> None:
    with http_hostile() as h:
        good = GoodHTTPSender(h, "big")
        good.start()
        line = b"<13>Nov 24 06:00:00 evil app: too much\n"
        body = line * (MAX_BODY // len(line) + 1)
        status, answer = http_post(h.port(), body)  # Content-Length over: refused before reading
        assert (status, answer["status"]) == (413, "too-large")
        # chunked, 64 MiB: counted as it streams, cut at the limit, never kept
        with peak_rss() as rss:
            conn = http.client.HTTPConnection("127.0.0.1", h.port(), timeout=WAIT)
            chunks = (line * 1700 for _ in range(1000))  # ~64 MiB
            conn.request("POST", "/", body=chunks, encode_chunked=True)
            resp = conn.getresponse()
            assert resp.status == 413
            resp.read()
            # the connection is clean afterwards: the next request on it is served
            status, answer = http_post(0, b"<13>Nov 24 06:00:00 good app: good-after-0", conn=conn)
            assert (status, answer["messages"]) == (200, 1)
            conn.close()
        good.check()
        stats = h.stats()
        assert h.output.others == 0  # nothing of either body
        assert stats.dropped == 2
        assert rss.growth < MAX_BODY + RSS_BOUND, rss.growth
        assert len(h.logs.matching(r"HTTP 413")) == 1  # two refusals, one line
        assert not h.logs.errors()


# ---------------------------------------------------------------------------------------------
# tokens


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"bearer  {TOKEN[:-1]}"],
)
def test_missing_or_wrong_token_is_401_and_nothing_posted(authorization: str | None) -> None:
    with http_hostile(http_token=TOKEN) as h:
        good = GoodHTTPSender(h, "token", token=TOKEN, count=50)
        good.start()
        headers = {"Authorization": authorization} if authorization else {}
        conn = http.client.HTTPConnection("127.0.0.1", h.port(), timeout=WAIT)
        for _ in range(50):
            status, answer = http_post(
                0, b"<13>Nov 24 06:00:00 evil app: let me in", headers, conn=conn
            )
            assert (status, answer["status"]) == (401, "unauthorized")
        conn.close()
        good.check()
        assert h.output.others == 0
        assert len(h.logs.matching(r"HTTP 401")) == 1  # 50 refusals, one line
        assert not h.logs.errors()


# ---------------------------------------------------------------------------------------------
# bad JSON: 400, nothing half-posted

_OBJECTS = [json.dumps({"n": i, "msg": f"evil {i}"}) for i in range(1000)]


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        ("application/json", ("[" + ",".join(_OBJECTS) + ",{bad}]").encode(), "invalid JSON"),
        ("application/json", ("[" + ",".join(_OBJECTS) + ",42]").encode(), "element 1000"),
        ("application/x-ndjson", "\n".join([*_OBJECTS[:500], "{oops"]).encode(), "line 501"),
        ("application/x-ndjson", "\n".join(_OBJECTS).encode() + b'\n{"a": "\xff"}', "not UTF-8"),
        ("application/json", b"[" * 100_000, "nested too deeply"),
        ("application/json", b'{"a": NaN}', "NaN is not JSON"),
    ],
    ids=["syntax-at-the-end", "wrong-element", "ndjson-line", "not-utf8", "deep", "nan"],
)
def test_bad_json_is_400_and_nothing_half_posted(content_type: str, body: bytes, says: str) -> None:
    with http_hostile() as h:
        good = GoodHTTPSender(h, "json", count=50)
        good.start()
        for coding in (None, "gzip"):
            headers = {"Content-Type": content_type}
            data = body
            if coding:
                headers["Content-Encoding"] = coding
                data = gzip.compress(body)
            status, answer = http_post(h.port(), data, headers)
            assert (status, answer["status"]) == (400, "malformed")
            assert says in answer["error"]
        good.check()
        assert h.output.others == 0
        assert h.stats().malformed == 2
        assert not h.logs.errors()


# ---------------------------------------------------------------------------------------------
# gzip bombs

BOMB_SIZE = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """256 MiB of zeros as one gzip member (~260 kB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([c.compress(zeros) for _ in range(BOMB_SIZE >> 20)] + [c.flush()])


def test_gzip_bomb_is_413_decoded_incrementally_never_whole(bomb: bytes) -> None:
    member = gzip.compress(bytes(1 << 20))  # 1 MiB in ~1 kB
    many_members = member * 1024  # 1 GiB in ~1 MB, 1 024 members
    deflate = zlib.compress(bytes(64 << 20), 9)  # 64 MiB as zlib/deflate
    with http_hostile() as h:
        good = GoodHTTPSender(h, "bomb", count=100)
        good.start()
        with peak_rss() as rss:
            for body, coding in ((bomb, "gzip"), (many_members, "gzip"), (deflate, "deflate")):
                status, answer = http_post(h.port(), body, {"Content-Encoding": coding})
                assert (status, answer["status"]) == (413, "too-large"), (coding, answer)
        good.check()
        stats = h.stats()
        assert h.output.others == 0
        assert stats.dropped == 3
        # 256 MiB and 1 GiB of decoded zeros went by: what was kept is at most the limit
        assert rss.growth < MAX_BODY + RSS_BOUND, rss.growth
        assert not h.logs.errors()


# ---------------------------------------------------------------------------------------------
# slow uploads time out


def test_slow_upload_and_slow_headers_time_out() -> None:
    # twisted.web's own timeout restarts on every byte (and is 12 h by default); ours restarts
    # on a complete request (or 64 KiB), so an upload at a byte every 0.2 s ends after
    # idle-timeout(1), and so does a request line trickled in.
    with http_hostile(idle_timeout=0.5) as h:
        good = GoodHTTPSender(h, "slow", count=8, interval=0.15)  # quiet, not slow: kept
        good.start()
        upload = socket.create_connection(("127.0.0.1", h.port()), timeout=WAIT)
        upload.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        headers = socket.create_connection(("127.0.0.1", h.port()), timeout=WAIT)
        start = time.monotonic()
        text = b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100
        for i in range(12):  # 1.2 s at a byte every 0.1 s on each
            for s, byte in ((upload, b"a"), (headers, text[i : i + 1])):
                with contextlib.suppress(OSError):
                    s.sendall(byte)
            time.sleep(0.1)
        for s in (upload, headers):
            assert closed_by_peer(s, 3)
            s.close()
        elapsed = time.monotonic() - start
        good.check()
        stats = h.stats()
        assert stats.timed_out == 2
        assert h.output.others == 0
        assert elapsed < 4
        assert len(h.logs.matching(r"completed no message")) == 1
        assert not h.logs.errors()


# ---------------------------------------------------------------------------------------------
# pipelined and concurrent requests


def test_pipelined_requests_are_answered_in_order() -> None:
    n = 500
    with http_hostile() as h:
        good = GoodHTTPSender(h, "pipe-good", count=50)
        good.start()
        with socket.create_connection(("127.0.0.1", h.port()), timeout=WAIT) as s:
            s.sendall(
                b"".join(
                    request_bytes(b"<13>Nov 24 06:00:00 good app: good-pipe-%d" % i)
                    for i in range(n)
                )
            )
            responses = read_responses(s, n)
        assert [code for code, _ in responses] == [200] * n
        good.check()
        assert h.wait(lambda: len(h.output.good.get("pipe", [])) == n)
        assert h.output.good["pipe"] == list(range(n))


def test_concurrent_requests_each_message_once() -> None:
    with http_hostile() as h:
        senders = [GoodHTTPSender(h, f"conc{i}", count=40, interval=0) for i in range(20)]
        for t in senders:
            t.start()
        for t in senders:
            t.check()
        stats = h.stats()
        assert stats.received == stats.posted == 20 * 40


# ---------------------------------------------------------------------------------------------
# a client that pipelines and never reads


def _send_buffer(h: ListeningSource) -> int:
    """Bytes our side holds for the listener's connections (Twisted's write buffers)."""
    total = 0
    for conn in list(h.listener().tracker.protocols):
        t = conn.transport
        total += getattr(t, "_tempDataLen", 0) + len(getattr(t, "dataBuffer", b""))
    return total


def _progress_of(h: ListeningSource, s: socket.socket) -> int:
    """Requests the server has read whole on the connection of client socket ``s``."""
    from syslogsrc.protocols._tracking import _innermost

    port = s.getsockname()[1]
    for conn in list(h.listener().tracker.protocols):
        if conn.getPeer().port == port:
            return _innermost(conn).progress
    return -1


def test_client_that_never_reads_is_not_read_either_and_times_out() -> None:
    # Before the fix twisted.web went on reading and answering, and the answers piled up:
    # 8.7 MB of them after 8 s (RSS +34 MB), growing for as long as the client went on.
    with http_hostile(idle_timeout=1.5, output=CountingOutput()) as h:
        good = GoodHTTPSender(h, "deaf-good", count=100)
        good.start()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # less for the kernel to hold
        s.connect(("127.0.0.1", h.port()))
        s.setblocking(False)
        batch = request_bytes(b"<13>Nov 24 06:00:00 evil app: never reads") * 200
        largest = 0
        with peak_rss() as rss:
            # Answers first fill the kernel's buffers (ours to send, the client's to receive:
            # a few MB on loopback), then Twisted's; then we stop reading. Send until the
            # number of requests we have read stops growing.
            deadline = time.monotonic() + 10
            handled, since = -1, time.monotonic()
            while time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    s.send(batch)
                largest = max(largest, _send_buffer(h))
                time.sleep(0.002)
                progress = _progress_of(h, s)
                if progress != handled:
                    handled, since = progress, time.monotonic()
                elif time.monotonic() - since > 0.5:
                    break
            assert handled > 0 and time.monotonic() < deadline, "still reading"
        stats = h.stats()
        # idle-timeout: the peer has read nothing (and we nothing of it) for 1.5 s
        assert h.wait(lambda: stats.timed_out == 1 and stats.open_connections == 0)
        s.close()
        good.check()
        if os.environ.get("HOSTILE_VERBOSE"):
            print(f"\n[never reads] {handled} requests read, send buffer at most {largest} B")
        assert largest < 1024 * 1024, largest
        assert rss.growth < RSS_BOUND, rss.growth
        assert not h.logs.errors()


# ---------------------------------------------------------------------------------------------
# invalid UTF-8 everywhere, NUL bytes, TLS on the HTTP port


def test_invalid_utf8_and_nul_in_bodies_headers_paths() -> None:
    lines = [
        b"<13>Nov 24 06:00:00 h app: raw \xff\xfe bytes",
        b"<13>Nov 24 06:00:00 h app: NUL \x00 inside",
        b"\xc3\x28 no header at all",
    ]
    with http_hostile(format="raw", http_headers="X-Bin", output=CountingOutput(keep=True)) as h:
        good = GoodHTTPSender(h, "utf8", count=50)
        good.start()
        with socket.create_connection(("127.0.0.1", h.port()), timeout=WAIT) as s:
            s.sendall(
                b"POST /in%%FF%%C3/p?q=%%FF%%00&k%%FE=v HTTP/1.1\r\nHost: x\r\n"
                b"X-Bin: \xff\xfe\x80\r\nContent-Length: %d\r\n\r\n%s"
                % (len(b"\n".join(lines)), b"\n".join(lines))
            )
            responses = read_responses(s, 1)
        assert responses[0][0] == 200, responses
        # raw (not percent-encoded) bytes over 0x7f in the request line: twisted.web says 400
        with socket.create_connection(("127.0.0.1", h.port()), timeout=WAIT) as s:
            s.sendall(b"POST /p\xff?k\xfe=v HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            assert read_responses(s, 1)[0][0] == 400
        good.check()
        assert h.stats().malformed == 1
        assert h.wait(lambda: h.output.others == 3)
        assert sorted(h.output.samples) == sorted(lines)  # byte for byte
        msg = next(m for m in h.output.kept if b"raw" in m["MESSAGE"])
        for name in ("http.path", "http.query.q", "http.header.x-bin"):
            value = msg[name]
            (value if isinstance(value, bytes) else str(value).encode()).decode("utf-8")
        assert not h.logs.errors()


def test_tls_hello_and_garbage_on_the_http_port_are_400_counted_logged_once() -> None:
    with http_hostile() as h:
        good = GoodHTTPSender(h, "garbage", count=50)
        good.start()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        for _ in range(10):
            raw = socket.create_connection(("127.0.0.1", h.port()), timeout=5)
            with pytest.raises((ssl.SSLError, OSError)):
                ctx.wrap_socket(raw, server_hostname="localhost")
            raw.close()
        garbages = (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"POST / HTTP/1.1\r\n\xff\xff\r\n\r\n")
        for garbage in garbages:
            with socket.create_connection(("127.0.0.1", h.port()), timeout=5) as s:
                s.sendall(garbage)
                assert closed_by_peer(s, 5)
        good.check()
        stats = h.stats()
        assert h.wait(lambda: stats.malformed == 3 and stats.refused == 10), stats
        assert h.output.others == 0
        assert len(h.logs.matching(r"bad-request")) == 1
        assert len(h.logs.matching(r"TLS handshake on a plain")) == 1
        assert not h.logs.errors()


def test_query_argument_names_syslog_ng_would_refuse_are_left_out() -> None:
    # syslog-ng refuses names over 255 bytes with an error line per message; the client chooses
    # the names of query arguments, so those that would make one are not passed on.
    long_name = "n" * 300
    with http_hostile(output=CountingOutput(keep=True)) as h:
        status, _ = http_post(
            h.port(), b"<13>Nov 24 06:00:00 h app: q", path=f"/?{long_name}=1&ok=2"
        )
        assert status == 200
        assert h.wait(lambda: len(h.output.kept) == 1)
        msg = h.output.kept[0]
        assert msg["http.query.ok"] == b"2"
        with pytest.raises(KeyError):
            msg[f"http.query.{long_name}"]

"""HTTPIngestSite: unit tests through an in-memory transport, then real sockets with curl/Agent."""

from __future__ import annotations

import gzip
import hmac
import io
import itertools
import json
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from syslogsrc import testing
from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.parsing import ParsedMessage, json_bytes
from syslogsrc.protocols import http as http_module
from syslogsrc.protocols.http import HTTPIngestSite
from syslogsrc.testing import HTTPResponse, parse_responses

# -- a sink that records, and pauses on demand ----------------------------------------------------


@attrs.frozen
class Post:
    frame: bytes
    origin: Origin
    format: str | None
    extra: Mapping[str, str]


def _frame_of(message: ParsedMessage) -> bytes:
    """A JSON object the protocol parsed, as compact JSON of its pairs (values are text)."""
    assert message.format == "json", message
    return json_bytes(dict(message.pairs))


class RecordingSink(testing.RecordingSink):
    """``syslogsrc.testing.RecordingSink`` as these tests read it: each message taken as a
    :class:`Post` (:attr:`records`, :attr:`frames`), the number of messages taken when each
    batch closed (:meth:`closed_at`); it pauses its producers once ``pause_after`` messages
    were taken (from inside ``post``, the way syslog-ng's suspend() arrives; then
    ``on_pause``), raises once ``fail_after`` were taken (a sink failing in mid-batch), and
    a post while paused fails the test."""

    def __init__(self, pause_after: int | None = None, fail_after: int | None = None) -> None:
        super().__init__()
        self.pause_after = pause_after
        self.fail_after = fail_after
        self.on_pause: Callable[[], object] = lambda: None
        self.on_post = self._after_each

    def _after_each(self, message: object) -> None:
        taken = len(self.posts)
        if self.pause_after is not None and taken == self.pause_after:
            self.pause_after = None
            self.pause()
        if self.fail_after is not None and taken == self.fail_after:
            self.fail_after = None
            raise RuntimeError("sink exploded")

    def post(self, messages: Sequence[bytes | ParsedMessage], origin: Origin) -> int:
        assert not self.paused, "posted while paused"
        return super().post(messages, origin)

    def pause(self) -> None:
        super().pause()
        self.on_pause()

    @property
    def records(self) -> list[Post]:
        """Every message taken; a JSON object the protocol parsed as the frame it stands for."""
        return [
            Post(m, o, o.format, dict(o.pairs or {}))
            if type(m) is bytes
            else Post(_frame_of(m), o, "json", dict(o.pairs or {}))  # type: ignore[arg-type]
            for m, o in self.posts
        ]

    @property
    def frames(self) -> list[bytes]:
        return [p.frame for p in self.records]

    def closed_at(self) -> list[int]:
        """The number of messages taken when each batch (each ``post``) closed."""
        return list(itertools.accumulate(len(batch) for batch in self.batches))


# -- driving the site without sockets --------------------------------------------------------------


def raw_request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    chunked: bool = False,
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: example"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    elif body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


class Harness:
    """One site on a Clock, connections on StringTransports."""

    def __init__(self, sink: RecordingSink | None = None, **options: Any) -> None:
        self.clock = Clock()
        self.sink = sink or RecordingSink()
        self.stats = ListenerStats("http-test")
        self.options = ListenerOptions(**options)
        self.site = HTTPIngestSite(self.clock, self.sink, self.options, self.stats)
        self.site.doStart()
        self.requests: list[Any] = []  # every request object the site made, to look inside
        made = self.requests

        class Recorded(self.site.requestFactory):  # type: ignore[name-defined,misc]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, **kw)
                made.append(self)

        self.site.requestFactory = Recorded

    def connect(self, port: int = 40000) -> tuple[Any, StringTransport]:
        peer = IPv4Address("TCP", "192.0.2.7", port)
        channel = self.site.buildProtocol(peer)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=peer
        )
        channel.makeConnection(transport)
        return channel, transport

    def send(self, data: bytes, port: int = 40000) -> list[HTTPResponse]:
        channel, transport = self.connect(port)
        channel.dataReceived(data)
        return parse_responses(transport.value())

    def request(self, method: str, path: str, body: bytes = b"", **kw: Any) -> HTTPResponse:
        responses = self.send(raw_request(method, path, body, **kw))
        assert len(responses) == 1, responses
        return responses[0]

    def post(self, body: bytes, **kw: Any) -> HTTPResponse:
        return self.request("POST", "/", body, **kw)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


# -- body kinds ---------------------------------------------------------------------------------


def test_sink_double_provides_the_interface() -> None:
    verifyObject(IMessageSink, RecordingSink())


def test_raw_lines_one_message_each_crlf_tolerated_blank_skipped() -> None:
    h = Harness()
    body = b"<13>first\n<13>second\r\n\n  \r\n<13>third"
    response = h.post(body, headers={"Content-Type": "text/plain"})
    assert response.code == 200
    assert response.json() == {"status": "received", "messages": 3}
    assert h.sink.frames == [b"<13>first", b"<13>second", b"<13>third"]
    assert [p.format for p in h.sink.records] == [None, None, None]
    assert (h.stats.received, h.stats.bytes) == (3, len(body))


def test_no_content_type_and_form_urlencoded_are_raw_lines() -> None:
    """`curl -d` labels its body form-urlencoded; it is a log line, not form fields."""
    h = Harness()
    assert h.post(b"a=1&b=2").code == 200
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    assert h.post(b"<14>x=1&y=2", headers=ctype).code == 200
    assert h.sink.frames == [b"a=1&b=2", b"<14>x=1&y=2"]
    assert "http.query.y" not in h.sink.records[1].extra


def test_ndjson_one_object_per_line() -> None:
    h = Harness()
    body = b'{"msg": "a", "n": 1}\r\n\n{"msg":"b\xc3\xa9"}\n'
    for ctype in ("application/x-ndjson", "application/jsonl; charset=utf-8"):
        response = h.post(body, headers={"Content-Type": ctype})
        assert response.json() == {"status": "received", "messages": 2}
    assert h.sink.frames == [b'{"msg":"a","n":"1"}', '{"msg":"bé"}'.encode()] * 2
    assert {p.format for p in h.sink.records} == {"json"}


def test_json_object_is_one_message_reserialised() -> None:
    h = Harness()
    body = b'{\n  "message": "hello",\n  "host": "web1"\n}'
    response = h.post(body, headers={"Content-Type": "application/json"})
    assert response.json() == {"status": "received", "messages": 1}
    assert h.sink.records[0].frame == b'{"message":"hello","host":"web1"}'
    assert h.sink.records[0].format == "json"


def test_json_array_of_objects_and_strings() -> None:
    h = Harness()
    body = b'[{"a": 1}, "<13>raw line", {"b": [1, 2]}, ""]'
    response = h.post(body, headers={"Content-Type": "application/json"})
    assert response.json() == {"status": "received", "messages": 3}
    assert [(p.frame, p.format) for p in h.sink.records] == [
        (b'{"a":"1"}', "json"),
        (b"<13>raw line", None),
        (b'{"b":"[1,2]"}', "json"),
    ]
    assert h.sink.closed_at() == [3]


def test_gzip_body_decompressed() -> None:
    h = Harness()
    body = gzipped(b"one\ntwo\n") + gzipped(b"three\n")  # two gzip members (RFC 1952 2.2)
    response = h.post(body, headers={"Content-Encoding": "gzip"})
    assert response.json() == {"status": "received", "messages": 3}
    assert h.sink.frames == [b"one", b"two", b"three"]
    assert h.stats.bytes == len(b"one\ntwo\nthree\n")


def test_gzip_ndjson_chunked_arrives_in_small_pieces() -> None:
    h = Harness()
    body = gzipped(b"".join(b'{"i":%d}\n' % i for i in range(500)))
    channel, transport = h.connect()
    data = raw_request(
        "POST",
        "/",
        body,
        chunked=True,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
    )
    for i in range(0, len(data), 7):
        channel.dataReceived(data[i : i + 7])
    [response] = parse_responses(transport.value())
    assert response.json() == {"status": "received", "messages": 500}
    assert h.sink.frames[-1] == b'{"i":"499"}'


def test_deflate_body() -> None:
    h = Harness()
    response = h.post(zlib.compress(b"x\ny\n"), headers={"Content-Encoding": "deflate"})
    assert response.code == 200
    assert h.sink.frames == [b"x", b"y"]


def test_unknown_content_encoding_is_415() -> None:
    h = Harness()
    response = h.post(b"whatever", headers={"Content-Encoding": "br"})
    assert response.code == 415
    assert response.json()["status"] == "unsupported-encoding"
    assert h.sink.records == []


def test_truncated_or_corrupt_gzip_is_400() -> None:
    h = Harness()
    whole = gzipped(b"a\n" * 100)
    for body in (whole[:-10], b"\x1f\x8b\x08garbage-not-gzip"):
        response = h.post(body, headers={"Content-Encoding": "gzip"})
        assert response.code == 400
    assert h.sink.records == []
    assert h.stats.malformed == 2


def test_frames_longer_than_max_message_size_truncated_and_counted() -> None:
    h = Harness(max_message_size=64)
    response = h.post(b"x" * 100 + b"\nshort\n")
    assert response.json() == {"status": "received", "messages": 2}
    assert h.sink.frames == [b"x" * 64, b"short"]
    assert h.stats.truncated == 1


# -- limits -------------------------------------------------------------------------------------


def test_gzip_bomb_is_413_and_nothing_posted() -> None:
    h = Harness(http_max_body=1024 * 1024)
    bomb = gzipped(b"<13>A\n" * (20 * 1024 * 1024))  # 120 MiB -> ~120 kB
    assert len(bomb) < 1024 * 1024
    response = h.post(bomb, headers={"Content-Encoding": "gzip"})
    assert response.code == 413
    assert response.json()["status"] == "too-large"
    assert h.sink.records == [] and h.sink.batches == []
    assert h.stats.dropped == 1 and h.stats.received == 0


def test_declared_length_over_the_limit_is_413_and_never_buffered() -> None:
    h = Harness(http_max_body=1000)
    channel, transport = h.connect()
    head = raw_request("POST", "/").replace(b"Content-Length: 0", b"Content-Length: 50000")
    channel.dataReceived(head)
    [request] = h.requests
    for _ in range(49):
        channel.dataReceived(b"y" * 1000)
        assert request.content.tell() == 0  # thrown away as it arrives
    assert transport.value() == b""
    channel.dataReceived(b"y" * 1000)
    [response] = parse_responses(transport.value())
    assert response.code == 413
    assert h.sink.records == [] and h.stats.dropped == 1
    channel.dataReceived(raw_request("POST", "/", b"next\n"))  # the connection is still good
    assert [r.code for r in parse_responses(transport.value())] == [413, 200]


def test_chunked_body_over_the_limit_is_cut_and_413() -> None:
    h = Harness(http_max_body=1000)
    response = h.post(b"z\n" * 2000, chunked=True)
    assert response.code == 413
    assert h.sink.records == []


def test_body_exactly_at_the_limit_is_accepted() -> None:
    h = Harness(http_max_body=100)
    assert h.post(b"a" * 99 + b"\n").code == 200
    assert h.post(gzipped(b"a" * 99 + b"\n"), headers={"Content-Encoding": "gzip"}).code == 200


# -- malformed JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "body", "where"),
    [
        ("application/x-ndjson", b'{"a":1}\n{"b":2}\n{"c":\n', "line 3"),
        ("application/x-ndjson", b'{"a":1}\n[1]\n', "line 2: expected a JSON object, not an array"),
        ("application/json", b'[{"a":1}, {"b":2}, 7]', "element 2"),
        ("application/json", b'[{"a":1},\n {"b":}]', "line 2 column"),
        ("application/json", b'"just a string"', "expected a JSON object or array"),
        ("application/json", b'{"n": NaN}', "NaN is not JSON"),
        ("application/json", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        ("application/x-ndjson", b'{"a":1}\n{"b":"\xff"}\n', "line 2: not UTF-8"),
    ],
)
def test_malformed_json_is_400_naming_where_and_posts_nothing(
    ctype: str, body: bytes, where: str
) -> None:
    h = Harness()
    response = h.post(body, headers={"Content-Type": ctype})
    assert response.code == 400
    assert response.json()["status"] == "malformed"
    assert where in response.json()["error"]
    assert h.sink.records == [] and h.sink.batches == []
    assert h.stats.malformed == 1 and h.stats.received == 0


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic c2VjcmV0", "Bearer", "Bearer s3cret-tokenX", "s3cret-token"],
)
def test_missing_or_wrong_token_is_401(authorization: str | None) -> None:
    h = Harness(http_token="s3cret-token")
    headers = {"Authorization": authorization} if authorization else {}
    response = h.post(b"hello\n", headers=headers)
    assert response.code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert h.sink.records == []


def test_correct_token_is_200() -> None:
    h = Harness(http_token="s3cret-token")
    for scheme in ("Bearer", "bearer"):
        response = h.post(b"hello\n", headers={"Authorization": f"{scheme} s3cret-token"})
        assert response.code == 200
    assert h.sink.frames == [b"hello", b"hello"]


def test_token_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(http_module.hmac, "compare_digest", spy)
    h = Harness(http_token="s3cret-token")
    assert h.post(b"x\n", headers={"Authorization": "Bearer guess"}).code == 401
    assert h.post(b"x\n", headers={"Authorization": "Bearer s3cret-token"}).code == 200
    assert calls == [(b"guess", b"s3cret-token"), (b"s3cret-token", b"s3cret-token")]


def test_unauthenticated_body_is_not_kept() -> None:
    h = Harness(http_token="t")
    channel, _ = h.connect()
    channel.dataReceived(raw_request("POST", "/", b"x" * 5000)[:-4000])
    assert h.requests[0].content.tell() == 0


def test_health_needs_no_token() -> None:
    h = Harness(http_token="t")
    assert h.request("GET", "/health").code == 200


# -- flow control -------------------------------------------------------------------------------


def test_pause_mid_request_delays_response_until_resume() -> None:
    h = Harness(RecordingSink(pause_after=2))
    channel, transport = h.connect()
    body = b"".join(b"m%d\n" % i for i in range(5))
    channel.dataReceived(raw_request("POST", "/", body))
    assert h.sink.frames == [b"m0", b"m1"]
    assert h.sink.closed_at() == [2]  # the batch is closed before waiting
    assert transport.value() == b""  # no answer yet
    assert transport.producerState == "paused"  # not read, so not idle, while it waits

    h.sink.resume()
    assert h.sink.frames == [b"m%d" % i for i in range(5)]
    assert h.sink.closed_at() == [2, 5]
    [response] = parse_responses(transport.value())
    assert response.json() == {"status": "received", "messages": 5}
    assert transport.producerState == "producing"


def test_pause_twice_in_one_request() -> None:
    h = Harness(RecordingSink(pause_after=1))
    channel, transport = h.connect()
    channel.dataReceived(raw_request("POST", "/", b"a\nb\nc\n"))
    h.sink.pause_after = 2
    h.sink.resume()
    assert h.sink.frames == [b"a", b"b"] and transport.value() == b""
    h.sink.resume()
    assert h.sink.frames == [b"a", b"b", b"c"]
    assert parse_responses(transport.value())[0].code == 200


def test_other_requests_while_one_waits_get_503_and_pipelined_ones_wait() -> None:
    h = Harness(RecordingSink(pause_after=1))
    channel, transport = h.connect()
    first = raw_request("POST", "/", b"a\nb\n")
    second = raw_request("POST", "/", b"c\n")
    channel.dataReceived(first + second)  # pipelined on one connection
    assert h.sink.frames == [b"a"]

    h.sink.paused = False  # the sink takes messages again, but has not resumed us yet
    other = h.send(raw_request("POST", "/", b"x\ny\n"), port=40001)
    assert [r.code for r in other] == [503]
    assert h.stats.dropped == 2

    h.sink.resume()
    responses = parse_responses(transport.value())
    assert [r.json()["messages"] for r in responses] == [2, 1]
    assert h.sink.frames == [b"a", b"b", b"c"]


def test_post_while_paused_is_503_with_retry_after_and_counted_dropped() -> None:
    h = Harness()
    h.sink.pause()
    response = h.post(b"a\nb\nc\n")
    assert response.code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"status": "flow-controlled"}
    assert h.sink.records == []
    assert h.stats.dropped == 3 and h.stats.received == 0
    h.sink.resume()
    assert h.post(b"a\n").code == 200


def test_site_registers_its_producer_while_listening() -> None:
    h = Harness()
    assert h.sink.producers == [h.site.producer]
    h.site.doStop()
    assert h.sink.producers == []


def test_stop_producing_mid_request_answers_503_and_counts_the_rest() -> None:
    h = Harness(RecordingSink(pause_after=1))
    channel, transport = h.connect()
    channel.dataReceived(raw_request("POST", "/", b"a\nb\nc\n"))
    h.site.producer.stopProducing()
    [response] = parse_responses(transport.value())
    assert response.code == 503 and response.json()["status"] == "stopping"
    assert h.stats.dropped == 2


def test_client_gone_while_waiting_messages_still_posted() -> None:
    h = Harness(RecordingSink(pause_after=1))
    channel, transport = h.connect()
    channel.dataReceived(raw_request("POST", "/", b"a\nb\n"))
    channel.connectionLost(ConnectionError("client went away"))
    h.sink.resume()
    assert h.sink.frames == [b"a", b"b"]
    assert transport.value() == b""


# -- health, routing ----------------------------------------------------------------------------


def test_health_ok_then_503_while_paused() -> None:
    h = Harness()
    response = h.request("GET", "/health")
    assert (response.code, response.json()) == (200, {"status": "ok"})
    h.sink.pause()
    response = h.request("GET", "/health")
    assert response.code == 503
    assert response.json() == {"status": "flow-controlled"}


def test_health_head_has_no_body() -> None:
    h = Harness()
    channel, transport = h.connect()
    channel.dataReceived(raw_request("HEAD", "/health"))
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert transport.value().endswith(b"\r\n\r\n")


def test_wrong_methods_are_405_with_allow() -> None:
    h = Harness()
    response = h.request("GET", "/")
    assert (response.code, response.headers["allow"]) == (405, "POST")
    response = h.request("PUT", "/anything", b"x")
    assert (response.code, response.headers["allow"]) == (405, "POST")
    response = h.request("POST", "/health", b"x")
    assert (response.code, response.headers["allow"]) == (405, "GET, HEAD")
    assert h.sink.records == []


def test_path_prefix_and_404() -> None:
    h = Harness(http_path="/ingest/")
    assert h.request("POST", "/ingest", b"a\n").code == 200
    assert h.request("POST", "/ingest/app1?x=1", b"b\n").code == 200
    assert h.request("POST", "/ingestx", b"c\n").code == 404
    assert h.request("POST", "/", b"d\n").code == 404
    assert h.request("GET", "/health").code == 404
    assert h.request("GET", "/ingest/health").json() == {"status": "ok"}
    assert h.sink.frames == [b"a", b"b"]


# -- pairs, origin, batches, errors, logging ------------------------------------------------------


def test_query_path_and_chosen_headers_become_pairs() -> None:
    h = Harness(http_headers=("X-Tenant", "user-agent"))
    response = h.request(
        "POST",
        "/app%201/x?host=web1&tag=a&tag=b&empty=",
        b"m\n",
        headers={"X-Tenant": "acme", "User-Agent": "curl/8", "X-Other": "no"},
    )
    assert response.code == 200
    assert h.sink.records[0].extra == {
        "http.path": "/app 1/x",
        "http.query.host": "web1",
        "http.query.tag": "b",
        "http.query.empty": "",
        "http.header.x-tenant": "acme",
        "http.header.user-agent": "curl/8",
    }


def test_origin_names_transport_listener_and_peer() -> None:
    clock, sink, stats = Clock(), RecordingSink(), ListenerStats("web")
    site = HTTPIngestSite(clock, sink, ListenerOptions(), stats, transport="https")
    site.doStart()
    channel = site.buildProtocol(None)
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "10.0.0.1", 8443),
        peerAddress=IPv4Address("TCP", "198.51.100.4", 51515),
    )
    channel.makeConnection(transport)
    channel.dataReceived(raw_request("POST", "/", b"m\n"))
    assert sink.records[0].origin == Origin(
        "https", stats, "198.51.100.4", 51515, 8443, pairs={"http.path": "/"}
    )


def test_one_close_batch_per_request() -> None:
    h = Harness()
    h.post(b"a\nb\n")
    h.post(b"c\n")
    h.post(b"\n\n")  # no messages, nothing to close
    assert h.sink.closed_at() == [2, 3]


def test_sink_exception_is_500_logged_and_serving_goes_on() -> None:
    h = Harness(RecordingSink(fail_after=1))
    with capturedLogs() as events:
        response = h.post(b"a\nb\nc\n")
    assert response.code == 500
    assert h.sink.frames == [b"a"]
    # a sink that raises has not said what it took: the request's messages count as dropped
    assert h.stats.dropped == 3
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["log_level"] == LogLevel.error
    assert h.post(b"d\n").code == 200
    assert h.sink.frames == [b"a", b"d"]


def test_4xx_logging_is_rate_limited_per_cause() -> None:
    h = Harness(http_token="t")
    with capturedLogs() as events:
        for _ in range(20):
            h.post(b"x\n")  # 401
        h.post(b"x\n", headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
        h.clock.advance(10)  # the 19 held 401s are logged when their interval ends
        h.clock.advance(1)
        h.post(b"x\n")  # held: a line of its cause was logged a second ago
        h.site.bad_requests.flush()
    lines = [e for e in events if e.get("cause") in ("unauthorized", "malformed")]
    assert [(e["cause"], e["count"]) for e in lines] == [
        ("unauthorized", 1),
        ("malformed", 1),
        ("unauthorized", 19),
        ("unauthorized", 1),
    ]
    assert "(19 times in the last 10.0s)" in formatEvent(lines[2])


# -- real sockets: curl and Agent ---------------------------------------------------------------

CURL = "/usr/bin/curl"
# curl is no part of a minimal Debian: without it these tests skip (.ci/run installs it)
needs_curl = pytest.mark.skipif(not os.path.exists(CURL), reason=f"no {CURL}")


@pytest.fixture
def live() -> Any:
    from twisted.internet import reactor

    sink = RecordingSink()
    stats = ListenerStats("http-live")
    options = ListenerOptions(http_token="tok", http_headers=("X-Tenant",), http_max_body=4096)
    site = HTTPIngestSite(reactor, sink, options, stats)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    yield reactor, sink, stats, url
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@defer.inlineCallbacks
def curl(reactor: Any, *args: str) -> Any:
    out, err, code = yield getProcessOutputAndValue(
        CURL, ("-sS", "--max-time", "10", "-w", "\n%{http_code}", *args), reactor=reactor
    )
    assert code == 0, err
    body, _, status = out.rpartition(b"\n")
    return int(status), body


@needs_curl
@pytest_twisted.inlineCallbacks
def test_curl_text_ndjson_gzip_token(live: Any, tmp_path: Any) -> None:
    reactor, sink, stats, url = live
    auth = ("-H", "Authorization: Bearer tok")

    status, body = yield curl(reactor, *auth, "--data-binary", "<13>one\n<13>two\n", url + "/")
    assert (status, json.loads(body)) == (200, {"status": "received", "messages": 2})

    ndjson = ("-H", "Content-Type: application/x-ndjson", "-H", "X-Tenant: acme")
    status, _ = yield curl(reactor, *auth, *ndjson, "--data-binary", '{"a":1}\n{"b":2}', url)
    assert status == 200

    packed = tmp_path / "body.gz"
    packed.write_bytes(gzipped(b"<13>zipped\n"))
    gz = ("-H", "Content-Encoding: gzip", "--data-binary", f"@{packed}")
    status, _ = yield curl(reactor, *auth, *gz, url + "/?source=curl")
    assert status == 200

    status, _ = yield curl(reactor, "--data-binary", "x", url)
    assert status == 401

    big = tmp_path / "big"
    big.write_bytes(b"y" * 100_000)
    status, _ = yield curl(reactor, *auth, "--data-binary", f"@{big}", url)
    assert status == 413
    huge = tmp_path / "huge"  # over 1 MiB: curl sends `Expect: 100-continue` and waits
    huge.write_bytes(b"y" * 3_000_000)
    status, _ = yield curl(reactor, *auth, "--data-binary", f"@{huge}", url)
    assert status == 413

    status, body = yield curl(reactor, url + "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    assert sink.frames == [b"<13>one", b"<13>two", b'{"a":"1"}', b'{"b":"2"}', b"<13>zipped"]
    assert sink.records[2].extra["http.header.x-tenant"] == "acme"
    assert sink.records[4].extra["http.query.source"] == "curl"
    assert sink.records[0].origin.peer_host == "127.0.0.1"
    assert sink.closed_at() == [2, 4, 5]
    assert stats.dropped == 2


@needs_curl
@pytest_twisted.inlineCallbacks
def test_curl_flow_control_503_then_delayed_200(live: Any) -> None:
    reactor, sink, _, url = live
    auth = ("-H", "Authorization: Bearer tok")
    sink.pause()
    status, body = yield curl(reactor, *auth, "-D", "-", "--data-binary", "a\n", url)
    assert status == 503 and b"Retry-After: 1" in body
    sink.resume()

    sink.pause_after = 1
    sink.on_pause = lambda: reactor.callLater(0.3, sink.resume)
    started = reactor.seconds()
    status, _ = yield curl(reactor, *auth, "--data-binary", "a\nb\nc\n", url)
    assert status == 200
    assert reactor.seconds() - started >= 0.25
    assert sink.frames == [b"a", b"b", b"c"]


@needs_curl
@pytest_twisted.inlineCallbacks
def test_concurrent_posts_across_a_pause_post_exactly_the_accepted_ones(live: Any) -> None:
    """Whatever interleaving the sockets produce: a request answered 200 had all its messages
    posted, in order; one answered 503 had none; nothing was posted while paused."""
    reactor, sink, stats, url = live
    sink.pause_after = 3
    sink.on_pause = lambda: reactor.callLater(1.0, sink.resume)
    auth = ("-H", "Authorization: Bearer tok")
    bodies = [b"r%d-%d\n" % (i, j) for i in range(12) for j in range(2)]
    runs = [
        curl(reactor, *auth, "--data-binary", (bodies[2 * i] + bodies[2 * i + 1]).decode(), url)
        for i in range(12)
    ]
    results = yield defer.gatherResults(runs).addTimeout(20, reactor)
    codes = [status for status, _ in results]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes
    accepted = [i for i, code in enumerate(codes) if code == 200]
    assert sorted(sink.frames) == sorted(b"r%d-%d" % (i, j) for i in accepted for j in (0, 1))
    for i in accepted:
        assert sink.frames.index(b"r%d-0" % i) + 1 == sink.frames.index(b"r%d-1" % i)
    assert stats.dropped == 2 * codes.count(503)


# Twisted's own readBody warns about Agent's transport proxy; not ours to fix.
@pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")
@pytest_twisted.inlineCallbacks
def test_agent_concurrent_requests_on_persistent_connections(live: Any) -> None:
    reactor, sink, _, url = live
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    agent = Agent(reactor, pool=pool)
    headers = Headers({b"Authorization": [b"Bearer tok"]})

    @defer.inlineCallbacks
    def one(i: int) -> Any:
        from twisted.web.client import FileBodyProducer

        body = FileBodyProducer(io.BytesIO(b"m%d-a\nm%d-b\n" % (i, i)))
        response = yield agent.request(b"POST", url.encode() + b"/", headers, body)
        payload = yield readBody(response)
        return response.code, json.loads(payload)

    try:
        results = yield defer.gatherResults([one(i) for i in range(40)]).addTimeout(20, reactor)
    finally:
        yield pool.closeCachedConnections()
    assert results == [(200, {"status": "received", "messages": 2})] * 40
    assert sorted(sink.frames) == sorted(
        b"m%d-%s" % (i, s) for i in range(40) for s in (b"a", b"b")
    )
    for i in range(40):  # each request's messages in order
        assert sink.frames.index(b"m%d-a" % i) + 1 == sink.frames.index(b"m%d-b" % i)
    assert len(sink.batches) == 40


class Collect(protocol.Protocol):
    def __init__(self, want: int) -> None:
        self.data = b""
        self.want = want
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(parse_responses(self.data)) >= self.want and not self.done.called:
            self.done.callback(self.data)


@pytest_twisted.inlineCallbacks
def test_pipelined_requests_on_one_socket(live: Any) -> None:
    reactor, sink, _, url = live
    port = int(url.rsplit(":", 1)[1])
    auth = {"Authorization": "Bearer tok"}
    wire = b"".join(
        [
            raw_request("POST", "/", b"p1\n", headers=auth),
            raw_request("GET", "/health"),
            raw_request("POST", "/", b'{"p":2}', headers={**auth, "Content-Type": "x/y+json"}),
            raw_request("POST", "/", b"p3\n", headers=auth),
        ]
    )
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = yield endpoint.connect(protocol.Factory.forProtocol(lambda: Collect(4)))
    client.transport.write(wire)
    try:
        data = yield client.done.addTimeout(10, reactor)
    finally:
        client.transport.loseConnection()
    responses = parse_responses(data)
    assert [r.code for r in responses] == [200, 200, 200, 200]
    assert responses[1].json() == {"status": "ok"}
    assert sink.frames == [b"p1", b'{"p":"2"}', b"p3"]


# -- acknowledgement mode (http-ack): answered once every message is stored ---------------------


@pytest.fixture
def acking() -> Any:
    from twisted.internet import reactor

    sink = testing.AcknowledgingSink(acknowledge="manual", refuse=[b"<13>unstorable"])
    stats = ListenerStats("http-ack")
    options = ListenerOptions(http_ack=True, http_ack_timeout=1.5)
    site = HTTPIngestSite(reactor, sink, options, stats)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield reactor, sink, stats, f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def _sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@needs_curl
@pytest_twisted.inlineCallbacks
def test_ack_mode_answers_once_every_message_is_stored(acking: Any) -> Any:
    reactor, sink, _, url = acking
    answer = curl(reactor, "--data-binary", "<13>a\n<13>b\n<13>c\n", url)
    answered: list[Any] = []
    answer.addCallback(lambda result: answered.append(result) or result)
    yield _sleep(reactor, 0.3)
    assert sink.messages == [b"<13>a", b"<13>b", b"<13>c"]
    assert answered == []  # posted, not stored: the client waits
    sink.acknowledge([2, 0])  # out of order, and not all
    yield _sleep(reactor, 0.1)
    assert answered == []
    sink.acknowledge([1])
    status, body = yield answer
    assert (status, json.loads(body)) == (200, {"status": "stored", "messages": 3})


@needs_curl
@pytest_twisted.inlineCallbacks
def test_ack_mode_a_message_not_stored_answers_500(acking: Any) -> Any:
    reactor, sink, _, url = acking
    answer = curl(reactor, "--data-binary", "<13>fine\n<13>unstorable\n", url)
    yield _sleep(reactor, 0.2)
    sink.acknowledge()
    status, body = yield answer
    assert status == 500
    assert json.loads(body) == {"status": "not-stored", "messages": 2, "lost": 1}


@needs_curl
@pytest_twisted.inlineCallbacks
def test_ack_mode_times_out_with_503_and_late_acknowledgements_are_harmless(
    acking: Any,
) -> Any:
    reactor, sink, _, url = acking
    status, body = yield curl(reactor, "-D", "-", "--data-binary", "<13>stalled\n", url)
    assert status == 503 and b"Retry-After: 1" in body
    assert b'"status":"not-acknowledged"' in body and b"http-ack-timeout" in body
    sink.acknowledge()  # the destination comes back: nothing to answer any more
    reactor.callLater(0.2, sink.acknowledge)  # acknowledged while curl waits
    status, body = yield curl(reactor, "--data-binary", "<13>next\n", url)  # still serving
    assert (status, json.loads(body)) == (200, {"status": "stored", "messages": 1})
    assert sink.messages == [b"<13>stalled", b"<13>next"]


@needs_curl
@pytest_twisted.inlineCallbacks
def test_ack_mode_with_a_sink_that_cannot_acknowledge_answers_when_posted() -> Any:
    from twisted.internet import reactor

    sink = testing.RecordingSink()
    options = ListenerOptions(http_ack=True, http_ack_timeout=0.5)
    site = HTTPIngestSite(reactor, sink, options, ListenerStats("http-ack-plain"))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}"
        status, body = yield curl(reactor, "--data-binary", "<13>a\n", url)
        assert (status, json.loads(body)) == (200, {"status": "received", "messages": 1})
    finally:
        yield port.stopListening()


@needs_curl
@pytest_twisted.inlineCallbacks
def test_ack_mode_acknowledged_from_inside_the_post_answers_200() -> Any:
    from twisted.internet import reactor

    sink = testing.AcknowledgingSink(acknowledge="at-once")
    options = ListenerOptions(http_ack=True)
    site = HTTPIngestSite(reactor, sink, options, ListenerStats("http-ack-at-once"))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}"
        status, body = yield curl(reactor, "--data-binary", "<13>a\n<13>b\n", url)
        assert (status, json.loads(body)) == (200, {"status": "stored", "messages": 2})
        status, body = yield curl(reactor, "--data-binary", "", url)
        assert (status, json.loads(body)) == (200, {"status": "received", "messages": 0})
    finally:
        yield port.stopListening()

"""Fuzzing (hypothesis) of everything that reads network bytes: the framing decoder, the stream
protocol around it, the parsers and the message a SyslogSource builds, the HTTP body reader and
body splitting, and the HTTP site end to end. Each test says:

1. **no exception escapes**, whatever the bytes and however they are cut;
2. **memory stays within the configured limits** (decoder buffer <= max-message-size + 11,
   kept HTTP body <= http-max-body, parsed pairs at most a small multiple of the frame, no
   pair name syslog-ng would refuse);
3. **every input byte is accounted for**: delivered, or counted (overhead, truncated/discarded,
   malformed, refused), nothing lost or counted twice.

CI runs a short profile (``FUZZ_EXAMPLES``, default 150 examples per test).
``HYPOTHESIS_PROFILE=long`` makes it 100 000 per test; ``tests/soak/fuzz_long.py`` runs that and
prints the figures (docs/reliability.md has them).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure

from syslogsrc.framing import FRAMINGS, FrameDecoder
from syslogsrc.httpbody import BodyDecoder, MalformedBody, split_body
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.parsing import FORMATS, MAX_NAME_BYTES, ParsedMessage, parse
from syslogsrc.protocols.http import HTTPIngestSite
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.source import SyslogSource
from syslogsrc.testing import RecordingSink, parse_responses

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or (100_000 if LONG else 150))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # the long run must not be cut short by hypothesis' own run-time limits
    stateful_step_count=50,
)

# ---------------------------------------------------------------------------------------------
# hostile syslog streams

HEADERS = st.sampled_from(
    [b"9999999999 ", b"1000000000000 ", b"0 ", b"01 ", b"12", b"4294967296 ", b"1 ", b"99 ",
     b"-1 ", b"+5 ", b"1_0 ", b"\xd9\xa3 ", b"65536 ", b"65537 ", b"12345678901", b"7\t"]
)  # fmt: skip
PIECES = st.one_of(
    st.binary(max_size=80).map(lambda m: b"%d %s" % (len(m), m)),
    st.binary(max_size=60).map(lambda m: m + b"\n"),
    st.binary(max_size=60).map(lambda m: m + b"\r\n"),
    st.binary(max_size=60).map(lambda m: m + b"\0"),
    HEADERS,
    st.sampled_from([b"\n", b"\r\n", b"\r", b"\0", b" ", b"\x16\x03\x01", b"\xff\xfe", b"\xc3("]),
    st.binary(max_size=40),
    st.integers(1, 3000).map(lambda n: b"x" * n),  # longer than small max sizes
)
STREAMS = st.one_of(st.binary(max_size=400), st.lists(PIECES, max_size=16).map(b"".join))
MAX_SIZES = st.one_of(st.integers(1, 64), st.sampled_from([100, 1000, 65536]))
DECODER_OPTIONS = st.fixed_dictionaries(
    {
        "framing": st.sampled_from(FRAMINGS),
        "max_size": MAX_SIZES,
        "on_error": st.sampled_from(("resync", "close")),
    }
)


@st.composite
def chunked(draw: Any, streams: Any = STREAMS) -> tuple[bytes, list[bytes]]:
    stream = draw(streams)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=16))))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _accounted(decoder: FrameDecoder, frames: list[bytes]) -> bool:
    delivered = sum(map(len, frames))
    return (
        decoder.bytes
        == delivered + decoder.overhead_bytes + decoder.discarded_bytes + decoder.buffered
    )


@FUZZ
@given(chunked(), DECODER_OPTIONS)
def test_fuzz_frame_decoder(stream_and_chunks: tuple[bytes, list[bytes]], options: dict) -> None:
    stream, chunks = stream_and_chunks
    max_size = options["max_size"]
    decoder = FrameDecoder(**options)
    frames: list[bytes] = []
    for chunk in chunks:
        frames += decoder.feed(chunk)
        assert decoder.buffered <= max_size + 11  # memory: one message and a header at most
        assert _accounted(decoder, frames)  # every byte: delivered, overhead, discarded, held
    frames += decoder.finish()
    assert decoder.buffered == 0 and _accounted(decoder, frames)
    assert decoder.bytes == len(stream)
    assert all(0 < len(f) <= max_size for f in frames)
    whole = FrameDecoder(**options)
    assert whole.feed(stream) + whole.finish() == frames  # however it was cut


@FUZZ
@given(chunked(), DECODER_OPTIONS, st.lists(st.integers(1, 4), max_size=6), st.data())
def test_fuzz_stream_protocol_posts_every_frame_once(
    stream_and_chunks: tuple[bytes, list[bytes]], options: dict, windows: list[int], data: Any
) -> None:
    stream, chunks = stream_and_chunks
    framing, max_size = options["framing"], max(options["max_size"], 64)
    window = data.draw(st.one_of(st.none(), st.integers(1, 5)))
    sink = RecordingSink(window=window)
    stats = ListenerStats(name="tcp:fuzz")
    listener_options = ListenerOptions(framing=framing, max_message_size=max_size)
    factory = SyslogStreamFactory(Clock(), sink, listener_options, stats)
    peer = IPv4Address("TCP", "192.0.2.1", 1234)
    protocol = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    fed = 0
    with capturedLogs() as events:
        protocol.makeConnection(transport)
        for chunk in chunks:
            if transport.disconnecting:
                break
            protocol.dataReceived(chunk)
            fed += len(chunk)
            if sink.paused and data.draw(st.booleans()):
                sink.resume()
        protocol.connectionLost(Failure(ConnectionError("gone")))
        while sink.producers:
            sink.resume()
    assert not [e for e in events if e.get("log_failure") is not None]  # no exception
    assert sink.posted_while_paused == []
    assert stats.bytes == fed
    if stats.refused:  # a TLS hello on a plain port: refused, nothing posted
        assert framing == "auto" and chunks[0][:2] == b"\x16\x03"
        assert stats.refused == 1 and sink.messages == [] and stats.received == 0
        return
    reference = FrameDecoder(framing=framing, max_size=max_size)
    expected = reference.feed(stream) + reference.finish()
    assert sink.messages == expected  # every frame, once, in order
    assert stats.received == stats.posted == len(expected) and stats.dropped == 0
    assert (stats.truncated, stats.malformed) == (reference.truncated, reference.invalid)


# ---------------------------------------------------------------------------------------------
# parsers, and the message a SyslogSource builds

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=80), children, max_size=4)
    ),
    max_leaves=20,
)
HEADS = [
    b"1 2024-05-01T10:00:00Z h app 1 id - ",
    b"1 - - - - - ",
    b"Nov 24 06:00:00 h app[1]: ",
    b"2024-05-01T10:00:00+02:00 h p: ",
    b"*Mar  1 00:00:01.123: ",
    b"1 2024-02-30T00:00:00Z ",
    b'1 - h a p m [x@1 a="\\]\\"" b="\xff"][y] ',
    b"Nov 24 2026 06:00:00: ",
    b"",
]
SYSLOG_FRAMES = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda pri, head, msg: pri + head + msg,
        st.sampled_from([b"<13>", b"<191>", b"<192>", b"<0>", b"<", b"<1a>", b"", b"<\xff>"]),
        st.sampled_from(HEADS),
        st.binary(max_size=200),
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=300), JSON_VALUES, max_size=5).map(
        lambda d: json.dumps(d, ensure_ascii=False).encode()
    ),
)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))


@FUZZ
@given(SYSLOG_FRAMES, st.sampled_from(FORMATS))
def test_fuzz_parsers(frame: bytes, format: str) -> None:
    parsed = parse(frame, format)  # never raises
    names_and_values = 0
    for name, value in parsed.pairs.items():
        assert isinstance(value, str | bytes)
        assert 0 < _size(name) <= MAX_NAME_BYTES  # names syslog-ng accepts
        names_and_values += _size(name) + _size(value)
    # memory: a small multiple of the frame (names repeat their dotted prefixes, at most 255
    # bytes each, for members of at least 6 bytes: under 50 times; fixed names add a little)
    assert names_and_values <= 50 * len(frame) + 1024
    assert 0 <= parsed.pri <= 191 or parsed.format == "raw"
    if parsed.format == "raw":  # nothing else parsed it: the frame is the message, whole
        message = parsed.pairs["MESSAGE"]
        text = message if isinstance(message, bytes) else message.encode("utf-8")
        assert frame.startswith(text) and frame[len(text) :].strip(b"\r\n\0") == b""


@FUZZ
@given(SYSLOG_FRAMES, st.sampled_from([*FORMATS, None]), st.booleans())
def test_fuzz_source_builds_a_message_from_anything(
    frame: bytes, format: str | None, native: bool
) -> None:
    source = SyslogSource()
    source.configure({"listen": "tcp:5514", "parser": "native" if native else "syslogsrc"})
    from syslogsrc.emulation import ParseOptions

    source.parse_options = ParseOptions("auto")
    stats = ListenerStats(name="tcp:5514")
    origin = Origin("tcp", stats, "192.0.2.1", 5, 5514, format=format)
    msg = source.build_message(frame, origin)
    assert msg is not None


def test_json_names_syslog_ng_refuses_are_left_out_and_do_not_amplify() -> None:
    # A 64 kB object made of one 30 kB key holding 3 500 members flattened into 3 500 names of
    # 30 kB each: 105 MB, for names syslog-ng refuses anyway (with an error line per name).
    key = "k" * 30_000
    doc = {key: {f"c{i}": 1 for i in range(3500)}, "ok": 1, "": 2, "é" * 200: 3}
    frame = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    parsed = parse(frame, "json")
    assert set(parsed.pairs) == {"ok", "MESSAGE"}
    assert parsed.pairs["MESSAGE"] == frame.decode()  # nothing lost: the object, whole
    assert parsed.tags == ("syslogsrc.json_bad_name",)
    assert parse(b'{"a": {"b": 1}}', "json").pairs == {"a.b": "1"}  # untouched otherwise


def test_json_constants_are_kept_as_written() -> None:
    # NaN and Infinity inside an array made the JSON parser raise (and the sink drop the frame)
    parsed = parse(b'{"0": [Infinity, -Infinity, NaN], "n": NaN}', "json")
    assert parsed.pairs == {"0": "[Infinity,-Infinity,NaN]", "n": "NaN"}


# ---------------------------------------------------------------------------------------------
# HTTP bodies

LIMITS = st.sampled_from([1, 10, 100, 1000, 65536])


@st.composite
def encoded_bodies(draw: Any) -> tuple[bytes, bytes | None, int | None]:
    """(wire body, what it decodes to or None if not decodable, wbits)"""
    plain = draw(st.one_of(st.binary(max_size=300), st.integers(0, 200_000).map(bytes)))
    coding = draw(st.sampled_from(["identity", "gzip", "deflate", "zlib-raw", "multi", "cut"]))
    if coding == "identity":
        return plain, plain, None
    if coding == "gzip":
        return gzip.compress(plain), plain, 16 + zlib.MAX_WBITS
    if coding == "deflate":
        return zlib.compress(plain), plain, 32 + zlib.MAX_WBITS
    if coding == "multi":  # several gzip members
        n = draw(st.integers(1, 4))
        return gzip.compress(plain) * n, plain * n, 16 + zlib.MAX_WBITS
    if coding == "cut":  # a gzip stream cut short
        wire = gzip.compress(plain)
        return wire[: draw(st.integers(0, len(wire) - 1))], None, 16 + zlib.MAX_WBITS
    return plain, None, draw(st.sampled_from([16 + zlib.MAX_WBITS, 32 + zlib.MAX_WBITS]))


@FUZZ
@given(encoded_bodies(), LIMITS, st.lists(st.integers(1, 5000), max_size=10))
def test_fuzz_http_body_reader(body: tuple, limit: int, sizes: list[int]) -> None:
    wire, decoded, wbits = body
    out = io.BytesIO()
    reader = BodyDecoder(out, limit, wbits)
    pos = 0
    for size in [*sizes, len(wire)]:
        reader.feed(wire[pos : pos + size])
        pos += size
        assert len(out.getvalue()) <= limit  # never more than the limit kept
        assert reader.decoded <= limit + 1
    reader.finish()
    kept = out.getvalue()
    if reader.rejection is None:
        # accepted: exactly the body (a "decodable" random body may still be valid zlib)
        assert decoded is None or kept == decoded
        assert len(kept) <= limit
    else:
        assert kept == b""
        assert reader.rejection.code in (400, 413)
        if decoded is not None and len(wire) <= limit and len(decoded) <= limit:
            raise AssertionError(f"refused a good body: {reader.rejection}")


MEDIA_TYPES = st.sampled_from(
    ["", "text/plain", "application/json", "application/x-ndjson", "application/jsonl",
     "application/problem+json"]
)  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(JSON_VALUES.map(json.dumps), max_size=5).map(lambda v: "\n".join(v).encode()),
)


@FUZZ
@given(MEDIA_TYPES, BODIES)
def test_fuzz_http_split_body(media_type: str, body: bytes) -> None:
    try:
        messages, truncated = split_body(media_type, body, 65536)
    except MalformedBody as e:
        assert str(e)
        return
    assert truncated == 0
    for message in messages:
        if isinstance(message, bytes):
            assert message.strip()
            if media_type in ("", "text/plain"):
                assert message in body  # a line, as sent
        else:  # a JSON object, parsed here once
            assert message.format == "json"
    if media_type == "application/x-ndjson":
        # the same messages as before the objects were parsed in the protocol: each object
        # decoded by json, re-encoded compact, and parsed again as a frame by the sink
        objects = [m for m in messages if not isinstance(m, bytes)]
        assert objects == [_as_before(line) for line in body.decode().split("\n") if line.strip()]


def _as_before(line: str) -> ParsedMessage:
    doc = json.loads(line)
    try:
        frame = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        frame = json.dumps(doc, separators=(",", ":")).encode("ascii")
    return parse(frame, "json")


@st.composite
def http_requests(draw: Any) -> bytes:
    # (no HEAD: its answer has a Content-Length and no body, which parse_responses cannot tell)
    method = draw(st.sampled_from([b"POST", b"GET", b"PUT", b"POST", b"\xff"]))
    path = draw(st.sampled_from([b"/", b"/x?a=1&a=2&%ff=%00", b"/health", b"//", b"/%", b"*"]))
    body, _, wbits = draw(encoded_bodies())
    coding = {None: None, 16 + zlib.MAX_WBITS: b"gzip", 32 + zlib.MAX_WBITS: b"deflate"}[wbits]
    headers = [b"Host: x"]
    media = draw(MEDIA_TYPES)
    if media:
        headers.append(b"Content-Type: " + media.encode())
    if coding:
        headers.append(b"Content-Encoding: " + coding)
    if draw(st.booleans()):
        extra = [b"Authorization: Bearer t0k", b"Authorization: x", b"X-Junk: \xff\xfe",
                 b"Content-Encoding: br"]  # fmt: skip
        headers.append(draw(st.sampled_from(extra)))
    if draw(st.booleans()):
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:7], body[7:]) if c)
        headers.append(b"Transfer-Encoding: chunked")
        wire_body = chunks + b"0\r\n\r\n"
    else:
        length = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        headers.append(b"Content-Length: %d" % max(length, 0))
        wire_body = body
    return method + b" " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + wire_body


@FUZZ
@given(
    st.lists(http_requests(), min_size=1, max_size=3),
    st.lists(st.integers(1, 4000), max_size=8),
    st.sampled_from([None, 1, 3]),
    st.booleans(),
)
def test_fuzz_http_site(
    requests: list[bytes], sizes: list[int], pause_after: int | None, token: bool
) -> None:
    limit = 5000
    sink = RecordingSink(window=pause_after)
    stats = ListenerStats("http-fuzz")
    options = ListenerOptions(http_max_body=limit, http_token="t0k" if token else None)
    clock = Clock()
    site = HTTPIngestSite(clock, sink, options, stats)
    site.doStart()
    peer = IPv4Address("TCP", "192.0.2.7", 40000)
    channel = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 80))
    wire = b"".join(requests)
    with capturedLogs() as events:
        channel.makeConnection(transport)
        pos = 0
        for size in [*sizes, len(wire)]:
            if transport.disconnecting or pos >= len(wire):
                break
            channel.dataReceived(wire[pos : pos + size])
            pos += size
            if sink.paused:
                sink.resume()
        while sink.paused:
            sink.resume()
        channel.connectionLost(Failure(ConnectionError("gone")))
        site.doStop()
    failures = [e for e in events if e.get("log_failure") is not None]
    assert not failures, failures[0]["log_failure"].getTraceback()
    assert not [e for e in events if e.get("log_level") == LogLevel.critical]
    responses = parse_responses(transport.value())
    assert {r.code for r in responses} <= {200, 400, 401, 404, 405, 413, 415, 503}
    ok = [r for r in responses if r.code == 200 and r.body and r.json()["status"] == "received"]
    # every message of a request answered 200 was posted, and nothing else was (the sink
    # never fails here and is always resumed, so an accepted request is posted whole)
    assert sum(r.json()["messages"] for r in ok) == len(sink.posts) == stats.received
    assert stats.posted == 0 or stats.posted == len(sink.posts)
    assert all(type(m) is not bytes or len(m) <= options.max_message_size for m in sink.messages)
    for request in getattr(channel, "_channel", channel).requests:  # none kept over the limit
        if request.content is not None and not request.content.closed:
            assert len(request.content.getvalue()) <= limit

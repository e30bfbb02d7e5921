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
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.parsing import FORMATS, MAX_NAME_BYTES, parse
from syslogsrc.protocols.http import HTTPIngestSite, _BodyReader, _MalformedBody, _split_body
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.source import SyslogSource
from test_protocols_http import RecordingSink, parse_responses
from test_protocols_stream import FakeSink

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


# ---------------------------------------------------------------------------------------------
# parsers, and the message a SyslogSource builds

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=80), children, max_size=4),
    max_leaves=20,
)
SYSLOG_FRAMES = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda pri, head, msg: pri + head + msg,
        st.sampled_from([b"<13>", b"<191>", b"<192>", b"<0>", b"<", b"<1a>", b"", b"<\xff>"]),
        st.sampled_from(
            [b"1 2024-05-01T10:00:00Z h app 1 id - ", b"1 - - - - - ", b"Nov 24 06:00:00 h app[1]: ",
             b"2024-05-01T10:00:00+02:00 h p: ", b"*Mar  1 00:00:01.123: ", b"1 2024-02-30T00:00:00Z ",
             b'1 - h a p m [x@1 a="\\]\\"" b="\xff"][y] ', b"Nov 24 2026 06:00:00: ", b""]
        ),  # fmt: skip
        st.binary(max_size=200),
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=300), JSON_VALUES, max_size=5).map(
        lambda d: json.dumps(d, ensure_ascii=False).encode()
    ),
)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))


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


MEDIA_TYPES = st.sampled_from(
    ["", "text/plain", "application/json", "application/x-ndjson", "application/jsonl",
     "application/problem+json"]
)  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(JSON_VALUES.map(json.dumps), max_size=5).map(lambda v: "\n".join(v).encode()),
)


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
        headers.append(draw(st.sampled_from([b"Authorization: Bearer t0k", b"Authorization: x",
                                             b"X-Junk: \xff\xfe", b"Content-Encoding: br"])))  # fmt: skip
    if draw(st.booleans()):
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:7], body[7:]) if c)
        headers.append(b"Transfer-Encoding: chunked")
        wire_body = chunks + b"0\r\n\r\n"
    else:
        length = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        headers.append(b"Content-Length: %d" % max(length, 0))
        wire_body = body
    return method + b" " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + wire_body

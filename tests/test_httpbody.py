"""The sans-IO HTTP body core (syslogsrc.httpbody): decoding within a limit, and splitting a
body into messages. The listener's own behaviour (replies, flow control) is in
test_protocols_http.py; these need no Twisted."""

from __future__ import annotations

import gzip
import io
import itertools
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syslogsrc.httpbody import BodyDecoder, MalformedBody, split_body
from syslogsrc.parsing import ParsedMessage, parse


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def test_decoder_never_expands_a_bomb_past_the_limit() -> None:
    out = io.BytesIO()
    reader = BodyDecoder(out, limit=4096, wbits=16 + zlib.MAX_WBITS)
    bomb = gzipped(b"\0" * (50 * 1024 * 1024))
    largest = 0
    for i in range(0, len(bomb), 1000):
        reader.feed(bomb[i : i + 1000])
        largest = max(largest, reader.decoded)
    reader.finish()
    assert reader.rejection is not None and reader.rejection.code == 413
    assert largest <= 4096 + 1
    assert out.getvalue() == b""


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    cuts=st.lists(st.integers(0, 1500), max_size=12),
    limit=st.integers(1, 1200),
    compress=st.booleans(),
)
def test_decoder_any_chunking_keeps_exactly_the_body_or_rejects_it(
    lines: list[bytes], cuts: list[int], limit: int, compress: bool
) -> None:
    decoded = b"\n".join(lines)
    wire = gzipped(decoded) if compress else decoded
    out = io.BytesIO()
    reader = BodyDecoder(out, limit, 16 + zlib.MAX_WBITS if compress else None)
    edges = [0, *sorted(c for c in cuts if c < len(wire)), len(wire)]
    for start, end in itertools.pairwise(edges):
        reader.feed(wire[start:end])
    reader.finish()
    if len(decoded) > limit or len(wire) > limit:
        assert reader.rejection is not None and reader.rejection.code == 413
        assert out.getvalue() == b""
    else:
        assert reader.rejection is None
        assert out.getvalue() == decoded


def test_several_gzip_members_are_one_body() -> None:
    out = io.BytesIO()
    decoder = BodyDecoder(out, 1000, 16 + zlib.MAX_WBITS)
    decoder.feed(gzipped(b"<13>a\n") + gzipped(b"<13>b\n"))
    decoder.finish()
    assert decoder.rejection is None and out.getvalue() == b"<13>a\n<13>b\n"


def test_a_stream_cut_short_or_corrupt_is_400() -> None:
    for wire in (gzipped(b"<13>a\n" * 100)[:-9], b"\x1f\x8bnot gzip at all"):
        decoder = BodyDecoder(io.BytesIO(), 10_000, 16 + zlib.MAX_WBITS)
        decoder.feed(wire)
        decoder.finish()
        assert decoder.rejection is not None and decoder.rejection.code == 400


def test_lines_are_raw_frames_crlf_and_blank_lines_dropped() -> None:
    messages, truncated = split_body("text/plain", b"<13>a\r\n\n  \n<13>b\n<13>c", 65536)
    assert messages == [b"<13>a", b"<13>b", b"<13>c"] and truncated == 0
    messages, truncated = split_body("text/plain", b"x" * 10 + b"\nshort", 4)
    assert messages == [b"xxxx", b"shor"] and truncated == 2


def test_ndjson_objects_are_parsed_once_as_their_compact_text_would_be() -> None:
    body = b'{"MESSAGE":"hi","n":1,"f":1.50,"o":{"k":true}}\n\n{"x":null}\n'
    messages, truncated = split_body("application/x-ndjson", body, 65536)
    assert truncated == 0
    assert all(isinstance(m, ParsedMessage) for m in messages)
    assert messages[0] == parse(b'{"MESSAGE":"hi","n":1,"f":1.5,"o":{"k":true}}', "json")
    assert messages[0].pairs == {"MESSAGE": "hi", "n": "1", "f": "1.5", "o.k": "true"}
    assert messages[1].pairs == {"x": ""}


def test_a_json_array_holds_objects_and_strings() -> None:
    messages, _ = split_body("application/json", b'[{"a":"b"}, "<13>raw", "  "]', 65536)
    assert messages[0].pairs == {"a": "b"}  # type: ignore[union-attr]
    assert messages[1] == b"<13>raw"
    assert len(messages) == 2


@pytest.mark.parametrize(
    ("media_type", "body", "says"),
    [
        ("application/x-ndjson", b'{"a":1}\n[1]\n', "line 2: expected a JSON object, not an array"),
        ("application/x-ndjson", b'{"a":1}\n{"a":\n', "line 2: invalid JSON"),
        ("application/x-ndjson", b'{"a":NaN}', "line 1: invalid JSON"),
        ("application/json", b"[1]", "element 0: expected an object or a string, not a number"),
        ("application/json", b"7", "body: expected a JSON object or array, not a number"),
        ("application/json", b'{"a":"\xff"}', "line 1: not UTF-8"),
        ("application/json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_what_its_type_says_is_malformed_whole(
    media_type: str, body: bytes, says: str
) -> None:
    with pytest.raises(MalformedBody, match=says.replace("[", r"\[")):
        split_body(media_type, body, 65536)


def test_a_long_json_line_is_made_as_a_frame_and_cut() -> None:
    body = b'{"MESSAGE":"' + b"x" * 200 + b'"}'
    [message], truncated = split_body("application/x-ndjson", body, 64)
    assert truncated == 1
    assert message == parse(body[:64], "json")

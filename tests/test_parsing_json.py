"""JSON and raw frames."""

import pytest

from syslogsrc.parsing import parse


def test_object_flattened_like_json_parser():
    frame = (
        b'{"host":"web01","msg":"GET /","http":{"status":200,"bytes":1.50,"ok":true,'
        b'"hdr":{"ua":"curl"}},"tags":["a",1,null],"none":null,"empty":{}}'
    )
    msg = parse(frame, "json")
    assert msg.format == "json"
    assert msg.pri == 13
    assert msg.timestamp is None
    assert msg.tags == ()
    assert msg.pairs == {
        "host": "web01",
        "msg": "GET /",
        "http.status": "200",
        "http.bytes": "1.50",  # numbers keep their JSON text
        "http.ok": "true",
        "http.hdr.ua": "curl",
        "tags": '["a",1,null]',
        "none": "",
        "empty": "{}",
    }


def test_json_string_values_are_plain_str():
    msg = parse(b'{"a":"\\u00e9\\n"}', "json")
    assert msg.pairs["a"] == "\xe9\n"
    assert type(msg.pairs["a"]) is str


@pytest.mark.parametrize(
    "frame", [b"[1,2]", b'"text"', b"{broken", b"", b"\xff{}", b"42", b"{" * 100000]
)
def test_not_an_object_is_raw(frame):
    msg = parse(frame, "json", default_pri=38)
    assert msg.format == "raw"
    assert msg.tags == ("syslogsrc.json_invalid", "syslogsrc.raw")
    assert msg.pri == 38
    value = msg.pairs["MESSAGE"]
    assert (value if isinstance(value, bytes) else value.encode()) == frame


def test_trailing_newline_stripped():
    assert parse(b'{"a":"b"}\n', "json").pairs == {"a": "b"}


@pytest.mark.parametrize("frame", [b"<13>1 - - - - - - x", b"anything \xff at all", b""])
def test_raw_is_the_whole_frame(frame):
    msg = parse(frame, "raw", default_pri=5)
    assert msg.format == "raw"
    assert msg.tags == ()
    assert msg.pri == 5
    assert msg.timestamp is None
    value = msg.pairs["MESSAGE"]
    assert (value if isinstance(value, bytes) else value.encode()) == frame

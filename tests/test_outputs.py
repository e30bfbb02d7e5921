"""Outputs of the host (syslogsrc/outputs.py): JSON lines and syslog-ng's text layout."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syslogsrc.emulation import LogMessage
from syslogsrc.outputs import JsonLinesOutput, TextOutput, message_to_dict, open_output

UTC = dt.UTC


def _message(text="hello", **values):
    msg = LogMessage(text)
    for name, value in values.items():
        msg[name] = value
    msg.set_timestamp(dt.datetime(2024, 1, 5, 3, 4, 5, tzinfo=UTC))
    return msg


def _json_lines(*msgs):
    buf = io.BytesIO()
    out = JsonLinesOutput(buf)
    for msg in msgs:
        out.write(msg)
    out.flush()
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# JSON lines


def test_json_keys_are_syslog_ng_names():
    msg = _message(PROGRAM="app", TRANSPORT="rfc6587+tcp")
    msg.set_pri(165)
    obj = json.loads(_json_lines(msg))
    assert obj == {
        "MESSAGE": "hello",
        "PROGRAM": "app",
        "TRANSPORT": "rfc6587+tcp",
        "ISODATE": "2024-01-05T03:04:05+00:00",
        "PRI": 165,
        "FACILITY": "local4",
        "SEVERITY": "notice",
    }


def test_json_source_address_only_when_known():
    msg = _message()
    assert "SOURCEIP" not in message_to_dict(msg)
    msg.set_source_ipaddress("192.0.2.1", 514)
    obj = message_to_dict(msg)
    assert obj["SOURCEIP"] == "192.0.2.1" and obj["SOURCEPORT"] == 514
    msg = _message()
    msg.set_source_ipaddress("2001:db8::1")
    assert "SOURCEPORT" not in message_to_dict(msg)


def test_json_typed_values():
    msg = _message(
        I=5,
        F=1.5,
        T=True,
        N=None,
        L=["a", b"b"],
        D=dt.datetime(2024, 1, 1, tzinfo=UTC),
    )
    obj = json.loads(_json_lines(msg))
    assert obj["I"] == 5 and obj["F"] == 1.5 and obj["T"] is True and obj["N"] is None
    assert obj["L"] == ["a", "b"]
    assert obj["D"] == "2024-01-01T00:00:00+00:00"


def test_json_one_line_per_message_utf8_kept_readable():
    data = _json_lines(_message("ünïcode"), _message("two\nlines"))
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert "ünïcode".encode() in lines[0]  # not \u-escaped when all is valid UTF-8
    assert json.loads(lines[1])["MESSAGE"] == "two\nlines"


def test_json_non_utf8_bytes_round_trip_via_surrogateescape():
    raw = b"bad \xff\xfe bytes \xc3("
    data = _json_lines(_message(raw, OTHER="ü"))
    data.decode("ascii")  # lone surrogates are escaped, so the line is plain ASCII JSON
    obj = json.loads(data)
    assert obj["MESSAGE"].encode("utf-8", "surrogateescape") == raw
    assert obj["OTHER"] == "ü"


@given(st.binary(max_size=64), st.binary(min_size=1, max_size=16))
def test_json_any_bytes_round_trip(value, name_tail):
    name = "N" + name_tail.hex()
    msg = LogMessage(value)
    msg[name] = value
    obj = json.loads(_json_lines(msg))
    assert obj["MESSAGE"].encode("utf-8", "surrogateescape") == value
    assert obj[name].encode("utf-8", "surrogateescape") == value


# --------------------------------------------------------------------------------------------
# text


def _text(*msgs):
    buf = io.BytesIO()
    out = TextOutput(buf)
    for msg in msgs:
        out.write(msg)
    out.close()
    return buf.getvalue()


def test_text_layout_is_syslog_ngs_file_default():
    # What syslog-ng 3.38.1's file() wrote for the same message: "Jan  5 03:04:05 vm prog[42]:
    # hello world" (the day padded with a space).
    msg = _message("hello world", PROGRAM="prog", PID="42", HOST="vm")
    assert _text(msg) == b"Jan  5 03:04:05 vm prog[42]: hello world\n"


def test_text_header_variants():
    no_pid = _message("m", PROGRAM="prog", HOST="h")
    legacy = _message("m", PROGRAM="prog", LEGACY_MSGHDR="prog[1]: ", HOST="h")
    bare = _message(b"bad \xff bytes", HOST="h")
    assert _text(no_pid, legacy, bare).split(b"\n") == [
        b"Jan  5 03:04:05 h prog: m",
        b"Jan  5 03:04:05 h prog[1]: m",
        b"Jan  5 03:04:05 h bad \xff bytes",  # bytes written as they are, like the daemon
        b"",
    ]


def test_text_two_digit_day():
    msg = _message("m", HOST="h")
    msg.set_timestamp(dt.datetime(2024, 11, 24, 6, 0, 0, tzinfo=UTC))
    assert _text(msg).startswith(b"Nov 24 06:00:00 h m")


# --------------------------------------------------------------------------------------------
# files


def test_open_output_by_name(tmp_path):
    path = tmp_path / "out.jsonl"
    out = open_output(str(path), "json")
    assert isinstance(out, JsonLinesOutput)
    out.write(_message("one"))
    out.close()
    assert isinstance(open_output(str(tmp_path / "t.log"), "text"), TextOutput)
    with pytest.raises(ValueError, match="json or text"):
        open_output(str(path), "xml")


def test_file_output_appends_and_reopens(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"")
    out = open_output(str(path))
    out.write(_message("one"))
    out.flush()
    rotated = tmp_path / "out.jsonl.1"
    path.rename(rotated)
    out.reopen()  # log rotation: the next message goes to a new file at the path
    out.write(_message("two"))
    out.close()
    assert json.loads(rotated.read_bytes())["MESSAGE"] == "one"
    assert json.loads(path.read_bytes())["MESSAGE"] == "two"
    assert out.written == 2

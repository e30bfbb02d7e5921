"""twistd writes parsed messages straight to the output; a hosted source's messages go through
the emulation's ``LogMessage``. Both must write the same JSON lines and text for the same frame:
this holds the direct path (``Output.render``) to the one a ``SyslogSource`` takes in the
emulation (``SyslogSource.build_message`` -> the driver -> ``Output.write``), for frames of every
shape, with stamps in every offset, and for HTTP's parsed JSON objects.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import SYSLOG_FRAMES

from syslogsrc.emulation import LogMessage, ParseOptions, SourceDriver
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.outputs import JsonLinesOutput, Received, TextOutput
from syslogsrc.parsing import FORMATS, ParsedMessage, parse
from syslogsrc.source import SyslogSource

HOSTNAME = "receiver.example"


class Emulated:
    """A SyslogSource behind the emulation's driver, as syslogsrc-host runs it."""

    def __init__(self, keep_hostname: bool, options: dict[str, str], listen: str) -> None:
        self.messages: list[LogMessage] = []
        self.source = SyslogSource()
        self.driver = SourceDriver(
            self.source,
            log_iw_size=10_000,
            consumer=self.messages.append,
            keep_hostname=keep_hostname,
        )
        self.driver.hostname = HOSTNAME
        self.driver.run_thread = threading.get_ident()
        assert self.source.init({"listen": listen, **options})
        self.source.parse_options = ParseOptions("auto")
        self.driver.auto_close_batches = bool(self.source.auto_close_batches)
        self.source._transport_pair = self.source.transport_name is None
        self.source._set_source_ip = self.source._uses_source_ip_api()  # as attach() does
        if self.source.transport_name is not None:
            self.source.set_transport_name(self.source.transport_name)

    def message(self, frame: bytes | ParsedMessage, origin: Origin) -> LogMessage:
        self.messages.clear()
        assert self.source.post([frame], origin) == 1
        (msg,) = self.messages
        return msg


def _outputs(keep_hostname: bool, non_utf8: str) -> dict[str, Any]:
    made = {}
    for name, cls in (("json", JsonLinesOutput), ("text", TextOutput)):
        out = cls(io.BytesIO(), non_utf8=non_utf8)
        out.received = Received(HOSTNAME, keep_hostname)
        made[name] = out
    return made


def _same(emulated: bytes, direct: bytes, parsed: ParsedMessage, kind: str) -> None:
    if parsed.timestamp is None:
        # stampless: the time it was made, in each path; the rest must be equal
        if kind == "json":
            a, b = json.loads(emulated), json.loads(direct)
            ta, tb = (
                dt.datetime.fromisoformat(a.pop("ISODATE")),
                dt.datetime.fromisoformat(b.pop("ISODATE")),
            )
            assert abs((ta - tb).total_seconds()) < 2 and ta.utcoffset() == tb.utcoffset()
            assert a == b
        else:
            assert emulated.split(b" ", 4)[-1] == direct.split(b" ", 4)[-1]
        return
    offset = parsed.timestamp.utcoffset()
    if kind == "json" and offset is not None and offset < dt.timedelta(0):
        # A negative offset is made, in the daemon and so in the emulation, by parsing a bare
        # RFC 5424 header: MESSAGE comes first there. The same object, keys in another order.
        assert json.loads(emulated) == json.loads(direct)
        return
    assert emulated == direct


ORIGINS = st.sampled_from(
    [
        Origin("tcp", ListenerStats("tcp:5514"), "192.0.2.7", 40000, 5514),
        Origin("udp", ListenerStats("udp:5514"), "2001:db8::1", 514, 514),
        Origin("unix", ListenerStats("unix:/s"), None, None, None),
        Origin(
            "http",
            ListenerStats("http:8080"),
            "::ffff:10.0.0.1",
            5,
            8080,
            pairs={"http.path": "/", "http.query.a": "b", "HOST": "from-query"},
        ),
    ]
)
ZONES = st.sampled_from(["UTC", "+05:30", "-03:00", "Europe/Budapest", "America/New_York"])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    frame=SYSLOG_FRAMES,
    origin=ORIGINS,
    format=st.sampled_from([*FORMATS]),
    zone=ZONES,
    keep_hostname=st.booleans(),
    non_utf8=st.sampled_from(["escape", "replace"]),
)
def test_direct_output_is_what_the_emulated_source_writes(
    frame: bytes, origin: Origin, format: str, zone: str, keep_hostname: bool, non_utf8: str
) -> None:
    emulated = Emulated(keep_hostname, {"format": format, "time-zone": zone}, origin.stats.name)
    options = emulated.source.options
    msg = emulated.message(frame, origin)
    parsed = parse(frame, format, time_zone=options.time_zone)
    for kind, out in _outputs(keep_hostname, non_utf8).items():
        _same(out._render(msg), out.render(parsed, origin), parsed, kind)
        # twistd's sink renders whole batches (JSON: the pairs in one call of json's C encoder)
        _same(out._render(msg), out.render_batch([parsed], origin), parsed, kind)


STAMP = dt.datetime(2026, 3, 4, 5, 6, 7, 891000, dt.timezone(dt.timedelta(hours=-3)))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    frames=st.lists(SYSLOG_FRAMES, min_size=1, max_size=6),
    origin=ORIGINS,
    format=st.sampled_from([*FORMATS]),
    keep_hostname=st.booleans(),
    non_utf8=st.sampled_from(["escape", "replace"]),
)
def test_a_batch_is_rendered_as_its_messages_one_by_one(
    frames: list[bytes], origin: Origin, format: str, keep_hostname: bool, non_utf8: str
) -> None:
    parsed = [parse(frame, format, time_zone=dt.UTC) for frame in frames]
    # stampless messages get a stamp here (their ISODATE is "now", compared above); the same
    # stamp object twice in a row takes the renderer's cached text
    parsed = [
        p if p.timestamp is not None else ParsedMessage(p.pairs, p.pri, STAMP, p.tags, p.format)
        for p in parsed
    ]
    for out in _outputs(keep_hostname, non_utf8).values():
        one_by_one = b"".join([out.render(p, origin) for p in parsed])
        assert out.render_batch(parsed, origin) == one_by_one
        assert out.render_batch(parsed, origin) == one_by_one  # the origin's parts, memoised


def test_a_batch_with_a_name_the_origin_sets_takes_the_general_way() -> None:
    origin = Origin("http", ListenerStats("http:1"), "192.0.2.1", 9, 1, pairs={"http.path": "/x"})
    messages = [
        ParsedMessage({"MESSAGE": "a", "TRANSPORT": "mine"}, 13, STAMP, (), "json"),
        ParsedMessage({"MESSAGE": "b", "http.path": "/mine"}, 13, STAMP, (), "json"),
        ParsedMessage({"MESSAGE": "c", "HOST": ""}, 13, STAMP, ("t1", "t2"), "json"),
        ParsedMessage({"MESSAGE": b"\xff", "PRI": "x"}, 13, STAMP, (), "raw"),
        ParsedMessage({"MESSAGE": "\udcff lone"}, 200, STAMP, (), "json"),
        ParsedMessage({}, 13, STAMP, (), "json"),
    ]
    for keep_hostname in (True, False):
        out = JsonLinesOutput(io.BytesIO())
        out.received = Received(HOSTNAME, keep_hostname)
        lines = out.render_batch(messages, origin)
        assert lines == b"".join([out.render(m, origin) for m in messages])
        assert [json.loads(line)["MESSAGE"] for line in lines.splitlines()[:3]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "line",
    [
        '{"msg":"a","n":1,"f":1.50,"e":1e5,"big":123456789012345678901234567890}',
        '{"nested":{"a":{"b":[1,"x",null,true]}},"empty":{},"list":[]}',
        '{"s":"\\udce9 escaped byte","é":"ü","HOST":"h1","PROGRAM":"p"}',
        '{"":1,"ok":2}',  # a name syslog-ng refuses: the whole object is kept in MESSAGE
    ],
)
def test_http_json_objects_give_what_their_frames_gave(line: str) -> None:
    # HTTP parses a JSON object once and hands the parsed message over; before, it re-encoded
    # the object and the sink parsed that frame: the output is the same.
    from syslogsrc.httpbody import split_body

    origin = Origin("http", ListenerStats("http:8080"), "192.0.2.1", 1, 8080)
    [parsed], truncated = split_body("application/x-ndjson", line.encode(), 65536)
    assert truncated == 0
    doc = json.loads(line)
    try:
        frame = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        frame = json.dumps(doc, separators=(",", ":")).encode("ascii")
    emulated = Emulated(True, {"format": "json"}, origin.stats.name)
    msg = emulated.message(frame, origin)
    for kind, out in _outputs(True, "escape").items():
        _same(out._render(msg), out.render(parsed, origin), parsed, kind)

"""The ``hybrid`` parser is exact: for every frame, the message the daemon stores is the one our
parser gives, in both real daemons.

One daemon runs three SyslogSources: ``"parser" "syslogsrc"`` (ours, the reference) and
``"parser" "hybrid"`` with and without ``flags(syslog-protocol)`` (with it the daemon's parser
reads RFC 5424, and RFC 3164 by its fallback). Each gets the same frames, octet-counted, on a
connection of its own; each writes every pair (``--scope all-nv-pairs``), the stamp with
microseconds, PRI, tags, ``$SDATA`` and ``$MSGFORMAT`` to its file, and the files must agree line
by line (but for the sender's port and the source's own tag). The frames: the oracle's device
corpus, frames loggen sends (captured from the real client), and frames drawn by hypothesis:
well-formed ones of every shape the pre-check knows and near misses of them (a byte changed,
inserted or cut). The frames the pre-check accepts go to the daemon's parser, the rest to ours:
agreement on all of them is the proof; the test also checks that the daemon's parser did get
most of them (the source logs which shapes it gives it).

The daemon runs with TZ=America/New_York: stamps without offset are local and negative, and the
month before this one may hold a daylight-saving change (then the pre-check leaves it out).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import threading
import time
import zoneinfo

import pytest
from daemons import free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration import PRELUDE, JsonOutput, json_file, log_path, syslogsrc_source
from test_parsing_oracle import MESSAGES

from syslogsrc import _daemon_parse

TZ = "America/New_York"
ZONE = zoneinfo.ZoneInfo(TZ)
TEMPLATE = (
    "$(format-json --scope all-nv-pairs --key ISODATE --key PRI --key TAGS --key SDATA"
    " --key MSGFORMAT --key HOST_FROM)"
)
#: what differs between the sources by construction: the sender's port, the source's name and tag
IGNORED = ("PEERPORT", "SOURCE")

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------------------------
# frames


def corpus_frames() -> list[bytes]:
    now = dt.datetime.now(ZONE) - dt.timedelta(hours=2)
    bsd = f"{MONTHS[now.month - 1]} {now.day:2d} {now:%H:%M:%S}"
    local = now.strftime("%Y-%m-%dT%H:%M:%S")
    frames = [text.encode("utf-8", "surrogateescape") for text in MESSAGES.values()]
    frames += [
        f"<13>{bsd} host prog[1]: plain".encode(),
        f"<13>{bsd} host prog[1]: trailing CR\r".encode(),
        f"<13>{bsd} host prog[1]: a NUL \0 inside".encode(),
        f"<13>{bsd} host prog[1]: tab\tescape\x1b[0m bell\x07".encode(),
        f"<13>{bsd} host prog[1]: caf".encode() + b"\xe9 (latin-1)",
        f"<13>{bsd} host prog[1]: UTF-8 caf\u00e9 \u20ac".encode(),
        f"<13>{bsd.replace(' ', '  ', 1)} host prog: two spaces".encode(),
        f"<191>{bsd} 10.1.2.3 prog: v4 host".encode(),
        f"<192>{bsd} host prog: PRI too large".encode(),
        f"<013>{bsd} host prog: leading zero".encode(),
        f"<13>{bsd} 2026 prog: year-like host".encode(),
        f"<13>{local} host prog[7]: loggen-like".encode(),
        f"<13>{local}.5 host prog[7]: loggen-like, fraction".encode(),
        f"<13>{local}.1234567 host prog[7]: seven digits".encode(),
        f"<13>{local}+05:45 host prog[7]: Nepal".encode(),
        f"<13>{local}-03:30 host prog[7]: Newfoundland".encode(),
        b"<13>2024-02-29T12:00:00Z host prog: leap day",
        b"<13>2023-02-29T12:00:00Z host prog: no such day",
        b"<13>1 2024-02-29T12:00:00Z host prog - - - leap day",
        b'<13>1 2026-03-08T07:30:00.000001-05:00 h app 1 m [a@1 x="1"][a@1 x="2"] dup',
        b'<13>1 2026-03-08T07:30:00Z h app 1 m [a@1 x="1" x="2"] dup param',
        b'<13>1 2026-03-08T07:30:00Z h app 1 m [a@1 x=""] empty value',
        b"<13>1 2026-03-08T07:30:00Z h app 1 m [a@1] \xef\xbb\xbfBOM",
        b"<13>1 2026-03-08T07:30:00Z h app 1 m - \xef\xbb\xbf",
        b"<13>1 2026-03-08T07:30:00Z h app 1 m -",
        b"<13>1 2026-03-08T07:30:00Z h app 1 m - ",
        b"<13>1 2026-03-08T07:30:00 h app 1 m - no offset",
        b"<13>1 2026-03-08T07:30:00Z h:x app 1 m - colon in the host",
        b"<13>1 2026-03-08T07:30:00Z ::1 app 1 m - IPv6 host",
        b"<13>1 2026-03-08T07:30:00Z h a:p 1:2 m:3 - colons elsewhere",
        b"<13>1 2026-03-08T07:30:00Z " + b"h" * 256 + b" app 1 m - long host",
        b"<13>1 2026-03-08T07:30:00Z h " + b"a" * 49 + b" 1 m - long app",
    ]
    return frames


def loggen_frames() -> list[bytes]:
    """What the real loggen sends: RFC 3164 (its default) and RFC 5424 (-P), LF-framed."""
    frames: list[bytes] = []
    for extra in ([], ["-P", "-F"]):
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            server.settimeout(20)
            port = server.getsockname()[1]
            data = bytearray()

            def accept(server=server, data=data) -> None:
                conn, _ = server.accept()
                with conn:
                    while chunk := conn.recv(65536):
                        data.extend(chunk)

            reader = threading.Thread(target=accept)
            reader.start()
            subprocess.run(
                ["loggen", "-S", "-s", "300", "-n", "20", *extra, "127.0.0.1", str(port)],
                check=True,
                capture_output=True,
                timeout=30,
            )
            reader.join(20)
        frames += [line for line in bytes(data).split(b"\n") if line]
    assert len(frames) == 40, frames[:2]
    return frames


_PRINT = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_NAME = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"),
    min_size=1,
    max_size=20,
)
_BODY = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF),
        st.sampled_from('\t\x01\x1b\r"]\\[=:'),
    ),
    max_size=40,
)


@st.composite
def stamps(draw, near: bool) -> dt.datetime:
    """Aware stamps in New York: near now (for the shapes without year or offset), or any."""
    if near:
        base = dt.datetime.now(ZONE).replace(tzinfo=None)
        naive = base + dt.timedelta(seconds=draw(st.integers(-50 * 86400, 50 * 86400)))
    else:
        naive = draw(st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2099, 12, 31)))
    naive = naive.replace(microsecond=draw(st.sampled_from([0, 500000, 123456, 1])))
    return naive.replace(tzinfo=ZONE)


def _frac(ts: dt.datetime, draw) -> str:
    digits = draw(st.integers(0, 6))
    return "" if not digits else "." + f"{ts.microsecond:06d}"[:digits]


def _offset(ts: dt.datetime, draw) -> str:
    choice = draw(st.sampled_from(["local", "Z", "+05:45", "-03:30", "+00:00", "-00:00"]))
    if choice == "local":
        off = ts.strftime("%z")
        return off[:3] + ":" + off[3:]
    return choice


@st.composite
def rfc3164(draw) -> bytes:
    pri = draw(st.integers(0, 191))
    kind = draw(st.sampled_from(["bsd", "iso", "iso-local"]))
    ts = draw(stamps(near=kind != "iso"))
    if kind == "bsd":
        day = draw(st.sampled_from([f"{ts.day:2d}", f"{ts.day:02d}"]))
        stamp = f"{MONTHS[ts.month - 1]} {day} {ts:%H:%M:%S}"
    elif kind == "iso":
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S") + _frac(ts, draw) + _offset(ts, draw)
    else:
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S") + _frac(ts, draw)
    host = draw(st.one_of(_NAME, st.ip_addresses(v=4).map(str)))
    program = draw(_NAME)
    pid = draw(st.one_of(st.just(""), st.integers(0, 99999).map(lambda p: f"[{p}]")))
    return f"<{pri}>{stamp} {host} {program}{pid}: {draw(_BODY)}".encode()


@st.composite
def rfc5424(draw) -> bytes:
    pri = draw(st.integers(0, 191))
    ts = draw(stamps(near=False))
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S") + _frac(ts, draw) + _offset(ts, draw)
    fields = [
        draw(st.one_of(st.just("-"), st.text(_PRINT, min_size=1, max_size=n)))
        for n in (40, 20, 10, 12)
    ]
    sd_name = st.text(st.sampled_from("abcxyz@0123456789.-"), min_size=1, max_size=8)
    value = st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\]'),
        max_size=10,
    )
    elements = draw(
        st.lists(
            st.tuples(sd_name, st.lists(st.tuples(sd_name, value), max_size=3)),
            max_size=3,
            unique_by=lambda e: e[0],
        )
    )
    sd = "".join(
        "[" + sid + "".join(f' {n}="{v}"' for n, v in dict(params).items()) + "]"
        for sid, params in elements
    )
    bom = draw(st.sampled_from(["", "\ufeff"]))
    msg = draw(st.one_of(st.none(), _BODY))
    tail = "" if msg is None else " " + bom + msg
    return f"<{pri}>1 {stamp} {' '.join(fields)} {sd or '-'}{tail}".encode()


@st.composite
def near_miss(draw, frames) -> bytes:
    frame = draw(frames)
    pos = draw(st.integers(0, len(frame)))
    byte = draw(st.sampled_from([b" ", b"[", b"]", b":", b"0", b"\0", b"\r", b"\xff", b"-"]))
    how = draw(st.sampled_from(["insert", "replace", "cut"]))
    if how == "insert":
        return frame[:pos] + byte + frame[pos:]
    if how == "replace":
        return frame[:pos] + byte + frame[pos + 1 :]
    return frame[:pos]


def hypothesis_frames(count: int = 600) -> list[bytes]:
    """Frames drawn by hypothesis (derandomized: the same set every run)."""
    drawn: list[bytes] = []
    well_formed = st.one_of(rfc3164(), rfc5424())

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(well_formed, well_formed, near_miss(well_formed)))
    def collect(frame: bytes) -> None:
        if frame:  # an empty frame cannot be octet-counted
            drawn.append(frame)

    collect()
    return drawn


# --------------------------------------------------------------------------------------------
# the daemon

#: a subclass that overrides annotate(): its messages are built by build_message(), one call a
#: message, which decides as the hybrid's builder does
SUBCLASS = """
python {
from syslogsrc import SyslogSource

class Annotating(SyslogSource):
    def annotate(self, msg, origin, size):
        super().annotate(msg, origin, size)
};
"""


def _send(port: int, frames: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))


def _clean(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in IGNORED}
    tags = out.get("TAGS") or ""
    if isinstance(tags, str):  # 4.x writes a list
        tags = tags.split(",")
    out["TAGS"] = ",".join(t for t in tags if t and not t.startswith(".source."))
    ours_noted = out.get("syslogsrc", {}).get("tags", "")
    if "syslog.missing_timestamp" in ours_noted or "syslogsrc.raw" in ours_noted:
        del out["ISODATE"]  # no stamp in the frame: the receive time, a little apart
    return out


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    # with trailers as a datagram (or octet counting) keeps them: LF, CR LF, NUL, LF LF
    trailed = [f + t for f in loggen_frames()[:6] for t in (b"\n", b"\r\n", b"\0", b"\n\n")]
    return corpus_frames() + loggen_frames() + trailed + hypothesis_frames()


def test_hybrid_stores_what_ours_stores(syslog_ng, frames):
    names = ("ours", "hybrid", "hybrid5424", "ours_3164", "hybrid_3164", "hybrid_subclass")
    ports = {name: free_port() for name in names}
    config = PRELUDE.replace("frac-digits(6);", "frac-digits(6); keep-hostname(yes);")
    config += SUBCLASS
    for name, port in ports.items():
        parser = "syslogsrc" if name.startswith("ours") else "hybrid"
        flags = " flags(syslog-protocol)" if name == "hybrid5424" else ""
        # a listener's format= (RFC 3164 for every frame): the daemon's parser only for the
        # RFC 3164 shapes
        listener_format = ":format=rfc3164" if name.endswith("_3164") else ""
        source = syslogsrc_source(
            f"s_{name}",
            f"tcp:{port}:interface=127.0.0.1:framing=octet-counting{listener_format}",
            {"parser": parser},
            driver_options=f"keep-hostname(yes){flags}",
        )
        if name == "hybrid_subclass":  # build_message() per message, not the builder
            source = source.replace('class("syslogsrc.SyslogSource")', "class(Annotating)")
        config += source
        config += json_file(f"d_{name}", f"{name}.jsonl", TEMPLATE)
        config += log_path([f"s_{name}"], [f"d_{name}"])
    daemon = syslog_ng(config, wait_ports=list(ports.values()), env={"TZ": TZ}, extra_args=("-v",))
    for port in ports.values():
        _send(port, frames)
    outputs = {
        name: JsonOutput(daemon.state_dir / f"{name}.jsonl").wait(len(frames), timeout=60)
        for name in ports
    }
    log = daemon.stderr()
    # the daemon's parser took part: each hybrid source says which shapes it gives it
    shapes = [line for line in log.splitlines() if "parser hybrid" in line]
    assert len(shapes) == 4, log[-2000:]
    assert any("format rfc3164: rfc3164-bsd, rfc3164-iso, rfc3164-iso-local;" in x for x in shapes)
    assert any("rfc5424" in line for line in shapes), shapes
    assert all("rfc3164-iso," in line or "rfc3164-iso " in line for line in shapes), shapes

    ours = [_clean(r) for r in outputs["ours"]]
    assert len(ours) == len(frames)
    ours_3164 = [_clean(r) for r in outputs["ours_3164"]]
    for name in ("hybrid", "hybrid5424", "hybrid_3164", "hybrid_subclass"):
        reference = ours_3164 if name.endswith("_3164") else ours
        theirs = [_clean(r) for r in outputs[name]]
        differ = [
            f"{frame!r}:\n  ours   {json.dumps(a, sort_keys=True)}\n"
            f"  {name} {json.dumps(b, sort_keys=True)}"
            for frame, a, b in zip(frames, reference, theirs, strict=True)
            if a != b
        ]
        if differ and os.environ.get("HYBRID_DEBUG"):
            with open(os.environ["HYBRID_DEBUG"] + "." + syslog_ng.name, "w") as f:
                for frame, a, b in zip(frames, reference, theirs, strict=True):
                    if a != b:
                        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                        f.write(f"{keys} {frame!r}\n")
        assert not differ, f"{len(differ)} of {len(frames)} differ:\n" + "\n".join(differ[:8])

    # most well-formed frames were the daemon's parser's (as the pre-check sees them here)
    test = _in_zone(TZ, lambda: _daemon_parse.frame_test(_daemon_parse.SHAPES))
    accepted = sum(bool(_daemon_parse.accepts(test, f)) for f in frames)
    assert accepted > len(frames) // 3, (accepted, len(frames))


# --------------------------------------------------------------------------------------------
# the pre-check alone (no daemon)


def _in_zone(zone: str, fn):
    old = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    _daemon_parse._compiled.clear()
    try:
        return fn()
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
        _daemon_parse._compiled.clear()


@pytest.mark.parametrize(
    ("today", "months"),
    [
        (dt.date(2026, 12, 15), {(2026, 11), (2026, 12), (2027, 1)}),
        (dt.date(2027, 1, 15), {(2026, 12), (2027, 1), (2027, 2)}),
        # on the first of a month, yesterday's month-before is out of tomorrow's reach
        (dt.date(2026, 12, 1), {(2026, 11), (2026, 12)}),
        (dt.date(2026, 11, 30), {(2026, 11), (2026, 12)}),
    ],
)
def test_months_both_year_rules_agree_on(today, months):
    assert _in_zone("UTC", lambda: _daemon_parse.local_months(today)) == months


def test_months_with_a_daylight_saving_change_are_left_out():
    # New York: DST ends on 1 November 2026 and starts on 14 March 2027
    got = _in_zone(TZ, lambda: _daemon_parse.local_months(dt.date(2026, 12, 15)))
    assert got == {(2026, 12), (2027, 1)}
    got = _in_zone(TZ, lambda: _daemon_parse.local_months(dt.date(2027, 2, 15)))
    assert got == {(2027, 1), (2027, 2)}


ACCEPTED = [
    b"<38>2026-12-02T11:02:26 localhost prg00000[1234]: seq: 0000000000, thread: 0000",
    b"<38>1 2026-12-02T11:02:26+00:00 localhost prg00000 1234 - - \xef\xbb\xbfseq: 00000",
    b"<13>Dec  2 10:00:00 host prog[1]: text",
    b"<13>Nov 30 10:00:00 10.0.0.1 prog: text with \t tab",
    b"<13>2020-02-28T10:00:00.123456-05:00 host prog: any date with an offset",
    b'<165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 [ex@32473 iut="3"] An event',
    b"<165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 -",
    b"<13>Dec  2 10:00:00 host prog[1]: caf\xc3\xa9",
]
REJECTED = [
    b"<13>Feb  2 10:00:00 host prog[1]: two months ago: the year rules may differ",
    b"<13>2026-03-08T02:30:00 host prog: no offset, out of the months",
    b"<13>Dec  2 10:00:00 host prog[1]: trailing CR\r",
    b"<13>Dec  2 10:00:00 host prog[1]: a NUL\0inside",
    b"<13>Dec  2 10:00:00 host prog[1]: latin-1 caf\xe9",
    b"<192>Dec  2 10:00:00 host prog[1]: PRI too large",
    b"<13>Dec  2 10:00:00 2026 prog[1]: a year for a host",
    b"<13>Dec  2 10:00:00 host prog[1] no colon",
    b"<13>Dec 02 10:00:00 h[x] prog: odd host",
    b"<13>2026-02-29T10:00:00Z host prog: no such day",
    b"<13>2026-12-02T10:00:00.1234567Z host prog: seven digits",
    b"<13>1 2026-12-02T10:00:00 h app - - - no offset",
    b"<13>1 - h app - - - no stamp",
    b"<13>1 2026-12-02T10:00:00Z h app - - [empty] element",
    b'<13>1 2026-12-02T10:00:00Z h app - - [a x\\="1"] backslash in a name',
    b'<13>1 2026-12-02T10:00:00Z h app - - [a x="\\""] escaped',
    b'<13>1 2026-12-02T10:00:00Z h app - - [a x.y="1"] dotted param',
    b"<13>1 2026-12-02T10:00:00Z a[b app - - - bracket in host",
    b"<13>1 2026-12-02T10:00:00Z h:x app - - - colon in host",
    b"Use the BFG!",
]


def test_the_pre_check_takes_the_common_shapes_and_leaves_the_rest():
    def check():
        test = _daemon_parse.frame_test(_daemon_parse.SHAPES, dt.date(2026, 12, 2))
        taken = [f for f in ACCEPTED if not _daemon_parse.accepts(test, f)]
        left = [f for f in REJECTED if _daemon_parse.accepts(test, f)]
        return taken, left

    missed, wrongly = _in_zone("UTC", check)
    assert not missed, missed
    assert not wrongly, wrongly


def test_bsd_stamps_go_to_the_daemon_only_for_months_its_stale_clock_agrees_on():
    # the daemon's clock in a Python source's thread is the one of the thread's start
    def check(daemon_today):
        test = _daemon_parse.frame_test(["rfc3164-bsd"], dt.date(2027, 2, 10), daemon_today)
        return [bool(test(b"<13>%s 10 10:00:00 h p: x" % m)) for m in (b"Jan", b"Feb", b"Mar")]

    assert _in_zone("UTC", lambda: check(dt.date(2027, 2, 9))) == [True, True, True]
    assert _in_zone("UTC", lambda: check(dt.date(2027, 1, 20))) == [True, True, False]
    assert _in_zone("UTC", lambda: check(dt.date(2026, 11, 15))) == [False, False, False]


def test_without_the_local_shapes_stamps_without_offset_are_left_to_ours():
    def check():
        test = _daemon_parse.frame_test(["rfc3164-iso", "rfc5424"], dt.date(2026, 12, 2))
        return [_daemon_parse.accepts(test, f) for f in ACCEPTED[:3]]

    assert _in_zone("UTC", check) == [False, True, False]


def test_outside_the_daemon_hybrid_is_ours():
    from syslogsrc.host import SourceHost  # noqa: F401  (the emulation's runtime)
    from syslogsrc.source import SyslogSource

    src = SyslogSource()
    assert src.init({"listen": "tcp:5514", "parser": "hybrid"})
    assert src._hybrid and src._c_shapes == {}


def test_a_known_header_decides_as_the_whole_frame_regex(monkeypatch):
    # The hybrid builder keeps the header of the last RFC 3164 frame it gave the daemon and
    # checks frames that start with it by their body only: each decision must be the one
    # the regex over the whole frame makes.
    import syslogsrc._daemon_builders as builders
    from syslogsrc.emulation import ParseOptions
    from syslogsrc.interfaces import ListenerStats, Origin
    from syslogsrc.source import SyslogSource

    theirs: list[bytes] = []
    ours = builders.parse
    monkeypatch.setattr(
        builders, "parse", lambda frame, *a, **k: (theirs.append(frame), ours(frame, *a, **k))[1]
    )
    src = SyslogSource()
    assert src.init({"listen": "tcp:5514", "parser": "hybrid"})
    src.parse_options = ParseOptions("auto")
    src._c_shapes = {"auto": _daemon_parse.SHAPES}  # as in a daemon whose parser reads them
    src._daemon_today = lambda: dt.date.today()
    build = src.builder(Origin("tcp", ListenerStats("tcp:5514"), "192.0.2.7", 40000, 5514))
    today = dt.date.today().isoformat().encode()
    header = b"<38>" + today + b"T10:00:00 localhost prg00000[1234]: "
    frames = [
        header + b"first",
        header + b"same header",
        header + b"a NUL \0 inside",
        header + b"ends in CR\r",
        header + b"CR LF inside\r\n and on",
        header + b"non-UTF-8 \xff",
        header + b"UTF-8 \xc3\xa9",
        header,  # no body
        header[:-2] + b" : not the tag",
        b"<38>" + today + b"T10:00:01 localhost prg00000[1234]: the next second",
        header + b"the first header again",
        b"<13>stampless",
    ]
    header_5424 = b"<165>1 " + today + b"T10:00:00+01:00 h app 42 ID7 "
    frames += [
        header_5424 + b"- nil SD",
        header_5424 + b"- same header",
        header_5424 + b"- NUL \0 inside",
        header_5424 + b"- ends in CR\r",
        header_5424 + b"-",  # no message: the header (with its space) does not match
        header_5424 + b"-x",  # a broken SD that starts like the known header
        header_5424 + b"- ",  # an empty message
        header_5424 + b'[a@1 i="1"] SD',
        header_5424 + b'[a@1 i="2"] the SD changes',
        header_5424 + b'[a@1 i="2"][b@1 j="3"] one more element',
        header_5424 + b'[a@1 i="2"]',
        header_5424 + b'[a@1 i="2"]x',
        header_5424 + b'[a@1 i="2" k=3] a broken param',
        # a header not known yet, then the body decides
        b"<38>" + today + b"T10:00:02 localhost prg00000[1234]: a NUL \0 after a new header",
        header_5424.replace(b"ID7", b"ID8") + b"- a NUL \0 after a new header",
    ]
    for frame in frames:
        build(frame)
    test = _daemon_parse.frame_test(_daemon_parse.SHAPES)
    assert theirs == [f for f in frames if not _daemon_parse.accepts(test, f)]
    # NUL, CR, non-UTF-8, the broken tag, stampless; NUL, CR, "-x", "]x", the broken param;
    # the two NULs after a new header
    assert len(theirs) == 12, theirs


def test_the_header_and_the_body_decide_as_the_whole_frame_regex(frames):
    # _daemon_parse.header_test's promise, frame by frame and for the frames that start with
    # another's header (the hybrid's cache): a matched header and a body (no NUL, no CR or LF
    # at the end) make the whole-frame regex's decision
    def check():
        whole = _daemon_parse.frame_test(_daemon_parse.SHAPES)
        header_of = _daemon_parse.header_test(_daemon_parse.SHAPES)
        headers = 0
        for frame, after in zip(frames, frames[1:] + frames[:1], strict=True):
            header = header_of(frame)
            if not header:
                continue
            headers += 1
            known = frame[: header.end()]
            tails = [b"", b"x", b"\0", b"a\r", b"\n", b"- m", b'[a b="c"] m', after[len(known) :]]
            for g in [frame] + [known + t for t in tails]:
                body = b"\0" not in g and g[-1:] not in b"\r\n"
                assert body == bool(whole(g)), g
        return headers

    assert _in_zone("UTC", check) > len(frames) // 3


# --------------------------------------------------------------------------------------------
# driver options that change what the daemon's parser makes: the probes turn those shapes off


@pytest.mark.parametrize(
    ("driver_options", "left"),
    [
        ("flags(no-parse)", "no frame"),
        ('time-zone("+05:00")', "rfc3164-iso, rfc5424"),
        ("flags(store-raw-message)", "no frame"),
        ("flags(dont-store-legacy-msghdr)", "rfc5424"),
        ("flags(no-multi-line)", "no frame"),
    ],
)
def test_driver_options_turn_shapes_off(syslog_ng, driver_options, left):
    ports = {name: free_port() for name in ("ours", "hybrid")}
    config = PRELUDE
    for name, port in ports.items():
        config += syslogsrc_source(
            f"s_{name}",
            f"tcp:{port}:interface=127.0.0.1:framing=octet-counting",
            {"parser": "syslogsrc" if name == "ours" else "hybrid"},
            driver_options=f"keep-hostname(yes) {driver_options}",
        )
        config += json_file(f"d_{name}", f"{name}.jsonl", TEMPLATE)
        config += log_path([f"s_{name}"], [f"d_{name}"])
    daemon = syslog_ng(config, wait_ports=list(ports.values()), env={"TZ": TZ}, extra_args=("-v",))
    frames = corpus_frames()[-30:] + loggen_frames()[::10]
    for port in ports.values():
        _send(port, frames)
    outputs = {
        name: JsonOutput(daemon.state_dir / f"{name}.jsonl").wait(len(frames), timeout=30)
        for name in ports
    }
    shapes = [line for line in daemon.stderr().splitlines() if "parser hybrid" in line]
    assert len(shapes) == 1 and shapes[0].endswith(f"format auto: {left};"), shapes
    ours = [_clean(r) for r in outputs["ours"]]
    theirs = [_clean(r) for r in outputs["hybrid"]]
    differ = [(f, a, b) for f, a, b in zip(frames, ours, theirs, strict=True) if a != b]
    assert not differ, differ[:3]


@pytest.mark.parametrize(
    ("frame", "utf8"),
    [
        (b"\xef\xbb\xbfASCII after a BOM", True),
        (b"<13>1 - - - - - - \xef\xbb\xbfa BOM inside", True),
        (b"\xef\xbb\xbftwo \xef\xbb\xbfBOMs", True),
        (b"\xef\xbb\xbfa BOM, then caf\xc3\xa9", True),
        (b"\xef\xbb\xbfa BOM, then \xff", False),
        (b"\xff\xef\xbb\xbf before a BOM", False),
        (b"half a BOM \xef\xbb", False),
        (b"caf\xc3\xa9", True),
    ],
)
def test_the_hybrids_utf8_check(frame, utf8):
    from syslogsrc._daemon_builders import is_utf8

    assert is_utf8(frame) is utf8
    assert utf8 == (frame.decode("utf-8", "replace").encode() == frame)

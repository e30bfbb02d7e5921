"""RFC 3164's one-regex fast paths give what the step-by-step path gives.

``_parse_rfc3164`` first tries the common shapes in one match (``<PRI>Mmm dd hh:mm:ss host
prog[pid]: `` and the same with an ISO stamp); anything else goes the long way. Here every frame is
parsed both ways (the fast paths switched off by monkeypatching) and must come out the same: the
same pairs (for the ISO path in the same order, which is the order the daemon gets them in), PRI,
stamp and offset, and tags.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syslogsrc import _rfc3164, parsing

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
ZONES = [None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]


def both_ways(monkeypatch, frame: bytes, time_zone) -> tuple:
    fast = parsing.parse(frame, "rfc3164", time_zone=time_zone, now=NOW)
    with monkeypatch.context() as m:
        m.setattr(_rfc3164, "_legacy_common", lambda text: None)
        m.setattr(_rfc3164, "_legacy_iso_common", lambda text: None)
        slow = parsing.parse(frame, "rfc3164", time_zone=time_zone, now=NOW)
    return fast, slow


def assert_same(fast, slow, ordered: bool) -> None:
    assert fast == slow
    if fast.timestamp is not None:
        assert fast.timestamp.utcoffset() == slow.timestamp.utcoffset()
    if ordered:
        assert list(fast.pairs.items()) == list(slow.pairs.items())


@pytest.mark.parametrize(
    "frame",
    [
        b"<38>2026-11-24T06:42:28 localhost prg00000[1234]: seq: 0000000000, thread: 0000",
        b"<38>2026-11-24T06:42:28+01:00 web01 sshd[21873]: Accepted publickey",
        b"<38>2026-11-24T06:42:28.518290Z web01 sshd: no pid",
        b"<38>2026-11-24 06:42:28,5 web01 app[]: empty pid",
        b"<191>2026-11-24T06:42:28.1234567-05:00 h p[x[y]: pid with a bracket",
        b"<192>2026-11-24T06:42:28 h p: PRI too large",
        b"<38>2026-02-30T06:42:28 h p: no such day",
        b"<38>2026-11-24T24:00:00 h p: hour 24",
        b"<38>2026-11-24T06:42:28 h:80 p: colon in host",
        b"<38>2026-11-24T06:42:28  h p: two spaces",
        b"<38>2026-11-24T06:42:28: h p: Cisco colon",
        b"<38>2026-11-24T06:42:28 last message repeated 3 times",
        b"<38>2026-11-24T06:42:28 Message forwarded from aix1: p[1]: text",
        b"<38>2026-11-24T06:42:28 h p[12: unclosed pid",
        b"<38>2026-11-24T06:42:28 " + b"h" * 256 + b" p: long host",
        b"<38>2026-11-24T06:42:28 h \xff\xfe[1]: not UTF-8",
        b"<38>Nov 24 06:42:28 web01 sshd[21873]: the BSD shape",
        b"<38>Nov  4 06:42:28 2026 p: LinkSys-like",
    ],
)
@pytest.mark.parametrize("time_zone", ZONES)
def test_examples(monkeypatch, frame, time_zone):
    fast, slow = both_ways(monkeypatch, frame, time_zone)
    assert_same(fast, slow, ordered=frame[4:5].isdigit())


def _mostly(common: str, *others: str) -> st.SearchStrategy[str]:
    """``common`` four times in five, else one of ``others``: most frames take the fast path,
    the rest miss it by one field."""
    return st.sampled_from([common] * 4 * len(others) + list(others))


_CHARS = "ab0 1:[]-.+TZ\xe9"
_word = st.text(alphabet=_CHARS, min_size=0, max_size=12)
_name = st.one_of(
    _mostly("web01", "h", "localhost", "10.0.0.1", "::1", "fe80::1:2", "h:80", "", "1999"), _word
)


@st.composite
def _tags(draw) -> str:
    """``prog[pid]: `` and near misses."""
    program = draw(_name)
    pid = draw(_mostly("[1234]", "", "[]", "[12", "[a]b]", "[1 2]", "[x[y]"))
    end = draw(_mostly(": ", ":", " ", "", ":  "))
    return program + pid + end


@st.composite
def iso_frames(draw) -> bytes:
    pri = draw(_mostly("38", "0", "191", "192", "999", "", "038"))
    date = draw(_mostly("2026-11-24", "2024-02-29", "2026-02-29", "2026-13-01"))
    sep = draw(_mostly("T", " "))
    clock = draw(_mostly("06:42:28", "23:59:59", "24:00:00", "06:42:61"))
    frac = draw(_mostly("", ".5", ".123456", ".1234567", ",25", ".", ".123"))
    offset = draw(_mostly("", "Z", "+01:00", "-05:30", "+14:00", "+25:00", "+0100", "-00:00"))
    after = draw(_mostly(" ", "  ", ":", ": ", ""))
    host = draw(_name)
    text = f"<{pri}>{date}{sep}{clock}{frac}{offset}{after}{host} {draw(_tags())}{draw(_word)}"
    return text.encode("utf-8")


@st.composite
def bsd_frames(draw) -> bytes:
    pri = draw(_mostly("38", "0", "191", "192"))
    month = draw(_mostly("Nov", "nov", "Feb", "Foo"))
    day = draw(_mostly("24", " 4", "04", "29", "31", "4"))
    clock = draw(_mostly("06:42:28", "25:00:00", "06:42:28.5"))
    host = draw(_name)
    return f"<{pri}>{month} {day} {clock} {host} {draw(_tags())}{draw(_word)}".encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=iso_frames(), zone=st.sampled_from(ZONES))
def test_iso_shape_both_ways(frame, zone):
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = both_ways(monkeypatch, frame, zone)
    assert_same(fast, slow, ordered=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=bsd_frames(), zone=st.sampled_from(ZONES))
def test_bsd_shape_both_ways(frame, zone):
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = both_ways(monkeypatch, frame, zone)
    assert_same(fast, slow, ordered=False)

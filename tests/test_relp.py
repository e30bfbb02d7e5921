"""The sans-IO RELP core (syslogsrc.relp): frames, offers, the TXNR sequence and window, answers,
and every way a client can break the protocol, fed whole and one byte at a time."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syslogsrc.relp import (
    MAX_CONTROL_DATA,
    MAX_TXNR,
    SERVERCLOSE,
    Close,
    LocalProtocolError,
    Open,
    ProtocolError,
    RelpServerConnection,
    State,
    Syslog,
    next_txnr,
    parse_offers,
)

#: The offers librelp's client sends (relpSessConstructOffers: the offers list is built by
#: prepending, so relp_version comes first, relp_software's values in reverse).
LIBRELP_OFFERS = (
    b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"
)


def frame(txnr: int, command: bytes, data: bytes = b"") -> bytes:
    """A RELP frame as librelp's relpFrameBuildSendbuf writes it."""
    if data:
        return b"%d %s %d %s\n" % (txnr, command, len(data), data)
    return b"%d %s 0\n" % (txnr, command)


def opened(**kwargs: object) -> RelpServerConnection:
    conn = RelpServerConnection(**kwargs)  # type: ignore[arg-type]
    [event] = conn.receive_data(frame(1, b"open", LIBRELP_OFFERS))
    assert isinstance(event, Open)
    conn.answer_open(1)
    return conn


def feed_bytewise(conn: RelpServerConnection, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events.extend(conn.receive_data(data[i : i + 1]))
    return events


def only_error(events: list) -> ProtocolError:
    assert events, "no event"
    error = events[-1]
    assert isinstance(error, ProtocolError), events
    return error


# ---------------------------------------------------------------------------------------------
# open


def test_open_from_librelp_is_answered_with_our_offers() -> None:
    conn = RelpServerConnection(software=("syslogsrc", "9.9"))
    [event] = conn.receive_data(frame(1, b"open", LIBRELP_OFFERS))
    assert event == Open(
        txnr=1,
        offers=(
            ("relp_version", ("0",)),
            ("relp_software", ("librelp", "1.11.0", "http://librelp.adiscon.com")),
            ("commands", ("syslog",)),
        ),
        version=0,
        commands=("syslog",),
    )
    assert conn.state is State.OPEN
    assert conn.unanswered == (1,)
    data = b"200 OK\nrelp_version=0\nrelp_software=syslogsrc,9.9\ncommands=syslog"
    assert conn.answer_open(1) == b"1 rsp %d %s\n" % (len(data), data)
    assert conn.unanswered == ()


def test_open_with_commands_we_do_not_support_answers_only_ours() -> None:
    conn = RelpServerConnection()
    [event] = conn.receive_data(
        frame(1, b"open", b"relp_version=0\ncommands=eventlog,syslog,starttls\nfuture=1,2")
    )
    assert isinstance(event, Open)
    assert event.commands == ("syslog",)
    assert event.offers[-1] == ("future", ("1", "2"))
    assert conn.answer_open(1).endswith(b"\ncommands=syslog\n")


def test_open_with_a_higher_version_is_answered_with_ours() -> None:
    # librelp's client refuses a server version above its own (RELP_RET_INCOMPAT_OFFERS):
    # we answer the lower of the two, as librelp's server does
    conn = RelpServerConnection()
    [event] = conn.receive_data(frame(1, b"open", b"relp_version=7\ncommands=syslog"))
    assert isinstance(event, Open) and event.version == 0
    assert b"\nrelp_version=0\n" in conn.answer_open(1)


def test_open_without_a_version_offer_uses_ours() -> None:
    conn = RelpServerConnection()
    [event] = conn.receive_data(frame(1, b"open", b"commands=syslog"))
    assert isinstance(event, Open) and event.version == 0


@pytest.mark.parametrize(
    ("offers", "reason"),
    [
        (b"relp_version=0\ncommands=eventlog", "required command not supported by client"),
        (b"relp_version=0", "required command not supported by client"),
        (b"relp_version=\ncommands=syslog", "invalid offer relp_version="),
        (b"relp_version=one\ncommands=syslog", "invalid offer relp_version=one"),
    ],
)
def test_open_with_unacceptable_offers_is_refused(offers: bytes, reason: str) -> None:
    conn = RelpServerConnection()
    error = only_error(conn.receive_data(frame(1, b"open", offers)))
    assert error.txnr == 1
    assert error.reason == reason
    text = b"500 " + reason.encode()
    assert error.answer == b"1 rsp %d %s\n" % (len(text), text) + SERVERCLOSE
    assert conn.state is State.CLOSED


def test_open_twice_is_refused_with_librelps_words() -> None:
    conn = opened()
    error = only_error(conn.receive_data(frame(2, b"open", LIBRELP_OFFERS)))
    assert error.answer.startswith(b"2 rsp 43 500 protocol error: connection already open\n")


def test_parse_offers_skips_empty_lines_and_values() -> None:
    assert parse_offers(b"\na=1,,2\n\nb\nc=\n") == (("a", ("1", "2")), ("b", ()), ("c", ()))
    assert parse_offers(b"x=\xff") == (("x", ("\xff",)),)


# ---------------------------------------------------------------------------------------------
# syslog, answers, close


def test_syslog_frames_are_events_with_their_message() -> None:
    conn = opened()
    events = conn.receive_data(frame(2, b"syslog", b"<13>hello") + frame(3, b"syslog", b"a b\nc"))
    assert events == [Syslog(2, b"<13>hello"), Syslog(3, b"a b\nc")]
    assert conn.unanswered == (2, 3)
    assert conn.answer_ok(2) == b"2 rsp 6 200 OK\n"
    assert conn.unanswered == (3,)


def test_answers_may_go_out_of_order() -> None:
    conn = opened()
    conn.receive_data(b"".join(frame(t, b"syslog", b"m%d" % t) for t in range(2, 6)))
    assert conn.answer_ok(4) == b"4 rsp 6 200 OK\n"
    assert conn.answer_error(2, "disk full") == b"2 rsp 13 500 disk full\n"
    assert conn.answer_ok(5) == b"5 rsp 6 200 OK\n"
    assert conn.unanswered == (3,)


def test_answering_twice_or_an_unknown_txnr_is_our_bug() -> None:
    conn = opened()
    conn.receive_data(frame(2, b"syslog", b"m"))
    conn.answer_ok(2)
    with pytest.raises(LocalProtocolError):
        conn.answer_ok(2)
    with pytest.raises(LocalProtocolError):
        conn.answer_ok(77)
    with pytest.raises(LocalProtocolError):
        conn.answer_open(2)


def test_error_text_is_one_short_printable_line() -> None:
    conn = opened()
    conn.receive_data(frame(2, b"syslog", b"m"))
    answer = conn.answer_error(2, "line\nbreak \xe9" + "x" * 200)
    text = answer.split(b" ", 3)[3][:-1]
    assert text.startswith(b"500 line?break ?")
    assert len(text) == 4 + 80
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1


def test_close_is_answered_and_ends_the_connection() -> None:
    conn = opened()
    assert conn.receive_data(frame(2, b"close")) == [Close(2)]
    assert conn.state is State.CLOSING
    assert conn.answer_close(2) == b"2 rsp 0\n" + SERVERCLOSE
    assert conn.state is State.CLOSED


def test_data_after_close_is_a_protocol_error() -> None:
    conn = opened()
    conn.receive_data(frame(2, b"syslog", b"m") + frame(3, b"close"))
    error = only_error(conn.receive_data(frame(4, b"syslog", b"late")))
    assert (error.txnr, error.reason) == (None, "data after close")
    assert not conn.awaiting(2)
    # in the same read as the close, too
    conn = opened()
    events = conn.receive_data(frame(2, b"close") + b"x")
    assert events[0] == Close(2)
    assert only_error(events).reason == "data after close"


def test_close_waits_for_earlier_answers() -> None:
    conn = opened()
    assert conn.receive_data(frame(2, b"syslog", b"m") + frame(3, b"close")) == [
        Syslog(2, b"m"),
        Close(3),
    ]
    with pytest.raises(LocalProtocolError):
        conn.answer_close(3)
    conn.answer_ok(2)
    assert conn.answer_close(3).startswith(b"3 rsp 0\n")


def test_close_before_open_is_answered() -> None:
    conn = RelpServerConnection()
    assert conn.receive_data(frame(1, b"close")) == [Close(1)]


def test_server_close_is_the_hint_and_forgets_unanswered_frames() -> None:
    conn = opened()
    conn.receive_data(frame(2, b"syslog", b"m") + b"3 sys")
    assert conn.server_close() == b"0 serverclose 0\n"
    assert conn.state is State.CLOSED
    assert not conn.awaiting(2)
    assert conn.receive_data(b"log 1 x\n") == []


def test_a_whole_session_fed_one_byte_at_a_time_gives_the_same_events() -> None:
    stream = (
        frame(1, b"open", LIBRELP_OFFERS)
        + b"".join(frame(t, b"syslog", b"message %d " % t * t) for t in range(2, 40))
        + frame(40, b"close")
    )
    whole = RelpServerConnection()
    events = whole.receive_data(stream)
    bytewise = RelpServerConnection()
    assert feed_bytewise(bytewise, stream) == events
    assert len(events) == 40 and isinstance(events[-1], Close)
    assert bytewise.frames == whole.frames == 40


def test_txnrs_wrap_from_the_largest_to_one() -> None:
    assert next_txnr(1) == 2
    assert next_txnr(MAX_TXNR - 1) == MAX_TXNR
    assert next_txnr(MAX_TXNR) == 1
    conn = opened()
    conn.expected_txnr = MAX_TXNR  # as after 999 999 998 frames
    events = conn.receive_data(frame(MAX_TXNR, b"syslog", b"a") + frame(1, b"syslog", b"b"))
    assert events == [Syslog(MAX_TXNR, b"a"), Syslog(1, b"b")]


def test_a_syslog_frame_of_max_data_size_passes() -> None:
    conn = opened(max_data_size=100)
    assert conn.receive_data(frame(2, b"syslog", b"x" * 100)) == [Syslog(2, b"x" * 100)]


def test_open_offers_may_exceed_a_small_max_data_size() -> None:
    conn = RelpServerConnection(max_data_size=8)
    [event] = conn.receive_data(frame(1, b"open", LIBRELP_OFFERS))
    assert isinstance(event, Open)


# ---------------------------------------------------------------------------------------------
# protocol errors: answered 500 (for the frame's TXNR, else 0), serverclose, nothing more read

HOSTILE = [
    pytest.param(b"x", None, "invalid frame header", id="not-a-digit"),
    pytest.param(b"1234567890 ", None, "invalid frame header", id="txnr-10-digits"),
    pytest.param(b"2 sys-log 1 x\n", None, "invalid frame header", id="command-not-alpha"),
    pytest.param(b"2 " + b"a" * 33, None, "invalid frame header", id="command-33-letters"),
    pytest.param(b"2 syslog 1234567890", None, "invalid frame header", id="datalen-10-digits"),
    pytest.param(b"2  syslog", None, "invalid frame header", id="two-spaces"),
    pytest.param(b"2 syslog x", None, "invalid frame header", id="datalen-not-a-number"),
    pytest.param(b"0 syslog 1 x\n", 0, "txnr 0 is reserved for hints", id="txnr-0"),
    pytest.param(b"5 syslog 1 x\n", 5, "txnr 5 out of sequence, expected 2", id="txnr-jump"),
    pytest.param(b"1 syslog 1 x\n", 1, "txnr 1 out of sequence, expected 2", id="txnr-again"),
    pytest.param(b"2 rsp 6 200 OK\n", 2, "command 'rsp' not supported", id="rsp-from-client"),
    pytest.param(b"2 starttls 0\n", 2, "command 'starttls' not supported", id="starttls"),
    pytest.param(b"2 SYSLOG 1 x\n", 2, "command 'SYSLOG' not supported", id="uppercase"),
    pytest.param(b"2 syslog 0 \n", 2, "DATALEN 0 and no trailer after it", id="empty-with-sp"),
    pytest.param(b"2 syslog 3\nabc\n", 2, "DATALEN 3 and no DATA", id="data-after-lf"),
    pytest.param(b"2 syslog 3 abcd\n", 2, "no trailer (LF) after DATALEN octets", id="long"),
    pytest.param(b"2 syslog 3 ab\nX", 2, "no trailer (LF) after DATALEN octets", id="short"),
    pytest.param(
        b"2 syslog 65 " + b"x" * 65 + b"\n", 2, "syslog DATALEN 65 over the maximum of 64", id="big"
    ),
    pytest.param(
        b"2 close 999999999 ",
        2,
        f"close DATALEN 999999999 over the maximum of {MAX_CONTROL_DATA}",
        id="control-big",
    ),
]


@pytest.mark.parametrize(("data", "txnr", "reason"), HOSTILE)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_protocol_errors_are_answered_then_the_connection_is_closed(
    data: bytes, txnr: int | None, reason: str, bytewise: bool
) -> None:
    conn = opened(max_data_size=64)
    events = feed_bytewise(conn, data) if bytewise else conn.receive_data(data)
    error = only_error(events)
    assert len(events) == 1
    assert (error.txnr, error.reason) == (txnr, reason)
    text = b"500 " + reason.encode()
    assert error.answer == b"%d rsp %d %s\n" % (txnr or 0, len(text), text) + SERVERCLOSE
    assert conn.state is State.CLOSED
    assert conn.unanswered == ()
    assert conn.receive_data(frame(2, b"syslog", b"ok")) == []


def test_syslog_before_open_is_refused() -> None:
    conn = RelpServerConnection()
    error = only_error(conn.receive_data(frame(1, b"syslog", b"early")))
    assert error.answer.startswith(b"1 rsp 30 500 command syslog before open\n")


def test_the_first_txnr_must_be_one() -> None:
    conn = RelpServerConnection()
    error = only_error(conn.receive_data(frame(2, b"open", LIBRELP_OFFERS)))
    assert error.reason == "txnr 2 out of sequence, expected 1"


def test_a_txnr_reused_while_unanswered_is_refused() -> None:
    conn = opened()
    conn.expected_txnr = MAX_TXNR
    conn.receive_data(frame(MAX_TXNR, b"syslog", b"a"))
    conn.expected_txnr = MAX_TXNR  # a broken client: the same txnr again
    error = only_error(conn.receive_data(frame(MAX_TXNR, b"syslog", b"b")))
    assert error.reason == f"txnr {MAX_TXNR} reused while unanswered"


def test_frames_before_an_error_in_the_same_read_are_events() -> None:
    conn = opened()
    events = conn.receive_data(frame(2, b"syslog", b"good") + b"9 syslog 1 x\n")
    assert events[0] == Syslog(2, b"good")
    assert isinstance(events[1], ProtocolError) and len(events) == 2


def test_window_overrun_is_refused() -> None:
    conn = opened(max_window=4)
    events = conn.receive_data(b"".join(frame(t, b"syslog", b"m") for t in range(2, 6)))
    assert [type(e) for e in events] == [Syslog] * 4
    error = only_error(conn.receive_data(frame(6, b"syslog", b"m")))
    assert error.reason == "window overrun: more than 4 frames unanswered"


def test_the_window_frees_as_frames_are_answered() -> None:
    conn = opened(max_window=2)
    for txnr in range(2, 50):
        assert conn.receive_data(frame(txnr, b"syslog", b"m")) == [Syslog(txnr, b"m")]
        conn.answer_ok(txnr)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_data_size"):
        RelpServerConnection(max_data_size=0)
    with pytest.raises(ValueError, match="max_window"):
        RelpServerConnection(max_window=0)


# ---------------------------------------------------------------------------------------------
# fuzz: whatever arrives, receive_data returns events (never raises), holds at most one frame,
# and either goes on or ends with exactly one ProtocolError that carries its answer

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES") or 300),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

PIECES = st.sampled_from(
    [
        b"1 ",
        b"2 ",
        b"3 ",
        b"0 ",
        b"999999999 ",
        b"open ",
        b"syslog ",
        b"close ",
        b"rsp ",
        b"0",
        b"5 ",
        b"12 ",
        b"65 ",
        b"99999",
        b"\n",
        b" ",
        b"hello",
        b"relp_version=0\ncommands=syslog",
        b"\x00\xff",
    ]
)


def check_events(conn: RelpServerConnection, events: list) -> None:
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert len(errors) <= 1
    if errors:
        assert events[-1] is errors[0]
        assert conn.state is State.CLOSED
        error = errors[0]
        assert error.answer.endswith(b"\n" + SERVERCLOSE)
        head = error.answer.split(b"\n", 1)[0]
        assert head.split(b" ")[1:2] == [b"rsp"] and b" 500 " in head
    for event in events:
        assert isinstance(event, Open | Syslog | Close | ProtocolError)
    assert len(conn._buf) <= 64 + 54 + MAX_CONTROL_DATA


@FUZZ
@given(st.lists(st.one_of(PIECES, st.binary(max_size=20)), max_size=30), st.data())
def test_fuzz_receive_data_never_raises_and_answers_malformed_input(
    pieces: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(pieces)
    conn = RelpServerConnection(max_data_size=64, max_window=3)
    events = []
    pos = 0
    while pos < len(stream):
        size = data.draw(st.integers(min_value=1, max_value=max(1, len(stream) - pos)))
        got = conn.receive_data(stream[pos : pos + size])
        check_events(conn, got)
        events.extend(got)
        pos += size
        # answer what can be answered, as a protocol does, so the window moves
        for event in got:
            if isinstance(event, Open):
                conn.answer_open(event.txnr)
            elif isinstance(event, Syslog) and data.draw(st.booleans()):
                conn.answer_ok(event.txnr)
    assert sum(isinstance(e, ProtocolError) for e in events) <= 1
    # the same bytes at once give the same events (when nothing was answered in between)
    if not any(isinstance(e, Syslog) for e in events):
        again = RelpServerConnection(max_data_size=64, max_window=3)
        whole = again.receive_data(stream)
        for event in whole:
            if isinstance(event, Open):
                again.answer_open(event.txnr)
        assert whole == events


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_garbage_is_answered(garbage: bytes) -> None:
    conn = opened(max_data_size=64)
    events = conn.receive_data(garbage + b"\n" * 70)
    check_events(conn, events)
    # 70 LFs end any frame a header could have begun (DATALEN <= 64): so it is answered
    # or it was a sequence of good frames
    if conn.state is not State.CLOSED:
        assert all(isinstance(e, Syslog | Close) for e in events)

"""syslogsrc.framing: tables per framing, then properties over any input and any chunking."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syslogsrc.framing import FRAMINGS, MAX_SKIPPED_MSG_LEN, FrameDecoder, FramingError

# RFC 5424 section 6.5 examples, the messages RFC 6587 frames.
RFC5424_EXAMPLES = [
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
    b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
    b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
    b"%% It's time to make the do-nuts.",
    b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 "
    b'iut="3" eventSource="Application" eventID="1011"] \xef\xbb\xbfAn application event log entry',
    b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 "
    b'iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]',
]

COUNTERS = (
    "frames",
    "bytes",
    "truncated",
    "discarded_bytes",
    "invalid",
    "empty",
    "incomplete",
    "overhead_bytes",
    "oversize",
    "oversize_length",
)


def octet(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1: MSG-LEN SP SYSLOG-MSG."""
    return b"%d %s" % (len(message), message)


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def decode(stream: bytes, chunks: list[bytes] | None = None, **options):
    """Feed ``chunks`` (default: the stream at once), then finish; return (frames, decoder)."""
    decoder = FrameDecoder(**options)
    frames: list[bytes] = []
    for chunk in [stream] if chunks is None else chunks:
        frames += decoder.feed(chunk)
    frames += decoder.finish()
    return frames, decoder


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def counters(decoder: FrameDecoder) -> dict[str, int]:
    return {name: getattr(decoder, name) for name in COUNTERS}


def assert_accounted(decoder: FrameDecoder, frames: list[bytes]) -> None:
    """Every input byte is in a frame, framing overhead, discarded, or still buffered."""
    assert decoder.bytes == (
        sum(map(len, frames)) + decoder.overhead_bytes + decoder.discarded_bytes + decoder.buffered
    )


def assert_same_whatever_the_chunking(stream: bytes, **options) -> list[bytes]:
    whole, reference = decode(stream, **options)
    one_by_one, decoder = decode(stream, bytewise(stream), **options)
    assert one_by_one == whole
    assert counters(decoder) == counters(reference)
    assert_accounted(reference, whole)
    return whole


# --- options -----------------------------------------------------------------------------------


def test_defaults():
    decoder = FrameDecoder()
    assert (decoder.max_size, decoder.on_error, decoder.framing) == (65536, "resync", None)
    assert counters(decoder) == dict.fromkeys(COUNTERS, 0)
    assert decoder.error is None
    assert decoder.buffered == 0
    assert not decoder.closed


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"framing": "octet"}, ValueError, ["framing", "'octet'"]),
        ({"framing": "LF"}, ValueError, ["framing", "'LF'"]),
        ({"max_size": 0}, ValueError, ["max_size", "0"]),
        ({"max_size": -5}, ValueError, ["max_size", "-5"]),
        ({"max_size": 1.5}, TypeError, ["max_size", "1.5"]),
        ({"max_size": True}, TypeError, ["max_size", "True"]),
        ({"on_error": "drop"}, ValueError, ["on_error", "'drop'"]),
    ],
)
def test_bad_options_name_the_argument_and_value(options, error, words):
    with pytest.raises(error) as raised:
        FrameDecoder(**options)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("framing", [f for f in FRAMINGS if f != "auto"])
def test_explicit_framing_is_reported_from_the_start(framing):
    assert FrameDecoder(framing).framing == framing


def test_max_size_one_is_allowed():
    assert decode(b"3 abc\n", max_size=1)[0] == [b"a"]
    # even a header cut short is cut to max_size at the end of the stream
    frames, decoder = decode(b"10", max_size=1)
    assert frames == [b"1"]
    assert (decoder.truncated, decoder.discarded_bytes, decoder.incomplete) == (1, 1, 1)


# --- LF and NUL (RFC 6587 section 3.4.2) -------------------------------------------------------

LF_TABLE = [
    # (stream, frames, empty)
    (b"", [], 0),
    (b"<13>one\n", [b"<13>one"], 0),
    (b"<13>one\n<13>two\n", [b"<13>one", b"<13>two"], 0),
    (b"<13>one\r\n<13>two\r\n", [b"<13>one", b"<13>two"], 0),
    (b"<13>mixed\r\n<13>ends\n", [b"<13>mixed", b"<13>ends"], 0),
    # only the CR right before the LF is trailer
    (b"a\rb\n", [b"a\rb"], 0),
    (b"a\r\r\n", [b"a\r"], 0),
    (b"\ra\n", [b"\ra"], 0),
    # blank lines are skipped, and counted
    (b"\n", [], 1),
    (b"\r\n", [], 1),
    (b"\n\n<13>x\n\r\n\n<13>y\n", [b"<13>x", b"<13>y"], 4),
    # NUL is data in LF framing
    (b"a\0b\n", [b"a\0b"], 0),
    # the last frame, cut short by the end of the stream, still comes out
    (b"<13>one\n<13>two", [b"<13>one", b"<13>two"], 0),
    # ... as received: its CR had no LF after it
    (b"<13>one\r", [b"<13>one\r"], 0),
    # octet counts mean nothing in LF framing
    (b"5 hello\n", [b"5 hello"], 0),
]


@pytest.mark.parametrize(("stream", "frames", "empty"), LF_TABLE)
def test_lf(stream, frames, empty):
    decoder_frames = assert_same_whatever_the_chunking(stream, framing="lf")
    assert decoder_frames == frames
    assert decode(stream, framing="lf")[1].empty == empty


def test_lf_rfc5424_examples():
    stream = b"".join(m + b"\n" for m in RFC5424_EXAMPLES)
    assert assert_same_whatever_the_chunking(stream, framing="lf") == RFC5424_EXAMPLES


NUL_TABLE = [
    (b"<13>one\0<13>two\0", [b"<13>one", b"<13>two"], 0),
    # LF and CR are data in NUL framing
    (b"line one\nline two\r\n\0", [b"line one\nline two\r\n"], 0),
    (b"\0\0a\0", [b"a"], 2),
    (b"a\0b", [b"a", b"b"], 0),
]


@pytest.mark.parametrize(("stream", "frames", "empty"), NUL_TABLE)
def test_nul(stream, frames, empty):
    assert assert_same_whatever_the_chunking(stream, framing="nul") == frames
    assert decode(stream, framing="nul")[1].empty == empty


def test_partial_frame_counts_as_incomplete():
    frames, decoder = decode(b"a\nb", framing="lf")
    assert frames == [b"a", b"b"]
    assert (decoder.frames, decoder.incomplete) == (2, 1)


# --- octet counting (RFC 6587 section 3.4.1) ---------------------------------------------------


def test_octet_counting_rfc5424_examples():
    stream = b"".join(map(octet, RFC5424_EXAMPLES))
    frames = assert_same_whatever_the_chunking(stream, framing="octet-counting")
    assert frames == RFC5424_EXAMPLES
    decoder = decode(stream, framing="octet-counting")[1]
    assert decoder.overhead_bytes == sum(len(b"%d " % len(m)) for m in RFC5424_EXAMPLES)
    assert (decoder.invalid, decoder.incomplete, decoder.error) == (0, 0, None)


OCTET_TABLE = [
    # (stream, frames)
    (b"", []),
    (b"5 hello", [b"hello"]),
    (b"5 hello3 abc", [b"hello", b"abc"]),
    # the message may hold anything, delimiters and spaces included
    (b"11 line\none\r\n\x003 a b", [b"line\none\r\n\x00", b"a b"]),
    (b"1  ", [b" "]),
    (b"1 x", [b"x"]),
    # LF / CR LF between frames: skipped as blank lines
    (b"5 hello\n5 world\r\n", [b"hello", b"world"]),
]


@pytest.mark.parametrize(("stream", "frames"), OCTET_TABLE)
def test_octet_counting(stream, frames):
    assert assert_same_whatever_the_chunking(stream, framing="octet-counting") == frames


def test_octet_count_spanning_chunks():
    message = b"<13>" + b"m" * 996
    stream = octet(message) + octet(b"next")
    for cut in (1, 2, 3, 4, 5, 500, len(stream) - 5):
        frames, decoder = decode(stream, split_at(stream, [cut]), framing="octet-counting")
        assert frames == [message, b"next"], cut
        assert decoder.incomplete == 0


def test_ten_digit_msg_len_is_valid():
    assert MAX_SKIPPED_MSG_LEN == 1073741824  # ten digits, the largest count skipped
    decoder = FrameDecoder("octet-counting", max_size=4)
    assert decoder.feed(b"1073741824 abcdef") == [b"abcd"]
    assert decoder.invalid == 0
    assert decoder.discarded_bytes == 2
    assert (decoder.oversize, decoder.oversize_length) == (1, 1073741824)


@pytest.mark.parametrize(
    ("stream", "frames", "buffered_before_finish"),
    [
        (b"16 <1>1", [b"<1>1"], 4),  # the message cut short: what was received
        (b"5 hello16", [b"hello", b"16"], 2),  # a header cut short comes out as itself
        (b"5 hello16 ", [b"hello"], 0),  # a header and nothing more: nothing to deliver
        (b"1", [b"1"], 1),
        (b"\r", [b"\r"], 1),
    ],
)
def test_octet_counting_partial_at_finish(stream, frames, buffered_before_finish):
    decoder = FrameDecoder("octet-counting")
    delivered = decoder.feed(stream)
    assert decoder.buffered == buffered_before_finish
    delivered += decoder.finish()
    assert delivered == frames
    assert decoder.incomplete == len(frames) - delivered.count(b"hello")
    assert decoder.buffered == 0
    assert_accounted(decoder, delivered)


# --- auto (RFC 6587 section 3.4.2) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "framing", "frames"),
    [
        (b"5 hello\n", "octet-counting", [b"hello"]),
        (b"9 <13>hello", "octet-counting", [b"<13>hello"]),
        (b"<13>hello\n5 world\n", "lf-or-nul", [b"<13>hello", b"5 world"]),
        (b"hello\0", "lf-or-nul", [b"hello"]),
        (b"\nhello\n", "lf-or-nul", [b"hello"]),
        (b" 5 hello\n", "lf-or-nul", [b" 5 hello"]),
    ],
)
def test_auto_decides_by_the_first_byte(stream, framing, frames):
    assert assert_same_whatever_the_chunking(stream) == frames
    assert decode(stream)[1].framing == framing


AUTO_NUL_TABLE = [
    # (stream, frames, empty, overhead_bytes)
    # Python's logging.handlers.SysLogHandler over TCP or a unix stream socket: NUL, no LF
    (b"<12>app: one\0<12>app: two\0", [b"<12>app: one", b"<12>app: two"], 0, 2),
    # LF and NUL mixed; a NUL right after an LF (or the reverse) is an empty frame, skipped
    (b"<13>a\n<13>b\0<13>c\n\0<13>d\0\n", [b"<13>a", b"<13>b", b"<13>c", b"<13>d"], 2, 6),
    # CR LF is still one trailer; a CR before a NUL goes with it too
    (b"<13>a\r\n<13>b\r\0", [b"<13>a", b"<13>b"], 0, 4),
    # ... but a CR anywhere else is message
    (b"<13>a\rb\0", [b"<13>a\rb"], 0, 1),
    # a NUL first is not a digit: non-transparent framing, and an empty frame
    (b"\0<13>a\0", [b"<13>a"], 1, 2),
    # the frame cut short by the end of the stream comes out as with LF
    (b"<13>a\0<13>b", [b"<13>a", b"<13>b"], 0, 1),
]


@pytest.mark.parametrize(("stream", "frames", "empty", "overhead"), AUTO_NUL_TABLE)
def test_auto_non_transparent_framing_ends_a_frame_at_lf_or_nul(stream, frames, empty, overhead):
    # syslog-ng's network() does the same (find_eom in lib/logproto/logproto-text-server.c)
    assert assert_same_whatever_the_chunking(stream) == frames
    decoder = decode(stream)[1]
    assert decoder.framing == "lf-or-nul"
    assert (decoder.empty, decoder.overhead_bytes) == (empty, overhead)


def test_auto_python_syslog_handler_stream_gives_one_frame_per_message():
    messages = [b"<12>pyapp: message %d" % i for i in range(100)]
    stream = b"".join(m + b"\0" for m in messages)
    frames, decoder = decode(stream, split_at(stream, list(range(0, len(stream), 977))))
    assert frames == messages
    assert (decoder.frames, decoder.incomplete, decoder.empty) == (100, 0, 0)
    assert_accounted(decoder, frames)


def test_explicit_lf_and_nul_framing_keep_the_other_byte_as_data():
    assert decode(b"<13>a\0b\n", framing="lf")[0] == [b"<13>a\0b"]
    assert decode(b"<13>a\nb\0", framing="nul")[0] == [b"<13>a\nb"]


def test_auto_nul_trailer_and_truncation():
    stream = b"<13>abcdefgh\0<13>x\0" + b"y" * 20 + b"\0ok\0"
    frames = assert_same_whatever_the_chunking(stream, max_size=6)
    assert frames == [b"<13>ab", b"<13>x", b"y" * 6, b"ok"]
    decoder = decode(stream, max_size=6)[1]
    assert (decoder.truncated, decoder.discarded_bytes) == (2, 6 + 14)


def test_auto_is_undecided_until_the_first_byte():
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.framing is None
    assert decoder.feed(b"1") == []
    assert decoder.framing == "octet-counting"


def test_auto_finish_without_input():
    decoder = FrameDecoder()
    assert decoder.finish() == []
    assert decoder.framing is None


def test_auto_leading_zero_is_octet_counting_then_invalid():
    # Any digit means octet counting (the spec); "0" can only start an invalid MSG-LEN, and the
    # resync delivers the line anyway.
    frames, decoder = decode(b"0 hello\n5 world")
    assert frames == [b"0 hello", b"world"]
    assert (decoder.framing, decoder.invalid) == ("octet-counting", 1)


# --- maximum message size ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framing", "stream", "frames", "truncated", "discarded"),
    [
        ("lf", b"abcdefgh\nxy\n", [b"abcde", b"xy"], 1, 3),
        ("lf", b"abcdefgh\r\nxy\r\n", [b"abcde", b"xy"], 1, 4),  # the CR goes with the rest
        ("lf", b"abcde\r\nxy\n", [b"abcde", b"xy"], 0, 0),  # exactly max_size before CR LF
        ("lf", b"abcde\rf\n", [b"abcde"], 1, 2),
        ("lf", b"abcde\r", [b"abcde"], 1, 1),  # no LF came: the CR was message
        ("nul", b"abcdefgh\0xy\0", [b"abcde", b"xy"], 1, 3),
        ("nul", b"abcde\0", [b"abcde"], 0, 0),
        ("nul", b"abcdefgh", [b"abcde"], 1, 3),
        ("octet-counting", b"8 abcdefgh2 xy", [b"abcde", b"xy"], 1, 3),
        ("octet-counting", b"5 abcde2 xy", [b"abcde", b"xy"], 0, 0),
        # the truncated frame is delivered even when the rest never comes
        ("octet-counting", b"8 abcdefg", [b"abcde"], 1, 2),
    ],
)
def test_truncation(framing, stream, frames, truncated, discarded):
    assert assert_same_whatever_the_chunking(stream, framing=framing, max_size=5) == frames
    decoder = decode(stream, framing=framing, max_size=5)[1]
    assert decoder.truncated == truncated
    assert decoder.discarded_bytes == discarded


def test_truncated_frame_is_delivered_as_soon_as_max_size_arrived():
    for framing, start in (("lf", b"abcdefgh"), ("octet-counting", b"99 abcdefgh")):
        decoder = FrameDecoder(framing, max_size=5)
        assert decoder.feed(start) == [b"abcde"]
        assert decoder.buffered == 0


def test_huge_declared_octet_count_is_never_buffered():
    # A MSG-LEN up to 1 GiB is skipped by count, never buffered.
    max_size = 1024
    decoder = FrameDecoder("octet-counting", max_size=max_size)
    frames = decoder.feed(b"999999999 ")
    chunk = b"x" * 65536
    for _ in range(160):  # 10 MiB of it
        frames += decoder.feed(chunk)
        assert decoder.buffered <= max_size
    assert frames == [b"x" * max_size]
    assert decoder.discarded_bytes == 160 * 65536 - max_size
    assert decoder.truncated == 1
    assert decoder.finish() == []


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_oversize_count_is_counted_when_its_header_is_read(chunking):
    # Not when max_size bytes have come: until then the messages that follow are swallowed.
    decoder = FrameDecoder("octet-counting", max_size=16)
    header = b"100 "
    for chunk in [header] if chunking == "whole" else bytewise(header):
        assert decoder.feed(chunk) == []
    assert (decoder.oversize, decoder.oversize_length, decoder.truncated) == (1, 100, 1)
    assert decoder.feed(b"<13>" + b"m" * 96 + b"5 after") == [b"<13>" + b"m" * 12, b"after"]
    assert (decoder.oversize, decoder.truncated, decoder.discarded_bytes) == (1, 1, 84)
    assert decoder.invalid == 0


# A count no sender means: an LF-framed line that starts with a number, here an epoch time.
ABSURD = b"2000000000 <13>1 - h app - - - hi\n"
AFTER = b"".join(octet(b"<13>1 - h app - - - after %d" % i) for i in range(3))


def test_absurd_count_is_an_invalid_header_resynced_nothing_after_it_lost():
    stream = ABSURD + AFTER
    frames = assert_same_whatever_the_chunking(stream, framing="octet-counting")
    assert frames == [ABSURD[:-1]] + [b"<13>1 - h app - - - after %d" % i for i in range(3)]
    decoder = decode(stream)[1]  # auto: the first byte is a digit
    assert (decoder.framing, decoder.invalid, decoder.oversize, decoder.truncated) == (
        "octet-counting",
        1,
        0,
        0,
    )
    error = decoder.error
    assert error is not None and error.offset == 0
    assert "MSG-LEN 2000000000 is over 1073741824" in error.reason
    assert "max_size 65536" in error.reason


def test_absurd_count_is_counted_when_its_header_is_read():
    decoder = FrameDecoder(max_size=64)
    assert decoder.feed(b"2000000000") == []
    assert decoder.invalid == 0  # 10 digits: could still be a fine count of 2 billion
    assert decoder.feed(b" <13>") == []  # now it is judged
    assert decoder.invalid == 1
    assert decoder.feed(b"hi\n") == [b"2000000000 <13>hi"]


def test_absurd_count_with_on_error_close_closes_at_once():
    decoder = FrameDecoder(max_size=64, on_error="close")
    assert decoder.feed(b"5 hello" + ABSURD + AFTER) == [b"hello"]
    assert decoder.closed and decoder.invalid == 1 and decoder.error is not None
    assert decoder.error.offset == 7


def test_just_over_the_skip_limit_is_invalid():
    frames, decoder = decode(b"1073741825 x\n2 ok", max_size=4)
    assert frames == [b"1073", b"ok"]  # the resync line, cut to max_size
    assert (decoder.invalid, decoder.oversize, decoder.truncated) == (1, 0, 1)


def test_absurd_count_under_a_larger_max_size_is_a_frame():
    # only a count over max_size can be oversize
    decoder = FrameDecoder("octet-counting", max_size=MAX_SKIPPED_MSG_LEN + 10)
    assert decoder.feed(b"1073741825 abc") == []
    assert (decoder.invalid, decoder.oversize, decoder.buffered) == (0, 0, 3)


def test_longer_msg_len_is_invalid_and_bounded_too():
    max_size = 1024
    decoder = FrameDecoder("octet-counting", max_size=max_size)
    frames = decoder.feed(b"%d " % 10**12)
    for _ in range(160):
        frames += decoder.feed(b"x" * 65536)
        assert decoder.buffered <= max_size + 1
    assert frames == [b"1000000000000 " + b"x" * (max_size - 14)]
    assert (decoder.invalid, decoder.truncated) == (1, 1)
    assert decoder.error is not None and "longer than 10 digits" in decoder.error.reason


@pytest.mark.parametrize("framing", ["lf", "nul", "auto"])
def test_ten_megabytes_without_a_delimiter_stay_bounded(framing):
    max_size = 4096
    decoder = FrameDecoder(framing, max_size=max_size)
    frames = []
    chunk = b"y" * 65536
    for _ in range(160):
        frames += decoder.feed(chunk)
        assert decoder.buffered <= max_size + 1
    assert frames == [b"y" * max_size]
    trailer = b"\0" if framing == "nul" else b"\n"
    frames += decoder.feed(trailer + b"after" + trailer)
    assert frames[-1] == b"after"
    assert decoder.truncated == 1
    assert_accounted(decoder, frames)


def test_one_byte_feeds_of_a_long_line_stay_bounded():
    decoder = FrameDecoder("lf", max_size=16)
    for byte in bytewise(b"z" * 1000):
        decoder.feed(byte)
        assert decoder.buffered <= 17
    assert decoder.feed(b"\nok\n") == [b"ok"]


# --- invalid octet counts ----------------------------------------------------------------------

INVALID_TABLE = [
    # (stream, offset, reason fragment, frames with on_error="resync")
    (b"x5 hello\n3 abc", 0, "NONZERO-DIGIT, got b'x'", [b"x5 hello", b"abc"]),
    (b"05 hello\n3 abc", 0, "leading zero", [b"05 hello", b"abc"]),
    (b"3 abc16<1>1 - -\r\n3 abc", 5, "expected SP after MSG-LEN, got b'<'", None),
    (b"12345678901 x\n", 0, "longer than 10 digits", [b"12345678901 x"]),
    (b"3 abc 3 def\n", 5, "got b' '", [b"abc", b" 3 def"]),
    (b"3 abc\r3 def\n", 5, "got b'\\r'", [b"abc", b"\r3 def"]),
    (b"5 hello5\n", 7, "expected SP after MSG-LEN, got b'\\n'", [b"hello", b"5"]),
    # the resync frame is itself cut to max_size (here 65536) and its end discarded
    pytest.param(
        b"x" + b"y" * 70000 + b"\n2 ok",
        0,
        "got b'x'",
        [b"x" + b"y" * 65535, b"ok"],
        id="resync-frame-truncated",
    ),
]


@pytest.mark.parametrize(("stream", "offset", "reason", "frames"), INVALID_TABLE)
def test_invalid_count_resync(stream, offset, reason, frames):
    delivered = assert_same_whatever_the_chunking(stream, framing="octet-counting")
    if frames is not None:
        assert delivered == frames
    decoder = decode(stream, framing="octet-counting")[1]
    assert decoder.invalid == 1
    error = decoder.error
    assert isinstance(error, FramingError)
    assert error.offset == offset
    assert reason in error.reason
    assert error.data == stream[offset : offset + 64]


def test_resync_delivers_the_bad_line_then_counts_again():
    stream = b"3 abc16<1>1 - -\r\n3 def"
    frames, decoder = decode(stream, framing="octet-counting")
    assert frames == [b"abc", b"16<1>1 - -", b"def"]
    assert (decoder.frames, decoder.invalid, decoder.incomplete) == (3, 1, 0)
    assert decoder.framing == "octet-counting"


def test_error_offset_when_the_header_spans_chunks():
    decoder = FrameDecoder("octet-counting")
    assert decoder.feed(b"3 abc12") == [b"abc"]
    assert decoder.error is None
    assert decoder.feed(b"3") == []
    assert decoder.feed(b"x rest\n") == [b"123x rest"]
    assert decoder.error == FramingError(5, "expected SP after MSG-LEN, got b'x'", b"123x rest\n")


def test_error_data_is_at_most_64_bytes():
    decoder = FrameDecoder("octet-counting")
    decoder.feed(b"?" * 500)
    assert decoder.error is not None
    assert decoder.error.data == b"?" * 64


def test_most_recent_error_is_kept():
    frames, decoder = decode(b"a\nb\n", framing="octet-counting")
    assert frames == [b"a", b"b"]
    assert decoder.invalid == 2
    assert decoder.error is not None and decoder.error.offset == 2


def test_invalid_count_close():
    decoder = FrameDecoder("octet-counting", on_error="close")
    assert decoder.feed(b"3 abc3 def12x more\n3 ghi") == [b"abc", b"def"]
    assert decoder.closed
    assert decoder.invalid == 1
    assert decoder.error == FramingError(
        10, "expected SP after MSG-LEN, got b'x'", b"12x more\n3 ghi"
    )
    # decoding has stopped; what follows is only held, for finish()
    assert decoder.feed(b"3 jkl") == []
    assert decoder.finish() == [b"12x more\n3 ghi3 jkl"]
    assert (decoder.frames, decoder.incomplete) == (3, 1)
    assert_accounted(decoder, [b"abc", b"def", b"12x more\n3 ghi3 jkl"])


def test_close_holds_at_most_max_size():
    decoder = FrameDecoder("octet-counting", max_size=8, on_error="close")
    assert decoder.feed(b"2 okx") == [b"ok"]
    for _ in range(100):
        assert decoder.feed(b"z" * 1000) == []
        assert decoder.buffered <= 8
    assert decoder.finish() == [b"x" + b"z" * 7]
    assert decoder.truncated == 1
    assert decoder.discarded_bytes == 100 * 1000 - 7


def test_close_in_auto_mode():
    frames, decoder = decode(b"5 hello5x <13>\n", on_error="close")
    assert frames == [b"hello", b"5x <13>\n"]
    assert decoder.closed and decoder.invalid == 1


def test_lf_framing_has_no_invalid_frames():
    frames, decoder = decode(b"12x\n0 zero\n", framing="lf", on_error="close")
    assert frames == [b"12x", b"0 zero"]
    assert (decoder.invalid, decoder.closed) == (0, False)


# --- the stream's end and the input type --------------------------------------------------------


def test_feed_after_finish_is_an_error():
    decoder = FrameDecoder("lf")
    decoder.finish()
    assert decoder.finish() == []
    with pytest.raises(RuntimeError, match="after finish"):
        decoder.feed(b"late\n")


@pytest.mark.parametrize("framing", ["lf", "nul", "octet-counting"])
def test_frames_are_bytes_whatever_the_buffer(framing):
    stream = {"lf": b"ab\ncd", "nul": b"ab\0cd", "octet-counting": b"2 ab2 cd"}[framing]
    decoder = FrameDecoder(framing)
    frames = decoder.feed(bytearray(stream[:3])) + decoder.feed(memoryview(stream[3:]))
    frames += decoder.finish()
    assert frames == [b"ab", b"cd"]
    assert all(type(frame) is bytes for frame in frames)


# --- properties --------------------------------------------------------------------------------
#
# What they prove, for every framing, both error policies, max_size from 1 to 40 (so that
# truncation is common) and any byte stream, fed in any chunking:
#
# 1. feed() and finish() never raise, and never deliver an empty frame or one over max_size;
# 2. byte accounting: after every call, bytes fed == bytes in the frames delivered
#    + overhead_bytes (headers, trailers, CR before LF) + discarded_bytes + buffered, and
#    buffered is 0 after finish(), so no input byte is lost or counted twice;
# 3. memory: buffered stays within max_size + 11 (a header) after every call;
# 4. chunking does not matter: the frames, all counters, the error's offset and reason are those
#    of feeding the stream at once;
# 5. round trip: frames encoded in the framing come out as they went in.

MAX_SIZES = st.integers(min_value=1, max_value=40)
OPTIONS = st.fixed_dictionaries(
    {
        "framing": st.sampled_from(FRAMINGS),
        "max_size": MAX_SIZES,
        "on_error": st.sampled_from(("resync", "close")),
    }
)
# Streams that look like syslog streams, valid and broken, more often than random bytes do.
PIECES = st.one_of(
    st.binary(max_size=50).map(octet),
    st.binary(max_size=30).map(lambda m: m + b"\n"),
    st.binary(max_size=30).map(lambda m: m + b"\r\n"),
    st.binary(max_size=30).map(lambda m: m + b"\0"),
    st.sampled_from(
        [b"\n", b"\r\n", b"\r", b"\0", b" ", b"0", b"1", b"12345678901", b"99 ", b"2000000000 "]
    ),
    st.binary(max_size=20),
)
STREAMS = st.one_of(st.binary(max_size=300), st.lists(PIECES, max_size=12).map(b"".join))


@st.composite
def chunked(draw, streams=STREAMS):
    stream = draw(streams)
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    return stream, split_at(stream, cuts)


def error_of(decoder: FrameDecoder):
    error = decoder.error
    return None if error is None else (error.offset, error.reason)


@given(chunked(), OPTIONS)
def test_any_input_is_accounted_for_and_bounded(stream_and_chunks, options):
    _stream, chunks = stream_and_chunks
    decoder = FrameDecoder(**options)
    frames: list[bytes] = []
    for chunk in chunks:
        frames += decoder.feed(chunk)
        assert_accounted(decoder, frames)
        assert decoder.buffered <= options["max_size"] + 11
    frames += decoder.finish()
    assert decoder.buffered == 0
    assert_accounted(decoder, frames)
    assert all(0 < len(frame) <= options["max_size"] for frame in frames)
    assert decoder.frames == len(frames)


@given(chunked(), OPTIONS)
def test_any_chunking_gives_the_same_frames(stream_and_chunks, options):
    stream, chunks = stream_and_chunks
    whole, reference = decode(stream, **options)
    pieces, decoder = decode(stream, chunks, **options)
    assert pieces == whole
    assert counters(decoder) == counters(reference)
    assert decoder.framing == reference.framing
    assert error_of(decoder) == error_of(reference)


@given(STREAMS, OPTIONS)
def test_one_byte_at_a_time_gives_the_same_frames(stream, options):
    whole, reference = decode(stream, **options)
    pieces, decoder = decode(stream, bytewise(stream), **options)
    assert pieces == whole
    assert counters(decoder) == counters(reference)
    assert error_of(decoder) == error_of(reference)


@given(st.lists(st.binary(min_size=1, max_size=60), max_size=10), st.data())
def test_octet_counting_round_trip(messages, data):
    stream = b"".join(map(octet, messages))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    frames, decoder = decode(stream, split_at(stream, cuts), framing="octet-counting")
    assert frames == messages
    assert (decoder.invalid, decoder.truncated, decoder.empty, decoder.incomplete) == (0, 0, 0, 0)


LINES = (
    st.binary(min_size=1, max_size=60)
    .filter(lambda m: not m.endswith(b"\r"))
    .map(lambda m: m.replace(b"\n", b" "))
)


@given(st.lists(LINES, max_size=10), st.sampled_from([b"\n", b"\r\n"]), st.data())
def test_lf_round_trip(messages, trailer, data):
    stream = b"".join(m + trailer for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    frames, decoder = decode(stream, split_at(stream, cuts), framing="lf")
    assert frames == messages
    assert decoder.overhead_bytes == len(trailer) * len(messages)


# auto on a connection that does not start with a digit: exactly LF framing of the same stream
# with every NUL made an LF, whatever the chunking, counters included.  The streams are those
# above (NUL trailers and NULs inside frames among them) behind a first byte that is not a digit.
NON_TRANSPARENT = STREAMS.map(lambda s: b"<" + s)


@given(chunked(NON_TRANSPARENT), MAX_SIZES)
def test_auto_non_transparent_is_lf_framing_with_nul_as_lf(stream_and_chunks, max_size):
    stream, chunks = stream_and_chunks
    frames, decoder = decode(stream, chunks, max_size=max_size)
    assert decoder.framing == "lf-or-nul"
    lf_frames, lf_decoder = decode(stream.replace(b"\0", b"\n"), framing="lf", max_size=max_size)
    assert frames == lf_frames
    assert counters(decoder) == counters(lf_decoder)
    assert all(b"\0" not in frame and b"\n" not in frame for frame in frames)


@given(chunked(NON_TRANSPARENT), MAX_SIZES)
def test_auto_non_transparent_is_accounted_for_and_bounded(stream_and_chunks, max_size):
    _stream, chunks = stream_and_chunks
    decoder = FrameDecoder(max_size=max_size)
    frames: list[bytes] = []
    for chunk in chunks:
        frames += decoder.feed(chunk)
        assert_accounted(decoder, frames)
        assert decoder.buffered <= max_size + 1
    frames += decoder.finish()
    assert decoder.buffered == 0
    assert_accounted(decoder, frames)

"""RFC 5424 parsing: the RFC's own examples (section 6.5) and messages of real senders.

Expected pairs are what syslog-ng's parser (modules/syslogformat/syslog-format.c) makes of them.
"""

import datetime as dt

import pytest

from syslogsrc.parsing import FORMATS, ParsedMessage, parse

UTC = dt.UTC


def tz(hours, minutes=0):
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


# (frame, pri, timestamp, pairs)
RFC_EXAMPLES = [
    # RFC 5424 6.5 example 1: no STRUCTURED-DATA, BOM before MSG.
    (
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
        34,
        dt.datetime(2003, 10, 11, 22, 14, 15, 3000, UTC),
        {
            "HOST": "mymachine.example.com",
            "PROGRAM": "su",
            "MSGID": "ID47",
            "MESSAGE": "'su root' failed for lonvick on /dev/pts/8",
        },
    ),
    # Example 2: numeric offset, microseconds, no BOM, PROCID and MSGID nil.
    (
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts.",
        165,
        dt.datetime(2003, 8, 24, 5, 14, 15, 3, tz(-7)),
        {
            "HOST": "192.0.2.1",
            "PROGRAM": "myproc",
            "PID": "8710",
            "MESSAGE": "%% It's time to make the do-nuts.",
        },
    ),
    # Example 3: STRUCTURED-DATA and MSG.
    (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        b"\xef\xbb\xbfAn application event log entry...",
        165,
        dt.datetime(2003, 10, 11, 22, 14, 15, 3000, UTC),
        {
            "HOST": "mymachine.example.com",
            "PROGRAM": "evntslog",
            "MSGID": "ID47",
            ".SDATA.exampleSDID@32473.iut": "3",
            ".SDATA.exampleSDID@32473.eventSource": "Application",
            ".SDATA.exampleSDID@32473.eventID": "1011",
            "MESSAGE": "An application event log entry...",
        },
    ),
    # Example 4: two SD-ELEMENTs and no MSG.
    (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"]',
        165,
        dt.datetime(2003, 10, 11, 22, 14, 15, 3000, UTC),
        {
            "HOST": "mymachine.example.com",
            "PROGRAM": "evntslog",
            "MSGID": "ID47",
            ".SDATA.exampleSDID@32473.iut": "3",
            ".SDATA.exampleSDID@32473.eventSource": "Application",
            ".SDATA.exampleSDID@32473.eventID": "1011",
            ".SDATA.examplePriority@32473.class": "high",
            "MESSAGE": "",
        },
    ),
]

DEVICES = [
    # rsyslog forwarding with RSYSLOG_SyslogProtocol23Format.
    (
        b"<86>1 2024-03-05T14:02:11.518290+01:00 web01 sshd 21873 - - "
        b"Accepted publickey for deploy from 10.1.2.3 port 51422 ssh2: ED25519 SHA256:abc",
        86,
        dt.datetime(2024, 3, 5, 14, 2, 11, 518290, tz(1)),
        {
            "HOST": "web01",
            "PROGRAM": "sshd",
            "PID": "21873",
            "MESSAGE": "Accepted publickey for deploy from 10.1.2.3 port 51422 ssh2: "
            "ED25519 SHA256:abc",
        },
    ),
    # systemd-journal-remote / journald forwarding via syslog-ng with timeQuality SD.
    (
        b"<30>1 2024-03-05T13:02:11.000001Z db02 systemd 1 - "
        b'[timeQuality tzKnown="1" isSynced="1" syncAccuracy="60000"] '
        b"Started Daily apt download activities.",
        30,
        dt.datetime(2024, 3, 5, 13, 2, 11, 1, UTC),
        {
            "HOST": "db02",
            "PROGRAM": "systemd",
            "PID": "1",
            ".SDATA.timeQuality.tzKnown": "1",
            ".SDATA.timeQuality.isSynced": "1",
            ".SDATA.timeQuality.syncAccuracy": "60000",
            "MESSAGE": "Started Daily apt download activities.",
        },
    ),
    # Juniper Junos structured-data format.
    (
        b"<30>1 2024-03-05T14:02:11.123+01:00 mx480-re0 mgd 4121 UI_COMMIT "
        b'[junos@2636.1.1.1.2.25 username="netops" client-mode="cli" comment="none"] '
        b"User 'netops' requested 'commit' operation",
        30,
        dt.datetime(2024, 3, 5, 14, 2, 11, 123000, tz(1)),
        {
            "HOST": "mx480-re0",
            "PROGRAM": "mgd",
            "PID": "4121",
            "MSGID": "UI_COMMIT",
            ".SDATA.junos@2636.1.1.1.2.25.username": "netops",
            ".SDATA.junos@2636.1.1.1.2.25.client-mode": "cli",
            ".SDATA.junos@2636.1.1.1.2.25.comment": "none",
            "MESSAGE": "User 'netops' requested 'commit' operation",
        },
    ),
    # Palo Alto PAN-OS in IETF format, all nil but host and app.
    (
        b"<14>1 2024-03-05T14:02:11+01:00 PA-3220 - - - - "
        b"1,2024/03/05 14:02:11,013201001234,TRAFFIC,end,2561,2024/03/05 14:02:11",
        14,
        dt.datetime(2024, 3, 5, 14, 2, 11, 0, tz(1)),
        {
            "HOST": "PA-3220",
            "MESSAGE": "1,2024/03/05 14:02:11,013201001234,TRAFFIC,end,2561,2024/03/05 14:02:11",
        },
    ),
    # Nil timestamp and nil host: no stamp (caller uses receive time), no HOST.
    (
        b"<13>1 - - haproxy 912 - - 10.0.0.9:51234 [05/Mar/2024:14:02:11.120] fe be/s1 200",
        13,
        None,
        {
            "PROGRAM": "haproxy",
            "PID": "912",
            "MESSAGE": "10.0.0.9:51234 [05/Mar/2024:14:02:11.120] fe be/s1 200",
        },
    ),
    # Escapes in PARAM-VALUE: \" \\ \] are undone, any other backslash is kept as is.
    (
        b'<13>1 2024-03-05T14:02:11Z h app - - [x@1 q="a\\"b" s="c\\\\d" b="e\\]f" o="g\\nh"] m',
        13,
        dt.datetime(2024, 3, 5, 14, 2, 11, 0, UTC),
        {
            "HOST": "h",
            "PROGRAM": "app",
            ".SDATA.x@1.q": 'a"b',
            ".SDATA.x@1.s": "c\\d",
            ".SDATA.x@1.b": "e]f",
            ".SDATA.x@1.o": "g\\nh",
            "MESSAGE": "m",
        },
    ),
    # An SD-ELEMENT without parameters leaves an empty .SDATA.<SD-ID>, as in syslog-ng.
    (
        b"<13>1 2024-03-05T14:02:11Z h app - - [origin] m",
        13,
        dt.datetime(2024, 3, 5, 14, 2, 11, 0, UTC),
        {"HOST": "h", "PROGRAM": "app", ".SDATA.origin": "", "MESSAGE": "m"},
    ),
]


@pytest.mark.parametrize("frame,pri,timestamp,pairs", RFC_EXAMPLES + DEVICES)
def test_fields(frame, pri, timestamp, pairs):
    for fmt in ("auto", "rfc5424"):
        msg = parse(frame, fmt)
        assert msg.format == "rfc5424"
        assert msg.pairs == pairs
        assert msg.pri == pri
        assert msg.timestamp == timestamp
        if timestamp is not None:
            assert msg.timestamp.utcoffset() == timestamp.utcoffset()
            assert msg.tags == ()
        else:
            assert msg.tags == ("syslog.missing_timestamp",)


def test_parsed_message_is_a_value():
    msg = parse(b"<13>1 - - - - - - hi")
    assert isinstance(msg, ParsedMessage)
    assert not hasattr(msg, "__dict__")
    assert msg == parse(b"<13>1 - - - - - - hi")
    assert "MESSAGE" in repr(msg)


def test_bad_format_names_it():
    with pytest.raises(ValueError, match="'rfc9999'"):
        parse(b"x", "rfc9999")
    assert FORMATS == ("auto", "rfc5424", "rfc3164", "json", "raw")


@pytest.mark.parametrize(
    "trailer",
    [b"\n", b"\r\n", b"\0", b"\n\0", b"\r\n\r\n"],
    ids=["lf", "crlf", "nul", "lfnul", "2x"],
)
def test_trailer_stripped(trailer):
    msg = parse(b"<13>1 - host app - - - hello" + trailer)
    assert msg.pairs["MESSAGE"] == "hello"


def test_non_utf8_msg_stays_bytes():
    msg = parse(b"<13>1 2024-03-05T14:02:11Z host app - - - caf\xe9 \xff")
    assert msg.format == "rfc5424"
    assert msg.pairs["MESSAGE"] == b"caf\xe9 \xff"
    assert msg.pairs["HOST"] == "host"


def test_any_version_when_asked_for_rfc5424():
    # VERSION = NONZERO-DIGIT 0*2DIGIT; auto only takes "1" for RFC 5424.
    frame = b"<13>2 2024-03-05T14:02:11Z host app - - - v2"
    assert parse(frame, "rfc5424").pairs["MESSAGE"] == "v2"
    assert parse(frame).format == "rfc3164"


@pytest.mark.parametrize(
    "frame",
    [
        # Offset missing (TIME-OFFSET is mandatory).
        b"<13>1 2024-03-05T14:02:11 host app - - - m",
        # SD-ID of 33 characters (SD-NAME = 1*32).
        b"<13>1 2024-03-05T14:02:11Z host app - - [" + b"a" * 33 + b"] m",
        # MSGID of 33 characters (MSGID = 1*32).
        b"<13>1 2024-03-05T14:02:11Z host app - " + b"m" * 33 + b" - m",
        # Seven fraction digits (TIME-SECFRAC = 1*6DIGIT).
        b"<13>1 2024-03-05T14:02:11.1234567Z host app - - - m",
    ],
)
def test_compat_fallback_like_syslog_ng(frame):
    """Outside the ABNF but read by syslog-ng: parsed its way and tagged as a fallback."""
    msg = parse(frame)
    assert "syslogsrc.rfc5424_fallback" in msg.tags
    assert msg.pairs["MESSAGE"] == "m"
    assert msg.pairs["HOST"] == "host"


def test_compat_truncates_like_syslog_ng():
    msg = parse(b"<13>1 2024-03-05T14:02:11Z host app - " + b"m" * 40 + b" - m")
    assert msg.format == "rfc5424"
    assert msg.pairs["MSGID"] == "m" * 32


def test_compat_time_zone_for_stamp_without_offset():
    cet = dt.timezone(dt.timedelta(hours=1))
    msg = parse(b"<13>1 2024-03-05T14:02:11 host app - - - m", time_zone=cet)
    assert msg.timestamp == dt.datetime(2024, 3, 5, 14, 2, 11, tzinfo=cet)


@pytest.mark.parametrize(
    "frame",
    [
        b'<13>1 2024-03-05T14:02:11Z host app - - [a i="]ok"] m',  # unescaped "]"
        b'<13>1 2024-03-05T14:02:11Z host app - - [a i=""ok"] m',  # stray quote
        b"<13>1 2024-03-05T14:02:11Z host",  # header cut short
        b"<13>1 2024-02-30T14:02:11Z host app - - - m",  # no such day (syslog-ng: March 1st)
    ],
)
def test_falls_back_to_rfc3164_without_loss(frame):
    """Where syslog-ng would replace the message by an error, we keep every byte."""
    msg = parse(frame)
    assert msg.format == "rfc3164"
    assert msg.tags[0] == "syslogsrc.rfc5424_fallback"
    assert msg.pri == 13
    text = frame.decode()
    # The version digit went to PROGRAM, the rest is MESSAGE.
    assert text.endswith(msg.pairs["MESSAGE"])
    assert msg.pairs["LEGACY_MSGHDR"] + msg.pairs["MESSAGE"] == text[len("<13>") :]


def test_pri_out_of_range_is_not_rfc5424():
    msg = parse(b"<192>1 2024-03-05T14:02:11Z host app - - - m")
    assert msg.format == "raw"
    assert msg.pairs == {"MESSAGE": "<192>1 2024-03-05T14:02:11Z host app - - - m"}
    assert "syslogsrc.raw" in msg.tags

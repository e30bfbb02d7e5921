"""RFC 3164 (BSD syslog) parsing, leniently, as syslog-ng reads it.

Messages are the RFC's section 5.4 examples and ones written after real devices.  Time zone and
"now" are pinned so the yearless stamps are deterministic.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from syslogsrc.parsing import parse

CET = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2024, 3, 5, 15, 0, 0, tzinfo=CET)


def at(*parts, tz=CET):
    return dt.datetime(*parts, tzinfo=tz)


# (frame, pri, timestamp, pairs)
CASES = [
    # RFC 3164 5.4 example 1.
    (
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        34,
        at(2023, 10, 11, 22, 14, 15),
        {
            "HOST": "mymachine",
            "PROGRAM": "su",
            "LEGACY_MSGHDR": "su: ",
            "MESSAGE": "'su root' failed for lonvick on /dev/pts/8",
        },
    ),
    # RFC 3164 5.4 example 2: no stamp, no host; the first word becomes PROGRAM.
    (
        b"Use the BFG!",
        13,
        None,
        {"PROGRAM": "Use", "LEGACY_MSGHDR": "Use ", "MESSAGE": "the BFG!"},
    ),
    # RFC 3164 5.4 example 4: space-padded day, tag with PID.
    (
        b"<0>Oct 22 10:52:12 scapegoat.dmz.example.org sched[0]: That's All Folks!",
        0,
        at(2023, 10, 22, 10, 52, 12),
        {
            "HOST": "scapegoat.dmz.example.org",
            "PROGRAM": "sched",
            "PID": "0",
            "LEGACY_MSGHDR": "sched[0]: ",
            "MESSAGE": "That's All Folks!",
        },
    ),
    # Linux rsyslog default forwarding format.
    (
        b"<86>Mar  5 14:02:11 web01 sshd[21873]: Accepted publickey for deploy from 10.1.2.3",
        86,
        at(2024, 3, 5, 14, 2, 11),
        {
            "HOST": "web01",
            "PROGRAM": "sshd",
            "PID": "21873",
            "LEGACY_MSGHDR": "sshd[21873]: ",
            "MESSAGE": "Accepted publickey for deploy from 10.1.2.3",
        },
    ),
    # Single-digit day without padding, program with "/" "-" "." and parentheses.
    (
        b"<30>Mar 5 14:02:11 web01 postfix/smtp-d.x(2)[4410]: connect from unknown[10.0.0.1]",
        30,
        at(2024, 3, 5, 14, 2, 11),
        {
            "HOST": "web01",
            "PROGRAM": "postfix/smtp-d.x(2)",
            "PID": "4410",
            "LEGACY_MSGHDR": "postfix/smtp-d.x(2)[4410]: ",
            "MESSAGE": "connect from unknown[10.0.0.1]",
        },
    ),
    # nginx's syslog output: stamp, host, "nginx:" tag.
    (
        b'<190>Mar  5 14:02:11 lb1 nginx: 10.0.0.7 - - [05/Mar/2024:14:02:11 +0100] "GET / '
        b'HTTP/1.1" 200 612',
        190,
        at(2024, 3, 5, 14, 2, 11),
        {
            "HOST": "lb1",
            "PROGRAM": "nginx",
            "LEGACY_MSGHDR": "nginx: ",
            "MESSAGE": '10.0.0.7 - - [05/Mar/2024:14:02:11 +0100] "GET / HTTP/1.1" 200 612',
        },
    ),
    # haproxy to a local socket: no hostname, "prog[pid]:" right after the stamp.
    (
        b"<134>Mar  5 14:02:11 haproxy[912]: 10.0.0.9:51234 fe be/s1 0/0/1/2/3 200 512",
        134,
        at(2024, 3, 5, 14, 2, 11),
        {
            "PROGRAM": "haproxy",
            "PID": "912",
            "LEGACY_MSGHDR": "haproxy[912]: ",
            "MESSAGE": "10.0.0.9:51234 fe be/s1 0/0/1/2/3 200 512",
        },
    ),
    # Cisco IOS with sequence number, unsynchronised clock mark and milliseconds.
    (
        b"<189>52: *Mar  1 00:00:52.123: %SYS-5-CONFIG_I: Configured from console by vty0",
        189,
        at(2024, 3, 1, 0, 0, 52, 123000),
        {
            ".SDATA.meta.sequenceId": "52",
            ".SDATA.timeQuality.isSynced": "0",
            "PROGRAM": "%SYS-5-CONFIG_I",
            "LEGACY_MSGHDR": "%SYS-5-CONFIG_I: ",
            "MESSAGE": "Configured from console by vty0",
        },
    ),
    # Cisco IOS, synchronised clock, hostname after the stamp.
    (
        b"<187>1204: .Mar  4 23:59:58.004: rtr-core1: %LINK-3-UPDOWN: Interface Gi0/1, "
        b"changed state to down",
        187,
        at(2024, 3, 4, 23, 59, 58, 4000),
        {
            ".SDATA.meta.sequenceId": "1204",
            ".SDATA.timeQuality.isSynced": "1",
            "PROGRAM": "rtr-core1",
            "LEGACY_MSGHDR": "rtr-core1: ",
            "MESSAGE": "%LINK-3-UPDOWN: Interface Gi0/1, changed state to down",
        },
    ),
    # Cisco ASA with a year in the stamp and a colon after it.
    (
        b"<166>Mar 05 2024 14:02:11: %ASA-6-302013: Built outbound TCP connection 7 for "
        b"outside:1.2.3.4/443",
        166,
        at(2024, 3, 5, 14, 2, 11),
        {
            "PROGRAM": "%ASA-6-302013",
            "LEGACY_MSGHDR": "%ASA-6-302013: ",
            "MESSAGE": "Built outbound TCP connection 7 for outside:1.2.3.4/443",
        },
    ),
    # Juniper (BSD format) with a host.
    (
        b"<28>Mar  5 14:02:11 mx480-re0 rpd[1490]: BGP_IO_ERROR_CLOSE_SESSION: BGP peer 10.2.2.2",
        28,
        at(2024, 3, 5, 14, 2, 11),
        {
            "HOST": "mx480-re0",
            "PROGRAM": "rpd",
            "PID": "1490",
            "LEGACY_MSGHDR": "rpd[1490]: ",
            "MESSAGE": "BGP_IO_ERROR_CLOSE_SESSION: BGP peer 10.2.2.2",
        },
    ),
    # Fortinet: PRI then key=value, no stamp or host.
    (
        b'<189>date=2024-03-05 time=14:02:11 devname="FGT60F" type="traffic" action="accept"',
        189,
        None,
        {
            "PROGRAM": "date=2024-03-05",
            "LEGACY_MSGHDR": "date=2024-03-05 ",
            "MESSAGE": 'time=14:02:11 devname="FGT60F" type="traffic" action="accept"',
        },
    ),
    # ISO 8601 stamp (rsyslog high-precision template) in a BSD-style message.
    (
        b"<38>2024-03-05T14:02:11.518290+01:00 web01 sshd[21873]: session opened",
        38,
        dt.datetime(2024, 3, 5, 14, 2, 11, 518290, dt.timezone(dt.timedelta(hours=1))),
        {
            "HOST": "web01",
            "PROGRAM": "sshd",
            "PID": "21873",
            "LEGACY_MSGHDR": "sshd[21873]: ",
            "MESSAGE": "session opened",
        },
    ),
    # IPv6 hostname.
    (
        b"<13>Mar  5 14:02:11 2001:db8::7 kernel: link up",
        13,
        at(2024, 3, 5, 14, 2, 11),
        {
            "HOST": "2001:db8::7",
            "PROGRAM": "kernel",
            "LEGACY_MSGHDR": "kernel: ",
            "MESSAGE": "link up",
        },
    ),
    # Palo Alto BSD format: CSV body.
    (
        b"<14>Mar  5 14:02:11 PA-3220 1,2024/03/05 14:02:11,013201001234,TRAFFIC,end",
        14,
        at(2024, 3, 5, 14, 2, 11),
        {
            "HOST": "PA-3220",
            "PROGRAM": "1,2024/03/05",
            "LEGACY_MSGHDR": "1,2024/03/05 ",
            "MESSAGE": "14:02:11,013201001234,TRAFFIC,end",
        },
    ),
    # LinkSys: year after the time.
    (
        b"<190>Mar  5 14:02:11 2024 linksys app: msg",
        190,
        at(2024, 3, 5, 14, 2, 11),
        {"HOST": "linksys", "PROGRAM": "app", "LEGACY_MSGHDR": "app: ", "MESSAGE": "msg"},
    ),
]


@pytest.mark.parametrize("frame,pri,timestamp,pairs", CASES)
def test_fields(frame, pri, timestamp, pairs):
    for fmt in ("auto", "rfc3164"):
        msg = parse(frame, fmt, time_zone=CET, now=NOW)
        assert msg.format == "rfc3164"
        assert msg.pairs == pairs
        assert msg.pri == pri
        assert msg.timestamp == timestamp
        if timestamp is not None:
            assert msg.timestamp.utcoffset() == timestamp.utcoffset()
            assert "syslog.missing_timestamp" not in msg.tags
        else:
            assert "syslog.missing_timestamp" in msg.tags


def test_missing_pri_gets_default_and_tag():
    msg = parse(b"Mar  5 14:02:11 web01 app: hi", time_zone=CET, now=NOW, default_pri=38)
    assert msg.pri == 38
    assert msg.tags == ("syslog.missing_pri",)
    assert msg.pairs["HOST"] == "web01"


@pytest.mark.parametrize(
    "stamp,year",
    [
        (b"Dec 31 23:59:59", 2023),  # received in January: last year
        (b"Jan  1 00:00:01", 2025),  # received in December: next year
        (b"Jun 30 12:00:00", 2024),
    ],
)
def test_year_nearest_to_now(stamp, year):
    now = dt.datetime(2024, 12, 31, 23, 0, tzinfo=CET) if year == 2025 else None
    now = now or dt.datetime(2024, 1, 1, 0, 30, tzinfo=CET)
    msg = parse(b"<13>" + stamp + b" h p: m", time_zone=CET, now=now)
    assert msg.timestamp.year == year


def test_february_29th_finds_a_leap_year():
    msg = parse(b"<13>Feb 29 10:00:00 h p: m", time_zone=CET, now=NOW)
    assert msg.timestamp == at(2024, 2, 29, 10, 0, 0)
    msg = parse(b"<13>Feb 29 10:00:00 h p: m", time_zone=CET, now=NOW.replace(year=2025))
    assert msg.timestamp == at(2024, 2, 29, 10, 0, 0)


def test_time_zone_follows_dst():
    summer = parse(b"<13>Jul  1 12:00:00 h p: m", time_zone=CET, now=NOW)
    assert summer.timestamp.utcoffset() == dt.timedelta(hours=2)


def test_default_time_zone_is_local():
    msg = parse(b"<13>Mar  5 14:02:11 h p: m", now=NOW)
    local = dt.datetime(2024, 3, 5, 14, 2, 11).astimezone()
    assert msg.timestamp == local


def test_impossible_date_is_not_a_stamp():
    msg = parse(b"<13>Apr 31 10:00:00 h p: m", time_zone=CET, now=NOW)
    assert msg.timestamp is None
    assert msg.pairs["MESSAGE"].endswith("h p: m")


def test_invalid_pri_is_raw():
    for frame in (b"<1x>Mar  5 14:02:11 h p: m", b"<>m", b"<1234>m", b"<200>m"):
        msg = parse(frame)
        assert msg.format == "raw"
        assert msg.pairs == {"MESSAGE": frame.decode()}
        assert msg.tags == ("syslog.invalid_pri", "syslogsrc.raw")
        assert msg.pri == 13


def test_non_utf8_message_stays_bytes():
    msg = parse(b"<13>Mar  5 14:02:11 h p\xe9: caf\xe9", time_zone=CET, now=NOW)
    assert msg.pairs["PROGRAM"] == b"p\xe9"
    assert msg.pairs["MESSAGE"] == b"caf\xe9"
    assert msg.pairs["HOST"] == "h"


def test_last_message_repeated():
    msg = parse(b"<13>Mar  5 14:02:11 last message repeated 3 times", time_zone=CET, now=NOW)
    assert msg.pairs == {"MESSAGE": "last message repeated 3 times"}


def test_aix_forwarded():
    msg = parse(
        b"<38>Mar  5 14:02:11 Message forwarded from aix1: sshd[77]: hello",
        time_zone=CET,
        now=NOW,
    )
    assert msg.pairs["HOST"] == "aix1"
    assert msg.pairs["PROGRAM"] == "sshd"
    assert msg.pairs["MESSAGE"] == "hello"

"""syslog-ng is the oracle: the real daemon parses a table of device messages, so do we, and the
fields are compared one by one.

Each message is sent as one UDP datagram to a network() source (RFC 5424 ones to a source with
flags(syslog-protocol), RFC 3164 ones to a plain one); a file destination writes the fields as
JSON.  The daemon runs with TZ=UTC and we parse with time_zone=UTC; yearless stamps are made from
the current date so that both year rules agree.  Every accepted difference is listed in
EXPECTED_DIFFERENCES below, with its reason (also in docs/parsing.md).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

from daemons import free_port

from syslogsrc.parsing import parse

RECENT = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=3)
BSD = RECENT.strftime("%b ") + f"{RECENT.day:2d}" + RECENT.strftime(" %H:%M:%S")
BSD_YEAR = RECENT.strftime("%b %d %Y %H:%M:%S")
ISO = RECENT.isoformat()
# Eight months back. syslog-ng gives a yearless stamp the current year (it only rolls over
# between December and January); we take the year nearest to now. Whether the two rules differ
# for this stamp depends on the day the test runs (from September to December they do, from
# January to August both give the same date four months ahead), so the expectation is computed
# from the same date, never assumed: see _year_rules_differ.
OLD = RECENT - dt.timedelta(days=243)
BSD_OLD = OLD.strftime("%b ") + f"{OLD.day:2d}" + OLD.strftime(" %H:%M:%S")


def _syslog_ng_year(month: int, now: dt.datetime) -> int:
    """syslog-ng's determine_year_for_month(): the current year, except across Dec/Jan."""
    if month == 12 and now.month == 1:
        return now.year - 1
    if month == 1 and now.month == 12:
        return now.year + 1
    return now.year


def _year_rules_differ(stamp: dt.datetime, now: dt.datetime) -> bool:
    """True when syslog-ng's year and ours (the nearest to now) differ for ``stamp``'s date."""
    frame = f"<13>{stamp:%b} {stamp.day:2d} {stamp:%H:%M:%S} h p: x".encode()
    ours = parse(frame, time_zone=dt.UTC, now=now).timestamp
    assert ours is not None
    return ours.year != _syslog_ng_year(stamp.month, now)


# name -> frame; "5424:" ones go to the syslog-protocol source, "3164:" ones to the plain one.
MESSAGES = {
    "5424:rfc-example-1": "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
    "\ufeff'su root' failed for lonvick on /dev/pts/8",
    "5424:rfc-example-2": "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
    "%% It's time to make the do-nuts.",
    "5424:rfc-example-3": "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
    '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
    "\ufeffAn application event log entry...",
    "5424:rfc-example-4": "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
    '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    '[examplePriority@32473 class="high"]',
    "5424:rsyslog": "<86>1 2024-03-05T14:02:11.518290+01:00 web01 sshd 21873 - - "
    "Accepted publickey for deploy from 10.1.2.3 port 51422 ssh2",
    "5424:journald-timequality": "<30>1 2024-03-05T13:02:11.000001Z db02 systemd 1 - "
    '[timeQuality tzKnown="1" isSynced="1" syncAccuracy="60000"] Started apt activities.',
    "5424:juniper": "<30>1 2024-03-05T14:02:11.123+01:00 mx480-re0 mgd 4121 UI_COMMIT "
    '[junos@2636.1.1.1.2.25 username="netops" client-mode="cli"] '
    "User 'netops' requested 'commit' operation",
    "5424:paloalto-nil": "<14>1 2024-03-05T14:02:11+01:00 PA-3220 - - - - "
    "1,2024/03/05 14:02:11,013201001234,TRAFFIC,end,2561",
    "5424:haproxy-nil-stamp": "<13>1 - lb1 haproxy 912 - - 10.0.0.9:51234 fe be/s1 200",
    "5424:escapes": '<13>1 2024-03-05T14:02:11Z h app - - [x@1 q="a\\"b" s="c\\\\d" '
    'b="e\\]f" o="g\\nh"] m',
    "5424:empty-element": "<13>1 2024-03-05T14:02:11Z h app - - [origin] m",
    "5424:no-offset": "<13>1 2024-03-05T14:02:11 h app - - - no offset",
    "5424:long-msgid": "<13>1 2024-03-05T14:02:11Z h app - " + "m" * 40 + " - long msgid",
    "5424:fortinet": '<189>1 2024-03-05T14:02:11Z FGT60F - - - - devname="FGT60F" '
    'type="traffic" action="accept"',
    "5424:utf8-sd": '<13>1 2024-03-05T14:02:11Z h app - - [meta gr="κόσμε"] ñ €',
    "3164:rsyslog": f"<86>{BSD} web01 sshd[21873]: Accepted publickey for deploy",
    "3164:rfc-example-1": f"<34>{BSD} mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    "3164:no-pri-no-stamp": "Use the BFG!",
    "3164:odd-program": f"<30>{BSD} web01 postfix/smtp-d.x(2)[4410]: connect from unknown",
    "3164:nginx": f'<190>{BSD} lb1 nginx: 10.0.0.7 - - "GET / HTTP/1.1" 200 612',
    "3164:haproxy-no-host": f"<134>{BSD} haproxy[912]: 10.0.0.9:51234 fe be/s1 200 512",
    "3164:cisco-ios-seq": f"<189>52: *{BSD}.123: %SYS-5-CONFIG_I: Configured from console",
    "3164:cisco-ios-synced": f"<187>1204: .{BSD}.004: rtr1: %LINK-3-UPDOWN: Interface Gi0/1",
    "3164:cisco-asa": f"<166>{BSD_YEAR}: %ASA-6-302013: Built outbound TCP connection 7",
    "3164:juniper": f"<28>{BSD} mx480-re0 rpd[1490]: BGP_IO_ERROR_CLOSE_SESSION: peer 10.2.2.2",
    "3164:fortinet": '<189>date=2024-03-05 time=14:02:11 devname="FGT60F" type="traffic"',
    "3164:iso-stamp": f"<38>{ISO} web01 sshd[21873]: session opened",
    "3164:ipv6-host": f"<13>{BSD} 2001:db8::7 kernel: link up",
    "3164:paloalto": f"<14>{BSD} PA-3220 1,2024/03/05 14:02:11,013201001234,TRAFFIC,end",
    "3164:last-repeated": f"<13>{BSD} last message repeated 3 times",
    "3164:non-utf8": f"<13>{BSD} h prog: caf\udce9",
    # Below: messages with an accepted difference (see EXPECTED_DIFFERENCES).
    "5424:bad-sd": '<13>1 2024-03-05T14:02:11Z h app - - [a i="]ok"] unescaped bracket',
    "3164:crlf": f"<13>{BSD} h prog: windows line end\r\n",
    "3164:eight-months-old": f"<13>{BSD_OLD} h prog: from long ago",
}

# (message, field) -> why we differ; "*" for the version means every daemon version.
# field "timestamp" compares seconds; "SDATA" the .SDATA.* pairs.
EXPECTED_DIFFERENCES = {
    # A frame that starts like RFC 5424 but that syslog-ng cannot parse: syslog-ng replaces it by
    # its own error message (PROGRAM=syslog-ng, PRI=43, "Error processing log message: ...",
    # receive time); we keep the frame (RFC 3164 fallback, tagged syslogsrc.rfc5424_fallback).
    ("5424:bad-sd", "HOST", (4, 8)): "4.8's error message carries the local host name",
    ("5424:bad-sd", "PROGRAM", "*"): "syslog-ng's error message",
    ("5424:bad-sd", "PID", "*"): "syslog-ng's error message",
    ("5424:bad-sd", "MESSAGE", "*"): "syslog-ng's error message",
    ("5424:bad-sd", "PRI", "*"): "syslog-ng's error message",
    # syslog-ng strips only trailing LF and NUL, and keeps the CR of a CRLF in MESSAGE.
    ("3164:crlf", "MESSAGE", "*"): "we strip the CR of a trailing CRLF",
}
# Year of a yearless stamp: ours is the nearest to now, syslog-ng's the current one; they differ
# for this date from September to December only.
if _year_rules_differ(OLD, dt.datetime.now(dt.UTC)):
    EXPECTED_DIFFERENCES[("3164:eight-months-old", "timestamp", "*")] = (
        "nearest year vs current year"
    )

TEMPLATE = (
    "$(format-json HOST=$HOST HOST_FROM=$HOST_FROM PROGRAM=$PROGRAM PID=$PID MSGID=$MSGID "
    "MESSAGE=$MESSAGE PRI=$PRI ISODATE=$ISODATE SDATA=$SDATA --key .SDATA.*)\\n"
)

CONFIG = """
options { keep-hostname(yes); chain-hostnames(no); use-dns(no); use-fqdn(no); };
source s5424 { network(transport(udp) ip(127.0.0.1) port(P5424) flags(syslog-protocol)); };
source s3164 { network(transport(udp) ip(127.0.0.1) port(P3164)); };
destination d { file("@STATE@/out.jsonl" template("TEMPLATE")); };
log { source(s5424); source(s3164); destination(d); };
"""


def flatten(obj, prefix=""):
    """format-json nests dotted names ("_SDATA": {"id": {"param": ...}}); undo it."""
    out = {}
    for key, value in obj.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def ours(frame: bytes) -> dict:
    p = parse(frame, time_zone=dt.UTC, now=dt.datetime.now(dt.UTC))
    # format-json writes bytes that are not UTF-8 as \xNN escapes.
    fields = {
        k: (v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v)
        for k, v in p.pairs.items()
    }
    fields = {k: v for k, v in fields.items() if k != "LEGACY_MSGHDR"}
    fields["PRI"] = str(p.pri)
    fields["timestamp"] = p.timestamp.replace(microsecond=0) if p.timestamp else None
    return fields


def theirs(record: dict) -> dict:
    # 4.x writes unset fields as null, 3.38 leaves them out.
    flat = {k: v for k, v in flatten(record).items() if v is not None}
    fields = {k: v for k, v in flat.items() if k in ("HOST", "PROGRAM", "PID", "MSGID", "MESSAGE")}
    fields.update({"." + k[1:]: v for k, v in flat.items() if k.startswith("_SDATA.")})
    if fields.get("HOST") == flat.get("HOST_FROM"):
        fields.pop("HOST")  # no hostname in the message: syslog-ng falls back to the sender
    fields["PRI"] = flat["PRI"]
    fields["timestamp"] = dt.datetime.fromisoformat(flat["ISODATE"])
    return fields


def compare(name: str, frame: bytes, record: dict) -> dict:
    mine, ref = ours(frame), theirs(record)
    diffs = {}
    for field in ("HOST", "PROGRAM", "PID", "MSGID", "MESSAGE", "PRI"):
        if mine.get(field, "") != ref.get(field, ""):
            diffs[field] = (mine.get(field), ref.get(field))
    if mine["timestamp"] is None:
        # No usable stamp: the caller uses the receive time, as syslog-ng did.
        if abs((ref["timestamp"] - dt.datetime.now(dt.UTC)).total_seconds()) > 120:
            diffs["timestamp"] = (None, ref["timestamp"])
    elif mine["timestamp"] != ref["timestamp"]:
        diffs["timestamp"] = (mine["timestamp"], ref["timestamp"])
    mine_sd = {k: v for k, v in mine.items() if k.startswith(".SDATA.")}
    ref_sd = {k: v for k, v in ref.items() if k.startswith(".SDATA.")}
    if mine_sd != ref_sd:
        diffs["SDATA"] = (mine_sd, ref_sd)
    return diffs


def expected(name, field, version):
    for key in ((name, field, version), (name, field, "*")):
        if key in EXPECTED_DIFFERENCES:
            return EXPECTED_DIFFERENCES[key]
    return None


def test_fields_agree_with_syslog_ng(syslog_ng):
    p5424, p3164 = free_port("udp"), free_port("udp")
    config = (
        CONFIG.replace("P5424", str(p5424))
        .replace("P3164", str(p3164))
        .replace("TEMPLATE", TEMPLATE)
    )
    daemon = syslog_ng(config, wait_ports=[("udp", p5424), ("udp", p3164)], env={"TZ": "UTC"})
    out = daemon.state_dir / "out.jsonl"
    frames = {name: text.encode("utf-8", "surrogateescape") for name, text in MESSAGES.items()}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name, frame in frames.items():
            port = p5424 if name.startswith("5424:") else p3164
            # One at a time, so the output order is the sending order.
            s.sendto(frame, ("127.0.0.1", port))
            time.sleep(0.02)
    deadline = time.monotonic() + 15
    lines = []
    while time.monotonic() < deadline:
        if out.exists():
            lines = out.read_bytes().splitlines()
            if len(lines) >= len(frames):
                break
        time.sleep(0.1)
    assert len(lines) == len(frames), f"syslog-ng wrote {len(lines)} of {len(frames)} lines"

    unexpected, seen = [], set()
    for (name, frame), line in zip(frames.items(), lines, strict=True):
        record = json.loads(line.decode("utf-8", "surrogateescape"))
        for field, (mine, ref) in compare(name, frame, record).items():
            reason = expected(name, field, syslog_ng.version)
            if reason is None:
                unexpected.append(f"{name} {field}: ours={mine!r} syslog-ng={ref!r}")
            else:
                seen.add(name + " " + field)
    assert not unexpected, "\n".join(unexpected)
    # Every accepted difference must still be one: a fixed one comes out of the table.
    stale = {
        f"{name} {field}"
        for (name, field, version) in EXPECTED_DIFFERENCES
        if version in ("*", syslog_ng.version)
    } - seen
    assert not stale, f"no longer different, remove from EXPECTED_DIFFERENCES: {sorted(stale)}"

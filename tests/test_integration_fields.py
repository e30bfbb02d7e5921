"""What the daemon stores of each message: fields, stamps, origin, batches.

The messages go over TCP from 127.0.0.2 to a ``SyslogSource`` with ``keep-hostname(yes)`` (else
the daemon replaces HOST with the sender's address) in a daemon running with
``TZ=America/New_York``, so that yearless BSD stamps and stampless messages get a negative
local offset. Both parsers, ours (``"parser" "syslogsrc"``) and the daemon's (``"native"``),
must give the same HOST, PROGRAM, PID, MSGID, SDATA, MESSAGE, FACILITY/SEVERITY and ISODATE
(instant, microseconds and offset).

What each daemon adds: 4.8 ``$TRANSPORT`` (``set_transport_name``) and, with ``source-ip
saddr``, ``$SOURCEIP`` (``set_source_ipaddress``, which leaks, so not by default); by default, and
always on 3.38 (neither API), the sender's address is in the PEERIP and PEERPORT pairs and
``$SOURCEIP`` is the daemon's default, 127.0.0.1 on 3.38.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import zoneinfo

import pytest
from daemons import free_port, requires_daemon_version
from integration import (
    FIELDS,
    PRELUDE,
    JsonOutput,
    json_file,
    log_path,
    send_tcp,
    send_udp,
    syslogsrc_source,
)

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
SENDER = "127.0.0.2"
SD = (
    '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    '[examplePriority@32473 class="high"]'
)
SD_ESCAPED = r'[esc@1 path="C:\\dir" quote="say \"hi\"" bracket="a\]b"]'


def _bsd_case() -> tuple[bytes, str]:
    """A yearless BSD stamp two days ago in New York: both year rules (nearest year, and
    syslog-ng's current year except across December/January) agree on it. At noon, so that no
    daylight-saving change makes the wall-clock time ambiguous or nonexistent."""
    wall = (dt.datetime.now(NEW_YORK) - dt.timedelta(days=2)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    wall = wall.replace(tzinfo=None)
    aware = wall.replace(tzinfo=NEW_YORK)
    stamp = f"{wall:%b} {wall.day:2d} {wall:%H:%M:%S}".encode()
    offset = aware.strftime("%z")
    iso = f"{wall:%Y-%m-%dT%H:%M:%S}.000000{offset[:3]}:{offset[3:]}"
    return stamp, iso


def _cases() -> list[tuple[bytes, dict[str, str]]]:
    bsd_stamp, bsd_iso = _bsd_case()
    return [
        (
            b"<165>1 2026-03-01T10:11:12.123456+02:00 myhost.example.com app-name 4711 ID47 "
            + SD.encode()
            + b" \xef\xbb\xbfhello, +02:00",
            {
                "HOST": "myhost.example.com",
                "PROGRAM": "app-name",
                "PID": "4711",
                "MSGID": "ID47",
                "SDATA": SD,
                "MESSAGE": "hello, +02:00",
                "ISODATE": "2026-03-01T10:11:12.123456+02:00",
                "FACILITY": "local4",
                "SEVERITY": "notice",
            },
        ),
        (
            b"<13>1 2026-03-01T10:11:12.5Z host2 app2 - - " + SD_ESCAPED.encode() + b" zulu",
            {
                "HOST": "host2",
                "PROGRAM": "app2",
                "SDATA": SD_ESCAPED,
                "MESSAGE": "zulu",
                "ISODATE": "2026-03-01T10:11:12.500000+00:00",
            },
        ),
        (
            b"<11>1 2026-03-01T10:11:12.25-05:00 host3 app3 99 - - minus five",
            {
                "HOST": "host3",
                "PID": "99",
                "MESSAGE": "minus five",
                "ISODATE": "2026-03-01T10:11:12.250000-05:00",
                "SEVERITY": "err",
            },
        ),
        (
            b"<38>" + bsd_stamp + b" bsdhost sshd[1234]: bsd, local time",
            {
                "HOST": "bsdhost",
                "PROGRAM": "sshd",
                "PID": "1234",
                "MESSAGE": "bsd, local time",
                "ISODATE": bsd_iso,
                "FACILITY": "auth",
                "SEVERITY": "info",
            },
        ),
        (
            b"<78>2026-03-01T10:11:12.000007+05:30 isohost cron[5]: rfc3164, iso stamp",
            {
                "HOST": "isohost",
                "PROGRAM": "cron",
                "PID": "5",
                "MESSAGE": "rfc3164, iso stamp",
                "ISODATE": "2026-03-01T10:11:12.000007+05:30",
                "FACILITY": "cron",
            },
        ),
    ]


def _absent(record: dict, key: str) -> bool:
    return record.get(key, "") == ""


@pytest.mark.parametrize(
    ("parser", "source_ip"),
    [("syslogsrc", "pairs"), ("hybrid", "pairs"), ("native", "pairs"), ("native", "saddr")],
)
def test_fields_and_stamps_match_what_was_sent(syslog_ng, parser, source_ip):
    port = free_port()
    options = {"parser": parser}
    if source_ip != "pairs":  # the default
        options["source-ip"] = source_ip
    config = (
        PRELUDE
        + syslogsrc_source("s_src", f"tcp:{port}:interface=127.0.0.1", options)
        + json_file("d_json", "out.json", FIELDS.replace("ISODATE", "ISODATE --key R_ISODATE", 1))
        + log_path(["s_src"], ["d_json"])
    )
    d = syslog_ng(config, wait_ports=[port], env={"TZ": "America/New_York"})
    out = JsonOutput(d.state_dir / "out.json")
    cases = _cases()
    sent_at = [dt.datetime.now(dt.UTC)]
    lines = [line for line, _ in cases] + [b"<14>stampless-0"]
    client_ports = {send_tcp(port, lines, source_ip=SENDER)[1]}
    out.wait(len(cases) + 1)
    time.sleep(1.5)  # the daemon's clock in the source's thread would stay where it was
    sent_at.append(dt.datetime.now(dt.UTC))
    client_ports.add(send_tcp(port, [b"<14>stampless-1"], source_ip=SENDER)[1])
    records = out.wait(len(cases) + 2)

    def text(record: dict) -> str:
        return json.dumps(record, sort_keys=True)

    by_iso = {r["ISODATE"]: r for r in records}
    for line, expected in cases:
        record = by_iso.get(expected["ISODATE"])
        assert record is not None, f"{line!r}: no record stamped {expected['ISODATE']}"
        got = {k: record.get(k) for k in expected}
        assert got == expected, f"{line!r}\n{text(record)}"
        if "PID" not in expected:
            assert _absent(record, "PID"), text(record)
        if "MSGID" not in expected:
            assert _absent(record, "MSGID"), text(record)

    # no stamp: the time it was received, in the local (New York) offset, with every parser;
    # each its own (the daemon's clock in a Python source's thread is refreshed only when the
    # source asks, once a batch: else the second would get the first one's time)
    stampless = [r for r in records if (r["FACILITY"], r["SEVERITY"]) == ("user", "info")]
    assert len(stampless) == 2
    for record, sent in zip(stampless, sent_at, strict=True):
        received = dt.datetime.fromisoformat(record["ISODATE"])
        assert abs((received - sent).total_seconds()) < 1, (record["ISODATE"], sent)
        assert received.utcoffset() == dt.datetime.now(NEW_YORK).utcoffset(), record["ISODATE"]
    # and every message's receive time (RECVD) is when its connection's batch was read
    for record in records:
        sent = sent_at[1] if record is stampless[1] else sent_at[0]  # the second connection's
        received = dt.datetime.fromisoformat(record["R_ISODATE"])
        assert abs((received - sent).total_seconds()) < 1, (record["R_ISODATE"], sent)

    # where it came from
    for record in records:
        if syslog_ng.version >= (4, 8) and source_ip == "saddr":
            assert record["TRANSPORT"] == "tcp"  # set_transport_name()
            assert record["SOURCEIP"] == SENDER  # set_source_ipaddress()
            assert record["HOST_FROM"] == SENDER  # the daemon's own, from that address
            assert "PEERIP" not in record
        elif syslog_ng.version >= (4, 8):
            # the default: set_source_ipaddress() leaks, the address is in pairs
            assert record["TRANSPORT"] == "tcp"  # set_transport_name()
            assert record["PEERIP"] == SENDER
            assert int(record["PEERPORT"]) in client_ports
            assert record.get("SOURCEIP") != SENDER
        else:
            assert record["TRANSPORT"] == "tcp"  # a plain pair
            assert record["PEERIP"] == SENDER
            assert int(record["PEERPORT"]) in client_ports
            assert record["SOURCEIP"] == "127.0.0.1"  # what 3.38 shows for Python sources
    assert d.stop() == 0


# A SyslogSource that records the size of every batch it closes and, on a "report" datagram,
# posts them as a message (built by itself, from the run() thread, as any message).
BATCH_RECORDER = """
python {
import json
from syslogsrc import SyslogSource


class BatchRecorder(SyslogSource):
    def init(self, options):
        self.batches = []
        self.open = 0
        return super().init(options)

    def build_message(self, frame, origin):
        if frame == b"report":
            report = {"batches": self.batches, "auto_close_batches": self.auto_close_batches}
            frame = b"<13>1 - - recorder - - - " + json.dumps(report).encode()
        self.open += 1
        return super().build_message(frame, origin)

    def close_batch(self):
        super().close_batch()
        self.batches.append(self.open)
        self.open = 0
};
"""


@requires_daemon_version(4, 1)
def test_a_batch_is_closed_per_read_and_per_datagram(syslog_ng):
    # What this proves: auto_close_batches is False (we batch ourselves), close_batch() runs
    # once per read of a stream and once per datagram, each message is delivered within a
    # second of being sent (in 4.8.1 messages of a batch left open stay in the worker's queue:
    # seen with a source that never closes one), and the daemon stops cleanly (4.8.1 aborts at
    # shutdown, main_loop_worker_assert_batch_callbacks_were_processed, if one is left open).
    port = free_port("both")
    listen = f"tcp:{port}:interface=127.0.0.1 udp:{port}:interface=127.0.0.1"
    config = (
        PRELUDE
        + BATCH_RECORDER
        + syslogsrc_source("s_src", listen, class_name="BatchRecorder")
        + json_file("d_json", "out.json")
        + log_path(["s_src"], ["d_json"])
    )
    d = syslog_ng(config, wait_ports=[port, ("udp", port)])
    out = JsonOutput(d.state_dir / "out.json")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for burst in range(3):
            s.sendall(
                b"".join(b"<13>1 - - app - - - burst %d line %d\n" % (burst, i) for i in range(4))
            )
            out.wait(4 * (burst + 1), timeout=1)  # delivered before the next read
    send_udp(
        port, [b"<13>1 - - app - - - datagram 1", b"<13>1 - - app - - - datagram 2"], pause=0.2
    )
    out.wait(14, timeout=2)
    send_udp(port, [b"report"])
    report = out.wait_for(lambda r: r.get("PROGRAM") == "recorder", timeout=5)
    recorded = json.loads(report["MESSAGE"])
    assert recorded == {"batches": [4, 4, 4, 1, 1], "auto_close_batches": False}
    assert d.stop() == 0
    assert "assert" not in d.stderr()

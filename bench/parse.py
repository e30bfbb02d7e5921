"""Parsing speed: microseconds per message for each format, next to syslog-rfc5424-parser.

Run by hand from the project's root:

    python bench/parse.py [--number N] [--runs R] [--framing-duration S]

Each figure is the median of R runs (at least 3) of N parses of ~300-byte messages.  The RFC 5424
figures are shown side by side with PyPI's ``syslog-rfc5424-parser`` (pip install
syslog-rfc5424-parser) on the same messages in the same run, as a ratio.  When ``bench/framing.py``
is present its MB/s per framing are printed too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the project root, for syslogsrc
sys.path.insert(0, HERE)  # for framing.py

from syslogsrc.parsing import parse  # noqa: E402

BODY = (
    "Accepted publickey for deploy from 10.1.2.3 port 51422 ssh2: ED25519 "
    "SHA256:Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8; session opened for user "
    "deploy(uid=1001) by (uid=0) from bastion.example.com"
)

#: name -> (format for parse(), frame); all about 300 bytes.
MESSAGES = {
    "rfc5424 with SD": (
        "rfc5424",
        (
            "<165>1 2024-03-05T14:02:11.518290+01:00 web01.example.com sshd 21873 ID47 "
            '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] ' + BODY[:160]
        ).encode(),
    ),
    "rfc5424 no SD": (
        "rfc5424",
        (
            "<165>1 2024-03-05T14:02:11.518290+01:00 web01.example.com sshd 21873 - - " + BODY
        ).encode()[:300],
    ),
    "rfc3164 BSD stamp": (
        "rfc3164",
        ("<38>Mar  5 14:02:11 web01 sshd[21873]: " + BODY + " tty=pts/0").encode()[:300],
    ),
    "rfc3164 ISO stamp": (
        "rfc3164",
        ("<38>2024-03-05T14:02:11.518290+01:00 web01 sshd[21873]: " + BODY).encode()[:300],
    ),
    "rfc3164 Cisco IOS": (
        "rfc3164",
        (
            "<189>1204: *Mar  5 14:02:11.004: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, "
            "changed state to down; " + BODY
        ).encode()[:300],
    ),
    "auto (rfc5424 with SD)": ("auto", b""),
    "json": (
        "json",
        (
            '{"host":"web01","program":"sshd","pid":21873,"severity":"info","http":{"status":200,'
            '"bytes":612,"ua":"curl/8.5.0"},"tags":["a","b"],"message":"' + BODY[:150] + '"}'
        ).encode(),
    ),
    "raw": ("raw", BODY.encode() + b" " + BODY.encode()[:130]),
}
MESSAGES["auto (rfc5424 with SD)"] = ("auto", MESSAGES["rfc5424 with SD"][1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}), {cpu}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}"
    )


def per_message_us(func, number: int, runs: int) -> tuple[float, list[float]]:
    func()  # warm up caches
    times = [t / number * 1e6 for t in timeit.repeat(func, number=number, repeat=runs)]
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--number", type=int, default=20000, help="parses per run")
    ap.add_argument("--runs", type=int, default=5, help="runs (at least 3); the median is shown")
    ap.add_argument("--framing-duration", type=float, default=1.0, help="seconds per framing")
    args = ap.parse_args(argv)
    runs = max(3, args.runs)
    now = dt.datetime.now(dt.UTC)

    print("machine:", machine())
    print(f"median of {runs} runs x {args.number} parses per message kind\n")

    try:
        from syslog_rfc5424_parser import SyslogMessage
    except ImportError:
        SyslogMessage = None

    print(f"{'message':26} {'bytes':>5} {'us/msg':>8} {'syslog-rfc5424-parser':>22} {'ratio':>7}")
    for name, (fmt, frame) in MESSAGES.items():
        ours, _ = per_message_us(
            lambda fmt=fmt, frame=frame: parse(frame, fmt, time_zone=dt.UTC, now=now),
            args.number,
            runs,
        )
        other = ratio = ""
        if SyslogMessage is not None and fmt in ("rfc5424", "auto"):
            text = frame.decode()
            theirs, _ = per_message_us(
                lambda text=text: SyslogMessage.parse(text), max(1, args.number // 20), runs
            )
            other = f"{theirs:.1f} us"
            ratio = f"{theirs / ours:.0f}x"
        print(f"{name:26} {len(frame):5d} {ours:8.2f} {other:>22} {ratio:>7}")
    if SyslogMessage is None:
        print("(syslog-rfc5424-parser not installed: pip install syslog-rfc5424-parser)")

    try:
        import framing
    except ImportError:
        print("\n(bench/framing.py not present: no framing figures)")
        return
    results = framing.run(duration=args.framing_duration)
    print("\nframing (bench/framing.py), MB/s of input, median:")
    for name, r in results.get("framings", results).items():
        figure = r.get("mb_s", r) if isinstance(r, dict) else r
        print(f"  {name:30} {figure}")


if __name__ == "__main__":
    main()

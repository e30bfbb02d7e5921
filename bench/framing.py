"""Throughput of syslogsrc.framing.FrameDecoder, per framing, run by hand.

    python bench/framing.py [--duration SECONDS] [--runs N] [--json]

Feeds a stream of ~300-byte RFC 5424 messages in 64 KiB chunks (what a TCP read of a busy
connection gives) to a fresh decoder, again and again for the time given, and prints the median
MB/s (10**6 bytes of input per second) of the runs for each framing, with the machine it ran on.

Other scripts can import it (bench/ is not a package)::

    sys.path.insert(0, "bench")
    import framing
    results = framing.run(duration=1.0)
    results["framings"]["lf"]["mb_s"]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

try:
    from syslogsrc.framing import FrameDecoder
except ImportError:  # run from a checkout: python bench/framing.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from syslogsrc.framing import FrameDecoder

MESSAGE_SIZE = 300
CHUNK_SIZE = 64 * 1024
STREAM_MESSAGES = 20_000  # about 6 MB of input per pass

# (name in the results, FrameDecoder framing, how each message is framed on the wire)
CASES = (
    ("lf", "lf", lambda m: m + b"\n"),
    ("octet-counting", "octet-counting", lambda m: b"%d %s" % (len(m), m)),
    ("nul", "nul", lambda m: m + b"\0"),
    # auto decides once per connection, then runs the decoder it picked: measured on an
    # octet-counted stream (the syslog() driver's usual input)
    ("auto", "auto", lambda m: b"%d %s" % (len(m), m)),
    # the LF decoder's slower path: every line ends with CR LF
    ("lf-crlf", "lf", lambda m: m + b"\r\n"),
)


def messages(count: int = STREAM_MESSAGES, size: int = MESSAGE_SIZE) -> list[bytes]:
    """RFC 5424 messages of about ``size`` bytes (varying a little, so do the octet counts)."""
    out = []
    for i in range(count):
        header = (
            b"<165>1 2024-05-01T12:00:%02d.%06dZ host%02d.example.net app %d ID47 "
            b'[exampleSDID@32473 iut="3" eventID="%d"] '
            % (i % 60, i % 1_000_000, i % 50, 1000 + i % 9000, i)
        )
        length = size - 16 + (i * 7919) % 33  # 284..316 bytes
        out.append(header + b"m" * max(0, length - len(header)))
    return out


def chunked(stream: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def machine() -> dict[str, str | int]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "platform": platform.platform(),
    }


def _one_run(framing: str, chunks: list[bytes], expected: int, duration: float) -> float:
    """Feed the stream to fresh decoders for at least ``duration`` seconds; return MB/s."""
    size = sum(map(len, chunks))
    fed = 0
    gc.collect()
    clock = time.perf_counter
    start = clock()
    while True:
        decoder = FrameDecoder(framing)
        feed = decoder.feed
        frames = 0
        for chunk in chunks:
            frames += len(feed(chunk))
        frames += len(decoder.finish())
        fed += size
        elapsed = clock() - start
        if frames != expected:  # never time a decoder that gets the stream wrong
            raise AssertionError(f"{framing}: {frames} frames, expected {expected}")
        if elapsed >= duration:
            return fed / elapsed / 1e6


def run(duration: float = 3.0, runs: int = 5) -> dict:
    """Measure every framing; ``duration`` seconds each, split over ``runs`` (at least 3) runs.

    Returns ``{"machine": {...}, "params": {...}, "framings": {name: {"mb_s": median,
    "runs_mb_s": [...], "msgs_s": median messages per second}}}``.
    """
    runs = max(3, runs)
    msgs = messages()
    results: dict[str, dict] = {}
    for name, framing, frame in CASES:
        stream = b"".join(map(frame, msgs))
        chunks = chunked(stream)
        _one_run(framing, chunks, len(msgs), 0.0)  # warm up
        speeds = [_one_run(framing, chunks, len(msgs), duration / runs) for _ in range(runs)]
        median = statistics.median(speeds)
        results[name] = {
            "mb_s": round(median, 1),
            "runs_mb_s": [round(s, 1) for s in speeds],
            "msgs_s": round(median * 1e6 * len(msgs) / len(stream)),
        }
    return {
        "machine": machine(),
        "params": {
            "message_size": MESSAGE_SIZE,
            "chunk_size": CHUNK_SIZE,
            "messages_per_pass": len(msgs),
            "runs": runs,
            "duration_s": duration,
        },
        "framings": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per framing")
    parser.add_argument("--runs", type=int, default=5, help="runs per framing (at least 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = run(duration=args.duration, runs=args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    m = results["machine"]
    p = results["params"]
    print(f"machine: {m['python']}, {m['cpu']}, {m['cores']} cores, {m['platform']}")
    print(
        f"~{p['message_size']}-byte messages in {p['chunk_size'] // 1024} KiB chunks, "
        f"median of {p['runs']} runs (MB = 10**6 bytes of input)"
    )
    for name, r in results["framings"].items():
        runs = " ".join(f"{s:.0f}" for s in r["runs_mb_s"])
        print(f"  {name:15} {r['mb_s']:8.1f} MB/s  {r['msgs_s']:>10,} msg/s   runs: {runs}")


if __name__ == "__main__":
    main()

"""Memory: resident set size with 10 000 idle TCP connections, syslogsrc against plain Twisted.

Run by hand from the checkout's root (see docs/benchmarks.md)::

    python bench/memory.py [--connections 10000] [--runs 3]

Each receiver runs in its own process: ``twistd -n syslogsrc --listen tcp:PORT`` (with
``--max-connections`` above the count) and the plain Twisted ``LineReceiver`` of
bench/standalone.py. This process opens the connections (RLIMIT_NOFILE is raised for it and the
receivers, as root past the hard limit), waits until the receiver holds them all (its
descriptors), and reads the receiver's VmRSS before and after: bytes per connection =
(after - before) / connections. Then every connection sends one 300-byte message and RSS is read
again (a connection that has spoken holds its decoder's state and a read buffer).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

MESSAGE = b"<38>2026-11-24T06:42:28 localhost prg00000[1234]: " + b"x" * 248 + b"\n"


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle_rss(pid: int, seconds: float = 1.0) -> int:
    """VmRSS once it stopped moving (allocations after accept() or a read finish late)."""
    last = C.rss_kib(pid)
    for _ in range(20):
        time.sleep(seconds / 4)
        now = C.rss_kib(pid)
        if now == last:
            break
        last = now
    return last


def measure(name: str, connections: int, workdir: Path) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = C.free_port()
    log = open(workdir / "receiver.log", "wb")
    if name == "syslogsrc":
        argv = C.twistd_command(
            "-l", str(workdir / "twistd.log"), "syslogsrc",
            "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
            "--max-connections", str(connections * 2), "--output", str(workdir / "out.jsonl"),
        )  # fmt: skip
    else:
        argv = [
            sys.executable,
            str(C.BENCH / "standalone.py"),
            "--serve-plain", "tcp", str(port), str(workdir / "out.jsonl"), "0",
        ]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env=C.checkout_env(),
    )  # fmt: skip
    socks = []
    try:
        C.wait_listening(port, "tcp", proc.pid)
        time.sleep(1.0)
        fds0 = fd_count(proc.pid)
        rss0 = settle_rss(proc.pid)
        t0 = time.monotonic()
        for i in range(connections):
            socks.extend(C.connect_many(port, 1))
            if i % 500 == 499:  # let the receiver accept, so the backlog does not overflow
                deadline = time.monotonic() + 30
                while fd_count(proc.pid) - fds0 < i + 1 - 50 and time.monotonic() < deadline:
                    time.sleep(0.01)
        deadline = time.monotonic() + 60
        while fd_count(proc.pid) - fds0 < connections and time.monotonic() < deadline:
            time.sleep(0.05)
        held = fd_count(proc.pid) - fds0
        connect_s = time.monotonic() - t0
        rss_idle = settle_rss(proc.pid)
        for s in socks:
            s.sendall(MESSAGE)
        out = workdir / "out.jsonl"
        C.wait_stable(lambda: C.count_lines(out), quiet=1.5, timeout=60)
        rss_spoken = settle_rss(proc.pid)
        stored = C.count_lines(out)
    finally:
        for s in socks:
            s.close()
        C.stop_process(proc)
        log.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "connections_held": held,
        "rss_before_kib": rss0,
        "rss_idle_kib": rss_idle,
        "rss_after_one_message_kib": rss_spoken,
        "bytes_per_idle_connection": (rss_idle - rss0) * 1024 / held if held else None,
        "bytes_per_connection_after_one_message": (rss_spoken - rss0) * 1024 / held
        if held
        else None,
        "messages_stored": stored,
        "connect_seconds": round(connect_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="memory", help="results file: build/bench/NAME.json")
    ap.add_argument(
        "--code", type=Path, default=None, help="run this other checkout's syslogsrc (before/after)"
    )
    args = ap.parse_args(argv)
    if args.code:
        C.CODE = args.code.resolve()
    limit = C.raise_nofile(args.connections * 2 + 1000)
    if limit < args.connections + 100:
        print(f"RLIMIT_NOFILE is {limit}: too low for {args.connections} connections; run as "
              "root or raise the hard limit (ulimit -Hn)", file=sys.stderr)  # fmt: skip
        return 1
    machine = C.machine()
    C.header(
        "RSS per idle TCP connection: syslogsrc vs plain Twisted",
        machine,
        f"{args.runs} rounds x {args.connections} connections; RLIMIT_NOFILE {limit}",
    )
    started = time.monotonic()
    workroot = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    runs: dict[str, list[dict]] = {"plain": [], "syslogsrc": []}
    try:
        for round_no in range(args.runs):
            order = ["plain", "syslogsrc"] if round_no % 2 == 0 else ["syslogsrc", "plain"]
            for name in order:
                r = measure(name, args.connections, workroot / name)
                runs[name].append(r)
                print(
                    f"[{round_no + 1}/{args.runs}] {name:10} held {r['connections_held']}: "
                    f"RSS {r['rss_before_kib']} -> {r['rss_idle_kib']} KiB idle "
                    f"({r['bytes_per_idle_connection']:.0f} B/conn), "
                    f"{r['rss_after_one_message_kib']} KiB after one message each "
                    f"({r['bytes_per_connection_after_one_message']:.0f} B/conn)",
                    flush=True,
                )
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    summary = {}
    for name, rs in runs.items():
        idle = [r["bytes_per_idle_connection"] for r in rs]
        spoken = [r["bytes_per_connection_after_one_message"] for r in rs]
        summary[name] = {
            "bytes_per_idle_connection": C.summary(idle),
            "bytes_per_connection_after_one_message": C.summary(spoken),
            "ratio_idle": C.paired_ratios(
                idle, [r["bytes_per_idle_connection"] for r in runs["plain"]]
            ),
        }
    elapsed = time.monotonic() - started
    data = {
        "machine": machine,
        "params": {"connections": args.connections, "runs": args.runs, "elapsed_s": round(elapsed)},
        "runs": runs,
        "summary": summary,
    }
    print()
    print(
        C.markdown_table(
            ["receiver", "bytes/idle conn", "range", "x plain", "bytes/conn after 1 msg"],
            [
                [
                    name,
                    f"{s['bytes_per_idle_connection']['median']:.0f}",
                    f"{s['bytes_per_idle_connection']['min']:.0f}-"
                    f"{s['bytes_per_idle_connection']['max']:.0f}",
                    C.spread(s["ratio_idle"]),
                    f"{s['bytes_per_connection_after_one_message']['median']:.0f}",
                ]
                for name, s in summary.items()
            ],
        )
    )
    path = C.save_results(args.name, data)
    print(f"\nresults: {path}; took {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

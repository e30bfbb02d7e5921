"""The daemon's RSS over N messages through SyslogSource, with each ``source-ip`` mode.

Run by hand from the checkout's root (see docs/syslog-ng.md, *The sender's address*)::

    python bench/source_ip_leak.py [--messages 2000000] [--daemons chroot-4.8]

Each run starts a fresh daemon with one ``SyslogSource`` (``"parser" "native"``) into
``file()``, sends ``--messages`` with ``loggen -s 300`` over TCP at full rate, waits until the
file has them all, and reads the daemon's VmRSS before loggen starts and after the last message
is written. ``saddr`` calls ``LogMessage.set_source_ipaddress()`` per message (its binding
leaks the address it makes); ``pairs`` (the default) sets ``PEERIP``/``PEERPORT`` instead.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from daemons import available_daemons


def run(daemon, mode: str, messages: int, workdir: Path) -> dict[str, float]:
    port = C.free_port("tcp")
    config = (
        'source s { python(class("syslogsrc.SyslogSource") options("listen"'
        f' "tcp:{port}:interface=127.0.0.1" "parser" "native" "source-ip" "{mode}")'
        " log-iw-size(100000)); };\n"
        'destination f { file("@STATE@/out.log"); };\n'
        "log { source(s); destination(f); };\n"
    )
    running = daemon.spawn(config, workdir=workdir, wait_ports=[port])
    out = running.state_dir / "out.log"
    try:
        time.sleep(1)
        before = C.rss_kib(running.pid)
        args = [C.LOGGEN, "-s", "300", "-i", "-S", "-r", str(C.FULL_RATE), "-I", "600"]
        args += ["-n", str(messages), "127.0.0.1", str(port)]
        subprocess.run(args, capture_output=True, timeout=600, check=False)
        deadline = time.monotonic() + 300
        while C.count_lines(out) < messages and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
        after = C.rss_kib(running.pid)
        lines = C.count_lines(out)
        running.stop()
    finally:
        running.close()
    return {
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "growth_mib": (after - before) / 1024,
        "bytes_per_message": (after - before) * 1024 / max(lines, 1),
        "messages": lines,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--daemons", default="chroot-4.8")
    args = ap.parse_args(argv)
    wanted = args.daemons.split(",")
    daemons = [d for d in available_daemons() if d.name in wanted]
    if not daemons:
        print("no such daemon: python tests/daemons.py says which there are", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-leak-"))
    print("| daemon | source-ip | messages | RSS before MiB | after MiB | growth MiB | B/msg |")
    print("|---|---|---|---|---|---|---|")
    for d in daemons:
        for mode in ("saddr", "pairs"):
            r = run(d, mode, args.messages, workdir / d.name / mode)
            print(
                f"| {d.name} | {mode} | {r['messages']} | {r['rss_before_mib']:.1f} |"
                f" {r['rss_after_mib']:.1f} | {r['growth_mib']:.1f} |"
                f" {r['bytes_per_message']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

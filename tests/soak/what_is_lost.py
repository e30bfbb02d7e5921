#!/usr/bin/env python3
"""What is lost when the daemon is killed, stopped or reloaded under full load: SyslogSource
next to syslog-ng's own ``network()`` source, in each daemon (docs/reliability.md).

    python3 tests/soak/what_is_lost.py                         # every daemon, event and source
    python3 tests/soak/what_is_lost.py --daemon chroot-4.8 --events sigkill -n 3
    flock /tmp/syslogsrc-heavy.lock python3 tests/soak/what_is_lost.py

Each run: a fresh daemon, one source (SyslogSource with its defaults, or ``network()`` with
its defaults) into ``file()`` with ``flags(flow-control)``; loggen sends as fast as it can over 4
connections for up to ``--seconds``; after ``--at`` seconds the event happens:

* ``sigkill``: the daemon is killed (SIGKILL); the file is read as the daemon left it;
* ``sigterm``: the daemon is stopped (SIGTERM) and exits;
* ``reload``: ``syslog-ng-ctl reload``; loggen goes on (``network()`` keeps its connections; a
  Python source closes them, and loggen, which does not reconnect, ends), then the daemon is
  stopped once the file stops growing.

Lost = what loggen counted as sent (its send() returned: the kernel took it) minus the distinct
sequence numbers in the file; duplicates are counted too. SyslogSource's stop summary (SIGTERM,
reload) says how many frames it had read but not posted (``dropped``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _soak import WORKDIR, count_lines, daemons, pick_daemon, wait_stable

_LINE = re.compile(rb"(\d{10}) (\d{4})\n")
_LOGGEN = re.compile(r"count=(\d+)")
_SUMMARY = re.compile(r"listener (\S+) stopped: (.*?);?$", re.M)
TEMPLATE = r'"$(substr \"${MSG}\" 5 10) $(substr \"${MSG}\" 25 4)\n"'
CONNECTIONS = 4


def config(kind: str, port: int) -> str:
    if kind == "network":
        source = f"network(transport(tcp) ip(127.0.0.1) port({port}))"
    else:
        source = (
            f'python(class("syslogsrc.SyslogSource")'
            f' options("listen" "tcp:{port}:interface=127.0.0.1"))'
        )
    return (
        "options { use-dns(no); };\n"
        f"source s {{ {source}; }};\n"
        f'destination d {{ file("@STATE@/out.log" template({TEMPLATE})); }};\n'
        "log { source(s); destination(d); flags(flow-control); };\n"
    )


def one_run(daemon: daemons.Daemon, kind: str, event: str, seconds: int, at: float) -> dict:
    port = daemons.free_port()
    running = daemon.spawn(config(kind, port), workdir=WORKDIR, wait_ports=[port])
    out = Path(running.state_dir) / "out.log"
    sender = subprocess.Popen(
        ["loggen", "-i", "-S", "-s", "300", "-r", "1000000000", "-I", str(seconds),
         f"--active-connections={CONNECTIONS}", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    rc: int | None = None
    try:
        time.sleep(at)
        if event == "sigkill":
            os.kill(running.pid, signal.SIGKILL)
            running.process.wait()
            rc = running.process.returncode
        elif event == "sigterm":
            rc = running.stop()
        elif event == "reload":
            running.reload()
        text, _ = sender.communicate(timeout=seconds + 60)
        if event == "reload":
            wait_stable(lambda: count_lines(out), quiet=2.0)
            rc = running.stop()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        running.close()
    out = Path(running.state_dir) / "out.log"
    counts = _LOGGEN.findall(text)
    sent = int(counts[-1]) if counts else -1
    seen: dict[bytes, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    partial = 0  # a frame cut by a closed connection: delivered, but not a whole message
    try:
        with open(out, "rb") as f:
            for line in f:
                m = _LINE.fullmatch(line)
                if m:
                    seen[m.group(2)][int(m.group(1))] += 1
                else:
                    partial += 1
    except FileNotFoundError:
        pass
    unique = sum(len(c) for c in seen.values())
    dups = sum(n - 1 for c in seen.values() for n in c.values())
    gaps = sum(max(c) + 1 - len(c) for c in seen.values())
    stderr = running.stderr()
    summary = collections.Counter()
    for _, fields in _SUMMARY.findall(stderr):
        summary.update({k: int(v) for k, v in (f.split("=") for f in fields.split(", "))})
    result = {
        "daemon": daemon.name,
        "source": kind,
        "event": event,
        "rc": rc,
        "sent": sent,
        "delivered": unique,
        "lost": sent - unique,
        "gaps": gaps,
        "partial": partial,
        "dup": dups,
        "read": summary.get("received"),
        "posted": summary.get("posted"),
        "dropped": summary.get("dropped"),
        "drop_lines": stderr.count("Incorrectly suspended source"),
    }
    import shutil

    shutil.rmtree(running.state_dir, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", action="append")
    parser.add_argument("--events", default="sigkill,sigterm,reload")
    parser.add_argument("--sources", default="syslogsrc,network")
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="loggen's duration")
    parser.add_argument("--at", type=float, default=3.0, help="seconds before the event")
    args = parser.parse_args()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    names = args.daemon or [d.name for d in daemons.available_daemons()]
    for name in names:
        daemon = pick_daemon(name)
        for event in args.events.split(","):
            for kind in args.sources.split(","):
                for i in range(args.runs):
                    r = one_run(daemon, kind, event, args.seconds, args.at)
                    extra = ""
                    if kind == "syslogsrc" and r["read"] is not None:
                        extra = (
                            f"; source read {r['read']}, posted {r['posted']},"
                            f" dropped {r['dropped']}"
                        )
                    print(
                        f"{name} {event} {kind} run {i + 1}: rc {r['rc']}, loggen sent"
                        f" {r['sent']}, in the file {r['delivered']}, lost {r['lost']}"
                        f" ({r['gaps']} inside a connection's sequence), dup {r['dup']},"
                        f" cut frames {r['partial']}"
                        f"{extra}; 'Incorrectly suspended' {r['drop_lines']}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""syslog-ng reloads 100 times under loggen load: nothing lost, nothing doubled, fds and threads
flat; the same against syslog-ng's own ``network()`` for comparison.

    flock /tmp/syslogsrc-heavy.lock python3 tests/soak/reload_loggen.py --daemon host-3.38
    flock /tmp/syslogsrc-heavy.lock python3 tests/soak/reload_loggen.py --daemon chroot-4.8 --native

Load: loggen over 4 TCP connections, 5000 msg/s each (20k msg/s in all), for as long as the
reloads take; loggen does not reconnect, so a connection the daemon closed would end its
thread early (and show as a short thread, or a loggen error). Every message carries loggen's
(thread, seq): each must arrive exactly once, each thread's seqs must be 0..n-1 without a gap,
and their number must be loggen's own count. With SyslogSource, the stop summaries of every
instance add up: received + taken_over = posted + dropped + handed_over, and what one instance
handed over the next took over.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _soak import (
    WORKDIR,
    figures_steady,
    native_config,
    pick_daemon,
    print_figures,
    proc_figures,
    reload_parser,
    source_config,
    stop_summaries,
    wait,
)

_ID = re.compile(rb"seq: (\d+), thread: (\d+)")


def main() -> int:
    parser = reload_parser(__doc__.splitlines()[0], "compare: syslog-ng's network() source")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=int, default=5000, help="messages/s per connection")
    args = parser.parse_args()
    from daemons import free_port

    daemon = pick_daemon(args.daemon)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    destination = 'file("@STATE@/out.log" template("$MSG\\n"));'
    if args.native:
        config = native_config(port, destination)
    else:
        config = source_config(f"tcp:{port}:interface=127.0.0.1", destination)
    running = daemon.spawn(config, workdir=WORKDIR, wait_ports=[port])
    out = Path(running.state_dir) / "out.log"
    # as long as the reloads take (a reload takes 0.05-0.5 s), and a little more
    duration = int(args.reloads * (args.interval + 0.3)) + 5
    loggen = subprocess.Popen(
        ["loggen", "-S", f"--active-connections={args.connections}", "-r", str(args.rate),
         "-I", str(duration), "127.0.0.1", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    figures = []
    started = time.monotonic()
    for i in range(args.reloads):
        running.reload()
        time.sleep(args.interval)  # the new instance is serving: its steady state
        figures.append(proc_figures(running.pid))
        if (i + 1) % 10 == 0:
            f = figures[-1]
            mb = out.stat().st_size >> 20
            print(f"reload {i + 1:3}: fds {f['fds']} threads {f['threads']} "
                  f"rss {f['rss_kb']} kB; {mb} MB written", flush=True)  # fmt: skip
    reloading = time.monotonic() - started
    under_load = loggen.poll() is None
    stdout, stderr = loggen.communicate(timeout=duration + 60)
    report = stdout + stderr
    m = re.search(r"average rate = .*?count=(\d+)", report)
    sent = int(m.group(1)) if m else -1

    def lines() -> int:
        with open(out, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    wait(lambda: lines() >= sent, 60, 0.5)
    time.sleep(1)
    final = proc_figures(running.pid)
    code = running.stop()
    daemon_log = running.stderr()

    ids: collections.Counter[tuple[int, int]] = collections.Counter()
    with open(out, "rb") as f:
        for line in f:
            m2 = _ID.search(line)
            if m2:
                ids[int(m2.group(2)), int(m2.group(1))] += 1
    dups = sum(c - 1 for c in ids.values() if c > 1)
    per_thread = collections.Counter(thread for thread, _ in ids)
    gaps = 0
    for thread, count in per_thread.items():
        top = max(seq for t, seq in ids if t == thread)
        gaps += top + 1 - count
    lost = sent - len(ids)

    first, later = figures[0], figures
    print()
    print(f"daemon {daemon.name}, {'network()' if args.native else 'SyslogSource'}:"
          f" {args.reloads} reloads in {reloading:.0f} s"
          f" ({'all under load' if under_load else 'LOAD ENDED BEFORE THE LAST RELOAD'}),"
          f" exit {code}; loggen exit {loggen.returncode}")  # fmt: skip
    print_figures(first, later, final)
    rate = re.search(r"average rate = ([\d.]+)", report)
    print(f"  loggen: sent {sent} over {args.connections} connections"
          f" (average {float(rate.group(1)) if rate else 0:.0f} msg/s); threads seen"
          f" {len(per_thread)}")  # fmt: skip
    print(f"  delivered {len(ids)} distinct: lost {lost}, duplicated {dups}, gaps {gaps}")
    ok_counts = True
    if not args.native:
        runs = [counters for _, counters in stop_summaries(daemon_log)]
        total = {k: sum(r[k] for r in runs) for k in runs[0]} if runs else {}
        handovers = re.findall(r"handed (\d+) listening socket\(s\), (\d+) connection", daemon_log)
        kept = sum(1 for _, c in handovers[: args.reloads] if int(c) == args.connections)
        print(f"  instances {len(runs)}; connections handed over at {kept} of {args.reloads}"
              f" reloads; read {total.get('received')}, posted {total.get('posted')}, dropped"
              f" {total.get('dropped')}, handed over {total.get('handed_over')}, taken over"
              f" {total.get('taken_over')}")  # fmt: skip
        ok_counts = bool(runs) and (
            total["received"] + total["taken_over"]
            == total["posted"] + total["dropped"] + total["handed_over"]
            and total["dropped"] == 0
            and total["handed_over"] == total["taken_over"] + runs[-1]["handed_over"]
        )
    ok = (
        code == 0
        and loggen.returncode == 0
        and sent > 0
        and lost == 0
        and dups == 0
        and gaps == 0
        and len(per_thread) == args.connections
        and ok_counts
        and figures_steady(first, later[-1])
    )
    print("  OK" if ok else "  NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

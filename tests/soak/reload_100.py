#!/usr/bin/env python3
"""syslog-ng reloads 100 times under load: fds, threads and RSS of the daemon stay flat;
everything the source accepted is delivered once; what the senders had in flight is counted.

    python3 tests/soak/reload_100.py                           # first daemon found, 100 reloads
    python3 tests/soak/reload_100.py --daemon chroot-4.8 -n 100 --interval 0.3

Load: a TCP sender writing as fast as the source reads (it would reconnect if a reload closed
its connection; since the hand-over of sockets between instances none does) and an HTTP client
posting one message per request (HTTP connections are closed at each reload, the listening
socket is kept). Every reload ends run() (the source logs a stop summary) and starts a new
instance. The loggen version with sequence numbers, 4 connections at 20k msg/s, is
reload_loggen.py.

"In flight" are the TCP lines the sender's kernel had accepted (sendall returned) but the
source never read: with the connection kept across reloads, 0. What the source had read and
posted (its stop summaries) must all be in the output, once. Frames it had read but not posted
yet, because the daemon had suspended it, are handed to the next instance (stop summaries:
handed_over, taken_over).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _soak import (
    WORKDIR,
    HttpPoster,
    TcpFlood,
    count_good,
    figures_steady,
    in_failed,
    native_config,
    pick_daemon,
    print_figures,
    proc_figures,
    reload_parser,
    source_config,
    stop_summaries,
    wait,
)


def main() -> int:
    parser = reload_parser(
        __doc__.splitlines()[0], "compare: syslog-ng's network() source, TCP only"
    )
    args = parser.parse_args()
    from daemons import free_port

    daemon = pick_daemon(args.daemon)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    tcp, web = free_port(), free_port()
    listen = f"tcp:{tcp}:interface=127.0.0.1 http:{web}:interface=127.0.0.1"
    destination = 'file("@STATE@/out.log" template("$MSG\\n"));'
    config = native_config(tcp, destination) if args.native else source_config(listen, destination)
    running = daemon.spawn(config, workdir=WORKDIR, wait_ports=[tcp] if args.native else [tcp, web])
    out = Path(running.state_dir) / "out.log"
    flood = TcpFlood(tcp, "tcp")
    poster = HttpPoster(web, "web", interval=0.005)
    flood.start()
    if not args.native:
        poster.start()
    time.sleep(1)
    figures = [proc_figures(running.pid)]
    started = time.monotonic()
    for i in range(args.reloads):
        time.sleep(args.interval)
        running.reload()
        figures.append(proc_figures(running.pid))
        if (i + 1) % 10 == 0:
            f = figures[-1]
            print(f"reload {i + 1:3}: fds {f['fds']} threads {f['threads']} "
                  f"rss {f['rss_kb']} kB; tcp written {flood.written}, "
                  f"http 200s {len(poster.accepted)}", flush=True)  # fmt: skip
    reloading = time.monotonic() - started
    time.sleep(1)
    flood.stop_event.set()
    poster.stop_event.set()
    flood.join(30)
    if poster.is_alive():
        poster.join(30)
    lines = lambda: out.read_bytes().split(b"\n")  # noqa: E731
    wait(lambda: len(count_good(lines()).get("tcp", {})) >= flood.written - 10**9, 5)
    time.sleep(2)  # let the last messages through
    final = proc_figures(running.pid)
    code = running.stop()
    stderr = running.stderr()
    seen = count_good(out.read_bytes().split(b"\n"))
    tcp_seen, web_seen = seen.get("tcp", {}), seen.get("web", {})

    summaries = {"tcp": [], "http": []}
    for name, values in stop_summaries(stderr):
        summaries["tcp" if name.startswith("tcp:") else "http"].append(values)
    runs = len(summaries["tcp"])
    tcp_received = sum(s["received"] for s in summaries["tcp"])
    tcp_posted = sum(s["posted"] for s in summaries["tcp"])
    tcp_dropped = sum(s["dropped"] for s in summaries["tcp"])
    web_posted = sum(s["posted"] for s in summaries["http"])

    tcp_dups = sum(c - 1 for c in tcp_seen.values() if c > 1)
    web_dups = sum(c - 1 for c in web_seen.values() if c > 1)
    accepted = set(poster.accepted)
    web_missing = len(accepted - set(web_seen))
    partial = in_failed(flood, tcp_seen)  # delivered lines of sendalls cut by a reload
    in_flight = flood.written - (len(tcp_seen) - partial)
    first, later = figures[1], figures[1:]
    print()
    print(f"daemon {daemon.name}: {args.reloads} reloads in {reloading:.0f} s, {runs} runs of the"
          f" source, exit {code}")  # fmt: skip
    print_figures(first, later, final)
    print(f"  TCP : written {flood.written} ({flood.reconnects} reconnects, {flood.failed} lines in"
          f" failed sendalls not counted); read by the source {tcp_received}, posted {tcp_posted},"
          f" dropped {tcp_dropped}; delivered {len(tcp_seen)} (duplicated {tcp_dups}; {partial} of"
          f" them from cut sendalls);"
          f" in flight at reloads (written, never read) {in_flight}"
          f" = {in_flight / max(args.reloads, 1):.0f} per reload")  # fmt: skip
    print(f"  HTTP: answers {dict(poster.answers)}; 200s {len(accepted)}, posted {web_posted},"
          f" delivered {len(web_seen)}, of the 200s missing {web_missing},"
          f" duplicated {web_dups}, no answer (connection lost) {len(poster.unsure)}")  # fmt: skip
    ok = (
        code == 0
        and tcp_dups == 0
        and web_dups == 0
        and web_missing == 0
        and (args.native or len(tcp_seen) == tcp_posted)  # all handed to the daemon delivered
        and figures_steady(first, later[-1])
    )
    print("  OK" if ok else "  NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The output stalls for 30 s, then recovers. TCP must lose nothing; HTTP must answer 503 while
the source is suspended, then 200, and every message answered 200 must arrive once.

    python3 tests/soak/stall_30s.py                       # both: SourceHost and the daemon
    python3 tests/soak/stall_30s.py --mode host --stall 30
    python3 tests/soak/stall_30s.py --mode daemon --daemon chroot-4.8

host: SyslogSource run by SourceHost (the emulation), whose output blocks for the stall.
daemon: SyslogSource inside syslog-ng, writing to a pipe() destination (a FIFO) that nobody
reads for the stall; flags(flow-control), so the daemon suspends the source.
Prints the figures (docs/reliability.md); exit status 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _soak import (
    ROOT,
    WORKDIR,
    HttpPoster,
    TcpFlood,
    count_good,
    pick_daemon,
    shared_dir,
    source_config,
    wait,
)

sys.path.insert(0, str(ROOT / "tests"))


def report(mode: str, stall: float, flood: TcpFlood, poster: HttpPoster, seen: dict,
           during: dict, drain: float) -> bool:  # fmt: skip
    tcp = seen.get("tcp", {})
    web = seen.get("web", {})
    tcp_lost = flood.written - len(tcp)
    tcp_dups = sum(c - 1 for c in tcp.values() if c > 1)
    in_order = sorted(tcp) == list(range(len(tcp)))
    accepted = set(poster.accepted)
    web_missing = len(accepted - set(web))
    web_dups = sum(c - 1 for c in web.values() if c > 1)
    web_extra = len(set(web) - accepted - set(poster.unsure))
    print(f"[{mode}] stall {stall:.0f} s")
    print(f"  TCP : written {flood.written}, delivered {len(tcp)}, lost {tcp_lost}, "
          f"duplicated {tcp_dups}, in order {in_order}; "
          f"{during['tcp_at_release']} delivered before the release")  # fmt: skip
    print(f"  HTTP: answers {dict(poster.answers)}; during the stall: {during['http']}; "
          f"200s {len(accepted)}, delivered {len(web)}, missing {web_missing}, "
          f"duplicated {web_dups}, unexpected {web_extra}")  # fmt: skip
    print(f"  drained {drain:.1f} s after the release; HTTP 200s once the TCP sender had"
          f" stopped: {during.get('http_after_tcp')}")  # fmt: skip
    web_ok = not (web_missing or web_dups or web_extra)
    return tcp_lost == 0 and tcp_dups == 0 and in_order and web_ok


def http_during(poster: HttpPoster, seconds: float) -> dict:
    before = dict(poster.answers)
    time.sleep(seconds)
    return {k: v - before.get(k, 0) for k, v in poster.answers.items() if v - before.get(k, 0)}


def stall_and_release(
    flood: TcpFlood,
    poster: HttpPoster,
    stall: float,
    *,
    hold: Callable[[], None],
    release: Callable[[], None],
    delivered: Callable[[], int],
) -> tuple[dict, float]:
    """The scenario both modes run: TCP flood and HTTP posts for 2 s, the output held for
    ``stall`` seconds (HTTP answers counted meanwhile), released, the flood stopped 2 s later;
    then HTTP alone for 3 s. Returns what happened during the stall and after the TCP drain
    (``report``'s ``during``) and the seconds from the release until ``delivered()`` TCP
    messages reached what the flood wrote (at most 120 s)."""
    flood.start()
    poster.start()
    time.sleep(2)
    hold()
    during = {"http": http_during(poster, stall)}
    during["tcp_at_release"] = delivered()
    release()
    released = time.monotonic()
    time.sleep(2)
    flood.stop_event.set()
    flood.join(60)
    wait(lambda: delivered() >= flood.written, 120)
    drain = time.monotonic() - released
    accepted_before = len(poster.accepted)
    time.sleep(3)  # HTTP alone: the window has room again
    poster.stop_event.set()
    poster.join(60)
    during["http_after_tcp"] = len(poster.accepted) - accepted_before
    return during, drain


def run_host(stall: float) -> bool:
    from syslogsrc.testing import CountingOutput, ListeningSource

    output = CountingOutput()
    with ListeningSource("tcp:0:interface=127.0.0.1", "http:0:interface=127.0.0.1", output=output,
                 log_iw_size=1000) as h:  # fmt: skip
        flood = TcpFlood(h.port(0), "tcp")
        poster = HttpPoster(h.port(1), "web", interval=0.05)
        during, drain = stall_and_release(
            flood,
            poster,
            stall,
            hold=output.hold,
            release=output.release,
            delivered=lambda: len(output.good.get("tcp", [])),
        )
        h.host.stop()
        seen = {tag: _counter(v) for tag, v in output.good.items()}
        print(f"  source: {h.host.stats}")
        return report("host", stall, flood, poster, seen, during, drain)


def _counter(values: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def run_daemon(stall: float, name: str | None) -> bool:
    from daemons import free_port

    daemon = pick_daemon(name)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    here, there = shared_dir(daemon)
    fifo = here / "out.fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the daemon's open() succeeds
    tcp, web = free_port(), free_port()
    listen = f"tcp:{tcp}:interface=127.0.0.1 http:{web}:interface=127.0.0.1"
    config = source_config(listen, f'pipe("{there}/out.fifo" template("$MSG\\n"));')
    running = daemon.spawn(config, workdir=WORKDIR, wait_ports=[tcp, web])
    data = bytearray()
    stop_reading = threading.Event()
    reading = threading.Event()

    def read() -> None:
        while not stop_reading.is_set():
            if not reading.is_set():
                time.sleep(0.05)
                continue
            try:
                chunk = os.read(reader, 1 << 20)
                if chunk:
                    data.extend(chunk)
                else:
                    time.sleep(0.01)
            except BlockingIOError:
                time.sleep(0.01)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        flood = TcpFlood(tcp, "tcp")
        poster = HttpPoster(web, "web", interval=0.05)
        reading.set()
        during, drain = stall_and_release(
            flood,
            poster,
            stall,
            hold=reading.clear,  # the output stalls: the FIFO fills, the daemon suspends the source
            release=reading.set,
            delivered=lambda: len(count_good(bytes(data).split(b"\n")).get("tcp", {})),
        )
        print(f"  daemon {daemon.name}: exit {running.stop()}")
        time.sleep(0.5)
    finally:
        stop_reading.set()
        thread.join(5)
        os.close(reader)
        if running.alive():
            running.close()
    seen = count_good(bytes(data).split(b"\n"))
    return report(f"daemon {daemon.name}", stall, flood, poster, seen, during, drain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("host", "daemon", "both"), default="both")
    parser.add_argument("--stall", type=float, default=30.0)
    parser.add_argument("--daemon", default=None, help="host-3.38, chroot-4.8 (default: first)")
    args = parser.parse_args()
    ok = True
    if args.mode in ("host", "both"):
        ok = run_host(args.stall) and ok
    if args.mode in ("daemon", "both"):
        ok = run_daemon(args.stall, args.daemon) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

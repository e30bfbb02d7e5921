"""Several cores: N ``twistd syslogsrc`` processes sharing one TCP and one UDP port.

Run by hand from the checkout's root (see docs/benchmarks.md)::

    python bench/reuseport.py [--processes 1,2] [--duration 10] [--runs 3]

Every process listens on ``tcp:PORT:reuseport=yes`` and ``udp:PORT:reuseport=yes`` (SO_REUSEPORT:
the kernel spreads TCP connections, and UDP datagrams by sender address, over the processes)
and writes JSON lines to a file of its own. ``loggen -s 300`` sends at full rate over 10
connections (TCP) or from 10 sockets (UDP), so that there is something to spread. The figure is
all lines stored divided by the wall time from loggen's start to the last line stored; each
ratio is against one process in the same round. The machine's cores are shared with loggen: on
2 cores, 2 receiver processes and loggen compete, which is part of what is measured.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

RCVBUF = 8 * 1024 * 1024
CONNECTIONS = 10


def measure(processes: int, transport: str, duration: float, workdir: Path) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = C.free_port("both")
    procs, outs, logs = [], [], []
    try:
        for i in range(processes):
            out = workdir / f"out-{i}.jsonl"
            log = open(workdir / f"receiver-{i}.log", "wb")
            argv = C.twistd_command(
                "-l", str(workdir / f"twistd-{i}.log"), "syslogsrc",
                "--listen", f"tcp:{port}:interface=127.0.0.1:reuseport=yes:backlog=1024",
                "--listen", f"udp:{port}:interface=127.0.0.1:reuseport=yes",
                "--so-rcvbuf", str(RCVBUF), "--output", str(out),
            )  # fmt: skip
            proc = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=C.checkout_env(),
            )  # fmt: skip
            procs.append(proc)
            outs.append(out)
            logs.append(log)
        for p in procs:
            C.wait_listening(port, "tcp", p.pid)
            C.wait_listening(port, "udp", p.pid)

        def stored() -> int:
            return sum(C.count_lines(o) for o in outs)

        cpu0 = sum(C.cpu_seconds(p.pid) for p in procs)
        t0 = time.monotonic()
        sent = C.run_loggen(port, transport=transport, seconds=duration, connections=CONNECTIONS)
        count, changed = C.wait_settled(stored, quiet=2.0, timeout=300, poll=0.5)
        cpu = sum(C.cpu_seconds(p.pid) for p in procs) - cpu0
        shares = [C.count_lines(o) for o in outs]
    finally:
        for p in procs:
            C.stop_process(p)
        for log in logs:
            log.close()
    count = max(count, sum(C.count_lines(o) for o in outs))
    wall = max(changed - t0, sent.seconds)
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "rate": count / wall if wall else 0.0,
        "stored": count,
        "sent": sent.sent,
        "loss_pct": 100.0 * (sent.sent - count) / sent.sent if sent.sent else 0.0,
        "offered_rate": sent.rate,
        "per_process": shares,
        "wall_seconds": round(wall, 2),
        "cpu_us_per_msg": 1e6 * cpu / count if count else None,
        "load": round(C.loadavg(), 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts")
    ap.add_argument("--transports", default="tcp,udp")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="reuseport", help="results file: build/bench/NAME.json")
    ap.add_argument(
        "--code", type=Path, default=None, help="run this other checkout's syslogsrc (before/after)"
    )
    args = ap.parse_args(argv)
    if args.code:
        C.CODE = args.code.resolve()
    counts = [int(n) for n in args.processes.split(",")]
    transports = args.transports.split(",")
    machine = C.machine()
    C.header(
        "N twistd syslogsrc processes sharing a port (SO_REUSEPORT)",
        machine,
        f"{args.runs} rounds x {args.duration:g} s; loggen -s 300, {CONNECTIONS} connections,"
        " full rate",
    )
    started = time.monotonic()
    workroot = Path(tempfile.mkdtemp(prefix="bench-reuseport-"))
    runs: dict[str, dict[int, list[dict]]] = {t: {n: [] for n in counts} for t in transports}
    try:
        for round_no in range(args.runs):
            for transport in transports:
                order = counts if round_no % 2 == 0 else list(reversed(counts))
                for n in order:
                    r = measure(n, transport, args.duration, workroot / f"{transport}-{n}")
                    runs[transport][n].append(r)
                    print(
                        f"[{round_no + 1}/{args.runs}] {transport} x{n}: "
                        f"{C.krate(r['rate']):>6} msg/s stored, lost {r['loss_pct']:.1f}%, "
                        f"per process {r['per_process']} (load {r['load']})",
                        flush=True,
                    )
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    summary: dict[str, dict[str, object]] = {}
    rows = []
    for transport, by_n in runs.items():
        base = [r["rate"] for r in by_n[counts[0]]]
        for n, rs in by_n.items():
            rates = [r["rate"] for r in rs]
            s = {
                "rate": C.summary(rates),
                "ratio": C.paired_ratios(rates, base),
                "loss_pct": C.summary([r["loss_pct"] for r in rs]),
            }
            summary.setdefault(transport, {})[str(n)] = s
            rows.append(
                [
                    transport,
                    n,
                    C.krate(s["rate"]["median"]),
                    f"{C.krate(s['rate']['min'])}-{C.krate(s['rate']['max'])}",
                    C.spread(s["ratio"]),
                    f"{s['loss_pct']['median']:.1f}%",
                ]
            )
    elapsed = time.monotonic() - started
    data = {
        "machine": machine,
        "params": {
            "processes": counts,
            "duration_s": args.duration,
            "runs": args.runs,
            "connections": CONNECTIONS,
            "so_rcvbuf": RCVBUF,
            "elapsed_s": round(elapsed),
        },
        "runs": {t: {str(n): rs for n, rs in by_n.items()} for t, by_n in runs.items()},
        "summary": summary,
    }
    print()
    print(
        C.markdown_table(
            ["transport", "processes", "msg/s", "range", f"x {counts[0]} process", "lost"], rows
        )
    )
    path = C.save_results(args.name, data)
    print(f"\nresults: {path}; took {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

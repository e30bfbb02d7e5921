"""Instructions per message inside the real syslog-ng (callgrind), source by source.

Run by hand from the checkout's root, with valgrind installed where the daemon runs (for the
chroot's: ``chroot /var/tmp/syslogsrc-trixie apt-get install valgrind``)::

    python bench/daemon_instructions.py [--daemon host-3.38|chroot-4.8] [--messages 20000,60000]
        [--connections 1] [--rfc5424] [--rounds 1] [--code OTHER_CHECKOUT] [--keep DIR]
        [--sources handwritten,syslogsrc-native,syslogsrc-native-bare,syslogsrc-hybrid]

Each source of bench/daemon.py (the same configurations, the hand-written source included) runs
alone in syslog-ng under ``valgrind --tool=callgrind`` (``Daemon.spawn``'s ``wrapper``: inside
the chroot for the chroot's daemon), with ``flags(flow-control)``
into a file, and loggen sends it a fixed number of LF-framed RFC 3164 messages (RFC 5424 with
``--rfc5424``); the daemon is stopped once the file holds them all. Instructions are counted
over every thread of the daemon. Each source runs twice, with the two message counts: the
difference divided by the difference in messages is the *marginal* cost of one message, start-up
and stop left out; with ``--rounds N`` every source is measured N times, in turn, and the
median and the range are shown (docs/benchmarks.md, *Session 6*: rounds differed by less than
0.6%). A first run of each source (1 000 messages), not counted, byte-compiles what the
daemon's Python imports.

Instructions do not depend on the machine's load, unlike rates and CPU time on a shared 2-core
machine, so small differences (one call into the daemon per message) show; callgrind runs the
daemon's threads one at a time, so it says nothing of contention. Results:
``build/bench/NAME.json`` (``--name``, default ``daemon-instructions``).
"""

from __future__ import annotations

import argparse
import glob
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from daemons import available_daemons


def _bench_daemon() -> Any:
    """bench/daemon.py, for its sources and their configurations (bench/ stays off sys.path:
    its http.py would hide the standard library's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_daemon", C.BENCH / "daemon.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


D = _bench_daemon()


def run_once(
    d,
    source: str,
    messages: int,
    connections: int,
    workdir: Path,
    visible: Any,
    rfc5424: bool = False,
) -> dict[str, int]:
    """One daemon under callgrind, ``messages`` messages in; instructions and lines stored."""
    port = C.free_port("tcp")
    config = (
        f"source s {{ {D.source_config(source, 'tcp', port, rfc5424, visible.certs)}; }};\n"
        'destination f { file("@STATE@/out.log"); };\n'
        "log { source(s); destination(f); flags(flow-control); };\n"
    )
    running = d.spawn(
        config,
        workdir=workdir / f"{source}-{messages}",
        wait_ports=[port],
        timeout=300,  # Python's start under callgrind
        env={"PYTHONPATH": visible.pythonpath},
        wrapper=[
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            "--callgrind-out-file=@STATE@/callgrind.out",
        ],
    )
    out = running.state_dir / "out.log"
    try:
        per = messages // connections
        # -n: that many messages; -I too, else loggen stops after its default 10 s (a source
        # under valgrind may take longer to read them)
        args = C.loggen_args(
            port, connections=connections, seconds=3600, rfc5424=rfc5424, lf_framing=True
        )
        args[1:1] = ["-n", str(per)]
        subprocess.run(args, capture_output=True, timeout=1800, check=False)
        deadline = time.monotonic() + 1800
        while C.count_lines(out) < per * connections and time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise RuntimeError(running.stderr()[-2000:])
            time.sleep(1)
        running.stop(timeout=300)  # callgrind writes its files at the exit
    finally:
        running.close()
    state = running.state_dir  # close() may have moved it
    instructions = 0
    for path in glob.glob(f"{state}/callgrind.out*"):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    instructions += int(line.split()[1])
                    break
    return {"instructions": instructions, "lines": C.count_lines(state / "out.log")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", default="20000,60000", help="the two message counts")
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--daemon", default=None, help="host-3.38 (the default) or chroot-4.8")
    ap.add_argument("--rfc5424", action="store_true", help="loggen -P -F (LF-framed RFC 5424)")
    ap.add_argument(
        "--sources",
        default="handwritten,syslogsrc-native,syslogsrc-native-bare,syslogsrc-hybrid",
    )
    ap.add_argument("--rounds", type=int, default=1, help="rounds over all sources (median, range)")
    ap.add_argument("--name", default="daemon-instructions")
    ap.add_argument("--code", type=Path, default=None, help="another checkout's syslogsrc")
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each run's state (callgrind.out* for callgrind_annotate) in this directory",
    )
    args = ap.parse_args(argv)
    small, large = (int(n) for n in args.messages.split(","))
    daemons = {d.name: d for d in available_daemons()}
    d = daemons.get(args.daemon) if args.daemon else next(iter(daemons.values()), None)
    if d is None:
        print(f"no daemon {args.daemon or ''}: python tests/daemons.py says why", file=sys.stderr)
        return 1
    valgrind = (d.root or Path("/")) / "usr/bin/valgrind"
    if not valgrind.exists():
        where = (
            f"chroot {d.root} apt-get install valgrind" if d.root else "apt-get install valgrind"
        )
        print(f"valgrind is not installed for {d.name} ({where})", file=sys.stderr)
        return 1
    machine = C.machine()
    C.header(
        "instructions per message inside syslog-ng (callgrind, marginal)",
        machine,
        f"{d.name} ({d.full_version}); {small} and {large} messages, "
        f"{args.connections} connection(s), loggen -s 300"
        + (" -P -F (RFC 5424)" if args.rfc5424 else ""),
    )
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-instructions-", dir=args.keep))
    visible = D.Visible(d, workdir, args.code.resolve() if args.code else None)
    sources = args.sources.split(",")
    try:
        # A first run of each source, not counted: on a fresh checkout or chroot it
        # byte-compiles what the daemon's Python imports for it (Twisted's modules, syslogsrc's),
        # and the first measured run would be charged for it: more than 40 000 messages' worth,
        # and a negative marginal cost (or a third of it too low, for the first source that
        # imports syslogsrc). Inside the chroot the checkout is mounted read-only: its modules
        # are compiled in every run alike, which the marginal cost leaves out.
        for source in sources:
            run_once(d, source, 1000, 1, workdir / "warm-up", visible, args.rfc5424)
        per_round: dict[str, list[float]] = {source: [] for source in sources}
        runs: dict[str, list[dict[str, int]]] = {source: [] for source in sources}
        # The rounds go through every source in turn, so that whatever drifts between rounds
        # falls on all sources alike.
        for round_ in range(1, args.rounds + 1):
            for source in sources:
                where = workdir / f"round-{round_}"  # a run's files: where/SOURCE-MESSAGES
                a = run_once(d, source, small, args.connections, where, visible, args.rfc5424)
                b = run_once(d, source, large, args.connections, where, visible, args.rfc5424)
                per = (b["instructions"] - a["instructions"]) / (b["lines"] - a["lines"])
                per_round[source].append(per)
                runs[source] += [a, b]
                print(
                    f"round {round_}: {source:24} {per:9.0f} instructions per message", flush=True
                )
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, dict[str, Any]] = {
        source: {
            "per_message": round(statistics.median(values)),
            "min": round(min(values)),
            "max": round(max(values)),
            "rounds": [round(v) for v in values],
            "runs": runs[source],
        }
        for source, values in per_round.items()
        if values
    }
    hand = results.get("handwritten", {}).get("per_message")
    rows = []
    for source, r in results.items():
        ratio = f"{hand / r['per_message']:.2f}" if hand else "-"
        rows.append([source, f"{r['per_message']} ({r['min']}-{r['max']})", ratio])
    print(C.markdown_table(["source", "instructions/msg (range)", "hand-written / source"], rows))
    data = {
        "machine": machine,
        "params": {
            "daemon": d.name,
            "messages": [small, large],
            "connections": args.connections,
            "rounds": args.rounds,
            "rfc5424": args.rfc5424,
            "code": str(args.code) if args.code else None,
        },
        "results": results,
    }
    print(f"results: {C.save_results(args.name, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Standalone: ``twistd syslogsrc`` against a plain Twisted receiver and against aiosyslogd.

Run by hand from the checkout's root (see docs/benchmarks.md)::

    python bench/standalone.py [--duration 10] [--runs 3] [--cases tcp,udp]

Receivers, each a process of its own on loopback, fed by ``loggen -s 300``:

* ``syslogsrc``: ``twistd -n syslogsrc --listen ... --output FILE`` (JSON lines; the reactor thread
  receives, frames and parses, a writer thread renders and writes, as in production).
* ``plain``: a plain Twisted ``LineReceiver`` (TCP) or ``DatagramProtocol`` (UDP) that does the
  same work the simple way: one regex for RFC 3164 and RFC 5424, ``json.dumps`` of the fields and
  a buffered write per line (``python bench/standalone.py --serve-plain ...``); the same
  ``SO_RCVBUF`` as ours.
* ``aiosyslogd`` (PyPI, UDP only, into SQLite; installed into ``build/bench-venv`` on first use),
  as it ships: its receive buffer is the kernel default, it has no option for it.

The figure is the number of messages stored (lines in the file, rows in SQLite) divided by the
wall time from the start of loggen to the last message stored (a receiver that queues and falls
behind is charged for its backlog); loss is loggen's sent count minus what was stored. Ratios are
against ``plain`` (TCP, UDP at 50k msg/s) or ``aiosyslogd`` (UDP full rate, 5k msg/s) of the same
round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

VENV = C.CHECKOUT / "build" / "bench-venv"
RCVBUF = 8 * 1024 * 1024  # what the plain receiver lost 4-5% with at 50k msg/s (issue 8)

#: (name, transport, format, total rate or None, receivers; the first receiver is the reference)
CASES = [
    ("tcp rfc3164", "tcp", "rfc3164", None, ["plain", "syslogsrc"]),
    ("tcp rfc5424", "tcp", "rfc5424", None, ["plain", "syslogsrc"]),
    ("udp full rate", "udp", "rfc3164", None, ["aiosyslogd", "plain", "syslogsrc"]),
    ("udp 20k msg/s", "udp", "rfc3164", 20_000, ["plain", "syslogsrc"]),
    ("udp 50k msg/s", "udp", "rfc3164", 50_000, ["plain", "syslogsrc"]),
    ("udp 5k msg/s", "udp", "rfc3164", 5_000, ["aiosyslogd", "syslogsrc"]),
]


# --------------------------------------------------------------------------------------------
# the plain receiver (run in its own process: --serve-plain)

_PLAIN = re.compile(
    rb"<(?P<pri>[0-9]{1,3})>(?:"
    rb"1 (?P<stamp>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+)"
    rb" (?P<sd>-|(?:\[.*?\])+) ?(?P<msg>.*)"
    rb"|(?P<stamp3>[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8}|\S+) (?P<host3>\S+)"
    rb" (?P<prog>[^ \[:]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg3>.*))",
    re.DOTALL,
)


def plain_record(line: bytes) -> bytes:
    """The plain receiver's work for one message: regex, dict, json.dumps."""
    m = _PLAIN.match(line)
    if m is None:
        fields = {"MESSAGE": line.decode("utf-8", "replace")}
    else:
        fields = {k: v.decode("utf-8", "replace") for k, v in m.groupdict().items() if v}
    return json.dumps(fields, ensure_ascii=False).encode("utf-8") + b"\n"


def serve_plain(kind: str, port: int, out_path: str, rcvbuf: int) -> None:
    """A plain Twisted receiver: what one writes without syslogsrc."""
    from twisted.internet import protocol, reactor
    from twisted.protocols.basic import LineReceiver

    out = open(out_path, "ab", buffering=1024 * 1024)

    class Lines(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 65536

        def lineReceived(self, line: bytes) -> None:
            out.write(plain_record(line))

    class Datagrams(protocol.DatagramProtocol):
        def startProtocol(self) -> None:
            from syslogsrc.protocols.datagram import set_receive_buffer

            set_receive_buffer(self.transport.getHandle(), rcvbuf)

        def datagramReceived(self, data: bytes, addr: object) -> None:
            out.write(plain_record(data.rstrip(b"\n")))

    if kind == "udp":
        reactor.listenUDP(port, Datagrams(), interface="127.0.0.1", maxPacketSize=65535)
    else:
        factory = protocol.Factory.forProtocol(Lines)
        reactor.listenTCP(port, factory, interface="127.0.0.1")
    # flush when idle, as the syslogsrc writer does, so the file shows progress
    from twisted.internet.task import LoopingCall

    LoopingCall(out.flush).start(0.5)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
    out.close()


# --------------------------------------------------------------------------------------------
# aiosyslogd


def ensure_aiosyslogd() -> Path | None:
    """``build/bench-venv/bin/aiosyslogd``, installed from PyPI on first use; None if it cannot
    be installed (the reason is printed)."""
    exe = VENV / "bin" / "aiosyslogd"
    if exe.exists():
        return exe
    try:
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "aiosyslogd"],
            check=True,
        )
    except subprocess.CalledProcessError as e:
        print(f"aiosyslogd cannot be installed ({e}); its cases are skipped", file=sys.stderr)
        return None
    return exe if exe.exists() else None


def aiosyslogd_rows(workdir: Path) -> int:
    """Rows stored so far in aiosyslogd's SQLite files (one per month: syslog_YYYYMM.sqlite3)."""
    total = 0
    for db in workdir.glob("syslog*.sqlite3"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                    " AND name LIKE 'SystemEvents%' AND name NOT LIKE '%FTS%'"
                ):
                    total += conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        except sqlite3.Error:
            continue
    return total


# --------------------------------------------------------------------------------------------
# one measurement


def start_receiver(
    name: str, kind: str, port: int, workdir: Path
) -> tuple[subprocess.Popen, object]:
    """Start a receiver; return the process and a function counting what it stored."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "out.jsonl"
    log = open(workdir / "receiver.log", "wb")
    if name == "syslogsrc":
        spec = f"{kind}:{port}:interface=127.0.0.1"
        argv = C.twistd_command(
            "-l", str(workdir / "twistd.log"), "syslogsrc", "--listen", spec, "--output",
            str(out), "--so-rcvbuf", str(RCVBUF),
        )  # fmt: skip
        env = C.checkout_env()
    elif name == "plain":
        argv = [sys.executable, __file__, "--serve-plain", kind, str(port), str(out), str(RCVBUF)]
        env = C.checkout_env()
    else:  # aiosyslogd
        config = workdir / "aiosyslogd.toml"
        config.write_text(
            "[server]\nbind_ip = \"127.0.0.1\"\n"
            f"bind_port = {port}\ndebug = false\nlog_dump = false\n\n"
            "[database]\ndriver = \"sqlite\"\nbatch_size = 100\nbatch_timeout = 1\n\n"
            f"[database.sqlite]\ndatabase = \"{workdir / 'syslog.sqlite3'}\"\n"
            "retention_months = 12\nsql_dump = false\ndebug = false\n"
        )  # fmt: skip
        argv = [str(VENV / "bin" / "aiosyslogd")]
        env = {**os.environ, "AIOSYSLOGD_CONFIG": str(config)}
    proc = subprocess.Popen(
        argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    proc._bench_log = log  # type: ignore[attr-defined]
    try:
        C.wait_listening(port, kind, proc.pid, timeout=30)
    except RuntimeError:
        C.stop_process(proc, signal.SIGKILL)
        text = (workdir / "receiver.log").read_text()
        raise RuntimeError(f"{name} did not start:\n{text}") from None
    if name == "aiosyslogd":
        return proc, lambda: aiosyslogd_rows(workdir)
    return proc, lambda: C.count_lines(out)


def measure(
    name: str, transport: str, fmt: str, rate: int | None, duration: float, workdir: Path
) -> dict[str, object]:
    kind = "udp" if transport == "udp" else "tcp"
    port = C.free_port(kind)
    proc, stored = start_receiver(name, kind, port, workdir)
    try:
        rcvbuf = C.socket_buffers(proc.pid, port).get("rb") if kind == "udp" else None
        cpu0 = C.cpu_seconds(proc.pid)
        sampler = C.DropSampler(port).start() if kind == "udp" else None
        t0 = time.monotonic()
        sent = C.run_loggen(
            port, transport=transport, seconds=duration, rate=rate, rfc5424=fmt == "rfc5424",
            lf_framing=True,
        )  # fmt: skip
        count, last_change = C.wait_settled(stored, quiet=3.0, timeout=300, poll=0.5)
        cpu = C.cpu_seconds(proc.pid) - cpu0
        drops = sampler.stop() if sampler is not None else {}
    finally:
        C.stop_process(proc)
        proc._bench_log.close()  # type: ignore[attr-defined]
    count = max(count, stored())  # whatever the stop flushed
    wall = max(last_change - t0, sent.seconds)
    result = {
        "rate": count / wall if wall else 0.0,
        "stored": count,
        "sent": sent.sent,
        "lost": sent.sent - count,
        "loss_pct": 100.0 * (sent.sent - count) / sent.sent if sent.sent else 0.0,
        "offered_rate": sent.rate,
        "loggen_seconds": sent.seconds,
        "wall_seconds": round(wall, 2),
        "cpu_us_per_msg": 1e6 * cpu / count if count else None,
        "so_rcvbuf_granted": rcvbuf,
        "load": round(C.loadavg(), 2),
        # the kernel's drops at the receiver's socket: in all, in loggen's first second, after
        **drops,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    global RCVBUF
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", default="tcp,udp", help="tcp, udp, or case names")
    ap.add_argument("--name", default="standalone", help="results file: build/bench/NAME.json")
    ap.add_argument("--serve-plain", nargs=4, metavar=("KIND", "PORT", "OUT", "RCVBUF"))
    ap.add_argument(
        "--so-rcvbuf", type=int, default=RCVBUF, help="SO_RCVBUF of both UDP receivers, bytes"
    )
    ap.add_argument(
        "--code", type=Path, default=None, help="run this other checkout's syslogsrc (before/after)"
    )
    args = ap.parse_args(argv)
    RCVBUF = args.so_rcvbuf
    if args.code:
        C.CODE = args.code.resolve()
    if args.serve_plain:
        kind, port, out, rcvbuf = args.serve_plain
        serve_plain(kind, int(port), out, int(rcvbuf))
        return 0

    wanted = args.cases.split(",")
    cases = [c for c in CASES if c[1] in wanted or c[0] in wanted]
    why_not: dict[str, str] = {}
    if any("aiosyslogd" in c[4] for c in cases) and ensure_aiosyslogd() is None:
        why_not["aiosyslogd"] = "could not be installed from PyPI"
    machine = C.machine()
    C.header(
        "twistd syslogsrc vs a plain Twisted receiver vs aiosyslogd",
        machine,
        f"{args.runs} rounds x {args.duration:g} s; loggen -s 300, 1 connection; "
        f"SO_RCVBUF {RCVBUF} for syslogsrc and plain",
    )
    started = time.monotonic()
    workroot = Path(tempfile.mkdtemp(prefix="bench-standalone-"))
    results: dict[str, dict[str, object]] = {}
    try:
        for round_no in range(args.runs):
            for case_name, transport, fmt, rate, receivers in cases:
                entry = results.setdefault(
                    case_name,
                    {
                        "transport": transport,
                        "format": fmt,
                        "rate": rate,
                        "reference": receivers[0],
                        "runs": {r: [] for r in receivers if r not in why_not},
                    },
                )
                order = [r for r in receivers if r not in why_not]
                if round_no % 2:
                    order.reverse()
                for receiver in order:
                    r = measure(receiver, transport, fmt, rate, args.duration, workroot / receiver)
                    entry["runs"][receiver].append(r)
                    print(
                        f"[{round_no + 1}/{args.runs}] {case_name:14} {receiver:10} "
                        f"{C.krate(r['rate']):>6} msg/s stored, lost {r['loss_pct']:.1f}% "
                        + (
                            f"(kernel drops {r['drops_first_second']} in the first second, "
                            f"{r['drops_after']} after) "
                            if "drops_after" in r
                            else ""
                        )
                        + f"(offered {C.krate(r['offered_rate'])}/s, wall {r['wall_seconds']} s,"
                        f" load {r['load']})",
                        flush=True,
                    )
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    for entry in results.values():
        ref = [r["rate"] for r in entry["runs"].get(entry["reference"], [])]
        entry["summary"] = {}
        for receiver, rs in entry["runs"].items():
            rates = [r["rate"] for r in rs]
            s = {
                "rate": C.summary(rates),
                "loss_pct": C.summary([r["loss_pct"] for r in rs]),
                "cpu_us_per_msg": C.summary([r["cpu_us_per_msg"] for r in rs]),
            }
            if ref and len(ref) == len(rates):
                s["ratio"] = C.paired_ratios(rates, ref)
            entry["summary"][receiver] = s
    elapsed = time.monotonic() - started
    data = {
        "machine": machine,
        "params": {
            "duration_s": args.duration,
            "runs": args.runs,
            "so_rcvbuf": RCVBUF,
            "elapsed_s": round(elapsed),
        },
        "not_measured": why_not,
        "cases": results,
    }
    rows = []
    for case_name, entry in results.items():
        for receiver, s in entry["summary"].items():
            rows.append(
                [
                    case_name,
                    receiver,
                    C.krate(s["rate"]["median"]),
                    f"{C.krate(s['rate']['min'])}-{C.krate(s['rate']['max'])}",
                    C.spread(s["ratio"]) if "ratio" in s else "",
                    f"{s['loss_pct']['median']:.1f}% ({s['loss_pct']['min']:.1f}-"
                    f"{s['loss_pct']['max']:.1f})",
                    f"{s['cpu_us_per_msg']['median']:.1f}" if s["cpu_us_per_msg"]["median"] else "",
                ]
            )
    print()
    print(
        C.markdown_table(
            ["case", "receiver", "msg/s stored", "range", "x reference", "lost", "CPU us/msg"],
            rows,
        )
    )
    path = C.save_results(args.name, data)
    print(f"\nresults: {path}; took {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

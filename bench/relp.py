"""RELP inside syslog-ng: rsyslog's omrelp into SyslogSource against omfwd TCP into it, same run.

Run by hand from the checkout's root, as root (the syslog-ng 4 chroot needs it; see
docs/benchmarks.md)::

    python bench/relp.py [--count 20000] [--runs 3] [--daemons host-3.38,chroot-4.8]
                         [--windows 128,1024] [--batches 128:64] [--reference]
                         [--code OTHER_CHECKOUT]

The sender is the real rsyslog (``tests/rsyslog.py``: Debian's rsyslogd, unpacked), one instance
per measurement: ``--count`` numbered messages are injected into its imptcp input
(``RunningRsyslog.inject``, one connection, sent at once) and its one action forwards them in
rsyslog's RFC 5424 template (``<14>1 2026-12-02T10:00:00.000001Z rshost rsapp 4242 - -
rsyslog message NNNNNN``, ~80 bytes), over one connection, to:

* ``relp-wN``: ``omrelp`` with ``windowSize`` N (128 is librelp's default; our listener allows
  up to 1024) into ``relp:PORT`` of a ``SyslogSource``;
* ``relp-wN-bB`` (``--batches N:B``, default 128:64): the same omrelp on an action queue of its
  own that hands it batches of at most B messages: omrelp corks its socket (``TCP_CORK``) for a
  whole batch and waits for answers with it corked once the window is full, so a batch larger
  than the window waits for the kernel's ~200 ms cork limit once per window;
* ``tcp``: ``omfwd`` TCP, octet-counted (RFC 6587), into ``tcp:PORT`` of the same source
  configuration, the same messages: the reference of every ratio;
* ``rsyslog-imrelp`` (``--reference``): each RELP case's omrelp into a second rsyslogd's own
  ``imrelp`` writing to ``omfile``, what rsyslog reaches over RELP on this machine with no
  syslogsrc at all (measured once per round, not per daemon).

The syslog-ng side of each measurement is a fresh daemon (``tests/daemons.py``: the host's
3.38.1 and the chroot's 4.8.1) whose one log path is the source into a ``file()`` of ``$MSG``
lines, with ``flags(flow-control)``: a RELP message is answered ``200 OK`` only once the file
destination has taken it (SyslogSource's acknowledging sink), and the TCP case runs through the
same flow-controlled path so that the two differ in the protocol only. The source's
``log-iw-size`` is 10000, more than any window.

The figure is messages per second from the first to the last message arriving in the
destination file (the file is polled every 5 ms; the count of its lines against the
``time.monotonic()`` of the poll), which leaves out rsyslog's start and the injection. The
ratios are each RELP case against ``tcp`` of the same daemon, and against rsyslog's imrelp,
in the same round; the order of the cases
alternates each round; the median of the rounds is shown with its spread (min-max). Every
message is checked to arrive exactly once (numbers 0 .. count-1). The load average (1 min) is
recorded at each measurement.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from daemons import available_daemons
from rsyslog import (
    RFC5424,
    RsyslogFactory,
    assert_each_once,
    imrelp_input,
    omfile_lines,
    omfwd_tcp,
    omrelp,
    probe_rsyslog,
)

WINDOW = 10_000  # log-iw-size of the source: above every RELP window, never the limit
POLL = 0.005  # seconds between two looks at the destination file


def _load_daemon_bench():
    """bench/daemon.py (for its :class:`Visible`: another checkout's syslogsrc inside each
    daemon); loaded by path because _common takes bench/ off sys.path."""
    spec = importlib.util.spec_from_file_location("bench_daemon", C.BENCH / "daemon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Arrivals:
    """Watches a file of one line per message from another thread: when the first line
    arrived, and when the count reached ``count``."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count
        self.lines = 0
        self.first: float | None = None
        self.last: float | None = None
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _read_new(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        self._offset += end
        return data.count(b"\n", 0, end)

    def _watch(self) -> None:
        while not self._stop.is_set():
            new = self._read_new()
            if new:
                now = time.monotonic()
                self.lines += new
                if self.first is None:
                    self.first = now
                if self.lines >= self.count:
                    self.last = now
                    return
            time.sleep(POLL)

    def wait(self, timeout: float) -> bool:
        """True once all ``count`` lines arrived; False after ``timeout`` seconds."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join()
        return self.last is not None


def relp_action(port: int, case: str) -> str:
    """The omrelp action of ``relp-wN`` or ``relp-wN-bB``: ``windowSize`` N; with B, the action
    gets its own queue that hands it batches of at most B messages
    (``queue.dequeueBatchSize``)."""
    window, _, batch = case.removeprefix("relp-w").partition("-b")
    action = omrelp(port, window_size=int(window), template=RFC5424)
    if batch:
        # librelp corks the socket (TCP_CORK) for a whole batch of omrelp's and uncorks it
        # at the batch's end: a batch no larger than the window is sent without waiting for
        # the kernel's 200 ms cork limit (see docs/benchmarks.md, "RELP")
        queue = f' queue.type="LinkedList" queue.dequeueBatchSize="{int(batch)}"'
        action = action.rstrip().removesuffix(")") + queue + ")\n"
    return action


def source_config(listen: str) -> str:
    return (
        "options { use-dns(no); keep-hostname(yes); };\n"
        f'source s {{ python(class("syslogsrc.SyslogSource") options("listen" "{listen}")'
        f" log-iw-size({WINDOW})); }};\n"
        'destination f { file("@STATE@/out.log" template("$MSG\\n")); };\n'
        "log { source(s); destination(f); flags(flow-control); };\n"
    )


def _check_and_rate(path: Path, arrivals: Arrivals, count: int) -> dict[str, object]:
    with open(path, encoding="utf-8", errors="replace") as f:
        assert_each_once(f.read().splitlines(), count)
    seconds = arrivals.last - arrivals.first
    return {"rate": (count - 1) / seconds if seconds > 0 else None, "seconds": round(seconds, 3)}


def measure_daemon(
    daemon, case: str, count: int, workdir: Path, visible, timeout: float
) -> dict[str, object]:
    """One case (``tcp`` or ``relp-wN``) into a fresh daemon."""
    port = C.free_port()
    kind = "tcp" if case == "tcp" else "relp"
    running = daemon.spawn(
        source_config(f"{kind}:{port}:interface=127.0.0.1"),
        workdir=workdir,
        wait_ports=[port],
        env={"PYTHONPATH": visible.pythonpath},
    )
    factory = RsyslogFactory(workdir / "rsyslog", probe_rsyslog())
    try:
        if case == "tcp":
            action = omfwd_tcp(port, framing="octet-counted", template=RFC5424)
        else:
            action = relp_action(port, case)
        sender = factory.start(action)
        out = running.state_dir / "out.log"
        load = C.loadavg()
        cpu0 = C.cpu_seconds(running.pid)
        arrivals = Arrivals(out, count)
        sent_seconds = _deliver(sender, arrivals, count, timeout, f"{daemon.name} {case}")
        cpu = C.cpu_seconds(running.pid) - cpu0
        result = _check_and_rate(out, arrivals, count)
        errors = factory.close()
        rc = running.stop()
    finally:
        factory.close()
        running.close()
    stderr = running.stderr()
    shutil.rmtree(running.state_dir, ignore_errors=True)
    shutil.rmtree(workdir / "rsyslog", ignore_errors=True)
    return {
        **result,
        "inject_to_sent_seconds": round(sent_seconds, 3),
        "daemon_cpu_us_per_msg": round(1e6 * cpu / count, 2),
        "load": round(load, 2),
        "daemon_rc": rc,
        "rsyslog_errors": errors,
        "errors": [ln for ln in stderr.splitlines() if "rror" in ln or "Traceback" in ln][:5],
    }


def _deliver(sender: Any, arrivals: Arrivals, count: int, timeout: float, what: str) -> float:
    """Inject ``count`` messages into rsyslog and wait until it sent them and they all
    arrived; the seconds from the injection to the last one sent."""
    t0 = time.monotonic()
    sender.inject(count)
    sender.wait_sent(count, timeout=timeout)
    sent_seconds = time.monotonic() - t0
    if not arrivals.wait(timeout):
        raise RuntimeError(f"{what}: {arrivals.lines} of {count} arrived")
    return sent_seconds


def measure_imrelp(case: str, count: int, workdir: Path, timeout: float) -> dict[str, object]:
    """omrelp (``relp-wN[-bB]``) into a second rsyslogd's imrelp (the reference)."""
    port = C.free_port()
    factory = RsyslogFactory(workdir / "rsyslog", probe_rsyslog())
    out = workdir / "imrelp.out"
    out.unlink(missing_ok=True)
    try:
        factory.start_config(imrelp_input(port) + omfile_lines(out), wait_ports=[port])
        sender = factory.start(relp_action(port, case))
        load = C.loadavg()
        arrivals = Arrivals(out, count)
        sent_seconds = _deliver(sender, arrivals, count, timeout, f"imrelp {case}")
        result = _check_and_rate(out, arrivals, count)
        errors = factory.close()
    finally:
        factory.close()
    shutil.rmtree(workdir / "rsyslog", ignore_errors=True)
    out.unlink(missing_ok=True)
    return {
        **result,
        "inject_to_sent_seconds": round(sent_seconds, 3),
        "load": round(load, 2),
        "rsyslog_errors": errors,
    }


def summarise(runs: dict[str, dict[str, list[dict[str, object]]]]) -> dict[str, dict[str, object]]:
    """Per receiver and case: the rate, load and daemon CPU of the rounds (median, min-max),
    and the per-round ratios to ``tcp`` of the same daemon and to rsyslog's own imrelp."""
    summary: dict[str, dict[str, object]] = {}
    for name, by_case in runs.items():
        tcp = [r["rate"] for r in by_case.get("tcp", [])]
        for case, rs in by_case.items():
            rates = [r["rate"] for r in rs]
            s: dict[str, object] = {
                "rate": C.summary(rates),
                "load": C.summary([r["load"] for r in rs]),
            }
            if "daemon_cpu_us_per_msg" in rs[0]:
                s["daemon_cpu_us_per_msg"] = C.summary([r["daemon_cpu_us_per_msg"] for r in rs])
            if tcp and case != "tcp":
                s["ratio_to_tcp"] = C.paired_ratios(rates, tcp)
            imrelp = [r["rate"] for r in runs.get("rsyslog-imrelp", {}).get(case, [])]
            if name != "rsyslog-imrelp" and len(imrelp) == len(rates):
                # the same sender into rsyslog's own imrelp, in the same round
                s["ratio_to_imrelp"] = C.paired_ratios(rates, imrelp)
            summary[f"{name} | {case}"] = s
    return summary


def _ratio(s: dict[str, object] | None) -> str:
    """A ratio with its spread, four decimals below 0.1 (RELP with a small window is)."""
    if not s or s["median"] is None:
        return ""
    if s["median"] >= 0.1:
        return C.spread(s)
    return f"{s['median']:.4f} ({s['min']:.4f}-{s['max']:.4f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000, help="messages per measurement")
    ap.add_argument("--runs", type=int, default=3, help="rounds (at least 3 for the docs)")
    ap.add_argument("--daemons", default="", help="comma-separated names (default: all found)")
    ap.add_argument("--windows", default="128,1024", help="omrelp windowSize values")
    ap.add_argument(
        "--batches",
        default="128:64",
        help="WINDOW:BATCH pairs: omrelp with that window in batches of at most BATCH",
    )
    ap.add_argument(
        "--reference", action="store_true", help="also omrelp into rsyslog's own imrelp"
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds per measurement, at most")
    ap.add_argument("--name", default="relp", help="results file: build/bench/NAME.json")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    ap.add_argument(
        "--code", type=Path, default=None, help="run this other checkout's syslogsrc (before/after)"
    )
    args = ap.parse_args(argv)
    windows = [int(w) for w in args.windows.split(",") if w]
    found = probe_rsyslog()
    if isinstance(found, str):
        print(found, file=sys.stderr)
        return 1
    daemons = available_daemons()
    if args.daemons:
        daemons = [d for d in daemons if d.name in args.daemons.split(",")]
    if not daemons:
        print("no syslog-ng daemon found: python tests/daemons.py says why", file=sys.stderr)
        return 1
    machine = C.machine()
    C.header(
        "RELP from rsyslog into SyslogSource vs omfwd TCP",
        machine,
        f"daemons: {', '.join(f'{d.name} ({d.full_version})' for d in daemons)}; rsyslog"
        f" {found.version}; {args.runs} rounds x {args.count} messages",
    )
    for d in daemons:
        d.deps_dir()
    Visible = _load_daemon_bench().Visible
    relp_cases = [f"relp-w{w}" for w in windows]
    relp_cases += [f"relp-w{p.replace(':', '-b')}" for p in args.batches.split(",") if p]
    cases = ["tcp", *relp_cases]
    workdir = Path(tempfile.mkdtemp(prefix="bench-relp-"))
    runs: dict[str, dict[str, list[dict[str, object]]]] = {}
    started = time.monotonic()
    visible = {}
    try:
        for d in daemons:
            visible[d.name] = Visible(d, workdir / d.name, args.code)
        for round_no in range(args.runs):
            order = cases if round_no % 2 == 0 else cases[::-1]
            for d in daemons:
                for case in order:
                    r = measure_daemon(
                        d, case, args.count, workdir / d.name, visible[d.name], args.timeout
                    )
                    runs.setdefault(d.name, {}).setdefault(case, []).append(r)
                    print(
                        f"[{round_no + 1}/{args.runs}] {d.name:10} {case:10} "
                        f"{C.krate(r['rate']):>6} msg/s in {r['seconds']} s (inject to sent"
                        f" {r['inject_to_sent_seconds']} s, daemon {r['daemon_cpu_us_per_msg']}"
                        f" us/msg, load {r['load']})"
                        + (f" ERRORS {r['errors'][:1]}" if r["errors"] else ""),
                        flush=True,
                    )
            if args.reference:
                for case in relp_cases:
                    r = measure_imrelp(case, args.count, workdir, args.timeout)
                    runs.setdefault("rsyslog-imrelp", {}).setdefault(case, []).append(r)
                    print(
                        f"[{round_no + 1}/{args.runs}] imrelp     {case:10} "
                        f"{C.krate(r['rate']):>6} msg/s in {r['seconds']} s (load {r['load']})",
                        flush=True,
                    )
    finally:
        for v in visible.values():
            v.remove()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(runs)
    elapsed = time.monotonic() - started
    data = {
        "machine": machine,
        "params": {
            "count": args.count,
            "runs": args.runs,
            "windows": windows,
            "cases": cases,
            "log_iw_size": WINDOW,
            "rsyslog": found.version,
            "daemons": {d.name: d.full_version for d in daemons},
            "figure": "messages/s from the first to the last message arriving in the file",
            "log_path": "flags(flow-control), file() of $MSG",
            "code": str(args.code or C.CHECKOUT),
            "elapsed_s": round(elapsed),
        },
        "summary": summary,
        "runs": runs,
    }
    print()
    print(
        C.markdown_table(
            [
                "daemon | case",
                "msg/s",
                "range",
                "x tcp (range)",
                "x rsyslog imrelp (range)",
                "daemon CPU us/msg",
            ],
            [
                [
                    key,
                    C.krate(s["rate"]["median"]),
                    f"{C.krate(s['rate']['min'])}-{C.krate(s['rate']['max'])}",
                    _ratio(s.get("ratio_to_tcp")),
                    _ratio(s.get("ratio_to_imrelp")),
                    f"{s['daemon_cpu_us_per_msg']['median']:.1f}"
                    if "daemon_cpu_us_per_msg" in s
                    else "",
                ]
                for key, s in summary.items()
            ],
        )
    )
    path = C.save_results(args.name, data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nresults: {path}; took {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())

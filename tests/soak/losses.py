#!/usr/bin/env python3
"""Full-rate loggen into SyslogSource with flow control: every sequence number must arrive
exactly once per connection. Counts the daemon's "Incorrectly suspended source, dropping
message" lines (each a message the daemon refused, which SyslogSource holds and posts again).

    python3 tests/soak/losses.py                                  # every daemon, 20 runs of 1 M
    python3 tests/soak/losses.py --daemon chroot-4.8 -n 4 -m 200000
    flock /tmp/syslogsrc-heavy.lock python3 tests/soak/losses.py  # measurements: hold the lock

Each run starts a fresh daemon whose only log path is SyslogSource into ``file()`` with
``flags(flow-control)`` (``log-iw-size`` 100 unless ``--window``), and sends ``--messages``
messages with ``loggen -n`` as fast as it can, over 1 or 10 connections, RFC 3164 or RFC 5424
(octet-counted) in turn. Meanwhile a second loggen (``--load`` msg/s, on a second listener of the
same source; 0: none) competes for the window and the CPU, and its messages are checked too.
The runs cycle through the combinations of ``--parsers`` x ``--connections`` x the two formats.

``--no-flow-control --window 100000 --wide --seconds 10`` reproduce what ``bench/daemon.py``
measures (no flow control, whole messages in the file, loggen for a duration); the file
destination's queue drops are then read from ``syslog-ng-ctl stats`` before the stop.

The file gets one short line per message (``$PEERPORT`` and the numbers loggen puts in each
message: ``seq`` and ``thread``); a connection is a sender's port. Per connection, every number
from 0 to the last must be there once. The run waits until the file holds what loggen sent (or
stops growing for ``--quiet`` s), then stops the daemon (SIGTERM) and reads the source's stop
summary (received, posted, dropped per listener).

Exit status 1 if any message was lost or duplicated, or a daemon did not stop cleanly. The
"Incorrectly suspended" lines are counted, not failed on: see docs/syslog-ng.md.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _soak import WORKDIR, count_lines, daemons, pick_daemon, socket_inodes

LOGGEN = "loggen"
FULL_RATE = 1_000_000_000  # loggen -r is per connection; this is "as fast as it can"
DROP_LINE = "Incorrectly suspended source, dropping message"
_LINE = re.compile(rb"(\d+) (?:seq: )?(\d{10}),? (?:thread: )?(\d{4})(?:,.*)?\n")
_SUMMARY = re.compile(r"listener (\S+) stopped: (.*?);?$", re.M)
_LOGGEN = re.compile(r"count=(\d+)")


def config(
    main_port: int, load_port: int, parser: str, window: int, flow_control: bool, wide: bool
) -> str:
    listen = f"tcp:{main_port}:interface=127.0.0.1"
    if load_port:
        listen += f" tcp:{load_port}:interface=127.0.0.1"
    # seq and thread are at fixed places in loggen's MESSAGE ("seq: 0000000012, thread: 0003, ")
    template = r'"${PEERPORT} $(substr \"${MSG}\" 5 10) $(substr \"${MSG}\" 25 4)\n"'
    if wide:  # the whole message, as bench/daemon.py writes it: a slower destination
        template = r'"${PEERPORT} ${MSG}\n"'
    return (
        "options { use-dns(no); stats-level(1); };\n"
        f'source s {{ python(class("syslogsrc.SyslogSource") options("listen" "{listen}"'
        f' "parser" "{parser}" "max-connections" "100") log-iw-size({window})'
        f" flags(syslog-protocol)); }};\n"
        f'destination d {{ file("@STATE@/out.log" template({template})); }};\n'
        f"log {{ source(s); destination(d);{' flags(flow-control);' if flow_control else ''} }};\n"
    )


def loggen(port: int, *, per_connection: int | None, connections: int, rfc5424: bool,
           rate: int = FULL_RATE, seconds: int | None = None) -> subprocess.Popen[str]:  # fmt: skip
    args = [LOGGEN, "-i", "-S", "-s", "300", "-r", str(rate)]
    if per_connection is not None:
        args += ["-n", str(per_connection)]
    # loggen stops after -I seconds (10 unless given), even with -n
    args += ["-I", str(seconds if seconds is not None else 3600)]
    if rfc5424:
        args.append("-P")
    if connections > 1:
        args.append(f"--active-connections={connections}")
    args += ["127.0.0.1", str(port)]
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def loggen_count(proc: subprocess.Popen[str], timeout: float) -> int:
    out, _ = proc.communicate(timeout=timeout)
    m = _LOGGEN.findall(out)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"loggen failed (rc={proc.returncode}):\n{out[-2000:]}")
    return int(m[-1])


def read_output(path: Path) -> tuple[dict[int, collections.Counter[int]], int]:
    """Per sender port, how many times each seq arrived; and the lines of another shape."""
    seen: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    bad = 0
    with open(path, "rb") as f:
        for line in f:
            m = _LINE.fullmatch(line)
            if m is None:
                bad += 1
                continue
            seen[int(m.group(1))][int(m.group(2))] += 1
    return seen, bad


def check(seen: dict[int, collections.Counter[int]], ports: set[int] | None = None) -> dict:
    """Lost: numbers missing below a connection's highest one; duplicated: extra copies."""
    lost = dups = total = 0
    for port, counts in seen.items():
        if ports is not None and port not in ports:
            continue
        top = max(counts)
        lost += top + 1 - len(counts)
        dups += sum(c - 1 for c in counts.values())
        total += sum(counts.values())
    return {"lost_inside": lost, "dup": dups, "delivered": total}


def _queue_drops(stats: str) -> int:
    """What the file destination's queue dropped (full, without flow control)."""
    return sum(
        int(line.rsplit(";", 1)[1])
        for line in stats.splitlines()
        if line.startswith("dst.file;") and ";dropped;" in line
    )


def summaries(stderr: str) -> dict[str, dict[str, int]]:
    """The source's stop lines: received, posted, dropped per listener."""
    out: dict[str, dict[str, int]] = {}
    for name, counts in _SUMMARY.findall(stderr):
        values = {k: int(v) for k, v in (c.split("=") for c in counts.split(", "))}
        values = {k: v for k, v in values.items() if k in ("received", "posted", "dropped")}
        acc = out.setdefault(name, collections.Counter())
        acc.update(values)
    return out


def one_run(daemon: daemons.Daemon, *, parser: str, connections: int, rfc5424: bool,
            messages: int, load: int, load_seconds: int, window: int, flow_control: bool,
            wide: bool, seconds: int, quiet: float) -> dict:  # fmt: skip
    main_port = daemons.free_port()
    load_port = daemons.free_port() if load else 0
    running = daemon.spawn(
        config(main_port, load_port, parser, window, flow_control, wide),
        workdir=WORKDIR,
        wait_ports=[p for p in (main_port, load_port) if p],
    )
    out = Path(running.state_dir) / "out.log"
    per_connection = messages // connections if not seconds else None
    started = time.monotonic()
    load_proc = None
    load_ports: set[int] = set()
    try:
        if load:
            # for about as long as the main sender (loggen ignores SIGTERM and SIGINT)
            load_proc = loggen(load_port, per_connection=None, connections=1, rfc5424=False,
                               rate=load, seconds=load_seconds)  # fmt: skip
            load_ports = local_ports(load_proc.pid, load_port)
        main = loggen(main_port, per_connection=per_connection, connections=connections,
                      rfc5424=rfc5424, seconds=seconds or None)  # fmt: skip
        sent = loggen_count(main, timeout=600)
        send_seconds = time.monotonic() - started
        load_sent = 0
        if load_proc is not None:
            load_sent = loggen_count(load_proc, timeout=load_seconds + 60)
        # wait for the file: all of it, or nothing new for `quiet` seconds
        last, since = -1, time.monotonic()
        while True:
            n = count_lines(out)
            if n >= sent + load_sent:
                break
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > quiet:
                break
            time.sleep(0.2)
        queue_drops = _queue_drops(running.ctl("stats"))
        rc = running.stop()
    finally:
        if load_proc is not None and load_proc.poll() is None:
            load_proc.kill()
            load_proc.wait()
        running.close()
    out = Path(running.state_dir) / "out.log"
    stderr = running.stderr()
    seen, bad = read_output(out)
    stats = summaries(stderr)
    main_stats = next((v for k, v in stats.items() if f":{main_port}:" in k + ":"), {})
    load_stats = next((v for k, v in stats.items() if load_port and f":{load_port}:" in k), {})
    result = {
        "daemon": daemon.name,
        "parser": parser,
        "connections": connections,
        "format": "rfc5424" if rfc5424 else "rfc3164",
        "sent": sent,
        "load_sent": load_sent,
        "seconds": round(send_seconds, 2),
        "rc": rc,
        "bad_lines": bad,
        "drop_lines": stderr.count(DROP_LINE),
        "queue_drops": queue_drops,
        "main": main_stats,
        "load": load_stats,
        "tracebacks": stderr.count("Traceback"),
    }
    # the main sender's connections: those loggen -n numbered up to per_connection - 1
    main_seen = {p: c for p, c in seen.items() if p not in load_ports}
    load_seen = {p: c for p, c in seen.items() if p in load_ports}
    r_main = check(main_seen)
    # what loggen counted sent and is not there, once (a gap, a tail or a whole connection)
    r_main["lost"] = sent - (r_main["delivered"] - r_main["dup"])
    r_main["connections_seen"] = len(main_seen)
    result["main_check"] = r_main
    r_load = check(load_seen)
    r_load["lost"] = load_sent - (r_load["delivered"] - r_load["dup"]) if load else 0
    result["load_check"] = r_load
    shutil_rmtree(running.state_dir)
    return result


def local_ports(pid: int, remote_port: int, timeout: float = 10) -> set[int]:
    """The local ports of ``pid``'s TCP connections to ``remote_port`` (once it has one)."""
    deadline = time.monotonic() + timeout
    while True:
        inodes = socket_inodes(pid)
        ports = set()
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        if ports or time.monotonic() > deadline:
            return ports
        time.sleep(0.02)


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", action="append", help="daemon name (default: every one)")
    parser.add_argument("-n", "--runs", type=int, default=20, help="runs per daemon")
    parser.add_argument("-m", "--messages", type=int, default=1_000_000, help="per run")
    parser.add_argument("--parsers", default="syslogsrc,native")
    parser.add_argument("--connections", default="1,10")
    parser.add_argument("--load", type=int, default=20_000, help="msg/s of the second loggen")
    parser.add_argument(
        "--load-seconds", type=int, default=0, help="its duration (default: messages / 100 000)"
    )
    parser.add_argument("--window", type=int, default=100, help="log-iw-size")
    parser.add_argument(
        "--no-flow-control",
        action="store_true",
        help="the log path without flags(flow-control), as bench/daemon.py measures",
    )
    parser.add_argument(
        "--seconds", type=int, default=0, help="send for this long (loggen -I) instead of -m"
    )
    parser.add_argument("--wide", action="store_true", help="write whole messages")
    parser.add_argument("--quiet", type=float, default=10.0)
    args = parser.parse_args()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    found = daemons.available_daemons()
    names = args.daemon or [d.name for d in found]
    combos = list(
        itertools.product(
            args.parsers.split(","), [int(c) for c in args.connections.split(",")], (False, True)
        )
    )
    failed = False
    totals: dict[str, collections.Counter[str]] = {}
    for name in names:
        daemon = pick_daemon(name)
        total = totals.setdefault(name, collections.Counter())
        for i in range(args.runs):
            parser_name, connections, rfc5424 = combos[i % len(combos)]
            r = one_run(
                daemon,
                parser=parser_name,
                connections=connections,
                rfc5424=rfc5424,
                messages=args.messages,
                load=args.load,
                load_seconds=args.load_seconds or max(2, args.messages // 100_000),
                window=args.window,
                flow_control=not args.no_flow_control,
                wide=args.wide,
                seconds=args.seconds,
                quiet=args.quiet,
            )
            mc, lc = r["main_check"], r["load_check"]
            ok = (
                mc["lost"] == 0
                and mc["dup"] == 0
                and lc["lost"] == 0
                and lc["dup"] == 0
                and r["rc"] == 0
                and r["bad_lines"] == 0
                and r["tracebacks"] == 0
            )
            failed |= not ok
            total.update(
                runs=1,
                sent=r["sent"],
                load_sent=max(r["load_sent"], 0),
                lost=mc["lost"] + lc["lost"],
                dup=mc["dup"] + lc["dup"],
                drop_lines=r["drop_lines"],
                queue_drops=r["queue_drops"],
                failed_runs=0 if ok else 1,
                seconds=r["seconds"],
            )
            print(
                f"{name} run {i + 1}/{args.runs} parser={parser_name} conns={connections}"
                f" {r['format']}: sent {r['sent']} in {r['seconds']} s, delivered"
                f" {mc['delivered']}, lost {mc['lost']}, dup {mc['dup']}; load sent"
                f" {r['load_sent']} lost {lc['lost']} dup {lc['dup']};"
                f" 'Incorrectly suspended' {r['drop_lines']}; queue drops {r['queue_drops']};"
                f" stop rc {r['rc']};"
                f" main {dict(r['main'])} load {dict(r['load'])}"
                f"{'' if ok else '  NOT OK'}",
                flush=True,
            )
    print()
    for name, t in totals.items():
        print(
            f"{name}: {t['runs']} runs, {t['sent']} + {t['load_sent']} (load) messages,"
            f" lost {t['lost']}, duplicated {t['dup']}, 'Incorrectly suspended' lines"
            f" {t['drop_lines']}, queue drops {t['queue_drops']},"
            f" failed runs {t['failed_runs']}, sending {t['seconds']:.0f} s"
        )
    print("OK" if not failed else "NOT OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

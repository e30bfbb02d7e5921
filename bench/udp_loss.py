#!/usr/bin/env python3
"""UDP loss at 5 000, 50 000 msg/s and loggen's maximum rate: SyslogSource against syslog-ng's
native UDP source, in the same daemon, in the same run.

    python3 bench/udp_loss.py                          # first daemon found, 10 s per step
    python3 bench/udp_loss.py --daemon chroot-4.8 --seconds 5 --rates 5000,50000,max

One daemon holds three sources, each writing $MSG to its own file (flags(flow-control)):

- ``ours``: ``python(class("syslogsrc.SyslogSource"))`` on ``udp:PORT`` (so-rcvbuf 4 MiB, its
  default; granted in full as root, through SO_RCVBUFFORCE);
- ``native``: ``network(transport(udp))`` with its default receive buffer (the kernel's,
  net.core.rmem_default);
- ``native-4m``: the same with ``so-rcvbuf(4194304)``, the buffer ours asks for.

For each rate, ``loggen --dgram`` sends to each source in turn (never at the same time). Sent is
loggen's count; received is the lines the file gained; the kernel's drops are read from
/proc/net/udp for the daemon's socket on that port. Loss = sent - received; kernel drops must
account for it (lost elsewhere = loss - kernel drops). At the end the daemon's stop summary gives
SyslogSource's own ListenerStats.kernel_drops, which must equal what /proc said for its socket.
Loopback, so the network loses nothing: every datagram lost was dropped at the receiver.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import _common as C  # first: it takes bench/ off sys.path and puts tests/ on it
import _processes
import daemons

CHECKOUT = C.CHECKOUT

WORKDIR = CHECKOUT / "build" / "bench" / "udp_loss"


def config(ports: dict[str, int]) -> str:
    return f"""
options {{ use-dns(no); }};
source s_ours {{ python(class("syslogsrc.SyslogSource")
                 options("listen" "udp:{ports["ours"]}:interface=127.0.0.1" "format" "auto")); }};
source s_native {{ network(transport(udp) ip(127.0.0.1) port({ports["native"]})); }};
source s_native4m {{ network(transport(udp) ip(127.0.0.1) port({ports["native-4m"]})
                    so-rcvbuf(4194304)); }};
destination d_ours {{ file("@STATE@/ours.log" template("$MSG\\n")); }};
destination d_native {{ file("@STATE@/native.log" template("$MSG\\n")); }};
destination d_native4m {{ file("@STATE@/native-4m.log" template("$MSG\\n")); }};
log {{ source(s_ours); destination(d_ours); flags(flow-control); }};
log {{ source(s_native); destination(d_native); flags(flow-control); }};
log {{ source(s_native4m); destination(d_native4m); flags(flow-control); }};
"""


def lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def settle(path: Path, quiet: float = 1.5, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    last, since = lines(path), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        now = lines(path)
        if now != last:
            last, since = now, time.monotonic()
    return last


def kernel(pid: int, port: int) -> dict[str, int]:
    """drops and receive buffer in use for the daemon's UDP socket on ``port``."""
    inodes = _processes.socket_inodes(pid) & _processes.bound_inodes(port, "udp")
    for row in C.udp_sockets():
        if row["inode"] in inodes:
            return {"drops": row["drops"], "rx_queue": row["rx_queue"]}
    raise RuntimeError(f"no UDP socket of {pid} on {port}")


def loggen(port: int, rate: int, seconds: float) -> tuple[int, float]:
    """Send for ``seconds`` at ``rate`` msg/s; returns (count, achieved msg/s)."""
    proc = subprocess.run(
        ["loggen", "--dgram", "-r", str(rate), "-I", str(int(seconds)), "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    m = re.search(r"average rate = ([\d.]+) msg/sec, count=(\d+)", text)
    if not m:
        raise RuntimeError(f"loggen said: {text[-500:]}")
    return int(m.group(2)), float(m.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", default=None)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rates", default="5000,50000,max")
    args = parser.parse_args()
    found, missing = daemons.probe_daemons()
    daemon = next((d for d in found if args.daemon in (None, d.name)), None)
    if daemon is None:
        raise SystemExit(f"no daemon {args.daemon}: {missing}")
    WORKDIR.mkdir(parents=True, exist_ok=True)
    ports = {name: daemons.free_port("udp") for name in ("ours", "native", "native-4m")}
    running = daemon.spawn(config(ports), workdir=WORKDIR,
                           wait_ports=[("udp", p) for p in ports.values()])  # fmt: skip
    state = Path(running.state_dir)
    rows = []
    try:
        for rate_text in args.rates.split(","):
            rate = 10_000_000 if rate_text == "max" else int(rate_text)
            for name, port in ports.items():
                out = state / f"{name}.log"
                before_lines = settle(out, quiet=0.5)
                before = kernel(running.pid, port)
                sent, achieved = loggen(port, rate, args.seconds)
                received = settle(out) - before_lines
                after = kernel(running.pid, port)
                drops = after["drops"] - before["drops"]
                rows.append((rate_text, name, sent, achieved, received, drops))
                print(f"{rate_text:>6} {name:10} sent {sent:>9} ({achieved:>9.0f}/s) received "
                      f"{received:>9} lost {sent - received:>8} ({(sent - received) / sent:6.2%})"
                      f" kernel drops {drops:>8}", flush=True)  # fmt: skip
        ours_drops = kernel(running.pid, ports["ours"])["drops"]
    finally:
        code = running.stop()
    stderr = running.stderr()
    m = re.search(r"listener udp:\S+ stopped: .*kernel_drops=(\d+)", stderr)
    reported = int(m.group(1)) if m else None
    print(
        f"\ndaemon {daemon.name} ({daemon.full_version}), exit {code}; SyslogSource's"
        f" ListenerStats.kernel_drops at stop: {reported}, /proc for its socket: {ours_drops}"
    )
    granted = re.search(r"so-rcvbuf\(\d+\) capped by the kernel to (\d+)", stderr)
    if granted:
        print(f"(so-rcvbuf capped to {granted.group(1)} bytes: not root?)")
    print()
    print("| rate asked | source | sent | achieved msg/s | received | lost | loss | kernel drops |")
    print("|---|---|---|---|---|---|---|---|")
    for rate_text, name, sent, achieved, received, drops in rows:
        print(f"| {rate_text} | {name} | {sent} | {achieved:.0f} | {received} | {sent - received}"
              f" | {(sent - received) / sent:.2%} | {drops} |")  # fmt: skip
    unexplained = [(r[0], r[1], r[2] - r[4] - r[5]) for r in rows if r[2] - r[4] != r[5]]
    if unexplained:
        print(f"\nloss not explained by kernel drops: {unexplained}")
    return 0 if code == 0 and reported == ours_drops else 1


if __name__ == "__main__":
    sys.exit(main())

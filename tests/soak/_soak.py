"""What the soak scripts share: daemons, senders that count, outputs read back, process figures."""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import re
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import daemons  # noqa: E402
from _processes import socket_inodes  # noqa: E402, F401 - re-exported (tests/ is on the path here)

sys.path.insert(0, str(ROOT / "bench"))
# the benchmarks' helpers, one copy for both: count an output's lines, wait until it settles
from _common import count_lines, wait_stable  # noqa: E402, F401 - re-exported

WORKDIR = ROOT / "build" / "soak"


def pick_daemon(name: str | None) -> daemons.Daemon:
    found, missing = daemons.probe_daemons()
    for d in found:
        if name is None or d.name == name:
            return d
    raise SystemExit(f"no daemon {name or ''} here: {[d.name for d in found]} {missing}")


def shared_dir(daemon: daemons.Daemon) -> tuple[Path, str]:
    """A directory the test and the daemon both see: (our path, the daemon's path)."""
    if daemon.root is None:
        path = Path(tempfile.mkdtemp(prefix="soak-", dir=WORKDIR))
        return path, str(path)
    path = Path(tempfile.mkdtemp(prefix="slng-soak-", dir=Path(daemon.root) / "tmp"))
    path.chmod(0o755)
    return path, "/" + str(path.relative_to(daemon.root))


def source_config(listen: str, destination: str, options: dict[str, str] | None = None) -> str:
    pairs = {"listen": listen, **(options or {})}
    text = " ".join(f'"{k}" "{v}"' for k, v in pairs.items())
    return (
        "options { use-dns(no); };\n"
        f'source s {{ python(class("syslogsrc.SyslogSource") options({text})); }};\n'
        f"destination d {{ {destination} }};\n"
        "log { source(s); destination(d); flags(flow-control); };\n"
    )


def native_config(port: int, destination: str) -> str:
    """The comparison: syslog-ng's own ``network()`` TCP source on 127.0.0.1:``port`` into
    ``destination``, with the same options and flow control as :func:`source_config`."""
    return (
        "options { use-dns(no); };\n"
        f"source s {{ network(transport(tcp) ip(127.0.0.1) port({port})); }};\n"
        f"destination d {{ {destination} }};\n"
        "log { source(s); destination(d); flags(flow-control); };\n"
    )


def reload_parser(description: str, native_help: str) -> argparse.ArgumentParser:
    """The options every reload soak takes: how many reloads, how far apart, which daemon, and
    ``--native`` (run :func:`native_config` instead, to compare)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-n", "--reloads", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between reloads")
    parser.add_argument("--daemon", default=None)
    parser.add_argument("--native", action="store_true", help=native_help)
    return parser


def stop_summaries(daemon_log: str) -> list[tuple[str, dict[str, int]]]:
    """Each ``listener SPEC stopped: k=v, ...`` line of the daemon's log: (SPEC, counters)."""
    return [
        (name, {k: int(v) for k, v in (c.split("=") for c in counts.split(", "))})
        for name, counts in re.findall(r"listener (\S+) stopped: (.*?);?$", daemon_log, re.M)
    ]


def print_figures(
    first: dict[str, int], later: list[dict[str, int]], final: dict[str, int]
) -> None:
    """One line per process figure: after the first reload, min and max over ``later``, after
    the last reload, at the end."""
    for key in ("fds", "threads", "rss_kb"):
        values = [f[key] for f in later]
        print(f"  {key:8}: after the 1st reload {first[key]}, min {min(values)}, max {max(values)},"
              f" after the last {later[-1][key]}, at the end {final[key]}")  # fmt: skip


def figures_steady(first: dict[str, int], last: dict[str, int]) -> bool:
    """Reloads leak nothing: after the last one, at most 2 descriptors and 1 thread more than
    after the first (a connection and a reactor thread may be in passing)."""
    return last["fds"] <= first["fds"] + 2 and last["threads"] <= first["threads"] + 1


def proc_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads, "rss_kb": rss}


_GOOD = re.compile(rb"good-([\w.]+)-(\d+)\Z")


def count_good(lines: Any) -> dict[str, collections.Counter[int]]:
    """Per tag, how many times each sequence number arrived."""
    seen: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for line in lines:
        m = _GOOD.search(line.rstrip(b"\r\n"))
        if m:
            seen[m.group(1).decode()][int(m.group(2))] += 1
    return seen


class TcpFlood(threading.Thread):
    """Sends ``good-TAG-i`` lines over TCP as fast as the receiver takes them, reconnecting
    when the connection breaks (a reload). ``written``: lines whose ``sendall`` returned;
    the lines of a ``sendall`` that failed are counted in ``failed`` (never delivered twice:
    they are not resent)."""

    def __init__(self, port: int, tag: str, batch: int = 100, limit: int | None = None) -> None:
        super().__init__(daemon=True, name=f"flood-{tag}")
        self.port, self.tag, self.batch, self.limit = port, tag, batch, limit
        self.stop_event = threading.Event()
        self.written = 0
        self.failed = 0
        self.failed_ranges: list[range] = []  # the lines of each sendall that failed
        self.reconnects = 0

    def run(self) -> None:
        seq = 0
        tag = self.tag.encode()
        while not self.stop_event.is_set() and (self.limit is None or seq < self.limit):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                    s.settimeout(None)  # a stalled receiver blocks us, however long
                    while not self.stop_event.is_set():
                        n = self.batch if self.limit is None else min(self.batch, self.limit - seq)
                        if n <= 0:
                            return
                        chunk = b"".join(
                            b"<13>Nov 24 06:00:00 h app: good-%s-%d\n" % (tag, i)
                            for i in range(seq, seq + n)
                        )
                        try:
                            s.sendall(chunk)
                        except OSError:
                            self.failed += n
                            self.failed_ranges.append(range(seq, seq + n))
                            seq += n
                            raise
                        seq += n
                        self.written = seq - self.failed
            except OSError:
                self.reconnects += 1
                time.sleep(0.02)


class HttpPoster(threading.Thread):
    """Posts one ``good-TAG-i`` message per request on a keep-alive connection, retrying the
    same message on 503 and on connection errors until it is answered 200. Counts answers."""

    def __init__(self, port: int, tag: str, interval: float = 0.01) -> None:
        super().__init__(daemon=True, name=f"http-{tag}")
        self.port, self.tag, self.interval = port, tag, interval
        self.stop_event = threading.Event()
        self.answers: collections.Counter[int | str] = collections.Counter()
        self.accepted: list[int] = []  # numbers of the messages answered 200
        self.unsure: list[int] = []  # requests whose answer never came (connection lost)

    def run(self) -> None:
        seq = 0
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set():
            body = b"<13>Nov 24 06:00:00 h web: good-%s-%d" % (self.tag.encode(), seq)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/", body=body)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.answers[type(e).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                # the request may or may not have been taken: a new number, so that a
                # duplicate cannot hide; it is counted as unsure
                self.unsure.append(seq)
                seq += 1
                time.sleep(0.05)
                continue
            self.answers[resp.status] += 1
            if resp.status == 200:
                self.accepted.append(seq)
                seq += 1
                time.sleep(self.interval)
            else:
                time.sleep(0.05)
        if conn is not None:
            conn.close()


def wait(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def in_failed(flood: TcpFlood, seqs: Any) -> int:
    """How many of ``seqs`` belong to sendalls that failed (partly sent before the break)."""
    return sum(1 for q in seqs if any(q in r for r in flood.failed_ranges))

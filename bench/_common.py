"""What the benchmark scripts share: the machine, medians and ratios, loggen, results files.

Not a package: each script does ``sys.path.insert(0, <bench dir>)`` and ``import _common``.
Importing it also puts the checkout (for ``syslogsrc``) and ``tests/`` (for ``daemons``, whose
:class:`~daemons.Daemon` starts syslog-ng with the right PYTHONPATH) on ``sys.path``.

Every figure a script reports is a ratio against a comparison measured in the same run (the same
round of the same script, minutes apart at most), and the median of at least three such rounds;
:func:`summary` keeps every run so the spread can be shown next to the median.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CHECKOUT = BENCH.parent
RESULTS = CHECKOUT / "build" / "bench"

# bench/http.py would shadow the standard library's http package (twisted.web imports it) in
# every script run as python bench/NAME.py, whose directory Python puts first on sys.path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != str(BENCH)]
for _p in (str(CHECKOUT / "tests"), str(CHECKOUT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

LOGGEN = shutil.which("loggen") or "/usr/bin/loggen"
#: loggen's -r is messages per second *per connection*; this means "as fast as it can"
FULL_RATE = 1_000_000_000


# --------------------------------------------------------------------------------------------
# the machine


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    distro = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            info = dict(
                line.rstrip("\n").split("=", 1) for line in f if "=" in line and line[0] != "#"
            )
        distro = info.get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_mib": mem,
        "os": distro,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "loadavg_at_start": os.getloadavg()[0],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def describe(m: dict[str, object]) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_mib']} MiB, {m['os']}, Linux {m['kernel']},"
        f" {m['python']}; load average {m['loadavg_at_start']:.2f} at start; {m['date']}"
    )


def loadavg() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------------------------
# medians, spreads, ratios


def summary(values: Sequence[float]) -> dict[str, object]:
    """``{"median", "min", "max", "runs"}`` of a list of figures (empty: all None)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "runs": [round(v, 4) for v in vals],
    }


def paired_ratios(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, object]:
    """The ratio ours/theirs of each run (the same round), summarised: each ratio compares two
    figures measured minutes apart on the same machine, so the median of ratios is steadier than
    the ratio of medians when the machine's load drifts."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if a is not None and b]
    return summary(ratios)


def spread(s: dict[str, object]) -> str:
    """``"1.23 (1.10-1.31)"`` for a summary."""
    if s["median"] is None:
        return "n/a"
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def krate(v: float | None) -> str:
    """Messages per second as ``"123k"``."""
    if v is None:
        return "n/a"
    return f"{v / 1000:.0f}k" if v >= 10_000 else f"{v / 1000:.1f}k"


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    """``"hit"`` or ``"miss by 12%"`` against a target."""
    if value is None:
        return "not measured"
    if higher_is_better:
        if value >= target:
            return "hit"
        return f"miss by {100 * (1 - value / target):.0f}%"
    if value <= target:
        return "hit"
    return f"miss by {100 * (value / target - 1):.0f}%"


# --------------------------------------------------------------------------------------------
# results files


def save_results(name: str, data: dict[str, object]) -> Path:
    """Write ``build/bench/<name>.json`` (the latest run of a script; bench/plot.py reads
    them) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def load_results(name: str) -> dict[str, object] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# loggen


@dataclass
class LoggenResult:
    sent: int  #: loggen's own count of messages sent
    seconds: float  #: loggen's own sending time
    rc: int
    output: str

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


_LOGGEN_SUMMARY = re.compile(r"average rate = ([\d.]+) msg/sec, count=(\d+), time=([\d.]+)")
_LOGGEN_TOTAL = re.compile(r"Total runtime = ([\d.]+), count = (\d+)")


def loggen_args(
    port: int,
    *,
    transport: str = "tcp",
    size: int = 300,
    seconds: float = 10,
    connections: int = 1,
    rate: int | None = None,
    rfc5424: bool = False,
    lf_framing: bool = False,
    host: str = "127.0.0.1",
) -> list[str]:
    """loggen's command line: ``transport`` is tcp, udp or tls; ``rate`` is the total
    messages per second over all connections (None: as fast as it can). RFC 5424 goes
    octet-counted (RFC 6587) unless ``lf_framing``."""
    args = [LOGGEN, "-s", str(size), "-I", str(int(seconds))]
    # the ssl plugin replaces the socket plugin's -i -S (loggen accepts one plugin)
    args += {"udp": ["-i", "-D"], "tls": ["-U"]}.get(transport, ["-i", "-S"])
    if rfc5424:
        args.append("-P")
        if lf_framing:
            args.append("-F")
    if connections > 1:
        args.append(f"--active-connections={connections}")
    per_connection = FULL_RATE if rate is None else max(1, rate // connections)
    args += ["-r", str(per_connection), host, str(port)]
    return args


def run_loggen(
    port: int, timeout: float | None = None, prefix: Sequence[str] = (), **kwargs: object
) -> LoggenResult:
    """Run loggen to completion and read its summary line; ``prefix`` runs it through another
    command (``taskset -c 0``)."""
    args = [*prefix, *loggen_args(port, **kwargs)]  # type: ignore[arg-type]
    seconds = float(kwargs.get("seconds", 10))  # type: ignore[arg-type]
    proc = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout or seconds * 3 + 30,
        check=False,
    )
    return parse_loggen(proc.stdout + proc.stderr, proc.returncode)


def parse_loggen(text: str, rc: int = 0) -> LoggenResult:
    m = _LOGGEN_SUMMARY.search(text)
    if m:
        return LoggenResult(int(m.group(2)), float(m.group(3)), rc, text)
    m = _LOGGEN_TOTAL.search(text)
    if m:
        return LoggenResult(int(m.group(2)), float(m.group(1)), rc, text)
    raise RuntimeError(f"cannot read loggen's summary (rc={rc}):\n{text[-2000:]}")


# --------------------------------------------------------------------------------------------
# files, ports, processes


def count_lines(path: Path) -> int:
    """``wc -l``, without reading the file into memory."""
    n = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                n += chunk.count(b"\n")
    except FileNotFoundError:
        return 0
    return n


def wait_stable(
    measure: Callable[[], int], quiet: float = 1.0, timeout: float = 120.0, poll: float = 0.2
) -> int:
    """Poll ``measure()`` until it has not changed for ``quiet`` seconds; return it."""
    return wait_settled(measure, quiet, timeout, poll)[0]


def wait_settled(
    measure: Callable[[], int], quiet: float = 1.0, timeout: float = 120.0, poll: float = 0.2
) -> tuple[int, float]:
    """Like :func:`wait_stable`; also return when (``time.monotonic()``) the value last
    changed."""
    last = measure()
    changed = time.monotonic()
    deadline = changed + timeout
    while time.monotonic() < deadline:
        time.sleep(poll)
        now = measure()
        if now != last:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            break
    return last, changed


def free_port(kind: str = "tcp") -> int:
    from daemons import free_port as _free_port

    return _free_port(kind)


def wait_listening(
    port: int, kind: str = "tcp", pid: int | None = None, timeout: float = 30
) -> None:
    """Wait until something (the process ``pid`` if given) has bound ``port`` on loopback,
    without connecting to it."""
    from _processes import bound_inodes, socket_inodes

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bound = bound_inodes(port, kind)
        if bound and (pid is None or bound & socket_inodes(pid)):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {kind} port {port} after {timeout}s")


def raise_nofile(want: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit (and the hard one, as root) to ``want``;
    return the soft limit now (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Send ``sig`` to a process we started, wait; SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def twistd_command(*args: str) -> list[str]:
    """``twistd -n syslogsrc ARGS`` with this interpreter (the checkout's twisted/plugins is
    found through PYTHONPATH, see :func:`checkout_env`)."""
    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        *args,
    ]


#: the directory whose ``syslogsrc`` the receivers run (``--code``: another checkout, for
#: before/after comparisons); the benchmark scripts themselves always come from this checkout
CODE = CHECKOUT


def checkout_env(**extra: str) -> dict[str, str]:
    """This environment with :data:`CODE` (the checkout) first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def socket_buffers(pid: int, port: int, proto: str = "udp") -> dict[str, int]:
    """``{"rb": bytes}``: the receive buffer the kernel gave ``pid``'s socket on ``port``
    (``ss -m``), to show both sides of a UDP comparison got the same."""
    out = subprocess.run(
        ["ss", "-H", "-n", "-m", "-p", "-u" if proto == "udp" else "-t", "-l", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    m = re.search(r"skmem:\(r\d+,rb(\d+)", out)
    return {"rb": int(m.group(1))} if m else {}


def udp_sockets() -> list[dict[str, Any]]:
    """The kernel's UDP sockets, IPv4 and IPv6 (/proc/net/udp and udp6), one dict each: the
    ``local`` address as the table writes it (``0100007F:0202``), ``inode``, ``rx_queue``
    (bytes waiting) and ``drops``. Empty where the tables cannot be read."""
    rows = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            cols = line.split()
            if len(cols) >= 13:
                rows.append(
                    {
                        "local": cols[1],
                        "inode": cols[9],
                        "rx_queue": int(cols[4].split(":")[1], 16),
                        "drops": int(cols[-1]),
                    }
                )
    return rows


def udp_drops(port: int) -> int | None:
    """The kernel's drop count of the UDP socket bound to ``port`` on 127.0.0.1, or None if
    there is none."""
    local = f"0100007F:{port:04X}"
    for row in udp_sockets():
        if row["local"] == local:
            return row["drops"]
    return None


class DropSampler:
    """Reads :func:`udp_drops` every ``interval`` seconds in a thread, from :meth:`start`:
    when in a run the kernel dropped datagrams (loggen opens with a burst)."""

    def __init__(self, port: int, interval: float = 0.05) -> None:
        import threading

        self.port = port
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, drops)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def start(self) -> DropSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            drops = udp_drops(self.port)
            if drops is not None:
                self.samples.append((time.monotonic() - self._t0, drops))
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, object]:
        """Stop; the drops in all, in the first second and after it."""
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return {}
        base = self.samples[0][1]
        at_1s = next((d for t, d in self.samples if t >= 1.0), self.samples[-1][1])
        total = self.samples[-1][1] - base
        first = at_1s - base
        return {"kernel_drops": total, "drops_first_second": first, "drops_after": total - first}


def connect_many(port: int, count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` idle TCP connections to ``port``."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect((host, port))
        socks.append(s)
    return socks


def header(title: str, m: dict[str, object], note: str = "") -> None:
    print(f"== {title}")
    print(f"machine: {describe(m)}")
    if note:
        print(note)
    sys.stdout.flush()

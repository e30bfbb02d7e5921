"""What the test harnesses of real daemons (syslog-ng in ``daemons.py``, rsyslogd in
``rsyslog.py``) do the same way: an error that carries the process's stderr, stopping a process
(SIGTERM, bounded wait, SIGKILL), and waiting until it has written its pid file and bound its
ports (found through /proc, so a port bound by another process never counts as ready).

No pytest here: ``daemons.py`` is also a command-line tool.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "ProcessError",
    "bound_inodes",
    "kill",
    "pending_ports",
    "pid_file_pending",
    "socket_inodes",
    "tail",
    "terminate",
    "wait_ready",
]


def tail(text: str, lines: int = 200) -> str:
    """The last ``lines`` lines of ``text``, with a line saying how many were cut."""
    parts = text.splitlines()
    if len(parts) <= lines:
        return text
    return "\n".join([f"[... {len(parts) - lines} lines cut ...]", *parts[-lines:]])


class ProcessError(RuntimeError):
    """A process misbehaved; ``stderr`` holds what it printed so far, and the message ends with
    its last 200 lines under the heading ``STDERR_HEADING``."""

    STDERR_HEADING = "stderr"

    def __init__(self, message: str, stderr: str = ""):
        self.stderr = stderr
        if stderr:
            message = f"{message}\n--- {self.STDERR_HEADING} ---\n{tail(stderr)}"
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# stopping


def kill(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` unless it has exited, and reap it."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def terminate(process: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM ``process`` unless it has exited, and wait up to ``timeout`` seconds for it to
    exit: True once it has (its status is in ``process.returncode``), False if it still runs
    (the caller kills it, after looking at why it hangs)."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# start-up


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open (empty once it is gone)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def bound_inodes(port: int, proto: str) -> set[str]:
    """Inodes of sockets bound to ``port``: TCP in LISTEN state, or UDP (state 07)."""
    state = "0A" if proto == "tcp" else "07"
    inodes = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == state:
                        inodes.add(cols[9])
        except OSError:
            continue
    return inodes


def pid_file_pending(pid_file: Path) -> list[str]:
    """``["the pid file"]`` until ``pid_file`` exists with some text in it, then ``[]``."""
    try:
        if pid_file.read_text().strip():
            return []
    except FileNotFoundError:
        pass
    return ["the pid file"]


def pending_ports(pid: int, tcp_ports: Iterable[int], udp_ports: Iterable[int] = ()) -> list[str]:
    """The ports process ``pid`` has not bound yet, e.g. ``["tcp port 5514"]``: a port counts
    as bound once a socket of this process listens on it (TCP) or is bound to it (UDP)."""
    tcp_ports, udp_ports = list(tcp_ports), list(udp_ports)
    mine = socket_inodes(pid) if (tcp_ports or udp_ports) else set()
    pending = [f"tcp port {p}" for p in tcp_ports if not bound_inodes(p, "tcp") & mine]
    pending += [f"udp port {p}" for p in udp_ports if not bound_inodes(p, "udp") & mine]
    return pending


def wait_ready(
    process: subprocess.Popen,
    name: str,
    pending: Callable[[], list[str]],
    timeout: float,
    error: Callable[[str], Exception],
) -> None:
    """Poll ``pending()`` (what the process still has to do, as words) every 50 ms until it is
    empty. Raise ``error(message)`` if the process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise error(f"{name} exited during start-up (rc={process.returncode})")
        waiting = pending()
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise error(f"{name} not ready within {timeout}s; waiting for {', '.join(waiting)}")
        time.sleep(0.05)

"""kill -9 of the syslog-ng holding ``SyslogSource``: RELP loses nothing, plain TCP does.

One daemon runs one ``SyslogSource`` with a RELP listener and a plain TCP listener; its log path
``flags(flow-control)`` leads to a ``network()`` destination with a reliable disk buffer in the
daemon's state dir, and that destination sends to :class:`Receiver`, a TCP server in this
process that records every line and outlives the daemon. Two rsyslogd send numbered messages:
one with ``omrelp`` into the RELP listener, one with ``omfwd`` into the TCP listener (numbers
from :data:`TCP_BASE` up, so one receiver tells the two streams apart).

The loss window is made, not waited for:

1. warm-up: ``N_WARM`` messages each, until the receiver has every one of them;
2. the receiver stops reading (its receive buffer and the destination's send buffer are small),
   so what the daemon accepts from now on backs up in its reliable disk buffer: RELP frames are
   answered once their message is in the buffer, and the test checks that the buffer holds most
   of this batch;
3. ``SIGSTOP`` the daemon, wait until every thread of it is stopped; then more messages each:
   whatever rsyslog writes from now on sits unread in the stopped daemon's socket buffers;
4. ``SIGKILL``, start the daemon again with the same config and state dir (persist file and
   disk buffer: the buffer is replayed), the receiver reads again, a last batch each.

RELP: every number must arrive at least once (an unanswered frame is resent by omrelp after it
reconnects, an answered one is in the disk buffer); duplicates are counted, not failed
(at-least-once). Plain TCP: omfwd counts a message sent once the kernel took it, so every message
impstats shows sent after the SIGSTOP was written into a socket that nobody will read again:
the test asserts that at least one was sent so and that at least one TCP message is missing.
The counts are printed (``pytest -s``) and recorded as user properties.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from daemons import _PATH, RunningDaemon
from integration import PRELUDE, log_path, syslogsrc_source
from rsyslog import (
    RsyslogFactory,
    RunningRsyslog,
    message_number,
    omfwd_tcp,
    omrelp,
    rsyslog,  # noqa: F401 - the fixture
)

from syslogsrc import testing

pytestmark = pytest.mark.daemon

N_WARM = 1000  # per sender, before anything goes wrong
N_BUFFERED = 2000  # RELP only, while the receiver does not read (into the disk buffer)
N_STOPPED = 2000  # per sender, while the daemon is stopped
N_AFTER = 1000  # per sender, after the restart
TCP_BASE = 500_000  # the TCP sender's first number; RELP's is 0
N_RELP = N_WARM + N_BUFFERED + N_STOPPED + N_AFTER
N_TCP = N_WARM + N_STOPPED + N_AFTER


class Receiver:
    """A TCP server on 127.0.0.1 (a thread) counting the number in each line it receives.

    :meth:`pause` stops it reading (connections are neither accepted nor read, so the sender's
    writes fill the kernel's buffers); :meth:`resume` reads again. It keeps running while the
    daemon that sends to it dies and is started again."""

    def __init__(self, rcvbuf: int = 4096) -> None:
        # a small receive buffer (set before listen(), so accepted connections inherit it and
        # the kernel does not grow it) keeps what a paused receiver leaves in the kernel small:
        # the rest of what the daemon accepts waits in its disk buffer
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._server.bind(("127.0.0.1", testing.free_port()))
        self._server.listen(16)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self.numbers: collections.Counter[int] = collections.Counter()
        self.foreign: list[bytes] = []  # lines that are not numbered messages
        # what a connection ended with after its last LF: the daemon killed in the middle of a
        # line (it sends that line again from its disk buffer after the restart)
        self.cut: list[bytes] = []
        self._lock = threading.Lock()
        self._reading = threading.Event()
        self._reading.set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def count(self, numbers: range) -> int:
        """How many of ``numbers`` arrived (at least once)."""
        with self._lock:
            return sum(1 for n in numbers if self.numbers[n])

    def wait(self, numbers: range, timeout: float) -> bool:
        """Wait until each of ``numbers`` arrived; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.count(numbers) < len(numbers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def settle(self, quiet: float = 1.5, timeout: float = 30) -> None:
        """Wait until nothing arrived for ``quiet`` seconds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        last, since = self.total(), time.monotonic()
        while time.monotonic() - since < quiet and time.monotonic() < deadline:
            time.sleep(0.1)
            if (now := self.total()) != last:
                last, since = now, time.monotonic()

    def snapshot(self) -> collections.Counter[int]:
        """A copy of how often each number arrived."""
        with self._lock:
            return collections.Counter(self.numbers)

    def total(self) -> int:
        with self._lock:
            return sum(self.numbers.values())

    def close(self) -> None:
        self._done.set()
        self._thread.join(10)
        self._server.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ)
        pending: dict[socket.socket, bytes] = {}
        try:
            while not self._done.is_set():
                if not self._reading.wait(0.1):
                    continue
                for key, _ in sel.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._server:
                        try:
                            conn, _addr = sock.accept()
                        except BlockingIOError:
                            continue
                        conn.setblocking(False)
                        pending[conn] = b""
                        sel.register(conn, selectors.EVENT_READ)
                        continue
                    try:
                        data = sock.recv(1 << 16)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:  # closed by the daemon (or it died)
                        sel.unregister(sock)
                        sock.close()
                        rest = pending.pop(sock)
                        if rest:  # no LF after it: a line cut short by the kill
                            with self._lock:
                                self.cut.append(rest)
                        continue
                    lines = (pending[sock] + data).split(b"\n")
                    pending[sock] = lines.pop()
                    self._record(b"\n".join(lines))
        finally:
            for sock in pending:
                sock.close()
            sel.close()

    def _record(self, data: bytes) -> None:
        with self._lock:
            for line in data.split(b"\n"):
                if not line:
                    continue
                try:
                    self.numbers[message_number(line.decode(errors="replace"))] += 1
                except AssertionError:
                    self.foreign.append(line)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _config(relp_port: int, tcp_port: int, receiver_port: int) -> str:
    listen = f"relp:{relp_port}:interface=127.0.0.1 tcp:{tcp_port}:interface=127.0.0.1"
    # reliable(yes): a message is acknowledged (and its RELP frame answered) once it is in the
    # file, which a restarted daemon with the same persist file replays
    return (
        PRELUDE
        + syslogsrc_source("s", listen)
        + f'destination d {{ network("127.0.0.1" port({receiver_port}) transport("tcp")'
        " so-sndbuf(4096)"
        ' disk-buffer(reliable(yes) dir("@STATE@") disk-buf-size(67108864)'
        " mem-buf-size(1048576))); };\n" + log_path(["s"], ["d"], "flow-control")
    )


def _daemon_env(daemon: RunningDaemon) -> dict[str, str]:
    """The environment to start ``daemon``'s argv with again: the chroot tool's own (it passes
    the daemon's through ``env -i`` in argv), or the host daemon's as it runs now."""
    if daemon.daemon.root is not None:
        return {"PATH": _PATH, "SYSLOGSRC_CHROOT": str(daemon.daemon.root)}
    raw = Path(f"/proc/{daemon.pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def _stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (state T): none can read a socket any more."""
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        if stat[stat.rindex(")") + 2] not in "tT":
            return False
    return True


def _restart(syslog_ng, old: RunningDaemon, env: dict[str, str], ports: list[int]) -> RunningDaemon:
    """Start the killed ``old`` again: the same argv, config, persist file and state dir (so its
    disk buffer is replayed); registered with the fixture, which stops it at teardown."""
    old._closed = True  # its state dir now belongs to the new process
    (old.state_dir / "syslog-ng.pid").unlink(missing_ok=True)
    with open(old.state_dir / "syslog-ng.stderr", "ab") as err:
        err.write(b"\n--- killed with SIGKILL; started again ---\n")
        err.flush()
        proc = subprocess.Popen(
            old.process.args,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    new = RunningDaemon(
        daemon=old.daemon,
        process=proc,
        state_dir=old.state_dir,
        config_path=old.config_path,
        workdir=old.workdir,
        link=old.link,
    )
    syslog_ng.started.append(new)
    new._wait_ready(ports, [], 30)
    return new


def _queued(daemon: RunningDaemon) -> int:
    """Messages waiting in the destination's queue (its disk buffer), by syslog-ng-ctl stats."""
    for line in daemon.ctl("stats").splitlines():
        if line.startswith("dst.network;") and line.rsplit(";", 2)[-2] == "queued":
            return int(line.rsplit(";", 1)[-1])
    raise AssertionError("syslog-ng-ctl stats shows no queued counter of the destination")


def _sent(sender: RunningRsyslog) -> int:
    """Messages the sender's action handed on without a failure, by its latest impstats."""
    out = sender.stats().get("out", {})
    return out.get("processed", 0) - out.get("failed", 0)


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_kill_9_relp_loses_nothing_tcp_does(
    syslog_ng,
    rsyslog: RsyslogFactory,  # noqa: F811
    receiver: Receiver,
    record_property,
) -> None:
    relp_port, tcp_port = testing.free_port(), testing.free_port()
    ports = [relp_port, tcp_port]
    d = syslog_ng(_config(relp_port, tcp_port, receiver.port), wait_ports=ports)
    env = _daemon_env(d)
    relp = rsyslog.start(omrelp(relp_port))
    tcp = rsyslog.start(omfwd_tcp(tcp_port))

    # 1. warm-up: both connections open, nothing in flight
    relp.inject(N_WARM)
    tcp.inject(N_WARM, start=TCP_BASE)
    assert receiver.wait(range(N_WARM), 30), "warm-up over RELP did not arrive"
    assert receiver.wait(range(TCP_BASE, TCP_BASE + N_WARM), 30), "warm-up over TCP"
    tcp.wait_sent(N_WARM, timeout=10)

    # 2. the destination backs up into the disk buffer
    receiver.pause()
    relp.inject(N_BUFFERED, start=N_WARM)
    _wait_for(lambda: _sent(relp) >= N_WARM + N_BUFFERED, 20)  # checked by the queue below
    # omrelp keeps at most a window (128) of frames unanswered, so most of these were answered
    # and are in the disk buffer: the restarted daemon must replay them
    assert _wait_for(lambda: _queued(d) > N_BUFFERED // 2, 10), f"queued: {_queued(d)}"
    queued = _queued(d)

    # 3. the daemon stops reading; both senders write into its socket buffers
    os.kill(d.pid, signal.SIGSTOP)
    try:
        assert _wait_for(lambda: _stopped(d.pid), 10), "syslog-ng did not stop"
        relp.inject(N_STOPPED, start=N_WARM + N_BUFFERED)
        tcp.inject(N_STOPPED, start=TCP_BASE + N_WARM)
        # every message of tcp's beyond N_WARM was injected, hence sent, after the SIGSTOP
        assert _wait_for(lambda: _sent(tcp) > N_WARM, 15), "rsyslog sent nothing over TCP"
        time.sleep(1)  # a moment for omrelp to fill its window
        tcp_sent_while_stopped = _sent(tcp) - N_WARM
    except BaseException:
        os.kill(d.pid, signal.SIGCONT)  # so that the fixture's SIGTERM can stop it
        raise

    # 4. kill -9, the same daemon again, the rest
    os.kill(d.pid, signal.SIGKILL)
    d.process.wait(10)
    d = _restart(syslog_ng, d, env, ports)
    receiver.resume()
    relp.inject(N_AFTER, start=N_WARM + N_BUFFERED + N_STOPPED)
    tcp.inject(N_AFTER, start=TCP_BASE + N_WARM + N_STOPPED)

    relp_all = range(N_RELP)
    tcp_all = range(TCP_BASE, TCP_BASE + N_TCP)
    receiver.wait(relp_all, 60)
    tcp.wait_sent(N_TCP, timeout=30)
    receiver.settle()
    assert d.stop() == 0, d.stderr()[-3000:]

    got = receiver.snapshot()
    missing = [n for n in relp_all if not got[n]]
    relp_duplicates = sum(got[n] - 1 for n in relp_all if got[n] > 1)
    tcp_missing = sum(1 for n in tcp_all if not got[n])
    tcp_duplicates = sum(got[n] - 1 for n in tcp_all if got[n] > 1)
    figures = {
        "daemon": syslog_ng.name,
        "queued_in_disk_buffer": queued,
        "relp_sent": N_RELP,
        "relp_missing": len(missing),
        "relp_duplicates": relp_duplicates,
        "tcp_sent": N_TCP,
        "tcp_sent_while_stopped": tcp_sent_while_stopped,
        "tcp_missing": tcp_missing,
        "tcp_duplicates": tcp_duplicates,
    }
    for key, value in figures.items():
        record_property(key, value)
    print(f"\nrelp-kill {figures}")

    assert not receiver.foreign, receiver.foreign[:3]
    # at most the line the kill cut in the middle (its message counted whole when resent)
    assert len(receiver.cut) <= 1 and all(c.startswith(b"<") for c in receiver.cut), receiver.cut
    assert not missing, f"RELP lost {len(missing)} of {N_RELP}, e.g. {missing[:10]}"
    assert tcp_missing >= 1, figures

"""The real rsyslog as a test client: Debian's rsyslogd, unpacked next to syslog-ng.

rsyslog cannot be installed on a machine with syslog-ng (the packages conflict), so
``tests/tools/rsyslog-unpacked setup`` unpacks its .debs into ``$SYSLOGSRC_RSYSLOG`` (default
``/var/cache/syslogsrc-tests/rsyslog``) and installs only its libraries. Each instance here runs
that rsyslogd in the foreground (``-n``) with its own work dir below the test's tmp_path (config,
pid file, queue files, stats, captured stderr), no imuxsock and no imklog, and its own messages
kept in its work dir (``processInternalMessages``), so it never touches the system's log.

A sender reads numbered messages from the test over an ``imptcp`` input on a free loopback port
and hands them to one action, named ``out``, made by a helper of this module::

    def test_x(rsyslog):                                    # the fixture below
        sender = rsyslog.start(omfwd_tcp(port, framing="octet-counted"))
        sender.inject(1000)                                 # "<14>1 ... rshost rsapp 4242 - - ..."
        sender.wait_sent(1000)                              # impstats: all of them processed
        assert sender.stop() == 0

- actions: :func:`omfwd_tcp` (LF or octet-counted), :func:`omfwd_udp`, :func:`omfwd_tls`
  (``StreamDriver="gtls"``), :func:`omrelp` (plain and TLS, ``windowSize``, ``timeout``);
- the receiving end, for checking the fixture itself: :func:`imrelp_input` into
  :func:`omfile_lines` with :meth:`RsyslogFactory.start_config`;
- :func:`message_number` and :func:`assert_each_once` for the numbered messages.

Every action retries for as long as the instance runs (``action.resumeRetryCount="-1"``): a
receiver that is slow to listen delays messages instead of losing them, and shutdown gives the
queues 10 s to drain. Every wait is bounded; a timeout raises :class:`RsyslogError` with
rsyslogd's stderr and its own log. Without the unpacked rsyslog the fixture skips, or fails with
``SYSLOGSRC_REQUIRE_SYSLOG_NG=1`` (as the syslog-ng daemons do).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _processes import ProcessError, kill, pending_ports, pid_file_pending, terminate, wait_ready
from certs import Certs

from syslogsrc.testing import free_port

__all__ = [
    "DEFAULT_DIR",
    "HOST",
    "LINE_TEMPLATE",
    "PID",
    "PROGRAM",
    "RFC3164",
    "RFC5424",
    "Rsyslog",
    "RsyslogError",
    "RsyslogFactory",
    "RunningRsyslog",
    "assert_each_once",
    "imrelp_input",
    "message_line",
    "message_number",
    "omfile_lines",
    "omfwd_tcp",
    "omfwd_tls",
    "omfwd_udp",
    "omrelp",
    "parse_line",
    "probe_rsyslog",
    "require_rsyslog",
    "rsyslog",
    "rsyslog_dir",
]

DEFAULT_DIR = "/var/cache/syslogsrc-tests/rsyslog"
STAMP = ".syslogsrc-rsyslog"  # written by rsyslog-unpacked setup when it is complete

#: rsyslog's RFC 5424 template: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``
RFC5424 = "RSYSLOG_SyslogProtocol23Format"
#: omfwd's default: ``<PRI>TIMESTAMP HOSTNAME TAG MSG`` (RFC 3164, BSD stamp; the TAG as rsyslog
#: received it, or ``APP-NAME[PROCID]`` without a colon for a message received in RFC 5424)
RFC3164 = "RSYSLOG_TraditionalForwardFormat"

#: what :meth:`RunningRsyslog.inject` puts in the header of every message it injects
HOST, PROGRAM, PID = "rshost", "rsapp", "4242"
_TEXT = "rsyslog message"
_NUMBER = re.compile(rf"{_TEXT} (\d+)$")


class RsyslogError(ProcessError):
    """rsyslogd misbehaved; ``stderr`` holds what it printed and logged so far."""

    STDERR_HEADING = "rsyslogd stderr and log"


# ---------------------------------------------------------------------------------------------
# the unpacked rsyslog


@dataclass(frozen=True)
class Rsyslog:
    """The rsyslog that ``rsyslog-unpacked setup`` unpacked into ``root``."""

    root: Path
    version: str  # "8.2302.0"
    moddir: Path  # its modules (rsyslogd -M)

    @property
    def rsyslogd(self) -> Path:
        return self.root / "usr/sbin/rsyslogd"

    def check_config(self, config_text: str, workdir: Path) -> str:
        """``rsyslogd -N1``: raise RsyslogError unless rsyslogd accepts ``config_text``; return
        what it printed."""
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "check.conf"
        path.write_text(config_text)
        proc = subprocess.run(
            [str(self.rsyslogd), "-M", str(self.moddir), "-N1", "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise RsyslogError(f"rsyslogd -N1 rejected {path}", proc.stdout + proc.stderr)
        return proc.stdout + proc.stderr


def rsyslog_dir() -> Path:
    """Where the unpacked rsyslog lives: ``$SYSLOGSRC_RSYSLOG`` or the default."""
    return Path(os.environ.get("SYSLOGSRC_RSYSLOG") or DEFAULT_DIR)


@functools.cache
def probe_rsyslog() -> Rsyslog | str:
    """The unpacked rsyslog, or why there is none."""
    root = rsyslog_dir()
    stamp = root / STAMP
    hint = f"run `tests/tools/rsyslog-unpacked setup {root}` as root"
    if not stamp.is_file() or not os.access(root / "usr/sbin/rsyslogd", os.X_OK):
        return f"no unpacked rsyslog at {root}: {hint}"
    info = dict(line.split("=", 1) for line in stamp.read_text().splitlines() if "=" in line)
    if "rsyslog" not in info or "moddir" not in info:
        return f"unreadable {stamp}: {hint}"
    moddir = root / info["moddir"]
    if not (moddir / "lmnet.so").is_file():
        return f"no rsyslog modules in {moddir}: {hint}"
    return Rsyslog(root=root, version=info["rsyslog"], moddir=moddir)


def _require_daemons() -> bool:
    return os.environ.get("SYSLOGSRC_REQUIRE_SYSLOG_NG", "") not in ("", "0")


def require_rsyslog() -> Rsyslog:
    """The unpacked rsyslog; else skip the test (fail it with SYSLOGSRC_REQUIRE_SYSLOG_NG=1)."""
    found = probe_rsyslog()
    if isinstance(found, Rsyslog):
        return found
    if _require_daemons():
        pytest.fail(f"SYSLOGSRC_REQUIRE_SYSLOG_NG is set but: {found}")
    pytest.skip(found)


# ---------------------------------------------------------------------------------------------
# configuration pieces


def _q(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _statement(kind: str, params: dict[str, object]) -> str:
    """``KIND(key="value" ...)`` with rsyslog's own parameter names; None leaves one out."""
    body = " ".join(f"{key}={_q(value)}" for key, value in params.items() if value is not None)
    return f"{kind}({body})\n"


def _action(module: str, name: str, params: dict[str, object]) -> str:
    """An action of ``module`` that retries for as long as rsyslogd runs (a receiver slow to
    listen delays messages instead of losing them), once a second."""
    return _statement(
        "action",
        {
            "type": module,
            "name": name,
            **params,
            "action.resumeRetryCount": "-1",
            "action.resumeInterval": "1",
        },
    )


def _omfwd_stream(port: int, framing: str, template: str, target: str) -> dict[str, object]:
    if framing not in ("traditional", "octet-counted"):
        raise ValueError(f"framing must be 'traditional' or 'octet-counted', not {framing!r}")
    return {
        "target": target,
        "port": port,
        "protocol": "tcp",
        "TCP_Framing": framing,
        "template": template,
    }


def omfwd_tcp(
    port: int,
    *,
    framing: str = "traditional",
    template: str = RFC3164,
    target: str = "127.0.0.1",
    name: str = "out",
) -> str:
    """omfwd over TCP; ``framing`` "traditional" (LF after each message) or "octet-counted"
    (RFC 6587 ``LEN SP MSG``)."""
    return _action("omfwd", name, _omfwd_stream(port, framing, template, target))


def omfwd_udp(
    port: int,
    *,
    template: str = RFC3164,
    target: str = "127.0.0.1",
    send_delay_us: int = 100,
    name: str = "out",
) -> str:
    """omfwd over UDP, one datagram per message, ``send_delay_us`` microseconds apart
    (``udp.sendDelay``; 0: none): a burst on loopback overflows the receiver's socket buffer,
    and the kernel drops what does not fit."""
    params = {"target": target, "port": port, "protocol": "udp", "template": template}
    return _action("omfwd", name, {**params, "udp.sendDelay": send_delay_us or None})


def omfwd_tls(
    port: int,
    certs: Certs,
    *,
    framing: str = "traditional",
    template: str = RFC3164,
    target: str = "127.0.0.1",
    permitted_peer: str = "localhost",
    client_certificate: bool = True,
    name: str = "out",
) -> str:
    """omfwd over TLS (``StreamDriver="gtls"``, GnuTLS): the server's certificate must come from
    ``certs.ca`` and name ``permitted_peer``; rsyslog presents ``certs.client_cert`` unless
    ``client_certificate`` is false."""
    params = {
        **_omfwd_stream(port, framing, template, target),
        "StreamDriver": "gtls",
        "StreamDriverMode": "1",
        "StreamDriverAuthMode": "x509/name",
        "StreamDriverPermittedPeers": permitted_peer,
        "StreamDriver.CAFile": certs.ca,
    }
    if client_certificate:
        params["StreamDriver.CertFile"] = certs.client_cert
        params["StreamDriver.KeyFile"] = certs.client_key
    return _action("omfwd", name, params)


def _relp_tls(ca: Path, cert: Path, key: Path, permitted_peer: str) -> dict[str, object]:
    return {
        "tls": "on",
        "tls.caCert": ca,
        "tls.myCert": cert,
        "tls.myPrivKey": key,
        "tls.authMode": "name",
        "tls.permittedPeer": permitted_peer,
    }


def omrelp(
    port: int,
    *,
    tls: Certs | None = None,
    window_size: int | None = None,
    timeout: int | None = None,
    template: str = RFC5424,
    target: str = "127.0.0.1",
    permitted_peer: str = "localhost",
    name: str = "out",
) -> str:
    """omrelp (RELP), plain or, with ``tls``, TLS with ``tls.client_cert`` as rsyslog's
    certificate and the server's checked against ``tls.ca`` and ``permitted_peer``.
    ``window_size``: frames in flight without a response (librelp's default 128); ``timeout``:
    seconds to wait for a response before the session is broken off (default 90).

    rsyslog 8.2302 (librelp 1.11) to its own imrelp on loopback: each full window waits ~0.2 s
    for its responses (a delayed TCP ACK), so a window of 4 moves ~20 messages a second, 32
    ~150, 128 ~700: size a test's count and timeouts by that. Needs ``module(load="omrelp")``,
    which :meth:`RsyslogFactory.start` adds."""
    params: dict[str, object] = {
        "target": target,
        "port": port,
        "template": template,
        "windowSize": window_size,
        "timeout": timeout,
    }
    if tls is not None:
        params.update(_relp_tls(tls.ca, tls.client_cert, tls.client_key, permitted_peer))
    return _action("omrelp", name, params)


def imrelp_input(
    port: int, *, tls: Certs | None = None, permitted_peer: str = "client", ruleset: str = "store"
) -> str:
    """An imrelp listener on 127.0.0.1:``port`` (a second rsyslogd as the RELP receiver); with
    ``tls`` it presents ``tls.server_cert`` and requires a client certificate from ``tls.ca``
    naming ``permitted_peer``. Needs ``module(load="imrelp")``, which
    :meth:`RsyslogFactory.start_config` adds."""
    params: dict[str, object] = {
        "type": "imrelp",
        "port": port,
        "address": "127.0.0.1",
        "ruleset": ruleset,
    }
    if tls is not None:
        params.update(_relp_tls(tls.ca, tls.server_cert, tls.server_key, permitted_peer))
    return _statement("input", params)


#: the fields :func:`omfile_lines` writes, one line per message, split by :func:`parse_line`
LINE_TEMPLATE = "%hostname%\\t%app-name%\\t%procid%\\t%msg:::drop-last-lf%\\n"


def omfile_lines(path: Path, *, ruleset: str = "store") -> str:
    """A ruleset ``ruleset`` writing HOST, PROGRAM, PID and MESSAGE of each message to
    ``path``, tab-separated, one line each (read them with :func:`parse_line`)."""
    return (
        f'template(name="fields" type="string" string="{LINE_TEMPLATE}")\n'
        f"ruleset(name={_q(ruleset)}) {{\n"
        f'  action(type="omfile" name="store" file={_q(path)} template="fields")\n'
        "}\n"
    )


def parse_line(line: str) -> dict[str, str]:
    """A line of :func:`omfile_lines` as HOST, PROGRAM, PID and MESSAGE."""
    host, program, pid, message = line.split("\t", 3)
    return {"HOST": host, "PROGRAM": program, "PID": pid, "MESSAGE": message.lstrip(" ")}


# ---------------------------------------------------------------------------------------------
# the numbered messages


def message_line(number: int, syntax: str = "rfc5424") -> bytes:
    """Message number ``number`` as :meth:`RunningRsyslog.inject` sends it, in ``syntax``:

    - "rfc5424": ``<14>1 2026-12-02T10:00:00.000001Z rshost rsapp 4242 - - rsyslog message N``;
      forwarded in RFC 3164 it gets the TAG ``rsapp[4242]`` with no colon (rsyslog builds it
      from APP-NAME and PROCID);
    - "rfc3164": ``<14>Dec  2 10:00:00 rshost rsapp[4242]: rsyslog message N``, what a local
      program hands rsyslog; rsyslog keeps its TAG as it is, and the space after the TAG stays
      at the start of MSG (forwarded in RFC 5424: ``- -  rsyslog message N``, two spaces).

    The fixed stamps keep what rsyslog forwards independent of the calendar (RFC 3164's has no
    year: forward those in RFC 3164 only, where rsyslog leaves the year out again)."""
    if syntax == "rfc5424":
        text = f"<14>1 2026-12-02T10:00:00.000001Z {HOST} {PROGRAM} {PID} - - {_TEXT} {number:06d}"
    elif syntax == "rfc3164":
        text = f"<14>Dec  2 10:00:00 {HOST} {PROGRAM}[{PID}]: {_TEXT} {number:06d}"
    else:
        raise ValueError(f"syntax must be 'rfc5424' or 'rfc3164', not {syntax!r}")
    return text.encode()


def message_number(text: str) -> int:
    """The number in the text of an injected message (whatever rsyslog's template put before
    it); AssertionError if it is none of ours."""
    m = _NUMBER.search(text.rstrip("\n"))
    assert m, f"not an injected message: {text[:120]!r}"
    return int(m.group(1))


def assert_each_once(texts: Iterable[str], count: int) -> None:
    """Every injected message 0..count-1 is among ``texts`` exactly once, and nothing else."""
    numbers = collections.Counter(message_number(t) for t in texts)
    doubled = {n: c for n, c in numbers.items() if c > 1}
    assert not doubled, f"{len(doubled)} doubled, e.g. {sorted(doubled.items())[:5]}"
    missing = sorted(set(range(count)) - set(numbers))
    assert not missing, f"{len(missing)} of {count} missing, e.g. {missing[:5]}"
    extra = sorted(set(numbers) - set(range(count)))
    assert not extra, f"unexpected numbers {extra[:5]}"


# ---------------------------------------------------------------------------------------------
# running rsyslogd


@dataclass(eq=False)
class RunningRsyslog:
    """A started rsyslogd. Stop it with :meth:`stop`; the fixture stops what is left."""

    rsyslog: Rsyslog
    process: subprocess.Popen
    workdir: Path
    input_port: int | None  # the imptcp port :meth:`inject` writes to (None: no such input)
    _stats_offset: int = field(default=0, repr=False)
    _stats: dict[str, dict] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def config_path(self) -> Path:
        return self.workdir / "rsyslog.conf"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        """What rsyslogd printed, then what it logged about itself (its internal messages)."""
        parts = []
        for name in ("rsyslogd.stderr", "rsyslogd.log"):
            try:
                parts.append((self.workdir / name).read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(parts)

    # -- feeding it

    def inject(self, count: int, *, start: int = 0, syntax: str = "rfc5424") -> None:
        """Send messages ``start`` .. ``start + count - 1`` (:func:`message_line` in
        ``syntax``) to the imptcp input, one LF-terminated line each, over one connection
        closed at the end."""
        if self.input_port is None:
            raise RsyslogError("this rsyslogd has no input to inject into")
        data = b"".join(message_line(n, syntax) + b"\n" for n in range(start, start + count))
        with socket.create_connection(("127.0.0.1", self.input_port), timeout=10) as s:
            s.sendall(data)

    # -- impstats

    def stats(self) -> dict[str, dict]:
        """The latest impstats counters of every object (e.g. ``"out"``, the action; ``"main
        Q"``, the main queue; ``"imptcp(127.0.0.1:PORT)"``), by name. impstats writes them once
        a second."""
        path = self.workdir / "stats.json"
        try:
            with open(path, "rb") as f:
                f.seek(self._stats_offset)
                data = f.read()
        except FileNotFoundError:
            return dict(self._stats)
        end = data.rfind(b"\n") + 1
        self._stats_offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            # "Wed Dec  2 13:36:08 2026: { "name": "out", "origin": "core.action", ... }"
            brace = line.find("{")
            if brace < 0:
                continue
            try:
                record = json.loads(line[brace:])
            except ValueError:
                continue
            if isinstance(record, dict) and "name" in record:
                self._stats[record["name"]] = record
        return dict(self._stats)

    def wait_sent(self, count: int, *, action: str = "out", timeout: float = 60) -> dict:
        """Wait until action ``action`` has processed ``count`` messages without a failure
        outstanding and the main queue is empty (impstats); return the action's counters.

        "Processed" counts messages handed to the output module, and the main queue empties
        once the module has finished the batch (omfwd: written to its socket; omrelp: in
        librelp's window, responses maybe still to come). What the receiver got is for the
        test to count."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            counters = stats.get(action, {})
            queue = stats.get("main Q", {})
            done = counters.get("processed", 0) - counters.get("failed", 0)
            if done >= count and queue.get("size", 1) == 0:
                return counters
            if not self.alive():
                raise RsyslogError(
                    f"rsyslogd exited (rc={self.process.returncode}) before it sent {count}",
                    self.stderr(),
                )
            if time.monotonic() > deadline:
                raise RsyslogError(
                    f"rsyslogd did not send {count} within {timeout}s: {action}={counters}, "
                    f"main Q={queue}",
                    self.stderr(),
                )
            time.sleep(0.1)

    # -- stopping

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait for rsyslogd's exit status. It stops its inputs, gives its queues
        10 s (``queue.timeoutShutdown``) to drain, closes its connections and exits 0. After
        ``timeout``: SIGKILL and RsyslogError."""
        if not terminate(self.process, timeout):
            self._kill()
            raise RsyslogError(
                f"rsyslogd (pid {self.pid}) did not stop within {timeout}s; killed",
                self.stderr(),
            )
        return self.process.returncode

    def _kill(self) -> None:
        kill(self.process)

    def _wait_ready(self, tcp_ports: Iterable[int], timeout: float) -> None:
        pid_file = self.workdir / "rsyslogd.pid"
        ports = list(tcp_ports)
        wait_ready(
            self.process,
            "rsyslogd",
            lambda: pid_file_pending(pid_file) + pending_ports(self.pid, ports),
            timeout,
            lambda message: RsyslogError(message, self.stderr()),
        )


class RsyslogFactory:
    """Starts rsyslogd instances, each in its own work dir below ``workdir``; :meth:`close`
    stops them all (the ``rsyslog`` fixture calls it). ``rsyslog`` defaults to the unpacked
    one (:func:`require_rsyslog`: the test skips, or fails, without it)."""

    def __init__(self, workdir: Path, rsyslog: Rsyslog | None = None) -> None:
        self.workdir = Path(workdir)
        self.rsyslog = rsyslog if rsyslog is not None else require_rsyslog()
        self.started: list[RunningRsyslog] = []

    def _new_workdir(self) -> Path:
        n = 0
        while (self.workdir / f"rsyslog-{n}").exists():
            n += 1
        path = self.workdir / f"rsyslog-{n}"
        path.mkdir(parents=True)
        return path

    @staticmethod
    def _prelude(workdir: Path, modules: Iterable[str]) -> str:
        # processInternalMessages: rsyslog's own messages go through this config (into
        # rsyslogd.log by the default ruleset) instead of to the system's log socket;
        # abortOnUncleanConfig: a config error ends start-up with the error on stderr, instead
        # of an rsyslogd that runs without the statement it did not understand
        loads = "".join(f"module(load={_q(m)})\n" for m in modules)
        return (
            f"global(workDirectory={_q(workdir)} localHostname={_q('rsyslog-test')}"
            ' processInternalMessages="on" net.enableDNS="off" abortOnUncleanConfig="on")\n'
            'main_queue(queue.timeoutShutdown="10000")\n'
            f'module(load="impstats" interval="1" format="json" log.syslog="off"'
            f" log.file={_q(workdir / 'stats.json')})\n"
            f"{loads}"
            f'action(type="omfile" file={_q(workdir / "rsyslogd.log")})\n'
        )

    def start(self, action: str, *, timeout: float = 20) -> RunningRsyslog:
        """A sender: an imptcp input on a free loopback port (:meth:`RunningRsyslog.inject`)
        whose messages go to ``action`` (one of this module's helpers, or several of them)."""
        workdir = self._new_workdir()
        port = free_port()
        modules = ["imptcp"] + (["omrelp"] if 'type="omrelp"' in action else [])
        config = (
            self._prelude(workdir, modules)
            + f'input(type="imptcp" port="{port}" address="127.0.0.1" ruleset="send")\n'
            + 'ruleset(name="send") {\n'
            + action
            + "}\n"
        )
        return self._spawn(workdir, config, [port], port, timeout)

    def start_config(
        self, body: str, *, wait_ports: Iterable[int] = (), timeout: float = 20
    ) -> RunningRsyslog:
        """Any other rsyslogd (a receiver): ``body`` after the common prelude (work dir,
        impstats, rsyslog's own log), with imrelp loaded when ``body`` uses it; ready once it
        has bound each of ``wait_ports`` (TCP)."""
        workdir = self._new_workdir()
        modules = ["imrelp"] if 'type="imrelp"' in body else []
        config = self._prelude(workdir, modules) + body
        return self._spawn(workdir, config, list(wait_ports), None, timeout)

    def _spawn(
        self,
        workdir: Path,
        config: str,
        ports: list[int],
        input_port: int | None,
        timeout: float,
    ) -> RunningRsyslog:
        config_path = workdir / "rsyslog.conf"
        config_path.write_text(config)
        argv = [
            str(self.rsyslog.rsyslogd),
            "-n",
            "-M",
            str(self.rsyslog.moddir),
            "-f",
            str(config_path),
            "-i",
            str(workdir / "rsyslogd.pid"),
        ]
        with open(workdir / "rsyslogd.stderr", "wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                # TZ: stamps rsyslog renders or assumes (RFC 3164 has no offset) are UTC,
                # whatever the machine's zone
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"},
                start_new_session=True,  # ^C in the test runner goes to pytest, not rsyslogd
            )
        running = RunningRsyslog(self.rsyslog, proc, workdir, input_port)
        try:
            running._wait_ready(ports, timeout)
        except BaseException:
            running._kill()
            raise
        self.started.append(running)
        return running

    def close(self) -> list[str]:
        """Stop every instance still running; the errors, one string each."""
        errors = []
        for running in self.started:
            try:
                rc = running.stop()
            except RsyslogError as e:
                errors.append(str(e))
                continue
            if rc != 0:
                errors.append(
                    str(RsyslogError(f"rsyslogd (pid {running.pid}) exited {rc}", running.stderr()))
                )
        return errors


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[RsyslogFactory]:
    """A factory of rsyslogd instances (the unpacked rsyslog; skip without it, fail with
    SYSLOGSRC_REQUIRE_SYSLOG_NG=1), stopped at teardown: one that does not stop cleanly fails
    the test, with its stderr."""
    factory = RsyslogFactory(tmp_path / "rsyslog", require_rsyslog())
    yield factory
    errors = factory.close()
    if errors:
        pytest.fail("\n\n".join(errors))

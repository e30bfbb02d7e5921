"""The syslog_ng fixture itself, against every real daemon on this machine."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest
from daemons import DaemonError, DaemonStartError, available_daemons, free_port

NETWORK_TO_FILE = """
source s_net { network(transport(TRANSPORT) ip(127.0.0.1) port(PORT)); };
destination d_file { file("@STATE@/OUTFILE" template("$MSG\\n")); };
log { source(s_net); destination(d_file); };
"""

# Imports the runtime dependencies inside the daemon's embedded Python, exercises their C
# extensions, runs a private Twisted reactor the way syslogsrc does (installSignalHandlers=False,
# stopped from request_exit), and posts one line saying where everything came from.
DEPS_PROBE = """
python {
import builtins
import sys
import threading

import attr
import OpenSSL
import twisted
import zope.interface
from cryptography.hazmat.backends.openssl.backend import backend as _crypto_backend
from twisted.internet.epollreactor import EPollReactor
from zope.interface import _zope_interface_coptimizations  # the C extension must load

from syslogng import LogMessage, LogSource


class DepsProbe(LogSource):
    def init(self, options):
        self.exiting = threading.Event()
        self.reactor = None
        return True

    def run(self):
        builtins._deps_probe_runs = getattr(builtins, "_deps_probe_runs", 0) + 1
        ctx = OpenSSL.SSL.Context(OpenSSL.SSL.TLS_METHOD)
        assert ctx is not None
        self.reactor = EPollReactor()
        self.reactor.callLater(0, self.report)
        if self.exiting.is_set():
            return
        self.reactor.run(installSignalHandlers=False)

    def report(self):
        fields = {
            "python": "%d.%d" % sys.version_info[:2],
            "run": builtins._deps_probe_runs,
            "twisted": twisted.__version__,
            "twisted_file": twisted.__file__,
            "pyopenssl": OpenSSL.__version__,
            "openssl": _crypto_backend.openssl_version_text().replace(" ", "_"),
            "zope_c": _zope_interface_coptimizations.__name__,
            "attrs": attr.__version__,
        }
        self.post_message(
            LogMessage("deps-ok " + " ".join("%s=%s" % kv for kv in fields.items()))
        )

    def request_exit(self):
        self.exiting.set()
        if self.reactor is not None:
            self.reactor.callFromThread(self.reactor.stop)
};
source s_py { python(class(DepsProbe)); };
destination d_deps { file("@STATE@/deps.log" template("$MSG\\n")); };
log { source(s_py); destination(d_deps); };
"""


def network_config(port: int, transport: str = "tcp", outfile: str = "out.log") -> str:
    return (
        NETWORK_TO_FILE.replace("TRANSPORT", transport)
        .replace("PORT", str(port))
        .replace("OUTFILE", outfile)
    )


def wait_for_lines(path: Path, needle: str, count: int = 1, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        hits = [line for line in lines if needle in line]
        if len(hits) >= count:
            return hits
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} x {needle!r} not in {path} after {timeout}s: {lines}")
        time.sleep(0.05)


def send_tcp(port: int, line: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line.encode() + b"\n")


def syslog_line(text: str) -> str:
    return f"<13>Nov 24 06:00:00 testhost prog[1]: {text}"


def test_available_daemons_describe_themselves():
    for d in available_daemons():
        kind = "chroot" if d.root else "host"
        assert d.name == f"{kind}-{d.version[0]}.{d.version[1]}"
        assert d.full_version.startswith(f"{d.version[0]}.{d.version[1]}")
        assert d.python_version.startswith("3.")


def test_free_port_does_not_repeat():
    ports = {free_port(), free_port("udp"), free_port("both"), free_port()}
    assert len(ports) == 4
    assert all(20000 <= p < 32768 for p in ports)


def test_tcp_line_reaches_file(syslog_ng):
    port = free_port()
    d = syslog_ng(network_config(port), wait_ports=[port])
    token = uuid.uuid4().hex
    send_tcp(port, syslog_line(f"hello {token}"))
    assert wait_for_lines(d.state_dir / "out.log", token) == [f"hello {token}"]
    assert d.fds() > 3
    assert d.threads() >= 1
    assert d.stop() == 0


def test_udp_readiness_and_delivery(syslog_ng):
    port = free_port("udp")
    d = syslog_ng(network_config(port, "udp"), wait_ports=[("udp", port)])
    token = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(syslog_line(token).encode(), ("127.0.0.1", port))
    wait_for_lines(d.state_dir / "out.log", token)
    assert d.stop() == 0


def test_python_source_imports_runtime_deps(syslog_ng):
    d = syslog_ng(DEPS_PROBE)
    (line,) = wait_for_lines(d.state_dir / "deps.log", "deps-ok")
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    assert fields["python"] == syslog_ng.daemon.python_version
    # the deps come from the daemon's deps dir, not from a distribution package
    deps_dir = "/opt/deps" if syslog_ng.daemon.root else str(syslog_ng.daemon.deps_dir())
    assert fields["twisted_file"].startswith(deps_dir + "/"), fields
    assert fields["openssl"].startswith("OpenSSL"), fields
    # run() ends on request_exit: stop would otherwise hang and raise
    assert d.stop() == 0
    assert "Exception" not in d.stderr(), d.stderr()


def test_reload_restarts_python_source_and_keeps_listening(syslog_ng):
    port = free_port()
    d = syslog_ng(DEPS_PROBE + network_config(port), wait_ports=[port])
    wait_for_lines(d.state_dir / "deps.log", "deps-ok")
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    send_tcp(port, syslog_line(first))
    wait_for_lines(d.state_dir / "out.log", first)

    d.reload()
    assert d.alive()
    # the python source was asked to exit and run() started again (in the same interpreter)
    (line,) = wait_for_lines(d.state_dir / "deps.log", "run=2")
    assert "deps-ok" in line
    send_tcp(port, syslog_line(second))
    wait_for_lines(d.state_dir / "out.log", second)
    assert d.stop() == 0


def test_reload_with_changed_config(syslog_ng):
    port = free_port()
    d = syslog_ng(network_config(port), wait_ports=[port])
    d.config_path.write_text(d.config_path.read_text().replace("out.log", "changed.log"))
    d.reload()
    token = uuid.uuid4().hex
    send_tcp(port, syslog_line(token))
    wait_for_lines(d.state_dir / "changed.log", token)
    assert d.stop() == 0


def test_rejected_reload_raises_and_old_config_keeps_running(syslog_ng):
    port = free_port()
    d = syslog_ng(network_config(port), wait_ports=[port])
    good = d.config_path.read_text()
    d.config_path.write_text(good + "\nthis is not syslog-ng syntax {\n")
    with pytest.raises(DaemonError):
        d.reload()
    assert d.alive()
    token = uuid.uuid4().hex
    send_tcp(port, syslog_line(token))
    wait_for_lines(d.state_dir / "out.log", token)
    d.config_path.write_text(good)
    d.reload()
    assert d.stop() == 0


def test_start_failure_raises_with_stderr(syslog_ng):
    with pytest.raises(DaemonStartError) as excinfo:
        syslog_ng("source s { no_such_driver(); };", timeout=10)
    assert "no_such_driver" in str(excinfo.value) or "syntax error" in str(excinfo.value)


def test_ctl_and_paths(syslog_ng):
    port = free_port()
    d = syslog_ng(network_config(port), wait_ports=[port])
    assert "s_net" in d.ctl("stats")
    inner = d.path(d.state_dir / "out.log")
    if syslog_ng.daemon.root:
        assert inner.startswith("/tmp/")
    else:
        assert inner == str(d.state_dir / "out.log")
    assert d.host_path(inner) == d.state_dir / "out.log"
    assert d.stop() == 0
    assert d.stop() == 0  # idempotent


def test_version_gate(syslog_ng):
    # what requires_daemon_version() / @pytest.mark.syslog_ng_version rely on
    assert syslog_ng.version == syslog_ng.daemon.version >= (3, 38)


@pytest.mark.syslog_ng_version(4, 1)
def test_version_marker_skips_old_daemons(syslog_ng):
    assert syslog_ng.version >= (4, 1)

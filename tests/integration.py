"""Helpers of the integration tests (``tests/test_integration_*.py``, ``tests/test_examples.py``).

Every test runs ``SyslogSource`` (or the example source) inside a real syslog-ng started by the
``syslog_ng`` fixture (tests/conftest.py), sends with a real client (loggen, logger, curl, openssl
or a plain socket) and reads what the daemon wrote to a ``file()`` destination, one JSON object
per message rendered by ``$(format-json ...)``.

- configuration builders: :func:`syslogsrc_source`, :func:`json_file`, :func:`log_path`,
  :data:`PRELUDE`;
- readers: :class:`JsonOutput` (``wait(count)``, ``records()``, ``new_records()``,
  ``settle()``), :func:`loggen_ids` and :func:`assert_each_once` (every loggen sequence number
  once), :func:`stop_summary` (a listener's counters from the daemon's log at stop);
- senders: :func:`loggen`, :func:`loggen_popen`, :func:`connect_tcp`, :func:`send_tcp`,
  :func:`send_udp`, :func:`send_unix_stream`, :func:`tls_client`, :func:`tls_send`,
  :func:`curl_post`;
- :func:`daemon_dir`: a directory both the test and the daemon see (for the chroot daemon it
  lives in the chroot's ``/tmp``), for TLS certificates.

Every wait is bounded; a timeout raises AssertionError saying what was missing.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "FIELDS",
    "MESSAGE_ONLY",
    "PRELUDE",
    "JsonOutput",
    "assert_each_once",
    "connect_tcp",
    "curl_post",
    "daemon_dir",
    "json_file",
    "log_path",
    "loggen",
    "loggen_ids",
    "loggen_popen",
    "one_source_config",
    "send_tcp",
    "send_udp",
    "send_unix_stream",
    "stop_summary",
    "syslogsrc_source",
    "tls_client",
    "tls_send",
]

#: Global options of every test configuration: stamps with microseconds (ISODATE shows what was
#: sent), no reverse DNS (HOST_FROM is the address; no resolver can slow a test down).
PRELUDE = "options { frac-digits(6); use-dns(no); };\n"

#: The names every field test looks at; macros (ISODATE, SOURCEIP, SDATA, FACILITY, SEVERITY)
#: must be named, name-value pairs (HOST, PROGRAM, PID, MSGID, .SDATA.*, PEERIP, TRANSPORT, ...)
#: come with --scope all-nv-pairs. format-json renders .SDATA.a.b as {"_SDATA": {"a": {"b": ..}}}.
FIELDS = (
    "$(format-json --scope all-nv-pairs --key ISODATE --key SOURCEIP --key SDATA"
    " --key FACILITY --key SEVERITY)"
)

#: Only the message text: for the large runs, where the JSON of every field costs too much.
MESSAGE_ONLY = "$(format-json MESSAGE=$MESSAGE)"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def syslogsrc_source(
    name: str,
    listen: str,
    options: Mapping[str, str] | None = None,
    *,
    driver_options: str = "keep-hostname(yes)",
    class_name: str = "syslogsrc.SyslogSource",
) -> str:
    """``source NAME { python(class(...) options("listen" LISTEN ...) DRIVER_OPTIONS); };``"""
    pairs = {"listen": listen, **(options or {})}
    text = " ".join(f"{_quote(k)} {_quote(v)}" for k, v in pairs.items())
    return (
        f"source {name} {{ python(class({_quote(class_name)}) options({text})"
        f" {driver_options}); }};\n"
    )


def json_file(name: str, filename: str, template: str = FIELDS) -> str:
    """A file destination in the state dir, one ``template`` per line."""
    escaped = template.replace("\\", "\\\\").replace('"', '\\"')
    return f'destination {name} {{ file("@STATE@/{filename}" template("{escaped}\\n")); }};\n'


def log_path(sources: Iterable[str], destinations: Iterable[str], flags: str = "") -> str:
    parts = [f"source({s});" for s in sources] + [f"destination({d});" for d in destinations]
    if flags:
        parts.append(f"flags({flags});")
    return "log { " + " ".join(parts) + " };\n"


def one_source_config(
    listen: str,
    options: Mapping[str, str] | None = None,
    *,
    template: str = FIELDS,
    flags: str = "",
) -> str:
    """The configuration most tests run: :data:`PRELUDE`, one SyslogSource ``s_src`` listening on
    ``listen`` with ``options``, and its messages written to ``out.json`` in the state dir, one
    ``template`` per line (read it with :class:`JsonOutput`); ``flags`` go on the log path."""
    return (
        PRELUDE
        + syslogsrc_source("s_src", listen, options)
        + json_file("d_json", "out.json", template)
        + log_path(["s_src"], ["d_json"], flags=flags)
    )


# ---------------------------------------------------------------------------------------------
# reading what the daemon wrote


class JsonOutput:
    """A file the daemon writes one JSON object per line to."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def new_records(self) -> list[dict[str, Any]]:
        """The records written since the last call (complete lines only)."""
        offset = getattr(self, "_offset", 0)
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset = offset + end
        return [json.loads(line) for line in data[:end].splitlines()]

    def count(self) -> int:
        """Complete lines written so far."""
        try:
            with open(self.path, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def records(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(errors="surrogateescape")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def wait(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until at least ``count`` lines are there; return all records."""
        deadline = time.monotonic() + timeout
        while (have := self.count()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.path.name}: {have} of {count} lines after {timeout}s")
            time.sleep(0.05)
        return self.records()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        """Wait until a record satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records():
                if predicate(record):
                    return record
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.path.name}: no matching record after {timeout}s")
            time.sleep(0.05)

    def settle(self, quiet: float = 1.0, timeout: float = 30) -> int:
        """Wait until no line was added for ``quiet`` seconds; return the count."""
        deadline = time.monotonic() + timeout
        last, since = self.count(), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.path.name} still growing after {timeout}s")
            time.sleep(0.1)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
        return last


_LOGGEN_ID = re.compile(r"seq: (\d+), thread: (\d+)")


def loggen_ids(messages: Iterable[str]) -> collections.Counter[tuple[int, int]]:
    """(thread, seq) of every loggen message, counted: each should be there exactly once."""
    ids: collections.Counter[tuple[int, int]] = collections.Counter()
    for text in messages:
        m = _LOGGEN_ID.search(text)
        assert m, f"not a loggen message: {text[:120]!r}"
        ids[int(m.group(2)), int(m.group(1))] += 1
    return ids


def assert_each_once(ids: collections.Counter[tuple[int, int]], expected: int, threads=1) -> None:
    """Every loggen (thread, seq) of ``threads`` threads x ``expected // threads`` messages is
    there exactly once."""
    dups = {k: v for k, v in ids.items() if v > 1}
    assert not dups, f"{len(dups)} duplicated, e.g. {sorted(dups.items())[:5]}"
    assert len(ids) == expected, f"{len(ids)} distinct of {expected}"
    per_thread = collections.Counter(thread for thread, _ in ids)
    assert len(per_thread) == threads, per_thread
    for thread, count in per_thread.items():
        seqs = sorted(seq for t, seq in ids if t == thread)
        assert seqs == list(range(count)), f"thread {thread}: gaps in {seqs[:3]}..{seqs[-3:]}"


# ---------------------------------------------------------------------------------------------
# senders


def loggen(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run loggen to completion (``-Q``: no progress lines); its output is in the result."""
    proc = subprocess.run(
        ["loggen", "-Q", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc


def loggen_popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["loggen", "-Q", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def connect_tcp(port: int, source_ip: str | None = None, timeout: float = 5) -> socket.socket:
    """A connection to the listener on ``port``, from ``source_ip`` if given (any 127.x.y.z works
    on Linux). Refused connections are retried for ``timeout`` seconds: after a reload the
    daemon says "Configuration reload finished" a few milliseconds before the Python source
    listens again."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            if source_ip:
                s.bind((source_ip, 0))
            s.connect(("127.0.0.1", port))
            return s
        except ConnectionRefusedError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def send_tcp(
    port: int, lines: Iterable[bytes], *, source_ip: str | None = None, pause: float = 0
) -> tuple[str, int]:
    """Connect (see :func:`connect_tcp`), send each line with a LF, close. Returns the client's
    (address, port)."""
    with connect_tcp(port, source_ip) as s:
        me = s.getsockname()
        for line in lines:
            s.sendall(line + b"\n")
            if pause:
                time.sleep(pause)
    return me


def send_udp(port: int, datagrams: Iterable[bytes], *, pause: float = 0) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in datagrams:
            s.sendto(datagram, ("127.0.0.1", port))
            if pause:
                time.sleep(pause)


def send_unix_stream(path: Path, lines: Iterable[bytes]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"".join(line + b"\n" for line in lines))


def tls_client(
    port: int, ca: Path, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLSocket:
    """A TLS connection to the listener, verifying it against ``ca``, with a client certificate
    when given. TLS 1.3 finishes the client's handshake before the server checks the client
    certificate: a refusal shows on the next read."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def tls_send(port: int, ca: Path, cert: Path, key: Path, lines: Iterable[bytes]) -> None:
    """Send lines over TLS and close cleanly: close_notify, and the server's session tickets
    read (closing with them unread would reset the connection, and the kernel would drop what
    the server had not read yet)."""
    with tls_client(port, ca, cert, key) as s:
        s.sendall(b"".join(line + b"\n" for line in lines))
        try:
            s.unwrap()
        except (ssl.SSLError, OSError):
            pass


def curl_post(
    url: str, body: bytes, headers: Mapping[str, str] | None = None, timeout: float = 20
) -> tuple[int, str]:
    """POST ``body`` with curl; returns (status, response body)."""
    args = ["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    args += ["--data-binary", "@-", url]
    proc = subprocess.run(args, input=body, capture_output=True, timeout=timeout + 5, check=False)
    assert proc.returncode == 0, f"curl failed ({proc.returncode}): {proc.stderr!r}"
    text, _, code = proc.stdout.decode().rpartition("\n")
    return int(code), text


# ---------------------------------------------------------------------------------------------
# files the daemon must see


@pytest.fixture
def daemon_dir(syslog_ng, tmp_path):
    """``(host_path, daemon_path)`` of an empty directory that the daemon can read: in the
    test's tmp dir for the host's daemon, in the chroot's /tmp for the chroot's (removed after
    the test)."""
    root = syslog_ng.daemon.root
    if root is None:
        path = tmp_path / "shared"
        path.mkdir()
        yield path, str(path)
        return
    path = Path(tempfile.mkdtemp(prefix="slng-shared-", dir=Path(root) / "tmp"))
    path.chmod(0o755)
    try:
        yield path, "/" + str(path.relative_to(root))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stop_summary(stderr: str, listener: str) -> dict[str, int]:
    """The counters of ``listener`` from the last "listener ... stopped:" line of the daemon's
    log (TwistedSource logs one per listener when run() ends)."""
    pattern = re.compile(r"listener (\S+) stopped: (.*?);?$")
    found: dict[str, int] | None = None
    for line in stderr.splitlines():
        m = pattern.search(line)
        if m and m.group(1) == listener:
            found = {k: int(v) for k, v in (item.split("=") for item in m.group(2).split(", "))}
    assert found is not None, f"no stop summary of {listener} in the daemon's log"
    return found

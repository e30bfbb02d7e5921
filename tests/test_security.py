"""Security defaults: TLS peer verification, the HTTP token, what the defaults bind, and where
we write.

- With ``tls-ca-file`` set, a TLS listener requires a client certificate chaining to it: a client
  without one, or with one from another CA, is refused (counted, logged once per 10 s) while a
  client with a good one is served.
- The HTTP bearer token is compared with ``hmac.compare_digest`` (constant time).
- README says which addresses the default listeners bind, and it is what they bind; the
  examples bind loopback only.
- No option makes us write outside the paths the user gave: unix sockets (``PATH`` and, for
  ``unix:``, ``PATH.lock``), the twistd output file, SourceHost's state dir.
"""

from __future__ import annotations

import hmac
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _processes import socket_inodes
from twisted.internet.epollreactor import EPollReactor

from syslogsrc.listen import make_listener, parse_listen, parse_spec
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols import http as http_module
from syslogsrc.source import DEFAULT_LISTEN
from syslogsrc.testing import (
    WAIT,
    GoodHTTPSender,
    GoodSender,
    ListeningSource,
    http_post,
    tls_connect,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from certs import make_certs

    return make_certs(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------------------------
# TLS peer verification


def _tls(pki: Any, **extra: Any) -> dict[str, Any]:
    return {"tls_key_file": pki.server_key, "tls_cert_file": pki.server_cert,
            "tls_ca_file": pki.ca, **extra}  # fmt: skip


def _refused(port: int, pki: Any, cert: Path | None, key: Path | None) -> bool:
    """Connect with (or without) a client certificate, send a line, and say whether the server
    refused: TLS 1.3 lets the client finish its handshake before the server looks at the
    certificate, so the refusal shows on the next read."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"<13>Nov 24 06:00:00 evil app: let me in\n")
        s.settimeout(0.5)
        return s.recv(100) == b""
    except TimeoutError:
        return False  # still open: served (we never write to a syslog sender)
    except (ssl.SSLError, OSError):
        return True
    finally:
        raw.close()


@pytest.mark.parametrize("verify", [None, "required"])
def test_tls_peer_verification_refuses_no_certificate_and_other_ca(pki: Any, verify: Any) -> None:
    options = _tls(pki) if verify is None else _tls(pki, tls_peer_verify=verify)
    with ListeningSource("ssl:0:interface=127.0.0.1", **options) as h:
        port = h.port()
        client = (str(pki.ca), str(pki.client_cert), str(pki.client_key))
        good = GoodSender(h, "mtls", count=50, connect=lambda: tls_connect(port, *client))
        good.start()
        for _ in range(3):
            assert _refused(port, pki, None, None)  # no certificate
            assert _refused(port, pki, pki.other_client_cert, pki.other_client_key)  # other CA
        good.check()
        stats = h.stats()
        assert h.wait(lambda: stats.refused == 6)
        assert h.output.others == 0  # nothing of theirs was posted
        assert len(h.logs.matching(r"handshake failed")) == 1
        h.stop()
        lines = h.logs.matching(r"handshake failed")
        assert sum(int(re.search(r"refused (\d+)", x).group(1)) for x in lines) == 6  # type: ignore[union-attr]


def test_tls_optional_verification_still_refuses_another_ca(pki: Any) -> None:
    with ListeningSource("ssl:0:interface=127.0.0.1", **_tls(pki, tls_peer_verify="optional")) as h:
        assert not _refused(h.port(), pki, None, None)  # may come without a certificate
        assert _refused(h.port(), pki, pki.other_client_cert, pki.other_client_key)
        assert not _refused(h.port(), pki, pki.client_cert, pki.client_key)
        assert h.wait(lambda: h.stats().refused == 1)


# ---------------------------------------------------------------------------------------------
# the HTTP token


def test_http_token_is_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(http_module.hmac, "compare_digest", spy)
    with ListeningSource("http:0:interface=127.0.0.1", http_token="s3cret") as h:
        good = GoodHTTPSender(h, "token", token="s3cret", count=5)
        good.start()
        good.check()
        assert http_post(h.port(), b"x", {"Authorization": "Bearer s3crex"})[0] == 401
        assert http_post(h.port(), b"x", {"Authorization": "Bearer s3cret-and-more"})[0] == 401
        assert http_post(h.port(), b"x")[0] == 401
    assert (b"s3crex", b"s3cret") in calls and (b"s3cret-and-more", b"s3cret") in calls
    assert len(calls) == 5 + 3  # every request, including the one without a header
    # and the token is compared nowhere else with ==
    import inspect

    source = inspect.getsource(http_module)
    assert not re.search(r"==\s*token|token\s*==|http_token\s*==", source)


# ---------------------------------------------------------------------------------------------
# what the defaults bind


def _bound(text: str) -> str:
    """The address a listener spec binds (port 0, started on a private reactor)."""
    spec = parse_spec(re.sub(r":\d+(?=:|$)", ":0", text, count=1))
    reactor = EPollReactor()
    listener = make_listener(spec, reactor, _NullSink(), ListenerOptions())
    listener.start()
    try:
        return listener.address.host
    finally:
        listener.stop()
        for reader in list(reactor.getReaders()):
            reactor.removeReader(reader)


class _NullSink:
    paused = False

    def post(self, *a: Any, **k: Any) -> None:
        pass

    def close_batch(self) -> None:
        pass

    def register_producer(self, p: Any) -> None:
        pass

    def unregister_producer(self, p: Any) -> None:
        pass


def test_readme_says_what_the_default_listeners_bind_and_it_is_so() -> None:
    readme = (ROOT / "README.md").read_text()
    said = re.search(r"By default it listens on \*\*(.+?)\*\*", readme)
    assert said and said.group(1) == "TCP 5514 and UDP 5514 on 127.0.0.1 only"
    kinds = sorted(spec.kind for text in DEFAULT_LISTEN for spec in parse_listen(text))
    assert kinds == ["tcp", "udp"]
    for text in DEFAULT_LISTEN:  # SyslogSource's and twistd's default
        (spec,) = parse_listen(text)
        assert spec.port == 5514
        assert _bound(text) == "127.0.0.1", text
    from syslogsrc.service import Options

    options = Options()
    options.parseOptions([])
    assert tuple(options["listen"] or DEFAULT_LISTEN) == DEFAULT_LISTEN
    # what README says the explicit forms bind (all IPv4 addresses), and the table of
    # docs/listeners.md for every kind
    assert "`--listen tcp:5514 --listen udp:5514` binds all IPv4 addresses" in readme
    assert _bound("tcp:5514") == "0.0.0.0" and _bound("udp:5514") == "0.0.0.0"
    assert _bound("http:5514") == "0.0.0.0"
    assert _bound("tcp6:5514") == "::"
    table = (ROOT / "docs" / "listeners.md").read_text().replace("\\|", "/")
    kinds = ("tcp", "tcp6", "ssl", "unix", "systemd", "udp", "udp6", "unixgram", "http", "https")
    for kind in kinds:
        row = re.search(rf"^\| `{kind}:[^|]*\|[^|]*\| ([^|]+) \|", table, re.M)
        assert row, kind
        assert row.group(1).strip() in ("`0.0.0.0`", "`0.0.0.0` (all IPv4)", "\u2013", "inherited",
                                        "`::` (all IPv6; IPv4 too where `net.ipv6.bindv6only=0`)",
                                        "`::`"), (kind, row.group(1))  # fmt: skip


def test_examples_bind_loopback_only(tmp_path: Path) -> None:
    specs = []
    for path in sorted((ROOT / "examples").iterdir()):
        if path.suffix not in (".py", ".conf"):
            continue
        text = path.read_text()
        for spec in re.findall(r"\b(?:tcp6?|udp6?|ssl|https?):[^\s\"']+", text):
            if re.match(r"\w+:(\d+|\{)", spec):  # a listener spec, not a URL or prose
                specs.append((path.name, spec, text))
    assert len(specs) >= 3, "no listener spec found in examples/"
    for name, spec, text in specs:
        loopback = re.search(r"interface=(127\.0\.0\.1|\\?:\\?:1|::1)\b", spec)
        # a spec made from an option: its default must be loopback
        templated = "interface={" in spec and re.search(r"\"interface\", \"127\.0\.0\.1\"", text)
        assert loopback or templated, (name, spec)
    # and at run time: what the embedding example listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "embed_app.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while not (bound := _bound_by(proc.pid, port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bound == {("tcp", "127.0.0.1"), ("udp", "127.0.0.1")}, bound
    finally:
        proc.terminate()
        proc.wait(WAIT)


def _bound_by(pid: int, port: int) -> set[tuple[str, str]]:
    """(protocol, address) of the sockets of process ``pid`` bound to ``port``."""
    inodes = socket_inodes(pid)
    found = set()
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hexport = fields[1].partition(":")
            if int(hexport, 16) == port and fields[9] in inodes:
                if len(address) == 8:
                    host = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                else:
                    host = address
                found.add((proto.rstrip("6"), host))
    return found


# ---------------------------------------------------------------------------------------------
# nothing written outside the paths the user gave


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_unix_sockets_write_only_their_path_and_lock(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    stream, dgram = d / "stream.sock", d / "dgram.sock"
    with ListeningSource(f"unix:{stream}", f"unixgram:{dgram}", "tcp:0:interface=127.0.0.1") as h:
        assert _tree(d) == {"stream.sock", "stream.sock.lock", "dgram.sock"}
        assert _tree(tmp_path) == {"run", "run/stream.sock", "run/stream.sock.lock",
                                   "run/dgram.sock"}  # fmt: skip
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(stream))
            s.sendall(b"<13>Nov 24 06:00:00 h app: good-unix-0\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<13>Nov 24 06:00:00 h app: good-unixgram-0", str(dgram))
        assert h.wait(lambda: h.output.good.get("unix") == [0] == h.output.good.get("unixgram"))
        h.stop()
        assert _tree(tmp_path) == {"run"}  # removed at stop, nothing left behind


def test_unixgram_path_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    # a regular file, or a symlink to a socket elsewhere, at the path: never removed or
    # followed; the listener fails to bind and says so, the others run
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    target = elsewhere / "real.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as real:
        real.bind(str(target))
        link = tmp_path / "link.sock"
        link.symlink_to(target)
        listen = (f"unixgram:{victim}", f"unixgram:{link}", "tcp:0:interface=127.0.0.1")
        with ListeningSource(*listen) as h:
            assert h.wait(lambda: len(h.listeners) == 1)  # only tcp: listens
            assert len(h.logs.matching(r"cannot listen on unixgram:")) == 2
            h.stop()
        assert victim.read_text() == "keep me"
        assert link.is_symlink() and target.exists()


def test_state_dir_and_output_hold_everything_we_write(tmp_path: Path) -> None:
    from syslogsrc.host import SourceHost
    from syslogsrc.outputs import open_output
    from syslogsrc.source import SyslogSource

    state, out = tmp_path / "state", tmp_path / "out" / "messages.jsonl"
    out.parent.mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a relative path anywhere would land here
    try:
        host = SourceHost(SyslogSource, {"listen": "tcp:0:interface=127.0.0.1"},
                          state_dir=str(state), output=open_output(str(out), "json"))  # fmt: skip
        host.start()
        assert host.wait_for(
            lambda: bool(host.source._listeners) and host.source._listeners[0].address is not None
        )
        with socket.create_connection(("127.0.0.1", host.source._listeners[0].address.port)) as s:
            s.sendall(b"<13>Nov 24 06:00:00 h app: written\n")
        assert host.wait_for(lambda: out.exists() and out.stat().st_size > 0)
        host.reload()
        host.close()
    finally:
        os.chdir(cwd)
    assert _tree(tmp_path) <= {"state", "state/syslog-ng.persist.json", "out",
                               "out/messages.jsonl"}  # fmt: skip

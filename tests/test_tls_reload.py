"""Certificate rotation on a live ``ssl:`` listener, in process (Twisted's TLS client on loopback).

New key, certificate and CA files are taken by :meth:`StreamListener.reload_tls` (what SIGHUP
calls in twistd) or by the ``tls-reload-interval`` poll: new connections get the new certificate,
connections made before go on delivering, and a broken new file keeps the previous settings and
is logged naming the file and the option. twistd and the daemons: test_tls_reload_twistd.py and
test_integration_tls_reload.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator
from pathlib import Path

import pytest
import pytest_twisted
from certs import Certs, make_certs, reissue_server
from test_listen import TIMEOUT, Client, connect, wait_until
from test_protocols_tls import client_tls
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.logger import capturedLogs

from syslogsrc.listen import make_listener, parse_spec
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols.tls import ReloadableTLS
from syslogsrc.source import SourceOptions
from syslogsrc.testing import RecordingSink

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")

SPEC = "ssl:0:interface=127.0.0.1"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)  # each test rotates its own files


def options(certs: Certs, ca: Path | None = None, **kwargs: object) -> ListenerOptions:
    return ListenerOptions(
        tls_key_file=str(certs.server_key),
        tls_cert_file=str(certs.server_cert),
        tls_ca_file=str(ca) if ca is not None else None,
        **kwargs,  # type: ignore[arg-type]
    )


def serial_of(path: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


@defer.inlineCallbacks
def tls_connect(listener, certs: Certs, key: Path | None = None, cert: Path | None = None):
    """A TLS connection whose handshake is done (a line sent and posted, or refused)."""
    endpoint = wrapClientTLS(
        client_tls(certs, key, cert),
        TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port),
    )
    client: Client = yield connect(endpoint)
    return client


def peer_serial(client: Client) -> int:
    return client.transport.getPeerCertificate().get_serial_number()


@defer.inlineCallbacks
def send(client: Client, sink: RecordingSink, line: bytes) -> Generator:
    before = len(sink.posts)
    client.transport.write(line + b"\n")
    yield wait_until(lambda: len(sink.posts) > before)
    assert sink.messages[-1] == line


@pytest_twisted.inlineCallbacks
def test_reload_serves_the_new_certificate_and_established_connections_go_on(
    certs: Certs,
) -> Generator:
    sink = RecordingSink()
    listener = make_listener(parse_spec(SPEC), reactor, sink, options(certs))
    yield listener.start().addTimeout(TIMEOUT, reactor)
    old = serial_of(certs.server_cert)
    try:
        before = yield tls_connect(listener, certs)
        yield send(before, sink, b"<13>before the rotation")
        assert peer_serial(before) == old

        new = reissue_server(certs).serial_number
        with capturedLogs() as events:
            assert listener.reload_tls() is True
        logged = [e for e in events if "TLS files reloaded" in e.get("log_format", "")]
        assert len(logged) == 1 and f"serial {new:#x}" in logged[0]["certificate"]

        after = yield tls_connect(listener, certs)
        yield send(after, sink, b"<13>after the rotation")
        assert peer_serial(after) == new
        # the connection made before the reload keeps its session and delivers
        yield send(before, sink, b"<13>old connection, after the rotation")
        assert peer_serial(before) == old
        assert listener.stats.refused == 0 and listener.stats.open_connections == 2
        assert listener.tls.reloads == 1
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)


def _garbage_cert(certs: Certs) -> tuple[Path, str]:
    certs.server_cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    return certs.server_cert, "tls-cert-file"


def _missing_key(certs: Certs) -> tuple[Path, str]:
    certs.server_key.unlink()
    return certs.server_key, "tls-key-file"


def _unreadable_key(certs: Certs) -> tuple[Path, str]:
    # a directory where the key was: unreadable even for root (chmod 000 is not)
    certs.server_key.unlink()
    certs.server_key.mkdir()
    return certs.server_key, "tls-key-file"


def _key_of_another_certificate(certs: Certs) -> tuple[Path, str]:
    shutil.copy(certs.client_key, certs.server_key)  # the certificate stays: they do not match
    return certs.server_key, "tls-key-file"


def _ca_that_does_not_parse(certs: Certs) -> tuple[Path, str]:
    certs.ca.write_bytes(b"this is no CA bundle\n")
    return certs.ca, "tls-ca-file"


@pytest.mark.parametrize(
    "breakage",
    [_garbage_cert, _missing_key, _unreadable_key, _key_of_another_certificate,
     _ca_that_does_not_parse],
    ids=["garbage-cert", "missing-key", "unreadable-key", "key-not-matching", "ca-garbage"],
)  # fmt: skip
@pytest_twisted.inlineCallbacks
def test_a_broken_new_file_keeps_the_previous_certificate(certs: Certs, breakage) -> Generator:
    sink = RecordingSink()
    # tls-peer-verify optional: the CA file is read, and clients without a certificate pass
    opts = options(certs, certs.ca, tls_peer_verify="optional")
    listener = make_listener(parse_spec(SPEC), reactor, sink, opts)
    yield listener.start().addTimeout(TIMEOUT, reactor)
    old = serial_of(certs.server_cert)
    client_ca = certs.ca.read_bytes()
    try:
        path, option = breakage(certs)
        with capturedLogs() as events:
            assert listener.reload_tls() is False
        errors = [e for e in events if "not reloaded" in e.get("log_format", "")]
        assert len(errors) == 1
        assert f"option {option}('{path}')" in errors[0]["error"], errors[0]["error"]
        assert listener.tls.failures == 1

        certs.ca.write_bytes(client_ca)  # the client's trust root (broken above for one case)
        client = yield tls_connect(listener, certs)
        yield send(client, sink, b"<13>still served")
        assert peer_serial(client) == old
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_rotating_the_ca_file_changes_which_client_certificates_are_accepted(
    certs: Certs,
) -> Generator:
    trusted = certs.directory / "trusted-ca.pem"
    shutil.copy(certs.ca, trusted)
    sink = RecordingSink()
    opts = options(certs, trusted, tls_peer_verify="required")
    listener = make_listener(parse_spec(SPEC), reactor, sink, opts)
    yield listener.start().addTimeout(TIMEOUT, reactor)

    @defer.inlineCallbacks
    def refused(key: Path, cert: Path) -> Generator:
        refusals = listener.stats.refused
        client = yield tls_connect(listener, certs, key, cert)
        client.transport.write(b"<13>must not arrive\n")
        yield wait_until(lambda: listener.stats.refused == refusals + 1)
        yield client.lost.addTimeout(TIMEOUT, reactor)

    try:
        ours = yield tls_connect(listener, certs, certs.client_key, certs.client_cert)
        yield send(ours, sink, b"<13>client of the first CA")
        yield refused(certs.other_client_key, certs.other_client_cert)

        shutil.copy(certs.other_ca, trusted)  # the CA is rotated: the other one is trusted now
        assert listener.reload_tls() is True

        theirs = yield tls_connect(listener, certs, certs.other_client_key, certs.other_client_cert)
        yield send(theirs, sink, b"<13>client of the new CA")
        yield refused(certs.client_key, certs.client_cert)
        # verified before the rotation, the first client's connection goes on
        yield send(ours, sink, b"<13>first client, still connected")
        assert listener.stats.refused == 2
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)


def test_the_poll_takes_files_once_they_stand_still(certs: Certs) -> None:
    clock = task.Clock()
    tls = ReloadableTLS.from_options(options(certs), name="ssl:6514", reactor=clock)
    assert tls.files == (str(certs.server_key), str(certs.server_cert))
    tls.start_polling(5)
    clock.advance(5)
    assert tls.reloads == 0  # nothing changed

    new = reissue_server(certs).serial_number
    clock.advance(5)
    assert tls.reloads == 0  # changed since the last look: maybe half-written, wait
    clock.advance(5)
    assert tls.reloads == 1 and tls.current.certificate.serial_number == new
    clock.advance(5)
    assert tls.reloads == 1  # unchanged since

    # a broken rotation is logged once, not at every poll, and retried when a file changes
    certs.server_cert.write_bytes(b"garbage")
    with capturedLogs() as events:
        for _ in range(4):
            clock.advance(5)
    assert tls.failures == 1
    assert len([e for e in events if "not reloaded" in e.get("log_format", "")]) == 1
    newer = reissue_server(certs).serial_number
    clock.advance(5)
    clock.advance(5)
    assert tls.reloads == 2 and tls.current.certificate.serial_number == newer
    tls.stop_polling()
    assert not clock.getDelayedCalls()


@pytest_twisted.inlineCallbacks
def test_tls_reload_interval_on_a_live_listener(certs: Certs) -> Generator:
    sink = RecordingSink()
    opts = options(certs, tls_reload_interval=0.05)
    listener = make_listener(parse_spec(SPEC), reactor, sink, opts)
    yield listener.start().addTimeout(TIMEOUT, reactor)
    try:
        before = yield tls_connect(listener, certs)
        yield send(before, sink, b"<13>before")
        new = reissue_server(certs).serial_number
        yield wait_until(lambda: listener.tls.reloads == 1)
        after = yield tls_connect(listener, certs)
        yield send(after, sink, b"<13>after")
        assert peer_serial(after) == new
        yield send(before, sink, b"<13>before, still")
    finally:
        yield listener.stop().addTimeout(TIMEOUT, reactor)
    assert listener.tls._loop is None  # the poll stops with the listener


def test_a_bad_file_at_start_up_is_still_an_error_naming_the_option(certs: Certs) -> None:
    certs.server_cert.write_bytes(b"garbage")
    with pytest.raises(OptionError) as info:
        make_listener(parse_spec(SPEC), reactor, RecordingSink(), options(certs))
    assert info.value.option == "tls-cert-file"


def test_a_new_instance_keeps_what_the_previous_one_took(certs: Certs) -> None:
    # a daemon reload: a new source instance makes the same listener again, in the same process
    spec = parse_spec(SPEC)
    before = make_listener(spec, reactor, RecordingSink(), options(certs))
    taken = before.tls.current
    certs.server_cert.write_bytes(b"garbage")
    with capturedLogs() as events:
        after = make_listener(spec, reactor, RecordingSink(), options(certs))
    assert after.tls.current is taken and after.tls.failures == 1
    errors = [e for e in events if "not reloaded" in e.get("log_format", "")]
    assert len(errors) == 1
    assert f"option tls-cert-file('{certs.server_cert}')" in errors[0]["error"]
    # another listener (another spec) with the same files has nothing to keep: an error
    with pytest.raises(OptionError):
        make_listener(
            parse_spec("ssl:0:interface=127.0.0.2"), reactor, RecordingSink(), options(certs)
        )


def test_tls_reload_interval_option() -> None:
    opts = SourceOptions.from_options({"tls-reload-interval": "30"})
    assert opts.listener.tls_reload_interval == 30
    assert ListenerOptions().tls_reload_interval == 0  # off unless asked for
    with pytest.raises(OptionError) as info:
        SourceOptions.from_options({"tls-reload-interval": "-1"})
    assert info.value.option == "tls-reload-interval"


def test_plain_listeners_have_nothing_to_reload() -> None:
    listener = make_listener(parse_spec("tcp:0"), reactor, RecordingSink(), ListenerOptions())
    assert listener.reload_tls() is None

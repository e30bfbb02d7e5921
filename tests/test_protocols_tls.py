"""TLS listeners (ssl:): server context, client-certificate policies, refusals, PROXY + TLS.

The PKI is made at test time by tests/certs.py.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
import pytest_twisted
from certs import Certs, make_certs
from test_listen import (  # noqa: F401 - serve is a fixture
    TIMEOUT,
    Client,
    connect,
    serve,
    wait_until,
)
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.logger import capturedLogs

from syslogsrc.listen import make_listener, parse_spec
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols.tls import server_tls_options
from syslogsrc.testing import RecordingSink

# Twisted's client TLS API (optionsForClientTLS) still hands pyOpenSSL objects to pyOpenSSL.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


def server_options(certs: Certs, peer_verify: str | None = "required") -> ListenerOptions:
    return ListenerOptions(
        tls_key_file=str(certs.server_key),
        tls_cert_file=str(certs.server_cert),
        tls_ca_file=str(certs.ca) if peer_verify != "none" else None,
        tls_peer_verify=peer_verify,
    )


def client_tls(certs: Certs, key: Path | None = None, cert: Path | None = None) -> object:
    client_cert = None
    if key is not None and cert is not None:
        client_cert = PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes())
    return optionsForClientTLS(
        "localhost",
        trustRoot=Certificate.loadPEM(certs.ca.read_bytes()),
        clientCertificate=client_cert,
    )


# --- the server context -------------------------------------------------------------------


def test_key_and_certificate_from_options(certs: Certs) -> None:
    tls = server_tls_options(server_options(certs, "none"))
    assert tls.verify is False


def test_key_and_certificate_from_the_spec_win(certs: Certs) -> None:
    options = ListenerOptions(tls_key_file="/nonexistent.key")
    tls = server_tls_options(options, private_key=str(certs.server_combined))
    assert tls.certificate is not None


@pytest.mark.parametrize(("policy", "require"), [("optional", False), ("required", True)])
def test_peer_verify_policies(certs: Certs, policy: str, require: bool) -> None:
    tls = server_tls_options(server_options(certs, policy))
    assert tls.verify is True
    assert tls.requireCertificate is require


def test_missing_file_names_the_option(certs: Certs) -> None:
    options = ListenerOptions(tls_key_file="/nonexistent.key", tls_cert_file=str(certs.server_cert))
    with pytest.raises(OptionError) as info:
        server_tls_options(options)
    assert info.value.option == "tls-key-file"


def test_key_that_does_not_match_the_certificate(certs: Certs) -> None:
    options = ListenerOptions(
        tls_key_file=str(certs.client_key), tls_cert_file=str(certs.server_cert)
    )
    with pytest.raises(OptionError, match="tls-key-file"):
        server_tls_options(options)


def test_ca_file_without_certificates(certs: Certs, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"not a certificate\n")
    options = ListenerOptions(
        tls_key_file=str(certs.server_key),
        tls_cert_file=str(certs.server_cert),
        tls_ca_file=str(empty),
    )
    with pytest.raises(OptionError) as info:
        server_tls_options(options)
    assert info.value.option == "tls-ca-file"


# --- sockets --------------------------------------------------------------------------------


def start(certs: Certs, peer_verify: str | None, text: str = "ssl:0:interface=127.0.0.1"):
    sink = RecordingSink()
    listener = make_listener(parse_spec(text), reactor, sink, server_options(certs, peer_verify))
    return listener.start().addTimeout(TIMEOUT, reactor), sink


@pytest.fixture
def serve_tls(certs: Certs, serve):  # noqa: F811 - serve is test_listen's fixture
    """``listener, sink = yield serve_tls(peer_verify[, spec])``: a TLS listener with
    :func:`server_options` into a new RecordingSink, through test_listen's ``serve`` (stopped
    at teardown)."""

    def serve_tls_(peer_verify: str | None, text: str = "ssl:0:interface=127.0.0.1"):
        sink = RecordingSink()
        started = serve(text, sink, server_options(certs, peer_verify))
        return started.addCallback(lambda listener: (listener, sink))

    return serve_tls_


@defer.inlineCallbacks
def tls_client_sends(listener, certs: Certs, key=None, cert=None) -> Generator:
    endpoint = wrapClientTLS(
        client_tls(certs, key, cert),
        TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port),
    )
    client = yield connect(endpoint)
    client.transport.write(b"<13>over tls\n")
    return client


@pytest.mark.parametrize(
    ("policy", "with_certificate"),
    [("required", True), ("optional", False)],
    ids=["required-with-cert", "optional-without-cert"],
)
@pytest_twisted.inlineCallbacks
def test_client_is_accepted(
    certs: Certs, serve_tls, policy: str, with_certificate: bool
) -> Generator:
    listener, sink = yield serve_tls(policy)
    key, cert = (certs.client_key, certs.client_cert) if with_certificate else (None, None)
    yield tls_client_sends(listener, certs, key, cert)
    yield wait_until(lambda: len(sink.posts) == 1)
    origin = sink.posts[0][1]
    assert (origin.transport, origin.peer_host) == ("tls", "127.0.0.1")
    assert listener.transport == "tls"
    assert listener.stats.refused == 0


@pytest.mark.parametrize(
    ("policy", "client"),
    [("required", None), ("required", "other"), ("optional", "other")],
    ids=["required-without-cert", "required-other-ca", "optional-other-ca"],
)
@pytest_twisted.inlineCallbacks
def test_bad_or_missing_client_certificate_is_refused(
    certs: Certs, serve_tls, policy: str, client: str | None
) -> Generator:
    listener, sink = yield serve_tls(policy)
    key, cert = (certs.other_client_key, certs.other_client_cert) if client else (None, None)
    with capturedLogs() as events:
        conn = yield tls_client_sends(listener, certs, key, cert)
        yield wait_until(lambda: listener.stats.refused == 1)
        yield conn.lost.addTimeout(TIMEOUT, reactor)
    assert sink.posts == []
    logged = [e for e in events if "handshake failed" in e.get("log_format", "")]
    assert len(logged) == 1 and logged[0]["count"] == 1


@pytest_twisted.inlineCallbacks
def test_plain_text_on_the_tls_port_is_refused(certs: Certs, serve_tls) -> Generator:
    listener, sink = yield serve_tls("none")
    client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
    client.transport.write(b"<13>this is not TLS at all\n")
    yield wait_until(lambda: listener.stats.refused == 1)
    yield client.lost.addTimeout(TIMEOUT, reactor)
    assert sink.posts == []


@pytest_twisted.inlineCallbacks
def test_a_probe_that_sends_nothing_is_not_a_refusal(certs: Certs, serve_tls) -> Generator:
    listener, _ = yield serve_tls("none")
    client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
    yield wait_until(lambda: listener.stats.open_connections == 1)
    client.transport.loseConnection()
    yield wait_until(lambda: listener.stats.open_connections == 0)
    assert listener.stats.refused == 0


@pytest_twisted.inlineCallbacks
def test_proxy_header_in_clear_before_tls(certs: Certs, serve_tls) -> Generator:
    listener, sink = yield serve_tls("required", "haproxy:ssl:0:interface=127.0.0.1")
    client: Client = yield connect(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.address.port))
    client.transport.write(b"PROXY TCP4 203.0.113.9 198.51.100.1 40001 6514\r\n")
    client.transport.startTLS(client_tls(certs, certs.client_key, certs.client_cert))
    client.transport.write(b"<13>proxied and encrypted\n")
    yield wait_until(lambda: len(sink.posts) == 1)
    origin = sink.posts[0][1]
    assert (origin.transport, origin.peer_host, origin.peer_port, origin.local_port) == (
        "tls",
        "203.0.113.9",
        40001,
        6514,
    )


@pytest_twisted.inlineCallbacks
def test_stop_closes_tls_connections(certs: Certs) -> Generator:
    d, sink = start(certs, "required")
    listener = yield d
    client = yield tls_client_sends(listener, certs, certs.client_key, certs.client_cert)
    yield wait_until(lambda: len(sink.posts) == 1)
    yield listener.stop().addTimeout(TIMEOUT, reactor)
    yield client.lost.addTimeout(TIMEOUT, reactor)
    assert listener.stats.open_connections == 0


@pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")  # client side
@pytest_twisted.inlineCallbacks
def test_https_listener_posts_with_transport_https(certs: Certs, serve_tls) -> Generator:
    pytest.importorskip("syslogsrc.protocols.http")
    from io import BytesIO

    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, FileBodyProducer, readBody

    listener, sink = yield serve_tls("none", "https:0:interface=127.0.0.1")
    policy = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(certs.ca.read_bytes()))
    agent = Agent(reactor, contextFactory=policy)
    url = f"https://localhost:{listener.address.port}/".encode()
    response = yield agent.request(
        b"POST", url, bodyProducer=FileBodyProducer(BytesIO(b"<13>over https\n"))
    ).addTimeout(TIMEOUT, reactor)
    yield readBody(response).addTimeout(TIMEOUT, reactor)
    assert response.code < 300
    assert sink.messages == [b"<13>over https"]
    assert sink.posts[0][1].transport == "https"
    assert listener.transport == "https"

"""TLS for ``ssl:`` and ``https:`` listeners: the server context, and handshake accounting.

:func:`server_tls_options` builds one :class:`~twisted.internet.ssl.CertificateOptions` per
listener: TLS 1.2 or later, the server key and certificate from the spec (``privateKey=``,
``certKey=``, ``extraCertChain=``, ``dhParameters=``) or from ``tls-key-file``/``tls-cert-file``,
and client certificates checked per ``options.peer_verify``:

``none``
    no certificate is asked for;
``optional``
    a client may send one; if it does, it must chain to ``tls-ca-file``;
``required``
    a client without a certificate chaining to ``tls-ca-file`` is refused.

:func:`tls_server_factory` wraps a protocol factory with TLS (Twisted's memory-BIO TLS, the same
as ``reactor.listenSSL`` uses). A connection whose handshake fails (no client certificate when
one is required, a certificate from another CA, plain text on the TLS port...) is closed, counted
in ``stats.refused`` and logged, at most once per 10 s per listener. A connection closed before
any handshake byte arrived (a port probe, a load balancer health check) is not a refusal.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IHandshakeListener, IProtocolFactory, IReactorTime
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from syslogsrc.interfaces import ListenerStats
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols._tracking import RateLimitedLog

__all__ = ["HandshakeWatch", "HandshakeWatchFactory", "server_tls_options", "tls_server_factory"]


def _read(path: str, option: str, what: str) -> bytes:
    try:
        return FilePath(path).getContent()
    except OSError as e:
        raise OptionError(option, path, f"cannot read the {what}: {e.strerror or e}") from None


def _certificates(pem: bytes, path: str, option: str, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise OptionError(option, path, f"no PEM certificate in the {what}: {e}") from None


_PRIVATE_KEY_PEM = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)


def _private_key(pem: bytes, path: str, option: str) -> PrivateKeyTypes:
    match = _PRIVATE_KEY_PEM.search(pem)  # the file may hold certificates too
    if match is None:
        raise OptionError(option, path, "no PEM private key in the file")
    try:
        return serialization.load_pem_private_key(match.group(0), password=None)
    except (ValueError, TypeError) as e:
        raise OptionError(option, path, f"cannot load the private key: {e}") from None


def server_tls_options(
    options: ListenerOptions,
    *,
    private_key: str | None = None,
    cert_key: str | None = None,
    extra_cert_chain: str | None = None,
    dh_parameters: str | None = None,
) -> ssl.CertificateOptions:
    """The TLS server settings of one listener.

    The key comes from ``private_key`` (the spec's ``privateKey=``) or ``options.tls_key_file``;
    the certificate from ``cert_key``, else the file the key came from when that was the spec's
    (Twisted's rule: one PEM may hold both), else ``options.tls_cert_file``, else the key file.
    Files are read and checked now, so a bad path or a key that does not match its certificate
    is an :class:`~syslogsrc.options.OptionError` at start-up, not a failure per connection.
    """
    if private_key is not None:
        key_file, key_option = private_key, "listen"
        cert_file, cert_option = (cert_key or private_key), "listen"
    else:
        if options.tls_key_file is None:
            raise OptionError(
                "tls-key-file", None, "a TLS listener needs a key: privateKey= or tls-key-file"
            )
        key_file, key_option = options.tls_key_file, "tls-key-file"
        if cert_key is not None:
            cert_file, cert_option = cert_key, "listen"
        elif options.tls_cert_file is not None:
            cert_file, cert_option = options.tls_cert_file, "tls-cert-file"
        else:
            cert_file, cert_option = key_file, key_option
    key = _private_key(_read(key_file, key_option, "private key"), key_file, key_option)
    # The certificate file may go on with intermediate certificates: they are sent too.
    certificate, *chain = _certificates(
        _read(cert_file, cert_option, "certificate"), cert_file, cert_option, "certificate file"
    )
    if extra_cert_chain is not None:
        pem = _read(extra_cert_chain, "listen", "certificate chain")
        chain += _certificates(pem, extra_cert_chain, "listen", "certificate chain")
    dh = None
    if dh_parameters is not None:
        _read(dh_parameters, "listen", "DH parameters")
        dh = ssl.DiffieHellmanParameters.fromFile(FilePath(dh_parameters))

    verify: dict[str, Any] = {}
    policy = options.peer_verify
    if policy != "none":
        assert options.tls_ca_file is not None  # ListenerOptions checks it
        pem = _read(options.tls_ca_file, "tls-ca-file", "CA file")
        cas = _certificates(pem, options.tls_ca_file, "tls-ca-file", "CA file")
        verify = {
            "verify": True,
            # The trust store wants pyOpenSSL's X509; the rest takes cryptography's objects.
            "caCerts": [crypto.X509.from_cryptography(ca) for ca in cas],
            "requireCertificate": policy == "required",
        }
    tls_options = ssl.CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=certificate,  # type: ignore[arg-type]
        extraCertChain=chain or None,  # type: ignore[arg-type]
        dhParameters=dh,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        **verify,
    )
    try:
        tls_options.getContext()  # the context every connection will share; fails now if bad
    except SSL.Error as e:
        raise OptionError(key_option, key_file, f"unusable key or certificate: {e}") from None
    return tls_options


def _ssl_reason(failure: Failure) -> str:
    """OpenSSL's error queue as one short string ("peer did not return a certificate")."""
    value = failure.value
    errors = value.args[0] if value.args else None
    if isinstance(errors, list) and errors and all(isinstance(e, tuple) for e in errors):
        return "; ".join(str(e[-1]) for e in errors)
    return str(value) or type(value).__name__


@implementer(IHandshakeListener)
class HandshakeWatch(ProtocolWrapper):
    """Sits right inside the TLS layer; tells a failed handshake from a closed connection."""

    factory: HandshakeWatchFactory
    handshake_done = False

    def handshakeCompleted(self) -> None:
        self.handshake_done = True
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def connectionLost(self, reason: Failure) -> None:
        if not self.handshake_done and reason.check(SSL.Error):
            self.factory.stats.refused += 1
            self.factory.failures(peer=self.getPeer(), reason=_ssl_reason(reason))
        super().connectionLost(reason)


class HandshakeWatchFactory(WrappingFactory):
    protocol = HandshakeWatch
    noisy = False

    def __init__(
        self, reactor: IReactorTime, wrappedFactory: IProtocolFactory, stats: ListenerStats
    ) -> None:
        super().__init__(wrappedFactory)
        self.stats = stats
        self.failures = RateLimitedLog(
            reactor,
            "{listener}: refused {count} TLS connection(s){span}:"
            " handshake failed; last from {peer}: {reason}",
            listener=stats.name,
        )

    def flush_logs(self) -> None:
        self.failures.flush()


def tls_server_factory(
    reactor: IReactorTime,
    wrapped: IProtocolFactory,
    tls_options: ssl.CertificateOptions,
    stats: ListenerStats,
) -> tuple[TLSMemoryBIOFactory, HandshakeWatchFactory]:
    """Wrap ``wrapped`` with server-side TLS. Returns the factory to listen with, and the
    handshake watch (for :meth:`HandshakeWatchFactory.flush_logs`)."""
    watch = HandshakeWatchFactory(reactor, wrapped, stats)
    return TLSMemoryBIOFactory(tls_options, False, watch, clock=reactor), watch

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

:class:`ReloadableTLS` is what the TLS layer asks for each new connection's ``SSL.Connection``:
it holds the listener's current ``CertificateOptions`` and swaps it for one built from the files
as they are now on :meth:`ReloadableTLS.reload` (SIGHUP in twistd, a handed-over listener) or,
with ``tls-reload-interval``, when the files change. A connection keeps the context it was made
with, so established connections are untouched; a new set of files that does not load (missing,
garbage, a key that does not match the certificate, a CA file without certificates) is logged,
naming the file and the option, and the previous context stays.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto
from twisted.internet import ssl, task
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from syslogsrc.interfaces import ListenerStats
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols._ratelimit import RateLimitedLog

__all__ = [
    "HandshakeWatch",
    "HandshakeWatchFactory",
    "ReloadableTLS",
    "server_tls_options",
    "tls_server_factory",
]

_log = Logger(namespace="syslogsrc.tls")


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
    """Wraps a listener's factory inside the TLS layer: counts and logs failed handshakes."""

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


#: what a file is now, as far as a change goes: (device, inode, size, mtime), None if missing
_Stamp = tuple[int, int, int, int] | None


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)  # follows symlinks: certbot's live/ links change target
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


#: the settings each TLS configuration last took, by :class:`ReloadableTLS` key: what a new
#: source instance (a daemon reload) keeps when the files went bad meanwhile. One entry per
#: listener configuration the process has seen.
_last_taken: dict[Hashable, ssl.CertificateOptions] = {}


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """A listener's TLS server settings, which can be replaced while it serves.

    Each new connection gets an ``SSL.Connection`` on the context of ``current``;
    :meth:`reload` builds new settings from the same files (read again) and swaps them in one
    assignment, in the reactor's thread. Connections already made keep the context they were
    made with (OpenSSL counts its references), so they go on as they were.

    :param build: makes the settings from the files as they are now; raises
        :class:`~syslogsrc.options.OptionError` (naming the option and the file) when one
        does not load.
    :param files: every file ``build`` reads, to tell when one changed.
    :param key: what identifies this listener's TLS configuration across source instances
        (a daemon reload makes new ones in the same process): when the files do not load at
        creation, the settings last taken under the same key, if any, are kept (and the error
        logged); without any, the error propagates, as at start-up.
    """

    def __init__(
        self,
        build: Callable[[], ssl.CertificateOptions],
        files: tuple[str, ...],
        *,
        name: str = "tls",
        reactor: IReactorTime | None = None,
        key: Hashable | None = None,
    ) -> None:
        self._build = build
        self.files = files
        self.name = name
        self._reactor = reactor
        self._key = key
        self.reloads = 0  #: times new settings were taken
        self.failures = 0  #: reloads that kept the previous settings
        self._stamps = self._stamp_files()  # before reading: a change meanwhile is seen later
        try:
            self.current = build()
        except OptionError as e:
            previous = _last_taken.get(key) if key is not None else None
            if previous is None:
                raise  # start-up: the listener is not made, the error names the option
            self.current = previous
            self._failed(e)
        self._taken()
        self._seen = self._stamps  # the stamps of the previous poll
        self._loop: task.LoopingCall | None = None

    @classmethod
    def from_options(
        cls,
        options: ListenerOptions,
        *,
        name: str = "tls",
        reactor: IReactorTime | None = None,
        private_key: str | None = None,
        cert_key: str | None = None,
        extra_cert_chain: str | None = None,
        dh_parameters: str | None = None,
    ) -> ReloadableTLS:
        """The settings :func:`server_tls_options` makes for these arguments, reloadable."""
        files = [private_key or options.tls_key_file, cert_key, extra_cert_chain, dh_parameters]
        if private_key is None:
            files.append(options.tls_cert_file)
        if options.peer_verify != "none":
            files.append(options.tls_ca_file)
        unique = tuple(dict.fromkeys(f for f in files if f is not None))
        return cls(
            lambda: server_tls_options(
                options,
                private_key=private_key,
                cert_key=cert_key,
                extra_cert_chain=extra_cert_chain,
                dh_parameters=dh_parameters,
            ),
            unique,
            name=name,
            reactor=reactor,
            key=(name, unique, options.peer_verify),
        )

    # -- IOpenSSLServerConnectionCreator ----------------------------------------------------
    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.current.getContext(), None)

    # -- reloading ----------------------------------------------------------------------------
    def _stamp_files(self) -> tuple[_Stamp, ...]:
        return tuple(_stamp(f) for f in self.files)

    def reload(self) -> bool:
        """Read the files again; True if new connections now get the new settings. On an error
        the previous settings stay, and the error (option and file) is logged."""
        stamps = self._stamp_files()
        try:
            new = self._build()
        except OptionError as e:
            self._stamps = self._seen = stamps  # a poll retries when a file changes again
            self._failed(e)
            return False
        self.current = new
        self._taken()
        self._stamps = self._seen = stamps
        self.reloads += 1
        _log.info(
            "{listener}: TLS files reloaded; new connections get {certificate}",
            listener=self.name,
            certificate=describe(new),
        )
        return True

    def _failed(self, error: OptionError) -> None:
        self.failures += 1
        _log.error(
            "{listener}: TLS files not reloaded, new connections keep the previous"
            " certificate: {error}",
            listener=self.name,
            error=str(error),
        )

    def _taken(self) -> None:
        if self._key is not None:
            _last_taken[self._key] = self.current

    def poll(self) -> bool:
        """Reload if a file changed and has not changed since the previous poll (a rotation
        writes several files: the settings are taken once they all stand still). True if it
        reloaded."""
        stamps = self._stamp_files()
        settled = stamps == self._seen
        self._seen = stamps
        if stamps == self._stamps or not settled:
            return False
        return self.reload()

    def start_polling(self, interval: float) -> None:
        """Call :meth:`poll` every ``interval`` seconds on the reactor (0: never)."""
        if interval <= 0 or self._loop is not None:
            return
        assert self._reactor is not None, "polling needs the reactor"
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self._reactor
        self._loop.start(interval, now=False).addErrback(
            lambda f: _log.failure("{listener}: TLS file poll", f, listener=self.name)
        )

    def stop_polling(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


def describe(tls_options: ssl.CertificateOptions) -> str:
    """``subject CN=localhost, serial 0x1f.., valid until 2026-01-02T03:04:05Z``"""
    cert = tls_options.certificate
    if isinstance(cert, crypto.X509):
        cert = cert.to_cryptography()
    if not isinstance(cert, x509.Certificate):  # pragma: no cover - always one of the two
        return "the new certificate"
    until = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"subject {cert.subject.rfc4514_string()}, serial {cert.serial_number:#x},"
        f" valid until {until}"
    )


def tls_server_factory(
    reactor: IReactorTime,
    wrapped: IProtocolFactory,
    tls_options: ssl.CertificateOptions | ReloadableTLS,
    stats: ListenerStats,
) -> tuple[TLSMemoryBIOFactory, HandshakeWatchFactory]:
    """Wrap ``wrapped`` with server-side TLS. Returns the factory to listen with, and the
    handshake watch (for ``HandshakeWatchFactory.flush_logs()``)."""
    watch = HandshakeWatchFactory(reactor, wrapped, stats)
    return TLSMemoryBIOFactory(tls_options, False, watch, clock=reactor), watch

"""Test PKI made at test time (no key is ever committed): two CAs, a server, two clients.

``make_certs(directory)`` writes PEM files and returns their paths::

    ca.pem                      the CA the listener trusts (tls-ca-file)
    server.key / server.pem     the listener's key and certificate (SAN localhost, 127.0.0.1, ::1)
    server-combined.pem         key and certificate in one file (Twisted's privateKey= alone)
    client.key / client.pem     a client certificate issued by ca.pem
    other-ca.pem                an unrelated CA
    other-client.key / .pem     a client certificate issued by other-ca.pem (must be refused)
    ca.key, other-ca.key        the CAs' keys, for :func:`reissue_server`

``reissue_server(certs)`` replaces the server's key and certificate (certificate rotation).

EC P-256 keys: generating them takes milliseconds, so every test session makes fresh ones.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs", "reissue_server"]


@attrs.frozen
class Certs:
    directory: Path
    ca: Path
    server_key: Path
    server_cert: Path
    server_combined: Path
    client_key: Path
    client_cert: Path
    other_ca: Path
    other_client_key: Path
    other_client_cert: Path
    ca_key: Path
    other_ca_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: str, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        _builder(common_name, _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    common_name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    builder = (
        _builder(common_name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certs(directory: Path) -> Certs:
    """Write a fresh test PKI into ``directory`` (which must exist)."""
    ca_key, ca_cert = _ca("syslogsrc test CA")
    other_ca_key, other_ca_cert = _ca("syslogsrc other CA")
    server_key, server_cert = _leaf("localhost", ca_key, ca_cert, server=True)
    client_key, client_cert = _leaf("client", ca_key, ca_cert, server=False)
    other_key, other_cert = _leaf("intruder", other_ca_key, other_ca_cert, server=False)
    files = {
        "ca.pem": _cert_pem(ca_cert),
        "server.key": _key_pem(server_key),
        "server.pem": _cert_pem(server_cert),
        "server-combined.pem": _key_pem(server_key) + _cert_pem(server_cert),
        "client.key": _key_pem(client_key),
        "client.pem": _cert_pem(client_cert),
        "other-ca.pem": _cert_pem(other_ca_cert),
        "other-client.key": _key_pem(other_key),
        "other-client.pem": _cert_pem(other_cert),
        "ca.key": _key_pem(ca_key),
        "other-ca.key": _key_pem(other_ca_key),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return Certs(
        directory=directory,
        ca=directory / "ca.pem",
        server_key=directory / "server.key",
        server_cert=directory / "server.pem",
        server_combined=directory / "server-combined.pem",
        client_key=directory / "client.key",
        client_cert=directory / "client.pem",
        other_ca=directory / "other-ca.pem",
        other_client_key=directory / "other-client.key",
        other_client_cert=directory / "other-client.pem",
        ca_key=directory / "ca.key",
        other_ca_key=directory / "other-ca.key",
    )


def _replace(path: Path, content: bytes) -> None:
    """Write ``path`` as a rotation tool does: a new file renamed over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(content)
    os.replace(new, path)


def reissue_server(certs: Certs, common_name: str = "localhost") -> x509.Certificate:
    """A new server key and certificate from the same CA, written over server.key,
    server.pem and server-combined.pem (each replaced by a rename). Returns the certificate."""
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key, cert = _leaf(common_name, ca_key, ca_cert, server=True)
    _replace(certs.server_key, _key_pem(key))
    _replace(certs.server_cert, _cert_pem(cert))
    _replace(certs.server_combined, _key_pem(key) + _cert_pem(cert))
    return cert

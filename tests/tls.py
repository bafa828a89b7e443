"""A throw-away certificate authority for TLS tests: a CA, a server and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from belltower.natsauth import ServerTLS


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_pem = directory / "ca.pem"
    if ca_pem.exists():
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        return key, x509.load_pem_x509_certificate(ca_pem.read_bytes())  # type: ignore[return-value]
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Belltower test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca", key, cert)
    return key, cert


def _issue(directory: Path, name: str, usage: x509.ObjectIdentifier) -> tuple[Path, Path]:
    ca_key, ca_cert = _ca(directory)
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / name, key, cert)
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_ca_and_server_cert(directory: Path, *, verify_clients: bool = False) -> ServerTLS:
    """A CA and a certificate for nats-server on 127.0.0.1 / localhost, signed by it."""
    cert, key = _issue(directory, "server", ExtendedKeyUsageOID.SERVER_AUTH)
    return ServerTLS(cert=cert, key=key, ca=directory / "ca.pem", verify=verify_clients)


def make_client_cert(directory: Path) -> tuple[Path, Path]:
    """A client certificate from the same CA (call after :func:`make_ca_and_server_cert`)."""
    return _issue(directory, "client", ExtendedKeyUsageOID.CLIENT_AUTH)

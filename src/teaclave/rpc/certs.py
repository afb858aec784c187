"""RA-TLS certificates: an X.509 certificate whose extension carries evidence.

The extension is interoperable RA-TLS (:mod:`teaclave.attestation.ratls`):
the evidence's report data is SHA-256 of claims that bind the certificate's
public key, name the service and date the evidence, so the evidence vouches
for exactly this key. Server certificates are self-signed (clients pin them);
client certificates of services are issued by the platform CA so that
internal servers can require them in the TLS handshake, then check their
evidence per call.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=90)


def server_name(service: str) -> str:
    """The DNS name in a service's certificate (clients override the target name to it)."""
    return f"{service.replace('_', '-')}.teaclave"


def _builder(
    subject: str,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    validity: datetime.timedelta = VALIDITY,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )


def make_server_cert(
    service: str,
    key: ec.EllipticCurvePrivateKey,
    evidence: x509.UnrecognizedExtension,
    now: datetime.datetime,
) -> x509.Certificate:
    """A self-signed server certificate carrying ``evidence``."""
    name = server_name(service)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        _builder(name, subject, key, now)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(evidence, critical=False)
        .sign(key, hashes.SHA256())
    )


def make_platform_ca(key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    """The platform CA certificate that issues services' client certificates."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Teaclave platform")])
    return (
        _builder("Teaclave platform", name, key, now, datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


def make_client_cert(
    service: str,
    key: ec.EllipticCurvePrivateKey,
    evidence: x509.UnrecognizedExtension,
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> x509.Certificate:
    """A client certificate for ``service``, issued by the platform CA."""
    return (
        _builder(server_name(service), ca_cert.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(evidence, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def to_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of ``key`` (kept in memory only)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

"""Certificate chains of TEE vendors, checked at a given time, with revocation lists.

Vendor chains (Intel PCK, AMD ARK/ASK/VEK, AWS Nitro) are not web PKI: the
checks here are the ones they need, made explicitly — each certificate valid at
``at``, issued (name and signature) by the next, the last by the trusted root,
none revoked by a CRL signed by its issuer and current at ``at``. Failures raise
:class:`PkiError` naming the certificate and the problem.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

CERTIFICATE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
"""What ``cryptography`` raises for a malformed certificate, on loading or on first use
of a lazily parsed field (subject, extensions, key)."""


class PkiError(Exception):
    """A chain, signature or CRL did not verify; the message says which and why."""


def name(cert: x509.Certificate) -> str:
    """A certificate's subject, for messages (its common name if it has one)."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def load_der_certificate(data: bytes) -> x509.Certificate:
    """A DER certificate; AMD's VCEK/VLEK have serial number 0, which is tolerated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(data)


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """The PEM certificates in ``data`` (NUL padding allowed); PkiError if there are none."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
            return x509.load_pem_x509_certificates(data.rstrip(b"\0"))
    except ValueError as exc:
        raise PkiError(f"malformed PEM certificates: {exc}") from None


def _check_time(cert: x509.Certificate, at: datetime) -> None:
    start = cert.not_valid_before_utc
    if at < start:
        raise PkiError(f"certificate {name(cert)!r} is not valid before {start}")
    if at > cert.not_valid_after_utc:
        raise PkiError(f"certificate {name(cert)!r} expired at {cert.not_valid_after_utc}")


def _check_issued(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        detail = str(exc) or "bad signature"
        message = f"certificate {name(cert)!r} is not issued by {name(issuer)!r}: {detail}"
        raise PkiError(message) from None


def _check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, at: datetime) -> None:
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise PkiError(f"CRL of {name(issuer)!r} has a bad signature")
    if at < crl.last_update_utc:
        raise PkiError(f"CRL of {name(issuer)!r} is not valid before {crl.last_update_utc}")
    next_update = crl.next_update_utc
    if next_update is not None and at > next_update:
        raise PkiError(f"CRL of {name(issuer)!r} expired at {next_update}")


def verify_chain(
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    at: datetime,
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> None:
    """Check ``chain`` (leaf first; it may end with ``root`` itself) up to ``root`` at ``at``.

    Each CRL applies to the certificates its issuer issued; it must be signed by
    that issuer and current at ``at``. PkiError on the first problem found.
    """
    certs = list(chain)
    if certs and certs[-1] == root:
        certs.pop()
    if not certs:
        raise PkiError("empty certificate chain")
    _check_time(root, at)
    _check_issued(root, root)
    path = [*certs, root]
    for cert, issuer in itertools.pairwise(path):
        _check_time(cert, at)
        _check_issued(cert, issuer)
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            _check_crl(crl, issuer, at)
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise PkiError(f"certificate {name(cert)!r} is revoked by {name(issuer)!r}")


def raw_ecdsa(signature: bytes) -> bytes:
    """DER of a raw ``r ‖ s`` ECDSA signature (both halves big-endian, equal length)."""
    half = len(signature) // 2
    if not signature or len(signature) % 2:
        raise PkiError(f"raw ECDSA signature has odd length {len(signature)}")
    r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    return encode_dss_signature(r, s)


def p256_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its raw 64-byte ``X ‖ Y``."""
    if len(point) != 64:
        raise PkiError(f"raw P-256 key must be 64 bytes, not {len(point)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + point)
    except ValueError:
        raise PkiError("raw P-256 key is not a point on the curve") from None

"""Auditor-signed enclave info: the measurements each service may run, accepted m-of-n.

A document is canonical JSON (sorted keys, no spaces)::

    {"enclave_info": {"measurements": {"<service>": ["<hex>", ...]}, "release": "...",
                      "version": 1},
     "signatures": [{"algorithm": "ed25519", "signature": "<hex>", "signer": "<name>"}]}

Each auditor signs ``DOMAIN`` followed by the canonical bytes of the
``enclave_info`` object (measurement lists sorted, lowercase hex), with Ed25519
or ECDSA (P-256/SHA-256, P-384/SHA-384; DER signatures). Decoding is strict —
no unknown or duplicate keys, no non-canonical hex, no repeated measurements —
so what is accepted is exactly what was signed.

Verification rules: the threshold is at least 1 and reachable with the
configured auditors (else ``ValueError``: a configuration mistake); signatures
by names that are not auditors are ignored; an auditor counts once however
many times it signs, and auditors sharing one key count as one; a signature
by a known auditor that does not verify (or names the wrong algorithm) is an
error, not merely uncounted, since it means tampering or a misconfigured key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

AuditorKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

DOMAIN = b"teaclave-enclave-info-v1\x00"
VERSION = 1
MAX_DOCUMENT_BYTES = 1 << 20
MAX_MEASUREMENT_BYTES = 64
ED25519 = "ed25519"
_ECDSA = {
    "secp256r1": ("ecdsa-p256-sha256", hashes.SHA256),
    "secp384r1": ("ecdsa-p384-sha384", hashes.SHA384),
}
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


class EnclaveInfoError(Exception):
    """A document that is malformed or not signed by enough auditors; the message says which."""


@dataclass(frozen=True)
class EnclaveInfo:
    """Accepted measurements per service, for one release."""

    measurements: Mapping[str, frozenset[bytes]]
    release: str

    def body(self) -> dict[str, Any]:
        """The canonical JSON object that auditors sign."""
        return {
            "measurements": {
                service: sorted(m.hex() for m in accepted)
                for service, accepted in self.measurements.items()
            },
            "release": self.release,
            "version": VERSION,
        }

    def signed_bytes(self) -> bytes:
        """Exactly what a signature covers: the domain prefix and the canonical body."""
        return DOMAIN + _canonical(self.body())


@dataclass(frozen=True)
class Signature:
    """One auditor's signature over an :class:`EnclaveInfo`."""

    signer: str
    algorithm: str
    value: bytes


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _algorithm(key: AuditorKey | SigningKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return ED25519
    if key.curve.name not in _ECDSA:
        raise ValueError(f"unsupported ECDSA curve {key.curve.name} (use P-256 or P-384)")
    return _ECDSA[key.curve.name][0]


def _ecdsa(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> ec.ECDSA:
    return ec.ECDSA(_ECDSA[key.curve.name][1]())


def sign(info: EnclaveInfo, key: SigningKey, signer: str) -> Signature:
    """``signer``'s signature over ``info`` with ``key``."""
    algorithm, message = _algorithm(key), info.signed_bytes()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Signature(signer, algorithm, key.sign(message))
    return Signature(signer, algorithm, key.sign(message, _ecdsa(key)))


def encode(info: EnclaveInfo, signatures: Sequence[Signature]) -> bytes:
    """The canonical document."""
    return _canonical(
        {
            "enclave_info": info.body(),
            "signatures": [
                {"algorithm": s.algorithm, "signature": s.value.hex(), "signer": s.signer}
                for s in signatures
            ],
        }
    )


# --- decoding ---------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise EnclaveInfoError("malformed enclave info: duplicate JSON key")
    return result


def _object(value: object, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise EnclaveInfoError(f"malformed enclave info: {what} must have exactly {sorted(keys)}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise EnclaveInfoError(f"malformed enclave info: {what} must be a non-empty string")
    return value


def _hex(value: object, what: str, limit: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise EnclaveInfoError(f"malformed enclave info: {what} is not lowercase hex")
    data = bytes.fromhex(value)
    if limit is not None and len(data) > limit:
        raise EnclaveInfoError(f"malformed enclave info: {what} is longer than {limit} bytes")
    return data


def _measurements(value: object) -> dict[str, frozenset[bytes]]:
    if not isinstance(value, dict):
        raise EnclaveInfoError("malformed enclave info: measurements must be an object")
    result: dict[str, frozenset[bytes]] = {}
    for service, listed in value.items():
        _text(service, "service name")
        if not isinstance(listed, list):
            raise EnclaveInfoError(
                f"malformed enclave info: measurements of {service!r} not a list"
            )
        accepted = [_hex(m, f"a measurement of {service!r}", MAX_MEASUREMENT_BYTES) for m in listed]
        if len(set(accepted)) != len(accepted):
            raise EnclaveInfoError(f"malformed enclave info: {service!r} repeats a measurement")
        result[service] = frozenset(accepted)
    return result


def _signature(value: object) -> Signature:
    fields = _object(value, {"algorithm", "signature", "signer"}, "a signature")
    return Signature(
        signer=_text(fields["signer"], "signer"),
        algorithm=_text(fields["algorithm"], "algorithm"),
        value=_hex(fields["signature"], "signature value"),
    )


def decode(data: bytes) -> tuple[EnclaveInfo, list[Signature]]:
    """Parse a document (signatures not checked); EnclaveInfoError on any defect."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise EnclaveInfoError("malformed enclave info: document too large")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EnclaveInfoError(
            f"malformed enclave info: not JSON ({exc.__class__.__name__})"
        ) from None
    top = _object(document, {"enclave_info", "signatures"}, "the document")
    body = _object(top["enclave_info"], {"measurements", "release", "version"}, "enclave_info")
    if type(body["version"]) is not int or body["version"] != VERSION:
        raise EnclaveInfoError(f"malformed enclave info: unsupported version {body['version']!r}")
    info = EnclaveInfo(_measurements(body["measurements"]), _text(body["release"], "release"))
    if not isinstance(top["signatures"], list):
        raise EnclaveInfoError("malformed enclave info: signatures must be a list")
    return info, [_signature(s) for s in top["signatures"]]


# --- verification -----------------------------------------------------------------------


def _identity(key: AuditorKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_auditors(auditors: Mapping[str, AuditorKey], threshold: int) -> None:
    """ValueError unless ``threshold`` ≥ 1 and the distinct auditor keys can reach it."""
    if threshold < 1:
        raise ValueError(f"enclave info threshold must be at least 1, not {threshold}")
    for key in auditors.values():
        _algorithm(key)
    distinct = len({_identity(key) for key in auditors.values()})
    if distinct < threshold:
        raise ValueError(f"threshold {threshold} exceeds the {distinct} distinct auditor keys")


def _verifies(key: AuditorKey, signature: Signature, message: bytes) -> bool:
    if signature.algorithm != _algorithm(key):
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature.value, message)
        else:
            key.verify(signature.value, message, _ecdsa(key))
    except InvalidSignature:
        return False
    return True


def verify(data: bytes, *, auditors: Mapping[str, AuditorKey], threshold: int) -> EnclaveInfo:
    """The enclave info in ``data`` if at least ``threshold`` distinct auditors signed it."""
    check_auditors(auditors, threshold)
    info, signatures = decode(data)
    message = info.signed_bytes()
    counted: set[bytes] = set()
    signers: list[str] = []
    for signature in signatures:
        key = auditors.get(signature.signer)
        if key is None:
            continue  # not an auditor of ours
        if not _verifies(key, signature, message):
            raise EnclaveInfoError(
                f"signature of auditor {signature.signer!r} ({signature.algorithm}) does not verify"
            )
        if _identity(key) not in counted:
            counted.add(_identity(key))
            signers.append(signature.signer)
    if len(counted) < threshold:
        by = ", ".join(signers) or "nobody"
        raise EnclaveInfoError(
            f"enclave info has {len(counted)} of the {threshold} required auditor signatures "
            f"(valid: {by})"
        )
    return info


# --- keys ---------------------------------------------------------------------------------


def load_public_key(pem: bytes) -> AuditorKey:
    """An auditor's public key from PEM; ValueError unless Ed25519 or ECDSA P-256/P-384."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"auditor keys must be Ed25519 or ECDSA, not {type(key).__name__}")
    _algorithm(key)
    return key


def load_private_key(pem: bytes, password: bytes | None = None) -> SigningKey:
    """An auditor's signing key from PEM; ValueError unless Ed25519 or ECDSA P-256/P-384."""
    key = serialization.load_pem_private_key(pem, password)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"auditor keys must be Ed25519 or ECDSA, not {type(key).__name__}")
    _algorithm(key)
    return key

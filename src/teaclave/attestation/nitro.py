"""AWS Nitro Enclaves attestation documents: parse, and verify against the AWS root at ``now``.

A document is a COSE_Sign1 (ES384, usually untagged) whose payload is a CBOR
map: ``module_id``, ``digest``, ``timestamp`` (ms), ``pcrs``, the leaf
``certificate``, ``cabundle`` (root first) and the optional ``public_key``,
``user_data`` and ``nonce``. :func:`verify_document` checks the chain
leaf ← cabundle[-1] ← … ← cabundle[0] = the given root at ``now`` (leaf
certificates live about three hours), then the signature with the leaf key.
Debug-mode enclaves have PCR0-2 all zero: they are reported with
``debug=True``, and refusing them is the policy's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from teaclave.attestation import cose, pki
from teaclave.attestation.appraisal import NITRO, Appraisal

ROOT_G1_SHA256 = bytes.fromhex("641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b")
"""SHA-256 of the DER of AWS_NitroEnclaves_Root-G1 (CN=aws.nitro-enclaves), to pin the root."""

MAX_OPTIONAL_BYTES = 1024
DEBUG_PCRS = (0, 1, 2)


class NitroFormatError(ValueError):
    """Bytes that are not a well-formed Nitro attestation document."""


@dataclass(frozen=True)
class Document:
    """A parsed (not yet verified) attestation document."""

    sign1: cose.Sign1
    module_id: str
    digest: str
    timestamp: datetime
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    @property
    def debug(self) -> bool:
        """True when PCR0-2 are all zero (or absent): a debug-mode enclave."""
        return not any(any(self.pcrs.get(index, b"")) for index in DEBUG_PCRS)


_KINDS: Mapping[str, type | UnionType] = {
    "text": str,
    "int": int,
    "bytes": bytes,
    "array": list | tuple,
    "map": Mapping,
}


def _field(payload: Mapping[object, object], key: str, kind: str) -> Any:
    value = payload.get(key)
    if not isinstance(value, _KINDS[kind]) or isinstance(value, bool):
        raise NitroFormatError(f"payload field {key!r} is missing or not {kind}")
    return value


def _optional(payload: Mapping[object, object], key: str) -> bytes | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) > MAX_OPTIONAL_BYTES:
        raise NitroFormatError(f"payload field {key!r} is not a byte string of ≤ 1024 bytes")
    return value


def _pcrs(value: Mapping[object, object]) -> dict[int, bytes]:
    pcrs: dict[int, bytes] = {}
    for index, digest in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 32:
            raise NitroFormatError(f"PCR index {index!r} is not in 0..31")
        if not isinstance(digest, bytes) or len(digest) not in (32, 48, 64):
            raise NitroFormatError(f"PCR{index} is not a 32, 48 or 64-byte string")
        pcrs[index] = digest
    if not pcrs:
        raise NitroFormatError("payload has no PCRs")
    return dict(sorted(pcrs.items()))


def _timestamp(millis: int) -> datetime:
    if millis < 0:
        raise NitroFormatError(f"timestamp {millis} is negative")
    try:
        return datetime.fromtimestamp(millis // 1000, UTC) + timedelta(milliseconds=millis % 1000)
    except (OverflowError, ValueError, OSError):
        raise NitroFormatError(f"timestamp {millis} is out of range") from None


def parse_document(document: bytes) -> Document:
    """The COSE envelope and payload fields of ``document``; NitroFormatError if malformed."""
    try:
        sign1 = cose.decode_sign1(document)
        payload = cose.decode_cbor(sign1.payload)
    except cose.CoseError as exc:
        raise NitroFormatError(str(exc)) from None
    if not isinstance(payload, Mapping):
        raise NitroFormatError("payload is not a CBOR map")
    cabundle = tuple(_field(payload, "cabundle", "array"))
    if not cabundle or not all(isinstance(cert, bytes) for cert in cabundle):
        raise NitroFormatError("cabundle is not a non-empty list of byte strings")
    return Document(
        sign1=sign1,
        module_id=_field(payload, "module_id", "text"),
        digest=_field(payload, "digest", "text"),
        timestamp=_timestamp(_field(payload, "timestamp", "int")),
        pcrs=_pcrs(_field(payload, "pcrs", "map")),
        certificate=_field(payload, "certificate", "bytes"),
        cabundle=cabundle,
        public_key=_optional(payload, "public_key"),
        user_data=_optional(payload, "user_data"),
        nonce=_optional(payload, "nonce"),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _facts(doc: Document) -> dict[str, Any]:
    """The Appraisal fields the document gives, verified or not."""
    return {
        "measurements": {f"pcr{index}": value.hex() for index, value in doc.pcrs.items()},
        "report_data": doc.user_data or b"",
        "debug": doc.debug,
        "signer": f"AWS Nitro Enclaves (module {doc.module_id})",
        "details": {
            "module_id": doc.module_id,
            "digest": doc.digest,
            "timestamp": _iso(doc.timestamp),
            "public_key": (doc.public_key or b"").hex(),
            "nonce": (doc.nonce or b"").hex(),
            "user_data": (doc.user_data or b"").hex(),
        },
    }


def _load(der: bytes, what: str) -> x509.Certificate:
    try:
        return pki.load_der_certificate(der)
    except pki.CERTIFICATE_ERRORS:
        raise pki.PkiError(f"{what} is not a DER certificate") from None


def _check_chain(doc: Document, root: x509.Certificate, now: datetime) -> ec.EllipticCurvePublicKey:
    """The leaf key, once the chain to ``root`` holds at ``now``; PkiError otherwise."""
    if doc.cabundle[0] != root.public_bytes(Encoding.DER):
        first = _load(doc.cabundle[0], "cabundle[0]")
        raise pki.PkiError(f"cabundle[0] {pki.name(first)!r} is not the trusted root")
    leaf = _load(doc.certificate, "certificate")
    bundle = [_load(der, f"cabundle[{i}]") for i, der in enumerate(doc.cabundle)]
    pki.verify_chain([leaf, *reversed(bundle)], root, now)
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise pki.PkiError(f"leaf certificate {pki.name(leaf)!r} has no P-384 key")
    return key


def verify_document(document: bytes, *, root: x509.Certificate, now: datetime) -> Appraisal:
    """Appraise ``document`` against ``root`` at ``now`` (timezone-aware).

    Never raises on bad input: a malformed, tampered or expired document is an
    invalid Appraisal with the reason.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")  # a caller's bug, not bad evidence
    try:
        doc = parse_document(document)
    except NitroFormatError as exc:
        return Appraisal(tee=NITRO, valid=False, reason=f"malformed attestation document: {exc}")
    facts = _facts(doc)
    if doc.sign1.algorithm != cose.ES384:
        reason = f"COSE algorithm {doc.sign1.algorithm!r} is not ES384 ({cose.ES384})"
        return Appraisal(tee=NITRO, valid=False, reason=reason, **facts)
    if doc.digest != "SHA384":
        reason = f"digest {doc.digest!r} is not SHA384"
        return Appraisal(tee=NITRO, valid=False, reason=reason, **facts)
    try:
        key = _check_chain(doc, root, now)
    except pki.PkiError as exc:
        return Appraisal(tee=NITRO, valid=False, reason=f"certificate chain: {exc}", **facts)
    except pki.CERTIFICATE_ERRORS as exc:
        reason = f"certificate chain: malformed certificate: {exc}"
        return Appraisal(tee=NITRO, valid=False, reason=reason, **facts)
    try:
        doc.sign1.verify(key)
    except cose.CoseError as exc:
        return Appraisal(tee=NITRO, valid=False, reason=f"COSE_Sign1 {exc}", **facts)
    return Appraisal(tee=NITRO, valid=True, **facts)

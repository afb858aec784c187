"""RA-TLS certificates: the evidence a certificate carries, and whether it binds its key.

Three conventions are read (see docs/attestation.md):

* ``interoperable`` (CCC / IETF RA-TLS: Gramine ≥ 1.8, Intel SGX SDK, rats-tls):
  extension 2.23.133.5.4.9 holds CBOR tag 60000 over ``[quote, claims]``;
  ``claims`` is a serialized CBOR map whose ``"pubkey-hash"`` is
  ``bstr .cbor [hash-alg-id, H(SPKI DER)]`` (1 = SHA-256, 7 = SHA-384,
  8 = SHA-512) and the quote's ``report_data[:32]`` is SHA-256 of the claims
  bytes. TEEs without a registered tag (simulation, SEV-SNP, Nitro) use a CMW
  record ``[MEDIA_TYPE + ";tee=<tee>", bstr .cbor [evidence, claims]]`` with
  the same rule on their report data (Nitro: ``user_data``).
* ``gramine-legacy``: OID 1.2.840.113741.1337.6, which Gramine mis-encodes so
  that parsers see 0.6.9.42.840.113741.1337.6 (both accepted); a raw SGX quote
  whose ``report_data[:32]`` is SHA-256(SPKI DER).
* ``nitro`` (Evervault Cages): the hex of a Nitro attestation document is the
  first label of the longest SAN dNSName; ``user_data`` is the SPKI DER.
  :func:`bind_document` applies the same rule to a document sent separately.

Certificates are read from their DER with a minimal reader rather than with
``cryptography``'s parser, which rejects real Gramine certificates (NULL
parameters after ecdsa-with-SHA256). The certificate's own signature is not
checked: RA-TLS certificates are self-signed, and the binding is what counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from teaclave.attestation import cose, der
from teaclave.attestation.appraisal import NITRO, SEV_SNP, SGX, TDX, Appraisal
from teaclave.attestation.evidence import SIMULATION, AttestationError, Evidence
from teaclave.attestation.intel import Collateral, verify_quote
from teaclave.attestation.nitro import NitroFormatError, parse_document, verify_document

INTEROPERABLE = "interoperable"
GRAMINE_LEGACY = "gramine-legacy"
NITRO_SAN = "nitro"
UNKNOWN = "unknown"

TAGGED_EVIDENCE_OID = x509.ObjectIdentifier("2.23.133.5.4.9")
"""TCG DICE "tagged evidence" (conceptual message wrapper): the interoperable RA-TLS extension."""
INTEL_QUOTE_TAG = 60000
MEDIA_TYPE = "application/vnd.teaclave.evidence+cbor"
"""CMW media type of Teaclave's ``[evidence, claims]`` pair for TEEs without a CBOR tag."""

_TAGGED_EVIDENCE = bytes.fromhex("678105050409")  # DER content of 2.23.133.5.4.9
_GRAMINE = bytes.fromhex("2a864886f84d8a3906")  # 1.2.840.113741.1337.6
_GRAMINE_MISENCODED = bytes.fromhex("0609") + _GRAMINE  # as Gramine writes it
_SUBJECT_ALT_NAME = bytes.fromhex("551d11")  # 2.5.29.17
_SEQUENCE, _OID, _OCTETS, _DNS_NAME, _UTC_TIME = 0x30, 0x06, 0x04, 0x82, 0x17
_VERSION, _EXTENSIONS = 0xA0, 0xA3
_HASH_ALGORITHMS = {1: "sha256", 7: "sha384", 8: "sha512"}  # IANA named-information IDs
_MAX_DNS_LABEL = 63
_CMW_TEES = (SIMULATION, SEV_SNP, NITRO)


class RatlsFormatError(ValueError):
    """A certificate without RA-TLS evidence, or with malformed evidence."""


@dataclass(frozen=True)
class CertificateEvidence:
    """Evidence found in a certificate, and whether it binds the certificate's key."""

    format: str  # INTEROPERABLE | GRAMINE_LEGACY | NITRO_SAN
    tee: str  # sgx | tdx | sev-snp | nitro | simulation | unknown
    evidence: bytes  # quote, report, attestation document or simulated evidence
    claims: Mapping[str, Any]  # interoperable: the decoded claims map; else empty
    binding_ok: bool
    binding: str  # the rule that was checked, in words


# --- a minimal DER reader -------------------------------------------------------------


def _elements(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """``(tag, whole element, content)`` of each DER element in ``data``."""
    try:
        return der.elements(data)
    except der.DerError as exc:
        raise RatlsFormatError(str(exc)) from None


def _inside(data: bytes, tag: int, what: str) -> list[tuple[int, bytes, bytes]]:
    """The elements inside ``data``, which must be exactly one element with ``tag``."""
    elements = _elements(data)
    if len(elements) != 1 or elements[0][0] != tag:
        raise RatlsFormatError(f"{what} is not a single DER element of tag {tag:#04x}")
    return _elements(elements[0][2])


def _time(tag: int, content: bytes) -> datetime:
    try:
        text = content.decode("ascii")
        if tag == _UTC_TIME:  # RFC 5280: YY ≥ 50 is 19YY
            text = ("19" if int(text[:2]) >= 50 else "20") + text
        return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise RatlsFormatError("malformed certificate validity time") from None


@dataclass(frozen=True)
class _Certificate:
    spki: bytes  # DER SubjectPublicKeyInfo, as carried
    not_before: datetime
    not_after: datetime
    extensions: Mapping[bytes, bytes]  # DER OID content → extnValue content


def _parse(cert: x509.Certificate | bytes) -> _Certificate:
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    outer = _inside(der, _SEQUENCE, "certificate")
    if not outer or outer[0][0] != _SEQUENCE:
        raise RatlsFormatError("certificate has no TBSCertificate")
    fields = _elements(outer[0][2])
    if fields and fields[0][0] == _VERSION:
        fields = fields[1:]
    if len(fields) < 6 or fields[3][0] != _SEQUENCE or fields[5][0] != _SEQUENCE:
        raise RatlsFormatError("TBSCertificate lacks validity or SubjectPublicKeyInfo")
    times = _elements(fields[3][2])
    if len(times) != 2:
        raise RatlsFormatError("certificate validity is not two times")
    extensions: dict[bytes, bytes] = {}
    for tag, _, content in fields[6:]:
        if tag != _EXTENSIONS:
            continue
        for _, extension, _ in _inside(content, _SEQUENCE, "extensions"):
            parts = _inside(extension, _SEQUENCE, "extension")
            if len(parts) < 2 or parts[0][0] != _OID or parts[-1][0] != _OCTETS:
                raise RatlsFormatError("malformed certificate extension")
            if parts[0][2] in extensions:
                raise RatlsFormatError("duplicate certificate extension")
            extensions[parts[0][2]] = parts[-1][2]
    return _Certificate(
        spki=fields[5][1],
        not_before=_time(times[0][0], times[0][2]),
        not_after=_time(times[1][0], times[1][2]),
        extensions=extensions,
    )


# --- report data of each kind of evidence ---------------------------------------------


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "little")


def quote_report_data(quote: bytes) -> tuple[str, bytes]:
    """``(tee, report_data)`` of an Intel SGX or TDX quote (v3, v4 or v5), read at fixed offsets."""
    if len(quote) < 56:
        raise RatlsFormatError("quote is too short")
    version, tee_type = _u16(quote, 0), int.from_bytes(quote[4:8], "little")
    if version == 3 or (version == 4 and tee_type == 0):
        tee, body = SGX, 48
    elif version == 4 and tee_type == 0x81:
        tee, body = TDX, 48
    elif version == 5 and _u16(quote, 48) in (1, 2, 3):
        tee, body = (SGX if _u16(quote, 48) == 1 else TDX), 54
    else:
        raise RatlsFormatError(f"not an SGX or TDX quote (version {version}, TEE {tee_type:#x})")
    offset = body + (320 if tee == SGX else 520)
    if len(quote) < offset + 64:
        raise RatlsFormatError("quote is too short")
    return tee, quote[offset : offset + 64]


def _snp_report_data(report: bytes) -> bytes:
    if len(report) < 0x90:
        raise RatlsFormatError("SEV-SNP report is too short")
    return report[0x50:0x90]


def _nitro_user_data(document: bytes) -> bytes:
    try:
        return parse_document(document).user_data or b""
    except NitroFormatError as exc:
        raise RatlsFormatError(f"malformed Nitro attestation document: {exc}") from None


def _simulated_report_data(evidence: bytes) -> bytes:
    try:
        return Evidence.from_bytes(evidence).report_data
    except AttestationError as exc:
        raise RatlsFormatError(exc.reason) from None


_REPORT_DATA: Mapping[str, Callable[[bytes], bytes]] = {
    SEV_SNP: _snp_report_data,
    NITRO: _nitro_user_data,
    SIMULATION: _simulated_report_data,
}


# --- the three conventions ------------------------------------------------------------


def _cbor(data: bytes, what: str) -> Any:
    try:
        return cose.decode_cbor(data)
    except cose.CoseError as exc:
        raise RatlsFormatError(f"{what}: {exc}") from None


def _pair(item: object, what: str) -> tuple[bytes, bytes]:
    if isinstance(item, list | tuple) and len(item) == 2:
        evidence, claims = item
        if isinstance(evidence, bytes) and isinstance(claims, bytes):
            return evidence, claims
    raise RatlsFormatError(f"{what} is not [evidence bstr, claims bstr]")


def _pubkey_hash_ok(claims: Mapping[Any, Any], spki: bytes) -> bool:
    entry = claims.get("pubkey-hash")
    if entry is None:
        return False
    if not isinstance(entry, bytes):
        raise RatlsFormatError("claim pubkey-hash is not a byte string")
    decoded = _cbor(entry, "claim pubkey-hash")
    if not isinstance(decoded, list | tuple) or len(decoded) != 2:
        raise RatlsFormatError("claim pubkey-hash is not [hash-alg-id, hash]")
    alg_id, digest = decoded
    algorithm = _HASH_ALGORITHMS.get(alg_id) if type(alg_id) is int else None
    if algorithm is None or not isinstance(digest, bytes):
        raise RatlsFormatError(f"claim pubkey-hash: unknown hash-alg-id {alg_id!r} or bad hash")
    return digest == hashlib.new(algorithm, spki).digest()


def _interoperable(value: bytes, spki: bytes) -> CertificateEvidence:
    item = _cbor(value, "tagged evidence")
    if isinstance(item, cbor2.CBORTag):
        if item.tag != INTEL_QUOTE_TAG:
            rule = f"evidence type CBOR tag {item.tag} is not supported"
            return CertificateEvidence(INTEROPERABLE, UNKNOWN, value, {}, False, rule)
        evidence, claims_bytes = _pair(item.value, "tag 60000 content")
        tee, report_data = quote_report_data(evidence)
    elif isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
        media_type, _, tee = item[0].partition(";tee=")
        if media_type != MEDIA_TYPE or tee not in _CMW_TEES or not isinstance(item[1], bytes):
            rule = f"evidence media type {item[0]!r} is not supported"
            return CertificateEvidence(INTEROPERABLE, UNKNOWN, value, {}, False, rule)
        evidence, claims_bytes = _pair(_cbor(item[1], "CMW value"), "CMW value")
        report_data = _REPORT_DATA[tee](evidence)
    else:
        raise RatlsFormatError("tagged evidence is neither a CBOR tag nor a CMW record")
    claims = _cbor(claims_bytes, "claims")
    if not isinstance(claims, dict):
        raise RatlsFormatError("claims are not a CBOR map")
    field = "user_data" if tee == NITRO else "report_data"
    rule = f"claims pubkey-hash == H(SPKI DER) and {field}[:32] == SHA-256(claims)"
    claims_hash = hashlib.sha256(claims_bytes).digest()
    bound = _pubkey_hash_ok(claims, spki) and report_data[:32] == claims_hash
    return CertificateEvidence(INTEROPERABLE, tee, evidence, claims, bound, rule)


def _gramine(quote: bytes, spki: bytes) -> CertificateEvidence:
    tee, report_data = quote_report_data(quote)
    bound = report_data[:32] == hashlib.sha256(spki).digest()
    return CertificateEvidence(
        GRAMINE_LEGACY, tee, quote, {}, bound, "report_data[:32] == SHA-256(SPKI DER)"
    )


def _nitro(document: bytes, spki: bytes) -> CertificateEvidence:
    bound = _nitro_user_data(document) == spki
    return CertificateEvidence(NITRO_SAN, NITRO, document, {}, bound, "user_data == SPKI DER")


def _san_document(san: bytes | None) -> bytes | None:
    """The Nitro document hex-encoded in the longest dNSName's first label, if any."""
    if san is None:
        return None
    names = [content for tag, _, content in _inside(san, _SEQUENCE, "SAN") if tag == _DNS_NAME]
    if not names:
        return None
    label = max(names, key=len).split(b".")[0]
    if len(label) <= _MAX_DNS_LABEL:  # an ordinary host name
        return None
    try:
        return bytes.fromhex(label.decode("ascii"))
    except ValueError:
        raise RatlsFormatError("overlong SAN label is not a hex attestation document") from None


def extract_all(cert: x509.Certificate | bytes) -> list[CertificateEvidence]:
    """Every piece of evidence in ``cert`` (object or DER), interoperable first.

    RatlsFormatError if the certificate, or evidence it carries, is malformed.
    """
    parsed = _parse(cert)
    found: list[CertificateEvidence] = []
    if (value := parsed.extensions.get(_TAGGED_EVIDENCE)) is not None:
        found.append(_interoperable(value, parsed.spki))
    for oid in (_GRAMINE, _GRAMINE_MISENCODED):
        if (value := parsed.extensions.get(oid)) is not None:
            found.append(_gramine(value, parsed.spki))
    if (document := _san_document(parsed.extensions.get(_SUBJECT_ALT_NAME))) is not None:
        found.append(_nitro(document, parsed.spki))
    return found


def extract(cert: x509.Certificate | bytes) -> CertificateEvidence:
    """The preferred evidence in ``cert``; RatlsFormatError if there is none or it is malformed."""
    found = extract_all(cert)
    if not found:
        raise RatlsFormatError("certificate carries no RA-TLS evidence")
    return found[0]


def bind_document(cert: x509.Certificate | bytes, document: bytes) -> CertificateEvidence:
    """A Nitro ``document`` sent beside ``cert`` (Evervault GA), checked to bind its key."""
    return _nitro(document, _parse(cert).spki)


# --- building our own certificates ----------------------------------------------------


def pubkey_claims(public_key: PublicKeyTypes, **extra: Any) -> dict[str, Any]:
    """Claims binding ``public_key``: ``pubkey-hash`` = [1, SHA-256(SPKI DER)], plus ``extra``."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"pubkey-hash": cbor2.dumps([1, hashlib.sha256(spki).digest()]), **extra}


def encode_claims(claims: Mapping[str, Any]) -> bytes:
    """The canonical CBOR of ``claims``: the bytes carried and hashed."""
    return cbor2.dumps(dict(claims), canonical=True)


def claims_report_data(claims: Mapping[str, Any]) -> bytes:
    """The 64 bytes of report data to request from the TEE: SHA-256(claims) ‖ 32 zero bytes."""
    return hashlib.sha256(encode_claims(claims)).digest() + bytes(32)


def interoperable_extension(
    evidence: bytes, tee_type: str, claims: Mapping[str, Any]
) -> x509.UnrecognizedExtension:
    """The 2.23.133.5.4.9 extension carrying ``evidence``, made for :func:`claims_report_data`."""
    pair = [evidence, encode_claims(claims)]
    if tee_type in (SGX, TDX):
        value = cbor2.dumps(cbor2.CBORTag(INTEL_QUOTE_TAG, pair))
    elif tee_type in _CMW_TEES:
        value = cbor2.dumps([f"{MEDIA_TYPE};tee={tee_type}", cbor2.dumps(pair)])
    else:
        raise ValueError(f"unknown TEE type {tee_type!r}")
    return x509.UnrecognizedExtension(TAGGED_EVIDENCE_OID, value)


# --- appraisal ------------------------------------------------------------------------


def verify_certificate(
    cert: x509.Certificate | bytes,
    *,
    now: datetime,
    intel_root: x509.Certificate | None = None,
    nitro_root: x509.Certificate | None = None,
    collateral: Collateral | None = None,
    document: bytes | None = None,
) -> Appraisal:
    """Appraise an RA-TLS certificate at ``now``; never raises on bad input.

    Checks, in order: the evidence is well formed, it binds the certificate's
    key, the certificate is valid at ``now``, and the hardware verifier
    accepts the evidence (Intel quotes with ``intel_root`` and ``collateral``,
    Nitro documents with ``nitro_root``). ``document``: a Nitro document sent
    beside the certificate rather than inside it.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # naive means UTC, as for the hardware verifiers
    try:
        parsed = _parse(cert)
        found = bind_document(cert, document) if document is not None else extract(cert)
    except RatlsFormatError as exc:
        return Appraisal(tee=UNKNOWN, valid=False, reason=str(exc))
    if not found.binding_ok:
        reason = f"evidence is not bound to the certificate's key ({found.binding})"
        return Appraisal(tee=found.tee, valid=False, reason=reason)
    if not parsed.not_before <= now <= parsed.not_after:
        window = f"{parsed.not_before.isoformat()} to {parsed.not_after.isoformat()}"
        reason = f"certificate is not valid at {now.isoformat()} (valid {window})"
        return Appraisal(tee=found.tee, valid=False, reason=reason)
    appraisal = _appraise(found, now, intel_root, nitro_root, collateral)
    details = {**appraisal.details, "ratls_format": found.format, "binding": found.binding}
    return dataclasses.replace(appraisal, details=details)


def _appraise(
    found: CertificateEvidence,
    now: datetime,
    intel_root: x509.Certificate | None,
    nitro_root: x509.Certificate | None,
    collateral: Collateral | None,
) -> Appraisal:
    if found.tee in (SGX, TDX):
        if intel_root is None:
            return Appraisal(tee=found.tee, valid=False, reason="no Intel root CA given")
        return verify_quote(found.evidence, collateral=collateral, root=intel_root, now=now)
    if found.tee == NITRO:
        if nitro_root is None:
            return Appraisal(tee=NITRO, valid=False, reason="no AWS Nitro root CA given")
        return verify_document(found.evidence, root=nitro_root, now=now)
    reason = f"no hardware verifier for {found.tee!r} evidence in certificates"
    return Appraisal(tee=found.tee, valid=False, reason=reason)

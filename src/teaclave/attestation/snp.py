"""AMD SEV-SNP attestation reports: parse, and verify against the AMD chain at ``now``.

A report (1184 bytes, versions 2 and 3, little-endian) is signed with ECDSA
P-384/SHA-384 over bytes 0x000-0x29F by a versioned endorsement key: the
chip's VCEK, issued by the ASK (``SEV-<product>``), or a cloud provider's
VLEK, issued by the ASVK (``SEV-VLEK-<product>``); both intermediates are
issued by the self-signed ARK (``ARK-<product>``). The product (Milan, Genoa,
Turin) comes from the endorsement key's productName extension and must match
the chain. A VCEK also names its chip (hwID = CHIP_ID) and the TCB it was
derived for (SPL extensions = REPORTED_TCB). POLICY.DEBUG gives
``debug=True``; refusing debug guests is the policy's job, not the verifier's.

Without ``ark_fingerprints`` the ARK in ``ca_chain`` is trusted as given:
callers must pin it in production (:data:`KNOWN_ARK_FINGERPRINTS`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from teaclave.attestation import pki
from teaclave.attestation.appraisal import SEV_SNP, Appraisal

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
_SIGNATURE_END = 0x330  # R (72 bytes) and S (72 bytes) at 0x2A0; the rest must be zero
SUPPORTED_VERSIONS = (2, 3)
ECDSA_P384_SHA384 = 1
PRODUCTS = ("Milan", "Genoa", "Turin")

KNOWN_ARK_FINGERPRINTS: Mapping[str, bytes] = {
    "Milan": bytes.fromhex("69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"),
    "Genoa": bytes.fromhex("4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"),
    "Turin": bytes.fromhex("1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"),
}
"""SHA-256 of each ARK's DER, as bundled by confidential-containers/trustee (AMD KDS certs)."""

POLICY_BITS = {
    16: "smt",
    17: "reserved-1",
    18: "migrate-ma",
    19: "debug",
    20: "single-socket",
    21: "cxl-allow",
    22: "mem-aes-256-xts",
    23: "rapl-dis",
    24: "ciphertext-hiding",
    25: "page-swap-disable",
}
POLICY_DEBUG = 1 << 19
MASK_CHIP_KEY = 1 << 1
SIGNING_KEYS = {0: "VCEK", 1: "VLEK", 7: "none"}
ENDORSEMENT_KEY_NAMES = {"VCEK": "SEV-VCEK", "VLEK": "SEV-VLEK"}

_AMD_ARC = "1.3.6.1.4.1.3704.1."
PRODUCT_NAME = x509.ObjectIdentifier(_AMD_ARC + "2")
HW_ID = x509.ObjectIdentifier(_AMD_ARC + "4")
SPL_OIDS = {
    "bl": x509.ObjectIdentifier(_AMD_ARC + "3.1"),
    "tee": x509.ObjectIdentifier(_AMD_ARC + "3.2"),
    "snp": x509.ObjectIdentifier(_AMD_ARC + "3.3"),
    "ucode": x509.ObjectIdentifier(_AMD_ARC + "3.8"),
    "fmc": x509.ObjectIdentifier(_AMD_ARC + "3.9"),
}
# Byte index of each SPL in a TCB_VERSION (u64 LE); Turin's order is from AMD's spec, untested.
TCB_LAYOUTS = {
    "Milan": {"bl": 0, "tee": 1, "snp": 6, "ucode": 7},
    "Genoa": {"bl": 0, "tee": 1, "snp": 6, "ucode": 7},
    "Turin": {"fmc": 0, "bl": 1, "tee": 2, "snp": 3, "ucode": 7},
}


class SnpFormatError(ValueError):
    """Bytes that are not a well-formed SEV-SNP attestation report."""


@dataclass(frozen=True)
class Report:
    """The fields of a report (integers decoded; TCB values kept as their u64).

    ``cpuid``: family, model and stepping bytes (version 3 on; empty before).
    """

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid: bytes
    chip_id: bytes
    committed_tcb: int
    launch_tcb: int
    signed: bytes
    signature_r: int
    signature_s: int

    @property
    def debug(self) -> bool:
        """POLICY.DEBUG: the hypervisor may read and change guest memory."""
        return bool(self.policy & POLICY_DEBUG)

    @property
    def signing_key(self) -> str:
        """``VCEK``, ``VLEK``, ``none`` or ``reserved(n)`` (signer info bits 2-4)."""
        code = (self.signer_info >> 2) & 0b111
        return SIGNING_KEYS.get(code, f"reserved({code})")

    @property
    def chip_id_masked(self) -> bool:
        """MASK_CHIP_KEY: the guest asked for CHIP_ID to be zeroed."""
        return bool(self.signer_info & MASK_CHIP_KEY)


def _u(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def parse_report(report: bytes) -> Report:
    """The fields of ``report``; SnpFormatError on a wrong size, version or algorithm."""
    if len(report) != REPORT_SIZE:
        raise SnpFormatError(f"report has {len(report)} bytes, not {REPORT_SIZE}")
    version = _u(report, 0x000, 4)
    if version not in SUPPORTED_VERSIONS:
        raise SnpFormatError(f"report version {version} is not supported {SUPPORTED_VERSIONS}")
    algo = _u(report, 0x034, 4)
    if algo != ECDSA_P384_SHA384:
        raise SnpFormatError(f"signature algorithm {algo} is not ECDSA P-384 SHA-384")
    if any(report[_SIGNATURE_END:]):
        raise SnpFormatError("reserved bytes after the signature's R and S are not zero")
    return Report(
        version=version,
        guest_svn=_u(report, 0x004, 4),
        policy=_u(report, 0x008, 8),
        family_id=report[0x010:0x020],
        image_id=report[0x020:0x030],
        vmpl=_u(report, 0x030, 4),
        signature_algo=algo,
        current_tcb=_u(report, 0x038, 8),
        platform_info=_u(report, 0x040, 8),
        signer_info=_u(report, 0x048, 4),
        report_data=report[0x050:0x090],
        measurement=report[0x090:0x0C0],
        host_data=report[0x0C0:0x0E0],
        id_key_digest=report[0x0E0:0x110],
        author_key_digest=report[0x110:0x140],
        report_id=report[0x140:0x160],
        report_id_ma=report[0x160:0x180],
        reported_tcb=_u(report, 0x180, 8),
        cpuid=report[0x188:0x18B] if version >= 3 else b"",
        chip_id=report[0x1A0:0x1E0],
        committed_tcb=_u(report, 0x1E0, 8),
        launch_tcb=_u(report, 0x1F0, 8),
        signed=report[:SIGNED_SIZE],
        signature_r=_u(report, 0x2A0, 72),
        signature_s=_u(report, 0x2E8, 72),
    )


def _der_value(der: bytes, tag: int) -> bytes:
    """The content of ``der``, a single DER TLV with ``tag``; ValueError otherwise."""
    if len(der) < 2 or der[0] != tag:
        raise ValueError("unexpected DER tag")
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length, start = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    if start + length != len(der):
        raise ValueError("DER length mismatch")
    return der[start:]


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _spl(cert: x509.Certificate, name: str) -> int | None:
    """An SPL extension (a DER INTEGER, possibly with a leading zero byte), or None."""
    raw = _extension(cert, SPL_OIDS[name])
    if raw is None:
        return None
    try:
        return int.from_bytes(_der_value(raw, 0x02), "big", signed=True)
    except ValueError:
        return None


def _hw_id(cert: x509.Certificate) -> bytes | None:
    """The hwID extension: 64 raw bytes (older certs) or a DER OCTET STRING of them."""
    raw = _extension(cert, HW_ID)
    if raw is None or len(raw) == 64:
        return raw
    try:
        return _der_value(raw, 0x04)
    except ValueError:
        return None


def product_name(cert: x509.Certificate) -> str:
    """The product line of an endorsement key ("Milan-B0" → "Milan"), or "" if unnamed."""
    raw = _extension(cert, PRODUCT_NAME)
    try:
        text = _der_value(raw or b"", 0x16).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return ""
    return text.split("-", 1)[0]


def tcb_parts(tcb: int, product: str) -> dict[str, int]:
    """The SPLs of a TCB_VERSION on ``product`` (bl, tee, snp, ucode; fmc on Turin)."""
    data = tcb.to_bytes(8, "little")
    return {name: data[index] for name, index in TCB_LAYOUTS[product].items()}


def vek_mismatch(report: Report, vek: x509.Certificate, product: str) -> str:
    """Why ``vek`` was not derived for this chip and REPORTED_TCB, or "" if it was.

    A VCEK's hwID must equal CHIP_ID (unless MASK_CHIP_KEY zeroed it); the SPL
    extensions of a VCEK or VLEK must equal the fields of REPORTED_TCB.
    """
    key = report.signing_key
    if key == "VCEK" and not report.chip_id_masked:
        hw_id = _hw_id(vek)
        if hw_id is None:
            return "VCEK has no readable hwID extension"
        if hw_id != report.chip_id:
            return f"VCEK hwID {hw_id.hex()[:16]}… is not the report's CHIP_ID"
    for name, reported in tcb_parts(report.reported_tcb, product).items():
        certified = _spl(vek, name)
        if certified is None:
            return f"{key} has no readable {name}SPL extension"
        if certified != reported:
            return f"{key} {name}SPL {certified} is not REPORTED_TCB's {name} {reported}"
    return ""


class _Rejected(Exception):
    """A verification step failed; the message is the Appraisal's reason."""


def _select(certs: list[x509.Certificate], cn: str) -> x509.Certificate:
    for cert in certs:
        if pki.name(cert) == cn:
            return cert
    held = ", ".join(repr(pki.name(cert)) for cert in certs) or "nothing"
    raise _Rejected(f"ca_chain has no {cn!r} (it holds {held})")


def _check_chain(
    report: Report,
    vek: x509.Certificate,
    ca_chain: bytes,
    now: datetime,
    ark_fingerprints: Mapping[str, bytes] | None,
) -> str:
    """The product, once VEK ← ASK/ASVK ← ARK holds at ``now`` (and the ARK is pinned)."""
    key = report.signing_key
    if key not in ENDORSEMENT_KEY_NAMES:
        raise _Rejected(f"report signing key is {key!r}, not VCEK or VLEK")
    if pki.name(vek) != ENDORSEMENT_KEY_NAMES[key]:
        raise _Rejected(f"report is signed by the {key} but the certificate is {pki.name(vek)!r}")
    product = product_name(vek)
    if product not in PRODUCTS:
        raise _Rejected(f"{key} product {product!r} is not one of {', '.join(PRODUCTS)}")
    try:
        certs = pki.load_pem_certificates(ca_chain)
    except pki.PkiError as exc:
        raise _Rejected(f"ca_chain: {exc}") from None
    ark = _select(certs, f"ARK-{product}")
    issuer = _select(certs, f"SEV-{product}" if key == "VCEK" else f"SEV-VLEK-{product}")
    if ark_fingerprints is not None:
        pinned = ark_fingerprints.get(product)
        if pinned is None:
            raise _Rejected(f"no pinned ARK fingerprint for {product}")
        if hashlib.sha256(ark.public_bytes(Encoding.DER)).digest() != pinned:
            raise _Rejected(f"ARK-{product} is not the pinned ARK")
    try:
        pki.verify_chain([vek, issuer], ark, now)
    except pki.PkiError as exc:
        raise _Rejected(f"certificate chain: {exc}") from None
    return product


def _check_signature(report: Report, vek: x509.Certificate) -> None:
    key = vek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise _Rejected(f"{report.signing_key} has no P-384 key")
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise _Rejected(f"report signature does not verify with the {report.signing_key}") from None


def _hex_u64(value: int) -> str:
    return f"0x{value:016x}"


def _facts(report: Report) -> dict[str, Any]:
    """The Appraisal fields the report gives, verified or not."""
    return {
        "measurements": {
            "measurement": report.measurement.hex(),
            "host_data": report.host_data.hex(),
        },
        "report_data": report.report_data,
        "debug": report.debug,
        "details": {
            "report_version": report.version,
            "policy": hex(report.policy),
            "policy_abi": f"{(report.policy >> 8) & 0xFF}.{report.policy & 0xFF}",
            "policy_flags": tuple(
                flag for bit, flag in POLICY_BITS.items() if report.policy >> bit & 1
            ),
            "policy_debug": report.debug,
            "signing_key": report.signing_key,
            "chip_id": report.chip_id.hex(),
            "chip_id_zero": not any(report.chip_id),
            "vmpl": report.vmpl,
            "guest_svn": report.guest_svn,
            "reported_tcb": _hex_u64(report.reported_tcb),
            "current_tcb": _hex_u64(report.current_tcb),
            "committed_tcb": _hex_u64(report.committed_tcb),
            "launch_tcb": _hex_u64(report.launch_tcb),
            "platform_info": hex(report.platform_info),
            "cpuid": "/".join(f"{byte:02x}" for byte in report.cpuid),
            "family_id": report.family_id.hex(),
            "image_id": report.image_id.hex(),
            "id_key_digest": report.id_key_digest.hex(),
            "author_key_digest": report.author_key_digest.hex(),
            "report_id": report.report_id.hex(),
        },
    }


def verify_report(
    report: bytes,
    *,
    vek: bytes,
    ca_chain: bytes,
    now: datetime,
    ark_fingerprints: Mapping[str, bytes] | None = None,
) -> Appraisal:
    """Appraise ``report`` with its endorsement key (DER) and ``ca_chain`` (PEM) at ``now`` (aware).

    ``ark_fingerprints`` pins the ARK per product (SHA-256 of its DER); without
    it the ARK in ``ca_chain`` is trusted. Never raises on bad input.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")  # a caller's bug, not bad evidence
    try:
        parsed = parse_report(report)
    except SnpFormatError as exc:
        return Appraisal(tee=SEV_SNP, valid=False, reason=f"malformed report: {exc}")
    facts = _facts(parsed)
    try:
        cert = pki.load_der_certificate(vek)
    except pki.CERTIFICATE_ERRORS:
        reason = f"{parsed.signing_key} is not a DER certificate"
        return Appraisal(tee=SEV_SNP, valid=False, reason=reason, **facts)
    try:
        product = _check_chain(parsed, cert, ca_chain, now, ark_fingerprints)
        facts["signer"] = f"AMD {parsed.signing_key} ({product})"
        facts["details"]["product"] = product
        mismatch = vek_mismatch(parsed, cert, product)
        if mismatch:
            raise _Rejected(mismatch)
        _check_signature(parsed, cert)
    except _Rejected as exc:
        return Appraisal(tee=SEV_SNP, valid=False, reason=str(exc), **facts)
    except pki.CERTIFICATE_ERRORS as exc:
        reason = f"malformed certificate: {exc}"
        return Appraisal(tee=SEV_SNP, valid=False, reason=reason, **facts)
    return Appraisal(tee=SEV_SNP, valid=True, **facts)

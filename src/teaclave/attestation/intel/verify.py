"""Verify an Intel DCAP quote (SGX or TDX) against collateral at a given time.

The procedure of Intel's QVL: quote signature by the attestation key, QE report
signature by the PCK key, the QE report binding the attestation key, the PCK
chain to the pinned root (with PCK and root CRLs), then — with collateral — the
signed TCB info and QE identity (issuer chains, signatures, validity windows),
the QE identity policy, the platform TCB level, the TDX module identity, and
the merged status. Everything ends in an :class:`Appraisal`; nothing raises.
A quote whose header cannot be parsed is appraised as ``tee="tdx"`` when its
first bytes say v4/v5 with TEE type 0x81, else as ``tee="sgx"``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation.appraisal import SGX, TDX, Appraisal
from teaclave.attestation.intel.collateral import Collateral, SignedDocument
from teaclave.attestation.intel.quote import (
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_TDX,
    EnclaveReport,
    Quote,
    QuoteFormatError,
    TdReport,
    parse_quote,
)
from teaclave.attestation.intel.tcb import (
    PckTcb,
    Status,
    TcbError,
    converge_all,
    parse_qe_identity,
    parse_tcb_info,
    pck_tcb,
    platform_status,
    qe_status,
    tdx_module_status,
)
from teaclave.attestation.pki import PkiError, name, p256_key, raw_ecdsa, verify_chain

NO_COLLATERAL = "no collateral: TCB not evaluated"


class _Rejected(Exception):
    """Stops verification; the message is the appraisal's reason."""


@dataclass
class _Findings:
    """What verification has established so far (kept when it stops)."""

    details: dict[str, Any] = field(default_factory=dict)
    status: Status | None = None
    signer: str = ""


def verify_quote(
    quote: bytes, *, collateral: Collateral | None, root: x509.Certificate, now: datetime
) -> Appraisal:
    """Appraise a DCAP quote at ``now`` (naive means UTC) against the pinned Intel ``root``."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        parsed = parse_quote(quote)
    except QuoteFormatError as exc:
        return Appraisal(tee=_guess_tee(quote), valid=False, reason=f"malformed quote: {exc}")
    found = _Findings(details=_describe(parsed))
    reason = ""
    try:
        _verify(parsed, collateral, root, now, found)
    except _Rejected as exc:
        reason = str(exc)
    except (
        Exception
    ) as exc:  # fail closed on anything unforeseen; fuzz tests assert it never happens
        reason = f"internal verifier error: {type(exc).__name__}: {exc}"
    body = parsed.body
    return Appraisal(
        tee=parsed.tee,
        valid=not reason,
        reason=reason,
        measurements=_measurements(body),
        report_data=body.report_data,
        tcb_status=found.status.status if found.status else "",
        advisories=found.status.advisories if found.status else (),
        debug=body.debug,
        signer=found.signer,
        details=found.details,
    )


def _verify(
    quote: Quote, collateral: Collateral | None, root: x509.Certificate, now: datetime,
    found: _Findings,
) -> None:  # fmt: skip
    details = found.details
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise _Rejected(f"QE vendor ID {quote.header.qe_vendor_id.hex()} is not Intel's")
    chain = _check_signatures(quote)
    details["quote_signatures_valid"] = True
    try:
        pck = pck_tcb(chain[0])
    except TcbError as exc:
        raise _Rejected(str(exc)) from None
    details.update(fmspc=pck.fmspc.hex(), pce_id=pck.pce_id.hex(), pce_svn=pck.pce_svn)
    root_crl = collateral.root_ca_crl if collateral else None
    pck_crl = collateral.pck_crl if collateral else None
    if root_crl is not None and root_crl.issuer != root.subject:
        raise _Rejected(f"root CA CRL is not issued by {name(root)!r}")
    if pck_crl is not None and pck_crl.issuer != chain[0].issuer:
        issuer = chain[0].issuer.rfc4514_string()
        raise _Rejected(f"PCK CRL is not issued by the PCK certificate's issuer ({issuer})")
    crls = [crl for crl in (root_crl, pck_crl) if crl is not None]
    _chain(chain, root, now, crls, "PCK certificate chain")
    details["pck_chain_valid"] = True
    found.signer = f"Intel SGX PCK certificate (FMSPC {pck.fmspc.hex()})"
    if collateral is None:
        raise _Rejected(NO_COLLATERAL)
    _evaluate(quote, pck, collateral, found, root=root, now=now)


def _check_signatures(quote: Quote) -> list[x509.Certificate]:
    """The quote, QE report and QE binding checks; returns the PCK chain (unverified)."""
    cert = quote.certification
    try:
        chain = cert.pck_chain()
        key = p256_key(quote.attestation_key)
    except (QuoteFormatError, PkiError) as exc:
        raise _Rejected(str(exc)) from None
    _signature(key, quote.signature, quote.signed, "quote")
    _signature(_ec_key(chain[0], "PCK certificate"), cert.qe_report_signature,
               cert.qe_report.raw, "QE report")  # fmt: skip
    binding = hashlib.sha256(quote.attestation_key + cert.qe_auth_data).digest() + bytes(32)
    if cert.qe_report.report_data != binding:
        raise _Rejected("QE report data does not bind the attestation key and QE auth data")
    return chain


def _evaluate(
    quote: Quote, pck: PckTcb, collateral: Collateral, found: _Findings, *,
    root: x509.Certificate, now: datetime,
) -> None:  # fmt: skip
    """Collateral checks and TCB evaluation; the status is recorded even if parts are missing."""
    details, tdx = found.details, quote.tee == TDX
    root_crls = [collateral.root_ca_crl] if collateral.root_ca_crl is not None else []
    if collateral.pck_crl_issuer_chain:
        _chain(collateral.pck_crl_issuer_chain, root, now, root_crls, "PCK CRL issuer chain")
    missing = [
        what
        for what, part in (
            ("TCB info", collateral.tcb_info),
            ("QE identity", collateral.qe_identity),
            ("PCK CRL", collateral.pck_crl),
            ("root CA CRL", collateral.root_ca_crl),
        )
        if part is None
    ]
    try:
        info = qe_identity = None
        if collateral.qe_identity is not None:
            text = _document(collateral.qe_identity, root, now, root_crls, "QE identity")
            qe_identity = parse_qe_identity(text)
            qe_identity.check_current(now, "QE identity")
            _expect(qe_identity.id, qe_identity.version, "TD_QE" if tdx else "QE", 2, "QE identity")
        if collateral.tcb_info is not None:
            info = parse_tcb_info(_document(collateral.tcb_info, root, now, root_crls, "TCB info"))
            info.check_current(now, "TCB info")
            _expect(info.id, info.version, "TDX" if tdx else "SGX", 3, "TCB info")
            if info.fmspc != pck.fmspc:
                raise _Rejected(f"TCB info is for FMSPC {info.fmspc.hex()}, not {pck.fmspc.hex()}")
            if info.pce_id != pck.pce_id:
                raise _Rejected(
                    f"TCB info is for PCE-ID {info.pce_id.hex()}, not {pck.pce_id.hex()}"
                )
        details["collateral_valid"] = not missing
        others = []
        if qe_identity is not None:
            qe = quote.certification.qe_report
            others.append(qe_status(qe_identity.identity, mr_signer=qe.mr_signer,
                                    isv_prod_id=qe.isv_prod_id, misc_select=qe.misc_select,
                                    attributes=qe.attributes, isv_svn=qe.isv_svn))  # fmt: skip
            details["qe_status"] = others[-1].status
        if info is not None:
            body = quote.body
            tee_svn = body.tee_tcb_svn if isinstance(body, TdReport) else None
            platform = platform_status(info, pck, tee_svn)
            details["platform_status"] = platform.status
            if isinstance(body, TdReport):
                others.append(tdx_module_status(info, body.tee_tcb_svn, body.mr_signer_seam,
                                                body.seam_attributes))  # fmt: skip
                details["tdx_module"] = others[-1].label
            found.status = converge_all(platform, others)
    except TcbError as exc:
        raise _Rejected(str(exc)) from None
    if missing:
        raise _Rejected(f"collateral incomplete: no {', no '.join(missing)}")
    if found.status is not None and found.status.status == "Revoked":
        raise _Rejected("TCB status is Revoked")


def _document(
    doc: SignedDocument, root: x509.Certificate, now: datetime,
    crls: list[x509.CertificateRevocationList], what: str,
) -> str:  # fmt: skip
    """The signed text of ``doc`` once its issuer chain and signature check out."""
    _chain(doc.issuer_chain, root, now, crls, f"{what} issuer chain")
    _signature(
        _ec_key(doc.issuer_chain[0], f"{what} signer"), doc.signature, doc.text.encode(), what
    )
    return doc.text


def _expect(doc_id: str, version: int, want_id: str, want_version: int, what: str) -> None:
    if doc_id != want_id:
        raise _Rejected(f"{what} is for {doc_id!r}, not {want_id!r}")
    if version != want_version:
        raise _Rejected(f"{what} version {version} is not supported (only {want_version})")


def _chain(
    chain: tuple[x509.Certificate, ...] | list[x509.Certificate], root: x509.Certificate,
    now: datetime, crls: list[x509.CertificateRevocationList], what: str,
) -> None:  # fmt: skip
    try:
        verify_chain(chain, root, now, crls)
    except PkiError as exc:
        raise _Rejected(f"{what}: {exc}") from None


def _ec_key(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise _Rejected(f"{what} key is not P-256")
    return key


def _signature(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, what: str) -> None:
    try:
        key.verify(raw_ecdsa(signature), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, PkiError):
        raise _Rejected(f"{what} signature is invalid") from None


def _guess_tee(quote: bytes) -> str:
    if len(quote) >= 8:
        version, _, tee_type = struct.unpack_from("<HHI", quote)
        if version in (4, 5) and tee_type == TEE_TYPE_TDX:
            return TDX
    return SGX


def _measurements(body: EnclaveReport | TdReport) -> dict[str, str]:
    if isinstance(body, EnclaveReport):
        return {
            "mrenclave": body.mr_enclave.hex(),
            "mrsigner": body.mr_signer.hex(),
            "isv_prod_id": str(body.isv_prod_id),
            "isv_svn": str(body.isv_svn),
        }
    rtmrs = {f"rtmr{i}": rtmr.hex() for i, rtmr in enumerate(body.rtmrs)}
    return {
        "mrtd": body.mr_td.hex(),
        **rtmrs,
        "mr_config_id": body.mr_config_id.hex(),
        "mr_owner": body.mr_owner.hex(),
        "mr_owner_config": body.mr_owner_config.hex(),
    }


def _describe(quote: Quote) -> dict[str, Any]:
    """Parsed fields worth reporting besides the measurements."""
    body = quote.body
    details: dict[str, Any] = {
        "quote_version": quote.header.version,
        "body_type": quote.body_type,
        "qe_id": quote.header.user_data[:16].hex(),
        "trailing_bytes": len(quote.trailing),
        "quote_signatures_valid": False,
        "pck_chain_valid": False,
    }
    if isinstance(body, EnclaveReport):
        details.update(
            attributes=body.attributes.hex(),
            misc_select=f"{body.misc_select:08x}",
            cpu_svn=body.cpu_svn.hex(),
            config_svn=body.config_svn,
        )
    else:
        details.update(
            tee_tcb_svn=body.tee_tcb_svn.hex(),
            mr_seam=body.mr_seam.hex(),
            mr_signer_seam=body.mr_signer_seam.hex(),
            seam_attributes=body.seam_attributes.hex(),
            td_attributes=body.td_attributes.hex(),
            xfam=body.xfam.hex(),
            sept_ve_disable=body.sept_ve_disable,
        )
        if body.tee_tcb_svn2:
            details.update(
                tee_tcb_svn2=body.tee_tcb_svn2.hex(), mr_service_td=body.mr_service_td.hex()
            )
    return details

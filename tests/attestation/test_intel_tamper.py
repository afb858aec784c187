"""Tampered quotes, collateral, chains, roots and times: each rejected with a precise reason."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from intel_vectors import at, collateral, manifest, quote, read, root

from teaclave.attestation.appraisal import Appraisal
from teaclave.attestation.intel import Collateral, parse_quote, verify_quote

SGX, TDX = "dcap-qvl/sgx", "dcap-qvl/tdx"


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def appraise(vid: str, raw: bytes | None = None, **changes: object) -> Appraisal:
    entry = manifest()[vid]
    kwargs: dict[str, object] = {
        "collateral": collateral(entry),
        "root": root(entry),
        "now": at(entry),
        **changes,
    }
    return verify_quote(quote(entry) if raw is None else raw, **kwargs)  # type: ignore[arg-type]


def _offset(raw: bytes, region: str) -> int:
    q = parse_quote(raw)
    cert = q.certification
    return {
        "header": 40,  # QE-ID in the user data
        "body": 48 + 100,
        "attestation key": raw.index(q.attestation_key) + 63,
        "quote signature": raw.index(q.signature) + 5,
        "QE report": raw.index(cert.qe_report.raw) + 20,
        "QE report signature": raw.index(cert.qe_report_signature) + 40,
        "QE auth data": raw.index(cert.qe_auth_data) + 3,
    }[region]


QUOTE_TAMPERS = [
    ("header", "quote signature is invalid"),
    ("body", "quote signature is invalid"),
    ("attestation key", "raw P-256 key is not a point on the curve"),
    ("quote signature", "quote signature is invalid"),
    ("QE report", "QE report signature is invalid"),
    ("QE report signature", "QE report signature is invalid"),
    ("QE auth data", "QE report data does not bind the attestation key and QE auth data"),
]


@pytest.mark.parametrize("vid", [SGX, TDX])
@pytest.mark.parametrize(("region", "reason"), QUOTE_TAMPERS)
def test_flipped_quote_byte(vid: str, region: str, reason: str) -> None:
    raw = quote(manifest()[vid])
    tampered = flip(raw, _offset(raw, region))
    a = appraise(vid, tampered)
    assert (a.valid, a.reason) == (False, reason)
    assert a.details["quote_signatures_valid"] is False
    # dcap-qvl refuses it too
    theirs = dcap_qvl.QuoteCollateralV3.from_json(read(manifest()[vid]["collateral"]).decode())
    with pytest.raises(ValueError, match=r"(?i)fail|invalid|mismatch"):
        dcap_qvl.verify(tampered, theirs, int(at(manifest()[vid]).timestamp()))


def _edit(vid: str, field: str, change: Callable[[str], str]) -> Collateral:
    doc = json.loads(read(manifest()[vid]["collateral"]))
    doc[field] = change(doc[field])
    return Collateral.from_dcap_qvl_json(json.dumps(doc))


def _bump(text: str) -> str:
    assert '"tcbEvaluationDataNumber":17' in text
    return text.replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18')


def _flip_hex_tail(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


COLLATERAL_TAMPERS = [
    ("tcb_info", _bump, "TCB info signature is invalid"),
    ("tcb_info", lambda t: json.dumps(json.loads(t)), "TCB info signature is invalid"),
    ("tcb_info_signature", _flip_hex_tail, "TCB info signature is invalid"),
    ("qe_identity", _bump, "QE identity signature is invalid"),
    ("qe_identity_signature", _flip_hex_tail, "QE identity signature is invalid"),
    (
        "pck_crl",
        _flip_hex_tail,
        "PCK certificate chain: CRL of 'Intel SGX PCK Processor CA' has a bad signature",
    ),
    (
        "root_ca_crl",
        _flip_hex_tail,
        "PCK certificate chain: CRL of 'Intel SGX Root CA' has a bad signature",
    ),
    (
        "tcb_info_issuer_chain",
        lambda _: json.loads(read(manifest()[SGX]["collateral"]))["pck_crl_issuer_chain"],
        "TCB info signature is invalid",
    ),
]


@pytest.mark.parametrize(("field", "change", "reason"), COLLATERAL_TAMPERS)
def test_tampered_collateral(field: str, change: Callable[[str], str], reason: str) -> None:
    a = appraise(SGX, collateral=_edit(SGX, field, change))
    assert (a.valid, a.reason) == (False, reason)


@pytest.mark.parametrize(
    ("part", "reason"),
    [
        ("tcb_info", "collateral incomplete: no TCB info"),
        ("qe_identity", "collateral incomplete: no QE identity"),
        ("pck_crl", "collateral incomplete: no PCK CRL"),
        ("root_ca_crl", "collateral incomplete: no root CA CRL"),
    ],
)
def test_missing_collateral_part(part: str, reason: str) -> None:
    full = collateral(manifest()[SGX])
    assert full is not None
    a = appraise(SGX, collateral=dataclasses.replace(full, **{part: None}))
    assert (a.valid, a.reason) == (False, reason)
    assert a.details["collateral_valid"] is False


@pytest.mark.parametrize(
    ("shift", "reason"),
    [
        (timedelta(seconds=-1), "TCB info is not valid before 2025-06-19T10:56:11+00:00"),
        (timedelta(seconds=1), "QE identity expired at 2025-07-19T10:01:18+00:00"),
        (timedelta(days=-1), "CRL of 'Intel SGX PCK Processor CA' is not valid before"),
        (timedelta(days=3700), "certificate 'Intel SGX PCK Certificate' expired"),
    ],
)
def test_outside_the_validity_window(shift: timedelta, reason: str) -> None:
    start, end = (datetime.fromisoformat(t) for t in manifest()[SGX]["window"])
    now = (start if shift < timedelta(0) else end) + shift
    a = appraise(SGX, now=now)
    assert not a.valid
    assert reason in a.reason


def _with_chain(raw: bytes, chain: list[x509.Certificate]) -> bytes:
    """A v3 quote with its PCK chain replaced (the certification data ends the quote)."""
    q = parse_quote(raw)
    pem = b"".join(cert.public_bytes(Encoding.PEM) for cert in chain) + b"\0"
    prefix_end = 432 + 4 + 64 + 64 + 384 + 64 + 2 + len(q.certification.qe_auth_data) + 2
    sig_data = raw[436:prefix_end] + struct.pack("<I", len(pem)) + pem
    return raw[:432] + struct.pack("<I", len(sig_data)) + sig_data


def _chain(vid: str) -> list[x509.Certificate]:
    return parse_quote(quote(manifest()[vid])).certification.pck_chain()


def test_rebuilt_quote_with_its_own_chain_still_verifies() -> None:
    raw = quote(manifest()[SGX])
    assert appraise(SGX, _with_chain(raw, _chain(SGX))).valid


def test_swapped_pck_leaf() -> None:
    _leaf, inter, intel_root = _chain(SGX)
    other_leaf = _chain("dcap-qvl/tdx-outdated")[0]
    a = appraise(SGX, _with_chain(quote(manifest()[SGX]), [other_leaf, inter, intel_root]))
    assert (a.valid, a.reason) == (False, "QE report signature is invalid")


def test_swapped_pck_intermediate() -> None:
    leaf, _, intel_root = _chain(SGX)
    platform_ca = _chain(TDX)[1]
    a = appraise(SGX, _with_chain(quote(manifest()[SGX]), [leaf, platform_ca, intel_root]))
    assert not a.valid
    assert a.reason.startswith(
        "PCK certificate chain: certificate 'Intel SGX PCK Certificate' is not issued by "
        "'Intel SGX PCK Platform CA'"
    )


def _fake_root(common_name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    now = datetime(2020, 1, 1, tzinfo=UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=2040))
        .sign(key, hashes.SHA256())
    )


def test_wrong_root() -> None:
    impostor = _fake_root("Intel SGX Root CA")
    a = appraise(SGX, root=impostor, collateral=None)
    assert not a.valid
    assert a.reason.startswith(
        "PCK certificate chain: certificate 'Intel SGX Root CA' is not issued by "
        "'Intel SGX Root CA'"
    )
    assert a.details["pck_chain_valid"] is False
    assert a.details["quote_signatures_valid"] is True
    a = appraise(SGX, root=impostor)
    assert (a.valid, a.reason) == (False, "root CA CRL is not issued by 'Intel SGX Root CA'")


def test_tcb_info_of_another_fmspc() -> None:
    outdated = manifest()["dcap-qvl/tdx-outdated"]
    a = appraise(TDX, collateral=collateral(outdated), now=at(outdated))
    assert (a.valid, a.reason) == (False, "TCB info is for FMSPC 90c06f000000, not b0c06f000000")


def test_collateral_of_the_other_tee() -> None:
    sgx_crl = collateral(manifest()[SGX])
    tdx_collateral = collateral(manifest()[TDX])
    assert sgx_crl is not None
    assert tdx_collateral is not None
    mixed = dataclasses.replace(tdx_collateral, pck_crl=sgx_crl.pck_crl)
    a = appraise(SGX, collateral=mixed)
    assert (a.valid, a.reason) == (False, "QE identity is for 'TD_QE', not 'QE'")
    a = appraise(SGX, collateral=tdx_collateral)
    assert a.reason.startswith("PCK CRL is not issued by the PCK certificate's issuer")


def test_truncated_and_foreign_quotes() -> None:
    raw = quote(manifest()[TDX])
    assert appraise(TDX, raw[:600]).reason == (
        "malformed quote: quote truncated: report body needs 584 bytes, 552 left"
    )
    assert appraise(TDX, raw[:600]).tee == "tdx"
    foreign_vendor = raw[:12] + bytes(16) + raw[28:]
    assert appraise(TDX, foreign_vendor).reason == (
        "QE vendor ID 00000000000000000000000000000000 is not Intel's"
    )
    p384 = raw[:2] + b"\x03\x00" + raw[4:]
    assert appraise(TDX, p384).reason == (
        "malformed quote: unsupported attestation key type 3 (only 2, P-256)"
    )

"""SEV-SNP report verification: the trustee vectors, and the precise reason for each defect."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from snp_nitro_vectors import SNP_CHAINS, SNP_IDS, SnpVector, snp_vector

from teaclave.attestation import pki, snp
from teaclave.attestation.appraisal import SEV_SNP, Appraisal

VCEK = "trustee/milan-vcek"
VLEK = "trustee/milan-vlek"


def appraise(vector: SnpVector, **changes: Any) -> Appraisal:
    """The vector verified with ARKs pinned, after ``changes`` to its inputs."""
    inputs: dict[str, Any] = {
        "report": vector.report,
        "vek": vector.vek,
        "ca_chain": vector.ca_chain,
        "now": vector.at,
        "ark_fingerprints": snp.KNOWN_ARK_FINGERPRINTS,
    }
    inputs.update(changes)
    report = inputs.pop("report")
    return snp.verify_report(report, **inputs)


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


EXPECTATIONS = {
    "signature_valid": lambda a: a.valid,
    "chain_valid": lambda a: a.valid,
    "report_version": lambda a: a.details["report_version"],
    "policy": lambda a: a.details["policy"],
    "policy_debug": lambda a: a.debug,
    "reported_tcb": lambda a: a.details["reported_tcb"],
    "signing_key": lambda a: a.details["signing_key"],
    "chip_id_zero": lambda a: a.details["chip_id_zero"],
}


@pytest.mark.parametrize("vector_id", SNP_IDS)
def test_manifest_vector_gets_its_expected_verdict(vector_id: str) -> None:
    vector = snp_vector(vector_id)
    appraisal = appraise(vector)
    assert appraisal.valid, appraisal.reason
    assert set(vector.expect) <= set(EXPECTATIONS)
    for key, expected in vector.expect.items():
        assert EXPECTATIONS[key](appraisal) == expected, key
    assert appraisal.tee == SEV_SNP
    assert appraisal.signer == f"AMD {vector.expect['signing_key']} (Milan)"
    assert appraisal.details["product"] == "Milan"
    assert appraisal.tcb_status == ""
    assert appraisal.report_data == vector.report[0x50:0x90]
    assert appraisal.measurements == {
        "measurement": vector.report[0x90:0xC0].hex(),
        "host_data": vector.report[0xC0:0xE0].hex(),
    }
    assert appraisal.details["policy_debug"] is appraisal.debug is False
    assert "reserved-1" in appraisal.details["policy_flags"]


def test_parsed_fields_match_the_vector_notes() -> None:
    vcek = snp.parse_report(snp_vector(VCEK).report)
    assert (vcek.version, vcek.signing_key, vcek.cpuid) == (2, "VCEK", b"")
    assert snp.tcb_parts(vcek.reported_tcb, "Milan") == {"bl": 3, "tee": 0, "snp": 8, "ucode": 0x73}
    vlek = snp.parse_report(snp_vector(VLEK).report)
    assert (vlek.version, vlek.signing_key, vlek.cpuid) == (3, "VLEK", bytes.fromhex("190101"))
    assert vlek.signer_info == 0x4
    assert not any(vlek.chip_id)
    assert snp.tcb_parts(vlek.reported_tcb, "Milan")["ucode"] == 0xD9


def test_verifies_unpinned_and_known_ark_fingerprints_are_the_bundled_arks() -> None:
    vector = snp_vector(VCEK)
    assert appraise(vector, ark_fingerprints=None).valid
    for product, path in SNP_CHAINS.items():
        arks = [c for c in pki.load_pem_certificates(path.read_bytes()) if c.subject == c.issuer]
        assert [pki.name(ark) for ark in arks] == [f"ARK-{product}"]
        digest = hashlib.sha256(arks[0].public_bytes(Encoding.DER)).digest()
        assert snp.KNOWN_ARK_FINGERPRINTS[product] == digest


def test_debug_policy_is_reported_not_rejected_by_the_verifier() -> None:
    report = snp.parse_report(flipped(snp_vector(VCEK).report, 0x0A, 0x08))
    assert report.debug
    appraisal = appraise(snp_vector(VCEK), report=flipped(snp_vector(VCEK).report, 0x0A, 0x08))
    # Setting the bit breaks the signature; the appraisal still says what the report claims.
    assert appraisal.debug
    assert appraisal.details["policy"] == "0xb001f"
    assert "debug" in appraisal.details["policy_flags"]
    assert appraisal.reason == "report signature does not verify with the VCEK"


@pytest.mark.parametrize(
    ("vector_id", "offset"),
    [
        (VCEK, 0x090),  # MEASUREMENT
        (VCEK, 0x050),  # REPORT_DATA
        (VCEK, 0x29F),  # last signed byte
        (VCEK, 0x2A0),  # signature R
        (VCEK, 0x2E8),  # signature S
        (VLEK, 0x0C0),  # HOST_DATA
        (VLEK, 0x32F),  # last byte of S
    ],
)
def test_tampered_report_or_signature_is_rejected(vector_id: str, offset: int) -> None:
    vector = snp_vector(vector_id)
    appraisal = appraise(vector, report=flipped(vector.report, offset))
    key = vector.expect["signing_key"]
    assert not appraisal.valid
    assert appraisal.reason == f"report signature does not verify with the {key}"
    assert appraisal.details["signing_key"] == key


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r[:-1], "malformed report: report has 1183 bytes, not 1184"),
        (lambda r: r + b"\0", "malformed report: report has 1185 bytes, not 1184"),
        (lambda r: b"\x04" + r[1:], "malformed report: report version 4 is not supported (2, 3)"),
        (
            lambda r: flipped(r, 0x34, 0x03),
            "malformed report: signature algorithm 2 is not ECDSA P-384 SHA-384",
        ),
        (
            lambda r: flipped(r, 0x400),
            "malformed report: reserved bytes after the signature's R and S are not zero",
        ),
        (
            lambda r: flipped(r, 0x48, 0x1C),
            "report signing key is 'none', not VCEK or VLEK",
        ),
    ],
)
def test_malformed_report_is_rejected(change: Any, reason: str) -> None:
    vector = snp_vector(VCEK)
    appraisal = appraise(vector, report=change(vector.report))
    assert (appraisal.valid, appraisal.reason) == (False, reason)


def test_swapped_endorsement_keys_are_rejected() -> None:
    vcek, vlek = snp_vector(VCEK), snp_vector(VLEK)
    appraisal = appraise(vcek, vek=vlek.vek)
    assert appraisal.reason == "report is signed by the VCEK but the certificate is 'SEV-VLEK'"
    appraisal = appraise(vlek, vek=vcek.vek)
    assert appraisal.reason == "report is signed by the VLEK but the certificate is 'SEV-VCEK'"


@pytest.mark.parametrize("vector_id", SNP_IDS)
@pytest.mark.parametrize("product", ["Genoa", "Turin"])
def test_chain_of_another_product_is_rejected(vector_id: str, product: str) -> None:
    vector = snp_vector(vector_id)
    appraisal = appraise(vector, ca_chain=SNP_CHAINS[product].read_bytes())
    held = f"'SEV-{product}', 'ARK-{product}', 'SEV-VLEK-{product}'"
    assert appraisal.reason == f"ca_chain has no 'ARK-Milan' (it holds {held})"
    assert not appraisal.valid


def test_chain_without_the_right_intermediate_is_rejected() -> None:
    vector = snp_vector(VLEK)
    without_asvk = vector.ca_chain.split(b"-----END CERTIFICATE-----")
    ca_chain = b"-----END CERTIFICATE-----".join(without_asvk[:2]) + b"-----END CERTIFICATE-----\n"
    appraisal = appraise(vector, ca_chain=ca_chain)
    assert (
        appraisal.reason == "ca_chain has no 'SEV-VLEK-Milan' (it holds 'SEV-Milan', 'ARK-Milan')"
    )


@pytest.mark.parametrize(
    ("pins", "reason"),
    [
        ({"Genoa": snp.KNOWN_ARK_FINGERPRINTS["Genoa"]}, "no pinned ARK fingerprint for Milan"),
        ({"Milan": snp.KNOWN_ARK_FINGERPRINTS["Genoa"]}, "ARK-Milan is not the pinned ARK"),
    ],
)
def test_unpinned_ark_is_rejected(pins: dict[str, bytes], reason: str) -> None:
    appraisal = appraise(snp_vector(VCEK), ark_fingerprints=pins)
    assert (appraisal.valid, appraisal.reason) == (False, reason)


@pytest.mark.parametrize("vector_id", SNP_IDS)
def test_outside_the_validity_window_is_rejected(vector_id: str) -> None:
    vector = snp_vector(vector_id)
    start, end = vector.window
    name = f"SEV-{vector.expect['signing_key']}"
    assert appraise(vector, now=start).valid
    assert appraise(vector, now=end).valid
    early = appraise(vector, now=start - timedelta(seconds=1))
    assert early.reason == f"certificate chain: certificate {name!r} is not valid before {start}"
    late = appraise(vector, now=end + timedelta(seconds=1))
    assert late.reason == f"certificate chain: certificate {name!r} expired at {end}"


@pytest.mark.parametrize(
    ("vek", "ca_chain", "reason"),
    [
        (b"not DER", None, "VCEK is not a DER certificate"),
        (None, b"no PEM here", "ca_chain: malformed PEM certificates"),
    ],
)
def test_garbage_certificates_are_rejected(
    vek: bytes | None, ca_chain: bytes | None, reason: str
) -> None:
    vector = snp_vector(VCEK)
    appraisal = appraise(vector, vek=vek or vector.vek, ca_chain=ca_chain or vector.ca_chain)
    assert not appraisal.valid
    assert appraisal.reason.startswith(reason)


def _milan_tcb(bl: int, tee: int, snp_spl: int, ucode: int) -> int:
    return int.from_bytes(bytes([bl, tee, 0, 0, 0, 0, snp_spl, ucode]), "little")


@pytest.mark.parametrize(
    ("vector_id", "tcb", "reason"),
    [
        (VCEK, _milan_tcb(4, 0, 8, 0x73), "VCEK blSPL 3 is not REPORTED_TCB's bl 4"),
        (VCEK, _milan_tcb(3, 1, 8, 0x73), "VCEK teeSPL 0 is not REPORTED_TCB's tee 1"),
        (VCEK, _milan_tcb(3, 0, 9, 0x73), "VCEK snpSPL 8 is not REPORTED_TCB's snp 9"),
        (VCEK, _milan_tcb(3, 0, 8, 0x74), "VCEK ucodeSPL 115 is not REPORTED_TCB's ucode 116"),
        (VLEK, _milan_tcb(4, 0, 0x18, 0xDC), "VLEK ucodeSPL 217 is not REPORTED_TCB's ucode 220"),
    ],
)
def test_vek_tcb_mismatch_is_found(vector_id: str, tcb: int, reason: str) -> None:
    vector = snp_vector(vector_id)
    report = snp.parse_report(vector.report)
    vek = pki.load_der_certificate(vector.vek)
    assert snp.vek_mismatch(report, vek, "Milan") == ""
    assert snp.vek_mismatch(dataclasses.replace(report, reported_tcb=tcb), vek, "Milan") == reason


def test_vcek_hwid_mismatch_is_found_unless_chip_id_is_masked() -> None:
    report = snp.parse_report(snp_vector(VCEK).report)
    vek = pki.load_der_certificate(snp_vector(VCEK).vek)
    other_chip = dataclasses.replace(report, chip_id=bytes(64))
    mismatch = snp.vek_mismatch(other_chip, vek, "Milan")
    assert mismatch == f"VCEK hwID {report.chip_id.hex()[:16]}… is not the report's CHIP_ID"
    masked = dataclasses.replace(other_chip, signer_info=report.signer_info | 0b10)
    assert snp.vek_mismatch(masked, vek, "Milan") == ""


def _copy_with_wrapped_hwid(vek: x509.Certificate) -> x509.Certificate:
    """A self-signed copy of ``vek``'s name and AMD extensions, hwID as a DER OCTET STRING."""
    key = ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(vek.subject)
        .issuer_name(vek.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(vek.not_valid_before_utc)
        .not_valid_after(vek.not_valid_after_utc)
    )
    for extension in vek.extensions:
        value = extension.value
        assert isinstance(value, x509.UnrecognizedExtension)
        if extension.oid == snp.HW_ID:
            value = x509.UnrecognizedExtension(snp.HW_ID, b"\x04\x40" + value.value)
        builder = builder.add_extension(value, critical=False)
    return builder.sign(key, hashes.SHA384())


def test_hwid_is_read_in_both_encodings() -> None:
    report = snp.parse_report(snp_vector(VCEK).report)
    raw = pki.load_der_certificate(snp_vector(VCEK).vek)
    wrapped = _copy_with_wrapped_hwid(raw)
    ext = wrapped.extensions.get_extension_for_oid(snp.HW_ID).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    assert ext.value[:2] == b"\x04\x40"
    assert snp.vek_mismatch(report, wrapped, "Milan") == ""
    assert snp.product_name(wrapped) == "Milan"


def test_naive_now_is_a_caller_error() -> None:
    vector = snp_vector(VCEK)
    with pytest.raises(ValueError, match="timezone-aware"):
        appraise(vector, now=vector.at.replace(tzinfo=None))

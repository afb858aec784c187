"""Nitro attestation documents: the real vectors, and the precise reason for each defect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from snp_nitro_vectors import NITRO_IDS, nitro_root, nitro_vector

from teaclave.attestation import cose, nitro, pki
from teaclave.attestation.appraisal import NITRO

PROD = "nitrite/prod"
DEBUG = "nitrite/debug"
GA = "evervault/ga"

EXPECTATIONS = {
    "valid": lambda a: a.valid,
    "module_id": lambda a: a.details["module_id"],
    "digest": lambda a: a.details["digest"],
    "debug_pcrs_zero": lambda a: a.debug,
    "binding": lambda a: len(a.report_data) > 0,  # the SPKI comparison is the TLS helper's job
}


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def reencoded(document: bytes, *, protected: bytes | None = None, **changes: Any) -> bytes:
    """``document`` with payload fields changed (None deletes), keeping the old signature."""
    envelope = cbor2.loads(document)
    payload = cbor2.loads(envelope[2])
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    envelope[2] = cbor2.dumps(payload)
    if protected is not None:
        envelope[0] = protected
    return bytes(cbor2.dumps(envelope))


def leaf(document: bytes) -> x509.Certificate:
    return pki.load_der_certificate(nitro.parse_document(document).certificate)


def bundle_names(document: bytes) -> list[str]:
    cabundle = nitro.parse_document(document).cabundle
    return [pki.name(pki.load_der_certificate(der)) for der in cabundle]


@pytest.mark.parametrize("vector_id", NITRO_IDS)
def test_manifest_vector_gets_its_expected_verdict(vector_id: str) -> None:
    vector = nitro_vector(vector_id)
    appraisal = nitro.verify_document(vector.document, root=vector.root, now=vector.at)
    assert appraisal.valid, appraisal.reason
    assert set(vector.expect) <= set(EXPECTATIONS)
    for key, expected in vector.expect.items():
        assert EXPECTATIONS[key](appraisal) == (expected if key != "binding" else True), key
    doc = nitro.parse_document(vector.document)
    assert appraisal.tee == NITRO
    assert appraisal.signer == f"AWS Nitro Enclaves (module {doc.module_id})"
    assert appraisal.measurements == {f"pcr{i}": doc.pcrs[i].hex() for i in range(16)}
    assert appraisal.report_data == doc.user_data
    assert appraisal.details["timestamp"] == vector.at.isoformat(timespec="milliseconds")[:-6] + "Z"
    assert doc.timestamp == vector.at


def test_parsed_fields() -> None:
    prod = nitro.parse_document(nitro_vector(PROD).document)
    assert prod.sign1.protected == bytes.fromhex("a1013822")
    assert prod.sign1.unprotected == {}
    assert prod.digest == "SHA384"
    assert len(prod.pcrs) == 16
    assert all(len(value) == 48 for value in prod.pcrs.values())
    assert prod.public_key == prod.user_data == prod.nonce == b"\x01" * 1024
    assert not prod.debug
    assert nitro.parse_document(nitro_vector(DEBUG).document).debug
    assert bundle_names(nitro_vector(PROD).document)[0] == "aws.nitro-enclaves"
    ga = nitro.verify_document(
        nitro_vector(GA).document, root=nitro_root(), now=nitro_vector(GA).at
    )
    assert ga.details["public_key"] == ""
    assert len(ga.report_data) == 91
    assert ga.details["nonce"] == nitro.parse_document(nitro_vector(GA).document).nonce.hex()


def test_root_is_aws_root_g1() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = nitro_root().public_bytes(Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    assert digest.finalize() == nitro.ROOT_G1_SHA256


def test_tagged_envelope_is_accepted() -> None:
    vector = nitro_vector(PROD)
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(vector.document)))
    assert tagged[0] == 0xD2
    assert nitro.verify_document(tagged, root=vector.root, now=vector.at).valid
    wrong_tag = cbor2.dumps(cbor2.CBORTag(98, cbor2.loads(vector.document)))
    appraisal = nitro.verify_document(wrong_tag, root=vector.root, now=vector.at)
    assert appraisal.reason == "malformed attestation document: CBOR tag 98 is not COSE_Sign1 (18)"


def _payload_offset(document: bytes) -> int:
    """Offset in ``document`` of a byte inside the nonce (still decodes after a flip)."""
    doc = nitro.parse_document(document)
    assert doc.nonce
    start = document.find(doc.sign1.payload)
    return start + doc.sign1.payload.find(doc.nonce) + len(doc.nonce) // 2


@pytest.mark.parametrize("vector_id", NITRO_IDS)
@pytest.mark.parametrize("where", ["payload", "signature"])
def test_tampered_payload_or_signature_is_rejected(vector_id: str, where: str) -> None:
    vector = nitro_vector(vector_id)
    offset = _payload_offset(vector.document) if where == "payload" else len(vector.document) - 1
    tampered = flipped(vector.document, offset)
    appraisal = nitro.verify_document(tampered, root=vector.root, now=vector.at)
    assert (appraisal.valid, appraisal.reason) == (False, "COSE_Sign1 signature does not verify")
    assert appraisal.details["module_id"] == nitro.parse_document(vector.document).module_id


@pytest.mark.parametrize(
    ("offset", "mask", "reason"),
    [
        (5, 0x01, "COSE algorithm -36 is not ES384 (-35)"),  # 38 22 -> 38 23
        (3, 0x02, "COSE algorithm None is not ES384 (-35)"),  # label 1 -> 3
        (2, 0x03, "malformed attestation document: malformed CBOR"),  # map of 1 -> 2 pairs
    ],
)
def test_tampered_protected_header_is_rejected(offset: int, mask: int, reason: str) -> None:
    vector = nitro_vector(PROD)
    assert vector.document[1:6] == bytes.fromhex("44a1013822")
    tampered = flipped(vector.document, offset, mask)
    appraisal = nitro.verify_document(tampered, root=vector.root, now=vector.at)
    assert not appraisal.valid
    assert appraisal.reason.startswith(reason)


def test_protected_header_is_covered_by_the_signature() -> None:
    vector = nitro_vector(PROD)
    protected = cbor2.dumps({1: -35, 4: b"kid"})
    tampered = reencoded(vector.document, protected=protected)
    appraisal = nitro.verify_document(tampered, root=vector.root, now=vector.at)
    assert appraisal.reason == "COSE_Sign1 signature does not verify"


def _self_signed_root() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "other root")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA384())
    )


def test_different_root_is_rejected() -> None:
    vector = nitro_vector(PROD)
    appraisal = nitro.verify_document(vector.document, root=_self_signed_root(), now=vector.at)
    reason = "certificate chain: cabundle[0] 'aws.nitro-enclaves' is not the trusted root"
    assert (appraisal.valid, appraisal.reason) == (False, reason)


@pytest.mark.parametrize("vector_id", NITRO_IDS)
def test_expired_or_not_yet_valid_leaf_is_rejected(vector_id: str) -> None:
    vector = nitro_vector(vector_id)
    cert = leaf(vector.document)
    late = nitro.verify_document(
        vector.document, root=vector.root, now=vector.at + timedelta(hours=4)
    )
    expected = (
        f"certificate chain: certificate {pki.name(cert)!r} expired at {cert.not_valid_after_utc}"
    )
    assert (late.valid, late.reason) == (False, expected)
    early_at = cert.not_valid_before_utc - timedelta(seconds=1)
    early = nitro.verify_document(vector.document, root=vector.root, now=early_at)
    start = cert.not_valid_before_utc
    assert (
        early.reason
        == f"certificate chain: certificate {pki.name(cert)!r} is not valid before {start}"
    )


def test_cabundle_out_of_order_is_rejected() -> None:
    vector = nitro_vector(PROD)
    cabundle = nitro.parse_document(vector.document).cabundle
    names = bundle_names(vector.document)
    swapped = reencoded(
        vector.document, cabundle=[cabundle[0], cabundle[2], cabundle[1], cabundle[3]]
    )
    appraisal = nitro.verify_document(swapped, root=vector.root, now=vector.at)
    # leaf <- [3] <- [1] <- [2] <- root: the first broken link is [3] (issued by [2], not [1]).
    assert appraisal.reason.startswith(
        f"certificate chain: certificate {names[3]!r} is not issued by {names[1]!r}"
    )
    leaf_first = reencoded(vector.document, cabundle=list(reversed(cabundle)))
    appraisal = nitro.verify_document(leaf_first, root=vector.root, now=vector.at)
    assert (
        appraisal.reason == f"certificate chain: cabundle[0] {names[3]!r} is not the trusted root"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"module_id": None},
            "malformed attestation document: payload field 'module_id' is missing",
        ),
        (
            {"timestamp": "now"},
            "malformed attestation document: payload field 'timestamp' is missing",
        ),
        (
            {"timestamp": 2**70},
            "malformed attestation document: timestamp 1180591620717411303424 is",
        ),
        ({"pcrs": {}}, "malformed attestation document: payload has no PCRs"),
        ({"pcrs": {0: b"short"}}, "malformed attestation document: PCR0 is not a 32, 48 or 64"),
        ({"pcrs": {40: bytes(48)}}, "malformed attestation document: PCR index 40 is not in 0..31"),
        ({"cabundle": []}, "malformed attestation document: cabundle is not a non-empty list"),
        (
            {"user_data": bytes(1025)},
            "malformed attestation document: payload field 'user_data' is",
        ),
        ({"nonce": "text"}, "malformed attestation document: payload field 'nonce' is not a byte"),
        ({"digest": "SHA256"}, "digest 'SHA256' is not SHA384"),
        ({"certificate": b"junk"}, "certificate chain: certificate is not a DER certificate"),
    ],
)
def test_malformed_payload_is_rejected(changes: dict[str, Any], reason: str) -> None:
    vector = nitro_vector(PROD)
    appraisal = nitro.verify_document(
        reencoded(vector.document, **changes), root=vector.root, now=vector.at
    )
    assert not appraisal.valid
    assert appraisal.reason.startswith(reason), appraisal.reason


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"", "malformed CBOR"),
        (cbor2.dumps([b"", {}, b""]), "COSE_Sign1 is not an array of 4 items"),
        (cbor2.dumps([b"", {}, None, b""]), "COSE payload is not an embedded byte string"),
        (cbor2.dumps([{}, {}, b"", b""]), "COSE protected header is not a byte string"),
        (cbor2.dumps([b"\x80", {}, b"", b""]), "COSE protected header is not a map"),
        (cbor2.dumps([b"", {}, b"\x01", b""]), "payload is not a CBOR map"),
    ],
)
def test_malformed_envelope_raises_format_error(document: bytes, reason: str) -> None:
    with pytest.raises(nitro.NitroFormatError, match=reason):
        nitro.parse_document(document)
    appraisal = nitro.verify_document(document, root=nitro_root(), now=nitro_vector(PROD).at)
    assert (appraisal.valid, appraisal.details) == (False, {})
    assert appraisal.reason.startswith("malformed attestation document: ")


def test_cose_rejects_wrong_key_and_signature_length() -> None:
    doc = nitro.parse_document(nitro_vector(PROD).document)
    with pytest.raises(cose.CoseError, match="needs a secp384r1 key, not secp256r1"):
        doc.sign1.verify(ec.generate_private_key(ec.SECP256R1()).public_key())
    key = leaf(nitro_vector(PROD).document).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    doc.sign1.verify(key)
    short = cose.Sign1(doc.sign1.protected, doc.sign1.headers, {}, doc.sign1.payload, b"\0" * 95)
    with pytest.raises(cose.CoseError, match="signature has 95 bytes"):
        short.verify(key)


def test_naive_now_is_a_caller_error() -> None:
    vector = nitro_vector(PROD)
    with pytest.raises(ValueError, match="timezone-aware"):
        nitro.verify_document(vector.document, root=vector.root, now=vector.at.replace(tzinfo=None))

"""RA-TLS certificates: the real CCC and Evervault certificates, substituted keys, garbage."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ssl
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from teaclave_fixtures import VECTORS

from teaclave.attestation import ratls
from teaclave.attestation.measure import service_measurement
from teaclave.attestation.simulation import SimulatedPlatform

CCC = VECTORS / "ccc-interoperable-ra-tls"
EVERVAULT = VECTORS / "evervault-attestation-doc-validation"
GRAMINE = CCC / "gramine-cert.pem"
SGXSDK = CCC / "intel-sgxsdk-cert.pem"
RATS_TLS = CCC / "rats-tls-cert.pem"
NON_DEBUG = EVERVAULT / "non-debug-cert-containing-attestation-document-18-1-23.pem"
DEBUG = EVERVAULT / "debug-mode-cert-containing-attestation-doc-18-1-23.pem"
GA_CERT = EVERVAULT / "valid-certificate.der"
GA_DOCUMENT = EVERVAULT / "valid-attestation-doc-base64"

PUBKEY_HASH = "claims pubkey-hash == H(SPKI DER) and report_data[:32] == SHA-256(claims)"
GRAMINE_RULE = "report_data[:32] == SHA-256(SPKI DER)"
NITRO_RULE = "user_data == SPKI DER"
# vector → [(format, tee, claim keys, rule)] in extract_all order
EXPECTED = {
    GRAMINE: [
        ("interoperable", "sgx", {"pubkey-hash"}, PUBKEY_HASH),
        ("gramine-legacy", "sgx", set(), GRAMINE_RULE),
    ],
    SGXSDK: [("interoperable", "sgx", {"pubkey-hash"}, PUBKEY_HASH)],
    RATS_TLS: [("interoperable", "sgx", {"pubkey-hash", "key_0", "key_1"}, PUBKEY_HASH)],
    NON_DEBUG: [("nitro", "nitro", set(), NITRO_RULE)],
    DEBUG: [("nitro", "nitro", set(), NITRO_RULE)],
}
# Verification times (MANIFEST.json; T inside the certificate and PCK validity otherwise)
AT = {
    GRAMINE: "2025-01-01T00:00:00+00:00",
    SGXSDK: "2025-01-01T00:00:00+00:00",
    RATS_TLS: "2023-06-01T00:00:00+00:00",
    NON_DEBUG: "2023-01-18T13:07:19.280+00:00",
    DEBUG: "2023-01-18T15:10:32.312+00:00",
}
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def leaf_der(path: Path) -> bytes:
    """DER of the first certificate in a PEM file (cryptography refuses Gramine's cert)."""
    pem = path.read_text()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(pem[: pem.index(end) + len(end)] + "\n")


def intel_root() -> x509.Certificate:
    return x509.load_der_x509_certificate((VECTORS / "dcap-qvl" / "TrustedRootCA.der").read_bytes())


def nitro_root() -> x509.Certificate:
    pem = (VECTORS / "nitrite-blocky" / "aws_nitro_root_g1.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem)


def make_cert(key: ec.EllipticCurvePrivateKey, *extensions: x509.ExtensionType) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ratls test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


KEY = ec.generate_private_key(ec.SECP256R1())


def with_value(oid: str, value: bytes) -> bytes:
    """DER of a certificate of KEY carrying ``value`` under ``oid``."""
    extension = x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)
    return make_cert(KEY, extension).public_bytes(serialization.Encoding.DER)


# --- the real certificates ---------------------------------------------------------------


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: p.name)
def test_vector_evidence_binds_the_certificate_key(path: Path) -> None:
    found = ratls.extract_all(leaf_der(path))
    got = [(e.format, e.tee, set(e.claims), e.binding) for e in found]
    assert got == EXPECTED[path]
    assert all(e.binding_ok for e in found)
    assert ratls.extract(leaf_der(path)) == found[0]


def test_gramine_carries_two_different_quotes_with_different_bindings() -> None:
    interoperable, legacy = ratls.extract_all(leaf_der(GRAMINE))
    assert interoperable.evidence != legacy.evidence
    assert len(legacy.evidence) == 4734
    assert ratls.quote_report_data(legacy.evidence)[1][32:] == bytes(32)


@pytest.mark.parametrize("path", [SGXSDK, RATS_TLS, DEBUG], ids=lambda p: p.name)
def test_certificate_objects_and_der_agree(path: Path) -> None:
    cert = x509.load_der_x509_certificate(leaf_der(path))
    assert ratls.extract_all(cert) == ratls.extract_all(leaf_der(path))


def test_cryptography_cannot_load_the_gramine_certificate_but_extract_can() -> None:
    with pytest.raises(ValueError, match="ParseError"):
        x509.load_der_x509_certificate(leaf_der(GRAMINE))
    assert ratls.extract(leaf_der(GRAMINE)).binding_ok


def test_evervault_ga_document_travels_beside_the_certificate() -> None:
    cert = GA_CERT.read_bytes()
    assert ratls.extract_all(cert) == []
    with pytest.raises(ratls.RatlsFormatError, match="no RA-TLS evidence"):
        ratls.extract(cert)
    document = base64.b64decode(GA_DOCUMENT.read_bytes())
    found = ratls.bind_document(cert, document)
    assert (found.format, found.tee, found.binding_ok) == ("nitro", "nitro", True)
    other = leaf_der(DEBUG)
    assert not ratls.bind_document(other, document).binding_ok


# --- substituted keys ---------------------------------------------------------------------


def substituted(path: Path) -> bytes:
    """A new self-signed certificate with another key and the vector's evidence extensions."""
    der = leaf_der(path)
    carried = ratls._parse(der).extensions  # keyed by the DER body of the OID
    bodies = {
        "2.23.133.5.4.9": "678105050409",
        "0.6.9.42.840.113741.1337.6": "06092a864886f84d8a3906",
    }
    extensions: list[x509.ExtensionType] = [
        x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), carried[bytes.fromhex(body)])
        for oid, body in bodies.items()
        if bytes.fromhex(body) in carried
    ]
    if path in (NON_DEBUG, DEBUG):
        cert = x509.load_der_x509_certificate(der)
        extensions.append(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    other = make_cert(ec.generate_private_key(ec.SECP384R1()), *extensions)
    return other.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: p.name)
def test_substituted_key_breaks_every_binding(path: Path) -> None:
    der = substituted(path)
    found = ratls.extract_all(der)
    assert [(e.format, e.tee) for e in found] == [(f, t) for f, t, _, _ in EXPECTED[path]]
    assert not any(e.binding_ok for e in found)
    appraisal = ratls.verify_certificate(
        der, now=NOW, intel_root=intel_root(), nitro_root=nitro_root()
    )
    assert not appraisal.valid
    assert appraisal.reason.startswith("evidence is not bound to the certificate's key (")


# --- hardware verification ----------------------------------------------------------------


@pytest.mark.parametrize("path", [GRAMINE, SGXSDK, RATS_TLS], ids=lambda p: p.name)
def test_verify_sgx_certificates_without_collateral(path: Path) -> None:
    now = dt.datetime.fromisoformat(AT[path])
    appraisal = ratls.verify_certificate(leaf_der(path), now=now, intel_root=intel_root())
    assert appraisal.tee == "sgx"
    assert not appraisal.valid
    assert appraisal.reason == "no collateral: TCB not evaluated"
    assert appraisal.details["quote_signatures_valid"] is True
    assert appraisal.details["pck_chain_valid"] is True
    assert appraisal.details["ratls_format"] == "interoperable"


@pytest.mark.parametrize("path", [NON_DEBUG, DEBUG], ids=lambda p: p.name)
def test_verify_evervault_certificates(path: Path) -> None:
    now = dt.datetime.fromisoformat(AT[path])
    appraisal = ratls.verify_certificate(leaf_der(path), now=now, nitro_root=nitro_root())
    assert appraisal.valid, appraisal.reason
    assert appraisal.debug is (path == DEBUG)
    assert appraisal.details["binding"] == NITRO_RULE


def test_verify_evervault_ga_with_separate_document() -> None:
    document = base64.b64decode(GA_DOCUMENT.read_bytes())
    now = dt.datetime.fromisoformat("2023-09-18T15:03:30.860+00:00")
    appraisal = ratls.verify_certificate(
        GA_CERT.read_bytes(), now=now, nitro_root=nitro_root(), document=document
    )
    assert appraisal.valid, appraisal.reason


def test_verify_refuses_an_expired_certificate_and_missing_roots() -> None:
    late = ratls.verify_certificate(leaf_der(RATS_TLS), now=NOW, intel_root=intel_root())
    assert "certificate is not valid at 2025-01-01" in late.reason
    naive = ratls.verify_certificate(leaf_der(RATS_TLS), now=dt.datetime(2030, 1, 1))
    assert "certificate is not valid at 2030-01-01T00:00:00+00:00" in naive.reason
    no_root = ratls.verify_certificate(leaf_der(GRAMINE), now=NOW)
    assert no_root.reason == "no Intel root CA given"
    at = dt.datetime.fromisoformat(AT[DEBUG])
    assert ratls.verify_certificate(leaf_der(DEBUG), now=at).reason == "no AWS Nitro root CA given"
    garbage = ratls.verify_certificate(b"not a certificate", now=NOW)
    assert (garbage.tee, garbage.valid) == ("unknown", False)


# --- building our own ---------------------------------------------------------------------


def test_simulated_evidence_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    platform = SimulatedPlatform(ec.generate_private_key(ec.SECP256R1()))
    claims = ratls.pubkey_claims(key.public_key(), nonce=b"fresh")
    evidence = platform.attest(
        "frontend", service_measurement("frontend"), ratls.claims_report_data(claims)
    )
    cert = make_cert(key, ratls.interoperable_extension(evidence, "simulation", claims))
    found = ratls.extract(cert)
    assert (found.format, found.tee, found.binding_ok) == ("interoperable", "simulation", True)
    assert found.evidence == evidence
    assert dict(found.claims) == claims
    appraisal = ratls.verify_certificate(cert, now=NOW)
    assert appraisal.reason == "no hardware verifier for 'simulation' evidence in certificates"
    assert not ratls.extract(
        make_cert(KEY, ratls.interoperable_extension(evidence, "simulation", claims))
    ).binding_ok


@pytest.mark.parametrize(
    ("tee", "path"),
    [
        ("sgx", "dcap-qvl/sgx_quote"),
        ("tdx", "dcap-qvl/tdx_quote"),
        ("tdx", "dcap-qvl/tdx_quote_outdated"),
        ("sev-snp", "trustee/test-report.bin"),
    ],
)
def test_hardware_evidence_round_trip(tee: str, path: str) -> None:
    evidence = (VECTORS / path).read_bytes()
    claims = ratls.pubkey_claims(KEY.public_key())
    cert = make_cert(KEY, ratls.interoperable_extension(evidence, tee, claims))
    found = ratls.extract(cert)
    assert (found.format, found.tee, found.evidence) == ("interoperable", tee, evidence)
    assert not found.binding_ok  # the recorded evidence binds someone else's claims


def test_sgx_quote_report_data_offset() -> None:
    tee, report_data = ratls.quote_report_data((VECTORS / "dcap-qvl" / "sgx_quote").read_bytes())
    assert tee == "sgx"
    assert report_data.startswith(b"Hello, world!")


def test_pubkey_hash_accepts_sha384_and_sha512() -> None:
    spki = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for alg_id, name in ((7, "sha384"), (8, "sha512")):
        claims = {"pubkey-hash": cbor2.dumps([alg_id, hashlib.new(name, spki).digest()])}
        platform = SimulatedPlatform(KEY)
        evidence = platform.attest("x", b"m", ratls.claims_report_data(claims))
        cert = make_cert(KEY, ratls.interoperable_extension(evidence, "simulation", claims))
        assert ratls.extract(cert).binding_ok


def test_unknown_tee_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown TEE type"):
        ratls.interoperable_extension(b"", "trustzone", {})


# --- malformed evidence -------------------------------------------------------------------

TAGGED = "2.23.133.5.4.9"
LEGACY = "1.2.840.113741.1337.6"
SHORT_QUOTE = bytes.fromhex("0300") + bytes(100)


def cmw(tee: str, inner: bytes) -> bytes:
    return cbor2.dumps([f"{ratls.MEDIA_TYPE};tee={tee}", inner])


@pytest.mark.parametrize(
    ("oid", "value", "match"),
    [
        (TAGGED, b"", "malformed CBOR"),
        (TAGGED, b"\xff\x00", "malformed CBOR"),
        (TAGGED, cbor2.dumps(7), "neither a CBOR tag nor a CMW record"),
        (TAGGED, cbor2.dumps(cbor2.CBORTag(60000, [b"x"])), "not \\[evidence bstr"),
        (TAGGED, cbor2.dumps(cbor2.CBORTag(60000, [b"x", b"y"])), "quote is too short"),
        (TAGGED, cbor2.dumps(cbor2.CBORTag(60000, [SHORT_QUOTE, b"y"])), "quote is too short"),
        (TAGGED, cmw("simulation", b"\x01"), "not \\[evidence bstr"),
        (TAGGED, cmw("simulation", cbor2.dumps([b"{}", b""])), "malformed evidence"),
        (TAGGED, cmw("sev-snp", cbor2.dumps([b"short", b""])), "SEV-SNP report is too short"),
        (TAGGED, cmw("nitro", cbor2.dumps([b"\x84", b""])), "malformed Nitro"),
        (LEGACY, b"garbage", "too short"),
        (LEGACY, bytes.fromhex("0900") + bytes(600), "not an SGX or TDX quote"),
    ],
)
def test_garbage_extension_values(oid: str, value: bytes, match: str) -> None:
    with pytest.raises(ratls.RatlsFormatError, match=match):
        ratls.extract(with_value(oid, value))


def interop_with_claims(claims: bytes) -> bytes:
    quote = (VECTORS / "dcap-qvl" / "sgx_quote").read_bytes()
    return with_value(TAGGED, cbor2.dumps(cbor2.CBORTag(60000, [quote, claims])))


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (cbor2.dumps([1, 2]), "claims are not a CBOR map"),
        (cbor2.dumps({"pubkey-hash": 5}), "not a byte string"),
        (cbor2.dumps({"pubkey-hash": cbor2.dumps([1])}), "not \\[hash-alg-id, hash\\]"),
        (cbor2.dumps({"pubkey-hash": cbor2.dumps([99, b"h"])}), "unknown hash-alg-id 99"),
        (cbor2.dumps({"pubkey-hash": cbor2.dumps([True, b"h"])}), "unknown hash-alg-id True"),
    ],
)
def test_malformed_claims(claims: bytes, match: str) -> None:
    with pytest.raises(ratls.RatlsFormatError, match=match):
        ratls.extract(interop_with_claims(claims))


def test_claims_without_pubkey_hash_do_not_bind() -> None:
    found = ratls.extract(interop_with_claims(cbor2.dumps({"nonce": b"n"})))
    assert not found.binding_ok


@pytest.mark.parametrize("tag", [60001, 60002, 1234])
def test_unsupported_tags_are_reported_not_bound(tag: int) -> None:
    found = ratls.extract(with_value(TAGGED, cbor2.dumps(cbor2.CBORTag(tag, [b"r", b"c"]))))
    assert (found.tee, found.binding_ok) == ("unknown", False)
    assert f"CBOR tag {tag}" in found.binding


def test_unsupported_media_type_is_reported_not_bound() -> None:
    value = cbor2.dumps(["application/cbor", cbor2.dumps([b"e", b"c"])])
    found = ratls.extract(with_value(TAGGED, value))
    assert (found.tee, found.binding_ok) == ("unknown", False)


def test_san_labels() -> None:
    def with_names(*names: str) -> x509.Certificate:
        return make_cert(KEY, x509.SubjectAlternativeName([x509.DNSName(n) for n in names]))

    assert ratls.extract_all(with_names("a.example", "deadbeef.example")) == []
    with pytest.raises(ratls.RatlsFormatError, match="not a hex attestation document"):
        ratls.extract(with_names("x" * 80 + ".example"))
    with pytest.raises(ratls.RatlsFormatError, match="malformed Nitro"):
        ratls.extract(with_names("ab" * 40 + ".example"))


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30", b"\x30\x85\x00\x00\x00\x00\x00", b"\x30\x03\x02\x01\x01", b"\x04\x00"],
)
def test_malformed_certificates(der: bytes) -> None:
    with pytest.raises(ratls.RatlsFormatError):
        ratls.extract(der)


# --- fuzz ---------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _extract_never_crashes(der: bytes) -> None:
    try:
        found = ratls.extract_all(der)
    except ratls.RatlsFormatError:
        return
    assert all(isinstance(e, ratls.CertificateEvidence) for e in found)


@FUZZ
@given(oid=st.sampled_from([TAGGED, LEGACY]), value=st.binary(max_size=600))
def test_fuzz_extension_bytes(oid: str, value: bytes) -> None:
    _extract_never_crashes(with_value(oid, value))


@FUZZ
@given(
    tag=st.sampled_from([60000, 60001]),
    evidence=st.binary(max_size=700),
    claims=st.one_of(
        st.binary(max_size=64),
        st.builds(
            cbor2.dumps, st.dictionaries(st.text(max_size=12), st.binary(max_size=40), max_size=3)
        ),
    ),
)
def test_fuzz_tagged_evidence(tag: int, evidence: bytes, claims: bytes) -> None:
    _extract_never_crashes(with_value(TAGGED, cbor2.dumps(cbor2.CBORTag(tag, [evidence, claims]))))


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_certificate_bytes(data: bytes) -> None:
    _extract_never_crashes(data)
    _extract_never_crashes(b"\x30" + bytes([len(data) & 0x7F]) + data)


@FUZZ
@given(
    path=st.sampled_from([GRAMINE, RATS_TLS, DEBUG]),
    edits=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.none() | st.integers(0, 20_000),
)
def test_fuzz_mutated_vectors(path: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    der = bytearray(leaf_der(path))
    for index, value in edits:
        der[index % len(der)] = value
    _extract_never_crashes(bytes(der[:cut]))

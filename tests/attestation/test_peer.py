"""The platform's peer check on RA-TLS certificates: binding, freshness, TEE, service, code."""

import dataclasses
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from teaclave_fixtures import VECTORS

from teaclave.attestation import intel, ratls, roots
from teaclave.attestation.appraisal import SGX, Appraisal
from teaclave.attestation.evidence import AttestationError, AttestationPolicy, Verdict
from teaclave.attestation.measure import service_measurement
from teaclave.attestation.peer import verify_peer
from teaclave.attestation.simulation import SimulatedPlatform

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
MEASUREMENT = service_measurement("frontend")
PLATFORM = SimulatedPlatform(ec.generate_private_key(ec.SECP256R1()))
POLICY = AttestationPolicy(
    measurements={"frontend": frozenset({MEASUREMENT})},
    simulation_keys=frozenset({PLATFORM.fingerprint}),
    max_evidence_age_secs=3600,
)
FRONTEND = frozenset({"frontend"})


def certificate(extension: x509.UnrecognizedExtension, key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(extension, critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def simulated(
    *, issued: datetime.datetime = NOW, service: str = "frontend", **claims: object
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    bound = ratls.pubkey_claims(
        key.public_key(), service=service, iat=int(issued.timestamp()), **claims
    )
    evidence = PLATFORM.attest(service, MEASUREMENT, ratls.claims_report_data(bound))
    return certificate(ratls.interoperable_extension(evidence, "simulation", bound), key)


def test_accepts_fresh_bound_evidence_of_an_expected_service() -> None:
    verdict = verify_peer(simulated(), services=FRONTEND, policy=POLICY, now=NOW)
    assert verdict == Verdict("simulation", "frontend", MEASUREMENT)


@pytest.mark.parametrize(
    ("issued", "reason"),
    [
        (NOW - datetime.timedelta(hours=2), "evidence is 7200 s old; at most 3600 s is accepted"),
        (NOW + datetime.timedelta(hours=1), "evidence is dated 3600 s in the future"),
    ],
)
def test_stale_or_future_evidence_is_refused(issued: datetime.datetime, reason: str) -> None:
    with pytest.raises(AttestationError, match=reason):
        verify_peer(simulated(issued=issued), services=FRONTEND, policy=POLICY, now=NOW)
    lenient = dataclasses.replace(POLICY, max_evidence_age_secs=None)
    if issued < NOW:
        assert verify_peer(simulated(issued=issued), services=FRONTEND, policy=lenient, now=NOW)


def test_evidence_moved_to_another_key_is_refused() -> None:
    original = x509.load_der_x509_certificate(simulated())
    extension = original.extensions.get_extension_for_oid(ratls.TAGGED_EVIDENCE_OID).value
    assert isinstance(extension, x509.UnrecognizedExtension)
    moved = certificate(extension, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AttestationError, match="not bound to the peer's TLS key"):
        verify_peer(moved, services=FRONTEND, policy=POLICY, now=NOW)


def test_claims_must_name_the_service_and_the_time() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bound = ratls.pubkey_claims(key.public_key(), iat=int(NOW.timestamp()))
    evidence = PLATFORM.attest("frontend", MEASUREMENT, ratls.claims_report_data(bound))
    cert = certificate(ratls.interoperable_extension(evidence, "simulation", bound), key)
    with pytest.raises(AttestationError, match="evidence claims lack 'service'"):
        verify_peer(cert, services=FRONTEND, policy=POLICY, now=NOW)


def test_the_claimed_service_must_be_the_attested_one() -> None:
    with pytest.raises(AttestationError, match="peer is 'storage', but only frontend"):
        verify_peer(simulated(service="storage"), services=FRONTEND, policy=POLICY, now=NOW)


def sgx_certificate(debug: bool = False) -> bytes:
    """A certificate carrying the real dcap-qvl SGX quote, its report data set to our claims.

    Rewriting the report data breaks the quote's signature, as it must.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    bound = ratls.pubkey_claims(key.public_key(), service="frontend", iat=int(NOW.timestamp()))
    quote = bytearray((VECTORS / "dcap-qvl" / "sgx_quote").read_bytes())
    quote[48 + 320 : 48 + 384] = ratls.claims_report_data(bound)
    return certificate(ratls.interoperable_extension(bytes(quote), SGX, bound), key)


def test_hardware_evidence_needs_a_configured_verifier() -> None:
    with pytest.raises(AttestationError, match="no verifier for sgx evidence is configured"):
        verify_peer(sgx_certificate(), services=FRONTEND, policy=POLICY, now=NOW)


def test_hardware_evidence_goes_to_the_real_verifier() -> None:
    def appraise(found: ratls.CertificateEvidence, now: datetime.datetime) -> Appraisal:
        return intel.verify_quote(found.evidence, collateral=None, root=roots.intel_root(), now=now)

    policy = dataclasses.replace(POLICY, appraise=appraise)
    with pytest.raises(AttestationError, match=r"sgx evidence rejected: .*signature"):
        verify_peer(sgx_certificate(), services=FRONTEND, policy=policy, now=NOW)


@pytest.mark.parametrize(
    ("appraisal", "reason"),
    [
        (Appraisal(SGX, valid=True, debug=True, measurements={"mrenclave": "00"}), "DEBUG sgx"),
        (
            Appraisal(SGX, valid=True, measurements={"mrenclave": "ab" * 32}),
            "unexpected measurement",
        ),
    ],
)
def test_the_appraisal_must_show_a_production_tee_running_accepted_code(
    appraisal: Appraisal, reason: str
) -> None:
    policy = dataclasses.replace(POLICY, appraise=lambda found, now: appraisal)
    with pytest.raises(AttestationError, match=reason):
        verify_peer(sgx_certificate(), services=FRONTEND, policy=policy, now=NOW)
    accepted = dataclasses.replace(
        appraisal, debug=False, measurements={"mrenclave": MEASUREMENT.hex()}
    )
    policy = dataclasses.replace(POLICY, appraise=lambda found, now: accepted)
    verdict = verify_peer(sgx_certificate(), services=FRONTEND, policy=policy, now=NOW)
    assert verdict == Verdict(SGX, "frontend", MEASUREMENT)


def test_certificates_without_evidence_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bare = certificate(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"x"), key)
    with pytest.raises(AttestationError, match="certificate carries no RA-TLS evidence"):
        verify_peer(bare, services=FRONTEND, policy=POLICY, now=NOW)

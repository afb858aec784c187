"""Simulated evidence: what the verifier accepts and the precise reason it refuses."""

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation.evidence import (
    AttestationError,
    AttestationPolicy,
    Evidence,
    verify,
)
from teaclave.attestation.measure import package_digest, service_measurement
from teaclave.attestation.simulation import SimulatedPlatform

REPORT = hashlib.sha256(b"tls key").digest()
MEASUREMENT = service_measurement("frontend")
PLATFORM = SimulatedPlatform(ec.generate_private_key(ec.SECP256R1()))
POLICY = AttestationPolicy(
    measurements={"frontend": frozenset({MEASUREMENT})},
    simulation_keys=frozenset({PLATFORM.fingerprint}),
)


@pytest.fixture
def platform() -> SimulatedPlatform:
    return PLATFORM


def test_accepts_expected_service_and_measurement(platform: SimulatedPlatform) -> None:
    evidence = platform.attest("frontend", MEASUREMENT, REPORT)
    verdict = verify(evidence, report_data=REPORT, services=frozenset({"frontend"}), policy=POLICY)
    assert verdict.service == "frontend"
    assert verdict.simulated
    assert "SIMULATED" in verdict.describe()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"simulation_keys": frozenset()}, "not a trusted one"),
        ({"measurements": {"frontend": frozenset({b"\0" * 32})}}, "unexpected measurement"),
        ({"measurements": {}}, "unexpected measurement"),
    ],
)
def test_policy_refusals(platform: SimulatedPlatform, change: dict, reason: str) -> None:
    evidence = platform.attest("frontend", MEASUREMENT, REPORT)
    policy = dataclasses.replace(POLICY, **change)
    with pytest.raises(AttestationError, match=reason):
        verify(evidence, report_data=REPORT, services=frozenset({"frontend"}), policy=policy)


def test_refuses_other_service_and_other_key(platform: SimulatedPlatform) -> None:
    evidence = platform.attest("frontend", MEASUREMENT, REPORT)
    with pytest.raises(AttestationError, match="only storage may connect"):
        verify(evidence, report_data=REPORT, services=frozenset({"storage"}), policy=POLICY)
    with pytest.raises(AttestationError, match="not bound to the peer's TLS key"):
        verify(evidence, report_data=b"\1" * 32, services=frozenset({"frontend"}), policy=POLICY)


def test_refuses_evidence_of_a_self_made_platform() -> None:
    """Anyone can make a platform key; only the pinned one is trusted."""
    rogue = SimulatedPlatform(ec.generate_private_key(ec.SECP256R1()))
    evidence = rogue.attest("frontend", MEASUREMENT, REPORT)
    with pytest.raises(AttestationError, match=f"platform key {rogue.fingerprint.hex()}"):
        verify(evidence, report_data=REPORT, services=frozenset({"frontend"}), policy=POLICY)


def test_refuses_forged_and_malformed_evidence(platform: SimulatedPlatform) -> None:
    genuine = Evidence.from_bytes(platform.attest("frontend", MEASUREMENT, REPORT))
    forged = dataclasses.replace(genuine, measurement=hashlib.sha256(b"evil").digest())
    policy = dataclasses.replace(POLICY, measurements={"frontend": frozenset({forged.measurement})})
    with pytest.raises(AttestationError, match="signature does not verify"):
        verify(
            forged.to_bytes(), report_data=REPORT, services=frozenset({"frontend"}), policy=policy
        )
    for junk in (b"", b"{}", b"not json", b'{"tee": 1}', b"x" * 20000):
        with pytest.raises(AttestationError):
            verify(junk, report_data=REPORT, services=frozenset({"frontend"}), policy=POLICY)


def test_measurements_differ_per_service_and_follow_the_code() -> None:
    assert service_measurement("frontend") != service_measurement("storage")
    assert service_measurement("frontend", b"\0" * 32) != service_measurement("frontend")
    assert len(package_digest()) == 32

"""The simulated TEE: evidence signed by a simulated platform key.

A stand-in for hardware (SGX, TDX, SEV-SNP, Nitro) on machines without it.
Everything it produces is marked ``tee = "simulation"`` and verifiers accept it
only from a platform key they pin. The platform key is an ordinary P-256 key
kept in the data directory: whoever can read it can forge evidence.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation.evidence import SIMULATION, Evidence, platform_fingerprint


class SimulatedPlatform:
    """Produces simulated evidence for services on this (simulated) platform."""

    tee = SIMULATION

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def fingerprint(self) -> bytes:
        """The platform key's fingerprint (what verifiers pin)."""
        return platform_fingerprint(self._public)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        """The platform key (also the CA of the services' client certificates)."""
        return self._key

    def attest(self, service: str, measurement: bytes, report_data: bytes) -> bytes:
        """Serialized evidence for ``service`` binding ``report_data``."""
        unsigned = Evidence(SIMULATION, service, measurement, report_data, self._public)
        signature = self._key.sign(unsigned.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        return Evidence(
            SIMULATION, service, measurement, report_data, self._public, signature
        ).to_bytes()

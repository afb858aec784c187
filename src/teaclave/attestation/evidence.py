"""Attestation evidence carried in RA-TLS certificates, and its verifier.

Evidence binds three things: which TEE produced it, what code runs (the
*measurement*, per service) and which TLS key the service holds (the *report
data*, SHA-256 of the key's SubjectPublicKeyInfo). Verification is a pure
function of (evidence, expected report data, policy); it raises
:class:`AttestationError` with a precise reason or returns a :class:`Verdict`.

Only the simulation backend exists so far (:mod:`teaclave.attestation.simulation`):
its evidence is signed by a simulated platform key, proves nothing about
hardware, and is accepted only from a platform key the policy pins
(``simulation_keys``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.core.errors import Status, TeaclaveError

if TYPE_CHECKING:
    from teaclave.attestation.appraisal import Appraisal
    from teaclave.attestation.ratls import CertificateEvidence

SIMULATION = "simulation"
_SIGNED_PREFIX = b"teaclave-simulated-evidence-v1\x00"
MAX_EVIDENCE_BYTES = 16 * 1024


class AttestationError(TeaclaveError):
    """Evidence was missing, malformed, or not acceptable under the policy."""

    def __init__(self, message: str) -> None:
        super().__init__(Status.UNAVAILABLE, f"attestation failed: {message}")
        self.reason = message


@dataclass(frozen=True)
class Evidence:
    """What a TEE says about a service instance."""

    tee: str
    service: str
    measurement: bytes
    report_data: bytes
    platform_key: bytes  # DER SubjectPublicKeyInfo of the signing platform key
    signature: bytes = b""

    def _body(self) -> dict[str, str]:
        return {
            "tee": self.tee,
            "service": self.service,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "platform_key": self.platform_key.hex(),
        }

    def signed_bytes(self) -> bytes:
        """The canonical bytes the platform key signs."""
        return _SIGNED_PREFIX + json.dumps(self._body(), sort_keys=True).encode()

    def to_bytes(self) -> bytes:
        """Serialized form embedded in certificates (JSON)."""
        body = {**self._body(), "signature": self.signature.hex()}
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Evidence:
        """Parse :meth:`to_bytes` output; AttestationError on any defect."""
        if len(data) > MAX_EVIDENCE_BYTES:
            raise AttestationError("evidence too large")
        try:
            body = json.loads(data)
            return cls(
                tee=str(body["tee"]),
                service=str(body["service"]),
                measurement=bytes.fromhex(body["measurement"]),
                report_data=bytes.fromhex(body["report_data"]),
                platform_key=bytes.fromhex(body["platform_key"]),
                signature=bytes.fromhex(body["signature"]),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise AttestationError(f"malformed evidence ({exc.__class__.__name__})") from None


@dataclass(frozen=True)
class Verdict:
    """A verified peer: what TEE, which service, which code."""

    tee: str
    service: str
    measurement: bytes

    @property
    def simulated(self) -> bool:
        """True when the evidence came from the simulation backend (no hardware)."""
        return self.tee == SIMULATION

    def describe(self) -> str:
        """One line for logs and CLI output."""
        label = "SIMULATED TEE (no hardware protection)" if self.simulated else self.tee
        return f"{self.service}: {label}, measurement {self.measurement.hex()}"


Appraiser = Callable[["CertificateEvidence", datetime], "Appraisal"]
"""Appraises hardware evidence found in a certificate, at a time."""


@dataclass(frozen=True)
class AttestationPolicy:
    """What a verifier accepts.

    ``measurements`` maps a service name to the measurements accepted for it;
    a service missing from the map is refused. ``simulation_keys`` are the
    fingerprints (:func:`platform_fingerprint`) of the simulated platforms whose
    evidence is accepted; empty (the default) refuses all simulated evidence.
    ``max_evidence_age_secs``: older evidence is refused (None: any age).
    ``appraise``: the verifier of hardware evidence (None: refuse it).
    """

    measurements: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    simulation_keys: frozenset[bytes] = frozenset()
    max_evidence_age_secs: float | None = None
    appraise: Appraiser | None = None


def platform_fingerprint(platform_key: bytes) -> bytes:
    """SHA-256 of a platform key (DER SubjectPublicKeyInfo): what policies pin."""
    return hashlib.sha256(platform_key).digest()


def verify(
    evidence_bytes: bytes,
    *,
    report_data: bytes,
    services: frozenset[str],
    policy: AttestationPolicy,
) -> Verdict:
    """Verify evidence from a peer that must be one of ``services``.

    Steps: (1) parse; (2) TEE type allowed by the policy, from a pinned
    platform key; (3) the platform signature; (4) the report data binds the
    peer's TLS key; (5) the peer is one of the expected services; (6) its
    measurement is one the policy accepts for that service.
    """
    evidence = Evidence.from_bytes(evidence_bytes)  # (1)
    if evidence.tee != SIMULATION:  # (2)
        raise AttestationError(f"unsupported TEE type {evidence.tee!r}")
    fingerprint = platform_fingerprint(evidence.platform_key)
    if fingerprint not in policy.simulation_keys:
        raise AttestationError(
            f"peer {evidence.service!r} presents SIMULATED evidence from platform key "
            f"{fingerprint.hex()}, which is not a trusted one (simulation is accepted only "
            "from a pinned simulated platform key)"
        )
    _check_simulation_signature(evidence)  # (3)
    if evidence.report_data != report_data:  # (4)
        raise AttestationError("evidence is not bound to the peer's TLS key")
    if evidence.service not in services:  # (5)
        expected = ", ".join(sorted(services)) or "nobody"
        raise AttestationError(
            f"peer is {evidence.service!r}, but only {expected} may connect here"
        )
    accepted = policy.measurements.get(evidence.service, frozenset())  # (6)
    if evidence.measurement not in accepted:
        raise AttestationError(
            f"unexpected measurement {evidence.measurement.hex()} for {evidence.service!r}"
        )
    return Verdict(evidence.tee, evidence.service, evidence.measurement)


def _check_simulation_signature(evidence: Evidence) -> None:
    try:
        key = serialization.load_der_public_key(evidence.platform_key)
    except ValueError:
        raise AttestationError("bad platform key in evidence") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AttestationError("platform key is not an EC key")
    try:
        key.verify(evidence.signature, evidence.signed_bytes(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AttestationError("evidence signature does not verify") from None

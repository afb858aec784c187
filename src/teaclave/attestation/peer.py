"""Who is on the other end of a TLS connection: the platform's one peer check.

Clients checking an endpoint and services checking each other both call
:func:`verify_peer` on the certificate the peer presented. It carries evidence
in the interoperable RA-TLS format (:mod:`teaclave.attestation.ratls`) with
claims binding the certificate's key, naming the service and the time the
evidence was made (``iat``). The check, in order: the evidence binds this
certificate's key; it is fresh; the TEE vouches for it (simulation: a pinned
simulated platform; hardware: the policy's appraiser); the peer is one of the
expected services; its measurement is one the policy accepts for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from teaclave.attestation import ratls
from teaclave.attestation.appraisal import NITRO, SEV_SNP, SGX, TDX
from teaclave.attestation.evidence import (
    SIMULATION,
    AttestationError,
    AttestationPolicy,
    Verdict,
    verify,
)

MAX_CLOCK_SKEW_SECS = 300.0
"""Evidence may be dated this far in the future (clocks differ)."""
RECHECK_SECS = 300.0
"""A verdict on a peer of a long-lived connection is relied on this long, then its evidence
is checked again (so evidence that has grown too old is refused within this time)."""
PRIMARY_MEASUREMENT = {SGX: "mrenclave", TDX: "mrtd", SEV_SNP: "measurement", NITRO: "pcr0"}
"""Which of a TEE's measurements identifies the code (what enclave info lists)."""


def _claim(claims: Any, name: str, kind: type) -> Any:
    value = claims.get(name) if hasattr(claims, "get") else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AttestationError(f"evidence claims lack {name!r}")
    return value


def _check_fresh(issued: int, policy: AttestationPolicy, now: datetime) -> None:
    age = now.timestamp() - issued
    if age < -MAX_CLOCK_SKEW_SECS:
        raise AttestationError(f"evidence is dated {-age:.0f} s in the future")
    if policy.max_evidence_age_secs is not None and age > policy.max_evidence_age_secs:
        raise AttestationError(
            f"evidence is {age:.0f} s old; at most {policy.max_evidence_age_secs:.0f} s is accepted"
        )


def _hardware(
    found: ratls.CertificateEvidence, service: str, policy: AttestationPolicy, now: datetime
) -> Verdict:
    if policy.appraise is None:
        raise AttestationError(f"no verifier for {found.tee} evidence is configured")
    appraisal = policy.appraise(found, now)
    if not appraisal.valid:
        raise AttestationError(f"{found.tee} evidence rejected: {appraisal.reason}")
    if appraisal.debug:
        raise AttestationError(f"peer {service!r} runs in a DEBUG {found.tee} TEE")
    measurement = bytes.fromhex(appraisal.measurements.get(PRIMARY_MEASUREMENT[found.tee], ""))
    if measurement not in policy.measurements.get(service, frozenset()):
        raise AttestationError(f"unexpected measurement {measurement.hex()} for {service!r}")
    return Verdict(found.tee, service, measurement)


def verify_peer(
    cert: bytes, *, services: frozenset[str], policy: AttestationPolicy, now: datetime
) -> Verdict:
    """The verdict on the peer presenting ``cert`` (DER); AttestationError with the reason."""
    try:
        found = ratls.extract(cert)
    except ratls.RatlsFormatError as exc:
        raise AttestationError(f"certificate evidence: {exc}") from None
    if not found.binding_ok:
        raise AttestationError(f"evidence is not bound to the peer's TLS key ({found.binding})")
    service = _claim(found.claims, "service", str)
    _check_fresh(_claim(found.claims, "iat", int), policy, now)
    if service not in services:
        expected = ", ".join(sorted(services)) or "nobody"
        raise AttestationError(f"peer is {service!r}, but only {expected} may connect here")
    if found.tee in PRIMARY_MEASUREMENT:
        return _hardware(found, service, policy, now)
    if found.tee != SIMULATION:
        raise AttestationError(f"unsupported TEE type {found.tee!r}")
    return verify(
        found.evidence,
        report_data=ratls.claims_report_data(found.claims),
        services=frozenset({service}),
        policy=policy,
    )

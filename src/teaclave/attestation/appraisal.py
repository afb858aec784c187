"""The verdict of a hardware evidence verifier: what was proved, or why nothing was.

Every verifier (:mod:`~teaclave.attestation.intel`, :mod:`~teaclave.attestation.snp`,
:mod:`~teaclave.attestation.nitro`) is a pure function of (evidence, collateral or
roots, ``now``) that returns an :class:`Appraisal`, never raising on bad input:
malformed, tampered, expired or out-of-policy evidence is an appraisal with
``valid = False`` and a precise ``reason``, holding whatever was parsed before
the defect was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SGX = "sgx"
TDX = "tdx"
SEV_SNP = "sev-snp"
NITRO = "nitro"
TEES = (SGX, TDX, SEV_SNP, NITRO)


@dataclass(frozen=True)
class Appraisal:
    """One piece of evidence, appraised.

    ``measurements``: name → hex value (``mrenclave``, ``mrsigner``; ``mrtd``,
    ``rtmr0``…; ``measurement``; ``pcr0``…). ``report_data``: the 64 bytes the
    TEE binds (Nitro: ``user_data``). ``tcb_status``: the platform's TCB
    status (``UpToDate``, ``OutOfDate``, ``ConfigurationAndSWHardeningNeeded``…),
    empty where the TEE has none. ``signer``: who vouches, in words.
    ``details``: further parsed fields (``fmspc``, ``qe_status``, ``module_id``…).
    """

    tee: str
    valid: bool
    reason: str = ""
    measurements: Mapping[str, str] = field(default_factory=dict)
    report_data: bytes = b""
    tcb_status: str = ""
    advisories: tuple[str, ...] = ()
    debug: bool = False
    signer: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """Lines for people: the verdict first, then what the evidence says."""
        verdict = "VALID" if self.valid else f"REJECTED: {self.reason}"
        lines = [f"{self.tee}: {verdict}"]
        if self.signer:
            lines.append(f"signed by: {self.signer}")
        if self.tcb_status:
            advisories = f" ({', '.join(self.advisories)})" if self.advisories else ""
            lines.append(f"TCB status: {self.tcb_status}{advisories}")
        lines.append(f"debug: {'YES (no confidentiality)' if self.debug else 'no'}")
        lines += [f"{name}: {value}" for name, value in self.measurements.items()]
        if self.report_data:
            lines.append(f"report data: {self.report_data.hex()}")
        lines += [f"{name}: {value}" for name, value in self.details.items()]
        return lines

"""The hardware appraiser of the platform's peer policy: vendor roots plus cached collateral.

It turns evidence found in a peer's certificate into an
:class:`~teaclave.attestation.appraisal.Appraisal`: Intel quotes against the
collateral cache (refreshed from the PCCS when configured), SEV-SNP reports
against the VCEK the cache holds or fetches from AMD's KDS, Nitro documents
against the bundled AWS root. Missing collateral is a rejection naming it.
"""

from __future__ import annotations

from datetime import datetime

from teaclave.attestation import intel, nitro, roots, snp
from teaclave.attestation.appraisal import NITRO, SEV_SNP, SGX, TDX, Appraisal
from teaclave.attestation.evidence import Appraiser
from teaclave.attestation.ratls import CertificateEvidence
from teaclave.core.errors import TeaclaveError
from teaclave.transport.collateral import CollateralCache


def appraiser(cache: CollateralCache) -> Appraiser:
    """Appraise SGX, TDX, SEV-SNP and Nitro evidence with ``cache``'s collateral."""

    def appraise(found: CertificateEvidence, now: datetime) -> Appraisal:
        evidence = found.evidence
        try:
            if found.tee in (SGX, TDX):
                collateral = cache.intel_for_quote(evidence, now=now)
                return intel.verify_quote(
                    evidence, collateral=collateral, root=roots.intel_root(), now=now
                )
            if found.tee == SEV_SNP:
                vek, chain = cache.amd_for_report(evidence, now=now)
                return snp.verify_report(
                    evidence,
                    vek=vek,
                    ca_chain=chain,
                    now=now,
                    ark_fingerprints=roots.AMD_ARK_FINGERPRINTS,
                )
        except (TeaclaveError, ValueError) as exc:
            reason = exc.message if isinstance(exc, TeaclaveError) else str(exc)
            return Appraisal(found.tee, valid=False, reason=f"collateral: {reason}")
        if found.tee == NITRO:
            return nitro.verify_document(evidence, root=roots.nitro_root(), now=now)
        return Appraisal(found.tee, valid=False, reason=f"no verifier for {found.tee!r} evidence")

    return appraise

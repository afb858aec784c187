"""The platform's hardware appraiser: real recorded evidence, vendor roots, cached collateral."""

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from teaclave_fixtures import VECTORS

from teaclave.attestation.ratls import CertificateEvidence
from teaclave.transport.appraiser import appraiser
from teaclave.transport.collateral import CollateralCache, quote_needs

MANIFEST = {v["id"]: v for v in json.loads((VECTORS / "MANIFEST.json").read_text())["vectors"]}


def found(tee: str, evidence: bytes) -> CertificateEvidence:
    return CertificateEvidence("interoperable", tee, evidence, {}, True, "test")


def at(vector_id: str) -> datetime:
    return datetime.fromisoformat(MANIFEST[vector_id]["T"].replace("Z", "+00:00")).astimezone(UTC)


def test_intel_quotes_are_appraised_with_cached_collateral(tmp_path: Path) -> None:
    quote = (VECTORS / "dcap-qvl" / "sgx_quote").read_bytes()
    appraise = appraiser(CollateralCache(tmp_path))
    missing = appraise(found("sgx", quote), at("dcap-qvl/sgx"))
    assert not missing.valid
    assert missing.reason.startswith("collateral: ")
    fmspc, _, _ = quote_needs(quote)
    CollateralCache(tmp_path).store_intel(
        fmspc,
        tdx=False,
        collateral_json=(VECTORS / "dcap-qvl/sgx_quote_collateral.json").read_bytes(),
    )
    appraisal = appraise(found("sgx", quote), at("dcap-qvl/sgx"))
    assert appraisal.valid, appraisal.reason
    assert appraisal.tcb_status == MANIFEST["dcap-qvl/sgx"]["expect"]["final_status"]
    assert appraisal.measurements["mrenclave"] == MANIFEST["dcap-qvl/sgx"]["expect"]["mrenclave"]


def test_nitro_documents_are_appraised_with_the_bundled_root(tmp_path: Path) -> None:
    document = base64.b64decode((VECTORS / "nitrite-blocky" / "nitro_attestation.b64").read_text())
    appraise = appraiser(CollateralCache(tmp_path))
    appraisal = appraise(found("nitro", document), at("nitrite/prod"))
    assert appraisal.valid, appraisal.reason
    assert appraisal.details["module_id"] == MANIFEST["nitrite/prod"]["expect"]["module_id"]
    later = appraise(found("nitro", document), datetime(2030, 1, 1, tzinfo=UTC))
    assert not later.valid
    assert "expired" in later.reason


def test_unknown_evidence_is_rejected(tmp_path: Path) -> None:
    appraisal = appraiser(CollateralCache(tmp_path))(found("unknown", b"x"), datetime.now(UTC))
    assert (appraisal.valid, appraisal.reason) == (False, "no verifier for 'unknown' evidence")

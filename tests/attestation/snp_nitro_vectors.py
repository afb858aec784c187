"""The SEV-SNP and Nitro entries of the attestation vectors (MANIFEST.json), loaded."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from cryptography import x509
from teaclave_fixtures import VECTORS

from teaclave.attestation import pki

SNP_IDS = ("trustee/milan-vcek", "trustee/milan-vlek")
NITRO_IDS = ("nitrite/prod", "nitrite/debug", "evervault/ga")
SNP_CHAINS = {
    product: VECTORS / "trustee" / f"{product.lower()}_ask_ark_asvk.pem"
    for product in ("Milan", "Genoa", "Turin")
}


def when(text: str) -> datetime:
    """A MANIFEST time (ISO-8601, ``Z`` for UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@cache
def manifest() -> dict[str, dict[str, Any]]:
    """MANIFEST entries by id."""
    entries = json.loads((VECTORS / "MANIFEST.json").read_text())["vectors"]
    return {entry["id"]: entry for entry in entries}


@dataclass(frozen=True)
class SnpVector:
    """An SNP report with its endorsement key, CA chain, verification time and expectations."""

    id: str
    report: bytes
    vek: bytes
    ca_chain: bytes
    at: datetime
    window: tuple[datetime, datetime]
    expect: dict[str, Any]


@dataclass(frozen=True)
class NitroVector:
    """A Nitro document with its root, verification time and expectations."""

    id: str
    document: bytes
    root: x509.Certificate
    at: datetime
    expect: dict[str, Any]


@cache
def snp_vector(vector_id: str) -> SnpVector:
    """The SNP vector ``vector_id`` of the manifest."""
    entry = manifest()[vector_id]
    start, end = entry["window"]
    return SnpVector(
        id=vector_id,
        report=(VECTORS / entry["report"]).read_bytes(),
        vek=(VECTORS / entry["vek"]).read_bytes(),
        ca_chain=(VECTORS / entry["ca_chain"]).read_bytes(),
        at=when(entry["T"]),
        window=(when(start), when(end)),
        expect=entry["expect"],
    )


@cache
def nitro_root() -> x509.Certificate:
    """AWS_NitroEnclaves_Root-G1, as extracted from the AWS zip."""
    pem = (VECTORS / "nitrite-blocky" / "aws_nitro_root_g1.pem").read_bytes()
    return pki.load_pem_certificates(pem)[0]


@cache
def nitro_vector(vector_id: str) -> NitroVector:
    """The Nitro vector ``vector_id`` of the manifest (document_b64 form)."""
    entry = manifest()[vector_id]
    assert entry["root"] == "nitrite-blocky/aws_nitro_root_g1.pem"
    return NitroVector(
        id=vector_id,
        document=base64.b64decode((VECTORS / entry["document_b64"]).read_bytes()),
        root=nitro_root(),
        at=when(entry["T"]),
        expect=entry["expect"],
    )

"""Intel DCAP test vectors of tests/data/attestation: MANIFEST entries, roots, collateral."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from cryptography import x509
from teaclave_fixtures import VECTORS

from teaclave.attestation.intel import Collateral

# go-tdx-guest/v5: the MANIFEST names the 2023 "Intel SGX TCB Signing" certificate, which expired in
# 2025-05; the 2026 TCB info is signed by the same key, re-issued 2025-05-06 (in dcap-qvl's
# collateral), so the current certificate is used. test_intel_quotes checks the expired one fails.
OVERRIDES: dict[str, dict[str, str]] = {
    "go-tdx-guest/v5": {
        "tcb_info_issuer_chain": "dcap-qvl/tdx_quote_outdated_collateral.json#tcb_info_issuer_chain"
    },
}


@cache
def manifest() -> dict[str, dict[str, Any]]:
    """The SGX/TDX quote entries of MANIFEST.json by id (with OVERRIDES applied)."""
    entries = json.loads((VECTORS / "MANIFEST.json").read_text())["vectors"]
    return {
        entry["id"]: {**entry, **OVERRIDES.get(entry["id"], {})}
        for entry in entries
        if entry["tee"] in ("sgx", "tdx") and "quote" in entry
    }


INTEL_IDS = sorted(manifest())
DCAP_QVL_IDS = [vid for vid in INTEL_IDS if vid.startswith("dcap-qvl/")]


def read(ref: str) -> bytes:
    """A vector file, or ``file.json#key``: one string field of a JSON file."""
    path, _, key = ref.partition("#")
    data = (VECTORS / path).read_bytes()
    return str(json.loads(data)[key]).encode() if key else data


def at(entry: dict[str, Any], default: str = "2025-01-01T00:00:00Z") -> datetime:
    """The entry's verification time T."""
    return datetime.fromisoformat(entry.get("T", default))


def root(entry: dict[str, Any]) -> x509.Certificate:
    """The entry's pinned Intel SGX Root CA."""
    data = read(entry["root"])
    if data.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def quote(entry: dict[str, Any]) -> bytes:
    """The entry's quote bytes."""
    return read(entry["quote"])


def collateral(entry: dict[str, Any]) -> Collateral | None:
    """The entry's collateral from whichever on-disk format it ships (None if it has none).

    A QE identity without its own issuer chain uses the TCB info's: the same
    "Intel SGX TCB Signing" certificate signs both (trustee/tdx6).
    """
    if "collateral" in entry:
        return Collateral.from_dcap_qvl_json(read(entry["collateral"]))
    if "tcb_info" not in entry:
        return None

    def part(role: str) -> bytes | None:
        return read(entry[role]) if role in entry else None

    tcb_chain = part("tcb_info_issuer_chain") or b""
    return Collateral.from_pcs(
        tcb_info=part("tcb_info"),
        tcb_info_issuer_chain=tcb_chain,
        qe_identity=part("qe_identity"),
        qe_identity_issuer_chain=part("qe_identity_issuer_chain") or tcb_chain,
        pck_crl=part("pck_crl"),
        pck_crl_issuer_chain=part("pck_crl_issuer_chain") or b"",
        root_ca_crl=part("root_crl"),
    )

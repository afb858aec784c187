"""The vendors' root certificates, bundled as package data and pinned by SHA-256.

Each root is a public, self-signed certificate that anchors one vendor's chain:
the Intel SGX Root CA (SGX and TDX quotes, PCK certificates, collateral), the
AWS Nitro Enclaves Root G1 and AMD's per-product ARKs (SEV-SNP). The files are
in ``teaclave/attestation/roots/`` (see its README.txt); a loader refuses a
file whose DER does not hash to the fingerprint recorded here.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teaclave.attestation import nitro, snp

INTEL_ROOT_FINGERPRINT = bytes.fromhex(
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
)
"""SHA-256 of the DER of the Intel SGX Root CA."""

NITRO_ROOT_FINGERPRINT = nitro.ROOT_G1_SHA256

AMD_ARK_FINGERPRINTS: Mapping[str, bytes] = MappingProxyType(dict(snp.KNOWN_ARK_FINGERPRINTS))
"""SHA-256 of the DER of AMD's root key (ARK) per product line, as AMD's KDS names them."""

_DIRECTORY = "roots"


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of a certificate's DER."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()


@functools.cache
def _load(filename: str, expected: bytes) -> x509.Certificate:
    data = resources.files("teaclave.attestation").joinpath(_DIRECTORY, filename).read_bytes()
    cert = x509.load_pem_x509_certificate(data)
    if fingerprint(cert) != expected:
        raise RuntimeError(f"bundled root {filename} does not have its recorded SHA-256")
    return cert


def intel_root() -> x509.Certificate:
    """The Intel SGX Root CA."""
    return _load("intel_sgx_root_ca.pem", INTEL_ROOT_FINGERPRINT)


def nitro_root() -> x509.Certificate:
    """The AWS Nitro Enclaves Root G1."""
    return _load("aws_nitro_enclaves_root_g1.pem", NITRO_ROOT_FINGERPRINT)


def amd_product(name: str) -> str:
    """A product line as KDS spells it (``Milan``) from a name such as ``milan`` or ``Milan-B0``."""
    product = name.partition("-")[0].strip().capitalize()
    if product not in AMD_ARK_FINGERPRINTS:
        known = ", ".join(AMD_ARK_FINGERPRINTS)
        raise ValueError(f"unknown AMD product {name!r} (known: {known})")
    return product


def amd_ark(product: str) -> x509.Certificate:
    """AMD's root key (ARK) of a product line (``Milan``, ``Genoa``, ``Turin``; any case)."""
    name = amd_product(product)
    return _load(f"amd_ark_{name.lower()}.pem", AMD_ARK_FINGERPRINTS[name])

"""The bundled vendor roots: self-signed, valid today, pinned, the same as the vectors'."""

from datetime import UTC, datetime

import pytest
from cryptography import x509
from teaclave_fixtures import VECTORS

from teaclave.attestation import roots

ROOTS = {
    "intel": (roots.intel_root, roots.INTEL_ROOT_FINGERPRINT, "Intel SGX Root CA"),
    "nitro": (roots.nitro_root, roots.NITRO_ROOT_FINGERPRINT, "aws.nitro-enclaves"),
    **{
        product: (lambda p=product: roots.amd_ark(p), fp, f"ARK-{product}")
        for product, fp in roots.AMD_ARK_FINGERPRINTS.items()
    },
}


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


@pytest.mark.parametrize("name", ROOTS)
def test_root_is_self_signed_valid_and_pinned(name: str) -> None:
    load, fingerprint, cn = ROOTS[name]
    cert = load()
    assert common_name(cert) == cn
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    now = datetime.now(UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert roots.fingerprint(cert) == fingerprint
    assert load() is cert  # loaded once


def test_recorded_fingerprints() -> None:
    assert roots.INTEL_ROOT_FINGERPRINT.hex() == (
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    )
    assert roots.NITRO_ROOT_FINGERPRINT.hex() == (
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    )
    assert {k: v.hex()[:8] for k, v in roots.AMD_ARK_FINGERPRINTS.items()} == {
        "Milan": "69d063b4",
        "Genoa": "4c6598d1",
        "Turin": "1f084161",
    }


def test_roots_are_the_vectors_roots() -> None:
    intel = x509.load_der_x509_certificate((VECTORS / "dcap-qvl/TrustedRootCA.der").read_bytes())
    assert roots.intel_root() == intel
    pem = (VECTORS / "nitrite-blocky/aws_nitro_root_g1.pem").read_bytes()
    assert roots.nitro_root() == x509.load_pem_x509_certificate(pem)
    for product in roots.AMD_ARK_FINGERPRINTS:
        bundle = (VECTORS / f"trustee/{product.lower()}_ask_ark_asvk.pem").read_bytes()
        assert roots.amd_ark(product) in x509.load_pem_x509_certificates(bundle)


@pytest.mark.parametrize(("given", "product"), [("milan", "Milan"), ("Genoa-B1", "Genoa")])
def test_product_names(given: str, product: str) -> None:
    assert roots.amd_product(given) == product
    assert common_name(roots.amd_ark(given)) == f"ARK-{product}"


def test_unknown_product() -> None:
    with pytest.raises(ValueError, match="unknown AMD product 'Naples'"):
        roots.amd_ark("Naples")

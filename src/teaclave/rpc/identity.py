"""A service instance's attested TLS identity."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation import ratls
from teaclave.rpc import certs

Attester = Callable[[bytes], tuple[str, bytes]]
"""Evidence for 64 bytes of report data: ``(TEE type, evidence)``."""


@dataclass(frozen=True)
class ServiceIdentity:
    """A fresh TLS key with its server and client certificates, both carrying evidence."""

    service: str
    key_pem: bytes
    server_cert_pem: bytes
    client_cert_pem: bytes
    platform_ca_pem: bytes

    @classmethod
    def create(
        cls,
        service: str,
        attest: Attester,
        platform_ca_key: ec.EllipticCurvePrivateKey,
        platform_ca: x509.Certificate,
        now: datetime.datetime,
    ) -> ServiceIdentity:
        """Generate a key, obtain evidence for it and issue both certificates."""
        key = ec.generate_private_key(ec.SECP256R1())
        claims = ratls.pubkey_claims(key.public_key(), service=service, iat=int(now.timestamp()))
        tee, evidence = attest(ratls.claims_report_data(claims))
        extension = ratls.interoperable_extension(evidence, tee, claims)
        server = certs.make_server_cert(service, key, extension, now)
        client = certs.make_client_cert(
            service, key, extension, ca_key=platform_ca_key, ca_cert=platform_ca, now=now
        )
        return cls(
            service=service,
            key_pem=certs.key_to_pem(key),
            server_cert_pem=certs.to_pem(server),
            client_cert_pem=certs.to_pem(client),
            platform_ca_pem=certs.to_pem(platform_ca),
        )

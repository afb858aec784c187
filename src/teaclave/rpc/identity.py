"""A service instance's attested TLS identity."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation.simulation import SimulatedPlatform
from teaclave.rpc import certs


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
        measurement: bytes,
        platform: SimulatedPlatform,
        platform_ca: x509.Certificate,
        now: datetime.datetime,
    ) -> ServiceIdentity:
        """Generate a key, obtain evidence for it and issue both certificates."""
        key = ec.generate_private_key(ec.SECP256R1())
        evidence = platform.attest(service, measurement, certs.report_data_for(key.public_key()))
        server = certs.make_server_cert(service, key, evidence, now)
        client = certs.make_client_cert(
            service, key, evidence, ca_key=platform.key, ca_cert=platform_ca, now=now
        )
        return cls(
            service=service,
            key_pem=certs.key_to_pem(key),
            server_cert_pem=certs.to_pem(server),
            client_cert_pem=certs.to_pem(client),
            platform_ca_pem=certs.to_pem(platform_ca),
        )

"""A service instance's attested TLS identity, renewed before its evidence grows too old."""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation import ratls
from teaclave.rpc import certs

log = logging.getLogger(__name__)

Attester = Callable[[bytes], tuple[str, bytes]]
"""Evidence for 64 bytes of report data: ``(TEE type, evidence)``."""
Clock = Callable[[], datetime.datetime]
"""The current time (timezone-aware)."""


def utc_now() -> datetime.datetime:
    """The current UTC time: the default :data:`Clock`."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class ServiceIdentity:
    """A fresh TLS key with its server and client certificates, both carrying evidence."""

    service: str
    key_pem: bytes
    server_cert_pem: bytes
    client_cert_pem: bytes
    platform_ca_pem: bytes
    issued: datetime.datetime
    """When the evidence was made (its claims' ``iat``)."""

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
            issued=datetime.datetime.fromtimestamp(int(now.timestamp()), datetime.UTC),
        )


IdentitySource = Callable[[], ServiceIdentity]
"""A service's current identity (servers and channels ask for it at every dial and handshake)."""

RENEW_AT = 0.5
"""An identity is renewed at this fraction of the maximum evidence age."""
RETRY_SECS = 60.0
"""After a failed renewal, the next attempt waits this long at most ..."""
RETRY_FRACTION = 0.1
"""... and at most this fraction of the maximum age (the current identity serves meanwhile)."""


def retry_secs(max_age_secs: float) -> float:
    """How long after a failed renewal the next one is tried."""
    return min(RETRY_SECS, max_age_secs * RETRY_FRACTION)


class RenewingIdentity:
    """An :data:`IdentitySource` that replaces its identity at :data:`RENEW_AT` of its maximum age.

    The replacement (a new key, fresh evidence, new certificates) is made when
    the identity is asked for, so an idle service renews at its next handshake.
    A failed renewal is logged; the current identity is kept and renewal is
    tried again :func:`retry_secs` later, so at least five retries fit into the
    half of the maximum age left before peers refuse the current evidence.
    """

    def __init__(
        self,
        make: Callable[[datetime.datetime], ServiceIdentity],
        max_age_secs: float,
        clock: Clock = utc_now,
    ) -> None:
        self._make = make
        self._renew_after = datetime.timedelta(seconds=max_age_secs * RENEW_AT)
        self._retry = datetime.timedelta(seconds=retry_secs(max_age_secs))
        self._clock = clock
        self._lock = threading.Lock()
        self._current = make(clock())
        self._due = self._current.issued + self._renew_after

    def __call__(self) -> ServiceIdentity:
        """The current identity, renewed first if it is due."""
        with self._lock:
            now = self._clock()
            if now >= self._due:
                self._renew(now)
            return self._current

    def _renew(self, now: datetime.datetime) -> None:
        service = self._current.service
        try:
            self._current = self._make(now)
        except Exception:
            log.exception("%s: renewing its certificate and evidence failed", service)
            self._due = now + self._retry
            return
        self._due = self._current.issued + self._renew_after
        log.info("%s: renewed its TLS key, certificates and evidence", service)

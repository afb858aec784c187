"""Wiring shared by every service: identity, the simulated platform, peers and servers."""

from __future__ import annotations

import datetime
import fcntl
import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation import providers
from teaclave.attestation.evidence import SIMULATION, AttestationPolicy
from teaclave.attestation.measure import service_measurement
from teaclave.attestation.simulation import SimulatedPlatform
from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.rpc import certs
from teaclave.rpc.channel import Peer
from teaclave.rpc.identity import Attester, Clock, RenewingIdentity, ServiceIdentity, utc_now
from teaclave.rpc.server import start_server
from teaclave.rpc.trust import trusted_measurements
from teaclave.services.topology import INBOUND
from teaclave.transport.appraiser import appraiser
from teaclave.transport.collateral import CollateralCache

log = logging.getLogger(__name__)

_PLATFORM_KEY = "simulated-platform-key.pem"
_PLATFORM_CA = "simulated-platform-ca.pem"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_simulated_platform(data_dir: Path) -> tuple[SimulatedPlatform, x509.Certificate]:
    """The simulated platform key and CA of this data directory (created on first use)."""
    sim = data_dir / "simulation"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # its owner's only, if new
    sim.mkdir(exist_ok=True, mode=0o700)
    lock = sim / ".lock"
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        key_path, ca_path = sim / _PLATFORM_KEY, sim / _PLATFORM_CA
        if not key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            now = datetime.datetime.now(datetime.UTC)
            _write_private(key_path, certs.key_to_pem(key))
            _write_private(ca_path, certs.to_pem(certs.make_platform_ca(key, now)))
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC key")
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    return SimulatedPlatform(loaded), ca


def _attester(
    provider: str, service: str, measurement: bytes, platform: SimulatedPlatform
) -> Attester:
    """How ``service`` obtains evidence: from the simulated platform or a TEE's interface."""
    if provider == "simulation":
        return lambda report_data: (SIMULATION, platform.attest(service, measurement, report_data))
    device = providers.for_name(provider)
    return lambda report_data: (device.tee, device.evidence(report_data))


def simulation_key(data_dir: Path) -> str:
    """The fingerprint (hex) clients pin to accept this data directory's simulated platform."""
    platform, _ = load_simulated_platform(data_dir)
    return platform.fingerprint.hex()


@dataclass
class ServiceEnv:
    """Everything a service needs to serve and to reach its peers."""

    config: Config
    identities: RenewingIdentity
    policy: AttestationPolicy
    clock: Clock = utc_now

    @classmethod
    def create(cls, config: Config, service: str, clock: Clock = utc_now) -> ServiceEnv:
        """Attest ``service`` on this platform and build its environment.

        FAILED_PRECONDITION if the enclave info does not verify or does not list
        this service's own measurement. ``clock`` dates evidence, its renewal and
        the checks of peers' evidence.
        """
        attestation = config.attestation
        platform, ca = load_simulated_platform(config.data_path)
        measurement = service_measurement(service)
        measurements = trusted_measurements(
            attestation.enclave_info, attestation.auditors, attestation.auditor_threshold
        )
        if attestation.provider == "simulation" and measurement not in measurements.get(
            service, frozenset()
        ):
            raise TeaclaveError(
                Status.FAILED_PRECONDITION,
                f"{service}: its measurement {measurement.hex()} is not in the enclave info",
            )
        attest = _attester(attestation.provider, service, measurement, platform)
        identities = RenewingIdentity(
            functools.partial(ServiceIdentity.create, service, attest, platform.key, ca),
            max_age_secs=attestation.max_evidence_age_secs,
            clock=clock,
        )
        trusted = {platform.fingerprint} if attestation.allow_simulation else set()
        policy = AttestationPolicy(
            measurements=measurements,
            simulation_keys=frozenset(trusted),
            max_evidence_age_secs=attestation.max_evidence_age_secs,
            appraise=appraiser(CollateralCache.from_config(config)),
        )
        return cls(config, identities, policy, clock)

    @property
    def identity(self) -> ServiceIdentity:
        """This service's current identity (renewed as its evidence ages)."""
        return self.identities()

    @property
    def service(self) -> str:
        """This service's name."""
        return self.identity.service

    def peer(self, service: str) -> Peer:
        """An attested channel to an internal ``service`` (dialed on first use)."""
        address = getattr(self.config.endpoints, service)
        return Peer(
            address,
            service,
            policy=self.policy,
            identity=self.identities,
            max_message_bytes=self.config.max_message_bytes,
            clock=self.clock,
        )

    def serve(
        self, endpoint: str, register: Callable[[grpc.Server], None], *, public: bool = False
    ) -> grpc.Server:
        """Serve on the configured address of ``endpoint``.

        Internal endpoints admit only the peers in ``topology.INBOUND[endpoint]``.
        """
        address = getattr(self.config.endpoints, endpoint)
        server = start_server(
            self.identities,
            address,
            register,
            peers=None if public else INBOUND[endpoint],
            policy=self.policy,
            max_message_bytes=self.config.max_message_bytes,
            clock=self.clock,
        )
        log.info(
            "%s listening on %s (%s)", self.service, address, "public" if public else "internal"
        )
        return server


ServiceMain = Callable[[ServiceEnv, threading.Event], None]
"""A service's entry point: serve until the event is set, then shut down cleanly."""

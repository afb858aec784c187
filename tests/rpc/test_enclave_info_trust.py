"""Auditor-signed enclave info decides which services are trusted, for services and clients."""

import dataclasses
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from teaclave.attestation import enclave_info
from teaclave.attestation.evidence import AttestationError
from teaclave.attestation.measure import local_measurements
from teaclave.client import default_policy
from teaclave.config import SERVICES, AttestationConfig, Config, Endpoints
from teaclave.core.errors import Status, TeaclaveError
from teaclave.proto import teaclave_access_control_service_pb2 as pb
from teaclave.proto import teaclave_access_control_service_pb2_grpc as pb_grpc
from teaclave.rpc.channel import attested_channel
from teaclave.services.base import ServiceEnv

AUDITORS = ("alice", "bob", "carol")


class Accept(pb_grpc.TeaclaveAccessControlServicer):
    def AuthorizeApi(
        self, request: pb.AuthorizeApiRequest, context: object
    ) -> pb.AuthorizeApiResponse:
        return pb.AuthorizeApiResponse(accept=True)


@pytest.fixture(scope="module")
def keys() -> dict[str, enclave_info.SigningKey]:
    return {
        "alice": ed25519.Ed25519PrivateKey.generate(),
        "bob": ec.generate_private_key(ec.SECP256R1()),
        "carol": ec.generate_private_key(ec.SECP384R1()),
    }


@pytest.fixture
def auditors(tmp_path: Path, keys: dict[str, enclave_info.SigningKey]) -> tuple[str, ...]:
    specs = []
    for name, key in keys.items():
        path = tmp_path / f"{name}.pem"
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        specs.append(f"{name}={path}")
    return tuple(specs)


def document(
    path: Path,
    keys: dict[str, enclave_info.SigningKey],
    signers: tuple[str, ...],
    services: tuple[str, ...] = SERVICES,
) -> Path:
    """An enclave info listing this installation's measurements of ``services``."""
    measurements = {name: m for name, m in local_measurements(SERVICES).items() if name in services}
    info = enclave_info.EnclaveInfo(measurements, release="test")
    path.write_bytes(
        enclave_info.encode(info, [enclave_info.sign(info, keys[s], s) for s in signers])
    )
    return path


def configured(base: Config, info: Path, auditors: tuple[str, ...], threshold: int) -> Config:
    attestation = AttestationConfig(
        enclave_info=str(info), auditors=auditors, auditor_threshold=threshold
    )
    return dataclasses.replace(base, attestation=attestation)


@pytest.fixture
def base(tmp_path: Path, free_port: int) -> Config:
    return Config(
        data_dir=str(tmp_path / "data"),
        endpoints=Endpoints(access_control=f"127.0.0.1:{free_port}"),
    )


def start(config: Config) -> grpc.Server:
    env = ServiceEnv.create(config, "access_control")
    return env.serve(
        "access_control",
        lambda s: pb_grpc.add_TeaclaveAccessControlServicer_to_server(Accept(), s),
    )


def call(env: ServiceEnv) -> bool:
    peer = env.peer("access_control")
    try:
        reply = peer.call(
            lambda ch: pb_grpc.TeaclaveAccessControlStub(ch).AuthorizeApi(
                pb.AuthorizeApiRequest(api="x"), timeout=5
            )
        )
        return bool(reply.accept)
    finally:
        peer.close()


def test_services_trust_each_other_through_a_two_of_three_enclave_info(
    tmp_path: Path,
    base: Config,
    keys: dict[str, enclave_info.SigningKey],
    auditors: tuple[str, ...],
) -> None:
    config = configured(base, document(tmp_path / "ei.json", keys, ("alice", "carol")), auditors, 2)
    server = start(config)
    try:
        assert call(ServiceEnv.create(config, "frontend"))
    finally:
        server.stop(0)


def test_too_few_signatures_stop_a_service_from_starting(
    tmp_path: Path,
    base: Config,
    keys: dict[str, enclave_info.SigningKey],
    auditors: tuple[str, ...],
) -> None:
    info = document(tmp_path / "ei.json", keys, ("bob", "bob"))  # one auditor, twice
    with pytest.raises(TeaclaveError) as caught:
        ServiceEnv.create(configured(base, info, auditors, 2), "frontend")
    assert caught.value.status is Status.FAILED_PRECONDITION
    assert "1 of the 2 required auditor signatures" in caught.value.message


def test_a_service_missing_from_the_enclave_info_cannot_start(
    tmp_path: Path,
    base: Config,
    keys: dict[str, enclave_info.SigningKey],
    auditors: tuple[str, ...],
) -> None:
    without = tuple(s for s in SERVICES if s != "frontend")
    info = document(tmp_path / "ei.json", keys, AUDITORS, without)
    with pytest.raises(TeaclaveError, match=r"frontend: its measurement \w+ is not in the enclave"):
        ServiceEnv.create(configured(base, info, auditors, 1), "frontend")


def test_a_peer_whose_measurement_is_not_listed_is_refused(
    tmp_path: Path,
    base: Config,
    keys: dict[str, enclave_info.SigningKey],
    auditors: tuple[str, ...],
) -> None:
    without = tuple(s for s in SERVICES if s != "frontend")
    server = start(
        configured(base, document(tmp_path / "ei.json", keys, AUDITORS, without), auditors, 1)
    )
    try:
        frontend = ServiceEnv.create(base, "frontend")  # development: trusts its own code
        with pytest.raises(grpc.RpcError) as caught:
            call(frontend)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "unexpected measurement" in (caught.value.details() or "")
    finally:
        server.stop(0)


def test_clients_check_the_same_enclave_info_before_sending(
    tmp_path: Path,
    base: Config,
    keys: dict[str, enclave_info.SigningKey],
    auditors: tuple[str, ...],
) -> None:
    server = start(base)
    key = ServiceEnv.create(base, "frontend").policy.simulation_keys
    (fingerprint,) = key
    without = tuple(s for s in SERVICES if s != "access_control")
    try:
        listed = document(tmp_path / "all.json", keys, AUDITORS)
        policy = default_policy(fingerprint.hex(), enclave_info=listed, auditors=auditors)
        channel, verdict = attested_channel(
            base.endpoints.access_control, "access_control", policy=policy
        )
        channel.close()
        assert verdict.service == "access_control"
        unlisted = document(tmp_path / "some.json", keys, AUDITORS, without)
        policy = default_policy(fingerprint.hex(), enclave_info=unlisted, auditors=auditors)
        with pytest.raises(AttestationError, match="unexpected measurement"):
            attested_channel(base.endpoints.access_control, "access_control", policy=policy)
        with pytest.raises(TeaclaveError, match="1 of the 2 required"):
            default_policy(
                enclave_info=document(tmp_path / "one.json", keys, ("alice",)),
                auditors=auditors,
                threshold=2,
            )
    finally:
        server.stop(0)

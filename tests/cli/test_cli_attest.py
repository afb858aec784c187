"""``teaclave attest HOST:PORT``: what a running endpoint's evidence says, and the verdict."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_commands import run

from teaclave.attestation.measure import service_measurement
from teaclave.config import Config, Endpoints
from teaclave.proto import teaclave_access_control_service_pb2_grpc as pb_grpc
from teaclave.services.base import ServiceEnv, simulation_key


@pytest.fixture
def endpoint(tmp_path: Path, free_port: int) -> Iterator[tuple[str, str]]:
    address = f"127.0.0.1:{free_port}"
    config = Config(data_dir=str(tmp_path), endpoints=Endpoints(access_control=address))
    env = ServiceEnv.create(config, "access_control")
    server = env.serve(
        "access_control",
        lambda s: pb_grpc.add_TeaclaveAccessControlServicer_to_server(
            pb_grpc.TeaclaveAccessControlServicer(), s
        ),
    )
    yield address, simulation_key(config.data_path)
    server.stop(0)


def test_attest_shows_the_evidence_and_the_verdict(
    endpoint: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    address, key = endpoint
    code, out, _ = run(capsys, "attest", address, "--simulation-key", key)
    assert code == 0, out
    lines = out.splitlines()
    assert "format: interoperable RA-TLS" in lines
    assert "TEE: SIMULATED (no hardware protection)" in lines
    assert "service: access_control" in lines
    assert f"measurement: {service_measurement('access_control').hex()}" in lines
    assert f"signed by: simulated platform key {key}" in lines
    assert lines[-1].startswith("ACCEPTED by your policy: access_control")


def test_attest_says_why_a_policy_rejects(
    endpoint: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = endpoint
    code, out, _ = run(capsys, "attest", address)
    assert code == 1
    assert "REJECTED by your policy: peer 'access_control' presents SIMULATED evidence" in out

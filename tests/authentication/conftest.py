"""Storage and authentication services on loopback, and a logged-in admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    FAST_AUTH,
    AuthClient,
    Runner,
    Session,
    run_authentication,
)

from teaclave.config import Config, Endpoints
from teaclave.services import storage
from teaclave.services.base import ServiceEnv


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    return Config(data_dir=str(tmp_path), endpoints=loopback_endpoints, auth=FAST_AUTH)


@pytest.fixture
def storage_service(config: Config, service_runner: Runner) -> Iterator[None]:
    with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
        yield


@pytest.fixture
def client(config: Config, storage_service: None, service_runner: Runner) -> Iterator[AuthClient]:
    with run_authentication(service_runner, config):
        client = AuthClient(config)
        yield client
        client.close()


@pytest.fixture
def admin(client: AuthClient) -> Session:
    return Session(client, ADMIN, ADMIN_PASSWORD)

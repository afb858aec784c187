"""The platform (storage, authentication, access control, management, frontend) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from frontend_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    BACKEND,
    FRONTEND,
    Runner,
    User,
    fast_config,
    running,
)

from teaclave.config import Config, Endpoints


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    return fast_config(Config(data_dir=str(tmp_path), endpoints=loopback_endpoints))


@pytest.fixture
def backend(config: Config, service_runner: Runner) -> Iterator[None]:
    with running(service_runner, config, BACKEND):
        yield


@pytest.fixture
def platform(config: Config, backend: None, service_runner: Runner) -> Iterator[None]:
    with running(service_runner, config, [FRONTEND]):
        yield


@pytest.fixture
def admin(config: Config, platform: None) -> Iterator[User]:
    user = User(config, ADMIN, ADMIN_PASSWORD)
    yield user
    user.close()

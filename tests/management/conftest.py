"""Storage and management services on loopback, called as the frontend would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import pytest
from mgmt_helpers import User, UserFactory

from teaclave.config import Config, Endpoints
from teaclave.services import management, storage
from teaclave.services.base import ServiceEnv
from teaclave.storage.remote import RemoteStore

Runner = Callable[..., AbstractContextManager[Any]]


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    return Config(data_dir=str(tmp_path), endpoints=loopback_endpoints)


@pytest.fixture
def user(config: Config, service_runner: Runner) -> Iterator[UserFactory]:
    """Storage and management running; ``user(id, role)`` calls management as the frontend."""
    with ExitStack() as stack:
        stack.enter_context(
            service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",))
        )
        stack.enter_context(
            service_runner(
                management.main, ServiceEnv.create(config, "management"), ("management",)
            )
        )
        peer = ServiceEnv.create(config, "frontend").peer("management")
        stack.callback(peer.close)
        yield lambda user_id, role: User(peer, user_id, role)


@pytest.fixture
def scheduler_store(config: Config, user: UserFactory) -> Iterator[RemoteStore]:
    """The store as the scheduler sees it (to inspect tasks and the staged queue)."""
    peer = ServiceEnv.create(config, "scheduler").peer("storage")
    yield RemoteStore(peer)
    peer.close()


@pytest.fixture
def alice(user: UserFactory) -> User:
    return user("alice", "DataOwner-x")


@pytest.fixture
def bob(user: UserFactory) -> User:
    return user("bob", "DataOwner-y")


@pytest.fixture
def owner(user: UserFactory) -> User:
    return user("fo", "FunctionOwner")


@pytest.fixture
def admin(user: UserFactory) -> User:
    return user("root", "PlatformAdmin")

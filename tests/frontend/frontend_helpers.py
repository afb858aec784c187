"""Helpers for the frontend tests: the whole platform (minus scheduling) on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from teaclave.client import default_policy
from teaclave.config import AuthConfig, Config
from teaclave.proto import teaclave_authentication_service_pb2 as auth
from teaclave.proto import teaclave_authentication_service_pb2_grpc as auth_grpc
from teaclave.proto import teaclave_frontend_service_pb2_grpc as fe_grpc
from teaclave.rpc.channel import attested_channel
from teaclave.services import access_control, authentication, frontend, management, storage
from teaclave.services.base import ServiceEnv, ServiceMain, simulation_key

ADMIN, ADMIN_PASSWORD = "root", "root-password"
FAST_AUTH = AuthConfig(
    admin_user=ADMIN,
    admin_password=ADMIN_PASSWORD,
    argon2_time_cost=1,
    argon2_memory_kib=8192,
    argon2_parallelism=1,
)
BACKEND: list[tuple[ServiceMain, str, tuple[str, ...]]] = [
    (storage.main, "storage", ("storage",)),
    (authentication.main, "authentication", ("authentication_api", "authentication")),
    (access_control.main, "access_control", ("access_control",)),
    (management.main, "management", ("management",)),
]
FRONTEND: tuple[ServiceMain, str, tuple[str, ...]] = (frontend.main, "frontend", ("frontend_api",))

Runner = Callable[..., contextlib.AbstractContextManager[Any]]


def fast_config(config: Config) -> Config:
    """``config`` with a cheap password hash and a known first admin."""
    return dataclasses.replace(config, auth=FAST_AUTH)


@contextlib.contextmanager
def running(
    runner: Runner, config: Config, services: list[tuple[ServiceMain, str, tuple[str, ...]]]
) -> Iterator[None]:
    """Run ``services`` until the block ends (stopped in reverse order)."""
    with contextlib.ExitStack() as stack:
        for main, name, endpoints in services:
            stack.enter_context(runner(main, ServiceEnv.create(config, name), endpoints))
        yield


def public_channel(config: Config, endpoint: str, service: str) -> grpc.Channel:
    policy = default_policy(simulation_key(config.data_path))
    channel, _ = attested_channel(getattr(config.endpoints, endpoint), service, policy=policy)
    return channel


class User:
    """A logged-in user calling the frontend."""

    def __init__(self, config: Config, user_id: str, password: str) -> None:
        self.id = user_id
        self.config = config
        with public_channel(config, "authentication_api", "authentication") as channel:
            stub = auth_grpc.TeaclaveAuthenticationApiStub(channel)
            self.token = stub.UserLogin(auth.UserLoginRequest(id=user_id, password=password)).token
        self.channel = public_channel(config, "frontend_api", "frontend")
        self.frontend = fe_grpc.TeaclaveFrontendStub(self.channel)

    def metadata(self, **extra: str) -> tuple[tuple[str, str], ...]:
        return (("id", self.id), ("token", self.token), *extra.items())

    def __call__(self, method: str, request: Any, **extra_metadata: str) -> Any:
        rpc = getattr(self.frontend, method)
        return rpc(request, metadata=self.metadata(**extra_metadata), timeout=30)

    def register(self, user_id: str, role: str, attribute: str = "") -> User:
        """Register another user (password "pw") and log them in."""
        with public_channel(self.config, "authentication_api", "authentication") as channel:
            auth_grpc.TeaclaveAuthenticationApiStub(channel).UserRegister(
                auth.UserRegisterRequest(id=user_id, password="pw", role=role, attribute=attribute),
                metadata=(("id", self.id), ("token", self.token)),
            )
        return User(self.config, user_id, "pw")

    def close(self) -> None:
        self.channel.close()


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()

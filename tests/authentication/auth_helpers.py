"""Helpers for the authentication tests: config, a client for both endpoints, sessions."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc
import pytest

from teaclave.client import default_policy
from teaclave.config import AuthConfig, Config
from teaclave.proto import teaclave_authentication_service_pb2 as pb
from teaclave.proto import teaclave_authentication_service_pb2_grpc as pb_grpc
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.rpc.channel import attested_channel
from teaclave.services import authentication
from teaclave.services.base import ServiceEnv, simulation_key

ADMIN, ADMIN_PASSWORD = "root", "root-password"
FAST_AUTH = AuthConfig(
    admin_user=ADMIN,
    admin_password=ADMIN_PASSWORD,
    argon2_time_cost=1,
    argon2_memory_kib=8192,
    argon2_parallelism=1,
)
API = "/teaclave_authentication_service_proto.TeaclaveAuthenticationApi/"

Runner = Callable[..., AbstractContextManager[Any]]


class AuthClient:
    """Calls the public API (as a client) and the internal one (as the frontend)."""

    def __init__(self, config: Config) -> None:
        policy = default_policy(simulation_key(config.data_path))
        self.channel, _ = attested_channel(
            config.endpoints.authentication_api, "authentication", policy=policy
        )
        self.api = pb_grpc.TeaclaveAuthenticationApiStub(self.channel)
        self.internal = ServiceEnv.create(config, "frontend").peer("authentication")

    def close(self) -> None:
        self.channel.close()
        self.internal.close()

    def login(self, user: str, password: str) -> str:
        return str(self.api.UserLogin(pb.UserLoginRequest(id=user, password=password)).token)

    def call(self, method: str, request: Any, user: str | None, token: str | None) -> Any:
        """``method`` of the public API with the given credentials (None: not sent)."""
        metadata = [(k, v) for k, v in (("id", user), ("token", token)) if v is not None]
        return getattr(self.api, method)(request, metadata=metadata, timeout=10)

    def authenticate(self, user: str, token: str) -> pb.UserAuthClaims:
        request = pb.UserAuthenticateRequest(credential=common.UserCredential(id=user, token=token))
        response = self.internal.call(
            lambda ch: pb_grpc.TeaclaveAuthenticationInternalStub(ch).UserAuthenticate(
                request, timeout=10
            )
        )
        return response.claims


class Session:
    """A logged-in user of the public API."""

    def __init__(self, client: AuthClient, user: str, password: str) -> None:
        self.client = client
        self.user = user
        self.token = client.login(user, password)

    def __call__(self, method: str, request: Any) -> Any:
        return self.client.call(method, request, self.user, self.token)

    def register(self, user: str, role: str, attribute: str = "", password: str = "pw") -> None:
        self(
            "UserRegister",
            pb.UserRegisterRequest(id=user, password=password, role=role, attribute=attribute),
        )


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def run_authentication(runner: Runner, config: Config) -> AbstractContextManager[Any]:
    """The authentication service, running until the block ends."""
    env = ServiceEnv.create(config, "authentication")
    return runner(authentication.main, env, ("authentication_api", "authentication"))

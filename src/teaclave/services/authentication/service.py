"""The authentication servicers: the public API and the internal token check."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc

from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.roles import Role
from teaclave.proto import teaclave_authentication_service_pb2 as pb
from teaclave.proto import teaclave_authentication_service_pb2_grpc as pb_grpc
from teaclave.services.authentication.accounts import Accounts, refused
from teaclave.services.authentication.throttle import address_key
from teaclave.services.authentication.users import User

log = logging.getLogger(__name__)

S = TypeVar("S")
Q = TypeVar("Q")
R = TypeVar("R")


def _unauthenticated_only(
    handler: Callable[[S, Q, grpc.ServicerContext], R],
) -> Callable[[S, Q, grpc.ServicerContext], R]:
    """Report every failure as UNAUTHENTICATED, as Teaclave does (reference §2.4).

    Except an outage (storage unreachable): UNAVAILABLE, so callers retry
    instead of concluding that their credentials are wrong.
    """

    @functools.wraps(handler)
    def wrapped(self: S, request: Q, context: grpc.ServicerContext) -> R:
        try:
            return handler(self, request, context)
        except TeaclaveError as exc:
            if exc.status is Status.UNAUTHENTICATED:
                raise
            if exc.status is Status.UNAVAILABLE:
                log.warning("%s: storage unavailable: %s", handler.__name__, exc.message)
                raise TeaclaveError(Status.UNAVAILABLE, "service temporarily unavailable") from None
            log.warning("%s failed: %s %s", handler.__name__, exc.status.name, exc.message)
        except Exception:
            log.exception("%s failed", handler.__name__)
        raise refused("service internal error")

    return wrapped


class AuthenticationApi(pb_grpc.TeaclaveAuthenticationApiServicer):
    """``TeaclaveAuthenticationApi``: user management and login (public)."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    def _caller(self, context: grpc.ServicerContext) -> User:
        metadata = dict(context.invocation_metadata())
        if "id" not in metadata:
            raise refused("missing user id")
        if "token" not in metadata:
            raise refused("missing token")
        return self._accounts.authenticate(str(metadata["id"]), str(metadata["token"]))[0]

    @_unauthenticated_only
    def UserRegister(  # noqa: N802
        self, request: pb.UserRegisterRequest, context: grpc.ServicerContext
    ) -> pb.UserRegisterResponse:
        """Create an account."""
        caller = self._caller(context)
        role = Role.from_parts(request.role, request.attribute)
        self._accounts.register(caller, request.id, request.password, role)
        return pb.UserRegisterResponse()

    @_unauthenticated_only
    def UserUpdate(  # noqa: N802
        self, request: pb.UserUpdateRequest, context: grpc.ServicerContext
    ) -> pb.UserUpdateResponse:
        """Replace an account's password and role."""
        caller = self._caller(context)
        role = Role.from_parts(request.role, request.attribute)
        self._accounts.update(caller, request.id, request.password, role)
        return pb.UserUpdateResponse()

    @_unauthenticated_only
    def UserLogin(  # noqa: N802
        self, request: pb.UserLoginRequest, context: grpc.ServicerContext
    ) -> pb.UserLoginResponse:
        """Exchange id and password for a token (throttled per id and per source address)."""
        address = address_key(context.peer())
        return pb.UserLoginResponse(
            token=self._accounts.login(request.id, request.password, address)
        )

    @_unauthenticated_only
    def UserChangePassword(  # noqa: N802
        self, request: pb.UserChangePasswordRequest, context: grpc.ServicerContext
    ) -> pb.UserChangePasswordResponse:
        """Set the caller's own password."""
        self._accounts.change_password(self._caller(context), request.password)
        return pb.UserChangePasswordResponse()

    @_unauthenticated_only
    def ResetUserPassword(  # noqa: N802
        self, request: pb.ResetUserPasswordRequest, context: grpc.ServicerContext
    ) -> pb.ResetUserPasswordResponse:
        """Give an account a new random password."""
        password = self._accounts.reset_password(self._caller(context), request.id)
        return pb.ResetUserPasswordResponse(password=password)

    @_unauthenticated_only
    def DeleteUser(  # noqa: N802
        self, request: pb.DeleteUserRequest, context: grpc.ServicerContext
    ) -> pb.DeleteUserResponse:
        """Delete an account."""
        self._accounts.delete(self._caller(context), request.id)
        return pb.DeleteUserResponse()

    @_unauthenticated_only
    def ListUsers(  # noqa: N802
        self, request: pb.ListUsersRequest, context: grpc.ServicerContext
    ) -> pb.ListUsersResponse:
        """List the accounts the caller manages."""
        return pb.ListUsersResponse(
            ids=self._accounts.list_users(self._caller(context), request.id)
        )


class AuthenticationInternal(pb_grpc.TeaclaveAuthenticationInternalServicer):
    """``TeaclaveAuthenticationInternal``: token checks for the frontend."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @_unauthenticated_only
    def UserAuthenticate(  # noqa: N802
        self, request: pb.UserAuthenticateRequest, context: grpc.ServicerContext
    ) -> pb.UserAuthenticateResponse:
        """The claims of a current token; UNAUTHENTICATED "authentication failed" otherwise."""
        credential = request.credential
        _, claims = self._accounts.authenticate(credential.id, credential.token)
        return pb.UserAuthenticateResponse(
            claims=pb.UserAuthClaims(
                sub=claims.sub, role=claims.role, iss=claims.iss, exp=claims.exp
            )
        )


def register_api(accounts: Accounts) -> Callable[[grpc.Server], None]:
    """Adds the public API servicer to a server."""
    return functools.partial(
        pb_grpc.add_TeaclaveAuthenticationApiServicer_to_server, AuthenticationApi(accounts)
    )


def register_internal(accounts: Accounts) -> Callable[[grpc.Server], None]:
    """Adds the internal servicer to a server."""
    return functools.partial(
        pb_grpc.add_TeaclaveAuthenticationInternalServicer_to_server,
        AuthenticationInternal(accounts),
    )

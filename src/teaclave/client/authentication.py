"""Client of the authentication API (users, passwords, login)."""

from __future__ import annotations

from teaclave.attestation.evidence import AttestationPolicy
from teaclave.client._connection import DEFAULT_RPC_TIMEOUT, Address, Connection
from teaclave.proto import teaclave_authentication_service_pb2 as pb
from teaclave.proto import teaclave_authentication_service_pb2_grpc as pb_grpc


class AuthenticationClient(Connection):
    """The ``TeaclaveAuthenticationApi`` of the authentication service.

    Every call except :meth:`user_login` is made as ``user_id`` with ``token``
    (set by the constructor or by a successful :meth:`user_login`).
    """

    stub_class = pb_grpc.TeaclaveAuthenticationApiStub

    def __init__(
        self,
        address: Address,
        user_id: str = "",
        token: str = "",
        *,
        simulation_key: str | None = None,
        policy: AttestationPolicy | None = None,
        timeout: float = DEFAULT_RPC_TIMEOUT,
    ) -> None:
        super().__init__(
            address,
            "authentication",
            simulation_key=simulation_key,
            policy=policy,
            timeout=timeout,
        )
        self.user_id, self.token = user_id, token

    def user_login(self, user_id: str, user_password: str) -> str:
        """Log in; returns the token, which later calls of this client use."""
        reply = self._invoke(
            "UserLogin",
            pb.UserLoginRequest(id=user_id, password=user_password),
            credentials=False,
        )
        self.user_id, self.token = user_id, reply.token
        return str(reply.token)

    def user_register(
        self, user_id: str, user_password: str, role: str = "", attribute: str = ""
    ) -> None:
        """Create a user; ``role``: PlatformAdmin, FunctionOwner, DataOwnerManager, DataOwner."""
        self._invoke(
            "UserRegister",
            pb.UserRegisterRequest(
                id=user_id, password=user_password, role=role, attribute=attribute
            ),
        )

    def user_update(self, user_id: str, user_password: str, role: str, attribute: str = "") -> None:
        """Replace a user's password and role."""
        self._invoke(
            "UserUpdate",
            pb.UserUpdateRequest(
                id=user_id, password=user_password, role=role, attribute=attribute
            ),
        )

    def user_change_password(self, user_password: str) -> None:
        """Change the caller's own password."""
        self._invoke("UserChangePassword", pb.UserChangePasswordRequest(password=user_password))

    def reset_user_password(self, user_id: str) -> str:
        """Give a managed user a new random password; returns it."""
        reply = self._invoke("ResetUserPassword", pb.ResetUserPasswordRequest(id=user_id))
        return str(reply.password)

    def delete_user(self, user_id: str) -> None:
        """Delete a managed user."""
        self._invoke("DeleteUser", pb.DeleteUserRequest(id=user_id))

    def list_users(self, user_id: str) -> list[str]:
        """Ids of the users the caller manages (``user_id``: the manager's attribute)."""
        reply = self._invoke("ListUsers", pb.ListUsersRequest(id=user_id))
        return list(reply.ids)

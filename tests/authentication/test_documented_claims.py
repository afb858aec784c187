"""Documented account claims (docs/deviations.md, "Accounts"), each checked by what it promises.

- passwords are stored as argon2id hashes with the configured cost;
- an unknown user id still costs a password hash;
- UserRegister checks permission before existence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import argon2
import grpc
import pytest
from auth_helpers import ADMIN, FAST_AUTH, AuthClient, Session, refused

from teaclave.config import Config
from teaclave.core import codec
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.roles import Role, RoleKind
from teaclave.proto import teaclave_authentication_service_pb2 as pb
from teaclave.services.authentication.accounts import Accounts
from teaclave.services.authentication.throttle import LoginThrottle
from teaclave.services.authentication.tokens import KEY_BYTES, TokenSigner
from teaclave.services.authentication.users import User, Users
from teaclave.services.base import ServiceEnv
from teaclave.storage import keys
from teaclave.storage.remote import RemoteStore
from teaclave.storage.sqlite import SqliteStore

SECRET = "correct horse battery staple"
PERMISSION_DENIED = (grpc.StatusCode.UNAUTHENTICATED, "permission denied")


def stored_record(config: Config, user_id: str) -> bytes:
    """The account record of ``user_id`` as storage holds it (read as the service reads it)."""
    peer = ServiceEnv.create(config, "authentication").peer("storage")
    try:
        record = RemoteStore(peer).get([keys.USER + user_id])[0]
    finally:
        peer.close()
    assert record.exists
    return record.value


def assert_argon2id_of(config: Config, user_id: str, password: str) -> None:
    """Storage holds an argon2id hash of ``password`` with the configured cost, never the text."""
    raw = stored_record(config, user_id)
    assert password.encode() not in raw
    stored = codec.decode(User, raw).password_hash
    cost = f"m={FAST_AUTH.argon2_memory_kib},t={FAST_AUTH.argon2_time_cost}"
    assert stored.startswith(f"$argon2id$v=19${cost},p={FAST_AUTH.argon2_parallelism}$")
    assert argon2.extract_parameters(stored) == argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=FAST_AUTH.argon2_time_cost,
        memory_cost=FAST_AUTH.argon2_memory_kib,
        parallelism=FAST_AUTH.argon2_parallelism,
    )
    assert argon2.PasswordHasher().verify(stored, password)


def test_passwords_are_stored_as_argon2id(config: Config, admin: Session) -> None:
    assert_argon2id_of(config, ADMIN, "root-password")  # the configured first admin
    admin.register("alice", "FunctionOwner", password=SECRET)
    assert_argon2id_of(config, "alice", SECRET)
    first = codec.decode(User, stored_record(config, "alice")).password_hash
    alice = Session(admin.client, "alice", SECRET)
    alice("UserChangePassword", pb.UserChangePasswordRequest(password=SECRET))
    assert_argon2id_of(config, "alice", SECRET)  # the same password, a fresh salt
    assert codec.decode(User, stored_record(config, "alice")).password_hash != first


def counting_hasher(verified: list[str]) -> type[argon2.PasswordHasher]:
    """An argon2 hasher class whose instances append each hash they verify against."""

    class CountingHasher(argon2.PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            verified.append(hash if isinstance(hash, str) else hash.decode())
            return super().verify(hash, password)

    return CountingHasher


@pytest.fixture
def accounts(tmp_path: Path) -> tuple[Accounts, list[str]]:
    """Accounts over a fresh store, with alice; the hashes its logins verified against."""
    verified: list[str] = []
    users = Users(SqliteStore(tmp_path / "db", bytes(32)), FAST_AUTH, counting_hasher(verified))
    accounts = Accounts(users, TokenSigner(bytes(KEY_BYTES), 3600), LoginThrottle())
    accounts.ensure_user("alice", SECRET, Role(RoleKind.FUNCTION_OWNER))
    return accounts, verified


def failed_login(accounts: Accounts, user_id: str, password: str) -> None:
    with pytest.raises(TeaclaveError) as info:
        accounts.login(user_id, password, "192.0.2.1")
    assert (info.value.status, info.value.message) == (
        Status.UNAUTHENTICATED,
        "authentication failed",
    )


def test_an_unknown_user_id_still_costs_a_password_hash(
    accounts: tuple[Accounts, list[str]],
) -> None:
    accounts_, verified = accounts
    failed_login(accounts_, "alice", "wrong")
    [known] = verified
    failed_login(accounts_, "nobody", SECRET)
    [_, unknown] = verified  # one verification, as for a known id
    assert unknown != known
    assert argon2.extract_parameters(unknown) == argon2.extract_parameters(known)  # same cost
    accounts_.delete(User("root", "PlatformAdmin", "", 0), "alice")
    failed_login(accounts_, "alice", SECRET)  # a deleted id costs a hash too
    assert len(verified) == 3


@pytest.fixture
def team(client: AuthClient, admin: Session) -> dict[str, Session]:
    """Logged-in users who may not register a FunctionOwner, and ids that exist or existed."""
    admin.register("manager", "DataOwnerManager", "a")
    admin.register("owner", "DataOwner", "a")
    admin.register("fo", "FunctionOwner")
    admin.register("taken", "FunctionOwner")
    admin.register("gone", "FunctionOwner")
    admin("DeleteUser", pb.DeleteUserRequest(id="gone"))
    return {name: Session(client, name, "pw") for name in ("manager", "owner", "fo")}


def register(caller: Session, user_id: str) -> Any:
    request = pb.UserRegisterRequest(id=user_id, password="x", role="FunctionOwner")
    return caller("UserRegister", request)


@pytest.mark.parametrize("caller", ["manager", "owner", "fo"])
def test_user_register_checks_permission_before_existence(
    admin: Session, team: dict[str, Session], caller: str
) -> None:
    # The same refusal whether the id is free, taken or deleted: existence does not leak.
    for user_id in ("free", "taken", "gone"):
        assert refused(lambda u=user_id: register(team[caller], u)) == PERMISSION_DENIED
    # Only a caller allowed to register learns that an id is in use.
    exists = (grpc.StatusCode.UNAUTHENTICATED, "user id exist")
    assert refused(lambda: register(admin, "taken")) == exists
    assert refused(lambda: register(admin, "gone")) == exists

"""The authentication service over real RA-TLS gRPC, backed by the storage service."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import jwt
import pytest
from auth_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    API,
    AuthClient,
    Runner,
    Session,
    refused,
    run_authentication,
)
from waiting import wait_until

from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.observability import metrics
from teaclave.proto import teaclave_authentication_service_pb2 as pb
from teaclave.proto import teaclave_authentication_service_pb2_grpc as pb_grpc
from teaclave.services import authentication, storage
from teaclave.services.authentication import open_accounts
from teaclave.services.authentication.accounts import THROTTLED
from teaclave.services.authentication.throttle import PAIR
from teaclave.services.authentication.tokens import SIGNING_KEY
from teaclave.services.authentication.users import User, Users
from teaclave.services.base import ServiceEnv
from teaclave.storage.remote import RemoteStore

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def failure(message: str) -> tuple[grpc.StatusCode, str]:
    return UNAUTHENTICATED, message


# --- login ---------------------------------------------------------------------------------


def test_login_returns_a_token_the_frontend_can_check(client: AuthClient) -> None:
    before = int(time.time())
    token = client.login(ADMIN, ADMIN_PASSWORD)
    after = int(time.time())
    claims = client.authenticate(ADMIN, token)
    assert (claims.sub, claims.role, claims.iss) == (ADMIN, "PlatformAdmin", "Teaclave")
    assert before + 24 * 3600 <= claims.exp <= after + 24 * 3600  # a day from the login


@pytest.mark.parametrize(
    ("user", "password"),
    [(ADMIN, "wrong"), ("nobody", ADMIN_PASSWORD), ("", ADMIN_PASSWORD), (ADMIN, "")],
)
def test_bad_logins_fail_alike(client: AuthClient, user: str, password: str) -> None:
    assert refused(lambda: client.login(user, password)) == failure("authentication failed")


def test_repeated_failures_lock_the_id_at_that_address_for_a_while(
    client: AuthClient, admin: Session, caplog: pytest.LogCaptureFixture
) -> None:
    admin.register("guessed", "FunctionOwner", password="right")
    for user in ("guessed", "nobody"):  # an unknown id is locked alike: existence stays hidden
        for _ in range(PAIR.failures):
            assert refused(lambda u=user: client.login(u, "wrong")) == failure(
                "authentication failed"
            )
        assert refused(lambda u=user: client.login(u, "right")) == failure(THROTTLED)
    assert (
        "login of 'guessed' from 127.0.0.1 refused: account at this address is locked out"
        in caplog.text
    )
    assert client.login(ADMIN, ADMIN_PASSWORD)


def test_concurrent_guesses_check_at_most_the_budget(
    client: AuthClient, admin: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 guesses at once: only the pair's budget of them reaches a password check."""
    admin.register("target", "FunctionOwner", password="right")
    changed = threading.Condition()
    checking: list[str] = []
    outcomes: list[tuple[grpc.StatusCode, str]] = []
    release = threading.Event()
    original = Users.check_password

    def held_check(self: Users, user: User | None, password: str) -> bool:
        with changed:
            checking.append(password)
            changed.notify_all()
        release.wait(timeout=60)  # hold every check until all guesses have arrived
        return original(self, user, password)

    def guess(number: int) -> None:
        outcome = refused(lambda: client.login("target", f"wrong-{number}"))
        with changed:
            outcomes.append(outcome)
            changed.notify_all()

    monkeypatch.setattr(Users, "check_password", held_check)
    threads = [threading.Thread(target=guess, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    with changed:
        arrived = changed.wait_for(lambda: len(checking) + len(outcomes) == 16, timeout=60)
    release.set()
    for thread in threads:
        thread.join()
    assert arrived
    assert len(checking) == PAIR.failures
    assert sorted(outcomes) == sorted(
        [failure("authentication failed")] * PAIR.failures
        + [failure(THROTTLED)] * (16 - PAIR.failures)
    )
    monkeypatch.setattr(Users, "check_password", original)
    assert refused(lambda: client.login("target", "right")) == failure(THROTTLED)


def test_unknown_method_is_unimplemented(client: AuthClient) -> None:
    call = client.channel.unary_unary(API + "NoSuchMethod")
    assert refused(lambda: call(b"", timeout=10))[0] == grpc.StatusCode.UNIMPLEMENTED


# --- credentials on API calls -----------------------------------------------------------------


def test_calls_need_id_and_current_token(client: AuthClient, admin: Session) -> None:
    request = pb.ListUsersRequest(id="x")
    assert refused(lambda: client.call("ListUsers", request, None, admin.token)) == failure(
        "missing user id"
    )
    assert refused(lambda: client.call("ListUsers", request, ADMIN, None)) == failure(
        "missing token"
    )
    for user, token in [(ADMIN, "garbage"), ("other", admin.token), (ADMIN, "")]:
        call = functools.partial(client.call, "ListUsers", request, user, token)
        assert refused(call) == failure("authentication failed")


# --- user management ---------------------------------------------------------------------------


def register_request(user: str, role: str, attribute: str = "") -> pb.UserRegisterRequest:
    return pb.UserRegisterRequest(id=user, password="pw", role=role, attribute=attribute)


def update_request(user: str, password: str, role: str, attribute: str = "") -> Any:
    return pb.UserUpdateRequest(id=user, password=password, role=role, attribute=attribute)


@pytest.fixture
def team(client: AuthClient, admin: Session) -> dict[str, Session]:
    """Logged-in users of every role: manager of "a", owners in "a" and "b", a function owner."""
    admin.register("manager", "DataOwnerManager", "a")
    admin.register("owner-a", "DataOwner", "a")
    admin.register("owner-b", "DataOwner", "b")
    admin.register("fo", "FunctionOwner")
    users = {name: Session(client, name, "pw") for name in ("manager", "owner-a", "owner-b", "fo")}
    return {"admin": admin, **users}


@pytest.mark.parametrize(
    ("caller", "role", "attribute", "allowed"),
    [
        ("admin", "PlatformAdmin", "", True),
        ("admin", "DataOwner", "z", True),
        ("manager", "DataOwner", "a", True),
        ("manager", "DataOwner", "b", False),
        ("manager", "DataOwnerManager", "a", False),
        ("manager", "FunctionOwner", "", False),
        ("fo", "DataOwnerManager", "any", False),  # Teaclave: allowed (a takeover path)
        ("fo", "DataOwner", "a", False),
        ("fo", "FunctionOwner", "", False),
        ("owner-a", "DataOwner", "a", False),
    ],
)
def test_register_rules(
    client: AuthClient,
    team: dict[str, Session],
    caller: str,
    role: str,
    attribute: str,
    allowed: bool,
) -> None:
    request = register_request("new", role, attribute)
    if allowed:
        team[caller]("UserRegister", request)
        claims = client.authenticate("new", client.login("new", "pw"))
        expected = f"{role}-{attribute}" if role.startswith("DataOwner") else role
        assert claims.role == expected
    else:
        assert refused(lambda: team[caller]("UserRegister", request)) == failure(
            "permission denied"
        )


def test_register_validates_the_request(admin: Session) -> None:
    admin.register("taken", "FunctionOwner")
    cases = [
        (register_request("taken", "FunctionOwner"), "user id exist"),
        (register_request("", "FunctionOwner"), "invalid user id"),
        (register_request("x", "Superuser"), "invalid role"),
        (register_request("x", "Invalid"), "invalid role"),
        (pb.UserRegisterRequest(id="x", role="FunctionOwner"), "invalid password"),
    ]
    for request, message in cases:
        assert refused(lambda r=request: admin("UserRegister", r)) == failure(message)


def test_admin_updates_password_and_role(client: AuthClient, team: dict[str, Session]) -> None:
    old_token = team["fo"].token
    team["admin"]("UserUpdate", update_request("fo", "new-pw", "DataOwner", "q"))
    assert refused(lambda: client.authenticate("fo", old_token)) == failure("authentication failed")
    assert refused(lambda: client.login("fo", "pw"))[0] == UNAUTHENTICATED
    assert client.authenticate("fo", client.login("fo", "new-pw")).role == "DataOwner-q"
    request = update_request("ghost", "pw", "FunctionOwner")
    assert refused(lambda: team["admin"]("UserUpdate", request)) == failure("invalid user id")


@pytest.mark.parametrize(
    ("target", "role", "attribute", "allowed"),
    [
        ("owner-a", "DataOwner", "a", True),
        ("owner-a", "DataOwnerManager", "a", False),
        ("owner-a", "DataOwner", "b", False),
        ("owner-b", "DataOwner", "a", False),  # Teaclave allows this takeover
        ("admin", "DataOwner", "a", False),  # ... and this one
        ("fo", "DataOwner", "a", False),
    ],
)
def test_manager_updates_only_own_data_owners(
    client: AuthClient,
    team: dict[str, Session],
    target: str,
    role: str,
    attribute: str,
    allowed: bool,
) -> None:
    target_id = team[target].user
    request = update_request(target_id, "taken-over", role, attribute)
    if allowed:
        team["manager"]("UserUpdate", request)
        assert client.login(target_id, "taken-over")
    else:
        assert refused(lambda: team["manager"]("UserUpdate", request)) == failure(
            "permission denied"
        )
        assert refused(lambda: client.login(target_id, "taken-over"))[0] == UNAUTHENTICATED


def test_change_password_revokes_old_tokens(client: AuthClient, team: dict[str, Session]) -> None:
    me = team["owner-a"]
    me("UserChangePassword", pb.UserChangePasswordRequest(password="pw2"))
    assert refused(lambda: client.authenticate("owner-a", me.token))[0] == UNAUTHENTICATED
    assert refused(lambda: me("ListUsers", pb.ListUsersRequest(id="a"))) == failure(
        "authentication failed"
    )
    assert refused(lambda: client.login("owner-a", "pw"))[0] == UNAUTHENTICATED
    fresh = Session(client, "owner-a", "pw2")
    assert client.authenticate("owner-a", fresh.token).role == "DataOwner-a"
    empty = pb.UserChangePasswordRequest(password="")
    assert refused(lambda: fresh("UserChangePassword", empty)) == failure("authentication failed")


@pytest.mark.parametrize(
    ("caller", "target", "allowed"),
    [
        ("admin", "fo", True),
        ("admin", "manager", True),
        ("manager", "owner-a", True),
        ("manager", "owner-b", False),
        ("manager", "fo", False),
        ("manager", "ghost", False),
        ("fo", "owner-a", False),
        ("owner-a", "owner-a", False),
    ],
)
def test_reset_and_delete_rules(
    client: AuthClient, team: dict[str, Session], caller: str, target: str, allowed: bool
) -> None:
    reset = pb.ResetUserPasswordRequest(id=target)
    delete = pb.DeleteUserRequest(id=target)
    if not allowed:
        for method, request in (("ResetUserPassword", reset), ("DeleteUser", delete)):
            assert refused(lambda m=method, r=request: team[caller](m, r)) == failure(
                "permission denied"
            )
        return
    old_token = team[target].token
    password = team[caller]("ResetUserPassword", reset).password
    assert len(password) == 32
    assert password == password.lower()
    int(password, 16)
    assert refused(lambda: client.authenticate(target, old_token))[0] == UNAUTHENTICATED
    token = client.login(target, password)
    team[caller]("DeleteUser", delete)
    assert refused(lambda: client.login(target, password)) == failure("authentication failed")
    assert refused(lambda: client.authenticate(target, token))[0] == UNAUTHENTICATED


def test_deleted_ids_are_never_reused(client: AuthClient, admin: Session) -> None:
    """A new "phoenix" would inherit the files, tasks and functions of the old one."""
    admin.register("phoenix", "FunctionOwner")
    token = client.login("phoenix", "pw")
    admin("DeleteUser", pb.DeleteUserRequest(id="phoenix"))
    assert refused(lambda: client.authenticate("phoenix", token))[0] == UNAUTHENTICATED
    assert refused(lambda: admin.register("phoenix", "FunctionOwner")) == failure("user id exist")
    assert refused(lambda: client.login("phoenix", "pw"))[0] == UNAUTHENTICATED
    assert "phoenix" not in admin("ListUsers", pb.ListUsersRequest(id="x")).ids
    assert refused(lambda: admin("DeleteUser", pb.DeleteUserRequest(id="phoenix")))[0] == (
        UNAUTHENTICATED
    )


def test_empty_target_ids_are_invalid(admin: Session) -> None:
    for method, request in [
        ("ResetUserPassword", pb.ResetUserPasswordRequest()),
        ("DeleteUser", pb.DeleteUserRequest()),
        ("ListUsers", pb.ListUsersRequest()),
        ("UserUpdate", update_request("", "pw", "FunctionOwner")),
    ]:
        assert refused(lambda m=method, r=request: admin(m, r)) == failure("invalid user id")


def test_list_users(admin: Session, team: dict[str, Session]) -> None:
    admin.register("owner-a2", "DataOwner", "a")
    everyone = admin("ListUsers", pb.ListUsersRequest(id="ignored")).ids
    assert sorted(everyone) == sorted([ADMIN, "manager", "owner-a", "owner-a2", "owner-b", "fo"])
    mine = team["manager"]("ListUsers", pb.ListUsersRequest(id="a")).ids
    assert sorted(mine) == ["owner-a", "owner-a2"]
    for caller, attribute in [("manager", "b"), ("fo", "a"), ("owner-a", "a")]:
        request = pb.ListUsersRequest(id=attribute)
        assert refused(lambda c=caller, r=request: team[c]("ListUsers", r)) == failure(
            "permission denied"
        )


# --- token checks (internal endpoint) ----------------------------------------------------------


def signing_key(config: Config) -> bytes:
    """The stored key, read as the authentication service would."""
    peer = ServiceEnv.create(config, "authentication").peer("storage")
    try:
        return RemoteStore(peer).get([SIGNING_KEY])[0].value
    finally:
        peer.close()


def test_forged_and_stale_tokens_are_refused(client: AuthClient, config: Config) -> None:
    key = signing_key(config)
    assert len(key) == 64
    token = client.login(ADMIN, ADMIN_PASSWORD)
    claims = jwt.decode(token, key, algorithms=["HS512"])
    assert set(claims) == {"sub", "role", "iss", "exp", "gen"}

    def forged(algorithm: str = "HS512", secret: bytes = key, **changes: Any) -> str:
        payload = {**claims, **changes}
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm)

    assert client.authenticate(ADMIN, forged()).sub == ADMIN
    bad = {
        "garbage": "not.a.token",
        "empty": "",
        "expired": forged(exp=int(time.time()) - 1),
        "hs256": forged("HS256"),
        "wrong issuer": forged(iss="Mallory"),
        "other subject": forged(sub="someone-else"),
        "wrong key": forged(secret=b"k" * 64),
        "no generation": forged(gen=None),
        "old generation": forged(gen=claims["gen"] - 1),
        "other role": forged(role="FunctionOwner"),
    }
    for name, token in bad.items():
        assert refused(lambda t=token: client.authenticate(ADMIN, t)) == failure(
            "authentication failed"
        ), name
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert refused(lambda: client.authenticate(ADMIN, unsigned))[0] == UNAUTHENTICATED


def test_only_the_frontend_may_check_tokens(client: AuthClient, config: Config) -> None:
    token = client.login(ADMIN, ADMIN_PASSWORD)
    peer = ServiceEnv.create(config, "management").peer("authentication")
    request = pb.UserAuthenticateRequest()
    request.credential.id, request.credential.token = ADMIN, token
    try:
        code, _ = refused(
            lambda: peer.call(
                lambda ch: pb_grpc.TeaclaveAuthenticationInternalStub(ch).UserAuthenticate(
                    request, timeout=10
                )
            )
        )
    finally:
        peer.close()
    assert code == grpc.StatusCode.PERMISSION_DENIED


def storage_reads() -> float:
    """Reads the storage service answered (in this process: the services run in it)."""
    labels = {"service": "storage", "method": "TeaclaveStorage/Get", "code": "OK"}
    return metrics.REGISTRY.get_sample_value("teaclave_rpc_server_handled_total", labels) or 0.0


def test_token_checks_read_no_storage_once_the_account_is_known(
    client: AuthClient, admin: Session
) -> None:
    client.authenticate(ADMIN, admin.token)
    reads = storage_reads()
    for _ in range(3):
        assert client.authenticate(ADMIN, admin.token).sub == ADMIN
        admin("ListUsers", pb.ListUsersRequest(id="x"))  # its caller's token is checked too
    assert storage_reads() == reads  # (ListUsers scans the accounts: a Scan, not a Get)


def test_a_change_by_another_replica_reaches_the_service(
    client: AuthClient, team: dict[str, Session], config: Config
) -> None:
    """A second writer of the accounts (another replica) changes a password: the service
    learns of it from its watch of ``user/`` and refuses the older tokens."""
    me = team["owner-a"]
    assert client.authenticate("owner-a", me.token).sub == "owner-a"  # known to the service
    peer = ServiceEnv.create(config, "authentication").peer("storage")
    try:
        replica = open_accounts(RemoteStore(peer), config)
        account = replica.authenticate("owner-a", me.token)[0]
        replica.change_password(account, "pw2")
    finally:
        peer.close()

    def old_token_refused() -> bool:
        try:
            client.authenticate("owner-a", me.token)
        except grpc.RpcError as exc:
            return exc.code() == UNAUTHENTICATED
        return False

    wait_until(old_token_refused, "the older token to be refused")
    assert client.authenticate("owner-a", Session(client, "owner-a", "pw2").token).sub


# --- restarts and the first admin --------------------------------------------------------------


def test_tokens_survive_a_restart(
    config: Config, storage_service: None, service_runner: Runner
) -> None:
    with run_authentication(service_runner, config):
        first = AuthClient(config)
        token = first.login(ADMIN, ADMIN_PASSWORD)
        first.close()
    with run_authentication(service_runner, config):
        second = AuthClient(config)
        try:
            assert second.authenticate(ADMIN, token).sub == ADMIN
            assert second.call("ListUsers", pb.ListUsersRequest(id="x"), ADMIN, token).ids
        finally:
            second.close()


def login_works(config: Config, runner: Runner, user: str, password: str) -> bool:
    with run_authentication(runner, config):
        client = AuthClient(config)
        try:
            client.login(user, password)
        except grpc.RpcError:
            return False
        finally:
            client.close()
        return True


def with_auth(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, auth=dataclasses.replace(config.auth, **changes))


def test_no_admin_without_a_configured_password(
    config: Config, storage_service: None, service_runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEACLAVE_ADMIN_PASSWORD", raising=False)
    bare = with_auth(config, admin_password="", admin_user="admin")
    assert not login_works(bare, service_runner, "admin", "teaclave")
    assert not login_works(bare, service_runner, "admin", "")


def test_admin_password_from_the_environment(
    config: Config, storage_service: None, service_runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEACLAVE_ADMIN_PASSWORD", "from-env")
    from_env = with_auth(config, admin_password="", admin_user="boss")
    assert login_works(from_env, service_runner, "boss", "from-env")
    # An existing admin keeps its password when the configured one changes.
    monkeypatch.setenv("TEACLAVE_ADMIN_PASSWORD", "changed")
    assert login_works(from_env, service_runner, "boss", "from-env")
    assert not login_works(from_env, service_runner, "boss", "changed")


def test_dev_admin_only_when_asked(
    config: Config, storage_service: None, service_runner: Runner
) -> None:
    assert not login_works(config, service_runner, "admin", "teaclave")
    dev = with_auth(config, dev_teaclave_admin=True)
    assert login_works(dev, service_runner, "admin", "teaclave")
    assert login_works(dev, service_runner, ADMIN, ADMIN_PASSWORD)


def in_production(config: Config) -> Config:
    """``config`` in production mode (built directly: ``parse_config`` would refuse simulation)."""
    return dataclasses.replace(
        config, attestation=dataclasses.replace(config.attestation, mode="production")
    )


def start_refused(config: Config) -> TeaclaveError:
    """The error that stops the authentication service from starting under ``config``."""
    stop = threading.Event()
    stop.set()  # a service that does start returns at once (and the test fails)
    with pytest.raises(TeaclaveError) as info:
        authentication.main(ServiceEnv.create(config, "authentication"), stop)
    return info.value


DEV_ADMIN_REFUSED = (
    "refusing to start in attestation.mode production: the account 'admin' still has the "
    "well-known development password 'teaclave'. Start once in development mode and change "
    "its password (UserChangePassword or UserUpdate) or delete the account, then switch to "
    "production."
)


def test_production_refuses_to_start_while_admin_has_the_dev_password(
    config: Config, storage_service: None, service_runner: Runner
) -> None:
    dev = with_auth(config, dev_teaclave_admin=True)
    assert login_works(dev, service_runner, "admin", "teaclave")  # made in development
    production = in_production(config)
    refusal = start_refused(production)
    assert (refusal.status, refusal.message) == (Status.FAILED_PRECONDITION, DEV_ADMIN_REFUSED)
    with run_authentication(service_runner, config):  # development again: change it
        client = AuthClient(config)
        try:
            Session(client, "admin", "teaclave")(
                "UserChangePassword", pb.UserChangePasswordRequest(password="not-teaclave")
            )
        finally:
            client.close()
    assert login_works(production, service_runner, "admin", "not-teaclave")
    assert not login_works(production, service_runner, "admin", "teaclave")


def test_production_refuses_a_bootstrap_admin_with_the_dev_password(
    config: Config, storage_service: None
) -> None:
    well_known = with_auth(in_production(config), admin_user="admin", admin_password="teaclave")
    refusal = start_refused(well_known)
    assert (refusal.status, refusal.message) == (Status.FAILED_PRECONDITION, DEV_ADMIN_REFUSED)


def test_production_starts_once_the_dev_admin_is_deleted(
    config: Config, storage_service: None, service_runner: Runner
) -> None:
    with run_authentication(service_runner, with_auth(config, dev_teaclave_admin=True)):
        client = AuthClient(config)
        try:
            Session(client, ADMIN, ADMIN_PASSWORD)("DeleteUser", pb.DeleteUserRequest(id="admin"))
        finally:
            client.close()
    assert login_works(in_production(config), service_runner, ADMIN, ADMIN_PASSWORD)


def test_concurrent_registrations_of_one_id_create_one_user(admin: Session) -> None:
    def register(password: str) -> str:
        try:
            admin.register("race", "FunctionOwner", password=password)
        except grpc.RpcError as exc:
            return str(exc.details())
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(register, [f"pw{i}" for i in range(8)]))
    assert sorted(results) == ["ok"] + ["user id exist"] * 7
    winner = results.index("ok")
    assert admin.client.login("race", f"pw{winner}")


def connect_when_up(config: Config, timeout: float = 10) -> AuthClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return AuthClient(config)
        except TeaclaveError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_authentication_waits_for_storage(config: Config, service_runner: Runner) -> None:
    env = ServiceEnv.create(config, "authentication")
    with service_runner(authentication.main, env):
        time.sleep(1)  # storage is not up yet: the service keeps retrying
        with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
            client = connect_when_up(config)
            try:
                assert client.login(ADMIN, ADMIN_PASSWORD)
            finally:
                client.close()


def test_a_deleted_bootstrap_admin_is_not_recreated_and_the_service_starts(
    config: Config,
    storage_service: None,
    service_runner: Runner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dev = with_auth(config, dev_teaclave_admin=True)
    with run_authentication(service_runner, dev):
        client = AuthClient(dev)
        root = Session(client, ADMIN, ADMIN_PASSWORD)
        root.register("boss", "PlatformAdmin", password="boss-pw")
        boss = Session(client, "boss", "boss-pw")
        for deleted in (ADMIN, "admin"):
            boss("DeleteUser", pb.DeleteUserRequest(id=deleted))
        client.close()
    caplog.clear()
    with run_authentication(service_runner, dev):  # serves: no start-up loop
        client = AuthClient(dev)
        try:
            assert client.login("boss", "boss-pw")
            for deleted, password in ((ADMIN, ADMIN_PASSWORD), ("admin", "teaclave")):
                assert refused(lambda u=deleted, p=password: client.login(u, p)) == failure(
                    "authentication failed"
                )
        finally:
            client.close()
    deleted_messages = [r.getMessage() for r in caplog.records if "was deleted" in r.getMessage()]
    assert deleted_messages == [
        f"the bootstrap admin {ADMIN!r} was deleted and is not re-created: user ids are never "
        "reused (a new account would inherit the old one's files, tasks and functions). "
        "Another PlatformAdmin can register a new admin, or set auth.admin_user to a new id "
        "and restart; unset auth.admin_password and $TEACLAVE_ADMIN_PASSWORD to silence this.",
        "the bootstrap admin 'admin' was deleted and is not re-created: user ids are never "
        "reused (a new account would inherit the old one's files, tasks and functions). "
        "Turn auth.dev_teaclave_admin off.",
    ]
    assert "well-known account" not in caplog.text

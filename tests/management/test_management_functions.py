"""Management over RA-TLS gRPC: functions, usage stats and function lists (§3.3, §4.3)."""

import pytest
import wasmtime
from mgmt_helpers import User, UserFactory, refused, register_function

from teaclave.core.errors import Status
from teaclave.proto import teaclave_frontend_service_pb2 as fe

PRIVATE = "permission denied: function is private and not shared with you"
NOT_OWNER = "permission denied: not the function's owner"


def _get(user: User, function_id: str) -> fe.GetFunctionResponse:
    return user.GetFunction(fe.GetFunctionRequest(function_id=function_id))


def _stats(user: User, function_id: str) -> tuple[int, int]:
    r = user.GetFunctionUsageStats(fe.GetFunctionUsageStatsRequest(function_id=function_id))
    return r.function_quota, r.current_usage


def _lists(caller: User, user_id: str) -> tuple[list[str], list[str]]:
    r = caller.ListFunctions(fe.ListFunctionsRequest(user_id=user_id))
    return list(r.registered_functions), list(r.allowed_functions)


def test_register_and_get_round_trip(owner: User) -> None:
    function_id = register_function(
        owner,
        name="f",
        description="d",
        executor_type="python",
        public=False,
        payload=b"def entrypoint(argv): pass",
        arguments=[fe.FunctionArgument(key="k", default_value="v", allow_overwrite=True)],
        inputs=[fe.FunctionInput(name="in", description="i", optional=True)],
        outputs=[fe.FunctionOutput(name="out", description="o")],
        user_allowlist=["bob", "x"],
    )
    assert function_id.startswith("function-")
    assert _get(owner, function_id) == fe.GetFunctionResponse(
        name="f",
        description="d",
        executor_type="python",
        owner="fo",
        payload=b"def entrypoint(argv): pass",
        public=False,
        arguments=[fe.FunctionArgument(key="k", default_value="v", allow_overwrite=True)],
        inputs=[fe.FunctionInput(name="in", description="i", optional=True)],
        outputs=[fe.FunctionOutput(name="out", description="o")],
        user_allowlist=["bob", "x"],
    )


@pytest.mark.parametrize(("quota", "expected"), [(-1, -1), (-5, -1), (0, 0), (5, 5)])
def test_quota_normalisation(owner: User, quota: int, expected: int) -> None:
    function_id = register_function(owner, usage_quota=quota)
    assert _stats(owner, function_id) == (expected, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"executor_type": "jvm"}, "invalid executor type 'jvm'"),
        (
            {"arguments": [fe.FunctionArgument(key="a"), fe.FunctionArgument(key="a")]},
            "invalid function: duplicate argument 'a'",
        ),
        (
            {"inputs": [fe.FunctionInput(name="i"), fe.FunctionInput(name="i")]},
            "invalid function: duplicate input 'i'",
        ),
        (
            {"outputs": [fe.FunctionOutput(name="o"), fe.FunctionOutput(name="o")]},
            "invalid function: duplicate output 'o'",
        ),
    ],
)
def test_malformed_function(owner: User, fields: dict[str, object], message: str) -> None:
    refused(Status.INVALID_ARGUMENT, message, lambda: register_function(owner, **fields))


@pytest.mark.parametrize(
    "function_id", ["", "function-1", "task-00000000-0000-4000-8000-000000000000"]
)
def test_invalid_function_id(owner: User, function_id: str) -> None:
    refused(Status.INVALID_ARGUMENT, "invalid function id", lambda: _get(owner, function_id))


def test_private_function_visibility(owner: User, user: UserFactory, admin: User) -> None:
    allowlist = ["listed", "user:carol", "attribute:x", "y"]
    function_id = register_function(
        owner, public=False, payload=b"secret", user_allowlist=allowlist
    )
    for reader in (owner, admin):
        full = _get(reader, function_id)
        assert (full.payload, list(full.user_allowlist)) == (b"secret", allowlist)
    # Allow-listed by user id (plain or user:) or by attribute: no payload, no allow-list.
    for listed in (
        user("listed", "DataOwner-z"),
        user("carol", "DataOwner-z"),
        user("alice", "DataOwner-x"),
    ):
        blanked = _get(listed, function_id)
        assert (blanked.name, blanked.payload, list(blanked.user_allowlist)) == (
            "builtin-echo",
            b"",
            [],
        )
        assert _stats(listed, function_id) == (-1, 0)
    # A plain entry names a user, never an attribute; a user named "x" is not attribute x.
    for stranger in (user("bob", "DataOwner-y"), user("x", "DataOwner-z")):
        refused(Status.PERMISSION_DENIED, PRIVATE, lambda s=stranger: _get(s, function_id))
        refused(Status.PERMISSION_DENIED, PRIVATE, lambda s=stranger: _stats(s, function_id))
    # The owner reads their own usage stats (Teaclave refuses unless allow-listed).
    assert _stats(owner, function_id) == (-1, 0)


def test_public_function_readable_by_anyone(owner: User, bob: User) -> None:
    function_id = register_function(owner, payload=b"code", user_allowlist=["x"])
    assert _get(bob, function_id).payload == b"code"
    assert _stats(bob, function_id) == (-1, 0)


def test_lists(owner: User, user: UserFactory, admin: User, bob: User) -> None:
    f1 = register_function(owner, user_allowlist=["bob"])
    f2 = register_function(owner, public=False)
    f3 = register_function(user("fo2", "FunctionOwner"), user_allowlist=["bob", "bob"])
    assert _lists(owner, "fo") == ([f1, f2], [])
    assert _lists(bob, "bob") == ([], [f1, f3])
    assert _lists(user("carol", "DataOwner-x"), "carol") == ([], [])
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: can only list your own functions",
        lambda: _lists(bob, "fo"),
    )
    registered, allowed = _lists(admin, "fo")
    assert registered == [f1, f2]
    assert sorted(allowed) == sorted([f1, f2, f3])
    assert _lists(admin, "unknown") == ([], sorted([f1, f2, f3]))


WASM = bytes(
    wasmtime.wat2wasm(
        '(module (memory (export "memory") 1)'
        ' (func (export "entrypoint") (param i32 i32) (result i32) (i32.const 0)))'
    )
)


def test_update_function(owner: User, bob: User, user: UserFactory, admin: User) -> None:
    function_id = register_function(owner, public=False, user_allowlist=["bob", "carol"])
    carol = user("carol", "DataOwner-z")
    request = fe.UpdateFunctionRequest(
        function_id=function_id,
        name="renamed",
        executor_type="wamr",
        public=False,
        payload=WASM,
        user_allowlist=["carol", "dave"],
        usage_quota=7,
    )
    refused(Status.PERMISSION_DENIED, "permission denied", lambda: bob.UpdateFunction(request))
    for intruder in (user("fo2", "FunctionOwner"), admin):
        refused(Status.PERMISSION_DENIED, NOT_OWNER, lambda u=intruder: u.UpdateFunction(request))
    assert owner.UpdateFunction(request).function_id == function_id
    updated = _get(owner, function_id)
    assert (updated.name, updated.executor_type, updated.payload, updated.owner) == (
        "renamed",
        "wamr",
        WASM,
        "fo",
    )
    assert _stats(owner, function_id) == (7, 0)
    # Allow-list changes reach the users' lists.
    assert _lists(bob, "bob") == ([], [])
    assert _lists(carol, "carol") == ([], [function_id])
    assert _lists(user("dave", "DataOwner-z"), "dave") == ([], [function_id])
    refused(Status.PERMISSION_DENIED, PRIVATE, lambda: _get(bob, function_id))


def test_delete_function(owner: User, bob: User, admin: User, user: UserFactory) -> None:
    function_id = register_function(owner, user_allowlist=["bob"])
    request = fe.DeleteFunctionRequest(function_id=function_id)
    refused(Status.PERMISSION_DENIED, "permission denied", lambda: bob.DeleteFunction(request))
    for intruder in (user("fo2", "FunctionOwner"), admin):
        refused(Status.PERMISSION_DENIED, NOT_OWNER, lambda u=intruder: u.DeleteFunction(request))
    owner.DeleteFunction(request)
    refused(Status.INVALID_ARGUMENT, "invalid function id", lambda: _get(owner, function_id))
    refused(Status.INVALID_ARGUMENT, "invalid function id", lambda: _stats(owner, function_id))
    assert _lists(owner, "fo") == ([], [])
    assert _lists(bob, "bob") == ([], [])
    assert _lists(admin, "fo") == ([], [])
    refused(Status.INVALID_ARGUMENT, "invalid function id", lambda: owner.DeleteFunction(request))


@pytest.mark.parametrize("disabler", ["owner", "admin"])
def test_disable_function(
    owner: User, bob: User, admin: User, alice: User, user: UserFactory, disabler: str
) -> None:
    function_id = register_function(owner, user_allowlist=["bob"])
    request = fe.DisableFunctionRequest(function_id=function_id)
    refused(Status.PERMISSION_DENIED, "permission denied", lambda: bob.DisableFunction(request))
    intruder = user("fo2", "FunctionOwner")
    refused(Status.PERMISSION_DENIED, NOT_OWNER, lambda: intruder.DisableFunction(request))
    {"owner": owner, "admin": admin}[disabler].DisableFunction(request)
    assert _lists(owner, "fo") == ([], [])
    assert _lists(bob, "bob") == ([], [])
    record = _get(bob, function_id)
    assert (record.name, list(record.user_allowlist)) == ("builtin-echo", [])
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: function is disabled",
        lambda: alice.CreateTask(
            fe.CreateTaskRequest(
                function_id=function_id, function_arguments="{}", executor="builtin"
            )
        ),
    )
    update = fe.UpdateFunctionRequest(function_id=function_id, executor_type="builtin")
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: function is disabled",
        lambda: owner.UpdateFunction(update),
    )

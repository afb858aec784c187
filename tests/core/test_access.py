"""The access rules: the role x API matrix (§4.1-4.2, with the reference's unit-test
expectations) and the resource conditions (§4.3), through :func:`decide`."""

import pytest

from teaclave.core.access import (
    RULES,
    Decision,
    Facts,
    FileFacts,
    FunctionFacts,
    Subject,
    TaskFacts,
    allow_listed_users,
    authorize_api,
    decide,
    is_allow_listed,
)
from teaclave.core.errors import Status
from teaclave.core.roles import Role, RoleKind

ADMIN = Role.parse("PlatformAdmin")
FUNCTION_OWNER = Role.parse("FunctionOwner")
DATA_OWNER = Role.parse("DataOwner-x")
DATA_OWNER_MANAGER = Role.parse("DataOwnerManager-x")
INVALID = Role.parse("Invalid")

FUNCTION_OWNER_ONLY = {
    "register_function",
    "update_function",
    "delete_function",
    "disable_function",
}
SHARED = {
    "get_function",
    "list_functions",
    "get_function_usage_stats",
    "get_task",
    "wait_task",  # our extension: as get_task
    "approve_task",
    "revoke_task_approval",
    "query_audit_logs",  # non-admins see only entries about themselves
}
DATA_OWNER_ONLY = {
    "register_input_file",
    "register_output_file",
    "update_input_file",
    "update_output_file",
    "register_fusion_output",
    "register_input_from_output",
    "get_output_file",
    "get_input_file",
    "create_task",
    "assign_data",
    "invoke_task",
    "cancel_task",
}
PRIVATE = "permission denied: function is private and not shared with you"


def denied(decision: Decision, message: str, status: Status = Status.PERMISSION_DENIED) -> None:
    assert (decision.allowed, decision.status, decision.reason) == (False, status, message)


# --- the role matrix -------------------------------------------------------------


def test_reference_expectations() -> None:
    assert authorize_api(ADMIN, "arbitrary_api")
    assert authorize_api(Role.parse("PlatformAdmin"), "Arbitrary_api")
    for api in ("get_function", "register_function", "arbitrary_api"):
        assert not authorize_api(INVALID, api)
    # get_task: allowed since a private function's owner must approve (see SHARED).
    assert not authorize_api(FUNCTION_OWNER, "invoke_task")
    assert not authorize_api(DATA_OWNER, "register_function")
    assert authorize_api(DATA_OWNER, "get_function")


def test_table_covers_every_api() -> None:
    public = FUNCTION_OWNER_ONLY | SHARED | DATA_OWNER_ONLY
    assert set(RULES) == public | {"save_logs"}


@pytest.mark.parametrize("api", sorted(RULES))
def test_matrix(api: str) -> None:
    assert authorize_api(ADMIN, api)
    assert not authorize_api(INVALID, api)
    assert authorize_api(FUNCTION_OWNER, api) == (api in FUNCTION_OWNER_ONLY | SHARED)
    for role in (DATA_OWNER, DATA_OWNER_MANAGER):
        assert authorize_api(role, api) == (api in DATA_OWNER_ONLY | SHARED)


def test_unknown_api_is_denied_to_everyone_but_admin() -> None:
    for role in (FUNCTION_OWNER, DATA_OWNER, DATA_OWNER_MANAGER, INVALID):
        assert not authorize_api(role, "no_such_api")
    assert authorize_api(ADMIN, "no_such_api")
    denied(
        decide("no_such_api", Subject("root", ADMIN), Facts()),
        "permission denied: no rule for no_such_api",
    )


def test_role_prefix_as_the_frontend_sends_it() -> None:
    assert Role.parse("DataOwner").kind is RoleKind.DATA_OWNER
    assert authorize_api(Role.parse("DataOwner"), "create_task")
    assert authorize_api(Role.parse("DataOwnerManager"), "get_task")
    assert not authorize_api(Role.parse("Nobody"), "get_function")


def test_role_denial_messages() -> None:
    denied(decide("register_function", Subject("alice", DATA_OWNER), Facts()), "permission denied")
    denied(decide("query_audit_logs", Subject("alice", INVALID), Facts()), "permission denied")


def test_internal_api_takes_no_user() -> None:
    assert decide("save_logs", None, Facts()).allowed
    assert not decide("save_logs", Subject("root", ADMIN), Facts()).allowed
    assert not decide("get_task", None, Facts()).allowed


# --- the allow-list ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "subject", "listed"),
    [
        ("alice", Subject("alice", DATA_OWNER), True),  # plain: a user id
        ("user:alice", Subject("alice", DATA_OWNER), True),
        ("attribute:x", Subject("alice", DATA_OWNER), True),
        ("attribute:x", Subject("m", DATA_OWNER_MANAGER), True),
        ("x", Subject("alice", DATA_OWNER), False),  # plain is never an attribute
        ("x", Subject("x", Role.parse("DataOwner-y")), True),
        ("attribute:x", Subject("x", Role.parse("DataOwner-y")), False),  # nor a user id
        ("user:x", Subject("alice", DATA_OWNER), False),
        ("attribute:", Subject("alice", Role.parse("DataOwner-")), False),
        ("attribute:", Subject("fo", FUNCTION_OWNER), False),
        ("", Subject("alice", DATA_OWNER), False),
        ("user:attribute:x", Subject("attribute:x", DATA_OWNER), True),
    ],
)
def test_allow_list_entries(entry: str, subject: Subject, listed: bool) -> None:
    assert is_allow_listed([entry], subject) is listed


def test_allow_listed_users() -> None:
    entries = ["bob", "user:carol", "attribute:x", "user:bob", "attribute:"]
    assert allow_listed_users(entries) == ["bob", "carol"]


# --- functions ---------------------------------------------------------------------


def function(**changes: object) -> Facts:
    fields: dict[str, object] = {
        "owner": "fo",
        "public": False,
        "allowlist": ("attribute:x", "listed"),
    }
    fields.update(changes)
    return Facts(function=FunctionFacts(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "role"),
    [
        ("alice", Role.parse("DataOwner-x")),  # attribute allow-listed
        ("alice", Role.parse("DataOwnerManager-x")),
        ("listed", Role.parse("DataOwner-y")),  # user id allow-listed
        ("fo", Role.parse("DataOwner-y")),  # the owner
        ("anyone", ADMIN),
    ],
)
def test_private_function_usable_by(user: str, role: Role) -> None:
    assert decide("create_task", Subject(user, role), function()).allowed


@pytest.mark.parametrize(
    ("user", "role"),
    [
        ("alice", Role.parse("DataOwner-y")),
        ("alice", Role.parse("DataOwner-")),
        ("x", Role.parse("DataOwner-y")),  # a user named like the attribute
    ],
)
def test_private_function_refused_to(user: str, role: Role) -> None:
    denied(
        decide("create_task", Subject(user, role), function(allowlist=("attribute:x", ""))), PRIVATE
    )


@pytest.mark.parametrize("role", [DATA_OWNER, ADMIN])
def test_disabled_function_refuses_new_tasks(role: Role) -> None:
    facts = function(public=True, disabled=True)
    denied(
        decide("create_task", Subject("alice", role), facts),
        "permission denied: function is disabled",
    )


def test_get_function_views() -> None:
    assert not decide("get_function", Subject("fo", FUNCTION_OWNER), function()).redacted
    assert not decide("get_function", Subject("root", ADMIN), function()).redacted
    assert not decide("get_function", Subject("bob", DATA_OWNER), function(public=True)).redacted
    assert decide("get_function", Subject("alice", DATA_OWNER), function()).redacted
    denied(decide("get_function", Subject("bob", Role.parse("DataOwner-y")), function()), PRIVATE)


def test_function_owner_rules() -> None:
    other = Subject("fo2", FUNCTION_OWNER)
    for api in ("update_function", "delete_function", "disable_function"):
        assert decide(api, Subject("fo", FUNCTION_OWNER), function()).allowed
        denied(decide(api, other, function()), "permission denied: not the function's owner")
    assert decide("disable_function", Subject("root", ADMIN), function()).allowed
    denied(
        decide("delete_function", Subject("root", ADMIN), function()),
        "permission denied: not the function's owner",
    )
    denied(
        decide("update_function", Subject("fo", FUNCTION_OWNER), function(disabled=True)),
        "permission denied: function is disabled",
    )


# --- tasks -------------------------------------------------------------------------

TASK = Facts(task=TaskFacts("alice", frozenset({"alice", "bob"})))


def test_participant_rules() -> None:
    for api in ("get_task", "wait_task", "approve_task", "assign_data"):
        assert decide(api, Subject("bob", Role.parse("DataOwner-y")), TASK).allowed
        denied(
            decide(api, Subject("mallory", DATA_OWNER), TASK),
            "permission denied: not a participant of the task",
        )
        denied(
            decide(api, Subject("root", ADMIN), TASK),
            "permission denied: not a participant of the task",
        )


def test_invoke_and_cancel_by_creator() -> None:
    bob = Subject("bob", Role.parse("DataOwner-y"))
    denied(
        decide("invoke_task", bob, TASK), "permission denied: only the task's creator can invoke it"
    )
    denied(
        decide("cancel_task", bob, TASK), "permission denied: only the task's creator can cancel it"
    )
    assert decide("invoke_task", Subject("alice", DATA_OWNER), TASK).allowed
    assert decide("cancel_task", Subject("root", ADMIN), TASK).allowed
    denied(
        decide("invoke_task", Subject("root", ADMIN), TASK),
        "permission denied: only the task's creator can invoke it",
    )


def slot(owners: set[str], declared: set[str] | None, exists: bool = True) -> FileFacts:
    return FileFacts(
        frozenset(owners), exists, "input 'a'", None if declared is None else frozenset(declared)
    )


@pytest.mark.parametrize(
    ("file", "status", "message"),
    [
        (slot(set(), {"alice"}, exists=False), Status.INVALID_ARGUMENT, "invalid data id"),
        (
            slot({"bob"}, {"bob"}),
            Status.PERMISSION_DENIED,
            "permission denied: you do not own the file for input 'a'",
        ),
        (
            slot({"alice"}, None),
            Status.PERMISSION_DENIED,
            "permission denied: task has no input 'a'",
        ),
        (
            slot({"alice", "bob"}, {"alice"}),
            Status.PERMISSION_DENIED,
            "permission denied: owners of the file differ from those of input 'a'",
        ),
    ],
)
def test_assign_rejections(file: FileFacts, status: Status, message: str) -> None:
    facts = Facts(task=TASK.task, files=(slot({"alice"}, {"alice"}), file))
    denied(decide("assign_data", Subject("alice", DATA_OWNER), facts), message, status)


def test_non_participants_learn_nothing_about_files() -> None:
    facts = Facts(task=TASK.task, files=(slot(set(), None, exists=False),))
    denied(
        decide("assign_data", Subject("mallory", DATA_OWNER), facts),
        "permission denied: not a participant of the task",
    )


# --- files -------------------------------------------------------------------------


def test_file_rules() -> None:
    shared = Facts(file=FileFacts(frozenset({"alice", "bob"})))
    alice, root = Subject("alice", DATA_OWNER), Subject("root", ADMIN)
    for api in ("get_input_file", "get_output_file", "register_input_from_output"):
        assert decide(api, alice, shared).allowed
        assert not decide(api, root, shared).allowed
    for api in ("update_input_file", "update_output_file"):
        denied(
            decide(api, alice, shared), "permission denied: only a file's sole owner can update it"
        )
        assert decide(api, alice, Facts(file=FileFacts(frozenset({"alice"})))).allowed


def test_fusion_output_rules() -> None:
    alice = Subject("alice", DATA_OWNER)
    assert decide(
        "register_fusion_output", alice, Facts(new_owners=frozenset({"alice", "bob"}))
    ).allowed
    denied(
        decide("register_fusion_output", alice, Facts(new_owners=frozenset({"alice"}))),
        "permission denied: a fusion output needs at least two owners",
    )
    denied(
        decide("register_fusion_output", alice, Facts(new_owners=frozenset({"bob", "carol"}))),
        "permission denied: caller must be an owner of the fusion output",
    )


def test_list_functions() -> None:
    assert decide("list_functions", Subject("bob", DATA_OWNER), Facts(listed_user="bob")).allowed
    assert decide("list_functions", Subject("root", ADMIN), Facts(listed_user="bob")).allowed
    denied(
        decide("list_functions", Subject("bob", DATA_OWNER), Facts(listed_user="fo")),
        "permission denied: can only list your own functions",
    )

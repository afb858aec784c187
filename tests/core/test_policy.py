"""The role x API matrix (reference §4.1-4.2), including the unit-test expectations of §4.2."""

import pytest

from teaclave.core.policy import POLICY, authorize_api
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
SHARED = {"get_function", "list_functions", "get_function_usage_stats"}
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
    "get_task",
    "assign_data",
    "approve_task",
    "invoke_task",
    "cancel_task",
}


def test_reference_expectations() -> None:
    assert authorize_api(ADMIN, "arbitrary_api")
    assert authorize_api(Role.parse("PlatformAdmin"), "Arbitrary_api")
    for api in ("get_function", "register_function", "arbitrary_api"):
        assert not authorize_api(INVALID, api)
    for api in ("get_task", "invoke_task", "query_audit_logs"):
        assert not authorize_api(FUNCTION_OWNER, api)
    assert not authorize_api(DATA_OWNER, "register_function")
    assert not authorize_api(DATA_OWNER_MANAGER, "query_audit_logs")
    assert authorize_api(DATA_OWNER, "get_function")


def test_table_covers_every_public_api() -> None:
    assert set(POLICY) == FUNCTION_OWNER_ONLY | SHARED | DATA_OWNER_ONLY | {"query_audit_logs"}


@pytest.mark.parametrize("api", sorted(POLICY))
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


def test_role_prefix_as_the_frontend_sends_it() -> None:
    assert Role.parse("DataOwner").kind is RoleKind.DATA_OWNER
    assert authorize_api(Role.parse("DataOwner"), "create_task")
    assert authorize_api(Role.parse("DataOwnerManager"), "get_task")
    assert not authorize_api(Role.parse("Nobody"), "get_function")

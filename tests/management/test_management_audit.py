"""Management over RA-TLS gRPC: SaveLogs and QueryAuditLogs (reference §2.7)."""

import pytest
from mgmt_helpers import User, UserFactory, refused

from teaclave.core.errors import Status
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2 as mgmt

ALICE = '{ user: alice, role: DataOwner("x") }'
BOB = '{ user: bob, role: DataOwner("y") }'
ENTRIES = [
    common.Entry(
        microsecond=1, ip=bytes(16), user=ALICE, message="register_input_file", result=True
    ),
    common.Entry(microsecond=2, user=BOB, message="get_task:permission denied", result=False),
    common.Entry(microsecond=3, user=ALICE, message="create_task", result=True),
    common.Entry(microsecond=4, user="", message="authenticate to get_task", result=False),
    common.Entry(microsecond=5, user=BOB, message="create_task", result=True),
]


def _query(user: User, query: str, limit: int = 0) -> list[int]:
    response = user.QueryAuditLogs(fe.QueryAuditLogsRequest(query=query, limit=limit))
    return [e.microsecond for e in response.logs]


@pytest.fixture
def saved(user: UserFactory) -> None:
    """ENTRIES saved in two calls, without caller identity (as the frontend does)."""
    anonymous = user(None, None)
    anonymous.SaveLogs(mgmt.SaveLogsRequest(logs=ENTRIES[3:]))
    anonymous.SaveLogs(mgmt.SaveLogsRequest(logs=ENTRIES[:3]))


@pytest.mark.usefixtures("saved")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [5, 4, 3, 2, 1]),
        ("user:alice", [3, 1]),
        ("user:ALICE", [3, 1]),
        ("message:create_task", [5, 3]),
        ("create_task", [5, 3]),
        ("get_task", [4, 2]),
        ("result:false", [4, 2]),
        ("result:true user:bob", [5]),
        ("user:bob   create_task", [5]),
        ("user:carol", []),
    ],
)
def test_queries(admin: User, query: str, expected: list[int]) -> None:
    assert _query(admin, query) == expected


@pytest.mark.usefixtures("saved")
def test_entries_round_trip_and_limit(admin: User) -> None:
    response = admin.QueryAuditLogs(fe.QueryAuditLogsRequest(query="", limit=2))
    assert list(response.logs) == [ENTRIES[4], ENTRIES[3]]
    assert _query(admin, "user:alice", 1) == [3]


def test_default_limit_is_100(admin: User, user: UserFactory) -> None:
    entries = [common.Entry(microsecond=i, message="m") for i in range(1, 121)]
    user(None, None).SaveLogs(mgmt.SaveLogsRequest(logs=entries))
    assert _query(admin, "") == list(range(120, 20, -1))
    assert len(_query(admin, "", 1000)) == 120


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("result:maybe", "audit log error, reason: result must be true or false, not 'maybe'"),
        ("date:1", "audit log error, reason: unknown field 'date'"),
    ],
)
def test_bad_queries(admin: User, query: str, message: str) -> None:
    refused(Status.INVALID_ARGUMENT, message, lambda: _query(admin, query))


@pytest.mark.usefixtures("saved")
def test_others_see_only_entries_about_themselves(user: UserFactory) -> None:
    assert _query(user("alice", "DataOwner-x"), "") == [3, 1]
    assert _query(user("alice", "DataOwner-x"), "create_task") == [3]
    assert _query(user("bob", "DataOwner-y"), "result:false") == [2]
    assert _query(user("fo", "FunctionOwner"), "") == []
    refused(Status.PERMISSION_DENIED, "permission denied", lambda: _query(user("i", "Invalid"), ""))

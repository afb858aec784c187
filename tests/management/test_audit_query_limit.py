"""QueryAuditLogs returns at most 10 000 entries, whatever limit is asked (docs/deviations.md)."""

import pytest
from mgmt_helpers import User, UserFactory

from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2 as mgmt

CAP = 10_000
SAVED = CAP + 50


@pytest.fixture
def many(user: UserFactory) -> None:
    """SAVED entries, microseconds 1…SAVED, saved as the frontend saves them."""
    entries = [common.Entry(microsecond=i, message="m", result=True) for i in range(1, SAVED + 1)]
    user(None, None).SaveLogs(mgmt.SaveLogsRequest(logs=entries))


def query(admin: User, limit: int) -> list[int]:
    response = admin.QueryAuditLogs(fe.QueryAuditLogsRequest(query="", limit=limit))
    return [entry.microsecond for entry in response.logs]


@pytest.mark.usefixtures("many")
@pytest.mark.parametrize("limit", [CAP + 1, 2**64 - 1])
def test_limit_is_capped_at_10000(admin: User, limit: int) -> None:
    assert query(admin, limit) == list(range(SAVED, SAVED - CAP, -1))  # the newest 10 000


@pytest.mark.usefixtures("many")
def test_limits_below_the_cap_are_kept(admin: User) -> None:
    assert query(admin, CAP - 1) == list(range(SAVED, SAVED - CAP + 1, -1))

"""Every RPC of the frontend and management protos has an access rule, and every
management method is built by the policy layer (so its body runs after a decision)."""

import pytest

from teaclave.core.access import RULES
from teaclave.core.apis import api_name
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2 as mgmt
from teaclave.services.frontend.service import routes
from teaclave.services.management.guard import API_ATTRIBUTE
from teaclave.services.management.service import ManagementServicer

FRONTEND = fe.DESCRIPTOR.services_by_name["TeaclaveFrontend"]
MANAGEMENT = mgmt.DESCRIPTOR.services_by_name["TeaclaveManagement"]
ALL_RPCS = sorted({m.name for m in FRONTEND.methods} | {m.name for m in MANAGEMENT.methods})


@pytest.mark.parametrize("rpc", ALL_RPCS)
def test_every_rpc_has_a_rule(rpc: str) -> None:
    assert api_name(rpc) in RULES


@pytest.mark.parametrize("rpc", [m.name for m in MANAGEMENT.methods])
def test_every_management_method_is_guarded_by_its_rule(rpc: str) -> None:
    assert getattr(getattr(ManagementServicer, rpc), API_ATTRIBUTE, None) == api_name(rpc)


def test_no_rule_without_an_rpc() -> None:
    assert set(RULES) == {api_name(rpc) for rpc in ALL_RPCS}


def test_only_save_logs_is_internal() -> None:
    assert [api for api, rule in RULES.items() if rule.internal] == ["save_logs"]
    assert not any(api == "save_logs" for api in (r.api for r in routes().values()))


def test_frontend_refuses_to_route_an_rpc_without_a_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(RULES, "get_task")
    with pytest.raises(RuntimeError, match="no access rule for"):
        routes()

"""The frontend in front of the real services, over RA-TLS gRPC."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from frontend_helpers import FRONTEND, Runner, User, public_channel, refused, running
from waiting import wait_until

from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.observability import metrics
from teaclave.proto import teaclave_authentication_service_pb2_grpc as auth_grpc
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_frontend_service_pb2_grpc as fe_grpc
from teaclave.services.base import ServiceEnv, ServiceMain
from teaclave.services.frontend.service import FRONTEND as DESCRIPTOR

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def function_request(public: bool = True) -> fe.RegisterFunctionRequest:
    return fe.RegisterFunctionRequest(
        name="echo", description="says it back", executor_type="builtin", public=public
    )


def audit_logs(admin: User, query: str, wait_for: int = 1) -> list[Any]:
    """Entries matching ``query``, waiting (up to 10 s) for at least ``wait_for`` of them."""
    deadline = time.monotonic() + 10
    while True:
        logs = list(admin("QueryAuditLogs", fe.QueryAuditLogsRequest(query=query, limit=100)).logs)
        if len(logs) >= wait_for or time.monotonic() > deadline:
            return logs
        time.sleep(0.2)


def test_a_call_is_forwarded_with_the_callers_identity(admin: User) -> None:
    function_id = admin("RegisterFunction", function_request()).function_id
    assert function_id.startswith("function-")
    function = admin("GetFunction", fe.GetFunctionRequest(function_id=function_id))
    assert (function.name, function.owner) == ("echo", admin.id)


def test_credentials_are_required(admin: User) -> None:
    request = fe.ListFunctionsRequest(user_id=admin.id)
    rpc = admin.frontend.ListFunctions
    cases = [
        ((("token", admin.token),), "missing user id"),
        ((("id", admin.id),), "missing token"),
        ((("id", admin.id), ("token", "forged")), "incorrent credential"),
        ((("id", "someone-else"), ("token", admin.token)), "incorrent credential"),
    ]
    for metadata, message in cases:
        assert refused(lambda m=metadata: rpc(request, metadata=m, timeout=30)) == (
            UNAUTHENTICATED,
            message,
        )


@pytest.mark.parametrize("method", [m.name for m in DESCRIPTOR.methods])
def test_every_rpc_checks_the_token(admin: User, method: str) -> None:
    request_type = getattr(fe, DESCRIPTOR.methods_by_name[method].input_type.name)
    rpc = getattr(admin.frontend, method)
    metadata = (("id", admin.id), ("token", admin.token + "x"))
    assert refused(lambda: rpc(request_type(), metadata=metadata, timeout=30)) == (
        UNAUTHENTICATED,
        "incorrent credential",
    )


def test_access_control_decides_by_role(admin: User) -> None:
    owner = admin.register("data-owner", "DataOwner", "x")
    assert refused(lambda: owner("RegisterFunction", function_request())) == (
        PERMISSION_DENIED,
        "permission denied",
    )
    own = wait_until(
        lambda: owner("QueryAuditLogs", fe.QueryAuditLogsRequest(query="")).logs,
        "the refused call to be audited",
    )
    assert all(f"user: {owner.id}," in entry.user for entry in own)  # only about the caller
    listed = owner("ListFunctions", fe.ListFunctionsRequest(user_id=owner.id))
    assert list(listed.registered_functions) == []


def _authorizations() -> float:
    """AuthorizeApi calls access control answered so far (services run in this process)."""
    counter = metrics.RPC_SERVER_HANDLED.labels(
        "access_control", "TeaclaveAccessControl/AuthorizeApi", "OK"
    )
    return float(counter._value.get())


def test_access_control_is_asked_once_per_role_and_api(admin: User) -> None:
    owner = admin.register("asked-owner", "DataOwner", "x")
    before = _authorizations()
    for _ in range(3):  # refused each time, one question
        assert refused(lambda: owner("RegisterFunction", function_request()))[0] == (
            PERMISSION_DENIED
        )
    for _ in range(3):  # allowed each time, one question
        owner("ListFunctions", fe.ListFunctionsRequest(user_id=owner.id))
    assert _authorizations() - before == 2
    other = admin.register("other-asked-owner", "DataOwner", "x")  # same role: known
    other("ListFunctions", fe.ListFunctionsRequest(user_id=other.id))
    assert _authorizations() - before == 2


def test_a_spoofed_role_is_not_forwarded(admin: User) -> None:
    fo = admin.register("function-owner", "FunctionOwner")
    private = fo("RegisterFunction", function_request(public=False)).function_id
    other = admin.register("other-owner", "FunctionOwner")
    request = fe.GetFunctionRequest(function_id=private)
    code, _ = refused(lambda: other("GetFunction", request, role="PlatformAdmin"))
    assert code == PERMISSION_DENIED
    assert admin("GetFunction", request).owner == fo.id


def test_management_errors_pass_through(admin: User) -> None:
    request = fe.GetFunctionRequest(function_id="bogus")
    assert refused(lambda: admin("GetFunction", request)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid function id",
    )


def test_calls_are_audited(admin: User) -> None:
    before = time.time_ns() // 1000
    admin("RegisterFunction", function_request())
    after = time.time_ns() // 1000
    refused(lambda: admin("GetFunction", fe.GetFunctionRequest(function_id="bogus")))
    request = fe.ListFunctionsRequest(user_id=admin.id)
    refused(lambda: admin.frontend.ListFunctions(request, metadata=(("id", admin.id),)))
    owner = admin.register("auditee", "DataOwner", "x")
    refused(lambda: owner("RegisterFunction", function_request()))

    user = "{ user: root, role: PlatformAdmin }"
    [ok] = audit_logs(admin, "message:register_function result:true")
    assert (ok.user, ok.message, ok.result) == (user, "register_function", True)
    assert ok.ip == bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    assert before <= ok.microsecond <= after  # stamped during the call
    [failed] = audit_logs(admin, "message:get_function result:false")
    assert (failed.user, failed.message) == (user, "get_function:invalid function id")
    [no_token] = audit_logs(admin, "message:list_functions result:false")
    missing_token = "authenticate to list_functions: missing token"
    assert (no_token.user, no_token.message) == ("", missing_token)
    denied = audit_logs(admin, "message:authenticate result:false", wait_for=2)
    assert [e.message for e in denied] == [
        "authenticate to register_function",
        missing_token,
    ]
    assert denied[0].user == '{ user: auditee, role: DataOwner("x") }'


def test_wait_task_takes_the_generic_path(admin: User) -> None:
    """WaitTask (our extension) is authenticated, authorized, forwarded and audited like
    GetTask: a participant waits (and gets the task as it stands when the wait runs out),
    anyone else is refused."""
    echo = fe.RegisterFunctionRequest(
        name="builtin-echo",
        executor_type="builtin",
        public=True,
        arguments=[fe.FunctionArgument(key="message", allow_overwrite=True)],
    )
    function_id = admin("RegisterFunction", echo).function_id
    creator = admin.register("waiter", "DataOwner", "x")
    other = admin.register("stranger", "DataOwner", "y")
    create = fe.CreateTaskRequest(
        function_id=function_id, function_arguments='{"message": "m"}', executor="builtin"
    )
    task_id = creator("CreateTask", create).task_id
    request = fe.WaitTaskRequest(task_id=task_id, timeout_ms=50)
    waited = creator("WaitTask", request)
    assert waited == creator("GetTask", fe.GetTaskRequest(task_id=task_id))
    assert refused(lambda: other("WaitTask", request)) == (
        PERMISSION_DENIED,
        "permission denied: not a participant of the task",
    )
    [ok] = audit_logs(admin, "message:wait_task result:true")
    assert (ok.user, ok.message) == ('{ user: waiter, role: DataOwner("x") }', "wait_task")
    [denied] = audit_logs(admin, "message:wait_task result:false")
    assert (denied.user, denied.message) == (
        '{ user: stranger, role: DataOwner("y") }',
        "wait_task:permission denied: not a participant of the task",
    )


def test_unknown_methods_are_unimplemented(admin: User) -> None:
    call = admin.channel.unary_unary(f"/{DESCRIPTOR.full_name}/SaveLogs")
    assert refused(lambda: call(b"", metadata=admin.metadata(), timeout=30))[0] == (
        grpc.StatusCode.UNIMPLEMENTED
    )


def test_oversized_messages_are_refused(admin: User, config: Config) -> None:
    request = fe.RegisterFunctionRequest(payload=b"x" * (config.max_message_bytes + 1))
    assert refused(lambda: admin("RegisterFunction", request))[0] == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def test_audit_entries_are_saved_on_shutdown(
    config: Config, backend: None, service_runner: Runner
) -> None:
    with running(service_runner, config, [FRONTEND]):
        admin = User(config, "root", "root-password")
        admin("ListFunctions", fe.ListFunctionsRequest(user_id=admin.id))
        admin.close()
    with running(service_runner, config, [FRONTEND]):
        admin = User(config, "root", "root-password")
        try:
            [saved] = audit_logs(admin, "message:list_functions")
            assert saved.result
        finally:
            admin.close()


def test_frontend_without_backend_is_unavailable(config: Config, service_runner: Runner) -> None:
    """An outage is reported as one (callers retry), never as bad credentials."""
    with (
        running(service_runner, config, [FRONTEND]),
        public_channel(config, "frontend_api", "frontend") as channel,
    ):
        rpc = fe_grpc.TeaclaveFrontendStub(channel).ListFunctions
        request = fe.ListFunctionsRequest(user_id="x")
        metadata = (("id", "x"), ("token", "t"))
        assert refused(lambda: rpc(request, metadata=metadata, timeout=30)) == (
            grpc.StatusCode.UNAVAILABLE,
            "service temporarily unavailable",
        )


class _FailingAuthentication(auth_grpc.TeaclaveAuthenticationInternalServicer):
    """An authentication service whose every answer is a failure with ``status``."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def UserAuthenticate(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise TeaclaveError(self.status, "as the test asks")


def failing_authentication(status: Status) -> ServiceMain:
    def main(env: ServiceEnv, stop: Any) -> None:
        servicer = _FailingAuthentication(status)
        server = env.serve(
            "authentication",
            lambda s: auth_grpc.add_TeaclaveAuthenticationInternalServicer_to_server(servicer, s),
        )
        stop.wait()
        server.stop(None).wait()

    return main


OUTAGE = (grpc.StatusCode.UNAVAILABLE, "service temporarily unavailable")
BAD_CREDENTIAL = (UNAUTHENTICATED, "incorrent credential")


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (Status.UNAUTHENTICATED, BAD_CREDENTIAL),
        (Status.INVALID_ARGUMENT, BAD_CREDENTIAL),
        *(
            (status, OUTAGE)
            for status in Status
            if status not in (Status.OK, Status.UNAUTHENTICATED, Status.INVALID_ARGUMENT)
        ),
    ],
    ids=lambda value: value.name if isinstance(value, Status) else None,
)
def test_only_a_refused_credential_is_reported_as_one(
    config: Config, service_runner: Runner, status: Status, answer: tuple[Any, str]
) -> None:
    """Whatever else goes wrong with the authentication service (restarting, overloaded,
    out of time, failing), a caller learns of an outage, never of a bad credential."""
    authentication = (failing_authentication(status), "authentication", ("authentication",))
    with (
        running(service_runner, config, [authentication, FRONTEND]),
        public_channel(config, "frontend_api", "frontend") as channel,
    ):
        rpc = fe_grpc.TeaclaveFrontendStub(channel).ListFunctions
        request = fe.ListFunctionsRequest(user_id="x")
        metadata = (("id", "x"), ("token", "t"))
        assert refused(lambda: rpc(request, metadata=metadata, timeout=30)) == answer

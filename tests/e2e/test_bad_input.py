"""Bad input gets a precise status, is audited, and stores nothing."""

import uuid

import grpc
import pytest
from e2e_helpers import register_echo
from e2e_platform import Platform, wait_for

from teaclave.client import FrontendClient, InvalidArgument, PermissionDenied, default_policy
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_frontend_service_pb2_grpc as fe_grpc
from teaclave.rpc.channel import attested_channel

UNKNOWN = str(uuid.uuid4())


def raw(platform: Platform, client: FrontendClient, max_bytes: int = 4 << 20):
    """The generated frontend stub on an attested channel, and the client's credentials."""
    channel, _ = attested_channel(
        platform.config.endpoints.frontend_api,
        "frontend",
        policy=default_policy(platform.simulation_key),
        max_message_bytes=max_bytes,
    )
    return (
        channel,
        fe_grpc.TeaclaveFrontendStub(channel),
        (
            ("id", client.user_id),
            ("token", client.token),
        ),
    )


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_task(f"task-{UNKNOWN}"), "invalid task id"),
        (lambda c: c.get_task("task-not-a-uuid"), "invalid task id"),
        (lambda c: c.get_task(f"input-{UNKNOWN}"), "invalid task id"),
        (lambda c: c.get_input_file(f"input-{UNKNOWN}"), "invalid data id"),
        (lambda c: c.get_output_file(f"output-{UNKNOWN}"), "invalid data id"),
        (lambda c: c.get_function(f"function-{UNKNOWN}"), "invalid function id"),
        (lambda c: c.invoke_task(f"task-{UNKNOWN}"), "invalid task id"),
    ],
)
def test_unknown_ids(platform: Platform, call, message: str) -> None:
    with platform.new_user() as user, pytest.raises(InvalidArgument, match=message):
        call(user)


@pytest.mark.parametrize(
    ("schema", "key", "iv", "cmac", "message"),
    [
        ("aes-gcm-128", bytes(15), bytes(12), bytes(16), "key must be 16 bytes"),
        ("aes-gcm-256", bytes(16), bytes(12), bytes(16), "key must be 32 bytes"),
        ("aes-gcm-128", bytes(16), bytes(11), bytes(16), "iv must be 12 bytes"),
        ("aes-gcm-128", bytes(16), bytes(12), bytes(15), "cmac"),
        ("rot13", bytes(16), bytes(12), bytes(16), "invalid crypto schema"),
    ],
)
def test_bad_crypto_info_stores_nothing(
    platform: Platform, schema: str, key: bytes, iv: bytes, cmac: bytes, message: str
) -> None:
    with platform.new_user() as user, pytest.raises(InvalidArgument, match=message):
        user.register_input_file((platform.files / "x").as_uri(), schema, key, iv, cmac)


def test_malformed_arguments_and_urls(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
    with platform.new_user() as user:
        channel, stub, metadata = raw(platform, user)
        with channel:
            for arguments in ("{not json", "[1, 2]", '"text"'):
                request = fe.CreateTaskRequest(
                    function_id=function_id, function_arguments=arguments, executor="builtin"
                )
                code, _ = status_of(lambda r=request: stub.CreateTask(r, metadata=metadata))
                assert code == grpc.StatusCode.INVALID_ARGUMENT
            request = fe.CreateTaskRequest(
                function_id=function_id, function_arguments='{"message": "x"}', executor="cobol"
            )
            assert status_of(lambda: stub.CreateTask(request, metadata=metadata))[0] == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
        with pytest.raises(InvalidArgument):
            user.register_output_file("gopher://x/y", "aes-gcm-128", bytes(16), bytes(12))


def test_oversized_message_is_refused(platform: Platform) -> None:
    with platform.new_user(role="FunctionOwner") as owner:
        before = owner.list_functions(owner.user_id)
        channel, stub, metadata = raw(platform, owner, max_bytes=16 << 20)
        with channel:
            request = fe.RegisterFunctionRequest(
                name="huge", executor_type="python", payload=bytes(5 << 20)
            )
            code, _ = status_of(lambda: stub.RegisterFunction(request, metadata=metadata))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert owner.list_functions(owner.user_id) == before


def test_failures_are_audited(platform: Platform) -> None:
    with platform.new_user() as user, pytest.raises(PermissionDenied):
        user.register_function("f", "a data owner may not", "builtin")
    with platform.admin() as admin:

        def audited() -> bool:
            entries = admin.query_audit_logs(f"user:{user.user_id} result:false", 10)
            return any("register_function" in e.message for e in entries)

        wait_for(audited, timeout=10, what="audit entry of the refused call")

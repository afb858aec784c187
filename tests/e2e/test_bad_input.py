"""Bad input gets a precise status, is audited, and stores nothing."""

import contextlib
import uuid
from collections.abc import Iterator

import grpc
import pytest
from e2e_helpers import register_echo
from e2e_platform import Platform, wait_for

from teaclave.client import FrontendClient, InvalidArgument, PermissionDenied, default_policy
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_frontend_service_pb2_grpc as fe_grpc
from teaclave.rpc.channel import attested_channel
from teaclave.services.base import ServiceEnv
from teaclave.storage import keys
from teaclave.storage.remote import RemoteStore

UNKNOWN = str(uuid.uuid4())
NOT_JSON = (
    "invalid function arguments: not JSON "
    "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
)
BAD_SCHEME = "invalid url: scheme must be one of data, file, http, https, s3"


class Added:
    """The keys under a prefix that appeared in storage while a block ran."""

    def __init__(self) -> None:
        self.added: list[str] = []


@contextlib.contextmanager
def stored(platform: Platform, prefix: str) -> Iterator[Added]:
    """Watch the records under ``prefix`` (read as the management service reads them)."""
    peer = ServiceEnv.create(platform.config, "management").peer("storage")
    store = RemoteStore(peer)
    try:
        before = {record.key for record in store.scan(prefix)}
        found = Added()
        yield found
        found.added = sorted({record.key for record in store.scan(prefix)} - before)
    finally:
        peer.close()


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
        (
            "aes-gcm-128",
            bytes(15),
            bytes(12),
            bytes(16),
            "aes-gcm-128 key must be 16 bytes, got 15",
        ),
        (
            "aes-gcm-256",
            bytes(16),
            bytes(12),
            bytes(16),
            "aes-gcm-256 key must be 32 bytes, got 16",
        ),
        ("aes-gcm-128", bytes(16), bytes(11), bytes(16), "aes-gcm-128 iv must be 12 bytes, got 11"),
        ("aes-gcm-128", bytes(16), bytes(12), bytes(15), "invalid cmac: must be 16 bytes, got 15"),
        ("rot13", bytes(16), bytes(12), bytes(16), "invalid crypto schema 'rot13'"),
    ],
)
def test_bad_crypto_info_stores_nothing(
    platform: Platform, schema: str, key: bytes, iv: bytes, cmac: bytes, message: str
) -> None:
    url = (platform.files / "x").as_uri()
    with platform.new_user() as user, stored(platform, keys.INPUT) as inputs:
        with pytest.raises(InvalidArgument) as info:
            user.register_input_file(url, schema, key, iv, cmac)
        assert info.value.message == message
        valid = user.register_input_file(url, "aes-gcm-128", bytes(16), bytes(12), bytes(16))
    assert inputs.added == [keys.INPUT + valid.removeprefix("input-")]  # only the valid one


def test_malformed_arguments_and_urls(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
    cases = [
        ("{not json", "builtin", NOT_JSON),
        ("[1, 2]", "builtin", "invalid function arguments: must be a JSON object"),
        ('"text"', "builtin", "invalid function arguments: must be a JSON object"),
        ('{"message": "x"}', "cobol", "invalid executor 'cobol'"),
    ]
    with platform.new_user() as user, stored(platform, keys.TASK) as tasks:
        channel, stub, metadata = raw(platform, user)
        with channel:
            for arguments, executor, message in cases:
                request = fe.CreateTaskRequest(
                    function_id=function_id, function_arguments=arguments, executor=executor
                )
                assert status_of(lambda r=request: stub.CreateTask(r, metadata=metadata)) == (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    message,
                )
    assert tasks.added == []
    with platform.new_user() as user, stored(platform, keys.OUTPUT) as outputs:
        with pytest.raises(InvalidArgument) as info:
            user.register_output_file("gopher://x/y", "aes-gcm-128", bytes(16), bytes(12))
        assert info.value.message == BAD_SCHEME
    assert outputs.added == []


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

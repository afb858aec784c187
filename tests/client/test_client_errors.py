"""gRPC failures become typed TeaclaveExceptions (real calls to a tiny loopback server)."""

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from teaclave.attestation.evidence import AttestationError
from teaclave.client import (
    AlreadyExists,
    AttestationFailed,
    AuthenticationError,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceUnavailable,
    TaskCanceled,
    TaskFailed,
    TeaclaveException,
)
from teaclave.client.errors import from_platform_error, from_rpc_error
from teaclave.core.errors import Status, TeaclaveError

CODES = {code.name: code for code in grpc.StatusCode}


class Aborter(grpc.GenericRpcHandler):
    """Every method ``/x/<CODE>`` fails with that status code and message "m-<CODE>"."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        code = CODES[details.method.rsplit("/", 1)[1]]

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(code, f"m-{code.name}")

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((Aborter(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(0)


def failure(channel: grpc.Channel, code: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/x/{code}")(b"", timeout=5)
    return info.value


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        ("UNAUTHENTICATED", AuthenticationError, Status.UNAUTHENTICATED),
        ("PERMISSION_DENIED", PermissionDenied, Status.PERMISSION_DENIED),
        ("INVALID_ARGUMENT", InvalidArgument, Status.INVALID_ARGUMENT),
        ("NOT_FOUND", NotFound, Status.NOT_FOUND),
        ("ALREADY_EXISTS", AlreadyExists, Status.ALREADY_EXISTS),
        ("FAILED_PRECONDITION", FailedPrecondition, Status.FAILED_PRECONDITION),
        ("RESOURCE_EXHAUSTED", ResourceExhausted, Status.RESOURCE_EXHAUSTED),
        ("UNAVAILABLE", ServiceUnavailable, Status.UNAVAILABLE),
        ("INTERNAL", InternalError, Status.INTERNAL),
        ("UNKNOWN", TeaclaveException, Status.UNKNOWN),
        ("ABORTED", TeaclaveException, Status.ABORTED),
        ("UNIMPLEMENTED", TeaclaveException, Status.UNIMPLEMENTED),
    ],
)
def test_status_codes_map_to_classes(
    channel: grpc.Channel, code: str, cls: type[TeaclaveException], status: Status
) -> None:
    exc = from_rpc_error(failure(channel, code))
    assert type(exc) is cls
    assert exc.status is status
    assert exc.message == f"m-{code}"
    assert str(exc) == f"{status.name}: m-{code}"
    assert isinstance(exc, TeaclaveError)


def test_connection_failures() -> None:
    refused = from_platform_error(AttestationError("simulation is not allowed"))
    assert type(refused) is AttestationFailed
    assert isinstance(refused, ServiceUnavailable)  # callers retrying outages catch it too
    assert refused.status is Status.UNAVAILABLE
    assert refused.message == "attestation failed: simulation is not allowed"
    unreachable = from_platform_error(TeaclaveError(Status.UNAVAILABLE, "cannot reach x"))
    assert type(unreachable) is ServiceUnavailable
    assert (unreachable.status, unreachable.message) == (Status.UNAVAILABLE, "cannot reach x")
    bad = from_platform_error(TeaclaveError(Status.INVALID_ARGUMENT, "bad address"))
    assert type(bad) is InvalidArgument
    assert (bad.status, bad.message) == (Status.INVALID_ARGUMENT, "bad address")


@pytest.mark.parametrize(
    ("cls", "reason", "text"),
    [
        (
            TaskFailed,
            "Runtime Error: Executor Timeout",
            "task failed: Runtime Error: Executor Timeout",
        ),
        (TaskCanceled, "Task canceled", "task canceled: Task canceled"),
    ],
)
def test_task_outcomes_carry_the_reason(
    cls: type[TaskFailed | TaskCanceled], reason: str, text: str
) -> None:
    outcome = cls(reason)
    assert outcome.reason == reason
    assert (outcome.status, outcome.message) == (Status.ABORTED, text)
    assert str(outcome) == f"ABORTED: {text}"

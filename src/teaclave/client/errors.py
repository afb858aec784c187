"""Client-side exceptions: every failure of an API call is a :class:`TeaclaveException`.

gRPC errors are mapped by status code to a subclass, keeping the server's
message. Task outcomes that are not a result are :class:`TaskFailed` and
:class:`TaskCanceled`, carrying the platform's reason.
"""

from __future__ import annotations

import grpc

from teaclave.attestation.evidence import AttestationError
from teaclave.core.errors import Status, TeaclaveError


class TeaclaveException(TeaclaveError):
    """A failed API call: ``status`` (canonical code) and the server's ``message``."""

    default_status = Status.UNKNOWN

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(self.default_status if status is None else status, message)

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}"


class AuthenticationError(TeaclaveException):
    """Missing, wrong or expired credentials (UNAUTHENTICATED)."""

    default_status = Status.UNAUTHENTICATED


class PermissionDenied(TeaclaveException):
    """The caller may not do this (PERMISSION_DENIED)."""

    default_status = Status.PERMISSION_DENIED


class InvalidArgument(TeaclaveException):
    """A malformed request or an unknown id (INVALID_ARGUMENT)."""

    default_status = Status.INVALID_ARGUMENT


class NotFound(TeaclaveException):
    """The object does not exist (NOT_FOUND)."""

    default_status = Status.NOT_FOUND


class AlreadyExists(TeaclaveException):
    """The object exists already (ALREADY_EXISTS)."""

    default_status = Status.ALREADY_EXISTS


class FailedPrecondition(TeaclaveException):
    """The object is not in a state that allows this (FAILED_PRECONDITION)."""

    default_status = Status.FAILED_PRECONDITION


class ResourceExhausted(TeaclaveException):
    """A quota or size limit was hit (RESOURCE_EXHAUSTED)."""

    default_status = Status.RESOURCE_EXHAUSTED


class ServiceUnavailable(TeaclaveException):
    """The service cannot be reached (UNAVAILABLE)."""

    default_status = Status.UNAVAILABLE


class AttestationFailed(ServiceUnavailable):
    """The endpoint's attestation evidence was refused; nothing was sent to it."""


class InternalError(TeaclaveException):
    """The service failed internally (INTERNAL)."""

    default_status = Status.INTERNAL


class TaskFailed(TeaclaveException):
    """The task ended without a result; ``reason`` is the platform's explanation."""

    default_status = Status.ABORTED

    def __init__(self, reason: str) -> None:
        super().__init__(f"task failed: {reason}")
        self.reason = reason


class TaskCanceled(TeaclaveException):
    """The task was canceled; ``reason`` is the platform's explanation."""

    default_status = Status.ABORTED

    def __init__(self, reason: str) -> None:
        super().__init__(f"task canceled: {reason}")
        self.reason = reason


_BY_CODE: dict[grpc.StatusCode, type[TeaclaveException]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.INTERNAL: InternalError,
}


def from_rpc_error(error: grpc.RpcError) -> TeaclaveException:
    """The :class:`TeaclaveException` for a failed gRPC call."""
    code = error.code()
    message = error.details() or code.name.lower()
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    return TeaclaveException(message, Status(code.value[0]))


def from_platform_error(error: TeaclaveError) -> TeaclaveException:
    """The :class:`TeaclaveException` for a failure while connecting (reach or attest)."""
    if isinstance(error, AttestationError):
        return AttestationFailed(error.message)
    if isinstance(error, TeaclaveException):
        return error
    cls = next((c for c in _BY_CODE.values() if c.default_status == error.status), None)
    return (cls or TeaclaveException)(error.message, error.status)

"""Python SDK for Teaclave: attested clients of the authentication and frontend APIs.

Typed clients::

    from teaclave.client import AuthenticationClient, FrontendClient

    with AuthenticationClient("127.0.0.1:7776", simulation_key=key) as auth:
        token = auth.user_login("alice", password)
    with FrontendClient("127.0.0.1:7777", "alice", token, simulation_key=key) as fe:
        summary = fe.get_task_result(task_id, timeout=60)

Every connection verifies the endpoint's attestation evidence (the expected
measurements are those of this installation's code) before anything is sent;
simulated evidence is refused unless ``simulation_key=key``. Every failure
is a :class:`TeaclaveException`. ``AuthenticationService`` and
``FrontendService`` mirror Apache Teaclave's Python SDK.
"""

from teaclave.client._connection import Address, Connection, default_policy
from teaclave.client.authentication import AuthenticationClient
from teaclave.client.compat import AuthenticationService, FrontendService
from teaclave.client.errors import (
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
from teaclave.client.frontend import FrontendClient
from teaclave.client.types import (
    AuditEntry,
    CryptoInfo,
    DataFile,
    DataMap,
    Function,
    FunctionArgument,
    FunctionInput,
    FunctionList,
    FunctionOutput,
    FunctionUsage,
    OwnerList,
    Task,
    TaskFailure,
    TaskOutputs,
)
from teaclave.core.model import TaskStatus

__all__ = [
    "Address",
    "AlreadyExists",
    "AttestationFailed",
    "AuditEntry",
    "AuthenticationClient",
    "AuthenticationError",
    "AuthenticationService",
    "Connection",
    "CryptoInfo",
    "DataFile",
    "DataMap",
    "FailedPrecondition",
    "FrontendClient",
    "FrontendService",
    "Function",
    "FunctionArgument",
    "FunctionInput",
    "FunctionList",
    "FunctionOutput",
    "FunctionUsage",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "OwnerList",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceUnavailable",
    "Task",
    "TaskCanceled",
    "TaskFailed",
    "TaskFailure",
    "TaskOutputs",
    "TaskStatus",
    "TeaclaveException",
    "default_policy",
]

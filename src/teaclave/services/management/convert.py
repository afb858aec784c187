"""Proto messages <-> core records for the management API (ids on the wire are ExternalIDs)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from teaclave.core.errors import invalid_argument
from teaclave.core.ids import Kind, external_id, parse_external_id
from teaclave.core.model import (
    CMAC_SIZE,
    ExecutorType,
    FileCrypto,
    Function,
    FunctionArgument,
    FunctionFile,
    Task,
    TaskResult,
    parse_executor_type,
)
from teaclave.core.tasks import (
    OwnerLists,
    current_approvers,
    digest_text,
    status_name,
    task_digest,
)
from teaclave.executor import wasm
from teaclave.executor.python import payload
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_scheduler_service_pb2 as sched

URL_SCHEMES = frozenset({"file", "data", "http", "https", "s3"})
"""The schemes users may register; ``fusion:`` URLs belong to the platform."""
FUSION_SCHEME = "fusion"


# --- files -------------------------------------------------------------------


def parse_url(text: str) -> str:
    """A user's URL with a supported scheme; INVALID_ARGUMENT otherwise.

    The scheme is the one the transport will see (the same parser: any case,
    surrounding blanks and embedded tabs or newlines do not hide it).
    """
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise invalid_argument(f"invalid url: {exc}") from None
    if parts.scheme == FUSION_SCHEME:
        raise invalid_argument(
            "invalid url: fusion URLs belong to the platform; use RegisterFusionOutput "
            "and RegisterInputFromOutput"
        )
    if parts.scheme not in URL_SCHEMES:
        raise invalid_argument(
            f"invalid url: scheme must be one of {', '.join(sorted(URL_SCHEMES))}"
        )
    if not (parts.netloc or parts.path):
        raise invalid_argument("invalid url: nothing after the scheme")
    return text


def parse_cmac(cmac: bytes) -> bytes:
    """A 16-byte cmac; INVALID_ARGUMENT otherwise."""
    if len(cmac) != CMAC_SIZE:
        raise invalid_argument(f"invalid cmac: must be {CMAC_SIZE} bytes, got {len(cmac)}")
    return cmac


def parse_crypto(info: common.FileCryptoInfo) -> FileCrypto:
    """A validated :class:`FileCrypto`."""
    return FileCrypto.parse(info.schema, info.key, info.iv)


def crypto_info(crypto: FileCrypto) -> common.FileCryptoInfo:
    """The wire form of ``crypto``."""
    return common.FileCryptoInfo(schema=crypto.schema.value, key=crypto.key, iv=crypto.iv)


# --- functions ---------------------------------------------------------------


def _unique(what: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise invalid_argument(f"invalid function: duplicate {what} {name!r}")
        seen.add(name)


def function_from_request(
    request: fe.RegisterFunctionRequest | fe.UpdateFunctionRequest, uuid: str, owner: str
) -> Function:
    """The function a Register/UpdateFunction request describes."""
    executor_type = parse_executor_type(request.executor_type)
    if executor_type is ExecutorType.PYTHON:
        payload.check(request.payload)
    elif executor_type in (ExecutorType.WAMR, ExecutorType.WASI):
        wasm.check(request.payload, executor_type.value)
    _unique("argument", (a.key for a in request.arguments))
    _unique("input", (f.name for f in request.inputs))
    _unique("output", (f.name for f in request.outputs))
    return Function(
        uuid=uuid,
        name=request.name,
        description=request.description,
        executor_type=executor_type,
        public=request.public,
        payload=request.payload,
        arguments=tuple(
            FunctionArgument(a.key, a.default_value, a.allow_overwrite) for a in request.arguments
        ),
        inputs=tuple(FunctionFile(f.name, f.description, f.optional) for f in request.inputs),
        outputs=tuple(FunctionFile(f.name, f.description, f.optional) for f in request.outputs),
        owner=owner,
        user_allowlist=tuple(dict.fromkeys(request.user_allowlist)),
        usage_quota=None if request.usage_quota < 0 else request.usage_quota,
    )


def function_response(function: Function) -> fe.GetFunctionResponse:
    """The wire form of ``function`` (as the caller may see it)."""
    return fe.GetFunctionResponse(
        name=function.name,
        description=function.description,
        executor_type=function.executor_type.value,
        owner=function.owner,
        payload=function.payload,
        public=function.public,
        arguments=[
            fe.FunctionArgument(
                key=a.key, default_value=a.default_value, allow_overwrite=a.allow_overwrite
            )
            for a in function.arguments
        ],
        inputs=[
            fe.FunctionInput(name=f.name, description=f.description, optional=f.optional)
            for f in function.inputs
        ],
        outputs=[
            fe.FunctionOutput(name=f.name, description=f.description, optional=f.optional)
            for f in function.outputs
        ],
        user_allowlist=function.user_allowlist,
    )


# --- tasks -------------------------------------------------------------------


def owner_lists(messages: Iterable[fe.OwnerList]) -> OwnerLists:
    """``(data_name, uids)`` pairs of a request."""
    return [(m.data_name, list(m.uids)) for m in messages]


def data_maps(messages: Iterable[fe.DataMap], kind: Kind) -> list[tuple[str, str]]:
    """``(data_name, file uuid)`` pairs of an AssignData request."""
    return [(m.data_name, parse_external_id(kind, m.data_id)) for m in messages]


def result_message(result: TaskResult) -> common.TaskResult:
    """The wire form of a task result (neither field set while not ready)."""
    if not result.ready:
        return common.TaskResult()
    if result.ok:
        return common.TaskResult(
            Ok=common.TaskOutputs(
                return_value=result.return_value, tags_map=result.tags, log=result.log
            )
        )
    return common.TaskResult(Err=common.TaskFailure(reason=result.reason))


def _owner_list_messages(ownership: dict[str, frozenset[str]]) -> list[fe.OwnerList]:
    return [
        fe.OwnerList(data_name=name, uids=sorted(owners))
        for name, owners in sorted(ownership.items())
    ]


def task_response(task: Task) -> fe.GetTaskResponse:
    """The wire form of ``task``."""
    return fe.GetTaskResponse(
        task_id=external_id(Kind.TASK, task.uuid),
        creator=task.creator,
        function_id=external_id(Kind.FUNCTION, task.function_id),
        function_owner=task.function_owner,
        function_arguments=task.function_arguments,
        inputs_ownership=_owner_list_messages(task.inputs_ownership),
        outputs_ownership=_owner_list_messages(task.outputs_ownership),
        participants=sorted(task.participants),
        approved_users=sorted(current_approvers(task)),
        assigned_inputs=[
            fe.DataMap(data_name=name, data_id=external_id(Kind.INPUT, f.uuid))
            for name, f in sorted(task.assigned_inputs.items())
        ],
        assigned_outputs=[
            fe.DataMap(data_name=name, data_id=external_id(Kind.OUTPUT, f.uuid))
            for name, f in sorted(task.assigned_outputs.items())
        ],
        status=status_name(task.status),
        result=result_message(task.result),
        approval_digest=task_digest(task),
        approval_digest_contents=digest_text(task),
    )


def staged_task(task: Task, function: Function, user_id: str) -> sched.StagedTask:
    """What an executor needs to run ``task`` (reference §9.1)."""
    return sched.StagedTask(
        task_id=task.uuid,
        function_id=external_id(Kind.FUNCTION, function.uuid),
        function_name=function.name,
        executor_type=function.executor_type.value,
        executor=task.executor.value,
        function_arguments=task.function_arguments,
        function_payload=function.payload,
        user_id=user_id,
        trace_context=task.trace_context,
        inputs=[
            sched.StagedInput(name=name, url=f.url, cmac=f.cmac, crypto_info=crypto_info(f.crypto))
            for name, f in sorted(task.assigned_inputs.items())
        ],
        outputs=[
            sched.StagedOutput(name=name, url=f.url, crypto_info=crypto_info(f.crypto))
            for name, f in sorted(task.assigned_outputs.items())
        ],
    )

"""Client of the frontend API (functions, files, tasks, audit logs)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from teaclave.attestation.evidence import AttestationPolicy
from teaclave.client._connection import DEFAULT_RPC_TIMEOUT, Address, Connection
from teaclave.client.errors import TaskCanceled, TaskFailed, TeaclaveException
from teaclave.client.types import (
    AuditEntry,
    ByteString,
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
    to_protos,
)
from teaclave.core.apis import WAITS_SECS
from teaclave.core.errors import Status
from teaclave.core.model import TaskStatus
from teaclave.core.waiting import Backoff
from teaclave.proto import teaclave_frontend_service_pb2 as pb
from teaclave.proto import teaclave_frontend_service_pb2_grpc as pb_grpc

POLL_FIRST_DELAY = 0.02
POLL_MAX_DELAY = 0.5
MAX_WAIT_SECS = WAITS_SECS["wait_task"]


class PollClock(Protocol):
    """What polling for a task's end reads and waits on (tests pass a fake)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, secs: float) -> None:
        """Wait ``secs`` seconds."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def monotonic(self) -> float:
        """See :func:`time.monotonic`."""
        return time.monotonic()

    def sleep(self, secs: float) -> None:
        """See :func:`time.sleep`."""
        time.sleep(secs)


def task_outcome(task: Task) -> TaskOutputs | None:
    """The outputs of an ended task, None while it runs.

    Raises :class:`TaskFailed` (function error or platform failure) or
    :class:`TaskCanceled` when the task ended without a result.
    """
    reason = task.result.reason if isinstance(task.result, TaskFailure) else ""
    if task.status is TaskStatus.CANCELED:
        raise TaskCanceled(reason or "canceled")
    if task.status is TaskStatus.FAILED:
        raise TaskFailed(reason or "failed")
    if task.status is not TaskStatus.FINISHED:
        return None
    if isinstance(task.result, TaskOutputs):
        return task.result
    raise TaskFailed(reason or "finished without a result")


class FrontendApi(Connection):
    """The calls shared by :class:`FrontendClient` and Teaclave's ``FrontendService``."""

    stub_class = pb_grpc.TeaclaveFrontendStub

    def __init__(
        self,
        address: Address,
        user_id: str = "",
        token: str = "",
        *,
        simulation_key: str | None = None,
        policy: AttestationPolicy | None = None,
        timeout: float = DEFAULT_RPC_TIMEOUT,
        clock: PollClock | None = None,
    ) -> None:
        """``clock``: what :meth:`get_task_outputs` waits and polls by (default: the real
        clock)."""
        super().__init__(
            address, "frontend", simulation_key=simulation_key, policy=policy, timeout=timeout
        )
        self.user_id, self.token = user_id, token
        self._clock: PollClock = clock or SystemClock()
        self._waits = True  # until the platform says it has no WaitTask

    # Files

    def register_input_file(
        self, url: str, schema: str, key: ByteString, iv: ByteString, cmac: ByteString
    ) -> str:
        """Register an encrypted input file at ``url`` with its ``cmac``; returns its id."""
        request = pb.RegisterInputFileRequest(
            url=url, cmac=bytes(cmac), crypto_info=CryptoInfo(schema, key, iv).to_proto()
        )
        return str(self._invoke("RegisterInputFile", request).data_id)

    def register_output_file(self, url: str, schema: str, key: ByteString, iv: ByteString) -> str:
        """Register where (and with which key) a task writes an output; returns its id."""
        request = pb.RegisterOutputFileRequest(
            url=url, crypto_info=CryptoInfo(schema, key, iv).to_proto()
        )
        return str(self._invoke("RegisterOutputFile", request).data_id)

    def update_input_file(self, data_id: str, url: str) -> str:
        """Register a copy of an input file at a new ``url``; returns the new id."""
        request = pb.UpdateInputFileRequest(data_id=data_id, url=url)
        return str(self._invoke("UpdateInputFile", request).data_id)

    def update_output_file(self, data_id: str, url: str) -> str:
        """Register a copy of an output file at a new ``url``; returns the new id."""
        request = pb.UpdateOutputFileRequest(data_id=data_id, url=url)
        return str(self._invoke("UpdateOutputFile", request).data_id)

    def register_fusion_output(self, owners: Sequence[str]) -> str:
        """Register a platform-encrypted output owned jointly by ``owners``; returns its id."""
        request = pb.RegisterFusionOutputRequest(owner_list=list(owners))
        return str(self._invoke("RegisterFusionOutput", request).data_id)

    def register_input_from_output(self, data_id: str) -> str:
        """Register a written output file as an input; returns the input's id."""
        request = pb.RegisterInputFromOutputRequest(data_id=data_id)
        return str(self._invoke("RegisterInputFromOutput", request).data_id)

    def get_input_file(self, data_id: str) -> DataFile:
        """An input file's owners and cmac."""
        reply = self._invoke("GetInputFile", pb.GetInputFileRequest(data_id=data_id))
        return DataFile(tuple(reply.owner), reply.cmac)

    def get_output_file(self, data_id: str) -> DataFile:
        """An output file's owners and cmac (empty until a task wrote it)."""
        reply = self._invoke("GetOutputFile", pb.GetOutputFileRequest(data_id=data_id))
        return DataFile(tuple(reply.owner), reply.cmac)

    # Functions

    def register_function(  # noqa: PLR0917 (Teaclave's signature)
        self,
        name: str,
        description: str,
        executor_type: str,
        public: bool = True,
        payload: ByteString = b"",
        arguments: Iterable[FunctionArgument] = (),
        inputs: Iterable[FunctionInput] = (),
        outputs: Iterable[FunctionOutput] = (),
        user_allowlist: Iterable[str] = (),
        usage_quota: int = -1,
    ) -> str:
        """Register a function (``usage_quota`` < 0: unlimited); returns its id."""
        request = pb.RegisterFunctionRequest(
            **_function_fields(
                name=name,
                description=description,
                executor_type=executor_type,
                public=public,
                payload=payload,
                arguments=arguments,
                inputs=inputs,
                outputs=outputs,
                user_allowlist=user_allowlist,
                usage_quota=usage_quota,
            )
        )
        return str(self._invoke("RegisterFunction", request).function_id)

    def update_function(  # noqa: PLR0917 (Teaclave's signature)
        self,
        function_id: str,
        name: str,
        description: str,
        executor_type: str,
        public: bool = True,
        payload: ByteString = b"",
        arguments: Iterable[FunctionArgument] = (),
        inputs: Iterable[FunctionInput] = (),
        outputs: Iterable[FunctionOutput] = (),
        user_allowlist: Iterable[str] = (),
        usage_quota: int = -1,
    ) -> str:
        """Replace a function's definition; returns its id."""
        request = pb.UpdateFunctionRequest(
            function_id=function_id,
            **_function_fields(
                name=name,
                description=description,
                executor_type=executor_type,
                public=public,
                payload=payload,
                arguments=arguments,
                inputs=inputs,
                outputs=outputs,
                user_allowlist=user_allowlist,
                usage_quota=usage_quota,
            ),
        )
        return str(self._invoke("UpdateFunction", request).function_id)

    def get_function(self, function_id: str) -> Function:
        """A function's definition."""
        reply = self._invoke("GetFunction", pb.GetFunctionRequest(function_id=function_id))
        return Function.from_proto(function_id, reply)

    def get_function_usage_stats(self, function_id: str) -> FunctionUsage:
        """A function's quota and usage count."""
        request = pb.GetFunctionUsageStatsRequest(function_id=function_id)
        reply = self._invoke("GetFunctionUsageStats", request)
        return FunctionUsage(reply.function_quota, reply.current_usage)

    def delete_function(self, function_id: str) -> None:
        """Delete a function."""
        self._invoke("DeleteFunction", pb.DeleteFunctionRequest(function_id=function_id))

    def disable_function(self, function_id: str) -> None:
        """Disable a function (it stays registered but is no longer listed)."""
        request = pb.DisableFunctionRequest(function_id=function_id)
        self._invoke("DisableFunction", request)

    def _list_functions(self, user_id: str) -> pb.ListFunctionsResponse:
        reply: pb.ListFunctionsResponse = self._invoke(
            "ListFunctions", pb.ListFunctionsRequest(user_id=user_id)
        )
        return reply

    # Tasks

    def create_task(
        self,
        function_id: str,
        function_arguments: Mapping[str, Any],
        executor: str,
        inputs_ownership: Iterable[OwnerList] = (),
        outputs_ownership: Iterable[OwnerList] = (),
    ) -> str:
        """Create a task of a function with arguments and file owners; returns its id."""
        request = pb.CreateTaskRequest(
            function_id=function_id,
            function_arguments=json.dumps(dict(function_arguments)),
            executor=executor,
            inputs_ownership=to_protos(inputs_ownership),
            outputs_ownership=to_protos(outputs_ownership),
        )
        return str(self._invoke("CreateTask", request).task_id)

    def assign_data_to_task(
        self, task_id: str, inputs: Iterable[DataMap], outputs: Iterable[DataMap]
    ) -> None:
        """Bind the caller's registered files to the task's input and output names."""
        request = pb.AssignDataRequest(
            task_id=task_id, inputs=to_protos(inputs), outputs=to_protos(outputs)
        )
        self._invoke("AssignData", request)

    def approve_task(self, task_id: str, digest: str = "") -> str:
        """Approve the task as one of its participants; returns the digest approved.

        ``digest``: the ``approval_digest`` read with GetTask; refused if the task changed.
        """
        request = pb.ApproveTaskRequest(task_id=task_id, digest=digest)
        return str(self._invoke("ApproveTask", request).digest)

    def revoke_task_approval(self, task_id: str) -> None:
        """Withdraw the caller's approval of the task (until it is staged)."""
        self._invoke("RevokeTaskApproval", pb.RevokeTaskApprovalRequest(task_id=task_id))

    def invoke_task(self, task_id: str) -> None:
        """Queue the task for execution (creator only, once everyone approved)."""
        self._invoke("InvokeTask", pb.InvokeTaskRequest(task_id=task_id))

    def cancel_task(self, task_id: str) -> None:
        """Cancel the task (creator or platform admin)."""
        self._invoke("CancelTask", pb.CancelTaskRequest(task_id=task_id))

    def _get_task(self, task_id: str) -> pb.GetTaskResponse:
        reply: pb.GetTaskResponse = self._invoke("GetTask", pb.GetTaskRequest(task_id=task_id))
        return reply

    def _wait(self, task_id: str, wait: float) -> pb.GetTaskResponse:
        """WaitTask: the task once it has ended, or after ``wait`` seconds."""
        request = pb.WaitTaskRequest(task_id=task_id, timeout_ms=int(max(wait, 0.0) * 1000))
        reply: pb.GetTaskResponse = self._invoke("WaitTask", request, timeout=wait + self.timeout)
        return reply

    def _wait_task(self, task_id: str, wait: float) -> pb.GetTaskResponse | None:
        """:meth:`_wait`; None if the platform cannot hold the call: it has no WaitTask
        (then it is never asked again) or too many calls wait already."""
        if not self._waits:
            return None
        try:
            reply = self._wait(task_id, wait)
        except TeaclaveException as exc:
            if exc.status is Status.UNIMPLEMENTED:
                self._waits = False
                return None
            if exc.status is Status.RESOURCE_EXHAUSTED:
                return None
            raise
        return reply

    def get_task_outputs(self, task_id: str, timeout: float | None = None) -> TaskOutputs:
        """Wait for the task to end; its summary, output cmacs and log.

        Waits with WaitTask (our extension; at most a minute per call). On a platform
        without it, and while the platform is too busy to hold the call, polls GetTask
        with backoff (20 ms doubling up to 0.5 s). Raises :class:`TaskFailed` or
        :class:`TaskCanceled` when the task ended without a result,
        :class:`TimeoutError` after ``timeout`` seconds.
        """
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        polls = Backoff(POLL_FIRST_DELAY, POLL_MAX_DELAY)
        while True:
            remaining = MAX_WAIT_SECS if deadline is None else deadline - clock.monotonic()
            reply = self._wait_task(task_id, min(remaining, MAX_WAIT_SECS))
            waited = reply is not None
            outputs = task_outcome(Task.from_proto(reply or self._get_task(task_id)))
            if outputs is not None:
                return outputs
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"task {task_id} has no result after {timeout:g} s")
            if not waited:
                clock.sleep(min(polls.pause(), remaining))

    def get_task_result(self, task_id: str, timeout: float | None = None) -> bytes:
        """Wait for the task to end; its summary (return value). See :meth:`get_task_outputs`."""
        return self.get_task_outputs(task_id, timeout).return_value

    def _query_audit_logs(self, query: str, limit: int) -> pb.QueryAuditLogsResponse:
        reply: pb.QueryAuditLogsResponse = self._invoke(
            "QueryAuditLogs", pb.QueryAuditLogsRequest(query=query, limit=limit)
        )
        return reply


def _function_fields(
    *,
    name: str,
    description: str,
    executor_type: str,
    public: bool,
    payload: ByteString,
    arguments: Iterable[FunctionArgument],
    inputs: Iterable[FunctionInput],
    outputs: Iterable[FunctionOutput],
    user_allowlist: Iterable[str],
    usage_quota: int,
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "executor_type": executor_type,
        "public": public,
        "payload": bytes(payload),
        "arguments": to_protos(arguments),
        "inputs": to_protos(inputs),
        "outputs": to_protos(outputs),
        "user_allowlist": list(user_allowlist),
        "usage_quota": usage_quota,
    }


class FrontendClient(FrontendApi):
    """The ``TeaclaveFrontend`` API, as ``user_id`` with ``token``, with typed replies."""

    def list_functions(self, user_id: str) -> FunctionList:
        """Functions ``user_id`` registered and private functions they may use."""
        reply = self._list_functions(user_id)
        return FunctionList(tuple(reply.registered_functions), tuple(reply.allowed_functions))

    def get_task(self, task_id: str) -> Task:
        """The task's state (participants only)."""
        return Task.from_proto(self._get_task(task_id))

    def wait_task(self, task_id: str, timeout: float) -> Task:
        """The task once it has ended, or after ``timeout`` seconds (at most a minute) as
        it stands then (our extension; participants only)."""
        return Task.from_proto(self._wait(task_id, timeout))

    def query_audit_logs(self, query: str, limit: int) -> list[AuditEntry]:
        """At most ``limit`` audit entries matching ``query``, newest first (admins only)."""
        return [AuditEntry.from_proto(e) for e in self._query_audit_logs(query, limit).logs]

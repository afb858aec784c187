"""The management servicer: every RPC is :func:`guarded` by its access rule.

The caller is named by the frontend in metadata ``id`` and ``role``. Each
method's facts loader reads what its rule looks at; its body parses the
request, calls the logic and builds the response, in the same transaction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from teaclave.core import limits
from teaclave.core.access import Facts
from teaclave.core.apis import WAITS_SECS
from teaclave.core.ids import Kind, external_id, new_uuid, parse_external_id
from teaclave.core.model import InputFile, OutputFile, Task
from teaclave.core.waiting import wait_secs
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2 as mgmt
from teaclave.proto import teaclave_management_service_pb2_grpc as mgmt_grpc
from teaclave.services.management import audit, files, functions, tasks
from teaclave.services.management.common import Remembered, Txn
from teaclave.services.management.convert import (
    data_maps,
    function_from_request,
    function_response,
    owner_lists,
    parse_cmac,
    parse_crypto,
    parse_url,
    task_response,
)
from teaclave.services.management.guard import Call, guarded
from teaclave.services.management.observe import creating_task, task_operation
from teaclave.storage import keys
from teaclave.storage.api import Store
from teaclave.storage.watch import Watcher

REPLY_MARGIN_SECS = 1.0
"""WaitTask answers this long before the caller's deadline, so that the answer arrives."""


def _input(request: Any) -> str:
    return parse_external_id(Kind.INPUT, request.data_id)


def _output(request: Any) -> str:
    return parse_external_id(Kind.OUTPUT, request.data_id)


def _function(request: Any) -> str:
    return parse_external_id(Kind.FUNCTION, request.function_id)


def _task(request: Any) -> str:
    return parse_external_id(Kind.TASK, request.task_id)


def _input_facts(txn: Txn, request: Any) -> Facts:
    return files.file_facts(txn, InputFile, _input(request))


def _output_facts(txn: Txn, request: Any) -> Facts:
    return files.file_facts(txn, OutputFile, _output(request))


def _function_facts(txn: Txn, request: Any) -> Facts:
    return functions.function_facts(txn, _function(request))


def _task_facts(txn: Txn, request: Any) -> Facts:
    return tasks.task_facts(txn, _task(request))


def _assignment_facts(txn: Txn, request: fe.AssignDataRequest) -> Facts:
    return tasks.assignment_facts(
        txn,
        _task(request),
        data_maps(request.inputs, Kind.INPUT),
        data_maps(request.outputs, Kind.OUTPUT),
    )


def _ended(task: Task) -> bool:
    return task.status.ended


def _fusion_facts(_txn: Txn, request: fe.RegisterFusionOutputRequest) -> Facts:
    return Facts(new_owners=frozenset(request.owner_list))


def _listing_facts(_txn: Txn, request: fe.ListFunctionsRequest) -> Facts:
    return Facts(listed_user=request.user_id)


class ManagementServicer(mgmt_grpc.TeaclaveManagementServicer):
    """TeaclaveManagement over one :class:`Store`; limits may be set up to ``max_limits``;
    ``task_changes`` watches the store's :data:`~teaclave.storage.keys.TASK` records."""

    def __init__(
        self,
        store: Store,
        max_limits: limits.Limits,
        task_changes: Watcher,
        remembered: Remembered | None = None,
    ) -> None:
        """``remembered``: kept current by ``task_changes`` (its ``on_changes``)."""
        self._store = store
        self._max_limits = max_limits
        self._task_changes = task_changes
        self._remembered = remembered or Remembered()

    @property
    def store(self) -> Store:
        """The store every call runs a transaction on."""
        return self._store

    @property
    def remembered(self) -> Remembered:
        """The records of tasks, functions and usage this service saw last."""
        return self._remembered

    # --- files ---------------------------------------------------------------

    @guarded("register_input_file")
    def RegisterInputFile(  # noqa: N802
        self, txn: Txn, call: Call[fe.RegisterInputFileRequest]
    ) -> fe.RegisterInputFileResponse:
        request = call.request
        record = InputFile(
            new_uuid(),
            parse_url(request.url),
            parse_cmac(request.cmac),
            parse_crypto(request.crypto_info),
            frozenset({call.caller.user_id}),
        )
        return fe.RegisterInputFileResponse(data_id=files.register_file(txn, record))

    @guarded("register_output_file")
    def RegisterOutputFile(  # noqa: N802
        self, txn: Txn, call: Call[fe.RegisterOutputFileRequest]
    ) -> fe.RegisterOutputFileResponse:
        request = call.request
        record = OutputFile(
            new_uuid(),
            parse_url(request.url),
            parse_crypto(request.crypto_info),
            frozenset({call.caller.user_id}),
        )
        return fe.RegisterOutputFileResponse(data_id=files.register_file(txn, record))

    @guarded("update_input_file", _input_facts)
    def UpdateInputFile(  # noqa: N802
        self, txn: Txn, call: Call[fe.UpdateInputFileRequest]
    ) -> fe.UpdateInputFileResponse:
        url = parse_url(call.request.url)
        data_id = files.update_file(txn, InputFile, _input(call.request), url)
        return fe.UpdateInputFileResponse(data_id=data_id)

    @guarded("update_output_file", _output_facts)
    def UpdateOutputFile(  # noqa: N802
        self, txn: Txn, call: Call[fe.UpdateOutputFileRequest]
    ) -> fe.UpdateOutputFileResponse:
        url = parse_url(call.request.url)
        data_id = files.update_file(txn, OutputFile, _output(call.request), url)
        return fe.UpdateOutputFileResponse(data_id=data_id)

    @guarded("register_fusion_output", _fusion_facts)
    def RegisterFusionOutput(  # noqa: N802
        self, txn: Txn, call: Call[fe.RegisterFusionOutputRequest]
    ) -> fe.RegisterFusionOutputResponse:
        owners = frozenset(call.request.owner_list)
        return fe.RegisterFusionOutputResponse(data_id=files.register_fusion_output(txn, owners))

    @guarded("register_input_from_output", _output_facts)
    def RegisterInputFromOutput(  # noqa: N802
        self, txn: Txn, call: Call[fe.RegisterInputFromOutputRequest]
    ) -> fe.RegisterInputFromOutputResponse:
        data_id = files.register_input_from_output(txn, _output(call.request))
        return fe.RegisterInputFromOutputResponse(data_id=data_id)

    @guarded("get_output_file", _output_facts)
    def GetOutputFile(  # noqa: N802
        self, txn: Txn, call: Call[fe.GetOutputFileRequest]
    ) -> fe.GetOutputFileResponse:
        record = files.load_file(txn, OutputFile, _output(call.request))
        return fe.GetOutputFileResponse(owner=sorted(record.owners), cmac=record.cmac or b"")

    @guarded("get_input_file", _input_facts)
    def GetInputFile(  # noqa: N802
        self, txn: Txn, call: Call[fe.GetInputFileRequest]
    ) -> fe.GetInputFileResponse:
        record = files.load_file(txn, InputFile, _input(call.request))
        return fe.GetInputFileResponse(owner=sorted(record.owners), cmac=record.cmac)

    # --- functions -----------------------------------------------------------

    @guarded("register_function")
    def RegisterFunction(  # noqa: N802
        self, txn: Txn, call: Call[fe.RegisterFunctionRequest]
    ) -> fe.RegisterFunctionResponse:
        function = function_from_request(call.request, new_uuid(), call.caller.user_id)
        limits.check_function(function, self._max_limits)
        functions.register_function(txn, function)
        return fe.RegisterFunctionResponse(function_id=external_id(Kind.FUNCTION, function.uuid))

    @guarded("get_function", _function_facts)
    def GetFunction(  # noqa: N802
        self, txn: Txn, call: Call[fe.GetFunctionRequest]
    ) -> fe.GetFunctionResponse:
        function = functions.load_function(txn, _function(call.request))
        if call.decision.redacted:
            function = replace(function, payload=b"", user_allowlist=())
        return function_response(function)

    @guarded("get_function_usage_stats", _function_facts)
    def GetFunctionUsageStats(  # noqa: N802
        self, txn: Txn, call: Call[fe.GetFunctionUsageStatsRequest]
    ) -> fe.GetFunctionUsageStatsResponse:
        quota, usage = functions.usage_stats(txn, _function(call.request))
        return fe.GetFunctionUsageStatsResponse(function_quota=quota, current_usage=usage)

    @guarded("update_function", _function_facts)
    def UpdateFunction(  # noqa: N802
        self, txn: Txn, call: Call[fe.UpdateFunctionRequest]
    ) -> fe.UpdateFunctionResponse:
        uuid = _function(call.request)
        function = function_from_request(call.request, uuid, call.caller.user_id)
        limits.check_function(function, self._max_limits)
        functions.update_function(txn, function)
        return fe.UpdateFunctionResponse(function_id=external_id(Kind.FUNCTION, uuid))

    @guarded("list_functions", _listing_facts)
    def ListFunctions(  # noqa: N802
        self, txn: Txn, call: Call[fe.ListFunctionsRequest]
    ) -> fe.ListFunctionsResponse:
        registered, allowed = functions.list_functions(
            txn, call.request.user_id, all_allowed=call.caller.role.is_admin
        )
        return fe.ListFunctionsResponse(
            registered_functions=[external_id(Kind.FUNCTION, u) for u in registered],
            allowed_functions=[external_id(Kind.FUNCTION, u) for u in allowed],
        )

    @guarded("delete_function", _function_facts)
    def DeleteFunction(  # noqa: N802
        self, txn: Txn, call: Call[fe.DeleteFunctionRequest]
    ) -> fe.DeleteFunctionResponse:
        functions.delete_function(txn, _function(call.request))
        return fe.DeleteFunctionResponse()

    @guarded("disable_function", _function_facts)
    def DisableFunction(  # noqa: N802
        self, txn: Txn, call: Call[fe.DisableFunctionRequest]
    ) -> fe.DisableFunctionResponse:
        functions.disable_function(txn, _function(call.request))
        return fe.DisableFunctionResponse()

    # --- tasks ---------------------------------------------------------------

    @guarded("create_task", _function_facts, optimistic=True)
    def CreateTask(  # noqa: N802
        self, txn: Txn, call: Call[fe.CreateTaskRequest]
    ) -> fe.CreateTaskResponse:
        request = call.request
        with creating_task() as trace_context:
            task_id = tasks.create_task(
                txn,
                call.caller.user_id,
                _function(request),
                executor=request.executor,
                arguments=request.function_arguments,
                inputs_ownership=owner_lists(request.inputs_ownership),
                outputs_ownership=owner_lists(request.outputs_ownership),
                max_limits=self._max_limits,
                trace_context=trace_context,
            )
        return fe.CreateTaskResponse(task_id=task_id)

    @guarded("get_task", _task_facts)
    @task_operation("task.result", ended_only=True)
    def GetTask(self, txn: Txn, call: Call[fe.GetTaskRequest]) -> fe.GetTaskResponse:  # noqa: N802
        return task_response(tasks.load_task(txn, _task(call.request)))

    @guarded("wait_task", _task_facts, optimistic=True)
    def WaitTask(  # noqa: N802
        self, txn: Txn, call: Call[fe.WaitTaskRequest]
    ) -> fe.GetTaskResponse:
        """GetTask once the task has ended, or when the wait runs out (the task as it
        stands then). The decision holds while it waits: it looks at the task's creator
        and participants, which never change."""
        task_uuid = _task(call.request)
        task = tasks.load_task(txn, task_uuid)
        most = WAITS_SECS["wait_task"]
        timeout = wait_secs(call.request.timeout_ms, most, call.remaining, REPLY_MARGIN_SECS)
        if not task.status.ended and timeout > 0:
            key = keys.TASK + task_uuid
            task = self._task_changes.follow(
                key,
                lambda: tasks.load_task(Txn(self._store), task_uuid),
                _ended,
                timeout,
                first=(task, txn.version(key)),
                from_record=lambda record: tasks.decode_task(record.value),
            )
        return task_response(task)

    @guarded("assign_data", _assignment_facts, optimistic=True)
    @task_operation("task.assign_data")
    def AssignData(  # noqa: N802
        self, txn: Txn, call: Call[fe.AssignDataRequest]
    ) -> fe.AssignDataResponse:
        request = call.request
        tasks.assign_data(
            txn,
            _task(request),
            data_maps(request.inputs, Kind.INPUT),
            data_maps(request.outputs, Kind.OUTPUT),
        )
        return fe.AssignDataResponse()

    @guarded("approve_task", _task_facts, optimistic=True)
    @task_operation("task.approve")
    def ApproveTask(  # noqa: N802
        self, txn: Txn, call: Call[fe.ApproveTaskRequest]
    ) -> fe.ApproveTaskResponse:
        request = call.request
        digest = tasks.approve_task(txn, call.caller.user_id, _task(request), request.digest)
        return fe.ApproveTaskResponse(digest=digest)

    @guarded("revoke_task_approval", _task_facts, optimistic=True)
    @task_operation("task.revoke_approval")
    def RevokeTaskApproval(  # noqa: N802
        self, txn: Txn, call: Call[fe.RevokeTaskApprovalRequest]
    ) -> fe.RevokeTaskApprovalResponse:
        tasks.revoke_approval(txn, call.caller.user_id, _task(call.request))
        return fe.RevokeTaskApprovalResponse()

    @guarded("invoke_task", _task_facts, optimistic=True)
    @task_operation("task.invoke")
    def InvokeTask(  # noqa: N802
        self, txn: Txn, call: Call[fe.InvokeTaskRequest]
    ) -> fe.InvokeTaskResponse:
        tasks.invoke_task(txn, call.caller.user_id, _task(call.request))
        return fe.InvokeTaskResponse()

    @guarded("cancel_task", _task_facts, optimistic=True)
    @task_operation("task.cancel")
    def CancelTask(  # noqa: N802
        self, txn: Txn, call: Call[fe.CancelTaskRequest]
    ) -> fe.CancelTaskResponse:
        tasks.cancel_task(txn, _task(call.request))
        return fe.CancelTaskResponse()

    # --- audit ---------------------------------------------------------------

    @guarded("query_audit_logs")
    def QueryAuditLogs(  # noqa: N802
        self, _txn: Txn, call: Call[fe.QueryAuditLogsRequest]
    ) -> fe.QueryAuditLogsResponse:
        request = call.request
        entries = audit.query_audit_logs(self._store, call.caller, request.query, request.limit)
        return fe.QueryAuditLogsResponse(logs=entries)

    @guarded("save_logs")
    def SaveLogs(  # noqa: N802
        self, _txn: Txn, call: Call[mgmt.SaveLogsRequest]
    ) -> mgmt.SaveLogsResponse:
        audit.save_logs(self._store, list(call.request.logs))
        return mgmt.SaveLogsResponse()

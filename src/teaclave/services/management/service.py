"""The management servicer: parse each request, call the logic, build the response.

The caller is named by the frontend in metadata ``id`` and ``role``.
"""

from __future__ import annotations

import grpc

from teaclave.core import limits
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.ids import Kind, external_id, new_uuid, parse_external_id
from teaclave.core.model import InputFile, OutputFile
from teaclave.core.roles import Role
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2 as mgmt
from teaclave.proto import teaclave_management_service_pb2_grpc as mgmt_grpc
from teaclave.services.management import audit, files, functions, tasks
from teaclave.services.management.common import Caller
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
from teaclave.storage.api import Store


def caller_of(context: grpc.ServicerContext) -> Caller:
    """The caller from metadata; UNKNOWN "missing user id/role" without it."""
    metadata = {
        key: value for key, value in context.invocation_metadata() if isinstance(value, str)
    }
    user_id = metadata.get("id")
    if not user_id:
        raise TeaclaveError(Status.UNKNOWN, "missing user id")
    role = metadata.get("role")
    if not role:
        raise TeaclaveError(Status.UNKNOWN, "missing user role")
    return Caller(user_id, Role.parse(role))


def _function_uuid(text: str) -> str:
    return parse_external_id(Kind.FUNCTION, text)


def _task_uuid(text: str) -> str:
    return parse_external_id(Kind.TASK, text)


class ManagementServicer(mgmt_grpc.TeaclaveManagementServicer):
    """TeaclaveManagement over one :class:`Store`; limits may be set up to ``max_limits``."""

    def __init__(self, store: Store, max_limits: limits.Limits) -> None:
        self._store = store
        self._max_limits = max_limits

    # --- files ---------------------------------------------------------------

    def RegisterInputFile(  # noqa: N802
        self, request: fe.RegisterInputFileRequest, context: grpc.ServicerContext
    ) -> fe.RegisterInputFileResponse:
        caller = caller_of(context)
        record = InputFile(
            new_uuid(),
            parse_url(request.url),
            parse_cmac(request.cmac),
            parse_crypto(request.crypto_info),
            frozenset({caller.user_id}),
        )
        return fe.RegisterInputFileResponse(data_id=files.register_file(self._store, record))

    def RegisterOutputFile(  # noqa: N802
        self, request: fe.RegisterOutputFileRequest, context: grpc.ServicerContext
    ) -> fe.RegisterOutputFileResponse:
        caller = caller_of(context)
        record = OutputFile(
            new_uuid(),
            parse_url(request.url),
            parse_crypto(request.crypto_info),
            frozenset({caller.user_id}),
        )
        return fe.RegisterOutputFileResponse(data_id=files.register_file(self._store, record))

    def UpdateInputFile(  # noqa: N802
        self, request: fe.UpdateInputFileRequest, context: grpc.ServicerContext
    ) -> fe.UpdateInputFileResponse:
        caller = caller_of(context)
        uuid = parse_external_id(Kind.INPUT, request.data_id)
        data_id = files.update_file(self._store, caller, InputFile, uuid, parse_url(request.url))
        return fe.UpdateInputFileResponse(data_id=data_id)

    def UpdateOutputFile(  # noqa: N802
        self, request: fe.UpdateOutputFileRequest, context: grpc.ServicerContext
    ) -> fe.UpdateOutputFileResponse:
        caller = caller_of(context)
        uuid = parse_external_id(Kind.OUTPUT, request.data_id)
        data_id = files.update_file(self._store, caller, OutputFile, uuid, parse_url(request.url))
        return fe.UpdateOutputFileResponse(data_id=data_id)

    def RegisterFusionOutput(  # noqa: N802
        self, request: fe.RegisterFusionOutputRequest, context: grpc.ServicerContext
    ) -> fe.RegisterFusionOutputResponse:
        caller = caller_of(context)
        data_id = files.register_fusion_output(self._store, caller, frozenset(request.owner_list))
        return fe.RegisterFusionOutputResponse(data_id=data_id)

    def RegisterInputFromOutput(  # noqa: N802
        self, request: fe.RegisterInputFromOutputRequest, context: grpc.ServicerContext
    ) -> fe.RegisterInputFromOutputResponse:
        caller = caller_of(context)
        uuid = parse_external_id(Kind.OUTPUT, request.data_id)
        data_id = files.register_input_from_output(self._store, caller, uuid)
        return fe.RegisterInputFromOutputResponse(data_id=data_id)

    def GetOutputFile(  # noqa: N802
        self, request: fe.GetOutputFileRequest, context: grpc.ServicerContext
    ) -> fe.GetOutputFileResponse:
        caller = caller_of(context)
        uuid = parse_external_id(Kind.OUTPUT, request.data_id)
        record = files.get_file(self._store, caller, OutputFile, uuid)
        return fe.GetOutputFileResponse(owner=sorted(record.owners), cmac=record.cmac or b"")

    def GetInputFile(  # noqa: N802
        self, request: fe.GetInputFileRequest, context: grpc.ServicerContext
    ) -> fe.GetInputFileResponse:
        caller = caller_of(context)
        uuid = parse_external_id(Kind.INPUT, request.data_id)
        record = files.get_file(self._store, caller, InputFile, uuid)
        return fe.GetInputFileResponse(owner=sorted(record.owners), cmac=record.cmac)

    # --- functions -----------------------------------------------------------

    def RegisterFunction(  # noqa: N802
        self, request: fe.RegisterFunctionRequest, context: grpc.ServicerContext
    ) -> fe.RegisterFunctionResponse:
        caller = caller_of(context)
        function = function_from_request(request, new_uuid(), caller.user_id)
        limits.check_function(function, self._max_limits)
        functions.register_function(self._store, function)
        return fe.RegisterFunctionResponse(function_id=external_id(Kind.FUNCTION, function.uuid))

    def GetFunction(  # noqa: N802
        self, request: fe.GetFunctionRequest, context: grpc.ServicerContext
    ) -> fe.GetFunctionResponse:
        caller = caller_of(context)
        uuid = _function_uuid(request.function_id)
        return function_response(functions.get_function(self._store, caller, uuid))

    def GetFunctionUsageStats(  # noqa: N802
        self, request: fe.GetFunctionUsageStatsRequest, context: grpc.ServicerContext
    ) -> fe.GetFunctionUsageStatsResponse:
        caller = caller_of(context)
        uuid = _function_uuid(request.function_id)
        quota, usage = functions.usage_stats(self._store, caller, uuid)
        return fe.GetFunctionUsageStatsResponse(function_quota=quota, current_usage=usage)

    def UpdateFunction(  # noqa: N802
        self, request: fe.UpdateFunctionRequest, context: grpc.ServicerContext
    ) -> fe.UpdateFunctionResponse:
        caller = caller_of(context)
        uuid = _function_uuid(request.function_id)
        function = function_from_request(request, uuid, caller.user_id)
        limits.check_function(function, self._max_limits)
        functions.update_function(self._store, caller, function)
        return fe.UpdateFunctionResponse(function_id=external_id(Kind.FUNCTION, uuid))

    def ListFunctions(  # noqa: N802
        self, request: fe.ListFunctionsRequest, context: grpc.ServicerContext
    ) -> fe.ListFunctionsResponse:
        caller = caller_of(context)
        registered, allowed = functions.list_functions(self._store, caller, request.user_id)
        return fe.ListFunctionsResponse(
            registered_functions=[external_id(Kind.FUNCTION, u) for u in registered],
            allowed_functions=[external_id(Kind.FUNCTION, u) for u in allowed],
        )

    def DeleteFunction(  # noqa: N802
        self, request: fe.DeleteFunctionRequest, context: grpc.ServicerContext
    ) -> fe.DeleteFunctionResponse:
        caller = caller_of(context)
        functions.delete_function(self._store, caller, _function_uuid(request.function_id))
        return fe.DeleteFunctionResponse()

    def DisableFunction(  # noqa: N802
        self, request: fe.DisableFunctionRequest, context: grpc.ServicerContext
    ) -> fe.DisableFunctionResponse:
        caller = caller_of(context)
        functions.disable_function(self._store, caller, _function_uuid(request.function_id))
        return fe.DisableFunctionResponse()

    # --- tasks ---------------------------------------------------------------

    def CreateTask(  # noqa: N802
        self, request: fe.CreateTaskRequest, context: grpc.ServicerContext
    ) -> fe.CreateTaskResponse:
        caller = caller_of(context)
        task_id = tasks.create_task(
            self._store,
            caller,
            _function_uuid(request.function_id),
            executor=request.executor,
            arguments=request.function_arguments,
            inputs_ownership=owner_lists(request.inputs_ownership),
            outputs_ownership=owner_lists(request.outputs_ownership),
            max_limits=self._max_limits,
        )
        return fe.CreateTaskResponse(task_id=task_id)

    def GetTask(  # noqa: N802
        self, request: fe.GetTaskRequest, context: grpc.ServicerContext
    ) -> fe.GetTaskResponse:
        caller = caller_of(context)
        return task_response(tasks.get_task(self._store, caller, _task_uuid(request.task_id)))

    def AssignData(  # noqa: N802
        self, request: fe.AssignDataRequest, context: grpc.ServicerContext
    ) -> fe.AssignDataResponse:
        caller = caller_of(context)
        tasks.assign_data(
            self._store,
            caller,
            _task_uuid(request.task_id),
            data_maps(request.inputs, Kind.INPUT),
            data_maps(request.outputs, Kind.OUTPUT),
        )
        return fe.AssignDataResponse()

    def ApproveTask(  # noqa: N802
        self, request: fe.ApproveTaskRequest, context: grpc.ServicerContext
    ) -> fe.ApproveTaskResponse:
        caller = caller_of(context)
        tasks.approve_task(self._store, caller, _task_uuid(request.task_id))
        return fe.ApproveTaskResponse()

    def InvokeTask(  # noqa: N802
        self, request: fe.InvokeTaskRequest, context: grpc.ServicerContext
    ) -> fe.InvokeTaskResponse:
        caller = caller_of(context)
        tasks.invoke_task(self._store, caller, _task_uuid(request.task_id))
        return fe.InvokeTaskResponse()

    def CancelTask(  # noqa: N802
        self, request: fe.CancelTaskRequest, context: grpc.ServicerContext
    ) -> fe.CancelTaskResponse:
        caller = caller_of(context)
        tasks.cancel_task(self._store, caller, _task_uuid(request.task_id))
        return fe.CancelTaskResponse()

    # --- audit ---------------------------------------------------------------

    def QueryAuditLogs(  # noqa: N802
        self, request: fe.QueryAuditLogsRequest, context: grpc.ServicerContext
    ) -> fe.QueryAuditLogsResponse:
        caller = caller_of(context)
        entries = audit.query_audit_logs(self._store, caller, request.query, request.limit)
        return fe.QueryAuditLogsResponse(logs=entries)

    def SaveLogs(  # noqa: N802
        self, request: mgmt.SaveLogsRequest, context: grpc.ServicerContext
    ) -> mgmt.SaveLogsResponse:
        audit.save_logs(self._store, list(request.logs))
        return mgmt.SaveLogsResponse()

"""The scheduler servicer: validates executor requests and hands them to :class:`Scheduler`."""

from __future__ import annotations

import grpc

from teaclave.core.errors import invalid_argument
from teaclave.core.ids import Kind, external_id, parse_external_id
from teaclave.core.model import TaskResult
from teaclave.proto import teaclave_common_pb2 as common_pb
from teaclave.proto import teaclave_scheduler_service_pb2 as pb
from teaclave.proto import teaclave_scheduler_service_pb2_grpc as pb_grpc
from teaclave.services.scheduler.tasks import Scheduler

MAX_EXECUTOR_ID_CHARS = 128


def _executor_id(text: str) -> str:
    if not text:
        raise invalid_argument("empty executor id")
    if len(text) > MAX_EXECUTOR_ID_CHARS:
        raise invalid_argument(f"executor id longer than {MAX_EXECUTOR_ID_CHARS} characters")
    return text


def _task_uuid(text: str) -> str:
    """A bare task UUID, normalized; INVALID_ARGUMENT "invalid task id" otherwise."""
    return parse_external_id(Kind.TASK, external_id(Kind.TASK, text))


def _result(message: common_pb.TaskResult) -> TaskResult:
    kind = message.WhichOneof("result")
    if kind == "Ok":
        ok = message.Ok
        return TaskResult.success(ok.return_value, dict(ok.tags_map), tuple(ok.log))
    if kind == "Err":
        return TaskResult.failure(message.Err.reason)
    raise invalid_argument("task result is missing")


class SchedulerServicer(pb_grpc.TeaclaveSchedulerServicer):
    """The executors' API."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def Heartbeat(  # noqa: N802
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatResponse:
        executor_id = _executor_id(request.executor_id)
        running = ""
        if request.status == pb.Executing and request.task_id:
            running = _task_uuid(request.task_id)
        command, task_id = self._scheduler.heartbeat(executor_id, running)
        return pb.HeartbeatResponse(command=command, task_id=task_id)

    def PullTask(  # noqa: N802
        self, request: pb.PullTaskRequest, context: grpc.ServicerContext
    ) -> pb.PullTaskResponse:
        staged = self._scheduler.pull(_executor_id(request.executor_id))
        return pb.PullTaskResponse(staged_task=staged)

    def StartUpload(  # noqa: N802
        self, request: pb.StartUploadRequest, context: grpc.ServicerContext
    ) -> pb.StartUploadResponse:
        if not request.output_name:
            raise invalid_argument("empty output name")
        self._scheduler.start_upload(
            _executor_id(request.executor_id), _task_uuid(request.task_id), request.output_name
        )
        return pb.StartUploadResponse()

    def UpdateTaskResult(  # noqa: N802
        self, request: pb.UpdateTaskResultRequest, context: grpc.ServicerContext
    ) -> pb.UpdateTaskResultResponse:
        executor_id = _executor_id(request.executor_id)
        task_uuid = _task_uuid(request.task_id)
        self._scheduler.report(executor_id, task_uuid, _result(request.result))
        return pb.UpdateTaskResultResponse()

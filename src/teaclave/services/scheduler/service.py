"""The scheduler servicer: validates executor requests and hands them to :class:`Scheduler`."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from teaclave.core.errors import invalid_argument
from teaclave.core.ids import Kind, external_id, parse_external_id
from teaclave.core.model import TaskResult
from teaclave.core.waiting import wait_secs
from teaclave.proto import teaclave_common_pb2 as common_pb
from teaclave.proto import teaclave_scheduler_service_pb2 as pb
from teaclave.proto import teaclave_scheduler_service_pb2_grpc as pb_grpc
from teaclave.services.scheduler.tasks import Scheduler

MAX_EXECUTOR_ID_CHARS = 128
MAX_RUNNING = 1000
"""Most tasks one executor may report running."""
MAX_AWAIT_SECS = 60.0
"""Longest wait of one AwaitTask."""
REPLY_MARGIN_SECS = 1.0
"""An AwaitTask's wait ends this long before its caller's deadline, so that a task
claimed at the end of the wait reaches the caller (else it fails, lost)."""


def _executor_id(text: str) -> str:
    if not text:
        raise invalid_argument("empty executor id")
    if len(text) > MAX_EXECUTOR_ID_CHARS:
        raise invalid_argument(f"executor id longer than {MAX_EXECUTOR_ID_CHARS} characters")
    return text


def _task_uuid(text: str) -> str:
    """A bare task UUID, normalized; INVALID_ARGUMENT "invalid task id" otherwise."""
    return parse_external_id(Kind.TASK, external_id(Kind.TASK, text))


def _running(task_ids: Sequence[str]) -> list[str]:
    """The bare UUIDs of the tasks an executor reports running."""
    if len(task_ids) > MAX_RUNNING:
        raise invalid_argument(f"more than {MAX_RUNNING} running tasks")
    return [_task_uuid(t) for t in task_ids]


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
        stop = self._scheduler.heartbeat(executor_id, _running(request.task_ids))
        return pb.HeartbeatResponse(stop_task_ids=stop)

    def AwaitTask(  # noqa: N802
        self, request: pb.AwaitTaskRequest, context: grpc.ServicerContext
    ) -> pb.AwaitTaskResponse:
        executor_id = _executor_id(request.executor_id)
        running = _running(request.running_task_ids)
        timeout = wait_secs(
            request.timeout_ms, MAX_AWAIT_SECS, context.time_remaining(), REPLY_MARGIN_SECS
        )
        staged = self._scheduler.await_task(executor_id, running, timeout, context.add_callback)
        return pb.AwaitTaskResponse(staged_task=staged)

    def PullTask(  # noqa: N802
        self, request: pb.PullTaskRequest, context: grpc.ServicerContext
    ) -> pb.PullTaskResponse:
        executor_id = _executor_id(request.executor_id)
        staged = self._scheduler.pull(executor_id, _running(request.running_task_ids))
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

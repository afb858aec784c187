"""The scheduler's task metrics and spans (docs/operations.md)."""

from __future__ import annotations

import time

from teaclave.core.model import Task, TaskStatus
from teaclave.observability import metrics, tracing
from teaclave.proto import teaclave_scheduler_service_pb2 as pb
from teaclave.storage import keys


def task_pulled(staged: pb.StagedTask, queue_key: str, began: int) -> None:
    """``staged`` was handed out (its pull began at ``began``, ns): count it Running, time
    how long it waited, and add ``task.staged`` (the wait) and ``task.pull`` to its trace."""
    now = time.time_ns()
    metrics.TASK_TRANSITIONS.labels(TaskStatus.RUNNING.name).inc()
    staged_at = keys.staged_at(queue_key)
    attributes = {"teaclave.task_id": staged.task_id}
    if staged_at is not None and staged_at <= now:
        metrics.TASK_STAGE_SECONDS.labels("staged").observe((now - staged_at) / 1e9)
    if not tracing.enabled():
        return
    parent = tracing.parse(staged.trace_context)
    if staged_at is not None and staged_at <= now:
        tracing.record_span("task.staged", parent, staged_at, now, attributes)
    tracing.record_span("task.pull", parent, min(began, now), now, attributes)


def task_ended(task: Task) -> None:
    """The scheduler committed ``task``'s end: count it, and mark it in the task's trace."""
    metrics.TASK_TRANSITIONS.labels(task.status.name).inc()
    if tracing.enabled():
        now = time.time_ns()
        attributes = {"teaclave.task_id": task.uuid, "teaclave.task_status": task.status.name}
        error = "" if task.status is TaskStatus.FINISHED else task.status.name
        tracing.record_span(
            "task.end", tracing.parse(task.trace_context), now, now, attributes, error=error
        )

"""One task's run as the execution service sees it: its span, its stages, the busy slots.

The task process reports its stages (:mod:`teaclave.observability.stages`);
they become spans under ``task.execute`` and samples of the stage histogram.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace

from teaclave.observability import metrics, tracing
from teaclave.observability.stages import Report

log = logging.getLogger(__name__)


class TaskRun:
    """A task from its pull to its report: one ``task.execute`` span, one busy slot."""

    def __init__(self, task_id: str, trace_context: str) -> None:
        self.task_id = task_id
        self._began = time.time_ns()
        self._lock = threading.Lock()
        self._ended = False
        metrics.EXECUTION_BUSY.inc()
        self._span = tracing.start_span(
            "task.execute",
            tracing.parse(trace_context) or otel_context.Context(),
            attributes={"teaclave.task_id": task_id},
            start_time=self._began,
        )

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within the block (any thread), calls made belong to the task's trace."""
        with tracing.current(self._span):
            yield

    def stages(self, payload: bytes) -> None:
        """Record the stage report of the task's process (a malformed one is logged only)."""
        try:
            report = Report.decode(payload)
        except ValueError as exc:
            log.warning("task %s: %s", self.task_id, exc)
            return
        metrics.TASK_STAGE_SECONDS.labels("spawn").observe(max(report.began - self._began, 0) / 1e9)
        spans: list[trace.Span] = []
        execute = trace.set_span_in_context(self._span)
        tracing.record_span("task.spawn", execute, self._began, max(report.began, self._began))
        for stage in report.stages:
            end = max(stage.end, stage.start)
            if stage.parent < 0:
                metrics.TASK_STAGE_SECONDS.labels(stage.name).observe((end - stage.start) / 1e9)
            parent = (
                trace.set_span_in_context(spans[stage.parent]) if stage.parent >= 0 else execute
            )
            spans.append(
                tracing.record_span(
                    f"task.{stage.name}",
                    parent,
                    stage.start,
                    end,
                    stage.attributes,
                    error=stage.error,
                )
            )

    def end(self, outcome: str) -> None:
        """The task is over (``outcome``: "Ok", "Err" or "canceled"); idempotent."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        metrics.EXECUTION_BUSY.dec()
        metrics.TASK_STAGE_SECONDS.labels("execute").observe((time.time_ns() - self._began) / 1e9)
        self._span.set_attribute("teaclave.task_outcome", outcome)
        if outcome != "Ok":
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
        self._span.end()

"""Task spans of the management service (docs/operations.md).

``CreateTask`` runs in a span ``task.create`` whose context the task keeps
(``Task.trace_context``); every later operation on the task runs in a span of
that trace, linked to the request it serves (:func:`task_operation`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from teaclave.core.ids import Kind, parse_external_id
from teaclave.observability import tracing
from teaclave.services.management import tasks
from teaclave.services.management.common import Txn
from teaclave.services.management.guard import Call

S = TypeVar("S")
R = TypeVar("R")
Body = Callable[[S, Txn, Call[Any]], R]


@contextlib.contextmanager
def creating_task() -> Iterator[str]:
    """A ``task.create`` span, current within the block; gives its ``traceparent``."""
    with tracing.tracer().start_as_current_span("task.create") as span:
        yield tracing.traceparent(span)


def task_operation(name: str, *, ended_only: bool = False) -> Callable[[Body[S, R]], Body[S, R]]:
    """Run a task RPC's body in span ``name`` of the task's trace (the request's
    ``task_id``); ``ended_only``: only once the task has ended (a result)."""

    def wrap(body: Body[S, R]) -> Body[S, R]:
        @functools.wraps(body)
        def traced(servicer: S, txn: Txn, call: Call[Any]) -> R:
            if not tracing.enabled():
                return body(servicer, txn, call)
            task_uuid = parse_external_id(Kind.TASK, call.request.task_id)
            task = tasks.load_task(txn, task_uuid)  # read already, by the rule's facts
            if ended_only and not task.status.ended:
                return body(servicer, txn, call)
            attributes = {"teaclave.task_id": task_uuid, "teaclave.task_status": task.status.name}
            with tracing.task_span(name, task.trace_context, attributes):
                return body(servicer, txn, call)

        return traced

    return wrap

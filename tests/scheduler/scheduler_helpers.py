"""Helpers for the scheduler tests."""

from dataclasses import replace

from teaclave.core.ids import new_uuid
from teaclave.core.model import Executor, Task, TaskStatus


def new_task(status: TaskStatus, **changes: object) -> Task:
    """A task of alice's in ``status``, with ``changes``."""
    return replace(
        Task(
            uuid=new_uuid(),
            creator="alice",
            function_id=new_uuid(),
            function_owner="alice",
            function_arguments='{"k":"v"}',
            executor=Executor.BUILTIN,
            inputs_ownership={},
            outputs_ownership={},
            participants=frozenset({"alice"}),
            status=status,
        ),
        **changes,
    )

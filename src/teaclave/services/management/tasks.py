"""Tasks: the state machine of reference §3.6 over stored records."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from teaclave.core import tasks as rules
from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.core.ids import Kind, external_id, new_uuid
from teaclave.core.limits import Limits
from teaclave.core.model import InputFile, OutputFile, Task
from teaclave.core.tasks import OwnerLists
from teaclave.services.management.common import Caller, Txn, transact
from teaclave.services.management.convert import staged_task
from teaclave.services.management.files import load_file
from teaclave.services.management.functions import load_function, load_usage
from teaclave.storage import keys
from teaclave.storage.api import Store


def invalid_task_id() -> TeaclaveError:
    """INVALID_ARGUMENT "invalid task id"."""
    return invalid_argument("invalid task id")


def _load_task(txn: Txn, task_uuid: str) -> Task:
    return txn.load(Task, keys.TASK + task_uuid, invalid_task_id())


def create_task(
    store: Store,
    caller: Caller,
    function_uuid: str,
    *,
    executor: str,
    arguments: str,
    inputs_ownership: OwnerLists,
    outputs_ownership: OwnerLists,
    max_limits: Limits,
) -> str:
    """A new Created task on a function the caller may use; returns its id."""

    def body(txn: Txn) -> Task:
        task = rules.create_task(
            task_uuid=new_uuid(),
            function=load_function(txn, function_uuid),
            creator=caller.user_id,
            role=caller.role,
            executor=executor,
            arguments=arguments,
            inputs_ownership=inputs_ownership,
            outputs_ownership=outputs_ownership,
            max_limits=max_limits,
        )
        txn.put(keys.TASK + task.uuid, task)
        return task

    return external_id(Kind.TASK, transact(store, body).uuid)


def get_task(store: Store, caller: Caller, task_uuid: str) -> Task:
    """A task, for its participants."""
    task = transact(store, lambda txn: _load_task(txn, task_uuid))
    rules.check_participant(task, caller.user_id)
    return task


def _update(store: Store, task_uuid: str, change: Callable[[Txn, Task], Task]) -> None:
    """Read a task, apply ``change`` and store the result, in one commit."""

    def body(txn: Txn) -> None:
        task = change(txn, _load_task(txn, task_uuid))
        txn.put(keys.TASK + task_uuid, task)

    transact(store, body)


def assign_data(
    store: Store,
    caller: Caller,
    task_uuid: str,
    inputs: Sequence[tuple[str, str]],
    outputs: Sequence[tuple[str, str]],
) -> None:
    """Assign the caller's files (``(name, file uuid)`` pairs) to a task."""

    def change(txn: Txn, task: Task) -> Task:
        rules.check_participant(task, caller.user_id)  # before revealing which files exist
        input_files = [(name, load_file(txn, InputFile, uuid)) for name, uuid in inputs]
        output_files = [(name, load_file(txn, OutputFile, uuid)) for name, uuid in outputs]
        return rules.assign_data(task, caller.user_id, input_files, output_files)

    _update(store, task_uuid, change)


def approve_task(store: Store, caller: Caller, task_uuid: str) -> None:
    """Record the caller's approval of a task."""
    _update(store, task_uuid, lambda _txn, task: rules.approve(task, caller.user_id))


def invoke_task(store: Store, caller: Caller, task_uuid: str) -> None:
    """Stage a ready task: task Staged, usage counted and queue entry written, in one commit."""

    def change(txn: Txn, task: Task) -> Task:
        function = load_function(txn, task.function_id)
        staged, usage = rules.invoke(task, caller.user_id, function, load_usage(txn, function.uuid))
        for name, assigned in task.assigned_outputs.items():
            # Written since it was assigned (by another task)? Never write it again.
            if reason := load_file(txn, OutputFile, assigned.uuid).why_not_writable():
                raise rules.failed_to_invoke(f"output {name!r} {reason}")
        txn.put(keys.USAGE + function.uuid, usage)
        txn.put_bytes(
            keys.staged_key(time.time_ns(), task.uuid),
            staged_task(staged, function, caller.user_id).SerializeToString(),
        )
        return staged

    _update(store, task_uuid, change)


def cancel_task(store: Store, caller: Caller, task_uuid: str) -> None:
    """Cancel a task (a Running one is stopped by the scheduler)."""
    _update(store, task_uuid, lambda _txn, task: rules.cancel(task, caller.user_id, caller.role))

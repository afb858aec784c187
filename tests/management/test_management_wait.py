"""WaitTask (our extension): GetTask once the task has ended, answered from a storage watch."""

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as first_of
from dataclasses import replace

import pytest
from mgmt_helpers import User, refused, register_function

from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import Task, TaskResult, TaskStatus
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.services import management
from teaclave.storage import keys
from teaclave.storage.api import Store, Write

LONG_MS = 60_000
"""A wait that only the task's end is meant to cut short."""


def wait(user: User, task_id: str, timeout_ms: int = LONG_MS) -> fe.GetTaskResponse:
    return user.WaitTask(fe.WaitTaskRequest(task_id=task_id, timeout_ms=timeout_ms))


def staged_task(owner: User, alice: User) -> str:
    request = fe.CreateTaskRequest(
        function_id=register_function(owner), function_arguments="{}", executor="builtin"
    )
    task_id = str(alice.CreateTask(request).task_id)
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))
    return task_id


def set_status(store: Store, task_id: str, status: TaskStatus, **changes: object) -> None:
    """Move the task on, as the scheduler does."""
    key = keys.TASK + task_id.split("-", 1)[1]
    [record] = store.get([key])
    task = replace(decode(Task, record.value), status=status, **changes)
    store.commit([(key, record.version)], [Write(key, encode(task))])


def test_wait_returns_when_the_task_ends(owner: User, alice: User, scheduler_store: Store) -> None:
    task_id = staged_task(owner, alice)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(wait, alice, task_id)
        set_status(scheduler_store, task_id, TaskStatus.RUNNING, executor_id="e1")
        result = TaskResult.success(b"done", {}, ())
        set_status(scheduler_store, task_id, TaskStatus.FINISHED, result=result)
        reply = waiting.result(timeout=LONG_MS / 1000)
    assert reply == alice.GetTask(fe.GetTaskRequest(task_id=task_id))
    assert (reply.status, reply.result.Ok.return_value) == (common.Finished, b"done")


def test_an_ended_task_is_answered_at_once(owner: User, alice: User) -> None:
    task_id = staged_task(owner, alice)
    alice.CancelTask(fe.CancelTaskRequest(task_id=task_id))
    assert wait(alice, task_id).status == common.Canceled


def test_a_cancel_made_here_ends_a_wait(owner: User, alice: User) -> None:
    """The service's own commits are left out of its watch of storage: it wakes the
    calls waiting for them itself."""
    task_id = staged_task(owner, alice)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(wait, alice, task_id)
        time.sleep(0.2)  # the call waits (had it not begun, it would find the task ended)
        alice.CancelTask(fe.CancelTaskRequest(task_id=task_id))
        assert waiting.result(timeout=10).status == common.Canceled


def test_a_wait_that_runs_out_answers_with_the_task_as_it_stands(owner: User, alice: User) -> None:
    task_id = staged_task(owner, alice)
    assert wait(alice, task_id, timeout_ms=0) == alice.GetTask(fe.GetTaskRequest(task_id=task_id))
    assert wait(alice, task_id, timeout_ms=50).status == common.Staged


def test_only_participants_wait(owner: User, alice: User, bob: User) -> None:
    task_id = staged_task(owner, alice)
    not_participant = "permission denied: not a participant of the task"
    refused(Status.PERMISSION_DENIED, not_participant, lambda: wait(bob, task_id))
    refused(Status.INVALID_ARGUMENT, "invalid task id", lambda: wait(alice, "task-1"))


def test_too_many_waiting_calls(owner: User, alice: User, scheduler_store: Store) -> None:
    """Eight calls wait at once; a ninth is refused RESOURCE_EXHAUSTED, unless the task
    has ended (then it is answered, as GetTask)."""
    task_id = staged_task(owner, alice)
    count = management.MAX_WAITING_CALLS + 1
    with ThreadPoolExecutor(count) as pool:
        calls = [pool.submit(wait, alice, task_id) for _ in range(count)]
        [busy], _ = first_of(calls, timeout=LONG_MS / 1000, return_when=FIRST_COMPLETED)
        error = busy.exception()
        assert isinstance(error, TeaclaveError)
        assert (error.status, error.message) == (
            Status.RESOURCE_EXHAUSTED,
            "too many calls waiting; try again later",
        )
        set_status(scheduler_store, task_id, TaskStatus.FAILED, result=TaskResult.failure("x"))
        assert all(f.result().status == common.Failed for f in calls if f is not busy)


@pytest.mark.parametrize("status", [TaskStatus.FINISHED, TaskStatus.FAILED])
def test_ended_states(owner: User, alice: User, scheduler_store: Store, status) -> None:
    task_id = staged_task(owner, alice)
    set_status(scheduler_store, task_id, status, result=TaskResult.failure("reason"))
    assert wait(alice, task_id).status == int(status)

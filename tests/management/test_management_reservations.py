"""An output is reserved by the task InvokeTask stages, until it ends: management and the
scheduler over one real storage service."""

from functools import partial

import pytest
from at_once import at_once
from mgmt_helpers import User, refused, register_function, register_output

from teaclave.core.codec import decode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import OutputFile, Task, TaskResult, TaskStatus
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.services.scheduler.liveness import Liveness
from teaclave.services.scheduler.queue import StagedQueue
from teaclave.services.scheduler.tasks import Scheduler
from teaclave.storage import keys
from teaclave.storage.api import Store
from teaclave.storage.remote import RemoteStore

RESERVED = "is reserved by a staged or running task"
USED = "was used by an upload that has not completed"
FAILED = TaskResult.failure("function failed")


def _uuid(external: str) -> str:
    return external.split("-", 1)[1]


class Owner:
    """alice: a function with one output, tasks on it, and her output files."""

    def __init__(self, owner: User, alice: User) -> None:
        self.alice = alice
        self.function_id = register_function(owner, outputs=[fe.FunctionOutput(name="out")])

    def create(self) -> str:
        """A task (single participant: ready to invoke once its output is assigned)."""
        request = fe.CreateTaskRequest(
            function_id=self.function_id,
            function_arguments="{}",
            executor="builtin",
            outputs_ownership=[fe.OwnerList(data_name="out", uids=["alice"])],
        )
        return str(self.alice.CreateTask(request).task_id)

    def task(self, output_id: str) -> str:
        """A task with ``output_id`` as its output."""
        task_id = self.create()
        self.assign(task_id, output_id)
        return task_id

    def assign(self, task_id: str, output_id: str) -> None:
        self.alice.AssignData(
            fe.AssignDataRequest(
                task_id=task_id, outputs=[fe.DataMap(data_name="out", data_id=output_id)]
            )
        )

    def invoke(self, task_id: str) -> None:
        self.alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))

    def update(self, output_id: str) -> str:
        request = fe.UpdateOutputFileRequest(data_id=output_id, url="https://host/moved")
        return str(self.alice.UpdateOutputFile(request).data_id)


@pytest.fixture
def files(owner: User, alice: User) -> Owner:
    return Owner(owner, alice)


@pytest.fixture
def scheduler(scheduler_store: RemoteStore) -> Scheduler:
    """The scheduler's logic over the same storage (called directly, as its servicer does;
    its queue watcher is never started: nothing here waits for a task)."""
    queue = StagedQueue(scheduler_store, scheduler_store, max_waiters=1)
    return Scheduler(scheduler_store, Liveness(timeout=3600.0), queue)


def stored(store: Store, output_id: str) -> OutputFile:
    return decode(OutputFile, store.get([keys.OUTPUT + _uuid(output_id)])[0].value)


def task_record(store: Store, task_id: str) -> Task:
    return decode(Task, store.get([keys.TASK + _uuid(task_id)])[0].value)


def test_tasks_sharing_an_output_invoked_at_once_only_one_is_staged(
    files: Owner, scheduler_store: Store
) -> None:
    for _ in range(4):
        output_id = register_output(files.alice)
        task_ids = [files.task(output_id) for _ in range(4)]
        errors = at_once([partial(files.invoke, task_id) for task_id in task_ids])
        [winner] = [t for t, error in zip(task_ids, errors, strict=True) if error is None]
        refusal = (Status.UNKNOWN, f"failed to invoke task: output 'out' {RESERVED}")
        assert (
            sorted((e.status, e.message) for e in errors if isinstance(e, TeaclaveError))
            == [refusal] * 3
        )
        assert stored(scheduler_store, output_id).reserved_by == _uuid(winner)
        queued = {r.key.partition("-")[2] for r in scheduler_store.scan(keys.STAGED)}
        assert [t for t in task_ids if _uuid(t) in queued] == [winner]
        for task_id in task_ids:
            expected = TaskStatus.STAGED if task_id == winner else TaskStatus.DATA_ASSIGNED
            assert task_record(scheduler_store, task_id).status is expected


def test_a_held_output_is_refused_by_invoke_assign_and_update(
    files: Owner, scheduler_store: Store
) -> None:
    output_id = register_output(files.alice)
    holder, other = files.task(output_id), files.task(output_id)
    files.invoke(holder)
    refused(
        Status.UNKNOWN,
        f"failed to invoke task: output 'out' {RESERVED}",
        lambda: files.invoke(other),
    )
    unassigned = files.create()
    refused(
        Status.PERMISSION_DENIED,
        f"permission denied: output 'out' {RESERVED}",
        lambda: files.assign(unassigned, output_id),
    )
    refused(
        Status.PERMISSION_DENIED,
        f"permission denied: the output {RESERVED}; register a new output instead",
        lambda: files.update(output_id),
    )
    # Nothing changed: the holder still holds it, the other tasks are as they were.
    assert stored(scheduler_store, output_id).reserved_by == _uuid(holder)
    assert not stored(scheduler_store, output_id).replaced
    assert task_record(scheduler_store, other).status is TaskStatus.DATA_ASSIGNED
    assert task_record(scheduler_store, unassigned).assigned_outputs == {}


def test_one_file_in_two_output_slots_is_refused(owner: User, alice: User) -> None:
    function_id = register_function(
        owner, outputs=[fe.FunctionOutput(name="a"), fe.FunctionOutput(name="b")]
    )
    request = fe.CreateTaskRequest(
        function_id=function_id,
        function_arguments="{}",
        executor="builtin",
        outputs_ownership=[
            fe.OwnerList(data_name="a", uids=["alice"]),
            fe.OwnerList(data_name="b", uids=["alice"]),
        ],
    )
    task_id = str(alice.CreateTask(request).task_id)
    output_id = register_output(alice)
    twice = fe.AssignDataRequest(
        task_id=task_id,
        outputs=[
            fe.DataMap(data_name="a", data_id=output_id),
            fe.DataMap(data_name="b", data_id=output_id),
        ],
    )
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: output 'b' is the file of output 'a' too",
        lambda: alice.AssignData(twice),
    )


def test_a_canceled_staged_task_frees_its_output(files: Owner, scheduler_store: Store) -> None:
    output_id = register_output(files.alice)
    canceled = files.task(output_id)
    files.invoke(canceled)
    files.alice.CancelTask(fe.CancelTaskRequest(task_id=canceled))
    assert task_record(scheduler_store, canceled).status is TaskStatus.CANCELED
    assert stored(scheduler_store, output_id).reserved_by == ""
    files.update(output_id)  # free again: its owner may move it
    assert stored(scheduler_store, output_id).replaced


def failed_task(files: Owner, scheduler: Scheduler, output_id: str, *, uploading: bool) -> str:
    """A task on ``output_id`` that ran and failed (``uploading``: after its upload began)."""
    task_id = files.task(output_id)
    files.invoke(task_id)
    assert scheduler.pull("e1", ()) is not None
    if uploading:
        scheduler.start_upload("e1", _uuid(task_id), "out")
    scheduler.report("e1", _uuid(task_id), FAILED)
    return task_id


def test_a_task_failed_before_its_upload_frees_its_output(
    files: Owner, scheduler_store: Store, scheduler: Scheduler
) -> None:
    output_id = register_output(files.alice)
    later = files.task(output_id)
    failed_task(files, scheduler, output_id, uploading=False)
    record = stored(scheduler_store, output_id)
    assert (record.reserved_by, record.upload_started) == ("", False)
    files.invoke(later)  # free again: another task may write it
    assert stored(scheduler_store, output_id).reserved_by == _uuid(later)


def test_an_output_whose_upload_began_is_never_written_again(
    files: Owner, scheduler_store: Store, scheduler: Scheduler
) -> None:
    output_id = register_output(files.alice)
    later = files.task(output_id)
    interrupted = failed_task(files, scheduler, output_id, uploading=True)  # e.g. upload failed
    record = stored(scheduler_store, output_id)
    assert (record.cmac, record.reserved_by, record.upload_started) == (
        None,
        _uuid(interrupted),
        True,
    )
    refused(
        Status.UNKNOWN, f"failed to invoke task: output 'out' {USED}", lambda: files.invoke(later)
    )
    refused(
        Status.PERMISSION_DENIED,
        f"permission denied: the output {USED}; register a new output instead",
        lambda: files.update(output_id),
    )
    unassigned = files.create()
    refused(
        Status.PERMISSION_DENIED,
        f"permission denied: output 'out' {USED}",
        lambda: files.assign(unassigned, output_id),
    )
    # The owner registers a new output and runs the task again.
    fresh = files.task(register_output(files.alice))
    files.invoke(fresh)
    assert task_record(scheduler_store, fresh).status is TaskStatus.STAGED

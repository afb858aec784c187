"""A claim handed out before it is committed, committed by one party at a time: the
scheduler alone, over a store whose commits a test can hold up."""

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from at_once import in_thread
from scheduler_helpers import new_task

from teaclave.core.codec import decode, encode
from teaclave.core.model import Task, TaskResult, TaskStatus
from teaclave.proto import teaclave_scheduler_service_pb2 as pb
from teaclave.services.scheduler.liveness import Liveness
from teaclave.services.scheduler.queue import StagedQueue
from teaclave.services.scheduler.tasks import Scheduler
from teaclave.storage import keys
from teaclave.storage.api import Write
from teaclave.storage.sqlite import SqliteStore

KEY = bytes(range(32))
WAIT_SECS = 10.0


class HeldStore(SqliteStore):
    """A store whose next commit, once :meth:`hold` was called, waits for :meth:`go`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, KEY)
        self._held = False
        self.waiting = threading.Event()
        self._go = threading.Event()

    def hold(self) -> None:
        self._held = True

    def go(self) -> None:
        self._go.set()

    def commit(
        self, checks: Sequence[tuple[str, int]], writes: Sequence[Write], *, writer: str = ""
    ) -> int:
        if self._held:
            self._held = False
            self.waiting.set()
            assert self._go.wait(WAIT_SECS)
        return super().commit(checks, writes, writer=writer)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HeldStore]:
    s = HeldStore(tmp_path / "db")
    yield s
    s.close()


def just_staged(store: SqliteStore) -> Task:
    """A task staged now, as InvokeTask stages one."""
    task = new_task(TaskStatus.STAGED)
    staged = pb.StagedTask(task_id=task.uuid, task_record=encode(task))
    store.commit(
        [],
        [
            Write(keys.TASK + task.uuid, encode(task)),
            Write(keys.staged_key(time.time_ns(), task.uuid), staged.SerializeToString()),
        ],
    )
    return task


def test_a_result_waits_for_the_claim_a_heartbeat_is_committing(store: HeldStore) -> None:
    scheduler = Scheduler(store, Liveness(60.0), StagedQueue(store, store.changes, max_waiters=1))
    task = just_staged(store)
    assert scheduler.pull("e1", []).task_id == task.uuid
    store.hold()
    heartbeat = in_thread(scheduler.heartbeat, "e1", [task.uuid])
    assert store.waiting.wait(WAIT_SECS)  # the heartbeat commits the claim: held up there
    done = TaskResult.success(b"done", {}, ())
    report = in_thread(scheduler.report, "e1", task.uuid, done)
    time.sleep(0.1)  # the report is under way (were it not, it would come after anyway)
    store.go()
    assert heartbeat() == []
    report()  # no refusal: it came after the claim's commit
    [record] = store.get([keys.TASK + task.uuid])
    finished = decode(Task, record.value)
    assert (finished.status, finished.executor_id, finished.result) == (
        TaskStatus.FINISHED,
        "e1",
        done,
    )
    assert store.scan(keys.STAGED) == []


def test_a_heartbeat_waits_for_the_claim_a_result_is_committing(store: HeldStore) -> None:
    """Else it would find the task still staged, and have the executor stop it."""
    scheduler = Scheduler(store, Liveness(60.0), StagedQueue(store, store.changes, max_waiters=1))
    task = just_staged(store)
    assert scheduler.pull("e1", []).task_id == task.uuid
    store.hold()
    report = in_thread(scheduler.report, "e1", task.uuid, TaskResult.success(b"done", {}, ()))
    assert store.waiting.wait(WAIT_SECS)  # the result commits the claim: held up there
    heartbeat = in_thread(scheduler.heartbeat, "e1", [task.uuid])
    time.sleep(0.1)  # the heartbeat is under way (were it not, it would come after anyway)
    store.go()
    report()
    assert heartbeat() == []  # not stopped: it has just finished
    [record] = store.get([keys.TASK + task.uuid])
    assert decode(Task, record.value).status is TaskStatus.FINISHED

"""The scheduler service with a real storage service, driven as an execution worker."""

import functools
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path

import grpc
import pytest
from at_once import at_once
from scheduler_helpers import new_task
from waiting import wait_until

from teaclave.config import Config, Endpoints, SchedulerConfig
from teaclave.core.codec import decode, encode
from teaclave.core.ids import new_uuid
from teaclave.core.model import (
    CryptoSchema,
    FileCrypto,
    OutputFile,
    Task,
    TaskResult,
    TaskStatus,
)
from teaclave.observability import metrics
from teaclave.proto import teaclave_common_pb2 as common_pb
from teaclave.proto import teaclave_scheduler_service_pb2 as pb
from teaclave.proto import teaclave_scheduler_service_pb2_grpc as pb_grpc
from teaclave.services import scheduler, storage
from teaclave.services.base import ServiceEnv
from teaclave.storage import keys
from teaclave.storage.api import Write
from teaclave.storage.remote import RemoteStore

Runner = Callable[..., AbstractContextManager[threading.Event]]
TIMEOUT = 1.0
"""Executor timeout, in seconds of the scheduler's (fake) liveness clock."""
WAIT_SECS = 10.0
"""How long (real time) a test waits for the liveness watcher to act."""
CANCELED = TaskResult.failure("Task Canceled by the user")
LOST = TaskResult.failure("Runtime Error: Executor Timeout")
CMAC = bytes(range(16))


class LivenessClock:
    """The scheduler's liveness clock: moves only when a test advances it.

    Counts its readings so a test can wait for a whole liveness check: while no
    RPC is in flight, only the watcher reads it, once per check.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._reads = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self._reads += 1
            self._changed.notify_all()
            return self._now

    def advance_to(self, now: float) -> None:
        with self._changed:
            self._now = now

    def await_full_check(self) -> None:
        """Return once a liveness check has run from start to end since this call."""
        with self._changed:
            wanted = self._reads + 2  # the check after the next reading ran completely
            assert self._changed.wait_for(lambda: self._reads >= wanted, WAIT_SECS)


class Platform:
    """Storage (and, once started, the scheduler) running; a management store; an executor."""

    def __init__(self, config: Config, runner: Runner, stack: ExitStack) -> None:
        self.config = config
        self.clock = LivenessClock()
        self._runner = runner
        self._stack = stack
        self._storage = self._start_storage()
        stack.callback(lambda: self._storage.__exit__(None, None, None))
        self.store = RemoteStore(self._peer("management", "storage"))
        self._sequence = 0

    def _start_storage(self) -> AbstractContextManager[threading.Event]:
        running = self._runner(storage.main, self._env("storage"), ("storage",))
        running.__enter__()
        return running

    def restart_storage(self) -> None:
        """Stop the storage service and start it again (with a new key), same database."""
        self._storage.__exit__(None, None, None)
        self._storage = self._start_storage()

    def _env(self, service: str) -> ServiceEnv:
        return ServiceEnv.create(self.config, service)

    def _peer(self, service: str, target: str):
        peer = self._env(service).peer(target)
        self._stack.callback(peer.close)
        return peer

    def start_scheduler(self) -> pb_grpc.TeaclaveSchedulerStub:
        running = self._runner(
            functools.partial(scheduler.main, clock=self.clock),
            self._env("scheduler"),
            ("scheduler",),
        )
        running.__enter__()
        self._scheduler = running
        self._stack.callback(lambda: self._scheduler.__exit__(None, None, None))
        return pb_grpc.TeaclaveSchedulerStub(self._peer("execution", "scheduler").channel())

    def restart_scheduler(self) -> pb_grpc.TeaclaveSchedulerStub:
        """Stop the scheduler and start another (nothing of it kept but what it committed)."""
        self._scheduler.__exit__(None, None, None)
        return self.start_scheduler()

    def put_task(self, status: TaskStatus, **changes: object) -> Task:
        task = new_task(status, **changes)
        self.store.commit([], [Write(keys.TASK + task.uuid, encode(task))])
        return task

    def stage(
        self,
        *,
        reserve: bool = True,
        record: bytes | None = None,
        now: bool = False,
        **changes: object,
    ) -> Task:
        """A Staged task and its queue entry, committed together as InvokeTask does
        (``reserve``: its outputs reserved for it, as staged by earlier versions without;
        ``record``: what the entry carries as the task record, None: the task's; ``now``:
        its queue key carries the time, as InvokeTask's do, so it is handed out before its
        claim is committed, else it is long staged and claimed first)."""
        task = new_task(TaskStatus.STAGED, **changes)
        if reserve:
            for output in task.assigned_outputs.values():
                current = self.output(output.uuid)
                self.put(keys.OUTPUT + output.uuid, replace(current, reserved_by=task.uuid))
        self._sequence += 1
        staged = pb.StagedTask(
            task_id=task.uuid,
            function_id=task.function_id,
            function_name="builtin-echo",
            executor_type="builtin",
            executor="builtin",
            function_arguments=task.function_arguments,
            outputs=[pb.StagedOutput(name=n, url=o.url) for n, o in task.assigned_outputs.items()],
            user_id=task.creator,
            task_record=encode(task) if record is None else record,
        )
        key = keys.staged_key(time.time_ns() if now else self._sequence, task.uuid)
        self.store.commit(
            [],
            [Write(keys.TASK + task.uuid, encode(task)), Write(key, staged.SerializeToString())],
        )
        return task

    def task(self, task_uuid: str) -> Task:
        return decode(Task, self.store.get([keys.TASK + task_uuid])[0].value)

    def output(self, output_uuid: str) -> OutputFile:
        return decode(OutputFile, self.store.get([keys.OUTPUT + output_uuid])[0].value)

    def put(self, key: str, record: object) -> None:
        self.store.commit([], [Write(key, encode(record))])

    def put_output(self, cmac: bytes | None = None) -> OutputFile:
        output = OutputFile(
            uuid=new_uuid(),
            url="file:///tmp/out",
            crypto=FileCrypto(CryptoSchema.RAW),
            owners=frozenset({"alice"}),
            cmac=cmac,
        )
        self.store.commit([], [Write(keys.OUTPUT + output.uuid, encode(output))])
        return output

    def wait_for(self, task_uuid: str, status: TaskStatus, within: float = WAIT_SECS) -> Task:
        def reached() -> Task | None:
            task = self.task(task_uuid)
            return task if task.status is status else None

        found: Task = wait_until(reached, f"task {task_uuid} to be {status.name}", within)
        return found


@pytest.fixture
def platform(tmp_path: Path, loopback_endpoints: Endpoints, service_runner: Runner):
    config = Config(
        data_dir=str(tmp_path),
        endpoints=loopback_endpoints,
        scheduler=SchedulerConfig(executor_timeout_secs=TIMEOUT),
    )
    with ExitStack() as stack:
        yield Platform(config, service_runner, stack)


@pytest.fixture
def executor(platform: Platform) -> pb_grpc.TeaclaveSchedulerStub:
    return platform.start_scheduler()


def heartbeat(stub: pb_grpc.TeaclaveSchedulerStub, executor_id: str, *running: str) -> list[str]:
    """Heartbeat of ``executor_id`` running ``running``; the tasks it must stop."""
    response = stub.Heartbeat(pb.HeartbeatRequest(executor_id=executor_id, task_ids=running))
    return list(response.stop_task_ids)


def pull(
    stub: pb_grpc.TeaclaveSchedulerStub, executor_id: str, running: Sequence[str] = ()
) -> pb.StagedTask | None:
    request = pb.PullTaskRequest(executor_id=executor_id, running_task_ids=running)
    response = stub.PullTask(request)
    return response.staged_task if response.HasField("staged_task") else None


def await_request(
    executor_id: str, timeout_ms: int = 60_000, running: Sequence[str] = ()
) -> pb.AwaitTaskRequest:
    return pb.AwaitTaskRequest(
        executor_id=executor_id, timeout_ms=timeout_ms, running_task_ids=running
    )


def claimed(response: pb.AwaitTaskResponse) -> pb.StagedTask | None:
    return response.staged_task if response.HasField("staged_task") else None


def await_task(
    stub: pb_grpc.TeaclaveSchedulerStub,
    executor_id: str,
    timeout_ms: int,
    running: Sequence[str] = (),
) -> pb.StagedTask | None:
    """The task AwaitTask claims for ``executor_id`` (None: the wait ran out)."""
    request = await_request(executor_id, timeout_ms, running)
    return claimed(stub.AwaitTask(request, timeout=timeout_ms / 1000 + 30))


def await_future(stub: pb_grpc.TeaclaveSchedulerStub, executor_id: str) -> grpc.Future:
    """A call of ``executor_id`` waiting (up to a minute) for a task to claim."""
    return stub.AwaitTask.future(await_request(executor_id), timeout=90)


def report(
    stub: pb_grpc.TeaclaveSchedulerStub, executor_id: str, task_id: str, result: object
) -> None:
    stub.UpdateTaskResult(
        pb.UpdateTaskResultRequest(executor_id=executor_id, task_id=task_id, result=result)
    )


def start_upload(
    stub: pb_grpc.TeaclaveSchedulerStub, executor_id: str, task_id: str, name: str
) -> None:
    request = pb.StartUploadRequest(executor_id=executor_id, task_id=task_id, output_name=name)
    stub.StartUpload(request)


def ok(tags: dict[str, bytes]) -> common_pb.TaskResult:
    return common_pb.TaskResult(
        Ok=common_pb.TaskOutputs(return_value=b"done", tags_map=tags, log=["line"])
    )


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_claims_are_fifo_and_mark_running(platform: Platform, executor) -> None:
    assert await_task(executor, "e1", 0) is None
    first, second = platform.stage(), platform.stage()
    staged = await_task(executor, "e1", 60_000)  # answered at once: a task is staged
    assert staged is not None
    assert (staged.task_id, staged.function_name, staged.user_id) == (
        first.uuid,
        "builtin-echo",
        "alice",
    )
    running = platform.task(first.uuid)
    assert (running.status, running.executor_id) == (TaskStatus.RUNNING, "e1")
    assert pull(executor, "e2").task_id == second.uuid  # PullTask: the same claim, no wait
    assert platform.task(second.uuid).executor_id == "e2"
    assert pull(executor, "e1", [first.uuid]) is None
    assert await_task(executor, "e3", 0, [first.uuid]) is None
    assert platform.store.scan(keys.STAGED) == []


def test_tasks_no_longer_staged_are_skipped(platform: Platform, executor) -> None:
    requested = platform.stage(cancel_requested=True)
    already = platform.stage()
    stale = platform.stage()
    platform.store.commit(
        [],
        [
            Write(keys.TASK + already.uuid, encode(replace(already, status=TaskStatus.CANCELED))),
            Write(
                keys.TASK + stale.uuid,
                encode(replace(stale, status=TaskStatus.RUNNING, executor_id="other")),
            ),
        ],
    )
    wanted = platform.stage()
    assert pull(executor, "e1").task_id == wanted.uuid
    assert platform.task(requested.uuid).status is TaskStatus.CANCELED
    assert platform.task(requested.uuid).result == CANCELED
    assert platform.task(already.uuid).status is TaskStatus.CANCELED
    assert platform.task(stale.uuid).executor_id == "other"
    assert platform.store.scan(keys.STAGED) == []


def test_cancel_of_running_task_stops_it(platform: Platform, executor) -> None:
    task, other = platform.stage(), platform.stage()
    pull(executor, "e1")
    pull(executor, "e1", [task.uuid])
    assert heartbeat(executor, "e1", task.uuid, other.uuid) == []
    running = platform.task(task.uuid)
    platform.store.commit(
        [], [Write(keys.TASK + task.uuid, encode(replace(running, cancel_requested=True)))]
    )
    assert heartbeat(executor, "e1", task.uuid, other.uuid) == [task.uuid]  # that one only
    canceled = platform.task(task.uuid)
    assert (canceled.status, canceled.result) == (TaskStatus.CANCELED, CANCELED)
    assert platform.task(other.uuid).status is TaskStatus.RUNNING
    assert heartbeat(executor, "e1", task.uuid) == [task.uuid]
    report(executor, "e1", task.uuid, ok({}))  # a late result is acknowledged, ignored
    assert platform.task(task.uuid).status is TaskStatus.CANCELED


def test_ok_result_finishes_and_writes_cmacs(platform: Platform, executor) -> None:
    output = platform.put_output()
    task = platform.stage(assigned_outputs={"out": output})
    pull(executor, "e1")
    start_upload(executor, "e1", task.uuid, "out")
    report(executor, "e1", task.uuid, ok({"out": CMAC}))
    finished = platform.task(task.uuid)
    assert finished.status is TaskStatus.FINISHED
    assert finished.result == TaskResult.success(b"done", {"out": CMAC}, ("line",))
    assert finished.assigned_outputs["out"].cmac == CMAC
    written = replace(output, cmac=CMAC, reserved_by=task.uuid, upload_started=True)
    assert platform.output(output.uuid) == written
    error = rpc_error(lambda: report(executor, "e1", task.uuid, ok({})))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def storage_gets() -> float:
    """Get calls the storage service answered so far (services run in this process)."""
    counter = metrics.RPC_SERVER_HANDLED.labels("storage", "TeaclaveStorage/Get", "OK")
    return float(counter._value.get())


def test_a_claim_takes_the_task_as_its_queue_entry_recorded_it(
    platform: Platform, executor
) -> None:
    task = platform.stage()
    before = storage_gets()
    staged = await_task(executor, "e1", 0)
    assert storage_gets() == before  # the entry's record, committed with the task
    assert (staged.task_id, staged.task_record) == (task.uuid, b"")  # not sent on
    running = platform.task(task.uuid)
    assert running == replace(task, status=TaskStatus.RUNNING, executor_id="e1")


@pytest.mark.parametrize(
    "record", [b"", b"{not json"], ids=["none (queued by an earlier version)", "malformed"]
)
def test_a_queue_entry_without_a_usable_task_record_is_claimed_too(
    platform: Platform, executor, record: bytes
) -> None:
    task = platform.stage(record=record)
    before = storage_gets()
    assert await_task(executor, "e1", 0).task_id == task.uuid
    assert storage_gets() > before
    assert platform.task(task.uuid).status is TaskStatus.RUNNING


def test_the_report_of_a_claimed_task_reads_nothing_first(platform: Platform, executor) -> None:
    """The scheduler committed the Running task itself: its report starts from that."""
    task = platform.stage()
    assert await_task(executor, "e1", 0).task_id == task.uuid
    before = storage_gets()
    report(executor, "e1", task.uuid, ok({}))
    assert storage_gets() == before
    assert platform.task(task.uuid).status is TaskStatus.FINISHED


def test_a_change_after_the_claim_survives_the_report(platform: Platform, executor) -> None:
    """What the scheduler remembers of its claim is only a first guess: a task changed
    since (a cancel asked for) fails the report's commit, which reads it again."""
    task = platform.stage()
    assert await_task(executor, "e1", 0).task_id == task.uuid
    platform.put(keys.TASK + task.uuid, replace(platform.task(task.uuid), cancel_requested=True))
    before = storage_gets()
    report(executor, "e1", task.uuid, ok({}))
    assert storage_gets() > before
    finished = platform.task(task.uuid)
    assert (finished.status, finished.cancel_requested) == (TaskStatus.FINISHED, True)


def test_err_result_is_finished_with_reason(platform: Platform, executor) -> None:
    task = platform.stage()
    pull(executor, "e1")
    failure = common_pb.TaskResult(Err=common_pb.TaskFailure(reason="function failed"))
    report(executor, "e1", task.uuid, failure)
    finished = platform.task(task.uuid)
    assert (finished.status, finished.result) == (
        TaskStatus.FINISHED,
        TaskResult.failure("function failed"),
    )


def test_output_with_cmac_is_never_overwritten(platform: Platform, executor) -> None:
    written = platform.put_output(cmac=bytes(16))
    task = platform.stage(reserve=False, assigned_outputs={"out": written})
    pull(executor, "e1")
    report(executor, "e1", task.uuid, ok({"out": CMAC}))
    failed = platform.task(task.uuid)
    assert failed.status is TaskStatus.FAILED
    assert failed.result == TaskResult.failure("Runtime Error: output 'out' was already written")
    assert platform.output(written.uuid).cmac == bytes(16)


def test_a_failed_result_sets_no_cmac_at_all(platform: Platform, executor) -> None:
    fresh = platform.put_output()
    written = platform.put_output(cmac=bytes(16))
    # "a" sorts before "b": its cmac would be written first.
    task = platform.stage(reserve=False, assigned_outputs={"a": fresh, "b": written})
    pull(executor, "e1")
    start_upload(executor, "e1", task.uuid, "a")
    report(executor, "e1", task.uuid, ok({"a": CMAC, "b": CMAC}))
    assert platform.task(task.uuid).status is TaskStatus.FAILED
    # Not written, but its key and iv were used: never written again.
    assert platform.output(fresh.uuid) == replace(fresh, reserved_by=task.uuid, upload_started=True)


def test_result_from_wrong_executor_is_refused(platform: Platform, executor) -> None:
    task = platform.stage()
    pull(executor, "e1")
    error = rpc_error(lambda: report(executor, "e2", task.uuid, ok({})))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"task {task.uuid} is not running on executor e2"
    assert platform.task(task.uuid).status is TaskStatus.RUNNING
    missing = rpc_error(lambda: report(executor, "e1", "not-a-uuid", ok({})))
    assert (missing.code(), missing.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid task id",
    )
    no_result = rpc_error(lambda: report(executor, "e1", task.uuid, common_pb.TaskResult()))
    assert no_result.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_error(lambda: pull(executor, "")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_silent_executor_loses_its_task(platform: Platform, executor) -> None:
    lost, kept = platform.stage(), platform.stage()
    pull(executor, "silent")  # both seen at 0
    pull(executor, "alive")
    platform.clock.advance_to(TIMEOUT * 0.6)
    assert heartbeat(executor, "alive", kept.uuid) == []  # seen at 0.6
    platform.clock.advance_to(TIMEOUT * 1.5)  # "silent" is overdue, "alive" is not
    failed = platform.wait_for(lost.uuid, TaskStatus.FAILED)
    assert failed.result == LOST
    platform.clock.await_full_check()
    assert platform.task(kept.uuid).status is TaskStatus.RUNNING


def test_restart_fails_tasks_of_vanished_executors(platform: Platform) -> None:
    orphan = platform.put_task(TaskStatus.RUNNING, executor_id="before-restart")
    returning = platform.put_task(TaskStatus.RUNNING, executor_id="returning")
    staged = platform.put_task(TaskStatus.STAGED)
    executor = platform.start_scheduler()  # started at 0
    platform.clock.advance_to(TIMEOUT * 0.9)
    platform.clock.await_full_check()
    assert platform.task(orphan.uuid).status is TaskStatus.RUNNING  # given time to come back
    heartbeat(executor, "returning", returning.uuid)  # seen at 0.9
    platform.clock.advance_to(TIMEOUT * 1.5)
    failed = platform.wait_for(orphan.uuid, TaskStatus.FAILED)
    assert failed.result == LOST
    platform.clock.await_full_check()
    assert platform.task(returning.uuid).status is TaskStatus.RUNNING
    assert platform.task(staged.uuid).status is TaskStatus.STAGED


def test_concurrent_pulls_hand_out_each_task_once(platform: Platform, executor) -> None:
    tasks = {platform.stage().uuid for _ in range(12)}
    pulled: dict[str, list[str]] = {f"e{i}": [] for i in range(4)}

    def drain(executor_id: str) -> None:
        while (staged := pull(executor, executor_id, pulled[executor_id])) is not None:
            pulled[executor_id].append(staged.task_id)

    threads = [threading.Thread(target=drain, args=(e,)) for e in pulled]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed_out = [t for ids in pulled.values() for t in ids]
    assert sorted(handed_out) == sorted(tasks)
    for executor_id, ids in pulled.items():
        for task_uuid in ids:
            assert platform.task(task_uuid).executor_id == executor_id


def test_a_task_missing_from_the_next_pull_fails(platform: Platform, executor) -> None:
    """An executor pulls again without the task it was handed (the reply was lost)."""
    lost, other, kept = platform.stage(), platform.stage(), platform.stage()
    assert pull(executor, "forgetful").task_id == lost.uuid
    assert pull(executor, "other").task_id == other.uuid
    assert pull(executor, "forgetful").task_id == kept.uuid  # without `lost`
    failed = platform.task(lost.uuid)
    assert failed.status is TaskStatus.FAILED
    assert failed.result.reason == "Runtime Error: executor lost the task"
    assert pull(executor, "forgetful", [kept.uuid]) is None
    assert platform.task(kept.uuid).status is TaskStatus.RUNNING
    assert platform.task(other.uuid).status is TaskStatus.RUNNING  # another executor's
    assert heartbeat(executor, "forgetful") == []  # a heartbeat fails nothing
    assert platform.task(kept.uuid).status is TaskStatus.RUNNING


def test_a_task_staged_while_an_executor_waits_is_claimed_for_it(
    platform: Platform, executor
) -> None:
    assert await_task(executor, "e1", 0) is None  # nothing staged: the wait runs out
    waiting = await_future(executor, "e1")
    task = platform.stage()
    assert claimed(waiting.result()).task_id == task.uuid
    running = platform.task(task.uuid)
    assert (running.status, running.executor_id) == (TaskStatus.RUNNING, "e1")
    assert platform.store.scan(keys.STAGED) == []


def first_answered(futures: Sequence[grpc.Future]) -> grpc.Future:
    answered: grpc.Future = wait_until(
        lambda: next((f for f in futures if f.done()), None), "an answer", WAIT_SECS
    )
    return answered


def test_of_two_waiting_executors_exactly_one_gets_a_task(platform: Platform, executor) -> None:
    """Both are woken by the staging; the one whose claim commits gets the task, the other
    waits on and gets the next one (several rounds: the race goes either way)."""
    for _ in range(4):
        waiting = {name: await_future(executor, name) for name in ("e1", "e2")}
        first = platform.stage()
        answered = first_answered(list(waiting.values()))
        assert claimed(answered.result()).task_id == first.uuid
        [winner] = [n for n, f in waiting.items() if f is answered]
        [(loser, other)] = [(n, f) for n, f in waiting.items() if f is not answered]
        assert not other.done()
        second = platform.stage()
        assert claimed(other.result()).task_id == second.uuid
        assert platform.task(first.uuid).executor_id == winner
        assert platform.task(second.uuid).executor_id == loser
        report(executor, winner, first.uuid, ok({}))  # so that their next calls lose nothing
        report(executor, loser, second.uuid, ok({}))


def test_a_task_missing_from_the_next_await_fails(platform: Platform, executor) -> None:
    """AwaitTask's reply is lost after the claim: the executor's next call does not list
    the task, which fails; the tasks it lists keep running."""
    lost, kept = platform.stage(), platform.stage()
    assert await_task(executor, "forgetful", 0).task_id == lost.uuid
    assert await_task(executor, "forgetful", 0, [lost.uuid]).task_id == kept.uuid
    assert await_task(executor, "forgetful", 0, [kept.uuid]) is None  # `lost` left out
    failed = platform.task(lost.uuid)
    assert (failed.status, failed.result) == (
        TaskStatus.FAILED,
        TaskResult.failure("Runtime Error: executor lost the task"),
    )
    assert platform.task(kept.uuid).status is TaskStatus.RUNNING
    assert await_task(executor, "forgetful", 0, [kept.uuid]) is None
    assert platform.task(kept.uuid).status is TaskStatus.RUNNING


def test_waiting_executors_get_each_task_exactly_once(platform: Platform, executor) -> None:
    """Four executors wait while tasks are staged one by one: each task runs on exactly
    one of them (the claim is one commit)."""
    count = 12
    pulled: dict[str, list[str]] = {f"e{i}": [] for i in range(4)}
    lock = threading.Lock()
    done = threading.Event()

    def serve(executor_id: str) -> None:
        while not done.is_set():
            staged = await_task(executor, executor_id, 1000, pulled[executor_id])
            if staged is not None:
                with lock:
                    pulled[executor_id].append(staged.task_id)
                    if sum(len(ids) for ids in pulled.values()) == count:
                        done.set()

    threads = [threading.Thread(target=serve, args=(e,)) for e in pulled]
    for thread in threads:
        thread.start()
    staged = [platform.stage().uuid for _ in range(count)]
    assert done.wait(WAIT_SECS * 3), f"handed out: {pulled}"
    for thread in threads:
        thread.join()
    handed_out = [t for ids in pulled.values() for t in ids]
    assert sorted(handed_out) == sorted(staged)
    for executor_id, ids in pulled.items():
        for task_uuid in ids:
            task = platform.task(task_uuid)
            assert (task.status, task.executor_id) == (TaskStatus.RUNNING, executor_id)


def test_too_many_waiting_executors_are_refused(platform: Platform, executor) -> None:
    """At most eight executors wait at once (each holds a server thread): of nine, one is
    refused RESOURCE_EXHAUSTED; the eight each claim one of eight tasks staged then."""
    futures = [await_future(executor, f"e{i}") for i in range(scheduler.MAX_WAITING_EXECUTORS + 1)]
    wait_until(lambda: any(f.done() for f in futures), "one wait to be refused", WAIT_SECS)
    [refused] = [f for f in futures if f.done()]
    assert refused.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.exception().details() == "too many calls waiting; try again later"
    staged = {platform.stage().uuid for _ in range(scheduler.MAX_WAITING_EXECUTORS)}
    handed_out = [claimed(f.result()).task_id for f in futures if f is not refused]
    assert sorted(handed_out) == sorted(staged)
    late = platform.stage()
    assert await_task(executor, "late", 60_000).task_id == late.uuid


def refused_at_once(stub: pb_grpc.TeaclaveSchedulerStub) -> bool:
    """Whether an AwaitTask that would not wait is refused: every waiting slot is taken."""
    try:
        await_task(stub, "probe", 0)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return True
    return False


def test_a_canceled_wait_ends_and_claims_nothing(platform: Platform, executor) -> None:
    """An executor that gave up its call (e.g. it stopped) leaves the wait at once: its
    slot is free again, and the tasks staged next go to the callers still waiting."""
    futures = {
        f"e{i}": await_future(executor, f"e{i}") for i in range(scheduler.MAX_WAITING_EXECUTORS + 1)
    }
    refused = first_answered(list(futures.values()))  # the others all wait
    assert refused.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    waiting = [name for name, f in futures.items() if f is not refused]
    gone = waiting.pop()
    futures[gone].cancel()
    wait_until(lambda: not refused_at_once(executor), "the canceled wait to end", WAIT_SECS)
    staged = {platform.stage().uuid for _ in waiting}
    handed_out = [claimed(futures[name].result()).task_id for name in waiting]
    assert sorted(handed_out) == sorted(staged)
    assert gone not in {platform.task(t).executor_id for t in staged}


def test_a_task_staged_after_a_storage_restart_reaches_a_waiting_executor(
    platform: Platform, executor
) -> None:
    """The scheduler's watch of the queue was cut by the restart: it watches again from
    where it was, and misses nothing committed meanwhile."""
    assert await_task(executor, "e1", 0) is None
    platform.restart_storage()
    waiting = await_future(executor, "e1")
    task = platform.stage()
    assert claimed(waiting.result()).task_id == task.uuid


# --- the upload record: an output's key and iv encrypt one plaintext, ever ---------


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    error = rpc_error(call)
    return error.code(), error.details()


def refused_upload(reason: str) -> tuple[grpc.StatusCode, str]:
    return grpc.StatusCode.FAILED_PRECONDITION, f"cannot start the upload: {reason}"


def test_the_upload_record_is_granted_only_to_the_running_holder(
    platform: Platform, executor
) -> None:
    output = platform.put_output()
    task = platform.stage(assigned_outputs={"out": output})
    queued = platform.stage(assigned_outputs={"out": platform.put_output()})
    pull(executor, "e1")

    def start(executor_id: str, task_id: str, name: str = "out") -> tuple[grpc.StatusCode, str]:
        return refusal(lambda: start_upload(executor, executor_id, task_id, name))

    assert start("e2", task.uuid) == refused_upload("the task runs on another executor")
    assert start("e1", task.uuid, "nope") == refused_upload("the task has no output 'nope'")
    assert start("e1", new_uuid()) == refused_upload("no such task")
    assert start("e1", queued.uuid) == refused_upload("the task is Staged")
    assert start("e1", task.uuid, "") == (grpc.StatusCode.INVALID_ARGUMENT, "empty output name")
    assert start("e1", "not-a-uuid") == (grpc.StatusCode.INVALID_ARGUMENT, "invalid task id")
    assert platform.output(output.uuid) == replace(output, reserved_by=task.uuid)

    start_upload(executor, "e1", task.uuid, "out")
    start_upload(executor, "e1", task.uuid, "out")  # a retry after a lost reply is granted
    started = replace(output, reserved_by=task.uuid, upload_started=True)
    assert platform.output(output.uuid) == started


def test_a_canceled_task_gets_no_upload_record(platform: Platform, executor) -> None:
    output = platform.put_output()
    task = platform.stage(assigned_outputs={"out": output})
    pull(executor, "e1")
    platform.put(keys.TASK + task.uuid, replace(platform.task(task.uuid), cancel_requested=True))
    assert refusal(lambda: start_upload(executor, "e1", task.uuid, "out")) == refused_upload(
        "the task was canceled"
    )
    assert heartbeat(executor, "e1", task.uuid) == [task.uuid]
    assert platform.task(task.uuid).status is TaskStatus.CANCELED
    assert platform.output(output.uuid) == output  # free again
    assert refusal(lambda: start_upload(executor, "e1", task.uuid, "out")) == refused_upload(
        "the task is Canceled"
    )


def test_two_tasks_reaching_the_upload_of_one_output_only_one_gets_it(
    platform: Platform, executor
) -> None:
    """Even with no reservation (tasks staged before reservations existed, both Running
    with one output), the upload record goes to exactly one of them."""
    for _ in range(8):
        output = platform.put_output()
        tasks = [platform.stage(reserve=False, assigned_outputs={"out": output}) for _ in "ab"]
        for index in range(2):
            assert pull(executor, f"e{index}") is not None
        errors = at_once(
            [
                partial(start_upload, executor, f"e{index}", task.uuid, "out")
                for index, task in enumerate(tasks)
            ]
        )
        [(winner, _)] = [(t.uuid, e) for t, e in zip(tasks, errors, strict=True) if e is None]
        [(loser, error)] = [(t.uuid, e) for t, e in zip(tasks, errors, strict=True) if e]
        assert isinstance(error, grpc.RpcError)
        assert (error.code(), error.details()) == refused_upload(
            "the output was used by an upload that has not completed"
        )
        assert platform.output(output.uuid) == replace(
            output, reserved_by=winner, upload_started=True
        )
        index = [task.uuid for task in tasks].index(winner)
        report(executor, f"e{index}", winner, ok({"out": CMAC}))
        report(executor, f"e{1 - index}", loser, ok({"out": CMAC}))  # claims it anyway
        assert platform.task(winner).status is TaskStatus.FINISHED
        assert platform.task(loser).result == TaskResult.failure(
            "Runtime Error: output 'out' was already written"
        )


def test_a_task_that_ends_frees_the_outputs_it_never_began_uploading(
    platform: Platform, executor
) -> None:
    failure = common_pb.TaskResult(Err=common_pb.TaskFailure(reason="function failed"))

    def running(executor_id: str, **changes: object) -> tuple[Task, OutputFile, OutputFile]:
        first, second = platform.put_output(), platform.put_output()
        task = platform.stage(assigned_outputs={"a": first, "b": second}, **changes)
        assert pull(executor, executor_id) is not None
        return task, first, second

    def freed(output: OutputFile) -> bool:
        return platform.output(output.uuid) == output

    task, first, second = running("e1")  # the function failed
    report(executor, "e1", task.uuid, failure)
    assert freed(first)
    assert freed(second)

    task, first, second = running("e1")  # the second upload failed: the first key was used
    start_upload(executor, "e1", task.uuid, "a")
    report(executor, "e1", task.uuid, failure)
    assert platform.output(first.uuid) == replace(first, reserved_by=task.uuid, upload_started=True)
    assert freed(second)

    task, first, second = running("e1")  # a result for outputs never recorded
    report(executor, "e1", task.uuid, ok({"a": CMAC, "b": CMAC}))
    assert platform.task(task.uuid).result == TaskResult.failure(
        "Runtime Error: output 'a' has no upload record"
    )
    assert freed(first)
    assert freed(second)

    task, first, second = running("forgetful")  # the executor lost it
    assert pull(executor, "forgetful") is None
    assert platform.task(task.uuid).status is TaskStatus.FAILED
    assert freed(first)
    assert freed(second)

    canceled = platform.stage(assigned_outputs={"a": first}, cancel_requested=True)
    assert pull(executor, "e1") is None  # canceled as it is dequeued
    assert platform.task(canceled.uuid).status is TaskStatus.CANCELED
    assert freed(first)


def storage_commits() -> float:
    """Commits the storage service made so far (services run in this process)."""
    counter = metrics.RPC_SERVER_HANDLED.labels("storage", "TeaclaveStorage/Commit", "OK")
    return float(counter._value.get())


def test_a_task_just_staged_is_handed_out_and_its_claim_committed_with_its_result(
    platform: Platform, executor
) -> None:
    task = platform.stage(now=True)
    before = storage_commits()
    assert await_task(executor, "e1", 0).task_id == task.uuid
    assert platform.task(task.uuid) == task  # still Staged: the claim is not committed
    assert [r.key for r in platform.store.scan(keys.STAGED)] != []
    assert pull(executor, "e2") is None  # but it is handed out once
    report(executor, "e1", task.uuid, ok({}))
    assert storage_commits() == before + 1  # the claim and the result in one commit
    finished = platform.task(task.uuid)
    assert finished == replace(
        task,
        status=TaskStatus.FINISHED,
        executor_id="e1",
        result=TaskResult.success(b"done", {}, ("line",)),
    )
    assert platform.store.scan(keys.STAGED) == []
    assert refusal(lambda: report(executor, "e1", task.uuid, ok({}))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"task {task.uuid} is not running on executor e1",
    )


def test_another_executor_cannot_report_a_task_handed_out_uncommitted(
    platform: Platform, executor
) -> None:
    task = platform.stage(now=True)
    assert pull(executor, "e1").task_id == task.uuid
    assert refusal(lambda: report(executor, "e2", task.uuid, ok({}))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"task {task.uuid} is not running on executor e2",
    )
    assert platform.task(task.uuid).status is TaskStatus.STAGED
    report(executor, "e1", task.uuid, ok({}))
    assert platform.task(task.uuid).status is TaskStatus.FINISHED


@pytest.mark.parametrize("first", ["heartbeat", "upload", "lost"])
def test_a_claim_handed_out_is_committed_before_anything_else_about_its_task(
    platform: Platform, executor, first: str
) -> None:
    """A heartbeat that lists the task, an upload, or the executor losing it: each
    finds the task Running on its executor first, as if the claim had been committed."""
    output = platform.put_output()
    task = platform.stage(now=True, assigned_outputs={"out": output})
    assert pull(executor, "e1").task_id == task.uuid
    running = replace(task, status=TaskStatus.RUNNING, executor_id="e1")
    if first == "heartbeat":
        assert heartbeat(executor, "e1", task.uuid) == []
        assert platform.task(task.uuid) == running
    elif first == "upload":
        start_upload(executor, "e1", task.uuid, "out")
        assert platform.task(task.uuid) == running
        assert platform.output(output.uuid).upload_started
    else:
        assert pull(executor, "e1") is None  # not among its running tasks: lost
        failed = platform.task(task.uuid)
        assert (failed.status, failed.executor_id) == (TaskStatus.FAILED, "e1")
        assert failed.result == TaskResult.failure("Runtime Error: executor lost the task")
        assert platform.output(output.uuid) == output  # freed
    assert platform.store.scan(keys.STAGED) == []


def test_a_task_canceled_before_its_claim_was_committed_gets_no_result(
    platform: Platform, executor
) -> None:
    task = platform.stage(now=True)
    assert pull(executor, "e1").task_id == task.uuid
    canceled = replace(task, status=TaskStatus.CANCELED, result=CANCELED)  # as CancelTask does
    platform.put(keys.TASK + task.uuid, canceled)
    assert refusal(lambda: report(executor, "e1", task.uuid, ok({}))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"task {task.uuid} changed before it was claimed",
    )
    assert platform.task(task.uuid) == canceled
    assert pull(executor, "e2") is None  # its entry goes back to the queue, and is dropped
    assert platform.store.scan(keys.STAGED) == []
    assert heartbeat(executor, "e1", task.uuid) == [task.uuid]
    assert platform.task(task.uuid) == canceled


def test_a_claim_not_committed_before_a_restart_is_handed_out_again(
    platform: Platform, executor
) -> None:
    """Only the executor the restarted scheduler handed the task to may report it."""
    task = platform.stage(now=True)
    assert pull(executor, "e1").task_id == task.uuid
    restarted = platform.restart_scheduler()
    assert pull(restarted, "e2").task_id == task.uuid
    assert refusal(lambda: report(restarted, "e1", task.uuid, ok({}))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"task {task.uuid} is not running on executor e1",
    )
    report(restarted, "e2", task.uuid, ok({}))
    finished = platform.task(task.uuid)
    assert (finished.status, finished.executor_id) == (TaskStatus.FINISHED, "e2")

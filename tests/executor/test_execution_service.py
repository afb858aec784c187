"""The execution service against real storage and scheduler services (threads, loopback)."""

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from executor_helpers import (
    IV,
    KEY,
    decrypt_file,
    descendants,
    psi_task,
    python_echo,
    task_processes,
    zygotes,
)
from processes import children, gone, is_spare, parent
from waiting import wait_until

from teaclave.config import Config, Endpoints, ExecutionConfig, SchedulerConfig
from teaclave.core.codec import decode, encode
from teaclave.core.ids import new_uuid
from teaclave.core.model import (
    CryptoSchema,
    Executor,
    FileCrypto,
    OutputFile,
    Task,
    TaskStatus,
)
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask
from teaclave.services import execution, scheduler, storage
from teaclave.services.base import ServiceEnv, ServiceMain
from teaclave.storage import keys
from teaclave.storage.api import Conflict, Write
from teaclave.storage.remote import RemoteStore

Runner = Callable[..., AbstractContextManager[Any]]


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    (tmp_path / "files").mkdir()
    return Config(
        data_dir=str(tmp_path / "data"),
        endpoints=loopback_endpoints,
        scheduler=SchedulerConfig(heartbeat_interval_secs=0.05),
        execution=ExecutionConfig(file_roots=(str(tmp_path / "files"),)),
    )


class Services:
    """Storage, scheduler and execution running (threads), each restartable; ``store``:
    the store as the management service sees it."""

    MAINS: dict[str, tuple[ServiceMain, tuple[str, ...]]] = {
        "storage": (storage.main, ("storage",)),
        "scheduler": (scheduler.main, ("scheduler",)),
        "execution": (execution.main, ()),
    }

    def __init__(self, config: Config, runner: Runner) -> None:
        self._config = config
        self._runner = runner
        self._running: dict[str, AbstractContextManager[Any]] = {}
        self._peer = ServiceEnv.create(config, "management").peer("storage")
        self.store = RemoteStore(self._peer)

    def start(self, name: str) -> None:
        main, endpoints = self.MAINS[name]
        running = self._runner(main, ServiceEnv.create(self._config, name), endpoints)
        running.__enter__()
        self._running[name] = running

    def restart(self, name: str) -> None:
        """Stop ``name`` and start it again (with a new key; the same data)."""
        self._running.pop(name).__exit__(None, None, None)
        self.start(name)

    def __enter__(self) -> "Services":
        for name in self.MAINS:
            self.start(name)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name in reversed(list(self.MAINS)):
            if name in self._running:
                self._running.pop(name).__exit__(None, None, None)
        self._peer.close()


@pytest.fixture
def store(config: Config, service_runner: Runner) -> Iterator[RemoteStore]:
    """Storage, scheduler and execution running; the store as the management service."""
    with Services(config, service_runner) as services:
        yield services.store


def stage(
    store: RemoteStore,
    staged: StagedTask,
    sequence: int,
    outputs: dict[str, OutputFile] | None = None,
) -> str:
    """Commit ``staged`` as a Staged task with its outputs reserved for it, as InvokeTask
    would; ``outputs``: registered output records to assign instead, left unreserved (as
    if staged before reservations existed)."""
    staged.task_id = new_uuid()
    crypto = FileCrypto(CryptoSchema.AES_GCM_128, KEY, IV)
    reserved = outputs is None
    if outputs is None:
        outputs = {
            output.name: OutputFile(
                new_uuid(), output.url, crypto, frozenset({"user"}), reserved_by=staged.task_id
            )
            for output in staged.outputs
        }
    task = Task(
        uuid=staged.task_id,
        creator="user",
        function_id=new_uuid(),
        function_owner="user",
        function_arguments=staged.function_arguments,
        executor=Executor.BUILTIN,
        inputs_ownership={i.name: frozenset({"user"}) for i in staged.inputs},
        outputs_ownership={name: frozenset({"user"}) for name in outputs},
        participants=frozenset({"user"}),
        assigned_outputs=outputs,
        status=TaskStatus.STAGED,
    )
    writes = [Write(keys.OUTPUT + o.uuid, encode(o)) for o in outputs.values() if reserved]
    writes.append(Write(keys.TASK + task.uuid, encode(task)))
    writes.append(Write(keys.staged_key(sequence, task.uuid), staged.SerializeToString()))
    store.commit([], writes)
    return task.uuid


def load(store: RemoteStore, task_uuid: str) -> Task:
    return decode(Task, store.get([keys.TASK + task_uuid])[0].value)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    return wait_until(condition, "the condition", timeout, poll=0.01)


def ended(store: RemoteStore, task_uuid: str) -> Callable[[], Task | None]:
    def check() -> Task | None:
        task = load(store, task_uuid)
        return task if task.status.ended else None

    return check


def our_task_processes() -> list[int]:
    """The task processes of our zygote (the execution service runs in this process)."""
    return task_processes(os.getpid())


def endless_task(directory: Path) -> StagedTask:
    """A Python task over the PSI inputs in ``directory`` whose function never returns."""
    staged = psi_task(directory)
    staged.executor_type = staged.executor = "python"
    staged.function_payload = b"import time\ndef entrypoint(argv):\n    time.sleep(3600)\n"
    staged.function_arguments = "{}"
    return staged


def test_runs_a_staged_task(tmp_path: Path, store: RemoteStore) -> None:
    files = tmp_path / "files"
    task_uuid = stage(store, psi_task(files), 1)
    task = wait_for(ended(store, task_uuid))
    assert task.status is TaskStatus.FINISHED, task.result
    assert task.result.ok
    assert task.result.return_value == b"3 common items"
    output = task.assigned_outputs["output_result1"]
    assert output.cmac == task.result.tags["output_result1"]
    assert (output.reserved_by, output.upload_started) == (task_uuid, True)
    assert decrypt_file(files / "out1.enc", output.cmac) == b"0101010"


def test_a_result_is_recorded_before_its_process_ends(tmp_path: Path, store: RemoteStore) -> None:
    """The result frame is the worker's last word: the task is Finished even while the
    zygote, stopped, cannot report the process's end (its slot stays busy till then)."""
    (zygote,) = wait_for(lambda: zygotes(os.getpid()))
    wait_for(lambda: [c for c in children(zygote) if is_spare(c)])  # the spare
    os.kill(zygote, signal.SIGSTOP)
    try:
        task = wait_for(ended(store, stage(store, psi_task(tmp_path / "files"), 1)))
        assert task.status is TaskStatus.FINISHED, task.result
        assert task.result.return_value == b"3 common items"
    finally:
        os.kill(zygote, signal.SIGCONT)


def test_the_next_spare_forks_the_sandbox_the_last_task_needed(store: RemoteStore) -> None:
    """Each task's header goes ahead to the next spare: after a Python task, the spare
    waits with a Python sandbox forked for the next one."""
    (zygote,) = wait_for(lambda: zygotes(os.getpid()))
    assert wait_for(ended(store, stage(store, python_echo(), 1))).result.return_value == b"hi"
    wait_for(lambda: [c for c in children(zygote) if is_spare(c) and descendants(c)])


def test_failures_are_reported(tmp_path: Path, store: RemoteStore) -> None:
    staged = psi_task(tmp_path / "files")
    staged.inputs[0].cmac = bytes(16)
    task = wait_for(ended(store, stage(store, staged, 1)))
    assert task.status is TaskStatus.FINISHED
    assert task.result.reason == "input 'input_data1': cmac mismatch"


def test_a_task_with_a_bad_limit_fails_without_a_worker(tmp_path: Path, store: RemoteStore) -> None:
    staged = psi_task(tmp_path / "files")
    staged.function_arguments = '{"teaclave.cpu_secs":1}'  # a built-in: runs no limits
    task = wait_for(ended(store, stage(store, staged, 1)))
    assert task.result.reason == "invalid task: builtin functions take no limits"
    assert our_task_processes() == []


def request_cancel(store: RemoteStore, task_uuid: str) -> None:
    """Set the task's cancel request, as CancelTask does for a Running task."""

    def once() -> bool:
        record = store.get([keys.TASK + task_uuid])[0]
        task = dataclasses.replace(decode(Task, record.value), cancel_requested=True)
        try:
            store.commit([(record.key, record.version)], [Write(record.key, encode(task))])
        except Conflict:
            return False
        return True

    wait_for(once)


def running_child(known: set[int]) -> int:
    """A task process not in ``known`` as soon as its function runs (its sandbox exists)."""
    child = wait_for(lambda: sorted(set(our_task_processes()) - known), timeout=30)[0]
    wait_for(lambda: descendants(child))
    known.add(child)
    return child


def test_cancel_kills_only_that_task(tmp_path: Path, store: RemoteStore) -> None:
    """The first task runs a function that never returns; the second runs beside it;
    canceling the first kills only its process (and its sandbox)."""
    first, second = tmp_path / "files" / "first", tmp_path / "files" / "second"
    first.mkdir()
    second.mkdir()
    canceled = stage(store, endless_task(first), 1)
    child = running_child(set())
    sandbox = descendants(child)
    assert load(store, canceled).status is TaskStatus.RUNNING
    finished = stage(store, psi_task(second), 2)
    assert wait_for(ended(store, finished)).result.return_value == b"3 common items"
    request_cancel(store, canceled)
    task = wait_for(ended(store, canceled))
    assert task.status is TaskStatus.CANCELED
    assert task.result.reason == "Task Canceled by the user"
    wait_for(lambda: all(gone(pid) for pid in (child, *sandbox)))
    assert not (first / "out1.enc").exists()
    assert (second / "out1.enc").exists()


def test_runs_tasks_at_once_up_to_its_limit(
    tmp_path: Path, config: Config, service_runner: Runner
) -> None:
    """With two slots: two tasks staged together both run at once (functions that never
    return: the executor asks for the next task as soon as it started one) and a third
    stays Staged until one of them ends (here: is canceled)."""
    config = dataclasses.replace(
        config, execution=dataclasses.replace(config.execution, max_concurrent_tasks=2)
    )
    directories = [tmp_path / "files" / name for name in ("a", "b", "c")]
    for directory in directories:
        directory.mkdir()
    with Services(config, service_runner) as services:
        store = services.store
        held = stage(store, endless_task(directories[0]), 1)
        other = stage(store, endless_task(directories[1]), 2)
        known: set[int] = set()
        running_child(known)
        running_child(known)
        queued = stage(store, psi_task(directories[2]), 3)
        statuses = [load(store, t).status for t in (held, other, queued)]
        assert statuses == [TaskStatus.RUNNING, TaskStatus.RUNNING, TaskStatus.STAGED]
        request_cancel(store, held)
        assert wait_for(ended(store, queued)).result.return_value == b"3 common items"
        assert wait_for(ended(store, held)).status is TaskStatus.CANCELED
        request_cancel(store, other)
        assert wait_for(ended(store, other)).status is TaskStatus.CANCELED


def test_a_staged_task_needs_no_heartbeat(
    tmp_path: Path, config: Config, service_runner: Runner
) -> None:
    """Heartbeats an hour apart: a staged task still reaches the waiting executor, and
    so does one staged after the scheduler, the storage or the executor restarted."""
    config = dataclasses.replace(config, scheduler=SchedulerConfig(heartbeat_interval_secs=3600))
    with Services(config, service_runner) as services:
        for sequence, restarted in enumerate(("", "scheduler", "storage", "execution"), 1):
            if restarted:
                services.restart(restarted)
            directory = tmp_path / "files" / str(sequence)
            directory.mkdir()
            task_uuid = stage(services.store, psi_task(directory), sequence)
            task = wait_for(ended(services.store, task_uuid))
            assert task.result.return_value == b"3 common items", restarted


def test_survives_an_unreachable_scheduler(
    tmp_path: Path, config: Config, service_runner: Runner
) -> None:
    peer = ServiceEnv.create(config, "management").peer("storage")
    with service_runner(execution.main, ServiceEnv.create(config, "execution")):
        time.sleep(0.5)  # several heartbeats fail: nothing listens yet
        with (
            service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)),
            service_runner(scheduler.main, ServiceEnv.create(config, "scheduler"), ("scheduler",)),
        ):
            store = RemoteStore(peer)
            task = wait_for(ended(store, stage(store, psi_task(tmp_path / "files"), 1)))
            assert task.result.return_value == b"3 common items"
    peer.close()


def test_two_tasks_sharing_outputs_only_one_uploads(
    tmp_path: Path, config: Config, store: RemoteStore, service_runner: Runner
) -> None:
    """Two tasks holding the same output records (staged without reservations) run on two
    executors at once: exactly one gets the upload records and uploads; nothing of the
    other's plaintext leaves under the shared keys and ivs."""
    crypto = FileCrypto(CryptoSchema.AES_GCM_128, KEY, IV)
    shared = {
        name: OutputFile(new_uuid(), f"file:///{name}", crypto, frozenset({"user"}))
        for name in ("output_result1", "output_result2")
    }
    store.commit([], [Write(keys.OUTPUT + o.uuid, encode(o)) for o in shared.values()])
    directories = [tmp_path / "files" / name for name in ("first", "second")]
    with service_runner(execution.main, ServiceEnv.create(config, "execution")):
        task_uuids = []
        for sequence, directory in enumerate(directories, 1):
            directory.mkdir()
            task_uuids.append(stage(store, psi_task(directory), sequence, shared))
        ended_tasks = [wait_for(ended(store, task_uuid)) for task_uuid in task_uuids]
    [winner] = [index for index, task in enumerate(ended_tasks) if task.result.ok]
    loser = ended_tasks[1 - winner]
    assert loser.result.reason in {
        f"output 'output_result1': cannot start the upload: the output {why}"
        for why in ("was used by an upload that has not completed", "was already written")
    }
    assert (directories[winner] / "out1.enc").exists()
    assert (directories[winner] / "out2.enc").exists()
    assert list(directories[1 - winner].glob("out*")) == []
    records = store.get([keys.OUTPUT + o.uuid for o in shared.values()])
    for record, name in zip(records, shared, strict=True):
        written = decode(OutputFile, record.value)
        assert written.cmac == ended_tasks[winner].result.tags[name]
        assert written.reserved_by == task_uuids[winner]


def test_a_killed_zygote_fails_its_task_and_another_serves(
    tmp_path: Path, store: RemoteStore
) -> None:
    first, second = tmp_path / "files" / "first", tmp_path / "files" / "second"
    first.mkdir()
    second.mkdir()
    lost = stage(store, endless_task(first), 1)
    child = wait_for(our_task_processes)[0]
    wait_for(lambda: descendants(child))  # it runs its function
    os.kill(parent(child), signal.SIGKILL)
    task = wait_for(ended(store, lost))
    assert task.status is TaskStatus.FINISHED
    assert task.result.reason == "executor process lost: the zygote was killed by SIGKILL"
    served = wait_for(ended(store, stage(store, psi_task(second), 2)))
    assert served.result.return_value == b"3 common items"
    assert not (first / "out1.enc").exists()


def test_a_task_handed_out_again_while_it_runs_here_runs_once(
    config: Config, service_runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler restarted before it committed the task's claim (no heartbeat came:
    they are an hour apart) and hands the task out again, to the executor running it:
    that executor keeps the one task process it has, whose result is recorded."""
    config = dataclasses.replace(config, scheduler=SchedulerConfig(heartbeat_interval_secs=3600))
    with Services(config, service_runner) as services:
        staged = python_echo()
        staged.function_payload = (
            b"import time\ndef entrypoint(argv):\n    time.sleep(3)\n    return argv[1]\n"
        )
        task_uuid = stage(services.store, staged, time.time_ns())  # just staged
        [process] = wait_for(our_task_processes)
        assert load(services.store, task_uuid).status is TaskStatus.STAGED  # not committed
        services.restart("scheduler")
        wait_for(
            lambda: (
                "handed out again while it runs here" in caplog.text
                or len(our_task_processes()) > 1
            )
        )
        assert our_task_processes() == [process]
        task = wait_for(ended(services.store, task_uuid))
        assert (task.status, task.result.return_value) == (TaskStatus.FINISHED, b"hi")

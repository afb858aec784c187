"""The execution service: heartbeats the scheduler and runs each task in a process of its own.

It serves nothing. Every ``scheduler.heartbeat_interval_secs`` it reports its
status; on ``NewTask`` while idle it pulls a task and has its zygote fork a task
process (:mod:`teaclave.executor.launcher`), which runs the worker
(:mod:`teaclave.executor.worker`) in its own process group. A thread feeds the
task process, asks the scheduler to record each upload before it may begin
(``StartUpload``), and reports the result; on ``Stop`` for that task only its
task process is killed (its sandbox dies with it) and nothing is reported.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor import uploads, worker
from teaclave.executor.launcher import Launcher, LauncherError, TaskProcess
from teaclave.executor.task import is_wasm, sandbox_kind, sandbox_view
from teaclave.observability import metrics
from teaclave.proto.teaclave_common_pb2 import TaskFailure, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import (
    Executing,
    HeartbeatRequest,
    Idle,
    NewTask,
    PullTaskRequest,
    StagedTask,
    StartUploadRequest,
    Stop,
    UpdateTaskResultRequest,
)
from teaclave.proto.teaclave_scheduler_service_pb2_grpc import TeaclaveSchedulerStub
from teaclave.rpc.channel import Peer
from teaclave.services.base import ServiceEnv
from teaclave.services.execution.modules import ModuleCache
from teaclave.services.execution.observe import TaskRun

log = logging.getLogger(__name__)

T = TypeVar("T")

_RPC_TIMEOUT_SECS = 10.0


def _transient(exc: Exception) -> bool:
    """Whether a failed scheduler call may succeed if tried again later."""
    if isinstance(exc, grpc.Call):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(exc, TeaclaveError) and exc.status is Status.UNAVAILABLE


def _reason(exc: grpc.RpcError | TeaclaveError) -> str:
    """The message of a failed scheduler call."""
    if isinstance(exc, TeaclaveError):
        return exc.message
    return (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)


class _Task:
    """A task running in a task process; a thread feeds it, answers its upload requests
    with ``start_upload(task, output name)`` ('' grants, else why not) and collects its result.
    """

    def __init__(
        self,
        task_id: str,
        envelope: bytes,
        process: TaskProcess,
        *,
        on_done: Callable[[_Task, TaskResult], None],
        start_upload: Callable[[_Task, str], str],
        run: TaskRun,
    ) -> None:
        self.task_id = task_id
        self.run = run
        self.canceled = threading.Event()
        self._process = process
        self._thread = threading.Thread(
            target=self._wait,
            args=(envelope, on_done, start_upload),
            name=f"task-{self.task_id}",
            daemon=True,
        )

    def start(self) -> None:
        """Hand the task to its process and wait for it in the background."""
        self._thread.start()

    def _wait(
        self,
        envelope: bytes,
        on_done: Callable[[_Task, TaskResult], None],
        start_upload: Callable[[_Task, str], str],
    ) -> None:
        with self.run.active():  # the result's report belongs to the task's trace too
            with self._process as process:
                output = uploads.serve(
                    process.stdin,
                    process.stdout,
                    envelope,
                    lambda name: start_upload(self, name),
                    self.run.stages,
                )
                if output is None:  # it broke the protocol
                    process.kill()
                try:
                    result = worker.read_result(process.wait().returncode, output)
                except LauncherError as exc:  # lost with the zygote
                    result = TaskResult(Err=TaskFailure(reason=str(exc)))
            if not self.canceled.is_set():
                on_done(self, result)

    def kill(self) -> None:
        """Kill the task process and wait until the task is over."""
        self.canceled.set()
        self._process.kill()
        self._thread.join()
        self.run.end("canceled")


class _Executor:
    """One executor: its id, the scheduler and the task it runs (if any)."""

    def __init__(self, env: ServiceEnv, stop: threading.Event) -> None:
        self.executor_id = str(uuid.uuid4())
        self._config = env.config
        self._scheduler: Peer = env.peer("scheduler")
        self._stop = stop
        self._lock = threading.Lock()
        self._task: _Task | None = None
        # Set when a task ends, so the next heartbeat (and pull) happens at once.
        self._idle = threading.Event()
        self._modules = ModuleCache(env.config.execution.wasm_cache_mb << 20)
        self._launcher = Launcher(env.config.execution.python_modules)

    def _call(self, rpc: Callable[[TeaclaveSchedulerStub], T]) -> T:
        # Not repeated at once on a lost reply: a second PullTask would take another
        # task; the heartbeat loop and the result reporter retry at their own pace.
        return self._scheduler.call(
            lambda channel: rpc(TeaclaveSchedulerStub(channel))  # type: ignore[no-untyped-call]
        )

    def run(self) -> None:
        """Heartbeat until ``stop`` is set, then kill a running task and the zygote."""
        log.info("executor %s started", self.executor_id)
        try:
            while not self._stop.is_set():
                try:
                    self._tick()
                except (grpc.RpcError, TeaclaveError) as exc:
                    log.warning("scheduler call failed (retrying next heartbeat): %s", exc)
                self._idle.wait(self._config.scheduler.heartbeat_interval_secs)
                self._idle.clear()
        finally:
            with self._lock:
                task = self._task
            if task is not None:
                task.kill()
            self._launcher.close()
            self._scheduler.close()

    def _tick(self) -> None:
        with self._lock:
            task = self._task
        request = HeartbeatRequest(
            executor_id=self.executor_id,
            status=Idle if task is None else Executing,
            task_id="" if task is None else task.task_id,
        )
        reply = self._call(lambda stub: stub.Heartbeat(request, timeout=_RPC_TIMEOUT_SECS))
        if reply.command == Stop and task is not None and reply.task_id == task.task_id:
            log.info("task %s canceled: killing its process", task.task_id)
            task.kill()
            self._clear(task)
        elif reply.command == NewTask and task is None:
            self._pull()

    def _pull(self) -> None:
        request = PullTaskRequest(executor_id=self.executor_id)
        response = self._call(lambda stub: stub.PullTask(request, timeout=_RPC_TIMEOUT_SECS))
        if not response.HasField("staged_task"):
            return
        staged = response.staged_task
        log.info("executor %s runs task %s", self.executor_id, staged.task_id)
        run = TaskRun(staged.task_id, staged.trace_context)
        try:
            settings = self._config.execution_settings()
            view = sandbox_view(sandbox_kind(staged), settings)
            envelope = worker.encode_envelope(settings, staged, self._module(staged), view)
            process = self._launcher.start()
        except (TeaclaveError, LauncherError) as exc:
            reason = exc.message if isinstance(exc, TeaclaveError) else str(exc)
            with run.active():
                self._report(staged.task_id, TaskResult(Err=TaskFailure(reason=reason)))
            run.end("Err")
            return
        task = _Task(
            staged.task_id,
            envelope,
            process,
            on_done=self._finish,
            start_upload=self._start_upload,
            run=run,
        )
        with self._lock:
            self._task = task
        task.start()

    def _module(self, staged: StagedTask) -> bytes:
        """A Wasm task's compiled module (empty for other tasks)."""
        if not is_wasm(staged):
            return b""
        return self._modules.compiled(staged.function_payload, staged.executor_type)

    def _persist(self, task: _Task, what: str, call: Callable[[], object]) -> str:
        """Make ``call`` about ``task``, again while the scheduler is unreachable; '' once
        it succeeded, else why not: the scheduler's refusal, or that the task is stopping."""
        while not (self._stop.is_set() or task.canceled.is_set()):
            try:
                call()
                return ""
            except (grpc.RpcError, TeaclaveError) as exc:
                if not _transient(exc):
                    return _reason(exc)
                log.warning("cannot %s task %s yet: %s", what, task.task_id, exc)
                self._stop.wait(self._config.scheduler.heartbeat_interval_secs)
        return "the task is being stopped"

    def _start_upload(self, task: _Task, output_name: str) -> str:
        """Have the scheduler record that ``task`` begins uploading ``output_name``; '' once
        it did, else why the upload may not begin."""
        request = StartUploadRequest(
            executor_id=self.executor_id, task_id=task.task_id, output_name=output_name
        )
        refused = self._persist(
            task,
            "record the upload of",
            lambda: self._call(lambda stub: stub.StartUpload(request, timeout=_RPC_TIMEOUT_SECS)),
        )
        if refused:
            log.warning("upload of task %s refused: %s", task.task_id, refused)
        return refused

    def _finish(self, task: _Task, result: TaskResult) -> None:
        """Report ``task``'s result (retrying while the scheduler is unreachable), then idle."""
        if refused := self._persist(task, "report", lambda: self._report(task.task_id, result)):
            log.warning("result of task %s not recorded: %s", task.task_id, refused)
        task.run.end(result.WhichOneof("result") or "Err")
        self._clear(task)

    def _report(self, task_id: str, result: TaskResult) -> None:
        request = UpdateTaskResultRequest(
            executor_id=self.executor_id, task_id=task_id, result=result
        )
        self._call(lambda stub: stub.UpdateTaskResult(request, timeout=_RPC_TIMEOUT_SECS))
        log.info("task %s reported (%s)", task_id, result.WhichOneof("result"))

    def _clear(self, task: _Task) -> None:
        with self._lock:
            if self._task is task:
                self._task = None
        self._idle.set()


def prepare(config: Config) -> None:
    """Work out what task sandboxes may read: it reads the installation, as no task may."""
    settings = config.execution_settings()
    for kind in ("python", "wamr"):
        sandbox_view(kind, settings)


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Run the execution service until ``stop`` is set."""
    metrics.EXECUTION_SLOTS.set(1)
    _Executor(env, stop).run()

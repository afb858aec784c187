"""The execution service: runs staged tasks, each in a task process of its own.

It serves nothing. Up to ``execution.max_concurrent_tasks`` tasks run at once:
while a slot is free it keeps one ``AwaitTask`` open, a long-poll in which the
scheduler claims the oldest staged task for it the moment one is staged (at
once if one is), and asks again as soon as it has started the task. One call at
a time, not one per free slot: each call lists every task the executor runs, so
the scheduler can fail a task whose reply was lost; a call in flight beside it
would list its tasks without the one the other call was just handed. The
executor has its zygote fork a task process
(:mod:`teaclave.executor.launcher`), which runs the worker
(:mod:`teaclave.executor.worker`) in its own session: the launcher hands it the
envelope (as much as its stdin takes at once) before the zygote forks the next
spare, and the task's header goes ahead to that spare, which forks that sandbox
while it waits (a task like the last one finds its sandbox ready). A thread per task feeds
the task process, asks the scheduler to record each upload before it may begin
(``StartUpload``), and reports the result. Every
``scheduler.heartbeat_interval_secs`` another thread reports the running tasks
(liveness); for each task the scheduler answers to stop (canceled) only its task
process is killed (its sandbox dies with it) and nothing is reported.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.waiting import Backoff
from teaclave.executor import uploads, worker
from teaclave.executor.launcher import Launcher, LauncherError, TaskProcess
from teaclave.executor.task import is_wasm, sandbox_kind, sandbox_view
from teaclave.observability import metrics
from teaclave.proto.teaclave_common_pb2 import TaskFailure, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import (
    AwaitTaskRequest,
    HeartbeatRequest,
    StagedTask,
    StartUploadRequest,
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
AWAIT_MS = 30_000
"""How long one wait for a staged task may last (then it is renewed)."""
EXIT_GRACE_SECS = 10.0
"""How long a task process that sent its result has to end before it is killed."""
FIRST_RETRY_SECS = 0.05
MAX_RETRY_SECS = 2.0
"""Pauses between attempts while the scheduler is unreachable."""


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
        process: TaskProcess,
        *,
        report: Callable[[_Task, TaskResult], None],
        start_upload: Callable[[_Task, str], str],
        on_end: Callable[[_Task], None],
        run: TaskRun,
    ) -> None:
        self.task_id = task_id
        self.run = run
        self.canceled = threading.Event()
        self._process = process
        self._on_end = on_end
        self._thread = threading.Thread(
            target=self._wait,
            args=(report, start_upload),
            name=f"task-{self.task_id}",
            daemon=True,
        )

    def start(self) -> None:
        """Feed the task process (it has the part of its envelope its stdin took at once)
        and wait for it in the background."""
        self._thread.start()

    def _wait(
        self,
        report: Callable[[_Task, TaskResult], None],
        start_upload: Callable[[_Task, str], str],
    ) -> None:
        """Feed the task process the rest of its envelope; ``report`` its result as soon
        as it sent one (how the process ends changes nothing after that), else once it
        ended."""
        try:
            with self.run.active(), self._process as process:  # the report is in the trace too
                output = uploads.serve(
                    process.stdin,
                    process.stdout,
                    process.unsent,
                    lambda name: start_upload(self, name),
                    self.run.stages,
                )
                if output is None:  # it broke the protocol
                    process.kill()
                result = worker.reported(output)
                if result is not None:
                    self._report(report, result)
                    with contextlib.suppress(LauncherError):  # lost with the zygote: it is over
                        process.reap(EXIT_GRACE_SECS)  # changes nothing but the free slot
                else:
                    self._report(report, self._ended(process, output))
        finally:
            self._on_end(self)

    def _report(self, report: Callable[[_Task, TaskResult], None], result: TaskResult) -> None:
        if not self.canceled.is_set():
            report(self, result)

    @staticmethod
    def _ended(process: TaskProcess, output: bytes | None) -> TaskResult:
        """The result of a process that sent none: how it ended."""
        try:
            return worker.read_result(process.wait().returncode, output)
        except LauncherError as exc:  # lost with the zygote
            return TaskResult(Err=TaskFailure(reason=str(exc)))

    def kill(self) -> None:
        """Kill the task process and wait until the task is over."""
        self.canceled.set()
        self._process.kill()
        self._thread.join()
        self.run.end("canceled")


class _Executor:
    """One executor: its id, the scheduler and the tasks it runs (at most ``slots``)."""

    def __init__(self, env: ServiceEnv, stop: threading.Event) -> None:
        self.executor_id = str(uuid.uuid4())
        self._config = env.config
        self._slots = env.config.execution.max_concurrent_tasks
        self._settings = env.config.execution_settings()
        self._scheduler: Peer = env.peer("scheduler")
        self._stop = stop
        self._lock = threading.Lock()
        # Notified when a task ends, a wait for a task ends, and when the service stops.
        self._changed = threading.Condition(self._lock)
        self._tasks: dict[str, _Task] = {}
        self._modules = ModuleCache(env.config.execution.wasm_cache_mb << 20)
        self._launcher = Launcher(env.config.execution.python_modules)

    def _call(self, rpc: Callable[[TeaclaveSchedulerStub], T]) -> T:
        # Not repeated at once on a lost reply: a second AwaitTask would take another
        # task; the serve loop and the result reporter retry at their own pace.
        return self._scheduler.call(
            lambda channel: rpc(TeaclaveSchedulerStub(channel))  # type: ignore[no-untyped-call]
        )

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _running(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def run(self) -> None:
        """Run staged tasks until ``stop`` is set, then kill the running tasks and the zygote.

        Another thread heartbeats.
        """
        log.info("executor %s started (%d task slots)", self.executor_id, self._slots)
        heartbeats = threading.Thread(target=self._heartbeats, name="executor-heartbeat")
        heartbeats.start()
        try:
            self._serve()
        finally:
            self._stop.set()
            heartbeats.join()
            with self._lock:
                tasks = list(self._tasks.values())
            for task in tasks:
                task.kill()
            self._launcher.close()
            self._scheduler.close()

    def _serve(self) -> None:
        """Whenever a slot is free: claim a staged task (waiting for one) and start it."""
        retry = Backoff(FIRST_RETRY_SECS, MAX_RETRY_SECS)
        while self._free_slot():
            try:
                staged = self._await_task()
                if staged is not None:
                    self._start(staged)
                retry.reset()
            except (grpc.RpcError, TeaclaveError) as exc:
                log.warning("scheduler call failed (retrying): %s", exc)
                self._stop.wait(retry.pause())

    def _free_slot(self) -> bool:
        """Wait until fewer than ``slots`` tasks run; False once the service stops."""
        with self._changed:
            self._changed.wait_for(lambda: self._stop.is_set() or len(self._tasks) < self._slots)
        return not self._stop.is_set()

    def _heartbeats(self) -> None:
        """Every ``scheduler.heartbeat_interval_secs``: report the running tasks, stop
        those the scheduler names (canceled). Wakes the other thread at the end."""
        interval = self._config.scheduler.heartbeat_interval_secs
        while True:
            try:
                self._heartbeat()
            except (grpc.RpcError, TeaclaveError) as exc:
                log.warning("heartbeat failed (retrying next time): %s", exc)
            if self._stop.wait(interval):
                break
        self._notify()

    def _heartbeat(self) -> None:
        request = HeartbeatRequest(executor_id=self.executor_id, task_ids=self._running())
        reply = self._call(lambda stub: stub.Heartbeat(request, timeout=_RPC_TIMEOUT_SECS))
        for task_id in reply.stop_task_ids:
            with self._lock:
                task = self._tasks.get(task_id)
            if task is not None:
                log.info("task %s canceled: killing its process", task_id)
                task.kill()  # its thread frees the slot as it ends

    def _await_task(self) -> StagedTask | None:
        """The task the scheduler claims for this executor, once one is staged; None if
        the wait ran out or the service stops.

        A task claimed while the call fails or is abandoned (lost reply, stop) is not
        among the tasks the next call lists: the scheduler fails it (if the service
        stops, the executor timeout does)."""
        request = AwaitTaskRequest(
            executor_id=self.executor_id, running_task_ids=self._running(), timeout_ms=AWAIT_MS
        )
        future = self._call(
            lambda stub: stub.AwaitTask.future(request, timeout=AWAIT_MS / 1000 + _RPC_TIMEOUT_SECS)
        )
        future.add_done_callback(lambda _: self._notify())
        with self._changed:
            self._changed.wait_for(lambda: future.done() or self._stop.is_set())
        if not future.done():
            future.cancel()
            return None
        try:
            response = future.result()
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._scheduler.reset()  # e.g. restarted with a new key: dial and verify again
            raise
        return response.staged_task if response.HasField("staged_task") else None

    def _start(self, staged: StagedTask) -> None:
        if staged.task_id in self._running():  # handed out again (the scheduler restarted)
            log.warning(
                "task %s handed out again while it runs here: left as it is", staged.task_id
            )
            return
        # One INFO line a task, its report's: each line costs this service and the
        # supervisor that forwards it CPU beside the task.
        log.debug("executor %s runs task %s", self.executor_id, staged.task_id)
        run = TaskRun(staged.task_id, staged.trace_context)
        try:
            view = sandbox_view(sandbox_kind(staged), self._settings)
            envelope = worker.encode_envelope(self._settings, staged, self._module(staged), view)
            process = self._launcher.start(envelope)
        except (TeaclaveError, LauncherError) as exc:
            reason = exc.message if isinstance(exc, TeaclaveError) else str(exc)
            with run.active():
                self._report(staged.task_id, TaskResult(Err=TaskFailure(reason=reason)))
            run.end("Err")
            return
        task = _Task(
            staged.task_id,
            process,
            report=self._finish,
            start_upload=self._start_upload,
            on_end=self._clear,
            run=run,
        )
        with self._lock:
            self._tasks[task.task_id] = task
        task.start()

    def _module(self, staged: StagedTask) -> bytes:
        """A Wasm task's compiled module (empty for other tasks)."""
        if not is_wasm(staged):
            return b""
        return self._modules.compiled(staged.function_payload, staged.executor_type)

    def _persist(self, task: _Task, what: str, call: Callable[[], object]) -> str:
        """Make ``call`` about ``task``, again while the scheduler is unreachable; '' once
        it succeeded, else why not: the scheduler's refusal, or that the task is stopping."""
        retry = Backoff(FIRST_RETRY_SECS, MAX_RETRY_SECS)
        while not (self._stop.is_set() or task.canceled.is_set()):
            try:
                call()
                return ""
            except (grpc.RpcError, TeaclaveError) as exc:
                if not _transient(exc):
                    return _reason(exc)
                log.warning("cannot %s task %s yet: %s", what, task.task_id, exc)
                self._stop.wait(retry.pause())
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
        """Report ``task``'s result (retrying while the scheduler is unreachable)."""
        if refused := self._persist(task, "report", lambda: self._report(task.task_id, result)):
            log.warning("result of task %s not recorded: %s", task.task_id, refused)
        task.run.end(result.WhichOneof("result") or "Err")

    def _report(self, task_id: str, result: TaskResult) -> None:
        request = UpdateTaskResultRequest(
            executor_id=self.executor_id, task_id=task_id, result=result
        )
        self._call(lambda stub: stub.UpdateTaskResult(request, timeout=_RPC_TIMEOUT_SECS))
        log.info("task %s reported (%s)", task_id, result.WhichOneof("result"))

    def _clear(self, task: _Task) -> None:
        """``task``'s process ended: its slot is free."""
        with self._changed:
            if self._tasks.get(task.task_id) is task:
                del self._tasks[task.task_id]
            self._changed.notify_all()


def prepare(config: Config) -> None:
    """Work out what task sandboxes may read: it reads the installation, as no task may."""
    settings = config.execution_settings()
    for kind in ("python", "wamr"):
        sandbox_view(kind, settings)


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Run the execution service until ``stop`` is set."""
    metrics.EXECUTION_SLOTS.set(env.config.execution.max_concurrent_tasks)
    _Executor(env, stop).run()

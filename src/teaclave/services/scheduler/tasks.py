"""Scheduling over the store: the staged queue, task transitions and lost executors.

An executor waits for a staged task and claims it in one call
(:meth:`Scheduler.await_task`, answered from a watch of the queue in storage the
moment InvokeTask commits one). Every transition is a conditional commit on the
versions just read; on :class:`Conflict` the whole step (read, check, commit) is
retried, a bounded number of times. A task ends in the same
commit that frees its outputs whose upload never began
(:func:`teaclave.core.tasks.release`); an executor records that an output's
upload begins before its first byte leaves (:meth:`Scheduler.start_upload`).

A claim is handed out before it is committed (:class:`_Handed`; its queue entry
is held meanwhile) and committed, Running on its executor, before anything else
is decided about its task: an upload, a heartbeat or a lost executor
(:meth:`Scheduler._settle`). A result that comes first is committed with the
claim, in one commit that checks the task and its queue entry as they were
handed out. So no executor's effect (an upload, a result) is ever recorded unless
its claim is, and a task that ends within a heartbeat costs no commit of its
own to claim. If the scheduler restarts before the claim was committed, the task
is still staged and is handed out again; an executor's result for it is then
refused unless that executor got it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from google.protobuf.message import DecodeError

from teaclave.core import tasks as rules
from teaclave.core.codec import CodecError, decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.lru import Lru
from teaclave.core.model import OutputFile, Task, TaskResult, TaskStatus
from teaclave.proto import teaclave_scheduler_service_pb2 as pb
from teaclave.services.scheduler import observe
from teaclave.services.scheduler.liveness import Liveness
from teaclave.services.scheduler.queue import StagedQueue
from teaclave.storage import keys
from teaclave.storage.api import Conflict, Record, Store, Write

log = logging.getLogger(__name__)

T = TypeVar("T")
Checks = list[tuple[str, int]]

MAX_ATTEMPTS = 16
MAX_REMEMBERED = 4096
"""Most claimed tasks a scheduler remembers as it committed them (a report of one
needs no read of storage first)."""
WATCH_INTERVAL_SECS = 0.5
HAND_OUT_SECS = 1.0
"""A task staged less than this long ago is handed out before its claim is committed;
one staged earlier (which may have been canceled since), or handed out before and
given back (it changed), is claimed first."""
CANCELED_REASON = "Task Canceled by the user"
TIMEOUT_REASON = "Runtime Error: Executor Timeout"
LOST_REASON = "Runtime Error: executor lost the task"


def _retrying(step: Callable[[], T]) -> T:
    """Run ``step``, again on :class:`Conflict`; the last attempt's conflict propagates."""
    for _ in range(MAX_ATTEMPTS - 1):
        try:
            return step()
        except Conflict as exc:
            log.debug("retrying after a concurrent update of %s", exc.key)
    return step()


@dataclass(frozen=True)
class _Handed:
    """A task handed to an executor whose claim is not committed yet."""

    entry: Record
    """Its queue entry, as read."""
    task: Task
    """The task as the claim commits it: Running on the executor."""
    version: int
    """The task's version when it was read (the commit checks it)."""
    committing: threading.Lock = field(default_factory=threading.Lock, compare=False)
    """Held by whoever commits the claim (settles it, or reports with it)."""


def _parse_staged(value: bytes, task_uuid: str) -> pb.StagedTask | None:
    """The queued ``StagedTask`` of ``task_uuid``; None if the record is malformed."""
    staged = pb.StagedTask()
    try:
        staged.ParseFromString(value)
    except DecodeError:
        return None
    return staged if staged.task_id == task_uuid else None


def _recorded(staged: pb.StagedTask) -> Task | None:
    """The task record a queue entry carries (None: none, or a malformed one)."""
    try:
        return decode(Task, staged.task_record) if staged.task_record else None
    except CodecError:
        return None


class Scheduler:
    """Hands staged tasks to executors and records their outcomes."""

    def __init__(self, store: Store, liveness: Liveness, queue: StagedQueue) -> None:
        """``queue``: the staged queue in ``store``."""
        self._store = store
        self._liveness = liveness
        self._queue = queue
        self._started = liveness.now()
        self._orphans: set[tuple[str, str]] = set()
        self._claimed = Lru[str, tuple[Task, int]](MAX_REMEMBERED)
        self._claimed_lock = threading.Lock()
        self._handed: dict[str, _Handed] = {}  # by task, under the lock

    def _load(self, task_uuid: str) -> tuple[Task | None, int]:
        record = self._store.get([keys.TASK + task_uuid])[0]
        return (decode(Task, record.value) if record.exists else None), record.version

    def _remember(self, task: Task, version: int | None) -> None:
        """Keep ``task`` as this scheduler committed it at ``version`` (None: forget it)."""
        with self._claimed_lock:
            self._claimed.pop(task.uuid)
            if version is not None:
                self._claimed.put(task.uuid, (task, version))

    def _reads(self, task_uuid: str) -> Callable[[], tuple[Task | None, int]]:
        """Reads of ``task_uuid`` for the attempts of one step: the first gives the task as
        this scheduler claimed it, if it did (the step's commit checks that version: any
        change since makes it conflict), every later one reads storage."""
        with self._claimed_lock:
            first = self._claimed.pop(task_uuid)

        def read() -> tuple[Task | None, int]:
            nonlocal first
            known, first = first, None
            return known or self._load(task_uuid)

        return read

    def _just_staged(self, queue_key: str) -> bool:
        """Whether the task of ``queue_key`` was staged less than :data:`HAND_OUT_SECS` ago."""
        staged_at = keys.staged_at(queue_key)
        return staged_at is not None and 0 <= time.time_ns() - staged_at < HAND_OUT_SECS * 1e9

    def _hand(self, handed: _Handed) -> None:
        """Hand ``handed`` out, its claim to be committed later (:meth:`_settle`)."""
        with self._claimed_lock:
            self._handed[handed.task.uuid] = handed
        self._queue.hold(handed.entry.key)

    @contextmanager
    def _handed_claim(self, task_uuid: str, executor_id: str = "") -> Iterator[_Handed | None]:
        """The uncommitted claim of ``task_uuid`` (if ``executor_id``: only that executor's),
        for the block to commit alone; None if there is none (a commit of it in flight
        elsewhere is over first). The block calls :meth:`_claim_done` once the claim is
        committed, or given back; if it raises otherwise, the claim stays uncommitted."""
        with self._claimed_lock:
            handed = self._handed.get(task_uuid)
        if handed is None:
            yield None
            return
        with handed.committing:
            with self._claimed_lock:
                current = self._handed.get(task_uuid) is handed
            yield handed if current and executor_id in ("", handed.task.executor_id) else None

    def _claim_done(self, handed: _Handed, *, committed: bool) -> None:
        """The claim ``handed`` was committed (its queue entry removed), or not (the task
        changed since: its entry, if still queued, is claimed anew, by a commit)."""
        with self._claimed_lock:
            self._handed.pop(handed.task.uuid, None)
        if committed:
            self._queue.taken(handed.entry.key)
        else:
            self._queue.release(handed.entry.key)

    def _settle(self, task_uuid: str) -> None:
        """Commit the claim of ``task_uuid`` if it was handed out uncommitted, unless the
        task changed since (canceled); if the commit's outcome is unknown, it is settled
        again next time."""
        with self._handed_claim(task_uuid) as handed:
            if handed is None:
                return
            entry, task_key = handed.entry, keys.TASK + task_uuid
            try:
                version = self._store.commit(
                    [(entry.key, entry.version), (task_key, handed.version)],
                    [Write(entry.key, None), Write(task_key, encode(handed.task))],
                )
            except Conflict:
                self._claim_done(handed, committed=False)
                return
            self._claim_done(handed, committed=True)
            self._remember(handed.task, version)

    def await_task(
        self,
        executor_id: str,
        running: Collection[str],
        timeout: float,
        on_gone: Callable[[Callable[[], None]], object] | None = None,
    ) -> pb.StagedTask | None:
        """Claim the oldest staged task for ``executor_id`` (mark it Running there), waiting
        up to ``timeout`` seconds for one to be staged; None if none was.

        ``running``: every task the executor runs. A task it was handed that is not
        among them is lost (the reply never arrived, e.g. the call timed out just
        after the claim): it fails, never left Running; if the executor never calls
        again, its heartbeats stop and the executor timeout fails it.
        Each time the queue changes the claim is tried, reading the queue's head once
        (again only past a dropped entry or after a conflict); a task goes to one
        caller however many wait. If too many executors wait already,
        RESOURCE_EXHAUSTED unless a task could be claimed at once. ``on_gone``: as in
        :meth:`Watcher.follow`: a caller gone (e.g. canceled its call) claims nothing more.
        """
        self._check_in(executor_id, running)
        return self._queue.watcher.follow(
            keys.STAGED,
            partial(self._claim, executor_id),
            lambda staged: staged is not None,
            timeout,
            on_gone=on_gone,
        )

    def pull(self, executor_id: str, running: Collection[str]) -> pb.StagedTask | None:
        """:meth:`await_task` without the wait: the oldest staged task, or None. The
        queue is read from storage: a caller that polls finds what was staged before
        its call, whether or not the watch brought it yet."""
        self._check_in(executor_id, running)
        self._queue.forget()
        return self._claim(executor_id)

    def _check_in(self, executor_id: str, running: Collection[str]) -> None:
        """``executor_id`` is alive and runs ``running``: fail the tasks it lost."""
        self._liveness.seen(executor_id)
        for task_uuid in self._liveness.take_missing(executor_id, running):
            self.fail_lost(executor_id, task_uuid, LOST_REASON)

    def _claim(self, executor_id: str) -> pb.StagedTask | None:
        """Take the oldest staged task and mark it Running for ``executor_id`` (None: none)."""
        staged = _retrying(lambda: self._claim_once(executor_id))
        if staged is not None:
            self._liveness.assign(executor_id, staged.task_id)
        return staged

    def _claim_once(self, executor_id: str) -> pb.StagedTask | None:
        """Dequeue until a task is handed out; queue entries of tasks not Staged are dropped.

        The task is taken as its queue entry recorded it (InvokeTask committed both at
        one version); if it changed since, the commit conflicts and the entry is
        tried again with the task read from storage.
        """
        changed: set[str] = set()  # entries whose recorded task is out of date
        while entry := self._queue.head():
            began = time.time_ns()
            task_uuid = entry.key.removeprefix(keys.STAGED).partition("-")[2]
            task_key = keys.TASK + task_uuid
            staged = _parse_staged(entry.value, task_uuid)
            recorded = None if staged is None or entry.key in changed else _recorded(staged)
            task, version = (recorded, entry.version) if recorded else self._load(task_uuid)
            if staged is not None:
                staged.ClearField("task_record")  # executors never get it
            checks: Checks = [(entry.key, entry.version), (task_key, version)]
            writes = [Write(entry.key, None)]
            handed_out = None
            if task is not None and task.status is TaskStatus.STAGED:
                if task.cancel_requested:
                    task = _end(task, TaskStatus.CANCELED, CANCELED_REASON)
                elif staged is None:
                    log.error("staged record %s is malformed", entry.key)
                    task = _failed(task, "Runtime Error: invalid staged task")
                else:
                    task = replace(task, status=TaskStatus.RUNNING, executor_id=executor_id)
                    handed_out = staged
                    if self._just_staged(entry.key) and not self._queue.released(entry.key):
                        self._hand(_Handed(entry, task, version))
                        observe.task_pulled(handed_out, entry.key, began)
                        return handed_out
                writes.append(Write(task_key, encode(task)))
                if task.status.ended:
                    self._add_output_writes(task, self._output_records(task), {}, checks, writes)
            try:
                version = self._store.commit(checks, writes)
            except Conflict:
                if recorded is None:  # the entry may be gone: read the queue again
                    self._queue.forget()
                    raise
                changed.add(entry.key)
                continue
            self._queue.taken(entry.key)
            if handed_out is not None and task is not None:
                self._remember(task, version)
                observe.task_pulled(handed_out, entry.key, began)
                return handed_out
            if task is not None and task.status.ended:
                observe.task_ended(task)
        return None

    def heartbeat(self, executor_id: str, running: Collection[str]) -> list[str]:
        """Record a heartbeat of ``executor_id`` running ``running``; the tasks it must stop."""
        self._liveness.seen(executor_id)
        stop = [t for t in running if _retrying(partial(self._must_stop, executor_id, t))]
        for task_uuid in stop:
            self._liveness.release(executor_id, task_uuid)
        return stop

    def _must_stop(self, executor_id: str, task_uuid: str) -> bool:
        """Whether the executor must stop the task; cancels it if that was requested."""
        self._settle(task_uuid)
        task, version = self._load(task_uuid)
        if task is None:
            return True
        if task.status is not TaskStatus.RUNNING or task.executor_id != executor_id:
            return task.status is not TaskStatus.FINISHED
        if not task.cancel_requested:
            return False
        self._commit_end(_end(task, TaskStatus.CANCELED, CANCELED_REASON), version)
        return True

    def report(self, executor_id: str, task_uuid: str, result: TaskResult) -> None:
        """Record the outcome ``executor_id`` reports for ``task_uuid`` (with its claim, if
        that was not committed yet)."""
        self._liveness.seen(executor_id)
        with self._handed_claim(task_uuid, executor_id) as handed:
            if handed is not None:
                self._report_handed(handed, result)
        if handed is None:
            read = self._reads(task_uuid)
            _retrying(lambda: self._report_once(executor_id, task_uuid, result, read))
        self._liveness.release(executor_id, task_uuid)

    def _report_handed(self, handed: _Handed, result: TaskResult) -> None:
        """Commit the result of a task handed out uncommitted, with its claim: once. If
        the task changed since (canceled), the result is refused and the entry claimed
        anew; if the outcome is unknown, the claim stays (a report again tries again)."""
        task = handed.task
        try:
            self._report_once(
                task.executor_id, task.uuid, result, lambda: (task, handed.version), handed.entry
            )
        except Conflict:
            self._claim_done(handed, committed=False)
            raise TeaclaveError(
                Status.FAILED_PRECONDITION, f"task {task.uuid} changed before it was claimed"
            ) from None
        self._claim_done(handed, committed=True)

    def _report_once(
        self,
        executor_id: str,
        task_uuid: str,
        result: TaskResult,
        read: Callable[[], tuple[Task | None, int]],
        queued: Record | None = None,
    ) -> None:
        """``queued``: the task's queue entry, if its claim is committed with the result."""
        task, version = read()
        if task is None:
            raise TeaclaveError(Status.NOT_FOUND, f"task {task_uuid} not found")
        if task.status is TaskStatus.CANCELED:
            return
        if task.status is not TaskStatus.RUNNING or task.executor_id != executor_id:
            raise TeaclaveError(
                Status.FAILED_PRECONDITION,
                f"task {task_uuid} is not running on executor {executor_id}",
            )
        records = self._output_records(task)
        if result.ok:
            current = {n: decode(OutputFile, r.value) for n, r in records.items() if r.exists}
            ended, written = rules.finish(task, result, current)
        else:
            ended, written = replace(task, status=TaskStatus.FINISHED, result=result), {}
        self._commit_end(ended, version, records, written, queued)

    def start_upload(self, executor_id: str, task_uuid: str, output_name: str) -> None:
        """Record that ``executor_id`` begins uploading ``task_uuid``'s output ``output_name``.

        FAILED_PRECONDITION (nothing recorded) unless the task runs there, was not
        canceled, and the output is free or reserved for it
        (:func:`teaclave.core.tasks.start_upload`).
        """
        self._liveness.seen(executor_id)
        _retrying(lambda: self._start_upload_once(executor_id, task_uuid, output_name))

    def _start_upload_once(self, executor_id: str, task_uuid: str, output_name: str) -> None:
        self._settle(task_uuid)
        task, version = self._load(task_uuid)
        if task is None:
            raise rules.upload_refused("no such task")
        record = self._output_records(task).get(output_name)
        output = decode(OutputFile, record.value) if record and record.exists else None
        started = rules.start_upload(task, executor_id, output_name, output)
        if record is not None and started != output:  # else: already recorded for this task
            self._store.commit(
                [(keys.TASK + task_uuid, version), (record.key, record.version)],
                [Write(record.key, encode(started))],
            )

    def _output_records(self, task: Task) -> dict[str, Record]:
        """The current records of ``task``'s assigned outputs, by slot name."""
        names = sorted(task.assigned_outputs)
        found = self._store.get([keys.OUTPUT + task.assigned_outputs[n].uuid for n in names])
        return dict(zip(names, found, strict=True))

    @staticmethod
    def _add_output_writes(
        ended: Task,
        records: Mapping[str, Record],
        written: Mapping[str, OutputFile],
        checks: Checks,
        writes: list[Write],
    ) -> None:
        """Add the output writes of ending ``ended`` (``records``: its outputs read now): the
        ``written`` ones with their cmacs; every other one freed unless its upload began
        (then it stays used and is never written)."""
        for name, record in records.items():
            if not record.exists:
                continue
            output = written.get(name) or rules.release(
                ended.uuid, decode(OutputFile, record.value)
            )
            if output is not None:
                checks.append((record.key, record.version))
                writes.append(Write(record.key, encode(output)))

    def _commit_end(
        self,
        ended: Task,
        version: int,
        records: Mapping[str, Record] | None = None,
        written: Mapping[str, OutputFile] | None = None,
        queued: Record | None = None,
    ) -> None:
        """Commit the ended task (read at ``version``) with its outputs' writes
        (``records``: its outputs if already read) and the removal of its queue entry
        ``queued``, if any."""
        task_key = keys.TASK + ended.uuid
        checks: Checks = [(task_key, version)]
        writes = [Write(task_key, encode(ended))]
        if queued is not None:
            checks.append((queued.key, queued.version))
            writes.append(Write(queued.key, None))
        if records is None:
            records = self._output_records(ended)
        self._add_output_writes(ended, records, written or {}, checks, writes)
        self._store.commit(checks, writes)
        self._remember(ended, None)
        observe.task_ended(ended)

    def fail_lost(self, executor_id: str, task_uuid: str, reason: str = TIMEOUT_REASON) -> None:
        """Fail ``task_uuid`` if it is still Running on the lost ``executor_id``."""

        def step() -> bool:
            self._settle(task_uuid)
            task, version = self._load(task_uuid)
            if task is None or task.status is not TaskStatus.RUNNING:
                return False
            if task.executor_id != executor_id:
                return False
            self._commit_end(_failed(task, reason), version)
            return True

        if _retrying(step):
            log.warning("task %s failed on executor %s: %s", task_uuid, executor_id, reason)

    def recover(self) -> None:
        """Adopt the Running tasks found in storage, as if their executors were seen at start."""
        for record in self._store.scan(keys.TASK):
            task = decode(Task, record.value)
            if task.status is TaskStatus.RUNNING:
                self._liveness.assign(task.executor_id, task.uuid, since=self._started)

    def watch(self, stop: threading.Event) -> None:
        """Until ``stop``: recover once, then fail the tasks of executors that went silent."""
        recovered = False
        while not stop.wait(WATCH_INTERVAL_SECS):
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                self._orphans.update(self._liveness.expire())
                for orphan in sorted(self._orphans):
                    self.fail_lost(*orphan)
                    self._orphans.discard(orphan)
            except Exception:
                log.exception("scheduler liveness check failed; retrying")


def _end(task: Task, status: TaskStatus, reason: str) -> Task:
    return replace(task, status=status, result=TaskResult.failure(reason))


def _failed(task: Task, reason: str) -> Task:
    return _end(task, TaskStatus.FAILED, reason)

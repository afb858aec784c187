"""Tasks: the state machine of reference §3.6 over stored records.

Who may act on a task is the rules' (§4.3, :mod:`teaclave.core.access`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from teaclave.core import tasks as rules
from teaclave.core.access import Facts, FileFacts, TaskFacts
from teaclave.core.codec import decode, encode
from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.core.ids import Kind, external_id, new_uuid
from teaclave.core.limits import Limits
from teaclave.core.model import InputFile, OutputFile, Task
from teaclave.core.tasks import OwnerLists
from teaclave.services.management.common import Txn
from teaclave.services.management.convert import staged_task
from teaclave.services.management.files import file_key, load_file
from teaclave.services.management.functions import load_function, load_usage
from teaclave.storage import keys

DataMaps = Sequence[tuple[str, str]]
"""``(data name, file uuid)`` pairs of an AssignData request."""


def invalid_task_id() -> TeaclaveError:
    """INVALID_ARGUMENT "invalid task id"."""
    return invalid_argument("invalid task id")


def load_task(txn: Txn, task_uuid: str) -> Task:
    """A task record, upgraded (:func:`~teaclave.core.tasks.upgrade`); INVALID_ARGUMENT
    "invalid task id" if absent."""
    return rules.upgrade(txn.load(Task, keys.TASK + task_uuid, invalid_task_id()))


def decode_task(value: bytes) -> Task:
    """A stored task record, upgraded (as :func:`load_task` gives it)."""
    return rules.upgrade(decode(Task, value))


def task_facts(txn: Txn, task_uuid: str) -> Facts:
    """The facts of the rules on one task."""
    return Facts(task=TaskFacts.of(load_task(txn, task_uuid)))


def _slot_facts(
    txn: Txn,
    cls: type[InputFile | OutputFile],
    pairs: DataMaps,
    declared: dict[str, frozenset[str]],
) -> list[FileFacts]:
    what = "input" if cls is InputFile else "output"
    found = []
    for name, file_uuid in pairs:
        record = txn.find(cls, file_key(cls, file_uuid))
        found.append(
            FileFacts(
                owners=frozenset() if record is None else record.owners,
                exists=record is not None,
                slot=rules.slot(what, name),
                declared_owners=declared.get(name),
            )
        )
    return found


def assignment_facts(txn: Txn, task_uuid: str, inputs: DataMaps, outputs: DataMaps) -> Facts:
    """The task's facts and, for each file to assign, its owners and those of its slot.

    A missing file is a fact too: only participants learn that it is missing.
    """
    task = load_task(txn, task_uuid)
    files = (
        *_slot_facts(txn, InputFile, inputs, task.inputs_ownership),
        *_slot_facts(txn, OutputFile, outputs, task.outputs_ownership),
    )
    return Facts(task=TaskFacts.of(task), files=files)


def create_task(
    txn: Txn,
    creator: str,
    function_uuid: str,
    *,
    executor: str,
    arguments: str,
    inputs_ownership: OwnerLists,
    outputs_ownership: OwnerLists,
    max_limits: Limits,
    trace_context: str = "",
) -> str:
    """A new Created task (in the trace of ``trace_context``); returns its id."""
    task = rules.create_task(
        task_uuid=new_uuid(),
        function=load_function(txn, function_uuid),
        creator=creator,
        executor=executor,
        arguments=arguments,
        inputs_ownership=inputs_ownership,
        outputs_ownership=outputs_ownership,
        max_limits=max_limits,
    )
    task = replace(task, trace_context=trace_context)
    txn.put(keys.TASK + task.uuid, task)
    return external_id(Kind.TASK, task.uuid)


def assign_data(txn: Txn, task_uuid: str, inputs: DataMaps, outputs: DataMaps) -> None:
    """Assign files (``(name, file uuid)`` pairs) to a task."""
    task = rules.assign_data(
        load_task(txn, task_uuid),
        [(name, load_file(txn, InputFile, uuid)) for name, uuid in inputs],
        [(name, load_file(txn, OutputFile, uuid)) for name, uuid in outputs],
    )
    txn.put(keys.TASK + task_uuid, task)


def approve_task(txn: Txn, approver: str, task_uuid: str, seen_digest: str) -> str:
    """Record ``approver``'s approval of a task (of ``seen_digest`` if set); the digest approved."""
    task = rules.approve(load_task(txn, task_uuid), approver, seen_digest)
    txn.put(keys.TASK + task_uuid, task)
    return task.approvals[approver]


def revoke_approval(txn: Txn, revoker: str, task_uuid: str) -> None:
    """Withdraw ``revoker``'s approval of a task."""
    txn.put(keys.TASK + task_uuid, rules.revoke(load_task(txn, task_uuid), revoker))


def _current_outputs(txn: Txn, task: Task) -> dict[str, OutputFile]:
    """The task's assigned outputs as stored now (the task keeps copies from assignment)."""
    return {
        name: load_file(txn, OutputFile, assigned.uuid)
        for name, assigned in task.assigned_outputs.items()
    }


def invoke_task(txn: Txn, invoker: str, task_uuid: str) -> None:
    """Stage a ready task: task Staged, its outputs reserved for it, usage counted and queue
    entry written, in one commit."""
    task = load_task(txn, task_uuid)
    txn.prefetch(
        [
            keys.FUNCTION + task.function_id,
            keys.USAGE + task.function_id,
            *(file_key(OutputFile, output.uuid) for output in task.assigned_outputs.values()),
        ]
    )
    function = load_function(txn, task.function_id)
    staged, usage = rules.invoke(task, function, load_usage(txn, function.uuid))
    for reserved in rules.reserve_outputs(task, _current_outputs(txn, task)):
        txn.put(file_key(OutputFile, reserved.uuid), reserved)
    txn.put(keys.USAGE + function.uuid, usage)
    queued = staged_task(staged, function, invoker)
    queued.task_record = encode(staged)  # committed with the task: at its version
    txn.put_bytes(keys.staged_key(time.time_ns(), task.uuid), queued.SerializeToString())
    txn.put(keys.TASK + task_uuid, staged)


def cancel_task(txn: Txn, task_uuid: str) -> None:
    """Cancel a task, freeing a Staged one's outputs (a Running one is stopped by the scheduler)."""
    task = rules.cancel(load_task(txn, task_uuid))
    txn.put(keys.TASK + task_uuid, task)
    if task.status.ended:
        for output in _current_outputs(txn, task).values():
            if (released := rules.release(task.uuid, output)) is not None:
                txn.put(file_key(OutputFile, released.uuid), released)

"""Task rules (reference §3.5-3.6): creation, data assignment, approval, invocation, cancel.

An approval binds the task's digest (:func:`task_digest`); only approvals of the
current digest count, and a participant may revoke theirs until the task is staged.
An output's key and iv encrypt one plaintext, ever: InvokeTask reserves the
task's outputs (:func:`reserve_outputs`), an executor records that an upload
begins before its first byte leaves (:func:`start_upload`), and an ended task
frees only the outputs whose upload never began (:func:`release`).

Pure functions over :mod:`teaclave.core.model` records: each returns the
updated record or raises :class:`TeaclaveError` with Teaclave's status and
message, followed after ": " by the precise reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from teaclave.core import limits
from teaclave.core.errors import Status, TeaclaveError, invalid_argument, permission_denied
from teaclave.core.ids import Kind, external_id
from teaclave.core.model import (
    CMAC_SIZE,
    Function,
    FunctionArgument,
    FunctionFile,
    FunctionUsage,
    InputFile,
    OutputFile,
    Task,
    TaskResult,
    TaskStatus,
    parse_executor,
)

CANCELED_BEFORE_STAGING = "Task canceled"
CANCELED_BY_USER = "Task Canceled by the user"

OwnerLists = Sequence[tuple[str, Sequence[str]]]
"""``(data_name, owner ids)`` pairs as a CreateTask request lists them."""


def status_name(status: TaskStatus) -> str:
    """The wire name of a status (``DataAssigned``)."""
    return "".join(part.capitalize() for part in status.name.split("_"))


def _unknown(message: str) -> TeaclaveError:
    return TeaclaveError(Status.UNKNOWN, message)


def failed_to_invoke(reason: str) -> TeaclaveError:
    """UNKNOWN "failed to invoke task: <reason>" (Teaclave's status and text)."""
    return _unknown(f"failed to invoke task: {reason}")


# --- creation ----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def merge_arguments(declared: Sequence[FunctionArgument], text: str) -> str:
    """The task's arguments: the request's overwritable values plus every other default.

    The request's keys must be exactly the overwritable arguments, plus any
    limit the function does not declare (:mod:`teaclave.core.limits`); supplied
    values keep their JSON type, defaults are JSON strings. Returns compact
    JSON with keys sorted.
    """
    try:
        supplied = json.loads(text or "{}", parse_constant=_reject_constant)
    except ValueError as exc:
        raise invalid_argument(f"invalid function arguments: not JSON ({exc})") from None
    if not isinstance(supplied, dict):
        raise invalid_argument("invalid function arguments: must be a JSON object")
    by_key = {arg.key: arg for arg in declared}
    for key in sorted(supplied):
        if key not in by_key and not limits.is_reserved(key):
            raise invalid_argument(f"invalid task: unknown argument {key!r}")
        if key in by_key and not by_key[key].allow_overwrite:
            raise invalid_argument(f"invalid task: argument {key!r} cannot be overwritten")
    for arg in declared:
        if arg.allow_overwrite and arg.key not in supplied:
            raise invalid_argument(f"invalid task: missing argument {arg.key!r}")
    merged: dict[str, Any] = {arg.key: arg.default_value for arg in declared}
    merged.update(supplied)
    text = json.dumps(merged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_argument("invalid function arguments: not valid Unicode") from None
    return text


def _ownership(
    what: str, requested: OwnerLists, declared: Sequence[FunctionFile]
) -> dict[str, frozenset[str]]:
    ownership: dict[str, frozenset[str]] = {}
    for name, uids in requested:
        if name in ownership:
            raise invalid_argument(f"invalid task: {what} {name!r} listed twice")
        if not uids:
            raise invalid_argument(f"invalid task: {what} {name!r} has no owners")
        ownership[name] = frozenset(uids)
    names = {file.name for file in declared}
    for name in sorted(ownership):
        if name not in names:
            raise invalid_argument(f"invalid task: function has no {what} {name!r}")
    for file in declared:
        if not file.optional and file.name not in ownership:
            raise invalid_argument(f"invalid task: missing owners of {what} {file.name!r}")
    return ownership


def create_task(
    *,
    task_uuid: str,
    function: Function,
    creator: str,
    executor: str,
    arguments: str,
    inputs_ownership: OwnerLists,
    outputs_ownership: OwnerLists,
    max_limits: limits.Limits,
) -> Task:
    """A new Created task, validated in Teaclave's order (reference §3.5), then its limits.

    Whether ``creator`` may use ``function`` is the ``create_task`` rule's
    (:mod:`teaclave.core.access`).
    """
    parsed_executor = parse_executor(executor)
    merged = merge_arguments(function.arguments, arguments)
    inputs = _ownership("input", inputs_ownership, function.inputs)
    outputs = _ownership("output", outputs_ownership, function.outputs)
    participants = {creator}
    for owners in (*inputs.values(), *outputs.values()):
        participants |= owners
    if not function.public:
        participants.add(function.owner)
    limits.split(merged, max_limits, max_limits, function.executor_type)
    return Task(
        uuid=task_uuid,
        creator=creator,
        function_digest=function_digest(function),
        function_id=function.uuid,
        function_owner=function.owner,
        function_arguments=merged,
        executor=parsed_executor,
        inputs_ownership=inputs,
        outputs_ownership=outputs,
        participants=frozenset(participants),
    )


def function_digest(function: Function) -> str:
    """SHA-256 of what a function runs: executor type, name, payload, arguments, files."""
    content = {
        "executor_type": function.executor_type.value,
        "name": function.name,
        "payload": function.payload.hex(),
        "arguments": [[a.key, a.default_value, a.allow_overwrite] for a in function.arguments],
        "inputs": [[f.name, f.optional] for f in function.inputs],
        "outputs": [[f.name, f.optional] for f in function.outputs],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


# --- the digest participants approve ------------------------------------------

DIGEST_VERSION = "teaclave-task-digest/1"


def digest_contents(task: Task) -> dict[str, Any]:
    """What an approval binds: everything that decides what the task runs, on which data.

    Outputs are named by file id only: their cmac is what the task produces.
    """
    return {
        "version": DIGEST_VERSION,
        "task_id": external_id(Kind.TASK, task.uuid),
        "creator": task.creator,
        "function_id": external_id(Kind.FUNCTION, task.function_id),
        "function_digest": task.function_digest,
        "executor": task.executor.value,
        "function_arguments": task.function_arguments,
        "inputs_ownership": {name: sorted(uids) for name, uids in task.inputs_ownership.items()},
        "outputs_ownership": {name: sorted(uids) for name, uids in task.outputs_ownership.items()},
        "assigned_inputs": {
            name: {"data_id": external_id(Kind.INPUT, f.uuid), "cmac": f.cmac.hex()}
            for name, f in task.assigned_inputs.items()
        },
        "assigned_outputs": {
            name: external_id(Kind.OUTPUT, f.uuid) for name, f in task.assigned_outputs.items()
        },
    }


def digest_text(task: Task) -> str:
    """:func:`digest_contents` as canonical JSON (sorted keys, compact, UTF-8)."""
    return json.dumps(
        digest_contents(task), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def task_digest(task: Task) -> str:
    """Hex SHA-256 of :func:`digest_text`: what an approval approves."""
    return hashlib.sha256(digest_text(task).encode()).hexdigest()


def upgrade(task: Task) -> Task:
    """A record with approvals that name no digest (written before digests), as approvals
    of its current digest: such a task cannot have changed since its first approval."""
    if not task.approved_users:
        return task
    approvals = dict.fromkeys(task.approved_users, task_digest(task)) | task.approvals
    return replace(task, approved_users=frozenset(), approvals=approvals)


# --- predicates --------------------------------------------------------------


def all_data_assigned(task: Task) -> bool:
    """Every file named in the ownership maps is assigned."""
    return set(task.assigned_inputs) == set(task.inputs_ownership) and set(
        task.assigned_outputs
    ) == set(task.outputs_ownership)


def current_approvers(task: Task) -> frozenset[str]:
    """The participants whose approval is of the task's current digest."""
    digest = task_digest(task)
    return frozenset(user for user, approved in task.approvals.items() if approved == digest)


def everyone_approved(task: Task) -> bool:
    """The only participant, or every participant, has approved the current digest."""
    return len(task.participants) == 1 or task.participants <= current_approvers(task)


# --- transitions -------------------------------------------------------------


def slot(what: str, name: str) -> str:
    """How errors name a file's place in a task: ``input 'name'``."""
    return f"{what} {name!r}"


def _check_unassigned(what: str, name: str, assigned: Mapping[str, object]) -> None:
    if name in assigned:
        raise permission_denied(f"permission denied: {slot(what, name)} is already assigned")


def _shared(output: OutputFile, assigned: Mapping[str, OutputFile]) -> str:
    """Why ``output`` cannot take another slot of a task ('' if it can): two slots of one
    task would write two plaintexts under its key and iv."""
    for name, other in sorted(assigned.items()):
        if other.uuid == output.uuid:
            return f"is the file of output {name!r} too"
    return ""


def assign_data(
    task: Task,
    inputs: Sequence[tuple[str, InputFile]],
    outputs: Sequence[tuple[str, OutputFile]],
) -> Task:
    """AssignData: attach files to a Created task; DataAssigned once all are attached.

    That the caller owns each file and its owners are those the task declares
    for the slot is the ``assign_data`` rule's (:mod:`teaclave.core.access`).
    """
    if task.status is not TaskStatus.CREATED:
        raise _unknown(f"failed to assign data to task: task is {status_name(task.status)}")
    assigned_inputs = dict(task.assigned_inputs)
    for name, input_file in inputs:
        _check_unassigned("input", name, assigned_inputs)
        assigned_inputs[name] = input_file
    assigned_outputs = dict(task.assigned_outputs)
    for name, output_file in outputs:
        _check_unassigned("output", name, assigned_outputs)
        if reason := output_file.why_not_writable(task.uuid) or _shared(
            output_file, assigned_outputs
        ):
            raise permission_denied(f"permission denied: output {name!r} {reason}")
        assigned_outputs[name] = output_file
    updated = replace(task, assigned_inputs=assigned_inputs, assigned_outputs=assigned_outputs)
    if all_data_assigned(updated):
        updated = replace(updated, status=TaskStatus.DATA_ASSIGNED)
    return updated


def _with_approvals(task: Task, approvals: dict[str, str]) -> Task:
    updated = replace(task, approvals=approvals)
    status = TaskStatus.APPROVED if everyone_approved(updated) else TaskStatus.DATA_ASSIGNED
    return replace(updated, status=status)


def approve(task: Task, caller: str, seen_digest: str = "") -> Task:
    """ApproveTask: record that ``caller`` approves the current digest; Approved once all have.

    ``seen_digest``, if given, must be the current digest: the caller approves what they read.
    """
    if task.status is TaskStatus.CREATED and not all_data_assigned(task):
        raise _unknown("failed to approve task: data is not fully assigned")
    if task.status not in (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED):
        raise _unknown(f"failed to approve task: task is {status_name(task.status)}")
    digest = task_digest(task)
    if seen_digest and seen_digest != digest:
        raise TeaclaveError(
            Status.FAILED_PRECONDITION,
            f"failed to approve task: the task changed since you read it (digest now {digest})",
        )
    return _with_approvals(task, task.approvals | {caller: digest})


def revoke(task: Task, caller: str) -> Task:
    """RevokeTaskApproval: withdraw ``caller``'s approval, possible until the task is staged."""
    if task.status not in (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED):
        raise _unknown(f"failed to revoke approval: task is {status_name(task.status)}")
    if caller not in task.approvals:
        raise _unknown("failed to revoke approval: you have not approved the task")
    return _with_approvals(task, {u: d for u, d in task.approvals.items() if u != caller})


def invoke(task: Task, function: Function, usage: FunctionUsage) -> tuple[Task, FunctionUsage]:
    """InvokeTask (by the creator): stage a ready task and count one use of its function."""
    if function.usage_quota is not None and function.usage_quota <= usage.use_numbers:
        raise _unknown("function quota has been used up")
    if task.status not in (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED):
        raise failed_to_invoke(f"task is {status_name(task.status)}")
    if not all_data_assigned(task):
        raise failed_to_invoke("data is not fully assigned")
    if not everyone_approved(task):
        missing = ", ".join(sorted(task.participants - current_approvers(task)))
        raise failed_to_invoke(f"not yet approved by {missing}")
    if function.disabled:
        raise failed_to_invoke("the function is disabled")
    if function_digest(function) != task.function_digest:
        # Participants approved the code they saw; an update must not swap it.
        raise failed_to_invoke("the function changed after the task was created")
    return (
        replace(task, status=TaskStatus.STAGED),
        replace(usage, use_numbers=usage.use_numbers + 1),
    )


# --- output reservations: an output's key and iv encrypt one plaintext, ever ---


def reserve_outputs(task: Task, current: Mapping[str, OutputFile]) -> list[OutputFile]:
    """InvokeTask: the task's outputs (``current``: their records by slot) reserved for it.

    UNKNOWN "failed to invoke task" if one was written, replaced, used or is held by
    another staged or running task, or if two slots name one file.
    """
    reserved: list[OutputFile] = []
    for name, output in sorted(current.items()):
        if reason := output.why_not_writable(task.uuid) or _shared(
            output, {slot: o for slot, o in current.items() if slot < name}
        ):
            raise failed_to_invoke(f"output {name!r} {reason}")
        reserved.append(replace(output, reserved_by=task.uuid))
    return reserved


def upload_refused(reason: str) -> TeaclaveError:
    """FAILED_PRECONDITION "cannot start the upload: <reason>"."""
    return TeaclaveError(Status.FAILED_PRECONDITION, f"cannot start the upload: {reason}")


def start_upload(task: Task, executor_id: str, name: str, output: OutputFile | None) -> OutputFile:
    """The record that ``task``, running on ``executor_id``, begins uploading output ``name``
    (``output``: its current record, None if absent); committed before the first byte leaves.

    Repeating it is harmless; every other task is refused with :func:`upload_refused`.
    """
    if task.status is not TaskStatus.RUNNING:
        raise upload_refused(f"the task is {status_name(task.status)}")
    if task.executor_id != executor_id:
        raise upload_refused("the task runs on another executor")
    if task.cancel_requested:
        raise upload_refused("the task was canceled")
    assigned = task.assigned_outputs.get(name)
    if assigned is None or output is None or output.uuid != assigned.uuid:
        raise upload_refused(f"the task has no output {name!r}")
    others = {slot: o for slot, o in task.assigned_outputs.items() if slot != name}
    if reason := output.why_not_writable(task.uuid) or _shared(output, others):
        raise upload_refused(f"the output {reason}")
    return replace(output, reserved_by=task.uuid, upload_started=True)


def release(task_uuid: str, output: OutputFile) -> OutputFile | None:
    """An output of the ended task ``task_uuid``, free again if its upload never began
    (None: nothing to change). Once begun, it stays used: it can never be written again."""
    if output.reserved_by != task_uuid or output.upload_started:
        return None
    return replace(output, reserved_by="")


def finish(
    task: Task, result: TaskResult, outputs: Mapping[str, OutputFile]
) -> tuple[Task, dict[str, OutputFile]]:
    """A Running task's successful ``result``: the task Finished and its outputs (``outputs``:
    their current records by slot) with their cmacs. Each must have been uploaded by this task
    after its upload record; otherwise the task is Failed and no cmac is set at all."""
    written: dict[str, OutputFile] = {}
    for name in sorted(result.tags):
        output, cmac = outputs.get(name), result.tags[name]
        if name not in task.assigned_outputs:
            reason = f"no output named {name!r}"
        elif output is None:
            reason = f"output {name!r} is not registered"
        elif why := output.why_not_writable(task.uuid):
            reason = f"output {name!r} {why}"
        elif not output.upload_started:
            reason = f"output {name!r} has no upload record"
        elif len(cmac) != CMAC_SIZE:
            reason = f"cmac of output {name!r} is malformed"
        else:
            written[name] = replace(output, cmac=cmac)
            continue
        failure = TaskResult.failure(f"Runtime Error: {reason}")
        return replace(task, status=TaskStatus.FAILED, result=failure), {}
    finished = replace(
        task,
        status=TaskStatus.FINISHED,
        result=result,
        assigned_outputs=task.assigned_outputs | written,
    )
    return finished, written


def cancel(task: Task) -> Task:
    """CancelTask: cancel now unless Running, where the scheduler is asked to stop it."""
    if task.status.ended:
        raise _unknown("failed to cancel task, reason: task has already been canceled")
    if task.status is TaskStatus.RUNNING:
        return replace(task, cancel_requested=True)
    reason = CANCELED_BY_USER if task.status is TaskStatus.STAGED else CANCELED_BEFORE_STAGING
    return replace(task, status=TaskStatus.CANCELED, result=TaskResult.failure(reason))

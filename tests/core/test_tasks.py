"""Task rules (reference §3.5-3.6): every rule and rejection, as pure functions."""

import hashlib
import json
from dataclasses import replace
from unittest.mock import ANY

import pytest

from teaclave.core import tasks
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.limits import Limits
from teaclave.core.model import (
    CryptoSchema,
    Executor,
    ExecutorType,
    FileCrypto,
    Function,
    FunctionArgument,
    FunctionFile,
    FunctionUsage,
    InputFile,
    OutputFile,
    Task,
    TaskResult,
    TaskStatus,
)

CMAC = bytes(16)
RAW = FileCrypto(CryptoSchema.RAW)


def function(**changes: object) -> Function:
    base = Function(
        uuid="f",
        name="builtin-echo",
        description="",
        executor_type=ExecutorType.BUILTIN,
        public=True,
        payload=b"",
        arguments=(),
        inputs=(),
        outputs=(),
        owner="fo",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def create(fn: Function | None = None, creator: str = "alice", **kwargs: object) -> Task:
    params: dict[str, object] = {
        "task_uuid": "t",
        "function": fn or function(),
        "creator": creator,
        "executor": "builtin",
        "arguments": "{}",
        "inputs_ownership": [],
        "outputs_ownership": [],
        "max_limits": Limits(600.0, 3600.0, 8192),
    }
    params.update(kwargs)
    return tasks.create_task(**params)  # type: ignore[arg-type]


def refused(status: Status, message: str, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(TeaclaveError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.status is status
    assert caught.value.message == message


def input_file(uuid: str, *owners: str) -> InputFile:
    return InputFile(uuid, f"file:///{uuid}", CMAC, RAW, frozenset(owners))


def output_file(uuid: str, *owners: str, cmac: bytes | None = None) -> OutputFile:
    return OutputFile(uuid, f"file:///{uuid}", RAW, frozenset(owners), cmac)


# --- CreateTask: arguments ----------------------------------------------------

ARGS = (
    FunctionArgument("arg_bool", "true", allow_overwrite=True),
    FunctionArgument("arg_usize", "10", allow_overwrite=False),
    FunctionArgument("b", "default-b", allow_overwrite=True),
)


def test_supplied_arguments_keep_their_json_type_defaults_are_strings() -> None:
    merged = tasks.merge_arguments(ARGS, '{"b": [1, {"z": 1, "a": 2}], "arg_bool": true}')
    assert merged == '{"arg_bool":true,"arg_usize":"10","b":[1,{"a":2,"z":1}]}'
    # Reference §10.2: a non-overwritable default "10" is a string, not a number.
    assert json.loads(merged)["arg_usize"] == "10"


def test_reference_argument_example_deserialises() -> None:
    declared = (
        FunctionArgument("arg_bool", "true", allow_overwrite=True),
        FunctionArgument("arg_usize", "10", allow_overwrite=True),
    )
    merged = tasks.merge_arguments(declared, '{"arg_usize": 10, "arg_bool": true}')
    assert json.loads(merged) == {"arg_bool": True, "arg_usize": 10}


def test_arguments_sorted_by_key_and_non_ascii_kept() -> None:
    declared = (FunctionArgument("é", "ü"), FunctionArgument("Z"), FunctionArgument("a"))
    assert tasks.merge_arguments(declared, "{}") == '{"Z":"","a":"","é":"ü"}'


def test_empty_arguments_text_means_no_arguments() -> None:
    assert tasks.merge_arguments((FunctionArgument("k", "v"),), "") == '{"k":"v"}'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"arg_bool": 1}', "invalid task: missing argument 'b'"),
        ('{"b": 1}', "invalid task: missing argument 'arg_bool'"),
        ('{"arg_bool": 1, "b": 2, "c": 3}', "invalid task: unknown argument 'c'"),
        (
            '{"arg_bool": 1, "b": 2, "arg_usize": 3}',
            "invalid task: argument 'arg_usize' cannot be overwritten",
        ),
        ("[1, 2]", "invalid function arguments: must be a JSON object"),
        ('"text"', "invalid function arguments: must be a JSON object"),
        (
            '{"arg_bool": "\\ud800", "b": 1}',
            "invalid function arguments: not valid Unicode",
        ),
    ],
)
def test_argument_keys_must_be_exactly_the_overwritable_ones(text: str, message: str) -> None:
    refused(Status.INVALID_ARGUMENT, message, tasks.merge_arguments, ARGS, text)


@pytest.mark.parametrize("text", ["{", "{'a': 1}", '{"a": NaN}', '{"a": Infinity}'])
def test_malformed_arguments_are_invalid_argument(text: str) -> None:
    with pytest.raises(TeaclaveError) as caught:
        tasks.merge_arguments((), text)
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert caught.value.message.startswith("invalid function arguments: not JSON")


# --- CreateTask: executor, files, participants (the gate: test_access) ---------


def test_create_task_record() -> None:
    fn = function(
        public=False,
        user_allowlist=("x",),
        arguments=(FunctionArgument("k", "v"),),
        inputs=(FunctionFile("in"), FunctionFile("opt", optional=True)),
        outputs=(FunctionFile("out"),),
    )
    task = create(
        fn,
        executor="mesapy",
        inputs_ownership=[("in", ["bob", "alice"])],
        outputs_ownership=[("out", ["carol"])],
    )
    assert task == Task(
        uuid="t",
        creator="alice",
        function_id="f",
        function_owner="fo",
        function_arguments='{"k":"v"}',
        executor=Executor.MESAPY,
        inputs_ownership={"in": frozenset({"alice", "bob"})},
        outputs_ownership={"out": frozenset({"carol"})},
        participants=frozenset({"alice", "bob", "carol", "fo"}),
        function_digest=tasks.function_digest(fn),
    )
    assert task.status is TaskStatus.CREATED


def test_public_function_owner_is_not_a_participant() -> None:
    task = create(function(inputs=(FunctionFile("in"),)), inputs_ownership=[("in", ["bob"])])
    assert task.participants == {"alice", "bob"}


def test_nothing_to_assign_still_starts_created() -> None:
    assert create().status is TaskStatus.CREATED


@pytest.mark.parametrize("what", ["input", "output"])
@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ([], "invalid task: missing owners of {what} 'a'"),
        ([("a", ["u"]), ("zz", ["u"])], "invalid task: function has no {what} 'zz'"),
        ([("a", ["u"]), ("a", ["v"])], "invalid task: {what} 'a' listed twice"),
        ([("a", [])], "invalid task: {what} 'a' has no owners"),
    ],
)
def test_file_ownership_must_match_declared_files(
    what: str, requested: list[tuple[str, list[str]]], message: str
) -> None:
    fn = function(**{f"{what}s": (FunctionFile("a"), FunctionFile("o", optional=True))})
    refused(
        Status.INVALID_ARGUMENT,
        message.format(what=what),
        create,
        fn,
        **{f"{what}s_ownership": requested},
    )


def test_optional_files_may_be_given_or_omitted() -> None:
    fn = function(inputs=(FunctionFile("a"), FunctionFile("o", optional=True)))
    assert set(create(fn, inputs_ownership=[("a", ["u"])]).inputs_ownership) == {"a"}
    given = create(fn, inputs_ownership=[("a", ["u"]), ("o", ["v"])])
    assert set(given.inputs_ownership) == {"a", "o"}


# --- AssignData ---------------------------------------------------------------


@pytest.fixture
def two_party() -> Task:
    """alice creates; input 'a' owned by alice, input 'b' by bob, output 'out' by both."""
    return create(
        TWO_PARTY_FUNCTION,
        inputs_ownership=[("a", ["alice"]), ("b", ["bob"])],
        outputs_ownership=[("out", ["alice", "bob"])],
    )


CHANGED = "the function changed after the task was created"
TWO_PARTY_FUNCTION = function(
    inputs=(FunctionFile("a"), FunctionFile("b"), FunctionFile("opt", optional=True)),
    outputs=(FunctionFile("out"),),
)


def fully_assigned(task: Task) -> Task:
    task = tasks.assign_data(task, [("a", input_file("ia", "alice"))], [])
    task = tasks.assign_data(task, [("b", input_file("ib", "bob"))], [])
    return tasks.assign_data(task, [], [("out", output_file("o", "alice", "bob"))])


def test_assign_partially_then_fully(two_party: Task) -> None:
    partial = tasks.assign_data(two_party, [("a", input_file("ia", "alice"))], [])
    assert partial.status is TaskStatus.CREATED
    assert partial.assigned_inputs == {"a": input_file("ia", "alice")}
    assert not tasks.all_data_assigned(partial)
    done = fully_assigned(two_party)
    assert done.status is TaskStatus.DATA_ASSIGNED
    assert tasks.all_data_assigned(done)
    assert set(done.assigned_outputs) == {"out"}


def test_assign_only_while_created(two_party: Task) -> None:
    refused(
        Status.UNKNOWN,
        "failed to assign data to task: task is DataAssigned",
        tasks.assign_data,
        fully_assigned(two_party),
        [],
        [],
    )


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (
            [("a", input_file("i1", "alice")), ("a", input_file("i2", "alice"))],
            [],
            "input 'a' is already assigned",
        ),
        (
            [],
            [("out", output_file("o", "alice", "bob", cmac=CMAC))],
            "output 'out' was already written",
        ),
    ],
)
def test_assign_rejections(
    two_party: Task,
    inputs: list[tuple[str, InputFile]],
    outputs: list[tuple[str, OutputFile]],
    message: str,
) -> None:
    """What the state refuses; who may assign what is the rule's (test_access)."""
    refused(
        Status.PERMISSION_DENIED,
        f"permission denied: {message}",
        tasks.assign_data,
        two_party,
        inputs,
        outputs,
    )


def test_assign_twice_in_separate_calls(two_party: Task) -> None:
    once = tasks.assign_data(two_party, [("a", input_file("ia", "alice"))], [])
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: input 'a' is already assigned",
        tasks.assign_data,
        once,
        [("a", input_file("ia2", "alice"))],
        [],
    )


# --- ApproveTask --------------------------------------------------------------


def test_approve_until_everyone_approved(two_party: Task) -> None:
    task = fully_assigned(two_party)
    assert task.participants == {"alice", "bob"}
    task = tasks.approve(task, "alice")
    assert task.status is TaskStatus.DATA_ASSIGNED
    assert task.approvals == {"alice": tasks.task_digest(task)}
    assert not tasks.everyone_approved(task)
    task = tasks.approve(task, "bob")
    assert task.status is TaskStatus.APPROVED
    assert tasks.everyone_approved(task)
    refused(
        Status.UNKNOWN, "failed to approve task: task is Approved", tasks.approve, task, "alice"
    )


def test_approve_created_with_all_data_assigned() -> None:
    task = create(inputs_ownership=[])
    assert tasks.approve(task, "alice").status is TaskStatus.APPROVED


def test_approve_needs_all_data(two_party: Task) -> None:
    refused(
        Status.UNKNOWN,
        "failed to approve task: data is not fully assigned",
        tasks.approve,
        two_party,
        "alice",
    )


# --- the approval digest, revocation -------------------------------------------


def test_digest_covers_what_runs_on_which_data(two_party: Task) -> None:
    task = fully_assigned(two_party)
    assert tasks.digest_contents(task) == {
        "version": "teaclave-task-digest/1",
        "task_id": "task-t",
        "creator": "alice",
        "function_id": "function-f",
        "function_digest": tasks.function_digest(TWO_PARTY_FUNCTION),
        "executor": "builtin",
        "function_arguments": "{}",
        "inputs_ownership": {"a": ["alice"], "b": ["bob"]},
        "outputs_ownership": {"out": ["alice", "bob"]},
        "assigned_inputs": {
            "a": {"data_id": "input-ia", "cmac": CMAC.hex()},
            "b": {"data_id": "input-ib", "cmac": CMAC.hex()},
        },
        "assigned_outputs": {"out": "output-o"},
    }
    text = tasks.digest_text(task)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert tasks.task_digest(task) == hashlib.sha256(text.encode()).hexdigest()


def test_digest_is_canonical(two_party: Task) -> None:
    """Insertion order of the maps does not matter; every covered field does."""
    task = fully_assigned(two_party)
    reordered = replace(
        task,
        assigned_inputs=dict(reversed(task.assigned_inputs.items())),
        inputs_ownership=dict(reversed(task.inputs_ownership.items())),
    )
    assert tasks.task_digest(reordered) == tasks.task_digest(task)
    other_input = replace(task.assigned_inputs["a"], cmac=b"\x01" * 16)
    for changed in (
        replace(task, uuid="t2"),
        replace(task, function_digest="0" * 64),
        replace(task, function_arguments='{"x":1}'),
        replace(task, executor=Executor.PYTHON),
        replace(task, inputs_ownership={**task.inputs_ownership, "a": frozenset({"bob"})}),
        replace(task, assigned_inputs={**task.assigned_inputs, "a": other_input}),
        replace(task, assigned_outputs={"out": output_file("o2", "alice", "bob")}),
    ):
        assert tasks.task_digest(changed) != tasks.task_digest(task)
    # An output's cmac is the task's result: writing it does not change what was approved.
    written = replace(task.assigned_outputs["out"], cmac=CMAC)
    assert tasks.task_digest(replace(task, assigned_outputs={"out": written})) == (
        tasks.task_digest(task)
    )


def test_an_approval_of_another_digest_does_not_count(two_party: Task) -> None:
    task = tasks.approve(tasks.approve(fully_assigned(two_party), "alice"), "bob")
    stale = replace(task, approvals={**task.approvals, "alice": "0" * 64})
    assert tasks.current_approvers(stale) == {"bob"}
    assert not tasks.everyone_approved(stale)
    refused(
        Status.UNKNOWN,
        "failed to invoke task: not yet approved by alice",
        tasks.invoke,
        stale,
        TWO_PARTY_FUNCTION,
        FunctionUsage("f"),
    )


def test_approve_what_you_read(two_party: Task) -> None:
    partial = tasks.assign_data(two_party, [("a", input_file("ia", "alice"))], [])
    seen = tasks.task_digest(partial)  # alice reads the task, then bob assigns his data
    task = fully_assigned(two_party)
    current = tasks.task_digest(task)
    refused(
        Status.FAILED_PRECONDITION,
        f"failed to approve task: the task changed since you read it (digest now {current})",
        tasks.approve,
        task,
        "alice",
        seen,
    )
    assert tasks.approve(task, "alice", current).approvals == {"alice": current}


def test_revoke_until_staged(two_party: Task) -> None:
    approved = tasks.approve(tasks.approve(fully_assigned(two_party), "alice"), "bob")
    revoked = tasks.revoke(approved, "bob")
    assert (revoked.status, revoked.approvals) == (TaskStatus.DATA_ASSIGNED, {"alice": ANY})
    refused(
        Status.UNKNOWN,
        "failed to invoke task: not yet approved by bob",
        tasks.invoke,
        revoked,
        TWO_PARTY_FUNCTION,
        FunctionUsage("f"),
    )
    refused(
        Status.UNKNOWN,
        "failed to revoke approval: you have not approved the task",
        tasks.revoke,
        revoked,
        "bob",
    )
    assert tasks.approve(revoked, "bob") == approved
    staged, _ = tasks.invoke(approved, TWO_PARTY_FUNCTION, FunctionUsage("f"))
    for status in (TaskStatus.STAGED, TaskStatus.RUNNING, TaskStatus.FINISHED):
        refused(
            Status.UNKNOWN,
            f"failed to revoke approval: task is {tasks.status_name(status)}",
            tasks.revoke,
            replace(staged, status=status),
            "alice",
        )


def test_a_single_participant_task_stays_approved_after_revoking() -> None:
    task = tasks.approve(create(), "alice")
    assert task.status is TaskStatus.APPROVED
    assert tasks.revoke(task, "alice").status is TaskStatus.APPROVED  # the creator's own task


def test_upgrade_binds_old_approvals_to_the_current_digest(two_party: Task) -> None:
    task = fully_assigned(two_party)
    old = replace(task, approved_users=frozenset({"alice", "bob"}), status=TaskStatus.APPROVED)
    upgraded = tasks.upgrade(old)
    digest = tasks.task_digest(task)
    assert upgraded.approvals == {"alice": digest, "bob": digest}
    assert not upgraded.approved_users
    assert tasks.everyone_approved(upgraded)
    assert tasks.upgrade(upgraded) is upgraded


# --- InvokeTask ---------------------------------------------------------------


def test_single_participant_task_invoked_right_after_creation() -> None:
    task, usage = tasks.invoke(create(), function(), FunctionUsage("f", 3))
    assert task.status is TaskStatus.STAGED
    assert usage == FunctionUsage("f", 4)


def test_invoke_approved_task(two_party: Task) -> None:
    task = tasks.approve(tasks.approve(fully_assigned(two_party), "alice"), "bob")
    staged, _ = tasks.invoke(task, TWO_PARTY_FUNCTION, FunctionUsage("f"))
    assert staged.status is TaskStatus.STAGED
    # What the participants approved is what runs: a changed function is refused.
    described = replace(TWO_PARTY_FUNCTION, description="only the text changed")
    assert tasks.invoke(task, described, FunctionUsage("f"))[0] == staged
    for changed, reason in (
        (replace(TWO_PARTY_FUNCTION, payload=b"other code"), CHANGED),
        (replace(TWO_PARTY_FUNCTION, name="builtin-other"), CHANGED),
        (replace(TWO_PARTY_FUNCTION, disabled=True), "the function is disabled"),
    ):
        refused(
            Status.UNKNOWN,
            f"failed to invoke task: {reason}",
            tasks.invoke,
            task,
            changed,
            FunctionUsage("f"),
        )


def test_invoke_quota(two_party: Task) -> None:
    fn = function(usage_quota=2)
    tasks.invoke(create(), fn, FunctionUsage("f", 1))
    # The quota is checked before readiness.
    for task in (create(), two_party):
        refused(
            Status.UNKNOWN,
            "function quota has been used up",
            tasks.invoke,
            task,
            fn,
            FunctionUsage("f", 2),
        )
    unlimited, _ = tasks.invoke(create(), function(), FunctionUsage("f", 10**6))
    assert unlimited.status is TaskStatus.STAGED


def test_invoke_needs_data_and_approvals(two_party: Task) -> None:
    usage = FunctionUsage("f")
    refused(
        Status.UNKNOWN,
        "failed to invoke task: data is not fully assigned",
        tasks.invoke,
        two_party,
        function(),
        usage,
    )
    assigned = fully_assigned(two_party)
    refused(
        Status.UNKNOWN,
        "failed to invoke task: not yet approved by alice, bob",
        tasks.invoke,
        assigned,
        function(),
        usage,
    )
    refused(
        Status.UNKNOWN,
        "failed to invoke task: not yet approved by bob",
        tasks.invoke,
        tasks.approve(assigned, "alice"),
        function(),
        usage,
    )


@pytest.mark.parametrize(
    "status",
    [TaskStatus.STAGED, TaskStatus.RUNNING, TaskStatus.FINISHED, TaskStatus.CANCELED],
)
def test_invoke_only_before_staging(status: TaskStatus) -> None:
    refused(
        Status.UNKNOWN,
        f"failed to invoke task: task is {tasks.status_name(status)}",
        tasks.invoke,
        replace(create(), status=status),
        function(),
        FunctionUsage("f"),
    )


# --- CancelTask ---------------------------------------------------------------


@pytest.mark.parametrize(
    "status", [TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED]
)
def test_cancel_before_staging(status: TaskStatus) -> None:
    task = tasks.cancel(replace(create(), status=status))
    assert task.status is TaskStatus.CANCELED
    assert task.result == TaskResult.failure("Task canceled")


def test_cancel_staged_is_immediate() -> None:
    task = tasks.cancel(replace(create(), status=TaskStatus.STAGED))
    assert task.status is TaskStatus.CANCELED
    assert task.result == TaskResult.failure("Task Canceled by the user")


def test_cancel_running_asks_the_scheduler() -> None:
    task = tasks.cancel(replace(create(), status=TaskStatus.RUNNING))
    assert task.status is TaskStatus.RUNNING
    assert task.cancel_requested
    assert not task.result.ready


@pytest.mark.parametrize("status", [TaskStatus.FINISHED, TaskStatus.CANCELED, TaskStatus.FAILED])
def test_cancel_ended(status: TaskStatus) -> None:
    refused(
        Status.UNKNOWN,
        "failed to cancel task, reason: task has already been canceled",
        tasks.cancel,
        replace(create(), status=status),
    )


def test_status_names_match_the_wire() -> None:
    assert [tasks.status_name(s) for s in TaskStatus] == [
        "Created",
        "DataAssigned",
        "Approved",
        "Staged",
        "Running",
        "Finished",
        "Canceled",
        "Failed",
    ]

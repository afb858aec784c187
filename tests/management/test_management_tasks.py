"""Management over RA-TLS gRPC: the task state machine and the staged queue (§3.5-3.6, §9.1)."""

import hashlib
import json
import threading
import uuid
from dataclasses import replace

import pytest
from mgmt_helpers import (
    CMAC,
    User,
    UserFactory,
    refused,
    register_function,
    register_input,
    register_output,
)

from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import OutputFile, Task, TaskStatus
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_scheduler_service_pb2 as sched
from teaclave.storage import keys
from teaclave.storage.api import Store, Write

ECHO_ARGS = [fe.FunctionArgument(key="message", allow_overwrite=True)]


def _uuid(external: str) -> str:
    return external.split("-", 1)[1]


def _create(user: User, function_id: str, arguments: str = "{}", **fields: object) -> str:
    request = fe.CreateTaskRequest(
        function_id=function_id, function_arguments=arguments, executor="builtin", **fields
    )
    return str(user.CreateTask(request).task_id)


def _task(user: User, task_id: str) -> fe.GetTaskResponse:
    return user.GetTask(fe.GetTaskRequest(task_id=task_id))


def _owners(name: str, *uids: str) -> fe.OwnerList:
    return fe.OwnerList(data_name=name, uids=uids)


def _assign(
    user: User,
    task_id: str,
    inputs: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
) -> None:
    user.AssignData(
        fe.AssignDataRequest(
            task_id=task_id,
            inputs=[fe.DataMap(data_name=k, data_id=v) for k, v in (inputs or {}).items()],
            outputs=[fe.DataMap(data_name=k, data_id=v) for k, v in (outputs or {}).items()],
        )
    )


def _staged(store: Store) -> list[sched.StagedTask]:
    return [sched.StagedTask.FromString(r.value) for r in store.scan(keys.STAGED)]


def _stored(store: Store, task_id: str) -> tuple[Task, int]:
    [record] = store.get([keys.TASK + _uuid(task_id)])
    return decode(Task, record.value), record.version


def _two_party_task(owner: User, alice: User, bob: User) -> str:
    function_id = register_function(
        owner, inputs=[fe.FunctionInput(name="a"), fe.FunctionInput(name="b")]
    )
    return _create(
        alice, function_id, inputs_ownership=[_owners("a", "alice"), _owners("b", "bob")]
    )


def _approve(user: User, task_id: str, digest: str = "") -> str:
    return str(user.ApproveTask(fe.ApproveTaskRequest(task_id=task_id, digest=digest)).digest)


def _revoke(user: User, task_id: str) -> None:
    user.RevokeTaskApproval(fe.RevokeTaskApprovalRequest(task_id=task_id))


def test_single_party_flow_stages_a_complete_task(
    owner: User, alice: User, scheduler_store: Store
) -> None:
    function_id = register_function(
        owner,
        public=False,
        payload=b"code",
        user_allowlist=["attribute:x"],
        arguments=[*ECHO_ARGS, fe.FunctionArgument(key="fixed", default_value="1")],
        inputs=[fe.FunctionInput(name="in"), fe.FunctionInput(name="opt", optional=True)],
        outputs=[fe.FunctionOutput(name="out")],
    )
    input_id = register_input(alice, "https://host/in.bin")
    output_id = register_output(alice, "https://host/out.bin")
    task_id = _create(
        alice,
        function_id,
        '{"message": "Hello"}',
        inputs_ownership=[_owners("in", "alice")],
        outputs_ownership=[_owners("out", "alice")],
    )
    assert task_id.startswith("task-")
    created = _task(alice, task_id)
    assert (
        created.approval_digest
        == hashlib.sha256(created.approval_digest_contents.encode()).hexdigest()
    )
    assert json.loads(created.approval_digest_contents)["task_id"] == task_id
    assert created == fe.GetTaskResponse(
        task_id=task_id,
        creator="alice",
        function_id=function_id,
        function_owner="fo",
        function_arguments='{"fixed":"1","message":"Hello"}',
        inputs_ownership=[_owners("in", "alice")],
        outputs_ownership=[_owners("out", "alice")],
        participants=["alice", "fo"],
        status=common.Created,
        result=common.TaskResult(),
        approval_digest=created.approval_digest,
        approval_digest_contents=created.approval_digest_contents,
    )
    assert created.result.WhichOneof("result") is None

    _assign(alice, task_id, {"in": input_id}, {"out": output_id})
    assigned = _task(owner, task_id)
    assert assigned.status == common.DataAssigned
    assert list(assigned.assigned_inputs) == [fe.DataMap(data_name="in", data_id=input_id)]
    assert list(assigned.assigned_outputs) == [fe.DataMap(data_name="out", data_id=output_id)]

    refused(
        Status.UNKNOWN,
        "failed to invoke task: not yet approved by alice, fo",
        lambda: alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id)),
    )
    for user in (alice, owner):
        user.ApproveTask(fe.ApproveTaskRequest(task_id=task_id))
    assert _task(alice, task_id).status == common.Approved
    # A FunctionOwner approves as a participant but may not invoke (role matrix).
    refused(
        Status.PERMISSION_DENIED,
        "permission denied",
        lambda: owner.InvokeTask(fe.InvokeTaskRequest(task_id=task_id)),
    )
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))
    assert _task(alice, task_id).status == common.Staged
    usage = owner.GetFunctionUsageStats(fe.GetFunctionUsageStatsRequest(function_id=function_id))
    assert usage.current_usage == 1

    gcm = common.FileCryptoInfo(schema="aes-gcm-128", key=bytes(16), iv=bytes(12))
    [entry] = scheduler_store.scan(keys.STAGED)
    queued = sched.StagedTask.FromString(entry.value)
    # The entry carries the task record as committed with it, at its version.
    assert (decode(Task, queued.task_record), entry.version) == _stored(scheduler_store, task_id)
    queued.ClearField("task_record")
    assert [queued] == [
        sched.StagedTask(
            task_id=_uuid(task_id),
            function_id=function_id,
            function_name="builtin-echo",
            executor_type="builtin",
            executor="builtin",
            function_arguments='{"fixed":"1","message":"Hello"}',
            function_payload=b"code",
            user_id="alice",
            inputs=[
                sched.StagedInput(name="in", url="https://host/in.bin", cmac=CMAC, crypto_info=gcm)
            ],
            outputs=[sched.StagedOutput(name="out", url="https://host/out.bin", crypto_info=gcm)],
        )
    ]
    refused(
        Status.UNKNOWN,
        "failed to invoke task: task is Staged",
        lambda: alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id)),
    )


def test_single_participant_invoked_right_after_creation(
    owner: User, alice: User, scheduler_store: Store
) -> None:
    task_id = _create(alice, register_function(owner, arguments=ECHO_ARGS), '{"message": 1}')
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))
    assert _task(alice, task_id).status == common.Staged
    [staged] = _staged(scheduler_store)
    assert (staged.task_id, staged.function_arguments) == (_uuid(task_id), '{"message":1}')


def test_two_party_task(owner: User, alice: User, bob: User) -> None:
    task_id = _two_party_task(owner, alice, bob)
    assert list(_task(bob, task_id).participants) == ["alice", "bob"]
    _assign(alice, task_id, {"a": register_input(alice)})
    refused(
        Status.UNKNOWN,
        "failed to approve task: data is not fully assigned",
        lambda: bob.ApproveTask(fe.ApproveTaskRequest(task_id=task_id)),
    )
    _assign(bob, task_id, {"b": register_input(bob)})
    refused(
        Status.UNKNOWN,
        "failed to assign data to task: task is DataAssigned",
        lambda: _assign(bob, task_id),
    )
    bob.ApproveTask(fe.ApproveTaskRequest(task_id=task_id))
    assert list(_task(alice, task_id).approved_users) == ["bob"]
    alice.ApproveTask(fe.ApproveTaskRequest(task_id=task_id))
    assert _task(alice, task_id).status == common.Approved
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))


def test_task_access_and_ids(owner: User, alice: User, bob: User) -> None:
    task_id = _create(alice, register_function(owner))
    for call in (
        lambda: _task(bob, task_id),
        lambda: _assign(bob, task_id),
        lambda: bob.ApproveTask(fe.ApproveTaskRequest(task_id=task_id)),
    ):
        refused(Status.PERMISSION_DENIED, "permission denied: not a participant of the task", call)
    for bad in (
        "",
        "task-1",
        "input-" + _uuid(task_id),
        "task-00000000-0000-4000-8000-000000000000",
    ):
        refused(Status.INVALID_ARGUMENT, "invalid task id", lambda b=bad: _task(alice, b))


@pytest.mark.parametrize(
    ("arguments", "executor", "message"),
    [
        (
            "{",
            "builtin",
            "invalid function arguments: not JSON (Expecting property name enclosed "
            "in double quotes: line 1 column 2 (char 1))",
        ),
        ("[]", "builtin", "invalid function arguments: must be a JSON object"),
        ("{}", "builtin", "invalid task: missing argument 'message'"),
        ('{"message": 1, "x": 2}', "builtin", "invalid task: unknown argument 'x'"),
        ('{"message": 1}', "jvm", "invalid executor 'jvm'"),
    ],
)
def test_create_task_rejections(
    owner: User, alice: User, arguments: str, executor: str, message: str
) -> None:
    function_id = register_function(owner, arguments=ECHO_ARGS)
    request = fe.CreateTaskRequest(
        function_id=function_id, function_arguments=arguments, executor=executor
    )
    refused(Status.INVALID_ARGUMENT, message, lambda: alice.CreateTask(request))


def test_create_task_gate(owner: User, alice: User, bob: User, user: UserFactory) -> None:
    function_id = register_function(
        owner, public=False, user_allowlist=["attribute:x", "carol", "y"]
    )
    assert _create(alice, function_id).startswith("task-")  # attribute x allow-listed
    assert _create(user("carol", "DataOwner-q"), function_id).startswith("task-")  # user id
    for refused_user in (bob, user("x", "DataOwner-q")):  # plain "y" is a user, not attribute y
        refused(
            Status.PERMISSION_DENIED,
            "permission denied: function is private and not shared with you",
            lambda u=refused_user: _create(u, function_id),
        )
    refused(
        Status.INVALID_ARGUMENT,
        "invalid function id",
        lambda: _create(alice, "function-00000000-0000-4000-8000-000000000000"),
    )


def test_assign_rejections_save_nothing(owner: User, alice: User, bob: User) -> None:
    function_id = register_function(
        owner, inputs=[fe.FunctionInput(name="a"), fe.FunctionInput(name="b")]
    )
    task_id = _create(
        alice, function_id, inputs_ownership=[_owners("a", "alice"), _owners("b", "alice")]
    )
    mine, theirs = register_input(alice), register_input(bob)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: you do not own the file for input 'b'",
        lambda: _assign(alice, task_id, {"a": mine, "b": theirs}),
    )
    refused(
        Status.INVALID_ARGUMENT,
        "invalid data id",
        lambda: _assign(alice, task_id, {"a": mine, "b": f"input-{uuid.uuid4()}"}),
    )
    # A non-participant learns nothing, not even whether a file id exists.
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: not a participant of the task",
        lambda: _assign(bob, task_id, {"a": f"input-{uuid.uuid4()}"}),
    )
    assert list(_task(alice, task_id).assigned_inputs) == []


def write_cmac(store: Store, output_id: str) -> None:
    """What the scheduler does when a task wrote the output."""
    key = keys.OUTPUT + _uuid(output_id)
    [record] = store.get([key])
    written = replace(decode(OutputFile, record.value), cmac=CMAC)
    store.commit([(key, record.version)], [Write(key, encode(written))])


def test_assign_refuses_a_written_output(owner: User, alice: User, scheduler_store: Store) -> None:
    function_id = register_function(owner, outputs=[fe.FunctionOutput(name="out")])
    task_id = _create(alice, function_id, outputs_ownership=[_owners("out", "alice")])
    output_id = register_output(alice)
    write_cmac(scheduler_store, output_id)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: output 'out' was already written",
        lambda: _assign(alice, task_id, outputs={"out": output_id}),
    )


def test_quota_is_enforced_under_concurrency(
    owner: User, alice: User, scheduler_store: Store
) -> None:
    function_id = register_function(owner, usage_quota=3)
    task_ids = [_create(alice, function_id) for _ in range(8)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def invoke(task_id: str) -> None:
        try:
            alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))
            outcome = "ok"
        except TeaclaveError as exc:
            outcome = exc.message
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=invoke, args=(t,)) for t in task_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["function quota has been used up"] * 5 + ["ok"] * 3
    stats = alice.GetFunctionUsageStats(fe.GetFunctionUsageStatsRequest(function_id=function_id))
    assert (stats.function_quota, stats.current_usage) == (3, 3)
    assert len(_staged(scheduler_store)) == 3
    staged = sum(_task(alice, t).status == common.Staged for t in task_ids)
    assert staged == 3


def test_cancel(owner: User, alice: User, bob: User, admin: User, scheduler_store: Store) -> None:
    function_id = register_function(owner)

    def cancel(user: User, task_id: str) -> None:
        user.CancelTask(fe.CancelTaskRequest(task_id=task_id))

    created = _create(alice, function_id)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: only the task's creator can cancel it",
        lambda: cancel(bob, created),
    )
    cancel(alice, created)
    response = _task(alice, created)
    assert (response.status, response.result.Err.reason) == (common.Canceled, "Task canceled")
    refused(
        Status.UNKNOWN,
        "failed to cancel task, reason: task has already been canceled",
        lambda: cancel(alice, created),
    )

    staged = _create(alice, function_id)
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=staged))
    cancel(admin, staged)
    response = _task(alice, staged)
    assert (response.status, response.result.Err.reason) == (
        common.Canceled,
        "Task Canceled by the user",
    )

    running = _create(alice, function_id)
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=running))
    task, version = _stored(scheduler_store, running)
    key = keys.TASK + task.uuid
    scheduler_store.commit(
        [(key, version)],
        [Write(key, encode(replace(task, status=TaskStatus.RUNNING, executor_id="e1")))],
    )
    cancel(alice, running)
    task, _ = _stored(scheduler_store, running)
    assert (task.status, task.cancel_requested, task.result.ready) == (
        TaskStatus.RUNNING,
        True,
        False,
    )


def test_invoke_refuses_an_output_written_since_assignment(
    owner: User, alice: User, scheduler_store: Store
) -> None:
    function_id = register_function(owner, outputs=[fe.FunctionOutput(name="out")])
    output_id = register_output(alice)
    task_id = _create(alice, function_id, outputs_ownership=[_owners("out", "alice")])
    _assign(alice, task_id, outputs={"out": output_id})
    write_cmac(scheduler_store, output_id)  # another task wrote it meanwhile
    refused(
        Status.UNKNOWN,
        "failed to invoke task: output 'out' was already written",
        lambda: alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id)),
    )


def test_approvals_bind_the_digest_read(owner: User, alice: User, bob: User) -> None:
    task_id = _two_party_task(owner, alice, bob)
    _assign(alice, task_id, {"a": register_input(alice)})
    seen = _task(bob, task_id).approval_digest  # bob reads; alice's file only
    _assign(bob, task_id, {"b": register_input(bob)})
    current = _task(bob, task_id)
    assert current.approval_digest != seen
    assert json.loads(current.approval_digest_contents)["assigned_inputs"].keys() == {"a", "b"}
    refused(
        Status.FAILED_PRECONDITION,
        "failed to approve task: the task changed since you read it "
        f"(digest now {current.approval_digest})",
        lambda: _approve(bob, task_id, seen),
    )
    assert _approve(bob, task_id, current.approval_digest) == current.approval_digest
    assert _approve(alice, task_id) == current.approval_digest
    approved = _task(alice, task_id)
    assert (approved.status, list(approved.approved_users)) == (common.Approved, ["alice", "bob"])
    assert approved.approval_digest == current.approval_digest


def test_revoke_until_staged(owner: User, alice: User, bob: User, user: UserFactory) -> None:
    task_id = _two_party_task(owner, alice, bob)
    _assign(alice, task_id, {"a": register_input(alice)})
    _assign(bob, task_id, {"b": register_input(bob)})
    refused(
        Status.UNKNOWN,
        "failed to revoke approval: you have not approved the task",
        lambda: _revoke(bob, task_id),
    )
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: not a participant of the task",
        lambda: _revoke(user("carol", "DataOwner"), task_id),
    )
    _approve(alice, task_id)
    _approve(bob, task_id)
    _revoke(bob, task_id)
    revoked = _task(alice, task_id)
    assert (revoked.status, list(revoked.approved_users)) == (common.DataAssigned, ["alice"])
    refused(
        Status.UNKNOWN,
        "failed to invoke task: not yet approved by bob",
        lambda: alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id)),
    )
    _approve(bob, task_id)
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))
    refused(
        Status.UNKNOWN,
        "failed to revoke approval: task is Staged",
        lambda: _revoke(bob, task_id),
    )


def test_approvals_of_older_records_are_upgraded(
    owner: User, alice: User, bob: User, scheduler_store: Store
) -> None:
    """A record written before approvals named a digest keeps its approvals."""
    task_id = _two_party_task(owner, alice, bob)
    _assign(alice, task_id, {"a": register_input(alice)})
    _assign(bob, task_id, {"b": register_input(bob)})
    task, version = _stored(scheduler_store, task_id)
    old = json.loads(encode(task))
    del old["approvals"]
    old.update(approved_users=["alice", "bob"], status=int(TaskStatus.APPROVED))
    key = keys.TASK + task.uuid
    scheduler_store.commit([(key, version)], [Write(key, json.dumps(old).encode())])
    assert list(_task(alice, task_id).approved_users) == ["alice", "bob"]
    alice.InvokeTask(fe.InvokeTaskRequest(task_id=task_id))
    staged, _ = _stored(scheduler_store, task_id)
    assert (staged.approved_users, set(staged.approvals)) == (frozenset(), {"alice", "bob"})

"""Helper types: wire round trips, GetTask parsing and the task-outcome rules."""

import ipaddress
import json

import pytest

from teaclave.client import (
    AuditEntry,
    CryptoInfo,
    DataMap,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
    Task,
    TaskCanceled,
    TaskFailed,
    TaskFailure,
    TaskOutputs,
    TaskStatus,
)
from teaclave.client._connection import format_address
from teaclave.client.frontend import task_outcome
from teaclave.proto import teaclave_common_pb2 as common_pb
from teaclave.proto import teaclave_frontend_service_pb2 as fe_pb


def test_helpers_round_trip() -> None:
    for value in (
        FunctionInput("input_data1", "Client 0 data."),
        FunctionOutput("out", optional=True),
        FunctionArgument("order"),
        OwnerList("input_data1", ("user0", "user1")),
        DataMap("input_data1", "input-1"),
    ):
        assert type(value).from_proto(value.to_proto()) == value  # type: ignore[attr-defined]


def test_teaclave_defaults() -> None:
    argument = FunctionArgument("order").to_proto()
    assert (argument.default_value, argument.allow_overwrite) == ("", True)
    assert FunctionInput("a", "b").to_proto().optional is False


def test_crypto_info_accepts_byte_lists() -> None:
    info = CryptoInfo("aes-gcm-128", [0] * 15 + [1], bytes(12)).to_proto()
    assert info.key == bytes(15) + b"\x01"
    assert info.iv == bytes(12)
    assert info.schema == "aes-gcm-128"


def get_task_reply(
    status: int, result: common_pb.TaskResult | None = None
) -> fe_pb.GetTaskResponse:
    return fe_pb.GetTaskResponse(
        task_id="task-1",
        creator="user0",
        function_arguments=json.dumps({"order": "ascending"}),
        inputs_ownership=[fe_pb.OwnerList(data_name="input_data1", uids=["user0"])],
        assigned_inputs=[fe_pb.DataMap(data_name="input_data1", data_id="input-1")],
        participants=["user0", "user1"],
        status=status,  # type: ignore[arg-type]
        result=result or common_pb.TaskResult(),
    )


def ok(value: bytes) -> common_pb.TaskResult:
    return common_pb.TaskResult(
        Ok=common_pb.TaskOutputs(return_value=value, tags_map={"out": b"\x01" * 16}, log=["hi"])
    )


def err(reason: str) -> common_pb.TaskResult:
    return common_pb.TaskResult(Err=common_pb.TaskFailure(reason=reason))


def test_task_from_get_task_reply() -> None:
    task = Task.from_proto(get_task_reply(TaskStatus.FINISHED, ok(b"3 common items")))
    assert task.status is TaskStatus.FINISHED
    assert task.function_arguments == {"order": "ascending"}
    assert task.inputs_ownership == (OwnerList("input_data1", ("user0",)),)
    assert task.assigned_inputs == (DataMap("input_data1", "input-1"),)
    assert task.participants == ("user0", "user1")
    assert task.result == TaskOutputs(b"3 common items", {"out": b"\x01" * 16}, ("hi",))
    assert (task.approval_digest, task.approval_digest_contents) == ("", {})  # older servers
    assert Task.from_proto(get_task_reply(TaskStatus.CREATED)).result is None
    assert Task.from_proto(get_task_reply(TaskStatus.FINISHED, err("x"))).result == TaskFailure("x")


def test_task_carries_the_approval_digest_and_what_it_covers() -> None:
    reply = get_task_reply(TaskStatus.DATA_ASSIGNED)
    reply.approval_digest = "ab" * 32
    reply.approval_digest_contents = '{"task_id":"task-1","version":"teaclave-task-digest/1"}'
    task = Task.from_proto(reply)
    assert task.approval_digest == "ab" * 32
    assert task.approval_digest_contents == {
        "task_id": "task-1",
        "version": "teaclave-task-digest/1",
    }


@pytest.mark.parametrize(
    "status", [TaskStatus.CREATED, TaskStatus.APPROVED, TaskStatus.STAGED, TaskStatus.RUNNING]
)
def test_unfinished_tasks_have_no_outcome(status: TaskStatus) -> None:
    assert task_outcome(Task.from_proto(get_task_reply(status))) is None


def test_outcomes() -> None:
    outputs = task_outcome(Task.from_proto(get_task_reply(TaskStatus.FINISHED, ok(b"v"))))
    assert outputs is not None
    assert outputs.return_value == b"v"
    with pytest.raises(TaskFailed) as failed:
        task_outcome(Task.from_proto(get_task_reply(TaskStatus.FINISHED, err("Invalid order"))))
    assert failed.value.reason == "Invalid order"
    with pytest.raises(TaskFailed) as lost:
        task_outcome(
            Task.from_proto(
                get_task_reply(TaskStatus.FAILED, err("Runtime Error: Executor Timeout"))
            )
        )
    assert lost.value.reason == "Runtime Error: Executor Timeout"
    with pytest.raises(TaskCanceled) as canceled:
        task_outcome(Task.from_proto(get_task_reply(TaskStatus.CANCELED, err("Task canceled"))))
    assert canceled.value.reason == "Task canceled"


def test_audit_entry_ip() -> None:
    entry = common_pb.Entry(
        microsecond=5, ip=ipaddress.IPv6Address("::127.0.0.1").packed, user="u", message="m"
    )
    assert AuditEntry.from_proto(entry).ip == ipaddress.IPv6Address("::7f00:1")
    assert AuditEntry.from_proto(common_pb.Entry(ip=b"bad")).ip == ipaddress.IPv6Address(0)


def test_addresses() -> None:
    assert format_address(("localhost", 7776)) == "localhost:7776"
    assert format_address(("::1", 7777)) == "[::1]:7777"
    assert format_address("127.0.0.1:7777") == "127.0.0.1:7777"

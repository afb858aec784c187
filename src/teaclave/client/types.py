"""Values exchanged with the frontend: request helpers and typed replies.

The request helpers keep the names, fields and defaults of Apache Teaclave's
Python SDK (``FunctionInput("input_data1", "Client 0 data.")`` …).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teaclave.core.model import TaskStatus
from teaclave.proto import teaclave_common_pb2 as common_pb
from teaclave.proto import teaclave_frontend_service_pb2 as fe_pb

ByteString = bytes | Sequence[int]
"""Raw bytes, or Teaclave's list of byte values."""


@dataclass(frozen=True)
class FunctionInput:
    """A named input file a function reads."""

    name: str
    description: str = ""
    optional: bool = False

    def to_proto(self) -> fe_pb.FunctionInput:
        """The wire message."""
        return fe_pb.FunctionInput(
            name=self.name, description=self.description, optional=self.optional
        )

    @classmethod
    def from_proto(cls, msg: fe_pb.FunctionInput) -> FunctionInput:
        """From the wire message."""
        return cls(msg.name, msg.description, msg.optional)


@dataclass(frozen=True)
class FunctionOutput:
    """A named output file a function writes."""

    name: str
    description: str = ""
    optional: bool = False

    def to_proto(self) -> fe_pb.FunctionOutput:
        """The wire message."""
        return fe_pb.FunctionOutput(
            name=self.name, description=self.description, optional=self.optional
        )

    @classmethod
    def from_proto(cls, msg: fe_pb.FunctionOutput) -> FunctionOutput:
        """From the wire message."""
        return cls(msg.name, msg.description, msg.optional)


@dataclass(frozen=True)
class FunctionArgument:
    """A function argument; task creators may set it when ``allow_overwrite``."""

    key: str
    default_value: str = ""
    allow_overwrite: bool = True

    def to_proto(self) -> fe_pb.FunctionArgument:
        """The wire message."""
        return fe_pb.FunctionArgument(
            key=self.key, default_value=self.default_value, allow_overwrite=self.allow_overwrite
        )

    @classmethod
    def from_proto(cls, msg: fe_pb.FunctionArgument) -> FunctionArgument:
        """From the wire message."""
        return cls(msg.key, msg.default_value, msg.allow_overwrite)


@dataclass(frozen=True)
class OwnerList:
    """The users who own the file bound to ``data_name`` of a task."""

    data_name: str
    uids: Sequence[str]

    def to_proto(self) -> fe_pb.OwnerList:
        """The wire message."""
        return fe_pb.OwnerList(data_name=self.data_name, uids=list(self.uids))

    @classmethod
    def from_proto(cls, msg: fe_pb.OwnerList) -> OwnerList:
        """From the wire message."""
        return cls(msg.data_name, tuple(msg.uids))


@dataclass(frozen=True)
class DataMap:
    """Binds the registered file ``data_id`` to the task's ``data_name``."""

    data_name: str
    data_id: str

    def to_proto(self) -> fe_pb.DataMap:
        """The wire message."""
        return fe_pb.DataMap(data_name=self.data_name, data_id=self.data_id)

    @classmethod
    def from_proto(cls, msg: fe_pb.DataMap) -> DataMap:
        """From the wire message."""
        return cls(msg.data_name, msg.data_id)


@dataclass(frozen=True)
class CryptoInfo:
    """How a file is encrypted: ``schema`` (e.g. ``aes-gcm-128``), ``key`` and ``iv``."""

    schema: str
    key: ByteString = b""
    iv: ByteString = b""

    def to_proto(self) -> common_pb.FileCryptoInfo:
        """The wire message."""
        return common_pb.FileCryptoInfo(schema=self.schema, key=bytes(self.key), iv=bytes(self.iv))


def to_protos(items: Iterable[Any]) -> list[Any]:
    """The wire messages of a sequence of helpers."""
    return [item.to_proto() for item in items]


@dataclass(frozen=True)
class Function:
    """A registered function as GetFunction returns it."""

    function_id: str
    name: str
    description: str
    executor_type: str
    owner: str
    payload: bytes
    public: bool
    arguments: tuple[FunctionArgument, ...]
    inputs: tuple[FunctionInput, ...]
    outputs: tuple[FunctionOutput, ...]
    user_allowlist: tuple[str, ...]

    @classmethod
    def from_proto(cls, function_id: str, msg: fe_pb.GetFunctionResponse) -> Function:
        """From the GetFunction reply."""
        return cls(
            function_id=function_id,
            name=msg.name,
            description=msg.description,
            executor_type=msg.executor_type,
            owner=msg.owner,
            payload=msg.payload,
            public=msg.public,
            arguments=tuple(FunctionArgument.from_proto(a) for a in msg.arguments),
            inputs=tuple(FunctionInput.from_proto(i) for i in msg.inputs),
            outputs=tuple(FunctionOutput.from_proto(o) for o in msg.outputs),
            user_allowlist=tuple(msg.user_allowlist),
        )


@dataclass(frozen=True)
class FunctionUsage:
    """A function's quota (negative: unlimited) and how often it ran."""

    function_quota: int
    current_usage: int


@dataclass(frozen=True)
class FunctionList:
    """Functions a user registered, and private functions they may use."""

    registered_functions: tuple[str, ...]
    allowed_functions: tuple[str, ...]


@dataclass(frozen=True)
class DataFile:
    """A registered input or output file: its owners and cmac (empty if none yet)."""

    owner: tuple[str, ...]
    cmac: bytes


@dataclass(frozen=True)
class TaskOutputs:
    """A successful task's summary, output cmacs by output name, and log lines."""

    return_value: bytes
    tags_map: Mapping[str, bytes] = field(default_factory=dict)
    log: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, msg: common_pb.TaskOutputs) -> TaskOutputs:
        """From the wire message."""
        return cls(msg.return_value, dict(msg.tags_map), tuple(msg.log))


@dataclass(frozen=True)
class TaskFailure:
    """Why a task produced no result."""

    reason: str


@dataclass(frozen=True)
class Task:
    """A task as GetTask returns it; ``result`` is None until the task has one.

    ``approved_users`` lists the approvals of ``approval_digest``, the SHA-256 of the
    canonical JSON of ``approval_digest_contents`` (what an approval binds).
    """

    task_id: str
    creator: str
    function_id: str
    function_owner: str
    function_arguments: Mapping[str, Any]
    inputs_ownership: tuple[OwnerList, ...]
    outputs_ownership: tuple[OwnerList, ...]
    participants: tuple[str, ...]
    approved_users: tuple[str, ...]
    assigned_inputs: tuple[DataMap, ...]
    assigned_outputs: tuple[DataMap, ...]
    status: TaskStatus
    result: TaskOutputs | TaskFailure | None
    approval_digest: str = ""
    approval_digest_contents: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, msg: fe_pb.GetTaskResponse) -> Task:
        """From the GetTask reply."""
        which = msg.result.WhichOneof("result")
        result: TaskOutputs | TaskFailure | None = None
        if which == "Ok":
            result = TaskOutputs.from_proto(msg.result.Ok)
        elif which == "Err":
            result = TaskFailure(msg.result.Err.reason)
        return cls(
            task_id=msg.task_id,
            creator=msg.creator,
            function_id=msg.function_id,
            function_owner=msg.function_owner,
            function_arguments=json.loads(msg.function_arguments or "{}"),
            inputs_ownership=tuple(OwnerList.from_proto(o) for o in msg.inputs_ownership),
            outputs_ownership=tuple(OwnerList.from_proto(o) for o in msg.outputs_ownership),
            participants=tuple(msg.participants),
            approved_users=tuple(msg.approved_users),
            assigned_inputs=tuple(DataMap.from_proto(d) for d in msg.assigned_inputs),
            assigned_outputs=tuple(DataMap.from_proto(d) for d in msg.assigned_outputs),
            status=TaskStatus(msg.status),
            result=result,
            approval_digest=msg.approval_digest,
            approval_digest_contents=json.loads(msg.approval_digest_contents or "{}"),
        )


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry: time (µs since the epoch), client IP, user, API, success."""

    microsecond: int
    ip: ipaddress.IPv6Address
    user: str
    message: str
    result: bool

    @classmethod
    def from_proto(cls, msg: common_pb.Entry) -> AuditEntry:
        """From the wire message (unparseable IPs become ``::``)."""
        ip = ipaddress.IPv6Address(msg.ip) if len(msg.ip) == 16 else ipaddress.IPv6Address(0)
        return cls(msg.microsecond, ip, msg.user, msg.message, msg.result)

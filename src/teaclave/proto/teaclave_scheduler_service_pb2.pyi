from teaclave.proto import teaclave_common_pb2 as _teaclave_common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutorStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Idle: _ClassVar[ExecutorStatus]
    Executing: _ClassVar[ExecutorStatus]

class ExecutorCommand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NoAction: _ClassVar[ExecutorCommand]
    Stop: _ClassVar[ExecutorCommand]
    NewTask: _ClassVar[ExecutorCommand]
Idle: ExecutorStatus
Executing: ExecutorStatus
NoAction: ExecutorCommand
Stop: ExecutorCommand
NewTask: ExecutorCommand

class StagedInput(_message.Message):
    __slots__ = ("name", "url", "cmac", "crypto_info")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CMAC_FIELD_NUMBER: _ClassVar[int]
    CRYPTO_INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    cmac: bytes
    crypto_info: _teaclave_common_pb2.FileCryptoInfo
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., cmac: _Optional[bytes] = ..., crypto_info: _Optional[_Union[_teaclave_common_pb2.FileCryptoInfo, _Mapping]] = ...) -> None: ...

class StagedOutput(_message.Message):
    __slots__ = ("name", "url", "crypto_info")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CRYPTO_INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    crypto_info: _teaclave_common_pb2.FileCryptoInfo
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., crypto_info: _Optional[_Union[_teaclave_common_pb2.FileCryptoInfo, _Mapping]] = ...) -> None: ...

class StagedTask(_message.Message):
    __slots__ = ("task_id", "function_id", "function_name", "executor_type", "executor", "function_arguments", "function_payload", "inputs", "outputs", "user_id", "trace_context")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    function_id: str
    function_name: str
    executor_type: str
    executor: str
    function_arguments: str
    function_payload: bytes
    inputs: _containers.RepeatedCompositeFieldContainer[StagedInput]
    outputs: _containers.RepeatedCompositeFieldContainer[StagedOutput]
    user_id: str
    trace_context: str
    def __init__(self, task_id: _Optional[str] = ..., function_id: _Optional[str] = ..., function_name: _Optional[str] = ..., executor_type: _Optional[str] = ..., executor: _Optional[str] = ..., function_arguments: _Optional[str] = ..., function_payload: _Optional[bytes] = ..., inputs: _Optional[_Iterable[_Union[StagedInput, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[StagedOutput, _Mapping]]] = ..., user_id: _Optional[str] = ..., trace_context: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("executor_id", "status", "task_id")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    status: ExecutorStatus
    task_id: str
    def __init__(self, executor_id: _Optional[str] = ..., status: _Optional[_Union[ExecutorStatus, str]] = ..., task_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("command", "task_id")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    command: ExecutorCommand
    task_id: str
    def __init__(self, command: _Optional[_Union[ExecutorCommand, str]] = ..., task_id: _Optional[str] = ...) -> None: ...

class PullTaskRequest(_message.Message):
    __slots__ = ("executor_id",)
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    def __init__(self, executor_id: _Optional[str] = ...) -> None: ...

class PullTaskResponse(_message.Message):
    __slots__ = ("staged_task",)
    STAGED_TASK_FIELD_NUMBER: _ClassVar[int]
    staged_task: StagedTask
    def __init__(self, staged_task: _Optional[_Union[StagedTask, _Mapping]] = ...) -> None: ...

class StartUploadRequest(_message.Message):
    __slots__ = ("executor_id", "task_id", "output_name")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    task_id: str
    output_name: str
    def __init__(self, executor_id: _Optional[str] = ..., task_id: _Optional[str] = ..., output_name: _Optional[str] = ...) -> None: ...

class StartUploadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateTaskResultRequest(_message.Message):
    __slots__ = ("executor_id", "task_id", "result")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    task_id: str
    result: _teaclave_common_pb2.TaskResult
    def __init__(self, executor_id: _Optional[str] = ..., task_id: _Optional[str] = ..., result: _Optional[_Union[_teaclave_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class UpdateTaskResultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

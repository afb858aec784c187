from teaclave.proto import teaclave_common_pb2 as _teaclave_common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("task_id", "function_id", "function_name", "executor_type", "executor", "function_arguments", "function_payload", "inputs", "outputs", "user_id", "trace_context", "task_record")
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
    TASK_RECORD_FIELD_NUMBER: _ClassVar[int]
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
    task_record: bytes
    def __init__(self, task_id: _Optional[str] = ..., function_id: _Optional[str] = ..., function_name: _Optional[str] = ..., executor_type: _Optional[str] = ..., executor: _Optional[str] = ..., function_arguments: _Optional[str] = ..., function_payload: _Optional[bytes] = ..., inputs: _Optional[_Iterable[_Union[StagedInput, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[StagedOutput, _Mapping]]] = ..., user_id: _Optional[str] = ..., trace_context: _Optional[str] = ..., task_record: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("executor_id", "task_ids")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, executor_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("stop_task_ids",)
    STOP_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    stop_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stop_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AwaitTaskRequest(_message.Message):
    __slots__ = ("executor_id", "timeout_ms", "running_task_ids")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    timeout_ms: int
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, executor_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., running_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AwaitTaskResponse(_message.Message):
    __slots__ = ("staged_task",)
    STAGED_TASK_FIELD_NUMBER: _ClassVar[int]
    staged_task: StagedTask
    def __init__(self, staged_task: _Optional[_Union[StagedTask, _Mapping]] = ...) -> None: ...

class PullTaskRequest(_message.Message):
    __slots__ = ("executor_id", "running_task_ids")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, executor_id: _Optional[str] = ..., running_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

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

"""What a task process runs: :func:`main`, forked by the zygote (:mod:`.zygote`).

stdin carries an envelope: a header (:data:`_HEADER`), JSON settings (the
execution settings, the sandbox to fork and what it may read), a compiled Wasm
module (if any), then the serialized ``StagedTask`` after its length. Then
stdout and stdin carry the upload handshake and, last, the serialized
``TaskResult`` (:mod:`teaclave.executor.uploads`, whose
:func:`~teaclave.executor.uploads.serve` is the execution service's side). It
starts no thread before the task runs: a Python or Wasm function's sandbox is
forked first thing, while the process is single-threaded and before it has read
the task's keys.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import DecodeError

from teaclave.config import ExecutionConfig
from teaclave.core import codec, limits
from teaclave.core.model import parse_executor_type
from teaclave.executor import uploads
from teaclave.executor.sandbox import View
from teaclave.executor.task import fork_sandbox, run_staged_task, sandbox_kind
from teaclave.functions import registry
from teaclave.observability import stages
from teaclave.proto.teaclave_common_pb2 import TaskFailure, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

_HEADER = struct.Struct(">II")  # settings length, module length
_TASK_LENGTH = struct.Struct(">I")
_MALFORMED = "executor process returned a malformed result"
_REHEARSAL = StagedTask(
    function_name="builtin-echo",
    executor_type="builtin",
    executor="builtin",
    function_arguments='{"message": "", "save_log": "true"}',
)
"""A task of no one's, without inputs, outputs or secrets: what :func:`rehearse` runs."""


@dataclass(frozen=True)
class Settings:
    """What comes before the task: no secret."""

    config: ExecutionConfig
    sandbox: str
    """The sandbox to fork before the task is read: "" (none), "python", "wamr" or "wasi"."""
    view: View | None
    """What the sandbox may read (None: the worker works it out)."""


def prepare() -> None:
    """Do once, in the zygote before it forks, what each task process would otherwise do
    first: import every built-in, resolve the settings' field types, find the
    temporary directory and encode the rehearsal's envelope (the forks inherit all)."""
    for name in registry.LOCATIONS:
        registry.lookup(name)
    codec.resolve(Settings)
    tempfile.gettempdir()
    _rehearsal_envelope()


def encode_envelope(
    config: ExecutionConfig, staged: StagedTask, module: bytes = b"", view: View | None = None
) -> bytes:
    """The worker's stdin for running ``staged`` with ``config``.

    The task's limits (:mod:`teaclave.core.limits`) move from its arguments into
    the settings; INVALID_ARGUMENT if one is bad. ``module``: the task's Wasm
    module compiled by the caller (:mod:`teaclave.executor.wasm`), if any;
    ``view``: what its sandbox may read (:func:`~teaclave.executor.task.sandbox_view`,
    which the caller may keep from task to task). The header, settings and module
    hold no secret, so the worker forks the task's sandbox before it reads the keys.
    """
    task_limits, arguments = limits.split(
        staged.function_arguments,
        config.limits(),
        config.max_limits(),
        parse_executor_type(staged.executor_type),
    )
    task = StagedTask()
    task.CopyFrom(staged)
    task.function_arguments = arguments
    settings = codec.encode(Settings(config.with_limits(task_limits), sandbox_kind(task), view))
    header = _HEADER.pack(len(settings), len(module))
    serialized = task.SerializeToString()
    return header + settings + module + _TASK_LENGTH.pack(len(serialized)) + serialized


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := stream.read(size - len(data))):
        data += chunk
    if len(data) < size:
        raise ValueError("envelope too short")
    return data


@dataclass(frozen=True)
class Header:
    """What comes before the task: no secret."""

    settings: Settings
    module: bytes


def read_header(stream: BinaryIO) -> Header:
    """The header of the envelope on ``stream`` (ValueError if it is malformed).

    Reads exactly the header: from an unbuffered stream, nothing of the task
    (its keys) is read ahead.
    """
    size, module_size = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    try:
        settings = codec.decode(Settings, _read_exactly(stream, size))
    except codec.CodecError as exc:
        raise ValueError(f"malformed settings: {exc}") from None
    return Header(settings, _read_exactly(stream, module_size))


def read_task(stream: BinaryIO) -> StagedTask:
    """The staged task after the header (ValueError if malformed)."""
    (size,) = _TASK_LENGTH.unpack(_read_exactly(stream, _TASK_LENGTH.size))
    serialized = _read_exactly(stream, size)
    staged = StagedTask()
    try:
        staged.ParseFromString(serialized)
    except DecodeError as exc:
        raise ValueError(f"malformed staged task: {exc}") from None
    return staged


def _failure(reason: str) -> TaskResult:
    return TaskResult(Err=TaskFailure(reason=reason))


def reported(stdout: bytes | None) -> TaskResult | None:
    """The task result in a worker's result frame; None if it sent none that parses.

    The frame is the worker's last word: how its process ends after it changes nothing.
    """
    if not stdout:
        return None
    result = TaskResult()
    try:
        result.ParseFromString(stdout)
    except DecodeError:
        return None
    return result if result.WhichOneof("result") is not None else None


def read_result(returncode: int, stdout: bytes | None) -> TaskResult:
    """The task result a worker reported, or a failure naming how it ended.

    ``stdout``: the result's bytes; None if the worker broke the protocol.
    """
    if stdout is None:
        return _failure(_MALFORMED)
    if (result := reported(stdout)) is not None:
        return result
    if returncode != 0:
        return _failure(f"executor process exited with code {returncode}")
    return _failure(_MALFORMED)


def main() -> None:
    """Rehearse, then run the task of the envelope on stdin and write its result to stdout."""
    rehearse()
    # Only the result goes to stdout: anything else printed lands on stderr.
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = open(0, "rb", buffering=0, closefd=False)  # unbuffered: no read-ahead  # noqa: SIM115
    with result_out:
        _serve(stdin, io.BufferedReader(stdin), result_out)


def rehearse() -> TaskResult:
    """Run :data:`_REHEARSAL` as a task, in memory (no descriptor read or written): its
    result.

    A task process forked ahead (the zygote's spare) does so while it waits for its
    task. Right after a fork, the first run of the task path costs milliseconds of
    copy-on-write page faults and cold caches; after a rehearsal the task's own run
    finds its pages private and warm. The rehearsal holds nothing of anyone's.
    """
    envelope, out = io.BytesIO(_rehearsal_envelope()), io.BytesIO()
    _serve(envelope, envelope, out)
    frames = io.BytesIO(out.getvalue())
    while frame := uploads.read_frame(frames):
        if frame[0] == uploads.RESULT:
            return read_result(0, frame[1])
    return read_result(0, None)


@functools.cache
def _rehearsal_envelope() -> bytes:
    return encode_envelope(ExecutionConfig(), _REHEARSAL)


def _serve(stdin: BinaryIO, answers: BinaryIO, result_out: BinaryIO) -> None:
    """Run the task of the envelope on ``stdin``, asking to upload its outputs on
    ``result_out`` (``answers``: ``stdin``, buffered), and write its result there."""
    header = read_header(stdin)
    settings = header.settings
    with stages.recording() as report:  # from the moment the task came
        # Fork the task's sandbox now: before any thread exists and before the task,
        # with its file keys, is in this process's memory.
        with stages.stage("sandbox"):
            sandbox = fork_sandbox(settings.sandbox, settings.config, header.module, settings.view)
        with sandbox or contextlib.nullcontext():
            staged = read_task(stdin)
            gate = uploads.ServiceGate(result_out, answers)
            result = run_staged_task(
                staged, settings.config, sandbox, module=header.module, start_upload=gate
            )
            uploads.write_frame(result_out, uploads.STAGES, report.encode())
            uploads.write_frame(result_out, uploads.RESULT, result.SerializeToString())

"""What a task process runs: :func:`main`, forked by the zygote (:mod:`.zygote`).

stdin carries an envelope in frames, each after a kind byte: the header
(:data:`HEADER`: its lengths, JSON settings with the execution settings, the
sandbox to fork and what it may read, then the compiled Wasm module, if any),
then the task (:data:`TASK`: the serialized ``StagedTask`` after its length).
A spare process may get a header ahead (:data:`AHEAD`), the one the execution
service expects its task to have: it forks that sandbox while it waits, and its
task then comes without a header of its own (with one if it differs). Then
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import DecodeError

from teaclave.config import ExecutionConfig
from teaclave.core import codec, limits
from teaclave.core.model import parse_executor_type
from teaclave.executor import uploads
from teaclave.executor.sandbox import View
from teaclave.executor.sandboxed import SandboxedFunction
from teaclave.executor.task import fork_sandbox, run_staged_task, sandbox_kind
from teaclave.functions import registry
from teaclave.observability import stages
from teaclave.proto.teaclave_common_pb2 import TaskFailure, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

AHEAD, HEADER, TASK = b"A", b"H", b"T"
"""The kinds of the envelope's frames: a header sent ahead, a header, the task."""
_HEADER = struct.Struct(">II")  # settings length, module length
_TASK_LENGTH = struct.Struct(">I")
SPARE, TAKEN = "teaclave-spare", "teaclave-task"
"""A task process's name (``comm``, as ``ps`` shows it) while it waits for its task, and
once its task's frames began to come (its sandbox, forked before, keeps the first)."""
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


@dataclass(frozen=True)
class Envelope:
    """A task's envelope: its header frame and its task frame."""

    header: bytes
    """:data:`HEADER`, then the settings and module: no secret."""
    task: bytes
    """:data:`TASK`, then the task."""

    def __bytes__(self) -> bytes:
        return self.header + self.task

    @functools.cached_property
    def ahead(self) -> bytes:
        """The header as a spare process gets it ahead of its task."""
        return AHEAD + self.header[len(HEADER) :]

    def after(self, ahead: bytes) -> bytes:
        """What a task process that got ``ahead`` (:attr:`ahead`, or b"") still needs."""
        return self.task if ahead == self.ahead else bytes(self)


def encode_envelope(
    config: ExecutionConfig, staged: StagedTask, module: bytes = b"", view: View | None = None
) -> Envelope:
    """The envelope for running ``staged`` with ``config``.

    The task's limits (:mod:`teaclave.core.limits`) move from its arguments into
    the settings; INVALID_ARGUMENT if one is bad. ``module``: the task's Wasm
    module compiled by the caller (:mod:`teaclave.executor.wasm`), if any;
    ``view``: what its sandbox may read (:func:`~teaclave.executor.task.sandbox_view`,
    which the caller may keep from task to task). The header holds no secret, so
    the worker forks the task's sandbox before it reads the keys.
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
    header = HEADER + _HEADER.pack(len(settings), len(module)) + settings + module
    serialized = task.SerializeToString()
    return Envelope(header, TASK + _TASK_LENGTH.pack(len(serialized)) + serialized)


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
    """The header on ``stream``, after its kind byte (ValueError if it is malformed).

    Reads exactly the header: from an unbuffered stream, nothing of the task
    (its keys) is read ahead.
    """
    size, module_size = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    try:
        settings = codec.decode(Settings, _read_exactly(stream, size))
    except codec.CodecError as exc:
        raise ValueError(f"malformed settings: {exc}") from None
    return Header(settings, _read_exactly(stream, module_size))


def read_kind(stream: BinaryIO) -> bytes:
    """The kind of the next frame on ``stream`` (ValueError if there is none)."""
    return _read_exactly(stream, 1)


def read_task(stream: BinaryIO) -> StagedTask:
    """The staged task on ``stream``, after its kind byte (ValueError if malformed)."""
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
    _name(SPARE)
    # Only the result goes to stdout: anything else printed lands on stderr.
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = open(0, "rb", buffering=0, closefd=False)  # unbuffered: no read-ahead  # noqa: SIM115
    with result_out:
        _serve(stdin, io.BufferedReader(stdin), result_out, lambda: _name(TAKEN))


def _name(name: str) -> None:
    """Name this process ``name`` (its ``comm``), where /proc lets it."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name)


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
    return bytes(encode_envelope(ExecutionConfig(), _REHEARSAL))


def _fork(header: Header) -> SandboxedFunction | None:
    """The sandbox ``header`` names, forked now (None for no sandbox)."""
    settings = header.settings
    return fork_sandbox(settings.sandbox, settings.config, header.module, settings.view)


def _fork_ahead(header: Header) -> SandboxedFunction | None:
    """The sandbox ``header`` names, forked while waiting for the task; None if it has
    none or cannot be forked, whyever (the task's own attempt then says why: the task
    that comes may not even be the one the header was sent for)."""
    try:
        return _fork(header)
    except Exception:
        return None


def _serve(
    stdin: BinaryIO,
    answers: BinaryIO,
    result_out: BinaryIO,
    on_task: Callable[[], None] = lambda: None,
) -> None:
    """Run the task of the envelope on ``stdin``, asking to upload its outputs on
    ``result_out`` (``answers``: ``stdin``, buffered), and write its result there.
    ``on_task``: called once the task's frames begin."""
    kind, header, sandbox = read_kind(stdin), None, None
    with contextlib.ExitStack() as sandboxes:  # each killed, if it still runs, at the end
        if kind == AHEAD:
            header = read_header(stdin)
            if (sandbox := _fork_ahead(header)) is not None:
                sandboxes.enter_context(sandbox)
            kind = read_kind(stdin)
        on_task()
        with stages.recording() as report:  # from the moment the task came
            if kind == HEADER:  # not the header sent ahead: not its sandbox either
                header, sandbox = read_header(stdin), None
                kind = read_kind(stdin)
            if kind != TASK or header is None:
                raise ValueError("malformed envelope")
            # Fork the task's sandbox now, unless it was forked ahead: before any thread
            # exists and before the task, with its file keys, is in this process's memory.
            with stages.stage("sandbox", ahead=sandbox is not None):
                if sandbox is None and (sandbox := _fork(header)) is not None:
                    sandboxes.enter_context(sandbox)
            gate = uploads.ServiceGate(result_out, answers)
            config, module = header.settings.config, header.module
            result = run_staged_task(
                read_task(stdin), config, sandbox, module=module, start_upload=gate
            )
            uploads.write_frame(result_out, uploads.STAGES, report.encode())
        uploads.write_frame(result_out, uploads.RESULT, result.SerializeToString())

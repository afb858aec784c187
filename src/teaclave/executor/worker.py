"""The child process that runs one task: ``python -m teaclave.executor.worker [PARENT_PID]``.

stdin carries an envelope: a 4-byte big-endian length, that many bytes of
JSON execution settings, then the serialized ``StagedTask``. stdout receives
the serialized ``TaskResult``. The process dies with its parent (PR_SET_PDEATHSIG).
It starts no thread before the task runs: a Python function's sandbox is forked
first thing in :func:`run_staged_task`, while the process is single-threaded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import sys

from google.protobuf.message import DecodeError

from teaclave.config import ExecutionConfig
from teaclave.core import codec
from teaclave.executor.task import run_staged_task
from teaclave.proto.teaclave_common_pb2 import TaskFailure, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

_LENGTH = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1
_MALFORMED = "executor process returned a malformed result"


def command(parent_pid: int) -> list[str]:
    """The command line of a worker whose parent is ``parent_pid``."""
    return [sys.executable, "-m", __name__, str(parent_pid)]


def encode_envelope(config: ExecutionConfig, staged: StagedTask) -> bytes:
    """The worker's stdin for running ``staged`` with ``config``."""
    settings = codec.encode(config)
    return _LENGTH.pack(len(settings)) + settings + staged.SerializeToString()


def decode_envelope(data: bytes) -> tuple[ExecutionConfig, StagedTask]:
    """The settings and task of an envelope (ValueError if it is malformed)."""
    if len(data) < _LENGTH.size:
        raise ValueError("envelope too short")
    (size,) = _LENGTH.unpack_from(data)
    end = _LENGTH.size + size
    try:
        config = codec.decode(ExecutionConfig, data[_LENGTH.size : end])
    except codec.CodecError as exc:
        raise ValueError(f"malformed settings: {exc}") from None
    staged = StagedTask()
    try:
        staged.ParseFromString(data[end:])
    except DecodeError as exc:
        raise ValueError(f"malformed staged task: {exc}") from None
    return config, staged


def _failure(reason: str) -> TaskResult:
    return TaskResult(Err=TaskFailure(reason=reason))


def read_result(returncode: int, stdout: bytes) -> TaskResult:
    """The task result a worker reported, or a failure naming how it ended."""
    if returncode != 0:
        return _failure(f"executor process exited with code {returncode}")
    result = TaskResult()
    try:
        result.ParseFromString(stdout)
    except DecodeError:
        return _failure(_MALFORMED)
    return result if result.WhichOneof("result") is not None else _failure(_MALFORMED)


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(1)


def main(argv: list[str]) -> None:
    """Run the task of the envelope on stdin and write its result to stdout."""
    _die_with_parent(int(argv[0]))
    # Only the result goes to stdout: anything else printed lands on stderr.
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    config, staged = decode_envelope(sys.stdin.buffer.read())
    with result_out:
        result_out.write(run_staged_task(staged, config).SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1:])

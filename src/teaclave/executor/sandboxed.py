"""A task's function in a forked sandbox: forked first, then given its task and served its files.

The sandbox must be forked while the worker is still single-threaded and before it has read
the task with its file keys, so a :class:`SandboxedFunction` is created first: the
sandboxed process (its guest, Python or Wasm) waits on the channel for the ``go`` frame that
:meth:`SandboxedFunction.run` sends, then asks for the task's files over the channel.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, invalid_argument
from teaclave.executor import sandbox
from teaclave.executor.channel import protocol
from teaclave.executor.channel.protocol import ChannelClosed, ProtocolError
from teaclave.executor.channel.server import ChannelServer, FunctionFailed
from teaclave.executor.tasklog import TaskLog
from teaclave.functions.runtime import Runtime
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask


def _failure(message: str) -> TeaclaveError:
    return TeaclaveError(Status.ABORTED, message)


def limits(config: ExecutionConfig, reserved_bytes: int = 0) -> sandbox.Limits:
    """The sandbox limits of a task run with ``config`` (its limits)."""
    return sandbox.Limits(
        cpu_secs=config.cpu_secs,
        wall_secs=config.wall_secs,
        memory_bytes=config.memory_mb << 20,
        reserved_bytes=reserved_bytes,
    )


def _ended(outcome: sandbox.SandboxOutcome) -> str:
    """Why the sandboxed process ended without reporting a result."""
    if outcome.signal is not None:
        name = signal.Signals(outcome.signal).name
        if outcome.signal == signal.SIGSYS:
            return f"the function made a system call the sandbox forbids ({name})"
        return f"the function's process was killed by {name}"
    return f"the function's process exited with code {outcome.exit_code} without a result"


class SandboxedFunction:
    """``target`` forked into a sandbox seeing ``view``, waiting for :meth:`run`.

    A context manager: leaving it kills the sandbox if it still runs. Subclasses
    (one per ``kind`` of function) give the task with :meth:`load`.
    """

    def __init__(
        self,
        kind: str,
        config: ExecutionConfig,
        target: Callable[[socket.socket], int],
        view: sandbox.View,
        limits: sandbox.Limits,
        *,
        native_calls: bool = False,
    ) -> None:
        self.kind = kind
        self._config = config
        self._limits = limits
        self._task: bytes | None = None
        self._channel, untrusted = socket.socketpair()
        try:
            self._process = sandbox.spawn(
                target, untrusted, limits, view=view, native_calls=native_calls
            )
        except BaseException:
            self._channel.close()
            raise
        finally:
            untrusted.close()
        self._outcome: sandbox.SandboxOutcome | None = None

    def __enter__(self) -> SandboxedFunction:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._outcome is None:
            self._process.kill()
            self._wait()
        self._channel.close()

    def load(self, staged: StagedTask) -> None:
        """Take the task, sent to the sandbox by :meth:`run`."""
        raise NotImplementedError

    def _go(self, **task: Any) -> None:
        """What the ``go`` frame :meth:`run` sends: the task as the guest expects it (JSON)."""
        encoded = json.dumps(task, separators=(",", ":")).encode()
        if len(encoded) > protocol.MAX_TASK:
            raise invalid_argument(
                f"the task's payload and arguments exceed {protocol.MAX_TASK >> 20} MiB"
            )
        self._task = encoded

    def _wait(self) -> sandbox.SandboxOutcome:
        if self._outcome is None:
            self._outcome = self._process.wait()
        return self._outcome

    def _exceeded(self, limit: str) -> str:
        """The reason for a task the sandbox ended at ``limit`` (as the sandbox names it)."""
        return f"{limit} exceeded"

    def _broken(self, exc: ProtocolError | OSError) -> str:
        """Why the channel broke: a limit, the process's end, or a protocol violation."""
        expired = isinstance(exc, TimeoutError)  # the wall time ran out while it was silent
        violation = isinstance(exc, ProtocolError) and not isinstance(exc, ChannelClosed)
        if expired or violation:
            self._process.kill()
        outcome = self._wait()  # killed when the wall time runs out, if it still runs
        if expired:
            return f"wall time limit ({self._limits.wall_secs:g} s) exceeded"
        if outcome.limit is not None:
            return self._exceeded(outcome.limit)
        if violation:
            return f"the function broke the channel protocol: {exc}"
        return _ended(outcome)

    def run(self, runtime: Runtime, log: TaskLog | None = None) -> bytes:
        """Run the function on ``runtime``'s files; its summary (or a failure naming why).

        ``log``: where the function's log entries go, if the task asked for them; the
        ``go`` frame then tells the guest to keep them, within the same limits.
        """
        if self._task is None:
            raise RuntimeError("the function has no task yet")
        config = self._config
        server = ChannelServer(
            self._channel,
            runtime,
            max_file_bytes=config.max_file_bytes,
            max_summary_bytes=config.max_summary_bytes,
            log=log,
        )
        wanted = {} if log is None else {"log": dataclasses.asdict(log.limits)}
        self._process.start_clock()  # the function's time starts with its task
        try:
            protocol.send(self._channel, "go", self._task, **wanted)
            # The function's last word: its end is left to __exit__.
            summary = server.serve(self._process.remaining)
        except FunctionFailed as exc:
            error = exc.error
            if error.startswith("MemoryError"):
                error = f"memory limit ({config.memory_mb} MiB) exceeded: {error}"
            raise _failure(f"{error}\n{exc.traceback}".rstrip()) from None
        except (ProtocolError, OSError) as exc:
            raise _failure(self._broken(exc)) from None
        return summary

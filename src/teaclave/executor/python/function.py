"""A Python function of one task: forked into the sandbox first, then fed and served.

The sandbox must be forked while the worker is still single-threaded, so a
:class:`PythonFunction` is created before anything is staged: the sandboxed
process waits on the channel until :meth:`PythonFunction.run` sends the payload.
"""

from __future__ import annotations

import importlib
import signal
import socket
import threading
from types import TracebackType

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor import sandbox
from teaclave.executor.python import guest, payload, protocol
from teaclave.executor.python.protocol import ChannelClosed, ProtocolError
from teaclave.executor.python.server import ChannelServer, FunctionFailed
from teaclave.functions.runtime import Runtime
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask


def _failure(message: str) -> TeaclaveError:
    return TeaclaveError(Status.ABORTED, message)


def limits(config: ExecutionConfig) -> sandbox.Limits:
    """The sandbox limits of a Python task."""
    return sandbox.Limits(
        cpu_secs=config.cpu_secs,
        wall_secs=config.wall_secs,
        memory_bytes=config.memory_mb << 20,
    )


def preload(modules: tuple[str, ...]) -> None:
    """Import the allowed modules now: the sandbox cannot load native libraries later."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TeaclaveError(
                Status.FAILED_PRECONDITION, f"execution.python_modules: cannot import {name!r}"
            ) from exc


def _ended(outcome: sandbox.SandboxOutcome) -> str:
    """Why the sandboxed process ended without reporting a result."""
    if outcome.signal is not None:
        name = signal.Signals(outcome.signal).name
        if outcome.signal == signal.SIGSYS:
            return f"the function made a system call the sandbox forbids ({name})"
        return f"the function's process was killed by {name}"
    return f"the function's process exited with code {outcome.exit_code} without a result"


class PythonFunction:
    """A task's payload in a forked sandbox, waiting for :meth:`run` (a context manager)."""

    def __init__(self, config: ExecutionConfig) -> None:
        self._argv: list[str] = []
        self._payload = b""
        self._config = config
        self._limits = limits(config)
        preload(config.python_modules)
        self._channel, untrusted = socket.socketpair()
        try:
            self._process = sandbox.spawn(guest.main, untrusted, self._limits)
        except BaseException:
            self._channel.close()
            raise
        finally:
            untrusted.close()
        self._outcome: sandbox.SandboxOutcome | None = None
        self._expired = threading.Event()

    def __enter__(self) -> PythonFunction:
        return self

    def load(self, staged: StagedTask) -> None:
        """The task's payload and arguments, sent to the sandbox by :meth:`run`."""
        self._argv = payload.flatten(staged.function_arguments)
        self._payload = payload.source(staged.function_payload).encode()

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

    def _wait(self) -> sandbox.SandboxOutcome:
        if self._outcome is None:
            self._outcome = self._process.wait()
        return self._outcome

    def _expire(self) -> None:
        self._expired.set()
        self._process.kill()

    def _broken(self, exc: ProtocolError | OSError) -> str:
        """Why the channel broke: a limit, the process's end, or a protocol violation."""
        violation = isinstance(exc, ProtocolError) and not isinstance(exc, ChannelClosed)
        if violation:
            self._process.kill()
        outcome = self._wait()  # the wall-time timer still runs
        if self._expired.is_set():
            return f"wall time limit ({self._limits.wall_secs:g} s) exceeded"
        if outcome.limit is not None:
            return f"{outcome.limit} exceeded"
        if violation:
            return f"the function broke the channel protocol: {exc}"
        return _ended(outcome)

    def run(self, runtime: Runtime) -> bytes:
        """Run the function on ``runtime``'s files; its summary (or a failure naming why)."""
        config = self._config
        server = ChannelServer(
            self._channel,
            runtime,
            max_file_bytes=config.max_file_bytes,
            max_summary_bytes=config.max_summary_bytes,
        )
        timer = threading.Timer(self._limits.wall_secs, self._expire)
        timer.start()
        try:
            protocol.send(
                self._channel,
                "go",
                self._payload,
                argv=self._argv,
                modules=list(config.python_modules),
                max_summary_bytes=config.max_summary_bytes,
            )
            summary = server.serve()
            self._wait()
        except FunctionFailed as exc:
            error = exc.error
            if error.startswith("MemoryError"):
                error = f"memory limit ({config.memory_mb} MiB) exceeded: {error}"
            raise _failure(f"{error}\n{exc.traceback}".rstrip()) from None
        except (ProtocolError, OSError) as exc:
            raise _failure(self._broken(exc)) from None
        finally:
            timer.cancel()
        return summary

"""WASI commands: the function gets argv, stdout and stderr, and no other host resource.

No preopened directory and no environment variable: files are reached only
through the env functions. stdout (the summary) and stderr (the end of a
failure's reason) are kept in memory, bounded, never in a file: they may hold
plaintext. If the task asked for its log, their lines go to it too. wasmtime-py's
in-memory outputs panic at interpreter exit unless the store is closed, so its
store must be closed after the run.
"""

from __future__ import annotations

from collections.abc import Callable

import wasmtime

from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor.tasklog import LineWriter, TaskLog

MODULE = "wasi_snapshot_preview1"
START = "_start"
PROGRAM = "function"
"""``argv[0]``."""
STDERR_BYTES = 4096
"""The end of stderr kept for a failure's reason."""


class _Capture:
    """The last ``limit`` bytes written to a stream, and whether there were more."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.data = bytearray()
        self.overflowed = False

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self._limit:
            self.overflowed = True
            del self.data[: len(self.data) - self._limit]


class Command:
    """Runs ``_start`` with ``argv``; stdout, at most ``max_summary_bytes``, is the summary."""

    def __init__(self, argv: list[str], max_summary_bytes: int, log: TaskLog | None = None) -> None:
        self._argv = [PROGRAM, *argv]
        self._max_summary_bytes = max_summary_bytes
        self._stdout = _Capture(max_summary_bytes)
        self._stderr = _Capture(STDERR_BYTES)
        self._log = log
        self._lines: list[LineWriter] = []

    def _output(self, capture: _Capture) -> Callable[[bytes], None]:
        """What a stream's writes go to: ``capture``, and the log's lines if there is a log."""
        if self._log is None:
            return capture.write
        lines = LineWriter(self._log)
        self._lines.append(lines)

        def write(chunk: bytes) -> None:
            capture.write(chunk)
            lines.feed(chunk)

        return write

    def prepare(self, store: wasmtime.Store, linker: wasmtime.Linker) -> None:
        """Give ``store`` the command's WASI context and ``linker`` the WASI functions."""
        config = wasmtime.WasiConfig()
        config.argv = self._argv
        config.stdout_custom = self._output(self._stdout)
        config.stderr_custom = self._output(self._stderr)
        store.set_wasi(config)
        linker.define_wasi()

    def _failure(self, reason: str) -> TeaclaveError:
        return TeaclaveError(Status.ABORTED, self.explain(reason))

    def enter(self, store: wasmtime.Store, instance: wasmtime.Instance) -> bytes:
        """The function's stdout, once it returned or exited with code 0."""
        start = instance.exports(store)[START]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                raise self._failure(f"the function exited with code {exc.code}") from None
        if self._stdout.overflowed:
            limit = self._max_summary_bytes
            raise self._failure(f"stdout exceeds execution.max_summary_bytes ({limit})")
        for lines in self._lines:
            lines.flush()  # a last line without a newline
        return bytes(self._stdout.data)

    def explain(self, reason: str) -> str:
        """A failure's reason, followed by the end of stderr."""
        stderr = self._stderr
        if not stderr.data:
            return reason
        tail = stderr.data.decode(errors="replace")
        return f"{reason}\n{'…' if stderr.overflowed else ''}{tail}".rstrip()

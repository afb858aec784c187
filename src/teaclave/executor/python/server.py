"""The trusted end of the channel: serves a sandboxed function's files from the runtime.

The sandbox is untrusted: every frame is checked, a malformed one ends the
task. Requests about files (an unknown name or handle, too many handles, an
output grown too large) are answered with an error the function sees as a
``RuntimeError``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor.python import protocol
from teaclave.executor.python.protocol import Frame, ProtocolError
from teaclave.functions.runtime import Runtime

MAX_HANDLES = 1023
"""Files a task may open, in all (reference §6.3)."""
OPEN_FAILED = "fileio_init: teaclave_ffi_error"
"""The error of opening a file the function does not declare (reference §6.5)."""
INVALID_HANDLE = "teaclave_ffi_error: invalid file handle"


class FunctionFailed(Exception):
    """The function raised: its exception line and traceback."""

    def __init__(self, error: str, traceback: str) -> None:
        super().__init__(error)
        self.error = error
        self.traceback = traceback


class _Refused(Exception):
    """A request the function gets an error reply for."""


@dataclass
class _File:
    stream: BinaryIO
    writable: bool
    written: int = 0


class ChannelServer:
    """Answers one function's requests over ``channel`` until it reports its result."""

    def __init__(
        self,
        channel: socket.socket,
        runtime: Runtime,
        *,
        max_file_bytes: int,
        max_summary_bytes: int,
    ) -> None:
        self._channel = channel
        self._runtime = runtime
        self._max_file_bytes = max_file_bytes
        self._max_summary_bytes = max_summary_bytes
        self._files: dict[int, _File] = {}
        self._opened = 0
        self._handlers: dict[str, Callable[[Frame], tuple[dict[str, Any], bytes]]] = {
            "open": self._open,
            "read": self._read,
            "write": self._write,
            "close": self._close,
        }

    def serve(self) -> bytes:
        """The function's summary, once it reported it.

        Raises :class:`FunctionFailed` if the function raised, and
        :class:`ProtocolError` if it broke the protocol or closed the channel. A
        summary may be one byte longer than ``max_summary_bytes`` (to be refused).
        """
        max_body = max(protocol.CHUNK, self._max_summary_bytes + 1)
        while True:
            frame = protocol.receive(self._channel, max_body)
            if frame.op == "result":
                return frame.body
            if frame.op == "failure":
                raise FunctionFailed(frame.field("error", str), frame.body.decode(errors="replace"))
            handler = self._handlers.get(frame.op)
            if handler is None:
                raise ProtocolError(f"unknown op {frame.op!r}")
            try:
                fields, body = handler(frame)
            except _Refused as exc:
                protocol.send(self._channel, "error", message=str(exc))
            else:
                protocol.send(self._channel, "ok", body, **fields)

    def _open(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        name, mode = frame.field("name", str), frame.field("mode", str)
        if mode not in ("rb", "wb"):
            raise ProtocolError(f"'open' frame: unknown mode {mode!r}")
        if self._opened == MAX_HANDLES:
            raise _Refused(f"too many files opened ({MAX_HANDLES} per task)")
        runtime = self._runtime
        try:
            stream = runtime.open_input(name) if mode == "rb" else runtime.create_output(name)
        except TeaclaveError as exc:
            if exc.status is not Status.INVALID_ARGUMENT:
                raise
            raise _Refused(OPEN_FAILED) from None
        self._opened += 1
        self._files[self._opened] = _File(stream, writable=mode == "wb")
        return {"handle": self._opened}, b""

    def _file(self, frame: Frame, *, writable: bool) -> _File:
        file = self._files.get(frame.field("handle", int))
        if file is None or file.writable is not writable:
            raise _Refused(INVALID_HANDLE)
        return file

    def _read(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        file = self._file(frame, writable=False)
        size = frame.field("size", int)
        if not 0 < size <= protocol.CHUNK:
            raise ProtocolError(f"'read' frame: size must be from 1 to {protocol.CHUNK}")
        return {}, file.stream.read(size)

    def _write(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        file = self._file(frame, writable=True)
        if file.written + len(frame.body) > self._max_file_bytes:
            raise _Refused(f"output exceeds execution.max_file_bytes ({self._max_file_bytes})")
        file.stream.write(frame.body)
        file.written += len(frame.body)
        return {}, b""

    def _close(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        file = self._files.pop(frame.field("handle", int), None)
        if file is None:
            raise _Refused(INVALID_HANDLE)
        file.stream.close()
        return {}, b""

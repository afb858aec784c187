"""The trusted end of the channel: serves a sandboxed function's files from the runtime.

The sandbox is untrusted: every frame is checked, a malformed one ends the
task. Requests about files (an unknown name or handle, too many handles, an
output grown too large) are answered with an error the function sees as a
``RuntimeError``. Log entries (a task that asked for its log) get no answer; the
task's :class:`~teaclave.executor.tasklog.TaskLog` bounds what it keeps of them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from teaclave.executor.channel import protocol
from teaclave.executor.channel.protocol import Frame, ProtocolError
from teaclave.executor.files import FileRefused, FileTable
from teaclave.executor.tasklog import TaskLog
from teaclave.functions.runtime import Runtime


class FunctionFailed(Exception):
    """The function raised: its exception line and traceback."""

    def __init__(self, error: str, traceback: str) -> None:
        super().__init__(error)
        self.error = error
        self.traceback = traceback


class ChannelServer:
    """Answers one function's requests over ``channel`` until it reports its result."""

    def __init__(
        self,
        channel: socket.socket,
        runtime: Runtime,
        *,
        max_file_bytes: int,
        max_summary_bytes: int,
        log: TaskLog | None = None,
    ) -> None:
        self._channel = channel
        self._log = log
        self._files = FileTable(runtime, max_file_bytes=max_file_bytes)
        self._max_summary_bytes = max_summary_bytes
        self._handlers: dict[str, Callable[[Frame], tuple[dict[str, Any], bytes]]] = {
            "open": self._open,
            "read": self._read,
            "write": self._write,
            "close": self._close,
        }

    def serve(self, remaining: protocol.Remaining | None = None) -> bytes:
        """The function's summary, once it reported it.

        Raises :class:`FunctionFailed` if the function raised, :class:`ProtocolError` if
        it broke the protocol or closed the channel, and ``TimeoutError`` once
        ``remaining()`` (seconds) ran out while waiting for it. A summary may be one byte
        longer than ``max_summary_bytes`` (to be refused).
        """
        max_body = max(protocol.CHUNK, self._max_summary_bytes + 1)
        while True:
            frame = protocol.receive(self._channel, max_body, remaining)
            if frame.op == "result":
                return frame.body
            if frame.op == "failure":
                raise FunctionFailed(frame.field("error", str), frame.body.decode(errors="replace"))
            if frame.op in ("log", "log_skipped"):
                self._record(frame)
                continue
            handler = self._handlers.get(frame.op)
            if handler is None:
                raise ProtocolError(f"unknown op {frame.op!r}")
            try:
                fields, body = handler(frame)
            except FileRefused as exc:
                protocol.send(self._channel, "error", message=str(exc))
            else:
                protocol.send(self._channel, "ok", body, **fields)

    def _record(self, frame: Frame) -> None:
        """A log entry, or a count of those the function did not send (no reply)."""
        if self._log is None:
            raise ProtocolError(f"{frame.op!r} frame, but the task did not ask for its log")
        if frame.op == "log":
            self._log.add(frame.body.decode(errors="replace"))
            return
        count = frame.field("count", int)
        if count < 0:
            raise ProtocolError("'log_skipped' frame: 'count' must not be negative")
        self._log.skip(count)

    def _open(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        name, mode = frame.field("name", str), frame.field("mode", str)
        if mode not in ("rb", "wb"):
            raise ProtocolError(f"'open' frame: unknown mode {mode!r}")
        return {"handle": self._files.open(name, writable=mode == "wb")}, b""

    def _read(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        handle, size = frame.field("handle", int), frame.field("size", int)
        if not 0 <= size <= protocol.CHUNK:
            raise ProtocolError(f"'read' frame: size must be from 0 to {protocol.CHUNK}")
        return {}, self._files.read(handle, size)

    def _write(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        total = frame.header.get("total", 0)
        if type(total) is not int:
            raise ProtocolError("'write' frame: 'total' must be a int")
        self._files.write(frame.field("handle", int), frame.body, total=total)
        return {}, b""

    def _close(self, frame: Frame) -> tuple[dict[str, Any], bytes]:
        self._files.close(frame.field("handle", int))
        return {}, b""

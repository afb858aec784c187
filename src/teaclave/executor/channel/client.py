"""The sandboxed end of the channel: the task's files, by handle, as requests to the trusted end.

It mirrors :class:`teaclave.executor.files.FileTable`, which answers on the other side: an
error reply (an unknown name or handle, too many files, an output grown too large) raises
:class:`~teaclave.executor.files.FileRefused`, whatever else arrives is a protocol error.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from teaclave.executor.channel import protocol
from teaclave.executor.channel.protocol import Frame
from teaclave.executor.files import FileRefused
from teaclave.executor.tasklog import LogLimits, TaskLog


def receive_task(channel: socket.socket) -> tuple[dict[str, Any], TaskLog | None]:
    """The ``go`` frame: the task (as its guest expects it), and its log if the task asked."""
    frame = protocol.receive(channel, protocol.MAX_TASK)
    task: dict[str, Any] = json.loads(frame.body)
    limits = frame.header.get("log")
    return task, None if limits is None else TaskLog(LogLimits(**limits))


class ChannelFiles:
    """The task's files over ``channel``."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel

    def _call(self, op: str, body: bytes = b"", **fields: Any) -> Frame:
        protocol.send(self._channel, op, body, **fields)
        reply = protocol.receive(self._channel)
        if reply.op == "error":
            raise FileRefused(reply.field("message", str))
        return reply

    def open(self, name: str, *, writable: bool) -> int:
        """A handle on input ``name``, or on a new output ``name`` if ``writable``."""
        reply = self._call("open", name=name, mode="wb" if writable else "rb")
        handle: int = reply.field("handle", int)
        return handle

    def read(self, handle: int, size: int) -> bytes:
        """At most ``size`` bytes (and at most :data:`~.protocol.CHUNK`); empty at the end."""
        size = min(size, protocol.CHUNK)
        return self._call("read", handle=handle, size=size).body[:size]

    def write(self, handle: int, data: bytes | bytearray, *, total: int = 0) -> None:
        """Append all of ``data`` to an output, in pieces of :data:`~.protocol.CHUNK` bytes.

        The first piece announces the size of the whole write (``data``, or ``total``
        if ``data`` begins a larger one), so a write too large for the output is
        refused before any of it is appended.
        """
        view = memoryview(data)
        whole = max(total, len(view))
        self._call("write", bytes(view[: protocol.CHUNK]), handle=handle, total=whole)
        for start in range(protocol.CHUNK, len(view), protocol.CHUNK):
            self._call("write", bytes(view[start : start + protocol.CHUNK]), handle=handle)

    def close(self, handle: int) -> None:
        """Close a handle; it is then unknown."""
        self._call("close", handle=handle)

    def report(self, summary: bytes, log: TaskLog | None = None) -> None:
        """The function's result: its log's entries, if the task asked for it, then its summary."""
        if log is not None:
            for entry in log.kept:
                protocol.send(self._channel, "log", entry.encode())
            if log.skipped:
                protocol.send(self._channel, "log_skipped", count=log.skipped)
        protocol.send(self._channel, "result", summary)

    def fail(self, error: str, traceback: bytes = b"") -> None:
        """The function's failure: one line, and a traceback if there is one."""
        protocol.send(self._channel, "failure", traceback, error=error)

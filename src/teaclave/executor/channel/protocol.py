"""Frames on the channel between the trusted executor and the sandboxed function.

A frame is an 8-byte prefix (header length, body length; big-endian u32 each),
a JSON object header with a string ``op``, then an optional binary body. Sizes
are bounded on receipt; anything malformed is a :class:`ProtocolError`.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_PREFIX = struct.Struct(">II")
MAX_HEADER = 4096
"""Largest header, in bytes."""
CHUNK = 1 << 20
"""Largest body of a read or write: files move in chunks of at most this size."""
MAX_TASK = 64 << 20
"""Largest ``go`` frame: the task as the guest gets it (payload, arguments)."""


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame."""


class ChannelClosed(ProtocolError):
    """The peer closed the channel between two frames."""


@dataclass(frozen=True)
class Frame:
    """One message: its header (with ``op``) and body."""

    header: Mapping[str, Any]
    body: bytes = b""

    @property
    def op(self) -> str:
        """The operation (checked to be a string on receipt)."""
        op: str = self.header["op"]
        return op

    def field(self, name: str, kind: type[Any]) -> Any:
        """Header field ``name``, which must be a ``kind`` (ProtocolError otherwise)."""
        value = self.header.get(name)
        if type(value) is not kind:
            raise ProtocolError(f"{self.op!r} frame: {name!r} must be a {kind.__name__}")
        return value


def send(channel: socket.socket, op: str, body: bytes = b"", **fields: Any) -> None:
    """Send one frame (``fields`` must be JSON values)."""
    header = json.dumps({"op": op, **fields}, separators=(",", ":")).encode()
    if len(header) > MAX_HEADER:
        raise ProtocolError(f"{op!r} frame header too large ({len(header)} bytes)")
    channel.sendall(_PREFIX.pack(len(header), len(body)) + header + body)


Remaining = Callable[[], float]
"""The seconds left until a deadline (the channel keeps no clock of its own)."""


def _exactly(
    channel: socket.socket, size: int, remaining: Remaining | None, *, at_start: bool = False
) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        if remaining is not None:  # each read waits only until then, however few bytes come
            left = remaining()
            if left <= 0:
                raise TimeoutError("the deadline passed")
            channel.settimeout(left)
        count = channel.recv_into(view[received:])
        if count == 0:
            if at_start and received == 0:
                raise ChannelClosed("channel closed")
            raise ProtocolError("channel closed in the middle of a frame")
        received += count
    return bytes(buffer)


def receive(
    channel: socket.socket, max_body: int = CHUNK, remaining: Remaining | None = None
) -> Frame:
    """The next frame, whose body may be at most ``max_body`` bytes; ``TimeoutError`` if it
    has not come whole when ``remaining()`` runs out (the channel keeps a timeout)."""
    header_size, body_size = _PREFIX.unpack(
        _exactly(channel, _PREFIX.size, remaining, at_start=True)
    )
    if header_size > MAX_HEADER:
        raise ProtocolError(f"frame header too large ({header_size} bytes)")
    if body_size > max_body:
        raise ProtocolError(f"frame body too large ({body_size} bytes)")
    try:
        header = json.loads(_exactly(channel, header_size, remaining))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError("frame header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError("frame header must be an object with a string 'op'")
    return Frame(header, _exactly(channel, body_size, remaining))

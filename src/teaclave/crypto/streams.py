"""The minimal stream interfaces the crypto formats read from and write to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

CHUNK_SIZE = 64 * 1024
"""How many bytes are processed at a time."""


class Reader(Protocol):
    """A readable byte stream (``read(n)`` returns ``b""`` at the end)."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        ...


class Writer(Protocol):
    """A writable byte stream."""

    def write(self, data: bytes, /) -> object:
        """Write all of ``data``."""
        ...


def chunks(reader: Reader) -> Iterator[bytes]:
    """The contents of ``reader`` in chunks of at most :data:`CHUNK_SIZE` bytes."""
    while chunk := reader.read(CHUNK_SIZE):
        yield chunk

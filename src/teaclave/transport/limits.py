"""Size limits on the streams moving through the transport."""

from __future__ import annotations

from teaclave.core.errors import Status, TeaclaveError
from teaclave.crypto.streams import Reader, Writer


def too_large(limit: int) -> TeaclaveError:
    """The error for a file over ``execution.max_file_bytes``."""
    return TeaclaveError(
        Status.RESOURCE_EXHAUSTED, f"file exceeds execution.max_file_bytes ({limit})"
    )


class LimitedReader:
    """A reader that fails once more than ``limit`` bytes have come through."""

    def __init__(self, reader: Reader, limit: int) -> None:
        self._reader = reader
        self._limit = limit
        self._left = limit

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (RESOURCE_EXHAUSTED past the limit)."""
        data = self._reader.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise too_large(self._limit)
        return data


class LimitedWriter:
    """A writer that refuses (before writing) data that would pass ``limit`` bytes."""

    def __init__(self, writer: Writer, limit: int) -> None:
        self._writer = writer
        self._limit = limit
        self.written = 0

    def write(self, data: bytes, /) -> int:
        """Write all of ``data`` (RESOURCE_EXHAUSTED past the limit)."""
        if self.written + len(data) > self._limit:
            raise too_large(self._limit)
        self._writer.write(data)
        self.written += len(data)
        return len(data)

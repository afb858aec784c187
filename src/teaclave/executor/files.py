"""The files one task's function has open, by handle (reference §6.3).

Shared by the Python and Wasm executors, so both number handles, bound
outputs and refuse requests alike. Handles come from one counter, 1 to
:data:`MAX_HANDLES` per task; a write handle also carries :data:`WRITE_FLAG`,
so a read handle is never mistaken for a write handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions.runtime import Runtime

MAX_HANDLES = 1023
"""Files a task may open, in all."""
WRITE_FLAG = 0x4000_0000
"""Set in every write handle."""
OPEN_FAILED = "fileio_init: teaclave_ffi_error"
"""The error of opening a file the function does not declare (reference §6.5)."""
INVALID_HANDLE = "teaclave_ffi_error: invalid file handle"


class FileRefused(Exception):
    """A request the function sees fail (an error, or -1), with the reason."""


class Files(Protocol):
    """A task's files by handle: a :class:`FileTable`, or its far end in a sandbox."""

    def open(self, name: str, *, writable: bool) -> int: ...

    def read(self, handle: int, size: int) -> bytes: ...

    def write(self, handle: int, data: bytes | bytearray, *, total: int = 0) -> None: ...

    def close(self, handle: int) -> None: ...


@dataclass
class _File:
    stream: BinaryIO
    written: int = 0


class FileTable:
    """Opens ``runtime``'s files for one task; each output may grow to ``max_file_bytes``."""

    def __init__(self, runtime: Runtime, *, max_file_bytes: int) -> None:
        self._runtime = runtime
        self._max_file_bytes = max_file_bytes
        self._files: dict[int, _File] = {}
        self._opened = 0

    def open(self, name: str, *, writable: bool) -> int:
        """A handle on input ``name``, or on a new output ``name`` if ``writable``."""
        if self._opened == MAX_HANDLES:
            raise FileRefused(f"too many files opened ({MAX_HANDLES} per task)")
        runtime = self._runtime
        try:
            stream = runtime.create_output(name) if writable else runtime.open_input(name)
        except TeaclaveError as exc:
            if exc.status is not Status.INVALID_ARGUMENT:
                raise
            raise FileRefused(OPEN_FAILED) from None
        self._opened += 1
        handle = WRITE_FLAG | self._opened if writable else self._opened
        self._files[handle] = _File(stream)
        return handle

    def _file(self, handle: int, *, writable: bool) -> _File:
        file = self._files.get(handle)
        if file is None or bool(handle & WRITE_FLAG) is not writable:
            raise FileRefused(INVALID_HANDLE)
        return file

    def read(self, handle: int, size: int) -> bytes:
        """At most ``size`` (≥ 0, checked by the caller) bytes; empty at the end."""
        return self._file(handle, writable=False).stream.read(size)

    def write(self, handle: int, data: bytes | bytearray, *, total: int = 0) -> None:
        """Append ``data`` to an output, unless it would outgrow ``max_file_bytes``.

        ``total``: the size of the whole write ``data`` begins (sent in pieces), so that
        a write too large for the output is refused before any of it is appended.
        """
        file = self._file(handle, writable=True)
        if file.written + max(len(data), total) > self._max_file_bytes:
            raise FileRefused(f"output exceeds execution.max_file_bytes ({self._max_file_bytes})")
        file.stream.write(data)
        file.written += len(data)

    def close(self, handle: int) -> None:
        """Close a handle; it is then unknown."""
        file = self._files.pop(handle, None)
        if file is None:
            raise FileRefused(INVALID_HANDLE)
        file.stream.close()

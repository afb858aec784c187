"""The platform's runtime: a task's files as staged teaclave-file-128 files on disk.

Every file is encrypted at rest under a fresh random key, so plaintext exists
only in memory, a buffer at a time.
"""

from __future__ import annotations

import contextlib
import io
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from teaclave.core.errors import invalid_argument
from teaclave.crypto.protected_file import (
    KEY_SIZE,
    IntegrityError,
    ProtectedFileReader,
    ProtectedFileWriter,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer


@dataclass(frozen=True)
class StagedFile:
    """A teaclave-file-128 file on local disk, its key and cmac; its basename is its name."""

    path: Path
    key: bytes
    cmac: bytes

    def verify(self, role: str) -> None:
        """Check the whole file now: its cmac, then every node."""
        file, reader = self._open(role)
        with file:
            reader.verify_all()

    def open(self, role: str, buffer_size: int) -> BinaryIO:
        """A buffered reader of the plaintext; each node is verified as it is read.

        Integrity failures raise :class:`IntegrityError` naming ``role``.
        """
        return io.BufferedReader(_PlaintextReader(*self._open(role)), buffer_size)

    def _open(self, role: str) -> tuple[BinaryIO, ProtectedFileReader]:
        file = self.path.open("rb")
        try:
            reader = ProtectedFileReader(file, self.key, self.path.name, role=role)
            if reader.cmac != self.cmac:
                raise IntegrityError(f"{role}: cmac mismatch")
        except BaseException:
            file.close()
            raise
        return file, reader


class _PlaintextReader(io.RawIOBase):
    """The plaintext of an open protected file; closing it closes the file."""

    def __init__(self, file: BinaryIO, reader: ProtectedFileReader) -> None:
        super().__init__()
        self._file = file
        self._reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        return self._reader.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def close(self) -> None:
        if not self.closed:
            super().close()
            with self._file:
                self._reader.close()


class _PlaintextWriter(io.RawIOBase):
    """Encrypts what is written into a new protected file; closing it finishes the file."""

    def __init__(self, path: Path, file: BinaryIO, key: bytes) -> None:
        super().__init__()
        self._path = path
        self._file = file
        self._key = key
        self._writer = ProtectedFileWriter(key, path.name, file)
        self._cmac: bytes | None = None

    @classmethod
    def create(cls, path: Path) -> _PlaintextWriter:
        """A writer of a new file at ``path`` (truncated if it exists) under a fresh random key."""
        file = path.open("w+b")
        try:
            return cls(path, file, secrets.token_bytes(KEY_SIZE))
        except BaseException:
            file.close()
            raise

    @property
    def staged(self) -> StagedFile:
        """The finished file (once closed)."""
        if self._cmac is None:
            raise ValueError(f"{self._path.name} is not finished")
        return StagedFile(self._path, self._key, self._cmac)

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        return self._writer.write(memoryview(data))

    def close(self) -> None:
        if not self.closed:
            super().close()
            with self._file:
                self._cmac = self._writer.close()


class FileRuntime:
    """A :class:`Runtime` over staged files; outputs go to new files under fresh random keys.

    Use it as a context manager: leaving it closes every stream the function
    opened. Streams are buffered by ``buffer_size`` bytes.
    """

    def __init__(
        self, inputs: Mapping[str, StagedFile], outputs: Mapping[str, Path], *, buffer_size: int
    ) -> None:
        self._inputs = dict(inputs)
        self._outputs = dict(outputs)
        self._buffer_size = buffer_size
        self._created: dict[str, tuple[BinaryIO, _PlaintextWriter]] = {}
        self._streams = contextlib.ExitStack()

    def __enter__(self) -> FileRuntime:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._streams.close()

    def open_input(self, name: str) -> BinaryIO:
        """A new reader of input ``name``, whose cmac is checked first."""
        staged = self._inputs.get(name)
        if staged is None:
            raise invalid_argument("Invalid input file identifier.")
        return self._streams.enter_context(staged.open(f"input {name!r}", self._buffer_size))

    def create_output(self, name: str) -> BinaryIO:
        """A writer of output ``name``; creating it again discards the earlier one."""
        path = self._outputs.get(name)
        if path is None:
            raise invalid_argument("Invalid output file identifier")
        earlier = self._created.get(name)
        if earlier is not None:
            earlier[0].close()
        raw = _PlaintextWriter.create(path)
        stream = self._streams.enter_context(io.BufferedWriter(raw, self._buffer_size))
        self._created[name] = (stream, raw)
        return stream

    def finish_outputs(self) -> dict[str, StagedFile]:
        """Close every output; those the function created, as staged files."""
        for stream, _ in self._created.values():
            stream.close()
        return {name: raw.staged for name, (_, raw) in self._created.items()}

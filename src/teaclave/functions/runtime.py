"""The file API a function sees (reference §6.1), keyed by function-level file names.

The platform's runtime (:class:`teaclave.executor.runtime.FileRuntime`) keeps
every file as a staged teaclave-file-128 file on disk; :class:`MemoryRuntime`
keeps plaintext in memory, for testing functions.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO, Protocol

from teaclave.core.errors import invalid_argument

if TYPE_CHECKING:
    pass


class Runtime(Protocol):
    """Opens a task's inputs and creates its outputs by name."""

    def open_input(self, name: str) -> BinaryIO:
        """A readable stream of input ``name`` ("Invalid input file identifier." if unknown)."""
        ...

    def create_output(self, name: str) -> BinaryIO:
        """A new, empty writable stream for output ``name`` ("Invalid output file identifier")."""
        ...


class _OutputBuffer(io.BytesIO):
    """An in-memory output whose contents survive ``close()``."""

    def __init__(self) -> None:
        super().__init__()
        self._final: bytes | None = None

    def close(self) -> None:
        if not self.closed:
            self._final = self.getvalue()
        super().close()

    def contents(self) -> bytes:
        """Everything written so far."""
        return self._final if self._final is not None else self.getvalue()


class MemoryRuntime:
    """A :class:`Runtime` over plaintext held in memory (nothing touches the disk)."""

    def __init__(self, inputs: Mapping[str, bytes], outputs: frozenset[str]) -> None:
        self._inputs = dict(inputs)
        self._declared_outputs = outputs
        self._outputs: dict[str, _OutputBuffer] = {}

    def open_input(self, name: str) -> BinaryIO:
        """A fresh reader over input ``name``."""
        if name not in self._inputs:
            raise invalid_argument("Invalid input file identifier.")
        return io.BytesIO(self._inputs[name])

    def create_output(self, name: str) -> BinaryIO:
        """A new buffer for output ``name``; creating it again discards the earlier one."""
        if name not in self._declared_outputs:
            raise invalid_argument("Invalid output file identifier")
        buffer = _OutputBuffer()
        self._outputs[name] = buffer
        return buffer

    def output(self, name: str) -> bytes | None:
        """What the function wrote to output ``name`` (``None`` if it never created it)."""
        buffer = self._outputs.get(name)
        return None if buffer is None else buffer.contents()

"""The five ``env`` functions a Wasm function imports to use its files (reference §6.6).

They serve the task's :class:`~teaclave.executor.files.Files` (in the sandbox: over the
channel): a refused request returns -1, as in Teaclave. The guest is untrusted: every
pointer and length it passes is checked against its exported memory, and a bad one traps
(``wasmtime.Trap``), ending the function, rather than raise in the host. Guest memory is
read and written in bulk.
"""

from __future__ import annotations

from collections.abc import Callable

import wasmtime

from teaclave.executor.files import FileRefused, Files

MODULE = "env"
MEMORY = "memory"
"""The export through which the host reaches the guest's memory."""
MAX_READ = 1 << 20
"""The most one ``teaclave_read_file`` call returns."""
MAX_WRITE_PIECE = 1 << 20
"""A ``teaclave_write_file`` call copies guest memory out this much at a time."""
MAX_NAME = 4096
"""The longest file name, in bytes."""
_I32 = wasmtime.ValType.i32()
SIGNATURES = {
    "teaclave_open_input": wasmtime.FuncType([_I32], [_I32]),
    "teaclave_create_output": wasmtime.FuncType([_I32], [_I32]),
    "teaclave_read_file": wasmtime.FuncType([_I32, _I32, _I32], [_I32]),
    "teaclave_write_file": wasmtime.FuncType([_I32, _I32, _I32], [_I32]),
    "teaclave_close_file": wasmtime.FuncType([_I32], [_I32]),
}


class _Guest:
    """The calling instance's memory, for host function ``function``; misuse traps."""

    def __init__(self, caller: wasmtime.Caller, function: str) -> None:
        memory = caller.get(MEMORY)
        if not isinstance(memory, wasmtime.Memory):
            raise wasmtime.Trap(f"{function}: no exported memory {MEMORY!r}")
        self._caller = caller
        self._memory = memory
        self._function = function

    def _trap(self, problem: str) -> wasmtime.Trap:
        return wasmtime.Trap(f"{self._function}: {problem}")

    def buffer(self, pointer: int, size: int) -> int:
        """The start of the ``size`` bytes at ``pointer`` (an i32, so unsigned)."""
        if size < 0:
            raise self._trap("negative size")
        start = pointer & 0xFFFF_FFFF
        if start + size > self._memory.data_len(self._caller):
            raise self._trap("buffer out of bounds")
        return start

    def name(self, pointer: int) -> str:
        """The NUL-terminated UTF-8 string at ``pointer``."""
        start = pointer & 0xFFFF_FFFF
        text = self._memory.read(self._caller, start, start + MAX_NAME + 1)
        end = text.find(0)
        if end < 0:
            raise self._trap(f"name not NUL-terminated within memory and {MAX_NAME} bytes")
        try:
            return text[:end].decode()
        except UnicodeDecodeError:
            raise self._trap("name not UTF-8") from None

    def read(self, start: int, size: int) -> bytearray:
        return self._memory.read(self._caller, start, start + size)

    def write(self, start: int, data: bytes) -> None:
        if data:  # wasmtime-py refuses even empty writes at the end of memory
            self._memory.write(self._caller, data, start)


class _Host:
    """The env functions, over one task's files."""

    def __init__(self, files: Files) -> None:
        self._files = files

    def _open(self, guest: _Guest, name: int, *, writable: bool) -> int:
        path = guest.name(name)
        try:
            return self._files.open(path, writable=writable)
        except FileRefused:
            return -1

    def open_input(self, caller: wasmtime.Caller, name: int) -> int:
        return self._open(_Guest(caller, "teaclave_open_input"), name, writable=False)

    def create_output(self, caller: wasmtime.Caller, name: int) -> int:
        return self._open(_Guest(caller, "teaclave_create_output"), name, writable=True)

    def read_file(self, caller: wasmtime.Caller, handle: int, buffer: int, size: int) -> int:
        guest = _Guest(caller, "teaclave_read_file")
        start = guest.buffer(buffer, size)
        try:
            data = self._files.read(handle, min(size, MAX_READ))
        except FileRefused:
            return -1
        guest.write(start, data)
        return len(data)

    def write_file(self, caller: wasmtime.Caller, handle: int, buffer: int, size: int) -> int:
        """All ``size`` bytes, or none (-1); guest memory is copied a piece at a time."""
        guest = _Guest(caller, "teaclave_write_file")
        start = guest.buffer(buffer, size)
        try:
            for offset in range(0, max(size, 1), MAX_WRITE_PIECE):
                piece = guest.read(start + offset, min(MAX_WRITE_PIECE, size - offset))
                self._files.write(handle, piece, total=size if offset == 0 else 0)
        except FileRefused:
            return -1
        return size

    def close_file(self, caller: wasmtime.Caller, handle: int) -> int:
        try:
            self._files.close(handle)
        except FileRefused:
            return -1
        return 0


def define(linker: wasmtime.Linker, files: Files) -> None:
    """Define the env functions in ``linker``, serving ``files``."""
    host = _Host(files)
    functions: dict[str, Callable[..., int]] = {
        "teaclave_open_input": host.open_input,
        "teaclave_create_output": host.create_output,
        "teaclave_read_file": host.read_file,
        "teaclave_write_file": host.write_file,
        "teaclave_close_file": host.close_file,
    }
    for name, function in functions.items():
        linker.define_func(MODULE, name, SIGNATURES[name], function, access_caller=True)

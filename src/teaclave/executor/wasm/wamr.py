"""Teaclave's WAMR calling convention (reference §6.6): ``entrypoint(argc, argv)``.

The arguments go, as C strings followed by a NULL-terminated array of their
addresses, into pages the host adds to the memory, so the module's own data
and heap stay as they were. The i32 result, in decimal, is the summary.
"""

from __future__ import annotations

import itertools
import struct

import wasmtime

from teaclave.executor.wasm import host

ENTRYPOINT = "entrypoint"


def _store_arguments(store: wasmtime.Store, memory: wasmtime.Memory, argv: list[str]) -> int:
    """Copy ``argv`` into new pages of ``memory``; the address of its pointer array."""
    strings = [argument.encode() + b"\0" for argument in argv]
    text = b"".join(strings)
    text += bytes(-len(text) % 4)  # align the array
    size = len(text) + 4 * (len(argv) + 1)
    page = memory.page_size(store)
    try:
        base = memory.grow(store, -(-size // page)) * page
    except wasmtime.WasmtimeError:
        message = f"no room for the arguments ({size} bytes) in the function's memory"
        raise wasmtime.WasmtimeError(message) from None
    addresses = list(itertools.accumulate(map(len, strings), initial=base))[:-1]
    array = struct.pack(f"<{len(argv) + 1}I", *addresses, 0)
    memory.write(store, text + array, base)
    return base + len(text)


class Entrypoint:
    """Calls ``entrypoint`` with the task's arguments."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv

    def prepare(self, store: wasmtime.Store, linker: wasmtime.Linker) -> None:
        """Nothing beyond the env functions."""

    def enter(self, store: wasmtime.Store, instance: wasmtime.Instance) -> bytes:
        """The function's summary: ``entrypoint``'s result in decimal."""
        exports = instance.exports(store)
        memory, entrypoint = exports[host.MEMORY], exports[ENTRYPOINT]
        assert isinstance(memory, wasmtime.Memory)
        assert isinstance(entrypoint, wasmtime.Func)
        array = _store_arguments(store, memory, self._argv)
        return str(entrypoint(store, len(self._argv), array)).encode()

    def explain(self, reason: str) -> str:
        """A failure's reason as it stands."""
        return reason

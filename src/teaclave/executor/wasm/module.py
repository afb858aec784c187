"""Wasm payloads: the one engine, the ABI check, and compilation.

A payload is checked and compiled once, in a trusted process, to an artifact
of native code that task processes only deserialize; so both must use the same
engine configuration (:func:`engine`), and the check, not a failed link at run
time, tells a user what is wrong with a module. An artifact is code: only ever
deserialize one this module produced.
"""

from __future__ import annotations

import functools

import wasmtime

from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.executor.wasm import host, wamr, wasi

ABIS = ("wamr", "wasi")
"""The Wasm executor types: Teaclave's WAMR convention, and WASI commands."""
_I32 = wasmtime.ValType.i32()
_EXPORTS = {
    "wamr": (wamr.ENTRYPOINT, wasmtime.FuncType([_I32, _I32], [_I32])),
    "wasi": (wasi.START, wasmtime.FuncType([], [])),
}
"""The function each ABI calls, and its type."""


MEMORY_RESERVATION = 4 << 30
"""Address space reserved for a module's 32-bit memory, so bounds checks are free."""
MEMORY_GUARD = 32 << 20
"""Guard region before and after the memory."""
RESERVED_BYTES = MEMORY_RESERVATION + 2 * MEMORY_GUARD
"""Address space the one memory of a task reserves up front (not memory it uses)."""


@functools.cache
def engine() -> wasmtime.Engine:
    """The process's engine: it counts fuel, allows one memory, and compiles in one thread.

    One memory per module (no multi-memory), so a task reserves :data:`RESERVED_BYTES`
    of address space once; compiling starts no thread, so a worker may compile before it
    forks a sandbox. Time is limited by the sandbox that runs the module, not by epochs.
    """
    config = wasmtime.Config()
    config.consume_fuel = True
    config.wasm_multi_memory = False
    # Off: proposals whose modules need a heap beyond the one memory (GC, exceptions)
    # or shared or 64-bit memories; such a module is refused when it is registered.
    config.wasm_gc = False
    config.wasm_exceptions = False
    config.wasm_threads = False
    config.shared_memory = False
    config.wasm_memory64 = False
    config.parallel_compilation = False
    config.memory_reservation = MEMORY_RESERVATION
    config.memory_guard_size = MEMORY_GUARD
    config.memory_init_cow = False
    config.cranelift_opt_level = "speed"
    return wasmtime.Engine(config)


def reason(exc: Exception) -> str:
    """wasmtime's most specific line of ``exc`` (its last cause, without numbering)."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    number, _, rest = last.partition(": ")
    return (rest if number.isdigit() else last).removeprefix("wasm trap: ")


def _signature(ty: wasmtime.FuncType) -> str:
    """``ty`` as ``(i32, i32) -> i32``."""
    params = ", ".join(map(str, ty.params))
    results = [str(result) for result in ty.results]
    return f"({params}) -> {results[0] if len(results) == 1 else '(' + ', '.join(results) + ')'}"


def require_abi(abi: str) -> None:
    """ValueError unless ``abi`` is one of :data:`ABIS`."""
    if abi not in ABIS:
        raise ValueError(f"unknown Wasm ABI {abi!r}")


def _invalid(message: str) -> TeaclaveError:
    return invalid_argument(f"invalid function payload: {message}")


def _same(actual: object, expected: wasmtime.FuncType) -> bool:
    return (
        isinstance(actual, wasmtime.FuncType)
        and actual.params == expected.params
        and actual.results == expected.results
    )


def _import_type(
    linker: wasmtime.Linker, store: wasmtime.Store, imported: wasmtime.ImportType
) -> wasmtime.FuncType | None:
    """The type of what the host gives for ``imported``; None if nothing."""
    name = imported.name or ""
    if imported.module == host.MODULE:
        return host.SIGNATURES.get(name)
    try:
        function = linker.get(store, imported.module, name)
    except wasmtime.WasmtimeError:
        return None
    return function.type(store) if isinstance(function, wasmtime.Func) else None


def _check_imports(module: wasmtime.Module, abi: str) -> None:
    linker = wasmtime.Linker(engine())
    if abi == "wasi":
        linker.define_wasi()
    with wasmtime.Store(engine()) as store:
        for imported in module.imports:
            where = f"{imported.module}.{imported.name}"
            expected = _import_type(linker, store, imported)
            if expected is None:
                raise _invalid(f"unknown import {where}")
            if not _same(imported.type, expected):
                raise _invalid(f"import {where} must be a function {_signature(expected)}")


def _check_exports(module: wasmtime.Module, abi: str) -> None:
    exports = {exported.name: exported.type for exported in module.exports}
    name, expected = _EXPORTS[abi]
    if not _same(exports.get(name), expected):
        raise _invalid(f"no exported function {name!r} {_signature(expected)}")
    memory = exports.get(host.MEMORY)
    if not isinstance(memory, wasmtime.MemoryType) or memory.is_64 or memory.is_shared:
        raise _invalid(f"no exported memory {host.MEMORY!r}")


def _compile(payload: bytes, abi: str) -> wasmtime.Module:
    require_abi(abi)
    if not payload.startswith(b"\0asm"):  # wasmtime would take other bytes for WAT text
        raise _invalid("not a valid WebAssembly module (no \\0asm header)")
    try:
        module = wasmtime.Module(engine(), payload)
    except wasmtime.WasmtimeError as exc:
        raise _invalid(f"not a valid WebAssembly module ({reason(exc)})") from None
    _check_imports(module, abi)
    _check_exports(module, abi)
    return module


def check(payload: bytes, abi: str) -> None:
    """INVALID_ARGUMENT unless ``payload`` is a module of ``abi`` (one of :data:`ABIS`).

    wamr: it imports only the env functions (reference §6.6) and exports
    ``entrypoint: (i32, i32) -> i32``. wasi: a command (``_start: () -> ()``)
    that may also import WASI preview 1. Both export a 32-bit ``memory``.
    """
    _compile(payload, abi)


def compile_module(payload: bytes, abi: str) -> bytes:
    """The artifact of a checked ``payload``, for :class:`~teaclave.executor.wasm.WasmFunction`."""
    return bytes(_compile(payload, abi).serialize())

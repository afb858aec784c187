"""The execution service's cache of compiled Wasm modules."""

import pytest
import wasmtime

from teaclave.core.errors import TeaclaveError
from teaclave.executor.wasm import compile_module
from teaclave.services.execution.modules import ModuleCache


def module(result: int) -> bytes:
    return bytes(
        wasmtime.wat2wasm(
            f'(module (memory (export "memory") 1) (func (export "entrypoint")'
            f" (param i32 i32) (result i32) (i32.const {result})))"
        )
    )


def test_a_payload_is_compiled_once() -> None:
    cache = ModuleCache(1 << 20)
    first = cache.compiled(module(1), "wamr")
    assert cache.compiled(module(1), "wamr") is first
    assert cache.compiled(module(2), "wamr") is not first
    assert len(cache) == 2


def test_the_least_recently_used_module_goes_first() -> None:
    size = len(compile_module(module(0), "wamr"))
    cache = ModuleCache(2 * size)
    one = cache.compiled(module(1), "wamr")
    cache.compiled(module(2), "wamr")
    assert cache.compiled(module(1), "wamr") is one  # now the most recently used
    cache.compiled(module(3), "wamr")  # evicts module 2
    assert len(cache) == 2
    assert cache.compiled(module(1), "wamr") is one


def test_invalid_payloads_are_refused_and_not_kept() -> None:
    cache = ModuleCache(1 << 20)
    with pytest.raises(TeaclaveError, match="not a valid WebAssembly module"):
        cache.compiled(b"\0asm\x02\0\0\0", "wamr")
    assert len(cache) == 0

"""The Wasm executors: wasmtime runs a checked, precompiled module in a new store per task.

``wamr`` keeps Teaclave's convention (reference §6.6); ``wasi`` runs a WASI
command. Both reach the task's files only through the env functions; on the
platform the module runs in the task sandbox (:class:`SandboxedWasm`).
"""

from teaclave.executor.wasm.function import SandboxedWasm, WasmFunction
from teaclave.executor.wasm.module import ABIS, check, compile_module, engine

__all__ = ["ABIS", "SandboxedWasm", "WasmFunction", "check", "compile_module", "engine"]

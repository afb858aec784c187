"""The Wasm executors: wasmtime runs a checked, precompiled module in a new store per task.

``wamr`` keeps Teaclave's convention (reference §6.6); ``wasi`` runs a WASI
command. Both reach the task's files only through the env functions.
"""

from teaclave.executor.wasm.function import WasmFunction
from teaclave.executor.wasm.module import ABIS, check, compile_module, engine

__all__ = ["ABIS", "WasmFunction", "check", "compile_module", "engine"]

"""A Wasm function of one task: its compiled module, run under the task's limits.

Each run has a new store and instance, so nothing of one task reaches the next.
Fuel stands for CPU time (wasmtime counts instructions, not seconds), the
store's limit bounds memory, and a timer ticks the engine's epoch at the wall
time limit. The epoch is the engine's, so one task runs at a time per process
(as in the execution worker). Whatever wasmtime raises becomes ABORTED, with a
reason naming the limit or the trap.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Protocol

import wasmtime

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor.files import FileTable
from teaclave.executor.python import payload
from teaclave.executor.wasm import host, wamr, wasi
from teaclave.executor.wasm.module import engine, reason, require_abi
from teaclave.functions.runtime import Runtime
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

PAGE = 1 << 16
LIMIT_MARGIN = 1 << 20
"""A failure this close to the memory limit is put down to it."""


class _Convention(Protocol):
    """How an ABI starts a function and makes its summary."""

    def prepare(self, store: wasmtime.Store, linker: wasmtime.Linker) -> None: ...

    def enter(self, store: wasmtime.Store, instance: wasmtime.Instance) -> bytes: ...

    def explain(self, reason: str) -> str: ...


class WasmFunction:
    """A task's compiled module (an artifact of :func:`compile_module`), run by :meth:`run`."""

    def __init__(self, config: ExecutionConfig, artifact: bytes, abi: str) -> None:
        require_abi(abi)
        self._config = config
        self._abi = abi
        self._argv: list[str] = []
        self._fuel = int(config.cpu_secs * config.wasm_fuel_per_sec)
        try:
            self._module = wasmtime.Module.deserialize(engine(), artifact)
        except wasmtime.WasmtimeError as exc:
            message = f"cannot load the compiled Wasm module: {reason(exc)}"
            raise TeaclaveError(Status.INTERNAL, message) from None

    def __enter__(self) -> WasmFunction:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._module.close()

    def load(self, staged: StagedTask) -> None:
        """The task's arguments, flattened (reference §6.2)."""
        self._argv = payload.flatten(staged.function_arguments)

    def run(self, runtime: Runtime) -> bytes:
        """Run the function on ``runtime``'s files; its summary (or a failure naming why)."""
        config = self._config
        convention: _Convention = (
            wasi.Command(self._argv, config.max_summary_bytes)
            if self._abi == "wasi"
            else wamr.Entrypoint(self._argv)
        )
        linker = wasmtime.Linker(engine())
        host.define(linker, FileTable(runtime, max_file_bytes=config.max_file_bytes))
        with wasmtime.Store(engine()) as store:
            store.set_fuel(self._fuel)
            store.set_limits(memory_size=config.memory_mb << 20)
            store.set_epoch_deadline(1)
            convention.prepare(store, linker)
            instance = None
            timer = threading.Timer(config.wall_secs, engine().increment_epoch)
            timer.start()
            try:
                instance = linker.instantiate(store, self._module)
                return convention.enter(store, instance)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                why = self._why(exc, self._memory_bytes(store, instance))
                raise TeaclaveError(Status.ABORTED, convention.explain(why)) from None
            finally:
                timer.cancel()
                timer.join()

    def _memory_bytes(self, store: wasmtime.Store, instance: wasmtime.Instance | None) -> int:
        """The size of the function's memory (without an instance: its initial size)."""
        if instance is not None:
            memory = instance.exports(store).get(host.MEMORY)
            return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0
        for exported in self._module.exports:
            if exported.name == host.MEMORY and isinstance(exported.type, wasmtime.MemoryType):
                return exported.type.limits.min * PAGE
        return 0

    def _why(self, exc: wasmtime.Trap | wasmtime.WasmtimeError, memory_bytes: int) -> str:
        """Why the function failed: a limit, a trap, or what else wasmtime said.

        wasmtime-py does not tell whether a ``memory.grow`` was refused, so a
        failure is put down to the memory limit when the memory is that close
        to it that a typical allocation no longer fits: within
        :data:`LIMIT_MARGIN` of it or a sixteenth of the limit.
        """
        config = self._config
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        if code is wasmtime.TrapCode.OUT_OF_FUEL:
            return f"CPU limit ({config.cpu_secs:g} s, {self._fuel} fuel) exceeded"
        if code is wasmtime.TrapCode.INTERRUPT:
            return f"wall time limit ({config.wall_secs:g} s) exceeded"
        limit = config.memory_mb << 20
        if memory_bytes + max(LIMIT_MARGIN, limit // 16) > limit:
            return f"memory limit ({config.memory_mb} MiB) exceeded: {reason(exc)}"
        if isinstance(exc, wasmtime.Trap):
            return f"the function trapped: {reason(exc)}"
        return f"the function could not run: {reason(exc)}"

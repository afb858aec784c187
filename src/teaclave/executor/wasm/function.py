"""A Wasm function of one task: its compiled module, run under the task's limits.

Each run has a new store and instance, so nothing of one task reaches the next. Fuel
stands for CPU time (wasmtime counts instructions, not seconds); the store's limits bound
the one memory, the tables and their elements. Wall time is the sandbox's to enforce
(:class:`SandboxedWasm`). Whatever wasmtime raises becomes ABORTED, with a reason naming
the limit or the trap.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from types import TracebackType
from typing import Protocol

import wasmtime

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor import sandbox
from teaclave.executor.files import Files
from teaclave.executor.python import payload
from teaclave.executor.sandboxed import SandboxedFunction, limits
from teaclave.executor.tasklog import TaskLog
from teaclave.executor.wasm import guest, host, wamr, wasi
from teaclave.executor.wasm.module import RESERVED_BYTES, engine, reason, require_abi
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

PAGE = 1 << 16
LIMIT_MARGIN = 1 << 20
"""A failure this close to the memory limit is put down to it."""
MAX_TABLES = 4
"""Tables one instance may have."""
MAX_TABLE_ELEMENTS = 1 << 20
"""Elements one table may hold (8 MiB of references)."""
RUNTIME_BYTES = 96 << 20
"""What a Wasm task's process may allocate besides the module's memory: the tables
(at most 32 MiB), wasmtime's instance and the file buffers."""


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
        self.close()

    def close(self) -> None:
        """Free the module (a forked copy of this process keeps its own)."""
        self._module.close()

    def run(self, files: Files, argv: list[str], log: TaskLog | None = None) -> bytes:
        """Run the function with ``argv`` on ``files``; its summary (or a failure naming why).

        ``log``: where a WASI command's stdout and stderr lines go too, if given.
        """
        config = self._config
        convention: _Convention = (
            wasi.Command(argv, config.max_summary_bytes, log)
            if self._abi == "wasi"
            else wamr.Entrypoint(argv)
        )
        linker = wasmtime.Linker(engine())
        host.define(linker, files)
        with wasmtime.Store(engine()) as store:
            store.set_fuel(self._fuel)
            store.set_limits(
                memory_size=config.memory_mb << 20,
                table_elements=MAX_TABLE_ELEMENTS,
                instances=1,
                tables=MAX_TABLES,
                memories=1,
            )
            convention.prepare(store, linker)
            instance = None
            try:
                instance = linker.instantiate(store, self._module)
                return convention.enter(store, instance)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                why = self._why(exc, self._memory_bytes(store, instance))
                raise TeaclaveError(Status.ABORTED, convention.explain(why)) from None

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
        limit = config.memory_mb << 20
        if memory_bytes + max(LIMIT_MARGIN, limit // 16) > limit:
            return f"memory limit ({config.memory_mb} MiB) exceeded: {reason(exc)}"
        if isinstance(exc, wasmtime.Trap):
            return f"the function trapped: {reason(exc)}"
        return f"the function could not run: {reason(exc)}"


class SandboxedWasm(SandboxedFunction):
    """A Wasm task's sandbox: the module is loaded before the fork, files go over the channel.

    The module runs in the sandbox's process, which never holds the task's keys; the
    process's address space may hold the memory's reservation, the module's memory (up to
    ``memory_mb``) and :data:`RUNTIME_BYTES` more.
    """

    def __init__(
        self,
        config: ExecutionConfig,
        artifact: bytes,
        abi: str,
        view: sandbox.View | None = None,
    ) -> None:
        function = WasmFunction(config, artifact, abi)
        try:
            super().__init__(
                abi,
                config,
                functools.partial(guest.main, function),
                view or sandbox.task_view(),
                replace(limits(config, RESERVED_BYTES), memory_bytes=RUNTIME_BYTES),
                native_calls=True,
            )
        finally:
            function.close()

    def _exceeded(self, limit: str) -> str:
        if limit.startswith("memory limit"):  # the runtime's allowance, not the module's memory
            allowance = RUNTIME_BYTES >> 20
            return f"the Wasm runtime's memory ({allowance} MiB beside the module's) exceeded"
        return super()._exceeded(limit)

    def load(self, staged: StagedTask) -> None:
        """The task's arguments, flattened (reference §6.2), sent to the sandbox by :meth:`run`."""
        self._go(argv=payload.flatten(staged.function_arguments))

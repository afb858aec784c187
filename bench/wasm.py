"""The PSI kernel in WebAssembly vs. natively (suite ``wasm`` of ``python -m bench``).

``payloads/wasm/psi.c`` is built twice by ``scripts/build_wasm.py`` (into a
temporary directory): as ``psi.wasm`` and natively as ``libpsi.so`` (``clang
-O2``). Both run its ``psi_kernel``, the merge walk of
``builtin-ordered-set-intersect`` over two texts in memory, on the same two
sorted lists of 10⁶ random 16-byte hex strings per side (10⁵ with ``--quick``),
half of each list in the other (fixed seed). The module runs in wasmtime
with the platform's engine (fuel metering on, with fuel too large to
stop it); the inputs are copied into
its linear memory once, and each run times the call of the exported kernel
alone. The baseline is the native library called through ctypes, in the same
run. Both must give the same marks and the expected number of common items.
Figures: the median of the runs in ms and the ratio wasm / native, plus the
time to compile the module and to copy the inputs in.

The cost of the task sandbox: the same PSI as a whole task (``run_staged_task``
over aes-gcm files: inputs staged, the module run, outputs encrypted and
written), the module run in the task sandbox (forked, files over its channel,
as the platform runs it) against the module run in the worker's own process
over the same files (as before the sandbox), each in a fresh single-threaded
process (``python -m bench.wasm MODE DIR RUNS``), the median of the runs in ms
and the ratio sandboxed / in-process. 10⁵ items per side (10⁴ with ``--quick``).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import platform as host
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import wasmtime

from scripts import build_wasm
from teaclave.config import ExecutionConfig
from teaclave.crypto import aesgcm
from teaclave.executor.files import FileTable
from teaclave.executor.python.payload import flatten
from teaclave.executor.task import run_staged_task
from teaclave.executor.tasklog import TaskLog
from teaclave.executor.wasm import WasmFunction, compile_module
from teaclave.executor.wasm import engine as platform_engine
from teaclave.functions.runtime import Runtime
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedOutput, StagedTask

SEED = 20240607
ITEM_BYTES = 16
FUEL = 1 << 62
PAGE = 65536


def lists(items: int, seed: int = SEED) -> tuple[bytes, bytes, int]:
    """Two texts of ``items`` sorted hex lines each, half of each in the other; common count."""
    rng = random.Random(seed)
    common, only = items // 2, items - items // 2
    pool = rng.randbytes(ITEM_BYTES * (common + 2 * only))
    values = [pool[i : i + ITEM_BYTES].hex() for i in range(0, len(pool), ITEM_BYTES)]
    if len(set(values)) != len(values):
        raise SystemExit("random values collided; change the seed")
    shared, first, second = values[:common], values[common : common + only], values[common + only :]
    text1 = "".join(f"{value}\n" for value in sorted(shared + first)).encode()
    text2 = "".join(f"{value}\n" for value in sorted(shared + second)).encode()
    return text1, text2, common


def median_ms(call: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1000, 2)


class WasmKernel:
    """``psi_kernel`` of ``psi.wasm`` in wasmtime, with the two texts in its linear memory."""

    def __init__(self, wasm: Path, text1: bytes, text2: bytes) -> None:
        engine = platform_engine()  # configured as the platform runs payloads
        start = time.perf_counter()
        module = wasmtime.Module(engine, wasm.read_bytes())
        self.compile_ms = round((time.perf_counter() - start) * 1000, 2)
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(FUEL)
        linker = wasmtime.Linker(engine)
        for item in module.imports:  # the file functions: the kernel never calls them
            if isinstance(item.type, wasmtime.FuncType) and item.name is not None:
                linker.define_func(
                    item.module, item.name, item.type, self._no_file, access_caller=False
                )
        instance = linker.instantiate(self.store, module)
        exports = instance.exports(self.store)
        memory, kernel = exports["memory"], exports["psi_kernel"]
        if not isinstance(memory, wasmtime.Memory) or not isinstance(kernel, wasmtime.Func):
            raise SystemExit("psi.wasm lacks memory or psi_kernel")
        self.memory, self.kernel = memory, kernel
        self.len1, self.len2 = len(text1), len(text2)
        needed = 2 * (self.len1 + self.len2) + 8
        start = time.perf_counter()
        base = memory.grow(self.store, (needed + PAGE - 1) // PAGE) * PAGE
        self.text1, self.text2 = base, base + self.len1
        self.marks1, self.marks2 = self.text2 + self.len2, self.text2 + self.len2 + self.len1
        self.lines = self.marks2 + self.len2
        memory.write(self.store, text1, self.text1)
        memory.write(self.store, text2, self.text2)
        self.copy_in_ms = round((time.perf_counter() - start) * 1000, 2)

    @staticmethod
    def _no_file(*_: object) -> int:
        raise RuntimeError("psi_kernel does not use files")

    def __call__(self) -> int:
        self.store.set_fuel(FUEL)
        result = self.kernel(
            self.store,
            self.text1,
            self.len1,
            self.text2,
            self.len2,
            1,
            self.marks1,
            self.marks2,
            self.lines,
        )
        if not isinstance(result, int):
            raise SystemExit(f"psi_kernel returned {result!r}")
        return result

    def marks(self) -> tuple[bytes, bytes]:
        counts = self.memory.read(self.store, self.lines, self.lines + 8)
        lines1, lines2 = int.from_bytes(counts[:4], "little"), int.from_bytes(counts[4:], "little")
        return (
            bytes(self.memory.read(self.store, self.marks1, self.marks1 + lines1)),
            bytes(self.memory.read(self.store, self.marks2, self.marks2 + lines2)),
        )


class NativeKernel:
    """``psi_kernel`` of ``libpsi.so`` through ctypes."""

    def __init__(self, library: Path, text1: bytes, text2: bytes) -> None:
        self.function = ctypes.CDLL(str(library)).psi_kernel
        self.function.restype = ctypes.c_int
        self.text1, self.text2 = text1, text2
        self.marks1 = ctypes.create_string_buffer(len(text1))
        self.marks2 = ctypes.create_string_buffer(len(text2))
        self.lines = (ctypes.c_int * 2)()

    def __call__(self) -> int:
        t1, t2 = self.text1, self.text2
        return int(self.function(t1, len(t1), t2, len(t2), 1, self.marks1, self.marks2, self.lines))

    def marks(self) -> tuple[bytes, bytes]:
        return self.marks1.raw[: self.lines[0]], self.marks2.raw[: self.lines[1]]


KEY, IV = bytes(range(16)), bytes(12)
MODES = ("in-process", "sandboxed")


def _crypto() -> FileCryptoInfo:
    return FileCryptoInfo(schema="aes-gcm-128", key=KEY, iv=IV)


def _psi_task(directory: Path) -> StagedTask:
    """The PSI of ``psi.wasm`` over the aes-gcm inputs in ``directory``."""
    cmacs = json.loads((directory / "cmacs.json").read_text())
    return StagedTask(
        task_id="6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        function_name="psi",
        executor_type="wamr",
        executor="wamr",
        function_arguments='{"order":"ascending"}',
        function_payload=(directory / "psi.wasm").read_bytes(),
        inputs=[
            StagedInput(
                name=f"input_data{n}",
                url=f"file://{directory}/in{n}.enc",
                cmac=bytes.fromhex(cmacs[n - 1]),
                crypto_info=_crypto(),
            )
            for n in (1, 2)
        ],
        outputs=[
            StagedOutput(
                name=f"output_result{n}",
                url=f"file://{directory}/out{n}-{{}}.enc",
                crypto_info=_crypto(),
            )
            for n in (1, 2)
        ],
    )


class _InProcess:
    """The module run in this process over the task's files (the worker before the sandbox)."""

    kind = "wamr"

    def __init__(self, config: ExecutionConfig, artifact: bytes) -> None:
        self._config = config
        self._function = WasmFunction(config, artifact, "wamr")
        self._argv: list[str] = []

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._function.close()

    def load(self, staged: StagedTask) -> None:
        self._argv = flatten(staged.function_arguments)

    def run(self, runtime: Runtime, log: TaskLog | None = None) -> bytes:
        files = FileTable(runtime, max_file_bytes=self._config.max_file_bytes)
        return self._function.run(files, self._argv)


def _granted(name: str) -> None:
    """Every upload may begin (no scheduler here)."""


def _task_times(mode: str, directory: Path, runs: int) -> list[float]:
    """Seconds of each of ``runs`` PSI tasks run ``mode``, in this (single-threaded) process."""
    config = replace(
        ExecutionConfig(), file_roots=(str(directory),), work_dir=str(directory / "work")
    )
    template = _psi_task(directory)
    artifact = compile_module(template.function_payload, "wamr")
    times = []
    for run_number in range(runs):
        staged = StagedTask()
        staged.CopyFrom(template)
        for output in staged.outputs:
            output.url = output.url.format(f"{mode}-{run_number}")
        start = time.perf_counter()
        in_process = _InProcess(config, artifact) if mode == "in-process" else None
        with in_process or contextlib.nullcontext():
            result = run_staged_task(
                staged,
                config,
                in_process,
                module=artifact,
                start_upload=_granted,  # type: ignore[arg-type]
            )
        times.append(time.perf_counter() - start)
        if result.WhichOneof("result") != "Ok":
            raise SystemExit(f"{mode}: {result.Err.reason}")
    return times


def _task_costs(wasm: Path, items: int, runs: int) -> dict[str, object]:
    text1, text2, common = lists(items)
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-wasm-task-") as tmp:
        directory = Path(tmp)
        (directory / "psi.wasm").write_bytes(wasm.read_bytes())
        cmacs = []
        for n, text in ((1, text1), (2, text2)):
            with (directory / f"in{n}.enc").open("wb") as sink:
                cmacs.append(aesgcm.encrypt(KEY, IV, io.BytesIO(text), sink).hex())
        (directory / "cmacs.json").write_text(json.dumps(cmacs))
        medians = {}
        for mode in MODES:
            command = [sys.executable, "-m", "bench.wasm", mode, tmp, str(runs)]
            found = subprocess.run(command, check=True, capture_output=True, text=True)
            medians[mode] = round(statistics.median(json.loads(found.stdout)) * 1000, 1)
    return {
        "task_items_per_side": items,
        "task_common_items": common,
        "task_in_process_ms": medians["in-process"],
        "task_sandboxed_ms": medians["sandboxed"],
        "task_ratio": round(medians["sandboxed"] / medians["in-process"], 2),
    }


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: 10⁵ items per side and fewer runs)."""
    items, runs = (10**5, 5) if quick else (10**6, 11)
    text1, text2, common = lists(items)
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-wasm-") as tmp:
        built = build_wasm.build(Path(tmp), native=True)
        wasm = WasmKernel(built["psi"], text1, text2)
        native = NativeKernel(built["libpsi"], text1, text2)
        wasm_size = built["psi"].stat().st_size
        results = {"wasm": wasm(), "native": native()}
        if results != {"wasm": common, "native": common}:
            raise SystemExit(f"common items differ: {results} (expected {common})")
        wasm_marks, native_marks = wasm.marks(), native.marks()
        if wasm_marks != native_marks or [len(m) for m in wasm_marks] != [items, items]:
            raise SystemExit("wasm and native marks differ")
        if wasm_marks[0].count(b"1") != common:
            raise SystemExit("marks do not match the common items")
        native_ms = median_ms(native, runs)
        wasm_ms = median_ms(wasm, runs)
        task = _task_costs(built["psi"], items // 10, runs)
    return {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "wasmtime": "consume_fuel",
        "items_per_side": items,
        "line_bytes": 2 * ITEM_BYTES + 1,
        "common_items": common,
        "runs": runs,
        "psi_wasm_bytes": wasm_size,
        "module_compile_ms": wasm.compile_ms,
        "copy_in_ms": wasm.copy_in_ms,
        "wasm_ms": wasm_ms,
        "native_ms": native_ms,
        "ratio": round(wasm_ms / native_ms, 2),
        "identical_marks": True,
        **task,
    }


if __name__ == "__main__":
    print(json.dumps(_task_times(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))))

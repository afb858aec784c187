"""The PSI kernel in WebAssembly vs. natively (suite ``wasm`` of ``python -m bench``).

``payloads/wasm/psi.c`` is built twice by ``scripts/build_wasm.py`` (into a
temporary directory): as ``psi.wasm`` and natively as ``libpsi.so`` (``clang
-O2``). Both run its ``psi_kernel``, the merge walk of
``builtin-ordered-set-intersect`` over two texts in memory, on the same two
sorted lists of 10⁶ random 16-byte hex strings per side (10⁵ with ``--quick``),
half of each list in the other (fixed seed). The module runs in wasmtime
with the platform's engine (fuel metering and epoch interruption
on, with fuel and deadline too large to stop it); the inputs are copied into
its linear memory once, and each run times the call of the exported kernel
alone. The baseline is the native library called through ctypes, in the same
run. Both must give the same marks and the expected number of common items.
Figures: the median of the runs in ms and the ratio wasm / native, plus the
time to compile the module and to copy the inputs in.
"""

from __future__ import annotations

import ctypes
import platform as host
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from scripts import build_wasm
from teaclave.executor.wasm import engine as platform_engine

SEED = 20240607
ITEM_BYTES = 16
FUEL = 1 << 62
EPOCH_DEADLINE = 1 << 40
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
        self.store.set_epoch_deadline(EPOCH_DEADLINE)
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
    return {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "wasmtime": "consume_fuel + epoch_interruption",
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
    }

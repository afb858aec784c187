"""The C WebAssembly payloads (payloads/wasm) build reproducibly and follow the §6.6 ABI.

Checks the modules statically (wasmtime validates them; their imports and
exports), and the pure kernels of the same sources built natively (ctypes)
against the built-in ``builtin-ordered-set-intersect`` they mirror. Running the
modules' ``entrypoint`` needs the Wasm executor's host functions and is tested
with the executor.
"""

from __future__ import annotations

import ctypes
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime
from teaclave_fixtures import FIXTURES, PSI_DIR

from scripts import build_wasm
from teaclave.core.errors import TeaclaveError
from teaclave.functions import registry
from teaclave.functions.runtime import MemoryRuntime

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ("millionaire", "psi")
IMPORTS = {
    "teaclave_open_input": (["i32"], ["i32"]),
    "teaclave_create_output": (["i32"], ["i32"]),
    "teaclave_read_file": (["i32", "i32", "i32"], ["i32"]),
    "teaclave_write_file": (["i32", "i32", "i32"], ["i32"]),
    "teaclave_close_file": (["i32"], ["i32"]),
}
BYTES = (0x00, 0x0A, 0x1F, 0xAB, 0xB0)  # hex digits and letters
PSI_ERRORS = {"Invalid ordering": -5, "is not a hex string": -4}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dict(build_wasm.build(tmp_path_factory.mktemp("wasm"), native=True))


def _signature(func_type: wasmtime.FuncType) -> tuple[list[str], list[str]]:
    return [str(t) for t in func_type.params], [str(t) for t in func_type.results]


def test_every_source_is_built(built: dict[str, Path]) -> None:
    assert sorted(p.stem for p in (ROOT / "payloads" / "wasm").glob("*.c")) == list(PAYLOADS)
    assert sorted(built) == sorted([*PAYLOADS, *(f"lib{name}" for name in PAYLOADS)])
    for name in PAYLOADS:
        assert built[name].name == f"{name}.wasm"
        assert built[f"lib{name}"].name == f"lib{name}.so"


def test_build_is_reproducible(built: dict[str, Path], tmp_path: Path) -> None:
    again = build_wasm.build(tmp_path, native=True)
    for name, path in built.items():
        assert again[name].read_bytes() == path.read_bytes(), name


@pytest.mark.parametrize("name", PAYLOADS)
def test_module_follows_the_abi(built: dict[str, Path], name: str) -> None:
    module = wasmtime.Module(wasmtime.Engine(), built[name].read_bytes())
    assert {i.module for i in module.imports} == {"env"}
    functions = {i.name: i.type for i in module.imports if isinstance(i.type, wasmtime.FuncType)}
    assert len(functions) == len(module.imports)  # only functions, each imported once
    assert {name: _signature(t) for name, t in functions.items()} == IMPORTS
    exports = {e.name: e.type for e in module.exports}
    assert isinstance(exports["memory"], wasmtime.MemoryType)
    entrypoint = exports["entrypoint"]
    assert isinstance(entrypoint, wasmtime.FuncType)
    assert _signature(entrypoint) == (["i32", "i32"], ["i32"])


def test_missing_compiler_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(build_wasm.shutil, "which", lambda name: None)
    with pytest.raises(build_wasm.BuildError, match="make system-packages"):
        build_wasm.build(tmp_path)


# The pure kernels, built natively.

Kernel = Callable[[bytes, bytes, str], tuple[int, bytes, bytes]]


@pytest.fixture(scope="module")
def psi_kernel(built: dict[str, Path]) -> Kernel:
    function = ctypes.CDLL(str(built["libpsi"])).psi_kernel
    function.restype = ctypes.c_int

    def run(data1: bytes, data2: bytes, order: str) -> tuple[int, bytes, bytes]:
        marks1 = ctypes.create_string_buffer(len(data1) + 1)
        marks2 = ctypes.create_string_buffer(len(data2) + 1)
        lines = (ctypes.c_int * 2)()
        common = function(
            data1, len(data1), data2, len(data2), int(order == "ascending"), marks1, marks2, lines
        )
        return common, marks1.raw[: lines[0]], marks2.raw[: lines[1]]

    return run


def builtin_psi(data1: bytes, data2: bytes, order: str) -> tuple[int, bytes, bytes]:
    """The built-in's result as the kernel gives it (an error as its code, no marks)."""
    outputs = ("output_result1", "output_result2")
    runtime = MemoryRuntime({"input_data1": data1, "input_data2": data2}, frozenset(outputs))
    builtin = registry.lookup("builtin-ordered-set-intersect")
    try:
        summary = builtin.invoke(json.dumps({"order": order}), runtime)
    except TeaclaveError as error:
        return next(c for m, c in PSI_ERRORS.items() if m in str(error)), b"", b""
    assert summary.endswith(" common items")
    marks1, marks2 = (runtime.output(name) for name in outputs)
    assert marks1 is not None
    assert marks2 is not None
    return int(summary.split()[0]), marks1, marks2


def test_psi_kernel_fixture(psi_kernel: Kernel) -> None:
    data1, data2 = (PSI_DIR / "psi0.txt").read_bytes(), (PSI_DIR / "psi1.txt").read_bytes()
    assert psi_kernel(data1, data2, "ascending") == (3, b"0101010", b"01101")
    assert psi_kernel(data2, data1, "ascending") == (3, b"01101", b"0101010")


def test_psi_kernel_rejects_the_rust_example_lists_like_the_builtin(psi_kernel: Kernel) -> None:
    psi = FIXTURES / "functions" / "wamr_rust_psi"  # unsorted non-hex tokens
    data1, data2 = (psi / "psi0.txt").read_bytes(), (psi / "psi1.txt").read_bytes()
    assert builtin_psi(data1, data2, "ascending")[0] == -4
    assert psi_kernel(data1, data2, "ascending")[0] == -4


def _random_list(rng: random.Random, pool: list[bytes], ascending: bool) -> bytes:
    items = sorted((rng.choice(pool) for _ in range(rng.randrange(30))), reverse=not ascending)
    lines = [item.hex().upper() if rng.random() < 0.3 else item.hex() for item in items]
    text = b"".join(line.encode() + rng.choice([b"\n", b"\r\n"]) for line in lines)
    if text and rng.random() < 0.3:
        text = text.rstrip(b"\r\n")
    return text


@pytest.mark.parametrize("seed", range(40))
def test_psi_kernel_equals_the_builtin(psi_kernel: Kernel, seed: int) -> None:
    """Duplicates, mixed case, CRLF, empty lines, a missing last newline, a bad line."""
    rng = random.Random(seed)
    order = rng.choice(["ascending", "desending"])
    # Items sharing prefixes, short and long (the kernel compares 8 hex digits at a time).
    pool = [
        bytes(rng.choice(BYTES) for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 8, 9, 13])))
        for _ in range(10)
    ]
    data = [_random_list(rng, pool, order == "ascending") for _ in range(2)]
    if seed % 4 == 3:  # one input with an odd line, a bad byte, an inversion or a lone CR
        index = rng.randrange(2)
        cut = rng.randrange(len(data[index]) + 1)
        bad = rng.choice([b"0", b"g", b"ff\n00\n", b"\r", b"\xff"])
        data[index] = data[index][:cut] + bad + data[index][cut:]
    expected, got = builtin_psi(data[0], data[1], order), psi_kernel(data[0], data[1], order)
    if expected[0] < 0:  # the same error; the marks are then incomplete
        assert got[0] == expected[0]
    else:
        assert got == expected


def test_millionaire_kernel(built: dict[str, Path]) -> None:
    richer = ctypes.CDLL(str(built["libmillionaire"])).millionaire_richer
    richer.restype = ctypes.c_int

    def compare(a: bytes, b: bytes) -> int:
        return int(richer(a, len(a), b, len(b)))

    fixture = FIXTURES / "functions" / "wamr_c_millionaire_problem"
    a, b = (fixture / "input_a.txt").read_bytes(), (fixture / "input_b.txt").read_bytes()
    assert (fixture / "expected_output.txt").read_bytes() == b"pf_in_a"
    assert compare(a, b) == 1
    assert compare(b, a) == 2
    assert compare(b"5", b"5") == 2  # a tie goes to the second party
    assert compare(b" -3\n", b"-0") == 2
    assert compare(b"+0", b"-7") == 1
    assert compare(b"9223372036854775807", b"9223372036854775806\r\n") == 1
    for bad in (b"", b" ", b"1 2", b"12x", b"-", b"9223372036854775808", b"0x10"):
        assert compare(bad, b"1") == -3, bad

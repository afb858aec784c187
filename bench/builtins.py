"""Ordered-set built-ins through the platform vs. natively (suite ``builtins``).

For ``builtin-ordered-set-intersect`` (two sorted lists of 64-hex-digit lines,
half of each list in the other) and ``builtin-ordered-set-join`` (two CSV
tables sorted on their id column, half of the rows matching) with 10⁶ rows per
input (10⁵ with ``--quick``), the real task process (forked by the zygote,
:mod:`teaclave.executor.zygote`) runs the task over aes-gcm-128 ``file://`` inputs
and outputs: process start, download, decrypt, stage and verify as protected
files, run, encrypt and upload. The baseline, timed in the same run, is the
same computation written plainly in this process on the plaintext files: read
each file whole, decode the hex lines and check their order, set membership
(PSI); ``csv`` reader, a dict of the right table, ``csv`` writer (join).
Figures: seconds of both and their ratio (target ≤ 1.5).
"""

from __future__ import annotations

import csv
import platform as host
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.tasks import encrypted_input, encrypted_output, run_worker
from teaclave.config import ExecutionConfig
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

TARGET = 1.5
SPREAD = (1 << 190) + 0x9E3779B97F4A7C15  # spreads the values over 64 hex digits, in order


def _write_lines(path: Path, lines: Callable[[int], str], count: int) -> None:
    with path.open("x", encoding="ascii", newline="") as file:
        for start in range(0, count, 65536):
            file.write("".join(map(lines, range(start, min(count, start + 65536)))))


def _psi_files(directory: Path, rows: int) -> tuple[Path, Path]:
    """Even values below 2·rows, and even values from rows on: half of each list matches."""
    first, second = directory / "psi1.txt", directory / "psi2.txt"
    _write_lines(first, lambda i: f"{2 * i * SPREAD:064x}\n", rows)
    _write_lines(second, lambda i: f"{(rows + 2 * i) * SPREAD:064x}\n", rows)
    return first, second


def _join_files(directory: Path, rows: int) -> tuple[Path, Path]:
    """Tables keyed like the PSI lists (zero-padded ids sort as strings)."""
    first, second = directory / "join1.csv", directory / "join2.csv"
    _write_lines(first, lambda i: f"{2 * i:012d},{i % 97}.5,{i % 13}\n", rows)
    _write_lines(second, lambda i: f"{rows + 2 * i:012d},{i % 7},x{i % 11},{i % 2}\n", rows)
    return first, second


def native_psi(first: Path, second: Path, out1: Path, out2: Path) -> str:
    """PSI written plainly over whole files (the inputs have no duplicates)."""
    lists = []
    for path in (first, second):
        items = [bytes.fromhex(line) for line in path.read_text(encoding="ascii").splitlines()]
        if items != sorted(items):
            raise SystemExit(f"{path.name} is not sorted")
        lists.append(items)
    items1, items2 = lists
    set1, set2 = set(items1), set(items2)
    out1.write_bytes(bytes(b"01"[item in set2] for item in items1))
    out2.write_bytes(bytes(b"01"[item in set1] for item in items2))
    return f"{len(set1 & set2)} common items"


def native_join(first: Path, second: Path, out: Path) -> str:
    """The join of the two tables on column 0, dropping it from the left (unique ids)."""
    with second.open(newline="", encoding="utf-8") as file:
        right = {record[0]: record[1:] for record in csv.reader(file)}
    count = 0
    with (
        first.open(newline="", encoding="utf-8") as file,
        out.open("w", newline="", encoding="utf-8") as sink,
    ):
        writer = csv.writer(sink, lineterminator="\n")
        for record in csv.reader(file):
            match = right.get(record[0])
            if match is not None:
                writer.writerow(record[1:] + match)
                count += 1
    return f"{count} records"


def _task(function: str, arguments: str, directory: Path, inputs: tuple[Path, Path]) -> StagedTask:
    outputs = ("output_result",) if "join" in function else ("output_result1", "output_result2")
    staged_inputs = []
    for number, path in enumerate(inputs, start=1):
        with path.open("rb") as source:
            sealed = directory / f"{path.name}.enc"
            staged_inputs.append(encrypted_input(f"input_data{number}", source, sealed))
    return StagedTask(
        function_name=function,
        executor_type="builtin",
        executor="builtin",
        function_arguments=arguments,
        inputs=staged_inputs,
        outputs=[encrypted_output(name, directory / f"{name}.enc") for name in outputs],
    )


def _compare(
    config: ExecutionConfig, staged: StagedTask, native: Callable[[], str]
) -> dict[str, object]:
    start = time.perf_counter()
    expected = native()
    native_seconds = time.perf_counter() - start
    result, seconds, _ = run_worker(config, staged)
    summary = result.Ok.return_value.decode()
    if summary != expected:
        raise SystemExit(f"results differ: {summary!r} != {expected!r}")
    return {
        "summary": summary,
        "platform_seconds": round(seconds, 2),
        "native_seconds": round(native_seconds, 2),
        "ratio": round(seconds / native_seconds, 2),
        "within_target": seconds / native_seconds <= TARGET,
    }


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: 10⁵ rows per input instead of 10⁶)."""
    rows = 10**5 if quick else 10**6
    figures: dict[str, object] = {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "rows_per_input": rows,
        "target_ratio": TARGET,
    }
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp:
        directory = Path(tmp)
        config = ExecutionConfig(file_roots=(tmp,), work_dir=str(directory / "work"))
        psi = _psi_files(directory, rows)
        figures["psi"] = _compare(
            config,
            _task("builtin-ordered-set-intersect", '{"order":"ascending"}', directory, psi),
            lambda: native_psi(*psi, directory / "native1", directory / "native2"),
        )
        join = _join_files(directory, rows)
        arguments = '{"left_column":0,"right_column":0,"ascending":true,"drop":true}'
        figures["join"] = _compare(
            config,
            _task("builtin-ordered-set-join", arguments, directory, join),
            lambda: native_join(*join, directory / "native.csv"),
        )
    return figures

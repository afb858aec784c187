"""Peak memory of a task streaming large inputs (suite ``memory`` of ``python -m bench``).

The real task process (forked by the zygote, :mod:`teaclave.executor.zygote`) runs
``builtin-ordered-set-intersect`` over two sorted aes-gcm-128 inputs of 1 GiB
each (64 MiB with ``--quick``) read from ``file://`` URLs, with aes-gcm-128
outputs: download, decrypt and stage as protected files, verify, run, convert,
upload. Figures: the task process's wall time and peak RSS (``ru_maxrss`` from
the zygote's ``wait4``), the ratio of peak RSS to the input size (target: peak <
200 MiB), the peak RSS of a task process running ``builtin-echo`` (the
interpreter's own share), and the time ratio to the baseline: the same function run in this
process on the plaintext files directly (no platform, no crypto).
"""

from __future__ import annotations

import platform as host
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from bench.tasks import PlainFiles, encrypted_input, encrypted_output, run_worker
from teaclave.config import ExecutionConfig
from teaclave.functions import ordered_set_intersect
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

LINE = 65  # 64 hex digits and a newline
STEPS = (2, 3)  # input 1 holds the multiples of 2, input 2 those of 3
TARGET_MIB = 200
MIB = 1 << 20


class SortedLines:
    """``count`` ascending lines of 64 hex digits (multiples of ``step``), copied to ``tee``."""

    def __init__(self, count: int, step: int, tee: BinaryIO) -> None:
        self._next, self._count, self._step, self._tee = 0, count, step, tee

    def read(self, size: int = -1, /) -> bytes:
        lines = min(self._count - self._next, max(1, size // LINE))
        first, self._next = self._next, self._next + lines
        data = "".join(f"{i * self._step:064x}\n" for i in range(first, first + lines)).encode()
        self._tee.write(data)
        return data


def generate(directory: Path, lines: int) -> StagedTask:
    """Both inputs (plaintext and encrypted) below ``directory``, and the task over them."""
    inputs = []
    for number, step in enumerate(STEPS, start=1):
        with (directory / f"input{number}.txt").open("xb") as tee:
            source = SortedLines(lines, step, tee)
            inputs.append(
                encrypted_input(f"input_data{number}", source, directory / f"input{number}.enc")
            )
    outputs = [
        encrypted_output(f"output_result{number}", directory / f"output{number}.enc")
        for number in (1, 2)
    ]
    return StagedTask(
        function_name="builtin-ordered-set-intersect",
        executor_type="builtin",
        executor="builtin",
        function_arguments='{"order":"ascending"}',
        inputs=inputs,
        outputs=outputs,
    )


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: 64 MiB inputs instead of 1 GiB)."""
    size = (64 if quick else 1024) * MIB
    lines = size // LINE
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp:
        directory = Path(tmp)
        config = ExecutionConfig(file_roots=(tmp,), work_dir=str(directory / "work"))
        staged = generate(directory, lines)
        idle = StagedTask(
            function_name="builtin-echo",
            executor_type="builtin",
            executor="builtin",
            function_arguments='{"message":"idle"}',
        )
        _, _, idle_rss = run_worker(config, idle)
        result, seconds, peak_rss = run_worker(config, staged)

        start = time.perf_counter()
        baseline = ordered_set_intersect.ordered_set_intersect(
            ordered_set_intersect.OrderedSetIntersectArguments("ascending"),
            PlainFiles(
                {f"input_data{n}": directory / f"input{n}.txt" for n in (1, 2)},
                {f"output_result{n}": directory / f"plain{n}.txt" for n in (1, 2)},
            ),
        )
        baseline_seconds = time.perf_counter() - start
    if result.Ok.return_value.decode() != baseline:
        raise SystemExit(f"results differ: {result.Ok.return_value!r} != {baseline!r}")
    input_bytes = 2 * lines * LINE
    return {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "task": "builtin-ordered-set-intersect, 2 aes-gcm-128 inputs, file:// URLs",
        "summary": baseline,
        "input_mib": round(input_bytes / MIB, 1),
        "chunk_mib": round(config.chunk_bytes / MIB, 2),
        "task_seconds": round(seconds, 2),
        "task_mib_per_s": round(input_bytes / MIB / seconds, 1),
        "peak_rss_mib": round(peak_rss, 1),
        "peak_rss_to_input": round(peak_rss * MIB / input_bytes, 4),
        "idle_worker_peak_rss_mib": round(idle_rss, 1),
        "peak_rss_target_mib": TARGET_MIB,
        "within_target": peak_rss < TARGET_MIB,
        "baseline_seconds": round(baseline_seconds, 2),
        "time_ratio_to_baseline": round(seconds / baseline_seconds, 2),
    }

"""Running a real task process on encrypted ``file://`` inputs (shared by the suites)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import BinaryIO

from teaclave.config import ExecutionConfig
from teaclave.crypto import aesgcm
from teaclave.crypto.streams import Reader
from teaclave.executor import uploads, worker
from teaclave.executor.launcher import Launcher
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedOutput, StagedTask

KEY, IV = bytes(range(16)), bytes(12)
CRYPTO = FileCryptoInfo(schema="aes-gcm-128", key=KEY, iv=IV)


class PlainFiles:
    """The baselines' runtime: plaintext files opened directly."""

    def __init__(self, inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
        self._inputs, self._outputs = inputs, outputs

    def open_input(self, name: str) -> BinaryIO:
        return self._inputs[name].open("rb")

    def create_output(self, name: str) -> BinaryIO:
        return self._outputs[name].open("wb")


def encrypted_input(name: str, source: Reader, sealed: Path) -> StagedInput:
    """Encrypt ``source`` (aes-gcm-128) into ``sealed``: the task input ``name`` reading it."""
    with sealed.open("xb") as sink:
        cmac = aesgcm.encrypt(KEY, IV, source, sink)
    return StagedInput(name=name, url=sealed.as_uri(), cmac=cmac, crypto_info=CRYPTO)


def encrypted_output(name: str, sealed: Path) -> StagedOutput:
    """The task output ``name``, written (aes-gcm-128) to ``sealed``."""
    return StagedOutput(name=name, url=sealed.as_uri(), crypto_info=CRYPTO)


def started(launcher: Launcher) -> float:
    """Seconds ``launcher`` takes to fork a task process (killed again, not timed)."""
    start = time.perf_counter()
    process = launcher.start()
    elapsed = time.perf_counter() - start
    with process:
        process.kill()
        process.wait()
    return elapsed


def run_worker(config: ExecutionConfig, staged: StagedTask) -> tuple[TaskResult, float, float]:
    """Run ``staged`` in a task process forked by a zygote, as the execution service does:
    its result, wall time (s, from the request to the zygote) and peak RSS (MiB).

    Every upload is granted at once (there is no scheduler to record it).
    """
    envelope = bytes(worker.encode_envelope(config, staged))
    with contextlib.closing(Launcher(config.python_modules)) as launcher:
        started(launcher)  # once the zygote is ready
        start = time.perf_counter()
        with launcher.start() as process:
            output = uploads.serve(process.stdin, process.stdout, envelope, lambda _name: "")
            if output is None:
                process.kill()
            ended = process.wait()
        elapsed = time.perf_counter() - start
    result = worker.read_result(ended.returncode, output)
    if result.WhichOneof("result") != "Ok":
        raise SystemExit(f"task failed: {result.Err.reason}")
    return result, elapsed, ended.max_rss_kib / 1024

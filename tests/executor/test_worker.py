"""The worker child: envelope in, result out, and death with its parent."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from executor_helpers import decrypt_file, psi_task

from teaclave.config import ExecutionConfig
from teaclave.core.errors import TeaclaveError
from teaclave.core.limits import Limits
from teaclave.executor import worker
from teaclave.executor.sandbox import View
from teaclave.proto.teaclave_common_pb2 import TaskResult


def run_worker(envelope: bytes) -> tuple[int, bytes]:
    process = subprocess.run(
        worker.command(os.getpid()),
        check=False,
        input=envelope,
        capture_output=True,
        timeout=60,
        env={},
    )
    return process.returncode, process.stdout


def test_round_trip(tmp_path: Path) -> None:
    config = ExecutionConfig(file_roots=(str(tmp_path),), max_summary_bytes=100)
    staged = psi_task(tmp_path)
    view = View(("/lib",), ("/lib/hidden",), (("/a", "b"),))
    envelope = worker.encode_envelope(config, staged, b"module", view)
    header, task = worker.decode_envelope(envelope)
    assert (header, task) == (worker.Header(worker.Settings(config, "", view), b"module"), staged)
    result = worker.read_result(*run_worker(worker.encode_envelope(config, staged)))
    assert result.Ok.return_value == b"3 common items"
    assert decrypt_file(tmp_path / "out1.enc", result.Ok.tags_map["output_result1"]) == b"0101010"


def test_the_working_directory_and_environment_stay_out_of_the_import_path(
    tmp_path: Path,
) -> None:
    """A worker started from a directory holding modules, with PYTHONPATH set, imports none."""
    planted = tmp_path / "planted"
    planted.mkdir()
    for name in ("json", "struct", "teaclave_marker"):
        (planted / f"{name}.py").write_text(f"open({str(tmp_path / name)!r}, 'w').close()\n")
    staged = psi_task(tmp_path)
    envelope = worker.encode_envelope(ExecutionConfig(file_roots=(str(tmp_path),)), staged)
    process = subprocess.run(
        worker.command(os.getpid()),
        check=False,
        input=envelope,
        capture_output=True,
        timeout=60,
        cwd=planted,
        env={"PYTHONPATH": str(planted), "PYTHONSTARTUP": str(planted / "json.py")},
    )
    assert worker.read_result(process.returncode, process.stdout).Ok.return_value == (
        b"3 common items"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == "") == ["planted"]


def test_failures_become_results(tmp_path: Path) -> None:
    denied = worker.encode_envelope(ExecutionConfig(), psi_task(tmp_path))
    result = worker.read_result(*run_worker(denied))
    assert "file_roots is empty" in result.Err.reason
    returncode, stdout = run_worker(b"garbage")
    assert returncode == 1
    assert worker.read_result(returncode, stdout).Err.reason == (
        "executor process exited with code 1"
    )


def test_read_result() -> None:
    ok = TaskResult(Ok={"return_value": b"x"})
    assert worker.read_result(0, ok.SerializeToString()) == ok
    malformed = "executor process returned a malformed result"
    assert worker.read_result(0, b"").Err.reason == malformed
    assert worker.read_result(0, b"\xff\xff").Err.reason == malformed
    assert worker.read_result(-9, b"").Err.reason == "executor process exited with code -9"


_MIDDLE = """
import os, subprocess, sys, time
from teaclave.executor import worker
from teaclave.executor.sandbox import View
child = subprocess.Popen(worker.command(os.getpid()), stdin=int(sys.argv[1]))
print(child.pid, flush=True)
time.sleep(60)
"""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_worker_dies_with_its_parent() -> None:
    # The worker's stdin stays open (we hold the write end): only its parent's death ends it.
    read_end, write_end = os.pipe()
    middle = subprocess.Popen(
        [sys.executable, "-c", _MIDDLE, str(read_end)], stdout=subprocess.PIPE, pass_fds=(read_end,)
    )
    os.close(read_end)
    try:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        time.sleep(1)  # let the worker start
        assert not gone(child)
        middle.send_signal(signal.SIGKILL)
        middle.wait()
        deadline = time.monotonic() + 10
        while not gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(child)
    finally:
        os.close(write_end)
        middle.kill()
        middle.wait()
        if middle.stdout is not None:
            middle.stdout.close()


def test_the_tasks_limits_move_from_its_arguments_into_the_settings(tmp_path: Path) -> None:
    staged = psi_task(tmp_path)
    staged.executor_type = staged.executor = "python"
    staged.function_arguments = '{"k":"v","teaclave.cpu_secs":2,"teaclave.memory_mb":"64"}'
    header, task = worker.decode_envelope(worker.encode_envelope(ExecutionConfig(), staged))
    assert header.settings.sandbox == "python"
    assert header.settings.config.limits() == Limits(cpu_secs=2.0, wall_secs=60.0, memory_mb=64)
    assert task.function_arguments == '{"k":"v"}'


def test_limits_above_the_executors_maxima_are_refused(tmp_path: Path) -> None:
    staged = psi_task(tmp_path)
    staged.executor_type = "python"
    staged.function_arguments = '{"teaclave.wall_secs":100}'
    with pytest.raises(TeaclaveError, match=r"'teaclave.wall_secs' must be .* \(0, 50\]"):
        worker.encode_envelope(ExecutionConfig(wall_secs=50.0, max_wall_secs=50.0), staged)

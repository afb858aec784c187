"""Task process start: a fork of the zygote against a fresh interpreter (suite ``zygote``).

Figures (medians):

* ``zygote_ready``: a new zygote (interpreter, task runtime, numpy and wasmtime
  imported) until it forked its first task process — paid once per execution service;
* ``fork``: from asking the zygote for a task process until it is forked (its pid
  and pidfd are back);
* ``interpreter``: ``python -I -c "import teaclave.executor.worker"``, start to
  exit — what starting a task process cost before the zygote (the baseline);
* ``builtin_echo`` and ``python_echo``: one ``builtin-echo`` task and one Python
  echo (in its sandbox), from starting the task process to its result: in a fork
  of the zygote (as the execution service runs tasks: each task's header goes
  ahead to the next spare, which forks its sandbox while it waits), and in a
  fresh interpreter running the same worker
  (``python -I -c "from teaclave.executor import worker; worker.main()"``, as
  task processes started before).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import subprocess
import sys

from bench.platform import timed
from bench.tasks import started
from teaclave.config import ExecutionConfig
from teaclave.executor import uploads, worker
from teaclave.executor.launcher import Launcher
from teaclave.executor.task import sandbox_kind, sandbox_view
from teaclave.executor.zygote import DIRECTORY, ENVIRONMENT
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

_FRESH = "from teaclave.executor import worker; worker.main()"


def _echo(executor: str) -> StagedTask:
    return StagedTask(
        function_name="builtin-echo" if executor == "builtin" else "echo",
        executor_type=executor,
        executor=executor,
        function_payload=b"def entrypoint(argv):\n    return argv[1]\n"
        if executor == "python"
        else b"",
        function_arguments='{"message":"bench"}',
    )


def _grant(_name: str) -> str:
    return ""


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _check(returncode: int, output: bytes | None) -> None:
    result = worker.read_result(returncode, output)
    if result.Ok.return_value != b"bench":
        raise SystemExit(f"echo task failed: {result}")


def _forked(launcher: Launcher, envelope: worker.Envelope) -> None:
    with launcher.start(envelope) as process:  # as the execution service does
        output = uploads.serve(process.stdin, process.stdout, process.unsent, _grant)
        _check(process.wait().returncode, output)


def _fresh(envelope: worker.Envelope) -> None:
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", _FRESH],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=ENVIRONMENT,
        cwd=DIRECTORY,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    with process.stdout:
        output = uploads.serve(process.stdin, process.stdout, bytes(envelope), _grant)
    _check(process.wait(), output)


def _zygote_ready(modules: tuple[str, ...]) -> None:
    with contextlib.closing(Launcher(modules)) as launcher:
        started(launcher)


def _interpreter() -> None:
    subprocess.run(
        [sys.executable, "-I", "-c", "import teaclave.executor.worker"],
        check=True,
        env=ENVIRONMENT,
        cwd=DIRECTORY,
    )


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: fewer runs)."""
    runs = 5 if quick else 30
    config = ExecutionConfig()
    envelopes = {
        executor: worker.encode_envelope(
            config, _echo(executor), view=sandbox_view(sandbox_kind(_echo(executor)), config)
        )
        for executor in ("builtin", "python")
    }
    ready = timed(lambda: _zygote_ready(config.python_modules), max(3, runs // 5))
    interpreter = timed(_interpreter, runs)
    figures: dict[str, object] = {
        "runs": runs,
        "zygote_ready_ms": _median_ms(ready),
        "interpreter_start_ms": _median_ms(interpreter),
    }
    with contextlib.closing(Launcher(config.python_modules)) as launcher:
        started(launcher)  # once the zygote is ready
        fork = [started(launcher) for _ in range(runs)]
        figures["fork_ms"] = _median_ms(fork)
        figures["fork_ratio_to_interpreter"] = round(
            statistics.median(fork) / statistics.median(interpreter), 4
        )
        for executor, envelope in envelopes.items():
            forked = timed(functools.partial(_forked, launcher, envelope), runs)
            fresh = timed(functools.partial(_fresh, envelope), runs)
            figures[f"{executor}_echo"] = {
                "forked_ms": _median_ms(forked),
                "fresh_interpreter_ms": _median_ms(fresh),
                "ratio": round(statistics.median(forked) / statistics.median(fresh), 3),
            }
    return figures

"""Task processes forked by the zygote: fresh per task, killed alone, dying with the service."""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from executor_helpers import (
    descendants,
    encrypt_first_input,
    memory_holds,
    psi_task,
    wait_for_sandbox,
)
from processes import children, gone, parent
from waiting import wait_until

from teaclave.config import ExecutionConfig
from teaclave.executor import uploads, worker
from teaclave.executor.launcher import Launcher, LauncherError, TaskProcess
from teaclave.executor.zygote import ENVIRONMENT
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask

ENDLESS = b"import time\ndef entrypoint(argv):\n    time.sleep(3600)\n"


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    with closing(Launcher(ExecutionConfig().python_modules)) as started:
        yield started


def echo(message: str) -> StagedTask:
    return StagedTask(
        function_name="builtin-echo",
        executor_type="builtin",
        executor="builtin",
        function_arguments=f'{{"message":"{message}"}}',
    )


def grant(name: str) -> str:
    return ""


def run(launcher: Launcher, staged: StagedTask) -> tuple[int, int, bytes]:
    """Run ``staged`` in a new task process: its pid, its parent's and the summary."""
    with launcher.start() as process:
        forked_by = parent(process.pid)
        output = uploads.serve(
            process.stdin,
            process.stdout,
            bytes(worker.encode_envelope(ExecutionConfig(), staged)),
            grant,
        )
        result = worker.read_result(process.wait().returncode, output)
    assert result.WhichOneof("result") == "Ok", result
    return process.pid, forked_by, result.Ok.return_value


def endless_task(launcher: Launcher, tmp_path: Path, name: str) -> tuple[TaskProcess, bytes]:
    """A Python task that runs until killed, its input under a fresh key: its process
    (once it read the task and forked its sandbox) and the key."""
    directory = tmp_path / name
    directory.mkdir()
    staged = psi_task(directory)
    staged.executor_type = staged.executor = "python"
    staged.function_payload = ENDLESS
    staged.function_arguments = "{}"
    key = encrypt_first_input(staged, directory / "psi0.enc")
    config = ExecutionConfig(file_roots=(str(tmp_path),), work_dir=str(tmp_path / "work"))
    process = launcher.start()
    process.stdin.write(bytes(worker.encode_envelope(config, staged)))
    process.stdin.close()
    wait_until(lambda: memory_holds(process.pid, key), "the task process to read its task")
    wait_for_sandbox(process)
    return process, key


def test_task_processes_are_fresh_children_of_the_zygote(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Each task gets a new process, forked by the zygote after other tasks read their
    keys: neither it nor the zygote holds them, nor any descriptor of theirs."""
    first, key = endless_task(launcher, tmp_path, "first")
    zygote = parent(first.pid)
    assert parent(zygote) == os.getpid()
    assert os.readlink(f"/proc/{zygote}/cwd") == "/"
    environ = Path(f"/proc/{zygote}/environ").read_bytes().split(b"\0")
    assert dict(v.decode().split("=", 1) for v in environ if v) == ENVIRONMENT
    with launcher.start() as early:  # the spare, forked before the key was read
        early.kill()
    with first, launcher.start() as second:  # blocked: its envelope never comes
        assert parent(second.pid) == zygote
        assert second.pid != first.pid
        wait_until(
            lambda: os.getsid(second.pid) == second.pid,  # and a process group
            "the task process to start a session of its own",
        )
        assert not memory_holds(second.pid, key)
        assert not memory_holds(zygote, key)
        descriptors = [os.readlink(fd) for fd in Path(f"/proc/{second.pid}/fd").iterdir()]
        assert not [d for d in descriptors if d.startswith(("socket:", "anon_inode:"))]
        first.kill()
    again = [run(launcher, echo("again")) for _ in range(2)]
    assert [(forked_by, summary) for _, forked_by, summary in again] == [(zygote, b"again")] * 2
    assert len({first.pid, second.pid, *(pid for pid, _, _ in again)}) == 4
    wait_until(lambda: len(children(zygote)) == 1, "the zygote to reap all but the spare")


def test_a_task_takes_the_process_the_zygote_forked_ahead(launcher: Launcher) -> None:
    """Starting a task waits for no fork: it takes the spare, and the zygote forks the next."""
    with launcher.start() as first:  # blocked: its envelope never comes
        zygote = parent(first.pid)
        wait_until(lambda: len(children(zygote)) == 2, "the zygote to fork a spare")
        (spare,) = set(children(zygote)) - {first.pid}
        with launcher.start() as second:
            assert second.pid == spare
            wait_until(lambda: len(children(zygote)) == 3, "the zygote to fork the next spare")
            second.kill()
        first.kill()
    assert first.wait().returncode == second.wait().returncode == -signal.SIGKILL


def test_reaping_kills_a_process_that_does_not_end_in_its_grace(launcher: Launcher) -> None:
    """What the execution service does once a task process sent its result: wait for its
    end, and kill it if the grace runs out (this one waits for an envelope forever)."""
    ended: list[int] = []
    with launcher.start() as process:
        reaper = threading.Thread(target=lambda: ended.append(process.reap(0.2).returncode))
        reaper.start()
        reaper.join(5)
        alive = reaper.is_alive()
        if alive:  # the test failed: let the reaper end
            process.kill()
            reaper.join()
    assert not alive, "the process was not killed when its grace ran out"
    assert ended == [-signal.SIGKILL]


def test_killing_a_task_process_kills_only_that_task(launcher: Launcher, tmp_path: Path) -> None:
    killed, _ = endless_task(launcher, tmp_path, "killed")
    spared, _ = endless_task(launcher, tmp_path, "spared")
    with killed, spared:
        doomed = [killed.pid, *descendants(killed.pid)]  # with its sandbox's processes
        living = [spared.pid, *descendants(spared.pid)]
        killed.kill()
        assert killed.wait().returncode == -signal.SIGKILL
        wait_until(lambda: all(gone(pid) for pid in doomed), "the task and its sandbox to die")
        assert not any(gone(pid) for pid in living)
        spared.kill()
        assert spared.wait().returncode == -signal.SIGKILL


def test_a_killed_zygote_fails_its_tasks_and_is_replaced(launcher: Launcher) -> None:
    with launcher.start() as orphan:  # blocked: its envelope never comes
        zygote = parent(orphan.pid)
        os.kill(zygote, signal.SIGKILL)
        with pytest.raises(LauncherError) as lost:
            orphan.wait()
    assert str(lost.value) == "executor process lost: the zygote was killed by SIGKILL"
    wait_until(lambda: gone(orphan.pid), "the task process to die with its zygote")
    _, forked_by, summary = run(launcher, echo("after"))
    assert summary == b"after"
    assert forked_by not in (0, zygote)


def test_a_zygote_that_cannot_start_fails_each_start_with_the_reason() -> None:
    with (
        closing(Launcher(directory="/nonexistent")) as broken,
        pytest.raises(LauncherError) as failed,
    ):
        broken.start()
    assert str(failed.value) == (
        "cannot start executor process: cannot start the zygote: No such file or directory"
    )


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no thread on one core")
def test_a_zygote_that_imports_a_thread_refuses_to_serve(capfd: pytest.CaptureFixture[str]) -> None:
    """numpy with two OpenBLAS threads: the task processes could not fork sandboxes."""
    threaded = Launcher(("numpy",), environment={"OPENBLAS_NUM_THREADS": "2"})
    with closing(threaded), pytest.raises(LauncherError) as failed:
        threaded.start()
    assert str(failed.value) == (
        "cannot start executor process: the zygote exited with code 1 before it was ready"
    )
    assert "zygote: 2 threads run after the imports; sandboxes need one" in capfd.readouterr().err


_SERVICE = """
import time
from teaclave.executor.launcher import Launcher
process = Launcher().start()
print(process.pid, flush=True)
time.sleep(60)
"""


def test_the_zygote_and_its_task_processes_die_with_the_service() -> None:
    service = subprocess.Popen([sys.executable, "-c", _SERVICE], stdout=subprocess.PIPE)
    try:
        assert service.stdout is not None
        task = int(service.stdout.readline())
        zygote = parent(task)
        assert parent(zygote) == service.pid
        service.kill()
        service.wait()
        wait_until(lambda: gone(zygote) and gone(task), "the zygote and task to die")
    finally:
        service.kill()
        service.wait()
        if service.stdout is not None:
            service.stdout.close()

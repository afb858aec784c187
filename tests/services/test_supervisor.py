"""Running services as processes: one service, and the supervisor's life cycle."""

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_until

from teaclave.config import load_config
from teaclave.services.supervisor import Supervisor, SupervisorError


@pytest.fixture
def config_path(tmp_path: Path, free_port: int) -> Path:
    path = tmp_path / "teaclave.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[endpoints]\nstorage = "127.0.0.1:{free_port}"\n'
    )
    return path


def storage_port(config_path: Path) -> int:
    return int(load_config(config_path).endpoints.storage.rsplit(":", 1)[1])


def wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("storage did not listen")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def storage_process(config_path: Path) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "teaclave.services", "storage", "--config", str(config_path)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        wait_listening(storage_port(config_path), proc)
        yield proc
        if proc.poll() is None:
            proc.kill()


def test_service_stops_cleanly_on_sigterm(storage_process: subprocess.Popen[str]) -> None:
    storage_process.send_signal(signal.SIGTERM)
    _, err = storage_process.communicate(timeout=30)
    assert storage_process.returncode == 0
    lines = err.splitlines()
    assert lines[0].endswith("INFO storage: runtime manifest: storage may use fs")
    assert lines[1].endswith(
        "INFO storage: storage listening on " + lines[1].rsplit(" ", 2)[1] + " (internal)"
    )
    assert lines[-1].endswith("INFO storage: storage stopped")


def test_bad_config_is_one_log_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "teaclave.services", "storage", "--config", str(bad)],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().endswith("ERROR storage: unknown setting nonsense")


def test_supervised_service_stops_when_its_supervisor_goes(config_path: Path) -> None:
    command = [sys.executable, "-m", "teaclave.services", "storage", "--supervised"]
    command += ["--config", str(config_path)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        wait_listening(storage_port(config_path), proc)
        assert proc.stdin is not None
        proc.stdin.close()  # what the kernel does when the supervisor dies
        assert proc.wait(timeout=30) == 0


def test_supervisor_restarts_and_stops(config_path: Path) -> None:
    output = io.StringIO()
    config = load_config(config_path)
    with Supervisor(
        config, config_path, services=("storage",), output=output, first_backoff=0.05
    ) as sup:
        first = sup.pid("storage")
        assert first is not None
        sup.kill("storage")
        wait_until(lambda: sup.pid("storage") not in (None, first), "storage to be restarted")
        second = sup.pid("storage")
        sup.restart("storage")
        third = sup.pid("storage")
        assert third not in (None, second)
    assert third is not None
    assert not alive(third)
    assert sup.pid("storage") is None
    assert "storage        | " in output.getvalue()
    assert "INFO storage: storage stopped" in output.getvalue()


def test_supervisor_gives_up_after_too_many_crashes(config_path: Path) -> None:
    config = load_config(config_path)
    sup = Supervisor(
        config, config_path, services=("storage",), output=io.StringIO(),
        first_backoff=0.05, max_restarts=1,
    )  # fmt: skip
    sup.start()
    try:
        first = sup.pid("storage")
        sup.kill("storage")
        wait_until(lambda: sup.pid("storage") not in (None, first), "storage to be restarted")
        sup.kill("storage")
        with pytest.raises(SupervisorError, match=r"storage crashed 2 times within 60 s"):
            sup.wait(30)
        assert sup.pid("storage") is None
    finally:
        sup.stop()


def test_start_failure_is_reported(tmp_path: Path, config_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    config = load_config(config_path).with_data_dir(not_a_dir)
    sup = Supervisor(config, config_path, services=("storage",), output=io.StringIO())
    with pytest.raises(SupervisorError, match=r"storage exited with code 1 before listening on"):
        sup.start()
    assert sup.pid("storage") is None

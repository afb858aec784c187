"""The worker, in a task process forked by a zygote: envelope in, result out."""

import io
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from executor_helpers import decrypt_file, descendants, psi_task, python_echo
from processes import children, is_spare, parent
from waiting import wait_until

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.limits import Limits
from teaclave.executor import uploads, worker
from teaclave.executor.launcher import MAX_AHEAD_BYTES, Launcher, TaskProcess
from teaclave.executor.sandbox import View
from teaclave.executor.task import sandbox_view
from teaclave.executor.zygote import ENVIRONMENT
from teaclave.observability.stages import Report
from teaclave.proto.teaclave_common_pb2 import TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask


def decode_envelope(data: bytes) -> tuple[worker.Header, StagedTask]:
    """The header and task of an envelope, read as the worker reads them."""
    stream = io.BytesIO(data)
    assert worker.read_kind(stream) == worker.HEADER
    header = worker.read_header(stream)
    assert worker.read_kind(stream) == worker.TASK
    return header, worker.read_task(stream)


def grant(name: str) -> str:
    return ""


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    with closing(Launcher()) as started:
        yield started


def run_worker(
    launcher: Launcher, envelope: bytes, start_upload: Callable[[str], str] = grant
) -> tuple[int, bytes | None]:
    """Run a task process as the execution service does: its exit code and result."""
    with launcher.start() as process:
        result = uploads.serve(process.stdin, process.stdout, envelope, start_upload)
        if result is None:
            process.kill()
        return process.wait().returncode, result


def test_round_trip(tmp_path: Path, launcher: Launcher) -> None:
    config = ExecutionConfig(file_roots=(str(tmp_path),), max_summary_bytes=100)
    staged = psi_task(tmp_path)
    view = View(("/lib",), ("/lib/hidden",), (("/a", "b"),))
    envelope = bytes(worker.encode_envelope(config, staged, b"module", view))
    header, task = decode_envelope(envelope)
    assert (header, task) == (worker.Header(worker.Settings(config, "", view), b"module"), staged)
    result = worker.read_result(
        *run_worker(launcher, bytes(worker.encode_envelope(config, staged)))
    )
    assert result.Ok.return_value == b"3 common items"
    assert decrypt_file(tmp_path / "out1.enc", result.Ok.tags_map["output_result1"]) == b"0101010"


def test_the_working_directory_and_environment_stay_out_of_the_import_path(
    tmp_path: Path,
) -> None:
    """A zygote started from a directory holding modules, with PYTHONPATH set, imports
    none, nor do its task processes."""
    planted = tmp_path / "planted"
    planted.mkdir()
    for name in ("json", "struct", "teaclave_marker"):
        (planted / f"{name}.py").write_text(f"open({str(tmp_path / name)!r}, 'w').close()\n")
    staged = psi_task(tmp_path)
    envelope = bytes(worker.encode_envelope(ExecutionConfig(file_roots=(str(tmp_path),)), staged))
    environment = {
        **ENVIRONMENT,  # the one-thread settings the zygote needs
        "PYTHONPATH": str(planted),
        "PYTHONSTARTUP": str(planted / "json.py"),
    }
    # The zygote even tries to preload the planted module.
    with closing(
        Launcher(("teaclave_marker",), directory=str(planted), environment=environment)
    ) as z:
        result = worker.read_result(*run_worker(z, envelope))
    assert result.Ok.return_value == b"3 common items"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == "") == ["planted"]


def test_failures_become_results(tmp_path: Path, launcher: Launcher) -> None:
    denied = bytes(worker.encode_envelope(ExecutionConfig(), psi_task(tmp_path)))
    result = worker.read_result(*run_worker(launcher, denied))
    assert "file_roots is empty" in result.Err.reason
    returncode, stdout = run_worker(launcher, bytes(9) + b"garbage")  # no settings, then junk
    assert returncode == 1
    assert worker.read_result(returncode, stdout).Err.reason == (
        "executor process exited with code 1"
    )


def test_each_upload_waits_for_the_services_grant(tmp_path: Path, launcher: Launcher) -> None:
    config = ExecutionConfig(file_roots=(str(tmp_path),))
    asked: list[tuple[str, bool]] = []

    def refuse_second(name: str) -> str:
        asked.append((name, (tmp_path / "out1.enc").exists()))
        return "cannot start the upload: no" if name == "output_result2" else ""

    result = worker.read_result(
        *run_worker(
            launcher, bytes(worker.encode_envelope(config, psi_task(tmp_path))), refuse_second
        )
    )
    assert result.Err.reason == "output 'output_result2': cannot start the upload: no"
    assert asked == [("output_result1", False), ("output_result2", True)]
    assert not (tmp_path / "out1.enc").exists()  # removed again: all outputs or none
    assert not (tmp_path / "out2.enc").exists()


def test_without_an_answer_nothing_is_uploaded(tmp_path: Path, launcher: Launcher) -> None:
    """A worker whose stdin ends after the envelope (no service answering) uploads nothing."""
    config = ExecutionConfig(file_roots=(str(tmp_path),))
    with launcher.start() as process:
        process.stdin.write(bytes(worker.encode_envelope(config, psi_task(tmp_path))))
        process.stdin.close()
        stdout = io.BytesIO(process.stdout.read())
        assert process.wait().returncode == 0
    assert uploads.read_frame(stdout) == (uploads.UPLOAD, b"output_result1")
    kind, timings = uploads.read_frame(stdout) or (b"", b"")
    assert kind == uploads.STAGES  # its stages, the failed upload among them
    report = Report.decode(timings)
    assert [(s.name, s.parent, s.error) for s in report.stages] == [
        ("sandbox", -1, ""),
        ("fetch_inputs", -1, ""),
        ("fetch_input", 1, ""),
        ("fetch_input", 1, ""),
        ("run", -1, ""),
        ("upload_outputs", -1, "TeaclaveError"),  # no upload_output: refused before it began
    ]
    assert all(report.began <= s.start <= s.end for s in report.stages)
    kind, payload = uploads.read_frame(stdout) or (b"", b"")
    assert (kind, uploads.read_frame(stdout)) == (uploads.RESULT, None)
    assert TaskResult.FromString(payload).Err.reason == (
        "output 'output_result1': cannot start the upload: no answer from the execution service"
    )
    assert not (tmp_path / "out1.enc").exists()


def frames(*items: tuple[bytes, bytes]) -> io.BytesIO:
    stream = io.BytesIO()
    for kind, payload in items:
        uploads.write_frame(stream, kind, payload)
    stream.seek(0)
    return stream


def test_the_service_answers_requests_in_order_until_the_result() -> None:
    from_worker = frames(
        (uploads.UPLOAD, b"a"), (uploads.UPLOAD, b"b"), (uploads.RESULT, b"result")
    )
    to_worker = io.BytesIO()
    to_worker.close = lambda: None  # type: ignore[method-assign]  # keep it readable
    asked: list[str] = []

    def start_upload(name: str) -> str:
        asked.append(name)
        return "not b" if name == "b" else ""

    assert uploads.serve(to_worker, from_worker, b"envelope", start_upload) == b"result"
    assert asked == ["a", "b"]
    written = io.BytesIO(to_worker.getvalue())
    assert written.read(len(b"envelope")) == b"envelope"
    assert uploads.read_frame(written) == (uploads.GRANTED, b"")
    assert uploads.read_frame(written) == (uploads.REFUSED, b"not b")
    assert uploads.read_frame(written) is None


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (b"", b""),  # ended without a result: its exit code tells why
        (bytes(frames((b"X", b"?")).getvalue()), None),
        (bytes(frames((uploads.UPLOAD, b"\xff")).getvalue()), None),
        (b"R\x00\x00", None),
        (b"R\x00\x00\x00\x05abc", None),
        (b"R\xff\xff\xff\xff", None),
    ],
)
def test_a_worker_breaking_the_protocol_is_told_apart(
    stdout: bytes, expected: bytes | None
) -> None:
    asked: list[str] = []
    assert uploads.serve(io.BytesIO(), io.BytesIO(stdout), b"", asked.append) == expected  # type: ignore[arg-type]
    assert asked == []
    assert worker.read_result(0, None).Err.reason == "executor process returned a malformed result"


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (b"", "cannot start the upload: no answer from the execution service"),
        (b"Y\x00", "cannot start the upload: no answer from the execution service"),
        (
            frames((b"X", b"")).getvalue(),
            "cannot start the upload: malformed answer from the execution service",
        ),
        (frames((uploads.REFUSED, b"the task was canceled")).getvalue(), "the task was canceled"),
    ],
)
def test_the_worker_uploads_only_on_a_grant(answers: bytes, reason: str) -> None:
    requests = io.BytesIO()
    gate = uploads.ServiceGate(requests, io.BytesIO(answers))
    with pytest.raises(TeaclaveError) as caught:
        gate("out")
    assert (caught.value.status, caught.value.message) == (Status.FAILED_PRECONDITION, reason)
    assert requests.getvalue() == frames((uploads.UPLOAD, b"out")).getvalue()
    uploads.ServiceGate(io.BytesIO(), frames((uploads.GRANTED, b"")))("out")  # granted: returns


def test_read_result() -> None:
    ok = TaskResult(Ok={"return_value": b"x"})
    assert worker.read_result(0, ok.SerializeToString()) == ok
    assert worker.read_result(-9, ok.SerializeToString()) == ok  # sent: its end changes nothing
    malformed = "executor process returned a malformed result"
    assert worker.read_result(0, b"").Err.reason == malformed
    assert worker.read_result(0, b"\xff\xff").Err.reason == malformed
    assert worker.read_result(-9, b"").Err.reason == "executor process exited with code -9"


def test_a_rehearsal_runs_the_whole_task_path_in_memory() -> None:
    """What a spare task process runs while it waits for its task: an echo of nothing,
    through the header, the task, the function and both frames (no descriptor used)."""
    result = worker.rehearse()
    assert result.WhichOneof("result") == "Ok", result
    assert result.Ok.return_value == b""


def test_the_tasks_limits_move_from_its_arguments_into_the_settings(tmp_path: Path) -> None:
    staged = psi_task(tmp_path)
    staged.executor_type = staged.executor = "python"
    staged.function_arguments = '{"k":"v","teaclave.cpu_secs":2,"teaclave.memory_mb":"64"}'
    header, task = decode_envelope(bytes(worker.encode_envelope(ExecutionConfig(), staged)))
    assert header.settings.sandbox == "python"
    assert header.settings.config.limits() == Limits(cpu_secs=2.0, wall_secs=60.0, memory_mb=64)
    assert task.function_arguments == '{"k":"v"}'


def test_limits_above_the_executors_maxima_are_refused(tmp_path: Path) -> None:
    staged = psi_task(tmp_path)
    staged.executor_type = "python"
    staged.function_arguments = '{"teaclave.wall_secs":100}'
    with pytest.raises(TeaclaveError, match=r"'teaclave.wall_secs' must be .* \(0, 50\]"):
        bytes(worker.encode_envelope(ExecutionConfig(wall_secs=50.0, max_wall_secs=50.0), staged))


# --- the header sent ahead ---------------------------------------------------------------


def serve(process: TaskProcess) -> tuple[TaskResult, Report]:
    """Feed ``process`` the rest of its envelope as the execution service does: its
    result and stage report."""
    reports: list[bytes] = []
    output = uploads.serve(process.stdin, process.stdout, process.unsent, grant, reports.append)
    result = worker.read_result(process.wait().returncode, output)
    return result, Report.decode(reports[0]) if reports else Report(0, [])


def prime(launcher: Launcher, envelope: worker.Envelope) -> int:
    """Run ``envelope``'s task: the next spare gets its header ahead. The zygote's pid."""
    with launcher.start(envelope) as process:
        zygote = parent(process.pid)
        assert serve(process)[0].WhichOneof("result") == "Ok"
    return zygote


def forked_ahead(report: Report) -> object:
    (sandbox,) = [s for s in report.stages if s.name == "sandbox"]
    return sandbox.attributes["ahead"]


def test_a_spare_forks_the_sandbox_of_the_header_sent_ahead() -> None:
    """The next spare gets the header ahead and forks its sandbox while it waits; the
    task then comes without a header, all of it written at once, and runs there."""
    config = ExecutionConfig()
    envelope = worker.encode_envelope(config, python_echo(), view=sandbox_view("python", config))
    with closing(Launcher()) as launcher:
        zygote = prime(launcher, envelope)
        (spare,) = wait_until(
            lambda: [c for c in children(zygote) if is_spare(c) and descendants(c)],
            "the spare to fork the sandbox",
        )
        with launcher.start(envelope) as process:
            assert (process.pid, process.ahead, process.unsent) == (spare, envelope.ahead, b"")
            result, report = serve(process)
    assert (result.Ok.return_value, forked_ahead(report)) == (b"hi", True)
    assert envelope.after(envelope.ahead) == envelope.task


def test_a_task_unlike_the_header_sent_ahead_runs_in_a_sandbox_of_its_own() -> None:
    """A task whose settings differ from the header sent ahead (here, its memory limit)
    brings its header; its sandbox is forked for it, with its limits."""
    config = ExecutionConfig()
    view = sandbox_view("python", config)
    expected = worker.encode_envelope(config, python_echo(), view=view)
    hungry = python_echo('{"teaclave.memory_mb":64}')
    hungry.function_payload = b"def entrypoint(argv):\n    return len(bytearray(128 << 20))\n"
    envelope = worker.encode_envelope(config, hungry, view=view)
    assert envelope.after(expected.ahead) == bytes(envelope)
    with closing(Launcher()) as launcher:
        prime(launcher, expected)
        with launcher.start(envelope) as process:
            assert process.ahead == expected.ahead
            result, report = serve(process)
    assert result.Err.reason.startswith("memory limit (64 MiB) exceeded"), result
    assert forked_ahead(report) is False


def test_an_envelope_the_pipe_cannot_hold_goes_in_parts() -> None:
    """A header above ``MAX_AHEAD_BYTES`` is not sent ahead, and the part of an envelope
    the pipe does not take at once is left to the caller."""
    config = ExecutionConfig()
    envelope = worker.encode_envelope(config, python_echo(), module=bytes(MAX_AHEAD_BYTES))
    with closing(Launcher()) as launcher:
        prime(launcher, envelope)
        with launcher.start(envelope) as process:
            assert process.ahead == b""
            assert 0 < len(process.unsent) < len(bytes(envelope))
            result, _ = serve(process)
    assert result.Ok.return_value == b"hi"

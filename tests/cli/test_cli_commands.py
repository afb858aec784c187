"""Commands that need no running platform: measurements, sessions, argument errors."""

import io
import json
import os
import shutil
from pathlib import Path

import pytest

import teaclave
from teaclave.attestation.measure import service_measurement
from teaclave.cli.main import build_parser, main
from teaclave.cli.tasks import task_arguments
from teaclave.config import SERVICES


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_measurements(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "attestation", "measurements", "--json")
    assert code == 0
    assert json.loads(out) == {name: service_measurement(name).hex() for name in SERVICES}
    code, out, _ = run(capsys, "attestation", "measurements")
    assert f"storage         {service_measurement('storage').hex()}" in out.splitlines()


def test_commands_need_a_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "task", "get", "task-1", "--session", str(tmp_path / "none.json"))
    assert (code, out) == (1, "")
    assert err == "teaclave: error: not logged in: run `teaclave user login USER_ID` first\n"


def test_unreachable_endpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], free_port: int
) -> None:
    argv = ["user", "login", "alice", "--password", "pw", "--session", str(tmp_path / "s.json")]
    code, _, err = run(capsys, *argv, "--auth-address", f"127.0.0.1:{free_port}")
    assert code == 1
    assert err.startswith(f"teaclave: error: UNAVAILABLE: cannot reach 127.0.0.1:{free_port}")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["user", "register", "bob", "--role", "King"], "argument --role: invalid choice"),
        (["task", "assign", "t", "--input", "novalue"], "want KEY=VALUE"),
        (["task", "create", "f", "--args-json", "[1]"], "--args-json must be a JSON object"),
        (["attestation", "verify", "127.0.0.1:1", "nobody"], "invalid choice: 'nobody'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_argument_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    session = tmp_path / "s.json"
    session.write_text('{"id": "u", "token": "t"}')
    code, _, err = run(capsys, *argv, "--session", str(session))
    assert code == 2
    assert message in err


def test_task_limit_options_become_limit_arguments() -> None:
    argv = ["task", "create", "f", "--arg", "k=v", "--cpu-secs", "2.5", "--memory-mb", "64"]
    assert task_arguments(build_parser().parse_args(argv)) == {
        "k": "v",
        "teaclave.cpu_secs": 2.5,
        "teaclave.memory_mb": 64,
    }


@pytest.mark.parametrize("spelling", ["--argument", "--arg"])
def test_both_argument_spellings_on_both_commands(spelling: str) -> None:
    parser = build_parser()
    task = parser.parse_args(["task", "create", "f", spelling, "k=v", spelling, "n=1"])
    assert task_arguments(task) == {"k": "v", "n": "1"}
    function = parser.parse_args(
        ["function", "register", "--name", "f", "--executor-type", "python", spelling, "k=d"]
    )
    assert function.argument == [("k", "d")]


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_an_empty_password_is_refused_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    argv = ["user", "register", "bob", "--role", "DataOwner", "--session", str(tmp_path / "s")]
    code, out, err = run(capsys, *argv, "--auth-address", "127.0.0.1:1")
    assert (code, out) == (2, "")
    assert err == (
        "teaclave user: error: empty password: pass --password, type it at the prompt or pipe it\n"
    )


def test_serve_refuses_production_mode_on_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "production.toml"
    config.write_text('[attestation]\nmode = "production"\n')
    code, _, err = run(capsys, "serve", "--config", str(config), "--data-dir", str(tmp_path))
    assert code == 1
    assert "attestation.mode production refuses simulated evidence" in err
    assert not (tmp_path / "simulation").exists()  # nothing was started


def test_measurements_are_recomputed_from_a_copy_of_the_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another path, other file times, stray bytecode: the same measurements."""
    copy = tmp_path / "elsewhere" / "teaclave"
    shutil.copytree(Path(teaclave.__file__).parent, copy, ignore=shutil.ignore_patterns("*.pyc"))
    (copy / "stray.cpython-311.pyc").write_bytes(b"bytecode")
    for path in copy.rglob("*.py"):
        os.utime(path, (0, 0))
    code, out, _ = run(capsys, "attestation", "measurements", "--json", "--source", str(copy))
    assert code == 0
    assert json.loads(out) == {name: service_measurement(name).hex() for name in SERVICES}
    (copy / "core" / "errors.py").write_text("# changed\n")
    _, out, _ = run(capsys, "attestation", "measurements", "--json", "--source", str(copy))
    assert json.loads(out)["storage"] != service_measurement("storage").hex()

"""Python functions through run_staged_task: real payloads in the real sandbox, aes-gcm files."""

import hashlib
import json
import marshal
import signal
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from executor_helpers import (
    aes,
    assert_sandbox_never_holds_the_key,
    decrypt_file,
    encrypt_file,
    run_task,
    started_task,
    wait_for_sandbox,
    wait_until,
)

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor import worker
from teaclave.executor.python.payload import check, flatten
from teaclave.proto.teaclave_common_pb2 import TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedOutput, StagedTask

CSV = b"x,y\n1,0\n2,1\n3,1\n"


@pytest.fixture
def config(tmp_path: Path) -> ExecutionConfig:
    return ExecutionConfig(
        file_roots=(str(tmp_path),),
        work_dir=str(tmp_path / "work"),
        cpu_secs=5,
        wall_secs=20,
        max_summary_bytes=200,
    )


def python_task(
    root: Path, payload: str, arguments: str = "{}", executor: str = "python", output: bool = False
) -> StagedTask:
    """A Python function over input "data" (CSV, aes-gcm) and, if ``output``, output "result"."""
    cmac = encrypt_file(CSV, root / "data.enc")
    return StagedTask(
        task_id="0b8e2c4e-1b1f-4b8e-9c7a-6f3d2e1a0c9b",
        function_name="python-test",
        executor_type="python",
        executor=executor,
        function_arguments=arguments,
        function_payload=textwrap.dedent(payload).encode(),
        inputs=[
            StagedInput(name="data", url=f"file://{root}/data.enc", cmac=cmac, crypto_info=aes())
        ],
        outputs=[StagedOutput(name="result", url=f"file://{root}/result.enc", crypto_info=aes())]
        if output
        else [],
    )


def run(root: Path, config: ExecutionConfig, payload: str, output: bool = False) -> TaskResult:
    return run_task(python_task(root, payload, output=output), config)


def summary(result: TaskResult) -> bytes:
    assert result.WhichOneof("result") == "Ok", result
    return result.Ok.return_value


def reason(result: TaskResult) -> str:
    assert result.WhichOneof("result") == "Err", result
    return result.Err.reason


def test_flatten_follows_the_reference() -> None:
    arguments = '{"s":"text","n":3,"f":0.1,"b":true,"l":[1,2],"o":{"b":1,"a":"é"},"z":null}'
    assert flatten(arguments) == [
        *("b", "true", "f", "0.1", "l", "[1,2]", "n", "3"),
        *("o", '{"a":"é","b":1}', "s", "text", "z", "null"),
    ]


ECHO = """
def entrypoint(argv):
    return "|".join(argv)
"""


@pytest.mark.parametrize("executor", ["python", "mesapy"])
def test_echo(tmp_path: Path, config: ExecutionConfig, executor: str) -> None:
    staged = python_task(tmp_path, ECHO, '{"message":"Hello","n":2}', executor)
    assert summary(run_task(staged, config)) == b"message|Hello|n|2"


def test_builtin_executor_cannot_run_python(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = python_task(tmp_path, ECHO, executor="builtin")
    assert reason(run_task(staged, config)) == "function not available: (python, builtin)"


def test_files_in_and_out(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = """
    from teaclave import open

    def entrypoint(argv):
        with open("data", "rb") as data:
            header = data.readline()
            rows = [line.strip().split(b",") for line in data]
        with teaclave_open("data", "rb") as again:
            assert again.readlines()[0] == header and again.read() == b""
        out = teaclave_open("result", "wb")  # left open: flushed when the function returns
        out.write(b"".join(x + b"\\n" for x, _ in rows))
        return len(rows)
    """
    result = run(tmp_path, config, payload, output=True)
    assert summary(result) == b"3"
    assert decrypt_file(tmp_path / "result.enc", result.Ok.tags_map["result"]) == b"1\n2\n3\n"


def test_large_files_move_in_chunks(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = """
    def entrypoint(argv):
        with teaclave_open("result", "wb") as out:
            for i in range(5):
                out.write(bytes([i]) * (700 * 1024))
        return "ok"
    """
    result = run(tmp_path, config, payload, output=True)
    assert summary(result) == b"ok"
    written = decrypt_file(tmp_path / "result.enc", result.Ok.tags_map["result"])
    assert written == b"".join(bytes([i]) * (700 * 1024) for i in range(5))


def test_mode_and_name_errors(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = """
    def attempt(name, mode):
        try:
            teaclave_open(name, mode)
        except RuntimeError as exc:
            return str(exc)
        return "opened"

    def entrypoint(argv):
        return "/".join([attempt("data", "r"), attempt("result", "w"), attempt("nope", "rb"),
                         attempt("nope", "wb"), attempt("data", "rb")])
    """
    assert summary(run(tmp_path, config, payload)).decode().split("/") == [
        "Teaclave Not Supported",
        "Teaclave Not Supported",
        "fileio_init: teaclave_ffi_error",
        "fileio_init: teaclave_ffi_error",
        "opened",
    ]


RAISES = """
def helper(x):
    return x / 0

def entrypoint(argv):
    with teaclave_open("result", "wb") as out:
        out.write(b"partial")
    return helper(1)
"""


def test_exception_fails_the_task(tmp_path: Path, config: ExecutionConfig) -> None:
    text = reason(run(tmp_path, config, RAISES, output=True))
    assert text.split("\n")[0] == "ZeroDivisionError: division by zero"
    assert not (tmp_path / "result.enc").exists()


def test_exception_reports_its_traceback(tmp_path: Path, config: ExecutionConfig) -> None:
    trace = reason(run(tmp_path, config, RAISES, output=True)).split("\n", 1)[1]
    assert trace.startswith("Traceback (most recent call last):")
    assert 'File "<function>", line 8, in entrypoint' in trace
    assert "return x / 0" in trace
    assert "guest.py" not in trace  # the platform's own frames are left out


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("def entrypoint(argv)\n", "SyntaxError: expected ':'"),
        ("x = 1\n", "NameError: the function defines no callable 'entrypoint'"),
        ("def entrypoint(argv):\n    raise SystemExit(3)\n", "SystemExit: 3"),
    ],
)
def test_bad_payloads_fail(
    tmp_path: Path, config: ExecutionConfig, payload: str, error: str
) -> None:
    assert reason(run(tmp_path, config, payload)).split("\n")[0] == error


def test_summary_too_large(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = "def entrypoint(argv):\n    return 'x' * 10**7\n"
    assert reason(run(tmp_path, config, payload)) == (
        "function summary exceeds execution.max_summary_bytes (200)"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "import grpc",
        "import teaclave.executor",
        "from cryptography import x509",
        "import importlib; importlib.import_module('google.protobuf')",
    ],
)
def test_modules_beyond_the_allow_list_are_refused(
    tmp_path: Path, config: ExecutionConfig, statement: str
) -> None:
    payload = f"def entrypoint(argv):\n    {statement}\n"
    line = reason(run(tmp_path, config, payload)).split("\n")[0]
    assert line.startswith("ImportError: module '")
    assert line.endswith("' is not allowed on this platform")


def test_stdlib_and_numpy_are_available(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = """
    import json, csv, io
    import numpy as np

    def entrypoint(argv):
        rows = list(csv.reader(io.StringIO("1,2\\n3,4\\n")))
        matrix = np.array(rows, dtype=float)
        return json.dumps(round(float(np.linalg.det(matrix)), 6))
    """
    assert summary(run(tmp_path, config, payload)) == b"-2.0"


def test_modules_with_native_libraries_load_inside_the_sandbox(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    """The view holds the libraries the standard library loads: lzma, bz2, sqlite3, hashlib."""
    payload = """
    def entrypoint(argv):
        import bz2, hashlib, lzma, sqlite3
        data = b"teaclave" * 8
        assert lzma.decompress(lzma.compress(data)) == bz2.decompress(bz2.compress(data)) == data
        with sqlite3.connect(":memory:") as db:
            (value,) = db.execute("select 6 * 7").fetchone()
        return f"{value} {hashlib.sha256(data).hexdigest()[:8]}"
    """
    digest = hashlib.sha256(b"teaclave" * 8).hexdigest()[:8]
    assert summary(run(tmp_path, config, payload)) == f"42 {digest}".encode()


def test_large_arguments_reach_the_function(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = "def entrypoint(argv):\n    return len(argv[1])\n"
    arguments = json.dumps({"big": "x" * 100_000})
    assert summary(run_task(python_task(tmp_path, payload, arguments), config)) == b"100000"


def test_a_task_too_large_for_the_channel_is_refused(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    payload = "def entrypoint(argv):\n    return len(argv[1])\n"
    arguments = json.dumps({"big": "x" * (64 << 20)})
    assert reason(run_task(python_task(tmp_path, payload, arguments), config)) == (
        "the task's payload and arguments exceed 64 MiB"
    )


def test_namedtuple_users_are_available(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = "import statistics\ndef entrypoint(argv):\n    return statistics.mean([1, 2])\n"
    assert summary(run(tmp_path, config, payload)) == b"1.5"


def test_the_sandbox_blocks_processes_files_and_network(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    payload = f"""
    import os, socket

    def attempt(action):
        try:
            action()
        except BaseException as exc:
            return type(exc).__name__
        return "allowed"

    def entrypoint(argv):
        return ",".join([
            attempt(lambda: os.system("true")),
            attempt(lambda: open("{tmp_path}/leak", "w")),
            attempt(lambda: socket.create_connection(("127.0.0.1", 9))),
        ])
    """
    outcome = summary(run(tmp_path, config, payload)).decode().split(",")
    assert "allowed" not in outcome, outcome
    assert not (tmp_path / "leak").exists()


def test_cpu_limit(tmp_path: Path, config: ExecutionConfig) -> None:
    limited = replace(config, cpu_secs=1.0)
    assert reason(run(tmp_path, limited, "def entrypoint(argv):\n    while True: pass\n")) == (
        "CPU time limit (1 s) exceeded"
    )


def test_wall_time_limit(tmp_path: Path, config: ExecutionConfig) -> None:
    limited = replace(config, wall_secs=1.0)
    payload = "import time\ndef entrypoint(argv):\n    time.sleep(30)\n"
    assert reason(run(tmp_path, limited, payload)) == "wall time limit (1 s) exceeded"


def test_memory_limit(tmp_path: Path, config: ExecutionConfig) -> None:
    limited = replace(config, memory_mb=64)
    payload = "def entrypoint(argv):\n    return len(bytearray(1 << 30))\n"
    line = reason(run(tmp_path, limited, payload)).split("\n")[0]
    assert line == "memory limit (64 MiB) exceeded: MemoryError"


def test_a_function_that_garbles_the_channel_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = """
    import os

    def entrypoint(argv):
        os.write(3, b"\\xff" * 8)  # the channel
        return "sent"
    """
    assert reason(run(tmp_path, config, payload)) == (
        "the function broke the channel protocol: frame header too large (4294967295 bytes)"
    )


def test_killing_the_task_process_kills_its_sandbox(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    staged = python_task(tmp_path, "def entrypoint(argv):\n    while True: pass\n")
    with started_task(worker.encode_envelope(config, staged)) as process:
        sandboxed = wait_for_sandbox(process)
        process.kill()  # only the task process: the sandbox must follow
        assert process.wait().returncode == -signal.SIGKILL
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in sandboxed),
        "the sandbox to die with its task process",
    )


def test_the_sandbox_never_holds_the_file_keys(tmp_path: Path, config: ExecutionConfig) -> None:
    """The task process forks the sandbox before it reads the task and its keys."""
    staged = python_task(tmp_path, "import time\ndef entrypoint(argv):\n    time.sleep(30)\n")
    assert_sandbox_never_holds_the_key(staged, config, tmp_path / "data.enc")


# --- the task's log (save_log) -------------------------------------------------------

LOGS = """
import logging, sys

def entrypoint(argv):
    print("printed", 1)
    logging.info("an %s record", "info")
    logging.debug("below INFO: left out")
    logging.getLogger("mine").warning("warned")
    sys.stderr.write("to stderr\\n")
    print("no newline at the end", end="")
    return "|".join(argv)
"""


def logged(tmp_path: Path, config: ExecutionConfig, payload: str, arguments: str) -> TaskResult:
    result = run_task(python_task(tmp_path, payload, arguments), config)
    assert result.WhichOneof("result") == "Ok", result
    return result


def test_save_log_returns_prints_and_log_records(tmp_path: Path, config: ExecutionConfig) -> None:
    result = logged(tmp_path, config, LOGS, '{"save_log": "true"}')
    assert list(result.Ok.log) == [
        "printed 1",
        "[INFO root] an info record",
        "[WARNING mine] warned",
        "to stderr",
        "no newline at the end",
    ]
    assert result.Ok.return_value == b"save_log|true"  # the function gets the argument too


@pytest.mark.parametrize("arguments", ["{}", '{"save_log": true}', '{"save_log": "false"}'])
def test_without_save_log_nothing_is_captured(
    tmp_path: Path, config: ExecutionConfig, arguments: str
) -> None:
    assert list(logged(tmp_path, config, LOGS, arguments).Ok.log) == []


@pytest.mark.parametrize(
    ("limits", "kept", "marker"),
    [
        ({"max_log_lines": 3}, 3, "9997 more entries not kept (at most 3 entries, 65536 bytes)"),
        ({"max_log_bytes": 8}, 8, "9992 more entries not kept (at most 1000 entries, 8 bytes)"),
    ],
)
def test_the_log_is_bounded_with_a_marker(
    tmp_path: Path, config: ExecutionConfig, limits: dict[str, int], kept: int, marker: str
) -> None:
    payload = "def entrypoint(argv):\n    for i in range(10000):\n        print(i)\n"
    result = logged(tmp_path, replace(config, **limits), payload, '{"save_log": "true"}')
    assert list(result.Ok.log) == [str(i) for i in range(kept)] + [
        f"[teaclave] log truncated: {marker}"
    ]


def test_a_failed_task_has_no_log(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = "def entrypoint(argv):\n    print('secret')\n    return 1 / 0\n"
    result = run_task(python_task(tmp_path, payload, '{"save_log": "true"}'), config)
    assert reason(result).startswith("ZeroDivisionError")
    assert "secret" not in reason(result)


def test_log_frames_from_a_task_that_did_not_ask_break_the_protocol(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    payload = """
    import os, struct

    def entrypoint(argv):
        header = b'{"op":"log"}'
        os.write(3, struct.pack(">II", len(header), 6) + header + b"secret")  # the channel
        return "sent"
    """
    assert reason(run(tmp_path, config, payload)) == (
        "the function broke the channel protocol: 'log' frame, but the task did not ask for its log"
    )


# --- the MesaPy profile ----------------------------------------------------------------

MESAPY = """
import _numpypy as np
import marshal

def entrypoint(argv):
    with teaclave_open("data", "rb") as rdr:
        header = rdr.readline().strip().split(',')
        rows = [line.strip().split(',') for line in rdr.readlines()]
    table = np.multiarray.array(rows, dtype='float64')
    weights = np.multiarray.zeros((2, 1)) + 0.5
    scale = table.max(0) + np.umath.log(np.umath.exp(table.min(0) * 0))
    saved = marshal.dumps({"w": weights, "scale": scale, "b": table.sum() / 2, "t": table.T})
    with teaclave_open("result", "wb") as wtr:
        wtr.write(saved)
    back = marshal.loads(saved)
    restored = np.multiarray.frombuffer(back["scale"])
    return "%s %s %s %s" % (header, table, restored, np.multiarray.frombuffer(back["b"]))
"""


def test_the_mesapy_profile(tmp_path: Path, config: ExecutionConfig) -> None:
    result = run_task(python_task(tmp_path, MESAPY, executor="mesapy", output=True), config)
    assert summary(result) == b"['x', 'y'] [1.0 0.0 2.0 1.0 3.0 1.0] [3.0 1.0] [4.0]"
    saved = marshal.loads(decrypt_file(tmp_path / "result.enc", result.Ok.tags_map["result"]))
    assert saved == {  # arrays and numpy scalars as their raw buffers
        "w": np.full((2, 1), 0.5).tobytes(),
        "scale": np.array([3.0, 1.0]).tobytes(),
        "b": np.float64(4.0).tobytes(),
        "t": np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]]).tobytes(),  # C order, as shaped
    }


def test_mesapy_files_give_back_the_bytes_they_read(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    payload = """
    def entrypoint(argv):
        data = teaclave_open("data", "rb").read()
        with teaclave_open("result", "wb") as out:
            out.write(data + "\\xe9")
        return data[:2] + "\\xe9"
    """
    staged = python_task(tmp_path, payload, executor="mesapy", output=True)
    staged.inputs[0].cmac = encrypt_file(b"\xff\x00\xe9 caf\xc3\xa9", tmp_path / "odd.enc")
    staged.inputs[0].url = f"file://{tmp_path}/odd.enc"
    result = run_task(staged, config)
    assert summary(result) == b"\xff\x00\xc3\xa9"  # a str of Python 3 is UTF-8 written
    written = decrypt_file(tmp_path / "result.enc", result.Ok.tags_map["result"])
    assert written == b"\xff\x00\xe9 caf\xc3\xa9\xc3\xa9"


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("import _numpypy", "ImportError: module '_numpypy' is not allowed on this platform"),
        (  # Python's marshal takes contiguous arrays only
            "import marshal, numpy; marshal.dumps(numpy.zeros((2, 2)).T)",
            "ValueError: unmarshallable object",
        ),
    ],
)
def test_python_tasks_do_not_get_the_profile(
    tmp_path: Path, config: ExecutionConfig, statement: str, error: str
) -> None:
    payload = f"def entrypoint(argv):\n    {statement}\n"
    assert reason(run(tmp_path, config, payload)).split("\n")[0] == error


def test_without_numpy_mesapy_tasks_get_no_numpypy(tmp_path: Path, config: ExecutionConfig) -> None:
    payload = "import marshal\ndef entrypoint(argv):\n    import _numpypy\n"
    staged = python_task(tmp_path, payload, executor="mesapy")
    result = run_task(staged, replace(config, python_modules=()))
    assert reason(result).split("\n")[0] == (
        "ImportError: module '_numpypy' is not allowed on this platform"
    )


@pytest.mark.parametrize(
    ("payload", "construct"),
    [
        ('def entrypoint(argv):\n    print "x"\n', "the print statement"),
        ("try:\n    pass\nexcept ValueError, e:\n    pass\n", "'except E, name:'"),
        ("x = 0777\n", "an octal literal without 0o"),
        ("x = 10L\n", "a long integer literal"),
        ("x = `1`\n", "backquotes"),
        ("x = 1 <> 2\n", "the <> operator"),
        ('raise ValueError, "x"\n', "'raise E, value'"),
        ('x = ur"x"\n', "a ur'' string"),
        ("def f((a, b)):\n    pass\n", "tuple parameters"),
    ],
)
def test_python2_syntax_is_refused_by_name(payload: str, construct: str) -> None:
    with pytest.raises(TeaclaveError) as refused:
        check(payload.encode())
    assert refused.value.status is Status.INVALID_ARGUMENT
    assert refused.value.message.startswith(
        f"invalid function payload: Python 2 syntax is not supported ({construct}): "
    )


@pytest.mark.parametrize("payload", ["def f(:\n", "x = (1,\n", 'x = "`" +\n', "x = 1abc\n"])
def test_other_syntax_errors_name_no_python2(payload: str) -> None:
    with pytest.raises(TeaclaveError) as refused:
        check(payload.encode())
    assert "Python 2" not in refused.value.message

"""run_staged_task end to end on real files: fetch, stage, verify, run, convert, upload."""

import io
import logging
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
from executor_helpers import (
    FIXTURE_KEY,
    IV,
    KEY,
    PSI,
    PSI_CMACS,
    Uploads,
    aes,
    decrypt_file,
    protected,
    psi_task,
    read_protected,
    run_task,
)
from teaclave_fixtures import FIXTURES

from teaclave.config import ExecutionConfig
from teaclave.crypto import aesgcm
from teaclave.crypto.protected_file import NODE_SIZE, encrypt_stream
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedOutput, StagedTask

JOIN = FIXTURES / "functions" / "ordered_set_join"
TRAIN = FIXTURES / "functions" / "gbdt_training" / "train.txt"
JOIN_CMACS = {
    "join0.csv.enc": bytes.fromhex("3f91d2744763445d265ea469debb74f0"),
    "join1.csv.enc": bytes.fromhex("d1e5a520489c93d0254c8c22cdefab89"),
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def config(tmp_path: Path, work: Path) -> ExecutionConfig:
    return ExecutionConfig(file_roots=(str(tmp_path),), work_dir=str(work))


def ok(result: TaskResult) -> TaskResult:
    assert result.WhichOneof("result") == "Ok", result
    return result


def reason(result: TaskResult) -> str:
    assert result.WhichOneof("result") == "Err", result
    return result.Err.reason


def assert_no_outputs(tmp_path: Path) -> None:
    assert not (tmp_path / "out1.enc").exists()
    assert not (tmp_path / "out2.enc").exists()


def assert_scratch_removed(work: Path) -> None:
    assert list(work.iterdir()) == []


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def serve_fixture(source: Path, root: Path) -> str:
    """Copy a fixture below ``root`` under its own name (bound into teaclave-file-128 files)."""
    shutil.copy(source, root / source.name)
    return f"file://{root}/{source.name}"


def protected_psi_task(root: Path) -> StagedTask:
    """The PSI task over the teaclave-file-128 fixtures, with teaclave-file-128 outputs."""
    staged = psi_task(root)
    for staged_input, name in zip(staged.inputs, PSI_CMACS, strict=True):
        staged_input.url = serve_fixture(PSI / name, root)
        staged_input.cmac = PSI_CMACS[name]
        staged_input.crypto_info.CopyFrom(protected(FIXTURE_KEY))
    for output in staged.outputs:
        output.crypto_info.CopyFrom(protected())
    return staged


@pytest.mark.parametrize("key", [KEY, bytes(range(32))], ids=["aes-gcm-128", "aes-gcm-256"])
def test_aes_gcm_inputs_and_outputs(
    tmp_path: Path, work: Path, config: ExecutionConfig, key: bytes
) -> None:
    result = ok(run_task(psi_task(tmp_path, key), config))
    assert result.Ok.return_value == b"3 common items"
    tags = result.Ok.tags_map
    assert set(tags) == {"output_result1", "output_result2"}
    assert decrypt_file(tmp_path / "out1.enc", tags["output_result1"]) == b"0101010"
    assert decrypt_file(tmp_path / "out2.enc", tags["output_result2"]) == b"01101"
    assert_scratch_removed(work)
    assert work.stat().st_mode & 0o777 == 0o700


def test_teaclave_file_inputs_and_outputs(tmp_path: Path, config: ExecutionConfig) -> None:
    result = ok(run_task(protected_psi_task(tmp_path), config))
    assert result.Ok.return_value == b"3 common items"
    tags = result.Ok.tags_map
    assert read_protected(tmp_path / "out1.enc", tags["output_result1"]) == b"0101010"
    assert read_protected(tmp_path / "out2.enc", tags["output_result2"]) == b"01101"


def test_join_over_teaclave_file_fixtures(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = StagedTask(
        function_name="builtin-ordered-set-join",
        executor_type="builtin",
        executor="builtin",
        function_arguments=(
            '{"left_column": 0, "right_column": 0, "ascending": true, "drop": true}'
        ),
        inputs=[
            StagedInput(
                name=f"input_data{number}",
                url=serve_fixture(JOIN / name, tmp_path),
                cmac=cmac,
                crypto_info=protected(FIXTURE_KEY),
            )
            for number, (name, cmac) in enumerate(JOIN_CMACS.items(), start=1)
        ],
        outputs=[
            StagedOutput(
                name="output_result", url=f"file://{tmp_path}/train.enc", crypto_info=protected()
            )
        ],
    )
    result = ok(run_task(staged, config))
    assert result.Ok.return_value == b"120 records"
    output = read_protected(tmp_path / "train.enc", result.Ok.tags_map["output_result"])
    assert output.strip() == TRAIN.read_bytes().strip()


def test_raw_input(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    (tmp_path / "psi1.txt").write_bytes(
        b"6b51d431df5d7f141cbececcf79edf3dd861c3b4069f0b11661a3eefacbba918"
    )
    staged.inputs[1].CopyFrom(
        StagedInput(
            name="input_data2",
            url=f"file://{tmp_path}/psi1.txt",
            cmac=b"ignored",
            crypto_info=FileCryptoInfo(schema="raw"),
        )
    )
    result = ok(run_task(staged, config))
    assert result.Ok.return_value == b"1 common items"
    assert decrypt_file(tmp_path / "out2.enc", result.Ok.tags_map["output_result2"]) == b"1"


def test_data_url_input_and_aes_gcm_256_output(tmp_path: Path, config: ExecutionConfig) -> None:
    key = bytes(range(32))
    staged = StagedTask(
        function_name="builtin-ordered-set-intersect",
        executor_type="builtin",
        executor="builtin",
        function_arguments='{"order":"desending"}',
        inputs=[
            StagedInput(name="input_data1", url="data:,02%0A01", crypto_info={"schema": "raw"}),
            StagedInput(name="input_data2", url="data:,01", crypto_info={"schema": "raw"}),
        ],
        outputs=psi_task(tmp_path).outputs,
    )
    staged.outputs[0].crypto_info.CopyFrom(aes(key))
    tags = ok(run_task(staged, config)).Ok.tags_map
    assert decrypt_file(tmp_path / "out1.enc", tags["output_result1"], key) == b"01"
    assert decrypt_file(tmp_path / "out2.enc", tags["output_result2"]) == b"1"


def test_aes_gcm_wrong_cmac_fails(tmp_path: Path, work: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.inputs[1].cmac = bytes(16)
    assert reason(run_task(staged, config)) == "input 'input_data2': cmac mismatch"
    assert_no_outputs(tmp_path)
    assert_scratch_removed(work)


def test_teaclave_file_wrong_cmac_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = protected_psi_task(tmp_path)
    staged.inputs[1].cmac = PSI_CMACS["psi0.txt.enc"]
    assert reason(run_task(staged, config)) == "input 'input_data2': cmac mismatch"
    assert_no_outputs(tmp_path)


@pytest.mark.parametrize(
    ("index", "offset", "message"),
    [
        (0, 10, "input 'input_data1': aes-gcm authentication failed"),
        (1, -1, "input 'input_data2': cmac mismatch"),  # the tag itself
    ],
)
def test_corrupted_aes_gcm_input_fails(
    tmp_path: Path, work: Path, config: ExecutionConfig, index: int, offset: int, message: str
) -> None:
    staged = psi_task(tmp_path)
    flip(tmp_path / f"psi{index}.enc", offset)
    assert reason(run_task(staged, config)).startswith(message)
    assert_no_outputs(tmp_path)
    assert_scratch_removed(work)


@pytest.mark.parametrize("offset", [100, 85], ids=["content", "gmac"])
def test_corrupted_teaclave_file_input_fails(
    tmp_path: Path, work: Path, config: ExecutionConfig, offset: int
) -> None:
    staged = protected_psi_task(tmp_path)
    flip(tmp_path / "psi0.txt.enc", offset)
    assert reason(run_task(staged, config)) == (
        "input 'input_data1': teaclave-file-128 integrity check failed "
        "(node 0: wrong key or corrupted file)"
    )
    assert_no_outputs(tmp_path)
    assert_scratch_removed(work)


def test_corrupted_node_is_found_before_the_function_runs(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    # The join stops after the first match, so it would never read input 2's last node.
    rows = b"".join(b"%08d,%d\n" % (i, i) for i in range(10_000))
    with (tmp_path / "big.csv").open("xb") as sink:
        cmac = encrypt_stream(KEY, "big.csv", io.BytesIO(rows), sink)
    size = (tmp_path / "big.csv").stat().st_size
    flip(tmp_path / "big.csv", size - NODE_SIZE // 2)
    (tmp_path / "one.csv").write_bytes(b"00000000,x\n")
    staged = StagedTask(
        function_name="builtin-ordered-set-join",
        executor_type="builtin",
        executor="builtin",
        function_arguments='{"left_column":0,"right_column":0,"ascending":true,"drop":false}',
        inputs=[
            StagedInput(
                name="input_data1",
                url=f"file://{tmp_path}/one.csv",
                crypto_info=FileCryptoInfo(schema="raw"),
            ),
            StagedInput(
                name="input_data2",
                url=f"file://{tmp_path}/big.csv",
                cmac=cmac,
                crypto_info=protected(),
            ),
        ],
        outputs=[
            StagedOutput(name="output_result", url=f"file://{tmp_path}/out1.enc", crypto_info=aes())
        ],
    )
    assert reason(run_task(staged, config)).startswith(
        "input 'input_data2': teaclave-file-128 integrity check failed (node "
    )
    assert_no_outputs(tmp_path)


def test_teaclave_file_input_needs_its_own_name(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = protected_psi_task(tmp_path)
    (tmp_path / "psi0.txt.enc").rename(tmp_path / "renamed.enc")
    staged.inputs[0].url = f"file://{tmp_path}/renamed.enc"
    assert reason(run_task(staged, config)) == (
        "input 'input_data1': teaclave-file-128 name mismatch: "
        "encrypted as 'psi0.txt.enc', opened as 'renamed.enc'"
    )


def test_wrong_key_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.inputs[0].crypto_info.key = bytes(16)
    assert reason(run_task(staged, config)).startswith(
        "input 'input_data1': aes-gcm authentication failed"
    )


def test_teaclave_file_wrong_key_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = protected_psi_task(tmp_path)
    staged.inputs[1].crypto_info.key = KEY
    assert reason(run_task(staged, config)) == (
        "input 'input_data2': teaclave-file-128 integrity check failed "
        "(node 0: wrong key or corrupted file)"
    )


def test_echo_summary(work: Path, config: ExecutionConfig) -> None:
    staged = StagedTask(
        function_name="builtin-echo",
        executor_type="builtin",
        executor="builtin",
        function_arguments='{"message":"Hello From Teaclave!"}',
    )
    assert ok(run_task(staged, config)).Ok.return_value == b"Hello From Teaclave!"
    too_long = ExecutionConfig(max_summary_bytes=5, work_dir=str(work))
    assert "max_summary_bytes" in reason(run_task(staged, too_long))
    assert_scratch_removed(work)


@pytest.mark.parametrize(
    ("arguments", "log"),
    [
        (
            '{"message":"Hello, Teaclave Tests!","save_log":"true"}',
            ["[INFO teaclave.functions.echo] Hello, Teaclave Tests!"],
        ),
        ('{"message":"Hello, Teaclave Tests!"}', []),
    ],
)
def test_a_builtins_log_records_go_to_its_task_log_only(
    config: ExecutionConfig, caplog: pytest.LogCaptureFixture, arguments: str, log: list[str]
) -> None:
    staged = StagedTask(
        function_name="builtin-echo",
        executor_type="builtin",
        executor="builtin",
        function_arguments=arguments,
    )
    with caplog.at_level(logging.DEBUG):
        result = ok(run_task(staged, config))
    assert list(result.Ok.log) == log
    assert "Hello" not in caplog.text  # never in the platform's own logs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"executor": "mesapy"}, "function not available: (builtin, mesapy)"),
        ({"executor_type": "python"}, "function not available: (python, builtin)"),
        ({"function_name": "builtin-nope"}, "Function not found."),
        ({"function_arguments": "{}"}, "Cannot deserialize arguments: missing key 'order'"),
        ({"function_arguments": '{"order":"up"}'}, "Invalid order"),
    ],
)
def test_function_errors(
    tmp_path: Path, work: Path, config: ExecutionConfig, change: dict[str, str], message: str
) -> None:
    staged = psi_task(tmp_path)
    for field, value in change.items():
        setattr(staged, field, value)
    assert reason(run_task(staged, config)) == message
    assert_no_outputs(tmp_path)
    if work.exists():
        assert_scratch_removed(work)


def test_output_schema_errors(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.outputs[1].crypto_info.CopyFrom(FileCryptoInfo(schema="raw"))
    assert reason(run_task(staged, config)) == (
        "output 'output_result2': OutputFile: unsupported type"
    )


@pytest.mark.parametrize(
    ("crypto", "url", "message"),
    [
        (aes(KEY, IV[:8]), None, "aes-gcm-128 iv must be 12 bytes, got 8"),
        (protected(), "file://{root}/", "URL path must have a file name"),
        (aes(), "ftp://127.0.0.1/psi0", "unsupported URL scheme 'ftp'"),
        (aes(), "file:///etc/passwd", "/etc/passwd is outside execution.file_roots"),
    ],
)
def test_input_errors(
    tmp_path: Path, config: ExecutionConfig, crypto: FileCryptoInfo, url: str | None, message: str
) -> None:
    staged = psi_task(tmp_path)
    staged.inputs[0].crypto_info.CopyFrom(crypto)
    if url is not None:
        staged.inputs[0].url = url.format(root=tmp_path)
    failure = reason(run_task(staged, config))
    assert failure.startswith("input 'input_data1': ")
    assert message in failure
    assert_no_outputs(tmp_path)


def test_output_not_created_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.function_name = "builtin-echo"
    staged.function_arguments = '{"message":"hi"}'
    assert reason(run_task(staged, config)) == (
        "output 'output_result1': the function did not create it"
    )
    assert_no_outputs(tmp_path)


@pytest.mark.parametrize("schema", ["aes", "protected"])
def test_failed_upload_of_the_second_output_removes_the_first(
    tmp_path: Path, work: Path, config: ExecutionConfig, schema: str
) -> None:
    staged = psi_task(tmp_path)
    if schema == "protected":
        for output in staged.outputs:
            output.crypto_info.CopyFrom(protected())
    (tmp_path / "out2.enc").write_bytes(b"earlier")
    assert reason(run_task(staged, config)) == (
        f"output 'output_result2': {tmp_path}/out2.enc already exists"
    )
    assert (tmp_path / "out2.enc").read_bytes() == b"earlier"
    assert not (tmp_path / "out1.enc").exists()
    assert_scratch_removed(work)


def test_an_output_is_uploaded_only_once_its_upload_was_recorded(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    seen: list[tuple[str, bool, bool]] = []

    def start_upload(name: str) -> None:  # what exists when each upload is asked for
        seen.append((name, (tmp_path / "out1.enc").exists(), (tmp_path / "out2.enc").exists()))

    ok(run_task(psi_task(tmp_path), config, start_upload=start_upload))
    assert seen == [("output_result1", False, False), ("output_result2", True, False)]


@pytest.mark.parametrize("schema", ["aes", "protected"])
@pytest.mark.parametrize("refused", ["output_result1", "output_result2"])
def test_a_refused_upload_sends_nothing_of_that_output(
    tmp_path: Path, work: Path, config: ExecutionConfig, schema: str, refused: str
) -> None:
    staged = psi_task(tmp_path)
    if schema == "protected":
        for output in staged.outputs:
            output.crypto_info.CopyFrom(protected())
    uploads = Uploads({refused: "cannot start the upload: the task was canceled"})
    assert reason(run_task(staged, config, start_upload=uploads)) == (
        f"output {refused!r}: cannot start the upload: the task was canceled"
    )
    assert uploads.asked == ["output_result1", "output_result2"][: int(refused[-1])]
    assert_no_outputs(tmp_path)  # an output uploaded before is removed again
    assert_scratch_removed(work)


def test_work_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    config = ExecutionConfig(file_roots=(str(tmp_path),), work_dir=str(tmp_path / "file" / "w"))
    assert reason(run_task(psi_task(tmp_path), config)) == (
        "cannot create a scratch directory: Not a directory"
    )


def test_memory_stays_bounded_by_the_chunk_size(tmp_path: Path, config: ExecutionConfig) -> None:
    """64 MiB inputs go through the task with far less memory than that."""
    size = 64 << 20
    staged = psi_task(tmp_path)
    for index, (staged_input, step) in enumerate(zip(staged.inputs, (2, 3), strict=True)):
        path = tmp_path / f"big{index}.enc"
        with path.open("xb") as sink:
            staged_input.cmac = aesgcm.encrypt(KEY, IV, _HexLines(size, step), sink)
        staged_input.url = f"file://{path}"
    tracemalloc.start()
    try:
        result = run_task(staged, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines = size // 65
    assert ok(result).Ok.return_value == b"%d common items" % len(range(0, lines * 2, 6))
    assert os.path.getsize(tmp_path / "out1.enc") == lines + 16
    assert peak < 16 << 20, peak


class _HexLines:
    """``size // 65`` ascending lines of 64 hex digits: multiples of step (generated)."""

    def __init__(self, size: int, step: int) -> None:
        self._next = 0
        self._lines = size // 65
        self._step = step

    def read(self, size: int = -1, /) -> bytes:
        count = min(self._lines - self._next, max(1, size // 65))
        first, self._next = self._next, self._next + count
        return "".join(f"{i * self._step:064x}\n" for i in range(first, first + count)).encode()

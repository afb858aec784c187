"""run_staged_task end to end on real files: verify, decrypt, run, encrypt, upload."""

from pathlib import Path

import pytest
from executor_helpers import IV, KEY, aes, decrypt_file, psi_task

from teaclave.config import ExecutionConfig
from teaclave.executor.task import run_staged_task
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedTask


@pytest.fixture
def config(tmp_path: Path) -> ExecutionConfig:
    return ExecutionConfig(file_roots=(str(tmp_path),))


def reason(result: TaskResult) -> str:
    assert result.WhichOneof("result") == "Err", result
    return result.Err.reason


def test_psi_task(tmp_path: Path, config: ExecutionConfig) -> None:
    result = run_staged_task(psi_task(tmp_path), config)
    assert result.WhichOneof("result") == "Ok", result
    assert result.Ok.return_value == b"3 common items"
    tags = result.Ok.tags_map
    assert set(tags) == {"output_result1", "output_result2"}
    assert decrypt_file(tmp_path / "out1.enc", tags["output_result1"]) == b"0101010"
    assert decrypt_file(tmp_path / "out2.enc", tags["output_result2"]) == b"01101"


def assert_no_outputs(tmp_path: Path) -> None:
    assert not (tmp_path / "out1.enc").exists()
    assert not (tmp_path / "out2.enc").exists()


def test_wrong_cmac_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.inputs[1].cmac = bytes(16)
    assert reason(run_staged_task(staged, config)) == "input 'input_data2': cmac mismatch"
    assert_no_outputs(tmp_path)


def test_tampered_input_fails_before_anything_is_written(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    staged = psi_task(tmp_path)
    data = bytearray((tmp_path / "psi0.enc").read_bytes())
    data[10] ^= 1
    (tmp_path / "psi0.enc").write_bytes(bytes(data))
    assert "input 'input_data1': aes-gcm authentication failed" in reason(
        run_staged_task(staged, config)
    )
    assert_no_outputs(tmp_path)


def test_wrong_key_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.inputs[0].crypto_info.key = bytes(16)
    assert "authentication failed" in reason(run_staged_task(staged, config))


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
    result = run_staged_task(staged, config)
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
    result = run_staged_task(staged, config)
    tags = result.Ok.tags_map
    assert decrypt_file(tmp_path / "out1.enc", tags["output_result1"], key) == b"01"
    assert decrypt_file(tmp_path / "out2.enc", tags["output_result2"]) == b"1"


def test_echo_summary(config: ExecutionConfig) -> None:
    staged = StagedTask(
        function_name="builtin-echo",
        executor_type="builtin",
        executor="builtin",
        function_arguments='{"message":"Hello From Teaclave!"}',
    )
    result = run_staged_task(staged, config)
    assert result.Ok.return_value == b"Hello From Teaclave!"
    too_long = ExecutionConfig(max_summary_bytes=5)
    assert "max_summary_bytes" in reason(run_staged_task(staged, too_long))


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
    tmp_path: Path, config: ExecutionConfig, change: dict[str, str], message: str
) -> None:
    staged = psi_task(tmp_path)
    for field, value in change.items():
        setattr(staged, field, value)
    assert reason(run_staged_task(staged, config)) == message
    assert_no_outputs(tmp_path)


def test_output_schema_errors(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.outputs[1].crypto_info.CopyFrom(FileCryptoInfo(schema="raw"))
    assert reason(run_staged_task(staged, config)) == (
        "output 'output_result2': OutputFile: unsupported type"
    )


@pytest.mark.parametrize(
    ("crypto", "url", "message"),
    [
        (
            FileCryptoInfo(schema="teaclave-file-128", key=KEY),
            None,
            "teaclave-file-128 is not supported yet",
        ),
        (aes(KEY, IV[:8]), None, "aes-gcm-128 iv must be 12 bytes, got 8"),
        (aes(), "http://127.0.0.1:1/psi0", "unsupported URL scheme 'http'"),
        (aes(), "file:///etc/passwd", "/etc/passwd is outside execution.file_roots"),
    ],
)
def test_input_errors(
    tmp_path: Path, config: ExecutionConfig, crypto: FileCryptoInfo, url: str | None, message: str
) -> None:
    staged = psi_task(tmp_path)
    staged.inputs[0].crypto_info.CopyFrom(crypto)
    if url is not None:
        staged.inputs[0].url = url
    assert reason(run_staged_task(staged, config)) == f"input 'input_data1': {message}"
    assert_no_outputs(tmp_path)


def test_output_not_created_fails(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    staged.function_name = "builtin-echo"
    staged.function_arguments = '{"message":"hi"}'
    assert reason(run_staged_task(staged, config)) == (
        "output 'output_result1': the function did not create it"
    )
    assert_no_outputs(tmp_path)


def test_existing_output_is_not_overwritten(tmp_path: Path, config: ExecutionConfig) -> None:
    staged = psi_task(tmp_path)
    (tmp_path / "out2.enc").write_bytes(b"earlier")
    assert reason(run_staged_task(staged, config)) == (
        f"output 'output_result2': {tmp_path}/out2.enc already exists"
    )
    assert (tmp_path / "out2.enc").read_bytes() == b"earlier"
    # All outputs or none: the first one, already written, was removed again.
    assert not (tmp_path / "out1.enc").exists()

"""Wasm functions in the task sandbox: the module runs in a process without the task's keys,
under the task's limits, its memories and tables bounded."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import wasmtime
from executor_helpers import (
    aes,
    assert_sandbox_never_holds_the_key,
    decrypt_file,
    encrypt_file,
    run_task,
)
from wasm_helpers import CONFIG, ECHO, ENV_IMPORTS, wamr, wasi

from teaclave.config import ExecutionConfig
from teaclave.executor.wasm.function import MAX_TABLE_ELEMENTS, MAX_TABLES, RUNTIME_BYTES
from teaclave.proto.teaclave_common_pb2 import TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedOutput, StagedTask

FOREVER = "(loop $forever (br $forever)) (i32.const 0)"


@pytest.fixture
def config(tmp_path: Path) -> ExecutionConfig:
    return replace(
        CONFIG, file_roots=(str(tmp_path),), work_dir=str(tmp_path / "work"), wall_secs=20
    )


def wasm_task(root: Path, module: bytes, output: bool = False) -> StagedTask:
    """A wamr task over input "in" (aes-gcm) and, if ``output``, output "out" (the
    arguments name them for :data:`ECHO`)."""
    cmac = encrypt_file(b"hello, sandboxed wasm", root / "in.enc")
    return StagedTask(
        task_id="5c7d2b1e-0f3a-4e8b-9d6c-1a2b3c4d5e6f",
        function_name="wasm-test",
        executor_type="wamr",
        executor="wamr",
        function_arguments='{"a":"in","b":"out"}',
        function_payload=bytes(module),
        inputs=[StagedInput(name="in", url=f"file://{root}/in.enc", cmac=cmac, crypto_info=aes())],
        outputs=[StagedOutput(name="out", url=f"file://{root}/out.enc", crypto_info=aes())]
        if output
        else [],
    )


def reason(result: TaskResult) -> str:
    assert result.WhichOneof("result") == "Err", result
    return result.Err.reason


def test_files_move_over_the_channel(tmp_path: Path, config: ExecutionConfig) -> None:
    result = run_task(wasm_task(tmp_path, wamr(ECHO), output=True), config)
    assert result.Ok.return_value == b"21"
    plaintext = decrypt_file(tmp_path / "out.enc", result.Ok.tags_map["out"])
    assert plaintext == b"hello, sandboxed wasm"


@pytest.mark.parametrize(
    ("arguments", "log"), [('{"save_log":"true"}', ["out", "err", "end"]), ("{}", [])]
)
def test_a_wasi_commands_output_lines_reach_the_task_log(
    tmp_path: Path, config: ExecutionConfig, arguments: str, log: list[str]
) -> None:
    prints = """(call $print (i32.const 1) (i32.const 1024) (i32.const 4))
      (call $print (i32.const 2) (i32.const 1028) (i32.const 4))
      (call $print (i32.const 1) (i32.const 1032) (i32.const 3))"""
    staged = wasm_task(tmp_path, wasi(prints, '(data (i32.const 1024) "out\\nerr\\nend")'))
    staged.executor_type = staged.executor = "wasi"
    staged.function_arguments = arguments
    result = run_task(staged, config)
    assert result.Ok.return_value == b"out\nend"
    assert list(result.Ok.log) == log


def test_the_sandbox_ends_a_module_at_the_wall_time_limit(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    endless = replace(config, wall_secs=1.0, wasm_fuel_per_sec=10**15)
    assert reason(run_task(wasm_task(tmp_path, wamr(FOREVER)), endless)) == (
        "wall time limit (1 s) exceeded"
    )


def test_the_sandbox_never_holds_the_file_keys(tmp_path: Path, config: ExecutionConfig) -> None:
    endless = replace(config, wasm_fuel_per_sec=10**15)
    staged = wasm_task(tmp_path, wamr(FOREVER))
    assert_sandbox_never_holds_the_key(staged, endless, tmp_path / "in.enc")


def module(definitions: str, body: str = "(i32.const 0)") -> bytes:
    return wasmtime.wat2wasm(f"""(module {ENV_IMPORTS} (memory (export "memory") 1)
      {definitions}
      (func (export "entrypoint") (param i32 i32) (result i32) {body}))""")


def test_a_huge_table_is_refused(tmp_path: Path, config: ExecutionConfig) -> None:
    huge = module(f"(table {MAX_TABLE_ELEMENTS + 1} funcref)")
    assert reason(run_task(wasm_task(tmp_path, huge), config)) == (
        f"the function could not run: table minimum size of {MAX_TABLE_ELEMENTS + 1} elements "
        "exceeds table limits"
    )


def test_a_table_cannot_grow_past_the_limit(tmp_path: Path, config: ExecutionConfig) -> None:
    grows = module(
        "(table $t 1 funcref)",
        f"(table.grow $t (ref.null func) (i32.const {MAX_TABLE_ELEMENTS}))",
    )
    assert run_task(wasm_task(tmp_path, grows), config).Ok.return_value == b"-1"


def test_too_many_tables_are_refused(tmp_path: Path, config: ExecutionConfig) -> None:
    tables = module(" ".join("(table 1 funcref)" for _ in range(MAX_TABLES + 1)))
    assert reason(run_task(wasm_task(tmp_path, tables), config)) == (
        f"the function could not run: resource limit exceeded: table count too high at "
        f"{MAX_TABLES + 1}"
    )


def test_memory_grows_only_to_the_tasks_limit(tmp_path: Path, config: ExecutionConfig) -> None:
    bomb = """(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
      (i32.mul (memory.size) (i32.const 65536))"""
    result = run_task(wasm_task(tmp_path, wamr(bomb)), replace(config, memory_mb=16))
    assert result.Ok.return_value == str(16 << 20).encode()


def test_a_large_write_goes_over_the_channel_in_pieces(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    """One write of 128 MiB: more than the runtime may allocate beside the module's memory."""
    size = 128 << 20
    big = f"""(local $out i32)
      (drop (memory.grow (i32.const {size >> 16})))
      (local.set $out (call $create_output (i32.const 8)))
      (memory.fill (i32.const 65536) (i32.const 120) (i32.const {size}))
      (call $write_file (local.get $out) (i32.const 65536) (i32.const {size}))"""
    roomy = replace(config, memory_mb=512, max_file_bytes=size + (1 << 20))
    result = run_task(wasm_task(tmp_path, wamr(big), output=True), roomy)
    assert result.Ok.return_value == str(size).encode()
    plaintext = decrypt_file(tmp_path / "out.enc", result.Ok.tags_map["out"])
    assert plaintext == b"x" * size


def test_a_write_too_large_for_the_output_is_refused_whole(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    small = replace(config, max_file_bytes=(1 << 20) + 5)
    body = """(local $out i32)
      (drop (memory.grow (i32.const 40)))
      (local.set $out (call $create_output (i32.const 8)))
      (drop (call $write_file (local.get $out) (i32.const 0) (i32.const 5)))
      (i32.add
        (i32.mul (call $write_file (local.get $out) (i32.const 0) (i32.const 2097152))
                 (i32.const 10))
        (call $close_file (local.get $out)))"""
    result = run_task(wasm_task(tmp_path, wamr(body), output=True), small)
    assert result.Ok.return_value == b"-10"
    assert decrypt_file(tmp_path / "out.enc", result.Ok.tags_map["out"]) == b"in\0\0\0"


def test_huge_arguments_exhaust_the_runtime_not_the_module(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    staged = wasm_task(tmp_path, wamr("(i32.const 0)"))
    staged.function_arguments = json.dumps({"big": "x" * (48 << 20)})
    assert reason(run_task(staged, replace(config, memory_mb=512))) == (
        f"the Wasm runtime's memory ({RUNTIME_BYTES >> 20} MiB beside the module's) exceeded"
    )

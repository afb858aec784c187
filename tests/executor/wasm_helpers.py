"""Tiny WAT modules for the Wasm executor tests, and running them on in-memory files."""

from dataclasses import replace
from typing import Any

import pytest
import wasmtime

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor.files import FileTable
from teaclave.executor.python.payload import flatten
from teaclave.executor.tasklog import TaskLog
from teaclave.executor.wasm import WasmFunction, compile_module
from teaclave.functions.runtime import MemoryRuntime

CONFIG = replace(
    ExecutionConfig(),
    cpu_secs=1,
    wall_secs=10,
    memory_mb=64,
    max_file_bytes=1 << 20,
    max_summary_bytes=100,
    wasm_fuel_per_sec=1_000_000_000,
)
INPUT = b"hello, wasm"

ENV_IMPORTS = """
  (import "env" "teaclave_open_input" (func $open_input (param i32) (result i32)))
  (import "env" "teaclave_create_output" (func $create_output (param i32) (result i32)))
  (import "env" "teaclave_read_file" (func $read_file (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_write_file" (func $write_file (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_close_file" (func $close_file (param i32) (result i32)))
"""
# Copies input argv[1] to output argv[3] through a 4 KiB buffer; gives the bytes copied.
ECHO = """
  (local $in i32) (local $out i32) (local $n i32) (local $total i32)
  (local.set $in (call $open_input (i32.load (i32.add (local.get $argv) (i32.const 4)))))
  (local.set $out (call $create_output (i32.load (i32.add (local.get $argv) (i32.const 12)))))
  (block $eof (loop $copy
    (local.set $n (call $read_file (local.get $in) (i32.const 1024) (i32.const 4096)))
    (br_if $eof (i32.eqz (local.get $n)))
    (drop (call $write_file (local.get $out) (i32.const 1024) (local.get $n)))
    (local.set $total (i32.add (local.get $total) (local.get $n)))
    (br $copy)))
  (drop (call $close_file (local.get $in)))
  (drop (call $close_file (local.get $out)))
  (local.get $total)
"""
# Names in memory: "in" at 0, "out" at 8, "nope" at 16, not UTF-8 at 24.
DATA = r"""
  (data (i32.const 0) "in\00")
  (data (i32.const 8) "out\00")
  (data (i32.const 16) "nope\00")
  (data (i32.const 24) "\ff\00")
"""


def wamr(body: str, *, pages: int = 1, maximum: int | None = None, data: str = "") -> bytes:
    """A wamr module whose ``entrypoint(argc, argv)`` is ``body``."""
    limits = f"{pages} {maximum}" if maximum is not None else pages
    return wasmtime.wat2wasm(f"""(module {ENV_IMPORTS}
      (memory (export "memory") {limits})
      {DATA} {data}
      (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32) {body}))""")


def wasi(body: str, data: str = "") -> bytes:
    """A WASI command whose ``_start`` is ``body``; ``$print(fd, address, length)`` writes."""
    return wasmtime.wat2wasm(f"""(module
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
      (import "wasi_snapshot_preview1" "args_sizes_get"
        (func $args_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get"
        (func $environ_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_prestat_get"
        (func $fd_prestat_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open"
        (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      {ENV_IMPORTS}
      (memory (export "memory") 1)
      {DATA} {data}
      (data (i32.const 32) "oops\\n")
      (func $print (param $fd i32) (param $address i32) (param $length i32)
        (i32.store (i32.const 48) (local.get $address))
        (i32.store (i32.const 52) (local.get $length))
        (drop (call $fd_write (local.get $fd) (i32.const 48) (i32.const 1) (i32.const 56))))
      (func (export "_start") {body}))""")


def run(
    module: bytes,
    abi: str = "wamr",
    *,
    arguments: str = "{}",
    runtime: MemoryRuntime | None = None,
    log: TaskLog | None = None,
    **limits: float,
) -> bytes:
    """The summary of ``module`` on ``runtime`` (by default: input "in", output "out")."""
    runtime = runtime or MemoryRuntime({"in": INPUT}, frozenset({"out"}))
    config = replace(CONFIG, **limits)
    files = FileTable(runtime, max_file_bytes=config.max_file_bytes)
    with WasmFunction(config, compile_module(module, abi), abi) as function:
        return function.run(files, flatten(arguments), log)


def failure(module: bytes, abi: str = "wamr", **options: Any) -> str:
    """Why ``module`` fails (an ABORTED task)."""
    with pytest.raises(TeaclaveError) as failed:
        run(module, abi, **options)
    assert failed.value.status is Status.ABORTED
    return failed.value.message

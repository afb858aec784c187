"""The Wasm executor: the ABI check, the env functions, limits and WASI, on tiny WAT modules."""

from typing import Any

import pytest
import wasmtime
from wasm_helpers import CONFIG, ECHO, INPUT, failure, run, wamr, wasi

from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor.files import MAX_HANDLES, WRITE_FLAG
from teaclave.executor.tasklog import LogLimits, TaskLog
from teaclave.executor.wasm import WasmFunction, check, compile_module
from teaclave.functions.runtime import MemoryRuntime

# Writes each argument and a newline to "out", then the module's data at 65520;
# gives argc * 10 + whether argv[argc] is NULL.
ARGV = """
  (local $out i32) (local $i i32) (local $p i32) (local $n i32)
  (local.set $out (call $create_output (i32.const 8)))
  (block $done (loop $next
    (br_if $done (i32.ge_u (local.get $i) (local.get $argc)))
    (local.set $p (i32.load (i32.add (local.get $argv) (i32.shl (local.get $i) (i32.const 2)))))
    (local.set $n (i32.const 0))
    (block $end (loop $scan
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $scan)))
    (drop (call $write_file (local.get $out) (local.get $p) (local.get $n)))
    (drop (call $write_file (local.get $out) (i32.const 40) (i32.const 1)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $next)))
  (drop (call $write_file (local.get $out) (i32.const 65520) (i32.const 8)))
  (i32.add
    (i32.mul (local.get $argc) (i32.const 10))
    (i32.eqz (i32.load (i32.add (local.get $argv) (i32.shl (local.get $argc) (i32.const 2))))))
"""
ARGV_DATA = r'(data (i32.const 40) "\n") (data (i32.const 65520) "sentinel")'
FOREVER = "(loop $forever (br $forever)) (i32.const 0)"
OPEN_IN = "(call $open_input (i32.const 0))"
CREATE_OUT = "(call $create_output (i32.const 8))"
END = "(i32.mul (memory.size) (i32.const 65536))"
"""The end of memory (the wamr ABI adds pages for the arguments)."""
UNTERMINATED = f"(memory.fill (i32.sub {END} (i32.const 8)) (i32.const 120) (i32.const 8))"
"""Non-NUL bytes to the end of memory."""
NO_NUL = "name not NUL-terminated within memory and 4096 bytes"


def result(body: str, **options: Any) -> int:
    """``entrypoint``'s result for ``body``."""
    return int(run(wamr(body), **options))


# --- the wamr ABI ---------------------------------------------------------------------------


def test_echo_through_the_five_functions() -> None:
    data = bytes(range(256)) * 40
    runtime = MemoryRuntime({"data": data}, frozenset({"result"}))
    arguments = '{"output": "result", "input": "data"}'
    assert run(wamr(ECHO), arguments=arguments, runtime=runtime) == b"10240"
    assert runtime.output("result") == data


def test_arguments_are_c_strings_in_new_pages() -> None:
    runtime = MemoryRuntime({}, frozenset({"out"}))
    arguments = '{"b": "é", "a": 3, "c": {"x": [1]}}'
    assert run(wamr(ARGV, data=ARGV_DATA), arguments=arguments, runtime=runtime) == b"61"
    assert runtime.output("out") == 'a\n3\nb\né\nc\n{"x":[1]}\nsentinel'.encode()


def test_no_arguments() -> None:
    runtime = MemoryRuntime({}, frozenset({"out"}))
    assert run(wamr(ARGV, data=ARGV_DATA), runtime=runtime) == b"1"
    assert runtime.output("out") == b"sentinel"


def test_arguments_above_2_gib() -> None:
    runtime = MemoryRuntime({}, frozenset({"out"}))
    module = wamr(ARGV, pages=32768, data=ARGV_DATA)  # 2 GiB: argv's address is negative as i32
    assert run(module, arguments='{"a": "b"}', runtime=runtime, memory_mb=4096) == b"21"
    assert runtime.output("out") == b"a\nb\nsentinel"


def test_arguments_need_room_in_memory() -> None:
    arguments = '{"a": "b"}'  # "a\0b\0" and three pointers: 16 bytes
    assert failure(wamr("(i32.const 0)", pages=16), arguments=arguments, memory_mb=1) == (
        "memory limit (1 MiB) exceeded:"
        " no room for the arguments (16 bytes) in the function's memory"
    )
    assert failure(wamr("(i32.const 0)", maximum=1), arguments=arguments) == (
        "the function could not run: no room for the arguments (16 bytes) in the function's memory"
    )


def test_negative_result() -> None:
    assert run(wamr("(i32.const -7)")) == b"-7"


def test_handle_encoding() -> None:
    assert result(OPEN_IN) == 1
    assert result(f"(drop {OPEN_IN}) {OPEN_IN}") == 2
    assert result(f"(drop {OPEN_IN}) {CREATE_OUT}") == WRITE_FLAG | 2 == 0x4000_0002


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("(call $open_input (i32.const 16))", -1),  # "nope" is not an input
        ("(call $create_output (i32.const 0))", -1),  # "in" is not an output
        (f"(call $write_file {OPEN_IN} (i32.const 0) (i32.const 2))", -1),
        (f"(call $read_file {CREATE_OUT} (i32.const 0) (i32.const 2))", -1),
        ("(call $read_file (i32.const 1) (i32.const 0) (i32.const 2))", -1),  # never opened
        (f"(call $read_file {OPEN_IN} (i32.const 100) (i32.const 5))", 5),
        (f"(call $read_file {OPEN_IN} {END} (i32.const 0))", 0),  # at the end
        (f"(call $close_file {OPEN_IN})", 0),
        ("(call $close_file (i32.const 1))", -1),
        (f"(drop (call $close_file {OPEN_IN})) (call $close_file (i32.const 1))", -1),
        (f"(drop {CREATE_OUT}) (call $close_file (i32.const 1))", -1),  # a write handle is not 1
    ],
)
def test_refused_requests_return_minus_one(body: str, expected: int) -> None:
    assert result(body) == expected


def test_outputs_are_bounded() -> None:
    runtime = MemoryRuntime({}, frozenset({"out"}))
    body = f"""(local $out i32) (local.set $out {CREATE_OUT})
      (i32.add
        (i32.mul (call $write_file (local.get $out) (i32.const 0) (i32.const 3)) (i32.const 10))
        (call $write_file (local.get $out) (i32.const 0) (i32.const 2)))"""
    assert result(body, runtime=runtime, max_file_bytes=4) == 3 * 10 - 1
    assert runtime.output("out") == b"in\0"


def test_reads_are_capped_at_one_mebibyte() -> None:
    runtime = MemoryRuntime({"in": bytes(3 << 20)}, frozenset())
    body = f"(call $read_file {OPEN_IN} (i32.const 0) (i32.const {2 << 20}))"
    assert run(wamr(body, pages=64), runtime=runtime) == str(1 << 20).encode()


@pytest.mark.parametrize("opens", [MAX_HANDLES, MAX_HANDLES + 1])
def test_handles_are_limited(opens: int) -> None:
    body = f"""(local $i i32)
      (loop $open
        (drop {OPEN_IN})
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $open (i32.lt_u (local.get $i) (i32.const {opens - 1}))))
      {OPEN_IN}"""
    assert result(body) == (MAX_HANDLES if opens == MAX_HANDLES else -1)


# --- traps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "trap"),
    [
        (
            f"{UNTERMINATED} (call $open_input (i32.sub {END} (i32.const 8)))",
            f"teaclave_open_input: {NO_NUL}",
        ),
        ("(call $open_input (i32.const -1))", f"teaclave_open_input: {NO_NUL}"),
        (
            "(memory.fill (i32.const 100) (i32.const 97) (i32.const 5000))"
            " (call $open_input (i32.const 100))",
            f"teaclave_open_input: {NO_NUL}",
        ),
        ("(call $open_input (i32.const 24))", "teaclave_open_input: name not UTF-8"),
        (
            f"{UNTERMINATED} (call $create_output (i32.sub {END} (i32.const 8)))",
            f"teaclave_create_output: {NO_NUL}",
        ),
        ("(call $create_output (i32.const 24))", "teaclave_create_output: name not UTF-8"),
        (
            f"(call $read_file (i32.const 1) (i32.sub {END} (i32.const 6)) (i32.const 7))",
            "teaclave_read_file: buffer out of bounds",
        ),
        (
            "(call $read_file (i32.const 1) (i32.const -1) (i32.const 1))",
            "teaclave_read_file: buffer out of bounds",
        ),
        (
            "(call $read_file (i32.const 1) (i32.const 0) (i32.const -1))",
            "teaclave_read_file: negative size",
        ),
        (
            f"(call $write_file (i32.const 1) (i32.sub {END} (i32.const 6)) (i32.const 7))",
            "teaclave_write_file: buffer out of bounds",
        ),
        (
            "(call $write_file (i32.const 1) (i32.const -4) (i32.const 8))",
            "teaclave_write_file: buffer out of bounds",
        ),
        (
            "(call $write_file (i32.const 1) (i32.const 0) (i32.const -1))",
            "teaclave_write_file: negative size",
        ),
        ("unreachable", "wasm `unreachable` instruction executed"),
        ("(i32.div_s (i32.const 1) (i32.const 0))", "integer divide by zero"),
        (f"(i32.load {END})", "out of bounds memory access"),
    ],
)
def test_traps(body: str, trap: str) -> None:
    assert failure(wamr(body)) == f"the function trapped: {trap}"


def test_cpu_limit_then_a_new_function_runs() -> None:
    assert failure(wamr(FOREVER), cpu_secs=0.001) == "CPU limit (0.001 s, 1000000 fuel) exceeded"
    assert result(OPEN_IN) == 1


def test_memory_limit() -> None:
    bomb = """(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
      unreachable"""
    assert failure(wamr(bomb), memory_mb=2) == (
        "memory limit (2 MiB) exceeded: wasm `unreachable` instruction executed"
    )
    assert failure(wamr("(i32.const 0)", pages=100), memory_mb=2) == (
        "memory limit (2 MiB) exceeded: memory minimum size of 100 pages exceeds memory limits"
    )


def test_a_failed_function_leaves_nothing_behind() -> None:
    body = f"(drop {OPEN_IN}) unreachable"
    assert failure(wamr(body)) == "the function trapped: wasm `unreachable` instruction executed"
    assert result(OPEN_IN) == 1


# --- the ABI check --------------------------------------------------------------------------

ENTRYPOINT = '(func (export "entrypoint") (param i32 i32) (result i32) (i32.const 0))'
MEMORY = '(memory (export "memory") 1)'
START = '(func (export "_start"))'


@pytest.mark.parametrize(
    ("abi", "module", "problem"),
    [
        ("wamr", b"not wasm", "not a valid WebAssembly module (no \\0asm header)"),
        ("wamr", b"", "not a valid WebAssembly module (no \\0asm header)"),
        (
            "wamr",
            b"\0asm\x02\0\0\0",
            "not a valid WebAssembly module (unknown binary version: 0x2 (at offset 0x4))",
        ),
        (
            "wamr",
            "(module (func (result i32) (i64.const 0)))",
            "not a valid WebAssembly module (Invalid input WebAssembly code at offset 26:"
            " type mismatch: expected i32, found i64)",
        ),
        ("wamr", f"(module {MEMORY})", "no exported function 'entrypoint' (i32, i32) -> i32"),
        (
            "wamr",
            f"(module {MEMORY}"
            ' (func (export "entrypoint") (param i32) (result i32) (i32.const 0)))',
            "no exported function 'entrypoint' (i32, i32) -> i32",
        ),
        ("wamr", f"(module {ENTRYPOINT})", "no exported memory 'memory'"),
        (
            "wamr",
            f"(module {MEMORY} (memory 1) {ENTRYPOINT})",
            "not a valid WebAssembly module (multiple memories (at offset 0x17))",
        ),
        (
            "wamr",
            f"(module (type $a (array i8)) {MEMORY} {ENTRYPOINT})",
            "not a valid WebAssembly module (array indexed types not supported without the gc"
            " feature (at offset 0xb))",
        ),
        (
            "wamr",
            f'(module (memory (export "memory") 1 1 shared) {ENTRYPOINT})',
            "not a valid WebAssembly module (threads must be enabled for shared memories"
            " (at offset 0x18))",
        ),
        (
            "wamr",
            f"(module (tag $e) {MEMORY} {ENTRYPOINT})",
            "not a valid WebAssembly module (exceptions proposal not enabled (at offset 0x1f))",
        ),
        (
            "wamr",
            f'(module (import "env" "foo" (func)) {MEMORY} {ENTRYPOINT})',
            "unknown import env.foo",
        ),
        (
            "wamr",
            f'(module (import "env" "memory" (memory 1)) {ENTRYPOINT})',
            "unknown import env.memory",
        ),
        (
            "wamr",
            f'(module (import "env" "teaclave_close_file" (func (param i64) (result i32)))'
            f" {MEMORY} {ENTRYPOINT})",
            "import env.teaclave_close_file must be a function (i32) -> i32",
        ),
        (
            "wamr",
            f'(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))'
            f" {MEMORY} {ENTRYPOINT})",
            "unknown import wasi_snapshot_preview1.proc_exit",
        ),
        ("wasi", f"(module {MEMORY} {ENTRYPOINT})", "no exported function '_start' () -> ()"),
        ("wasi", f"(module {START})", "no exported memory 'memory'"),
        (
            "wasi",
            f'(module (import "wasi_snapshot_preview1" "nope" (func)) {MEMORY} {START})',
            "unknown import wasi_snapshot_preview1.nope",
        ),
        (
            "wasi",
            f'(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))'
            f" {MEMORY} {START})",
            "import wasi_snapshot_preview1.proc_exit must be a function (i32) -> ()",
        ),
        (
            "wasi",
            f'(module (import "other" "f" (func)) {MEMORY} {START})',
            "unknown import other.f",
        ),
    ],
)
def test_check_refuses(abi: str, module: bytes | str, problem: str) -> None:
    payload = wasmtime.wat2wasm(module) if isinstance(module, str) else module
    for refuse in (check, compile_module):
        with pytest.raises(TeaclaveError) as refused:
            refuse(payload, abi)
        assert refused.value.status is Status.INVALID_ARGUMENT
        assert refused.value.message == f"invalid function payload: {problem}"


def test_check_accepts_both_abis() -> None:
    check(wamr("(i32.const 0)"), "wamr")
    check(wasi(""), "wasi")
    with pytest.raises(ValueError, match="unknown Wasm ABI 'python'"):
        check(wasi(""), "python")


def test_an_artifact_must_be_compiled_by_this_engine() -> None:
    with pytest.raises(TeaclaveError) as refused:
        WasmFunction(CONFIG, wamr("(i32.const 0)"), "wamr")
    assert refused.value.status is Status.INTERNAL
    assert refused.value.message.startswith("cannot load the compiled Wasm module: ")


# --- WASI -----------------------------------------------------------------------------------

PRINT_ARGV = """
  (drop (call $args_sizes_get (i32.const 64) (i32.const 68)))
  (drop (call $args_get (i32.const 1024) (i32.const 2048)))
  (call $print (i32.const 1) (i32.const 2048) (i32.load (i32.const 68)))
"""


def test_wasi_argv_on_stdout_is_the_summary() -> None:
    summary = run(wasi(PRINT_ARGV), "wasi", arguments='{"n": 3, "k": "v"}')
    assert summary == b"function\0k\0v\0n\x003\0"


def test_wasi_stdout_is_bounded() -> None:
    message = failure(wasi(PRINT_ARGV), "wasi", max_summary_bytes=8)
    assert message == "stdout exceeds execution.max_summary_bytes (8)"


def test_wasi_exit_code() -> None:
    stdout = "(call $print (i32.const 1) (i32.const 32) (i32.const 5))"
    assert run(wasi(f"{stdout} (call $proc_exit (i32.const 0))"), "wasi") == b"oops\n"
    stderr = "(call $print (i32.const 2) (i32.const 32) (i32.const 5))"
    message = failure(wasi(f"{stderr} (call $proc_exit (i32.const 3))"), "wasi")
    assert message == "the function exited with code 3\noops"
    message = failure(wasi(f"{stderr} unreachable"), "wasi")
    assert message == "the function trapped: wasm `unreachable` instruction executed\noops"


def test_wasi_stderr_keeps_its_end() -> None:
    body = """(memory.fill (i32.const 4096) (i32.const 120) (i32.const 3000))
      (call $print (i32.const 2) (i32.const 4096) (i32.const 3000))
      (i32.store8 (i32.const 7095) (i32.const 121))
      (call $print (i32.const 2) (i32.const 4096) (i32.const 3000))
      (call $proc_exit (i32.const 1))"""
    message = failure(wasi(body), "wasi")
    assert message == "the function exited with code 1\n…" + "x" * 4095 + "y"


@pytest.mark.parametrize(
    "errno",
    [
        "(call $fd_prestat_get (i32.const 3) (i32.const 64))",
        "(call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 2) (i32.const 0)"
        " (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 64))",
    ],
)
def test_wasi_has_no_preopened_directory(errno: str) -> None:
    message = failure(wasi(f"(call $proc_exit {errno})"), "wasi")
    assert message == "the function exited with code 8"  # EBADF


def test_wasi_has_no_environment() -> None:
    body = """(drop (call $environ_sizes_get (i32.const 64) (i32.const 68)))
      (call $proc_exit (i32.add (i32.const 10) (i32.load (i32.const 64))))"""
    assert failure(wasi(body), "wasi") == "the function exited with code 10"


def test_wasi_reads_files_through_the_env_functions() -> None:
    body = f"""(call $print (i32.const 1) (i32.const 1024)
      (call $read_file {OPEN_IN} (i32.const 1024) (i32.const 100)))"""
    assert run(wasi(body), "wasi") == INPUT


def test_wasi_limits() -> None:
    assert failure(wasi("(loop $forever (br $forever))"), "wasi", cpu_secs=0.001) == (
        "CPU limit (0.001 s, 1000000 fuel) exceeded"
    )


# "oops\n" on stdout, "oops" on stderr twice (the last line without a newline).
TO_BOTH = """(call $print (i32.const 1) (i32.const 32) (i32.const 5))
  (call $print (i32.const 2) (i32.const 32) (i32.const 5))
  (call $print (i32.const 2) (i32.const 32) (i32.const 4))"""


def test_wasi_stdout_and_stderr_lines_go_to_the_log() -> None:
    log = TaskLog(LogLimits(max_lines=10, max_bytes=100))
    assert run(wasi(TO_BOTH), "wasi", log=log) == b"oops\n"
    assert log.entries() == ["oops", "oops", "oops"]

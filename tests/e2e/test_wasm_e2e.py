"""Wasm functions through the platform: C compiled to wasm32, encrypted files in and out."""

import pytest
import wasm_payloads
import wasmtime
from e2e_helpers import own_data, psi_task, register_psi, run_task
from e2e_platform import Platform
from teaclave_fixtures import FIXTURES, PSI_DIR

from teaclave.client import (
    FrontendClient,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    InvalidArgument,
    TaskFailed,
)

MILLIONAIRE_DIR = FIXTURES / "functions" / "wamr_c_millionaire_problem"


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return wasm_payloads.build(tmp_path_factory.mktemp("wasm"))


def register_wasm(
    client: FrontendClient,
    payload: bytes,
    arguments: dict[str, str] | None = None,
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    executor: str = "wamr",
) -> str:
    """Register a Wasm function; ``arguments`` are fixed by the function."""
    return client.register_function(
        "wasm-function",
        "a function in WebAssembly",
        executor,
        payload=payload,
        public=True,
        arguments=[FunctionArgument(k, v, False) for k, v in (arguments or {}).items()],
        inputs=[FunctionInput(name) for name in inputs],
        outputs=[FunctionOutput(name) for name in outputs],
    )


def millionaire(platform: Platform, payload: bytes) -> None:
    """Reference §10.2: the richer party's file id is written, and its length is the summary."""
    owner = platform.new_user("FunctionOwner")
    function_id = register_wasm(
        owner,
        payload,
        {"input_file_id1": "pf_in_a", "input_file_id2": "pf_in_b", "output_file_id": "pf_out"},
        inputs=("pf_in_a", "pf_in_b"),
        outputs=("pf_out",),
    )
    alice, bob = platform.new_user(), platform.new_user()
    a = own_data(platform, alice, (MILLIONAIRE_DIR / "input_a.txt").read_bytes())
    b = own_data(platform, bob, (MILLIONAIRE_DIR / "input_b.txt").read_bytes())
    task_id = run_task(
        alice,
        function_id,
        {},
        {"pf_in_a": (alice, a.input_id), "pf_in_b": (bob, b.input_id)},
        {"pf_out": (alice, a.output_id)},
        "wamr",
    )
    assert alice.get_task_result(task_id, timeout=60) == b"7"
    cmac = alice.get_output_file(a.output_id).cmac
    assert a.read_output(cmac) == (MILLIONAIRE_DIR / "expected_output.txt").read_bytes().strip()


def test_millionaire(platform: Platform, payloads: dict[str, bytes]) -> None:
    millionaire(platform, payloads["millionaire"])


def test_psi_in_c_matches_the_builtin(platform: Platform, payloads: dict[str, bytes]) -> None:
    with platform.admin() as admin:
        builtin_id = register_psi(admin)
        wasm_id = admin.register_function(
            "psi",
            "ordered set intersection in C",
            "wamr",
            payload=payloads["psi"],
            public=True,
            arguments=[FunctionArgument("order")],
            inputs=[FunctionInput("input_data1"), FunctionInput("input_data2")],
            outputs=[FunctionOutput("output_result1"), FunctionOutput("output_result2")],
        )
    alice, bob = platform.new_user(), platform.new_user()
    results = {}
    for function_id, executor in ((builtin_id, "builtin"), (wasm_id, "wamr")):
        a = own_data(platform, alice, (PSI_DIR / "psi0.txt").read_bytes())
        b = own_data(platform, bob, (PSI_DIR / "psi1.txt").read_bytes())
        task_id = psi_task(function_id, a, b, executor=executor)
        alice.approve_task(task_id)
        bob.approve_task(task_id)
        alice.invoke_task(task_id)
        summary = alice.get_task_result(task_id, timeout=60)
        marks = (
            a.read_output(alice.get_output_file(a.output_id).cmac),
            b.read_output(bob.get_output_file(b.output_id).cmac),
        )
        results[executor] = (summary, marks)
    builtin_summary, builtin_marks = results["builtin"]
    wasm_summary, wasm_marks = results["wamr"]
    assert wasm_marks == builtin_marks
    assert builtin_summary.split()[0] == wasm_summary  # "3 common items" / "3"


LOOP = """(module (memory (export "memory") 1)
  (func (export "entrypoint") (param i32 i32) (result i32) (loop (br 0)) (i32.const 0)))"""
GROW = """(module (memory (export "memory") 1)
  (func (export "entrypoint") (param i32 i32) (result i32)
    (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))"""
BAD_POINTER = """(module
  (import "env" "teaclave_open_input" (func $open (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "entrypoint") (param i32 i32) (result i32)
    (call $open (i32.const 0x7fffffff))))"""


@pytest.mark.parametrize(
    ("wat", "limits", "reason"),
    [
        (LOOP, {"teaclave.cpu_secs": 1}, r"CPU limit \(1 s"),
        (GROW, {"teaclave.memory_mb": 16}, r"memory limit \(16 MiB\) exceeded"),
        (BAD_POINTER, {}, "teaclave_open_input"),
    ],
    ids=["infinite-loop", "memory-bomb", "bad-pointer"],
)
def test_hostile_modules_fail_and_the_executor_serves_on(
    platform: Platform,
    payloads: dict[str, bytes],
    wat: str,
    limits: dict[str, object],
    reason: str,
) -> None:
    user = platform.new_user("PlatformAdmin")
    function_id = register_wasm(user, wasmtime.wat2wasm(wat))
    task_id = run_task(user, function_id, limits, {}, {}, "wamr")
    with pytest.raises(TaskFailed, match=reason):
        user.get_task_result(task_id, timeout=60)
    millionaire(platform, payloads["millionaire"])


def test_modules_are_checked_on_registration(platform: Platform) -> None:
    user = platform.new_user("FunctionOwner")
    with pytest.raises(InvalidArgument, match="not a valid WebAssembly module"):
        register_wasm(user, b"\0asm garbage")
    no_entry = wasmtime.wat2wasm('(module (memory (export "memory") 1))')
    with pytest.raises(InvalidArgument, match="entrypoint"):
        register_wasm(user, no_entry)


HELLO_WASI = """(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasi")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 15))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def test_a_wasi_command_prints_its_summary(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    function_id = register_wasm(user, bytes(wasmtime.wat2wasm(HELLO_WASI)), executor="wasi")
    task_id = run_task(user, function_id, {}, {}, {}, "wasi")
    assert user.get_task_result(task_id, timeout=60) == b"hello from wasi"

"""Building staged tasks over real files for the executor tests."""

import contextlib
import io
import os
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from processes import children, gone, parent, took_task
from teaclave_fixtures import PSI_DIR
from waiting import wait_until

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.crypto import aesgcm
from teaclave.crypto.protected_file import ProtectedFileReader
from teaclave.executor import worker
from teaclave.executor.launcher import Launcher, TaskProcess
from teaclave.executor.task import run_staged_task, sandbox_kind
from teaclave.executor.wasm import ABIS, compile_module
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedOutput, StagedTask

PSI = PSI_DIR
KEY, IV = bytes(range(16)), b"\x07" * 12
FIXTURE_KEY = bytes(16)
"""The key of every teaclave-file-128 fixture."""
PSI_CMACS = {
    "psi0.txt.enc": bytes.fromhex("92f686d4ac2ba6b4ffd93bc7ac5dbf58"),
    "psi1.txt.enc": bytes.fromhex("8b3104972a6f0de949315e0b45d5dd66"),
}


def encrypt_file(plaintext: bytes, path: Path, key: bytes = KEY, iv: bytes = IV) -> bytes:
    """Write ``plaintext`` aes-gcm encrypted to ``path``; returns its cmac."""
    with path.open("xb") as sink:
        return aesgcm.encrypt(key, iv, io.BytesIO(plaintext), sink)


def decrypt_file(path: Path, cmac: bytes, key: bytes = KEY, iv: bytes = IV) -> bytes:
    sink = io.BytesIO()
    with path.open("rb") as source:
        aesgcm.decrypt_to(key, iv, source, sink, role=str(path), cmac=cmac)
    return sink.getvalue()


def read_protected(path: Path, cmac: bytes, key: bytes = KEY) -> bytes:
    """The plaintext of the teaclave-file-128 file at ``path`` (named by its basename)."""
    with path.open("rb") as source, ProtectedFileReader(source, key, path.name, role="t") as reader:
        assert reader.cmac == cmac
        return reader.read()


def aes(key: bytes = KEY, iv: bytes = IV) -> FileCryptoInfo:
    schema = "aes-gcm-128" if len(key) == 16 else "aes-gcm-256"
    return FileCryptoInfo(schema=schema, key=key, iv=iv)


def protected(key: bytes = KEY) -> FileCryptoInfo:
    return FileCryptoInfo(schema="teaclave-file-128", key=key)


def python_echo(arguments: str = '{"message":"hi"}') -> StagedTask:
    """A Python function returning its second argument (the message's value)."""
    return StagedTask(
        function_name="echo",
        executor_type="python",
        executor="python",
        function_payload=b"def entrypoint(argv):\n    return argv[1]\n",
        function_arguments=arguments,
    )


def psi_task(root: Path, key: bytes = KEY) -> StagedTask:
    """builtin-ordered-set-intersect on the PSI fixture, aes-gcm encrypted below ``root``."""
    cmac0 = encrypt_file((PSI / "psi0.txt").read_bytes(), root / "psi0.enc", key)
    cmac1 = encrypt_file((PSI / "psi1.txt").read_bytes(), root / "psi1.enc", key)
    return StagedTask(
        task_id="4a0f3b5e-6f55-4d6b-9a43-0c3b1d2e8f11",
        function_name="builtin-ordered-set-intersect",
        executor_type="builtin",
        executor="builtin",
        function_arguments='{"order":"ascending"}',
        inputs=[
            StagedInput(
                name="input_data1",
                url=f"file://{root}/psi0.enc",
                cmac=cmac0,
                crypto_info=aes(key),
            ),
            StagedInput(
                name="input_data2",
                url=f"file://{root}/psi1.enc",
                cmac=cmac1,
                crypto_info=aes(key),
            ),
        ],
        outputs=[
            StagedOutput(name="output_result1", url=f"file://{root}/out1.enc", crypto_info=aes()),
            StagedOutput(name="output_result2", url=f"file://{root}/out2.enc", crypto_info=aes()),
        ],
    )


def zygotes(pid: int) -> list[int]:
    """The zygotes among the children of process ``pid``."""
    found = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"teaclave.executor.zygote" in cmdline and not gone(child):
            found.append(child)
    return found


def task_processes(pid: int) -> list[int]:
    """The live task processes of the zygotes of process ``pid`` that took a task (not
    the spare, which waits for one)."""
    return [c for z in zygotes(pid) for c in children(z) if not gone(c) and took_task(c)]


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def memory_holds(pid: int, secret: bytes) -> bool:
    """Whether ``secret`` is anywhere in the readable memory of process ``pid``."""
    found = False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                found = found or secret in mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
    return found


def single_threaded() -> bool:
    """Whether this process runs one thread (so it may fork sandboxes)."""
    return len(os.listdir("/proc/self/task")) == 1


@contextlib.contextmanager
def started_task(envelope: worker.Envelope, *, ahead: bool = False) -> Iterator[TaskProcess]:
    """A task process forked by a zygote, as the execution service starts one, fed
    ``envelope``; killed after, with its zygote. ``ahead``: a spare that got the
    envelope's header ahead (and so forked its sandbox before the task came)."""
    with closing(Launcher(ExecutionConfig().python_modules)) as launcher:
        if ahead:
            with launcher.start(envelope) as first:  # the next spare gets its header ahead
                first.kill()
        with launcher.start(envelope if ahead else None) as process:
            assert process.ahead == (envelope.ahead if ahead else b"")
            try:
                process.stdin.write(process.unsent if ahead else bytes(envelope))
                process.stdin.close()
                yield process
            finally:
                process.kill()
                process.wait()
    # The launcher's thread has ended: this process may fork sandboxes again.
    wait_until(single_threaded, "the launcher's thread to end")


def wait_for_sandbox(process: TaskProcess) -> list[int]:
    """The pids of ``process``'s sandbox (its keeper and task process), once both run."""
    wait_until(lambda: len(descendants(process.pid)) >= 2, "the task process to fork its sandbox")
    return descendants(process.pid)


def encrypt_first_input(staged: StagedTask, path: Path) -> bytes:
    """Make the first input of ``staged`` aes-gcm data at ``path`` under a fresh random key:
    the key."""
    key, iv = os.urandom(16), os.urandom(12)
    sealed = io.BytesIO()
    cmac = aesgcm.encrypt(key, iv, io.BytesIO(b"a,1\n"), sealed)
    path.write_bytes(sealed.getvalue())
    staged.inputs[0].crypto_info.CopyFrom(FileCryptoInfo(schema="aes-gcm-128", key=key, iv=iv))
    staged.inputs[0].cmac = cmac
    return key


def assert_sandbox_never_holds_the_key(
    staged: StagedTask, config: ExecutionConfig, input_path: Path
) -> None:
    """Run ``staged`` (whose function runs until killed) with its first input at
    ``input_path`` under a fresh random key in a task process forked by a zygote: the
    task process holds the key, its sandbox never."""
    key = encrypt_first_input(staged, input_path)
    kind = sandbox_kind(staged)
    module = compile_module(staged.function_payload, kind) if kind in ABIS else b""
    envelope = worker.encode_envelope(config, staged, module)
    for ahead in (False, True):  # the sandbox forked with the task, or ahead of it
        with started_task(envelope, ahead=ahead) as process:
            # The task process has read the task (so the search works) and forked the sandbox.
            wait_until(lambda: memory_holds(process.pid, key), "the task process to read it")
            sandboxed = wait_for_sandbox(process)
            for pid in sandboxed:
                assert not memory_holds(pid, key), f"sandbox process {pid} holds the file key"
            assert not memory_holds(parent(process.pid), key), "the zygote holds the file key"


class Uploads:
    """A ``start_upload`` for tests: records the outputs asked for, in order, and grants
    each upload except those in ``refused`` (name -> reason)."""

    def __init__(self, refused: dict[str, str] | None = None) -> None:
        self.asked: list[str] = []
        self._refused = refused or {}

    def __call__(self, name: str) -> None:
        self.asked.append(name)
        if name in self._refused:
            raise TeaclaveError(Status.FAILED_PRECONDITION, self._refused[name])


def run_task(staged: StagedTask, config: ExecutionConfig, **options: Any) -> TaskResult:
    """``run_staged_task``, every upload granted unless ``start_upload`` is given."""
    options.setdefault("start_upload", Uploads())
    return run_staged_task(staged, config, **options)

"""One staged task from inputs to outputs (reference §9.2), streamed in bounded memory.

Whatever the task stages lives in a private scratch directory below
``execution.work_dir`` (removed at the end), only ever as teaclave-file-128
files: aes-gcm and raw inputs are re-encrypted under fresh random keys as they
are fetched, teaclave-file-128 inputs are kept as downloaded, and every input
is fully verified before the function starts. The function writes its outputs
to new files under fresh random keys; once it succeeded, each is converted to
its owner's format as it is uploaded, once the scheduler recorded that its
upload begins (:mod:`teaclave.executor.uploads`). Plaintext exists only in
memory, one chunk at a time: memory grows with file sizes only by the
protected-file writer's hash-tree tables (1/96 of the file being staged).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, invalid_argument
from teaclave.core.model import CryptoSchema, FileCrypto
from teaclave.crypto import aesgcm
from teaclave.crypto.protected_file import KEY_SIZE, ProtectedFileWriter, encrypt_stream
from teaclave.executor.python.function import PythonFunction
from teaclave.executor.python.function import view as python_view
from teaclave.executor.runtime import FileRuntime, StagedFile
from teaclave.executor.sandbox import View, task_view
from teaclave.executor.sandboxed import SandboxedFunction
from teaclave.executor.tasklog import LogLimits, TaskLog, capture, requested
from teaclave.executor.uploads import StartUpload
from teaclave.functions import registry
from teaclave.functions.builtin import LOGGER
from teaclave.functions.runtime import Runtime
from teaclave.observability.stages import stage
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo, TaskFailure, TaskOutputs, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask
from teaclave.transport import urls

_STAGED = "staged"
"""The file name of every file the platform stages under a random key."""


@contextlib.contextmanager
def _about(role: str) -> Iterator[None]:
    """Prefix the message of any failure inside with the file's role (unless it has it)."""
    try:
        yield
    except TeaclaveError as exc:
        if exc.message.startswith(f"{role}: "):
            raise
        raise TeaclaveError(exc.status, f"{role}: {exc.message}") from None


_PYTHON_EXECUTORS = ("python", "mesapy")  # "mesapy": Teaclave's name, for compatibility
_WASM_EXECUTORS = ("wamr", "wasi")
"""Wasm executor types (each its own task executor name). wasmtime is imported on first
use (50 ms): task processes find it imported by the zygote they are forked from."""


def is_python(staged: StagedTask) -> bool:
    """Whether ``staged`` runs in the Python executor (in the sandbox)."""
    return staged.executor_type == "python" and staged.executor in _PYTHON_EXECUTORS


def is_wasm(staged: StagedTask) -> bool:
    """Whether ``staged`` runs in a Wasm executor (``wamr`` or ``wasi``)."""
    return staged.executor_type in _WASM_EXECUTORS and staged.executor == staged.executor_type


def sandbox_kind(staged: StagedTask) -> str:
    """The sandbox ``staged`` runs in: "python", "wamr", "wasi", or "" (a built-in: none)."""
    if is_python(staged):
        return "python"
    return staged.executor_type if is_wasm(staged) else ""


def sandbox_view(kind: str, config: ExecutionConfig) -> View | None:
    """What a sandbox of ``kind`` may read (None for no sandbox); cached by the process."""
    if kind == "python":
        return python_view(config)
    return task_view() if kind else None


def fork_sandbox(
    kind: str, config: ExecutionConfig, module: bytes = b"", view: View | None = None
) -> SandboxedFunction | None:
    """The sandbox of ``kind``, forked now (None for no sandbox), waiting for its task.

    Call it while single-threaded, before the task's keys are read. A Wasm sandbox
    runs ``module``, compiled by the trusted caller.
    """
    view = view or sandbox_view(kind, config)
    if kind == "python":
        return PythonFunction(config, view)
    if kind in _WASM_EXECUTORS:
        from teaclave.executor import wasm  # imported on first use: see _WASM_EXECUTORS

        return wasm.SandboxedWasm(config, module, kind, view)
    return None


Function = Callable[[Runtime, TaskLog | None], bytes]
"""A task's function, ready to run on a runtime (its log entries going to the log, if
there is one): gives its summary."""


@contextlib.contextmanager
def _function(
    staged: StagedTask, config: ExecutionConfig, sandbox: SandboxedFunction | None, module: bytes
) -> Iterator[Function]:
    """The task's function, ready to run.

    A Python or Wasm function runs in ``sandbox``, forked by the caller before it
    read the task (the caller ends it); otherwise the sandbox is forked here (and
    ends here), so this must come before anything that may start threads
    (fetching inputs). A Wasm function runs ``module`` if given (compiled by the
    trusted caller), else its payload compiled here.
    """
    kind = sandbox_kind(staged)
    if kind:
        with contextlib.ExitStack() as forked_here:
            if sandbox is None:
                if kind in _WASM_EXECUTORS and not module:
                    from teaclave.executor import wasm  # see _WASM_EXECUTORS

                    module = wasm.compile_module(staged.function_payload, kind)
                sandbox = fork_sandbox(kind, config, module)
                if sandbox is not None:
                    forked_here.enter_context(sandbox)
            if sandbox is None or sandbox.kind != kind:
                raise TeaclaveError(Status.INTERNAL, "the task's sandbox is not for its executor")
            with stage("load_function"):
                sandbox.load(staged)
            yield sandbox.run
    elif (staged.executor_type, staged.executor) == ("builtin", "builtin"):
        builtin = registry.lookup(staged.function_name)
        arguments = builtin.parse_arguments(staged.function_arguments)

        def run(runtime: Runtime, log: TaskLog | None) -> bytes:
            with capture(LOGGER, log):
                return builtin.run(arguments, runtime).encode()

        yield run
    else:
        raise TeaclaveError(
            Status.FAILED_PRECONDITION,
            f"function not available: ({staged.executor_type}, {staged.executor})",
        )


def _file_name(url: str) -> str:
    """The last segment of ``url``'s path: the name bound into a teaclave-file-128 file."""
    name = posixpath.basename(unquote(urlsplit(url).path))
    if name in ("", ".", ".."):
        raise invalid_argument("URL path must have a file name")
    return name


@dataclass(frozen=True)
class _File:
    """An input or output, checked: its URL, crypto and (teaclave-file-128) file name."""

    role: str
    url: str
    crypto: FileCrypto
    cmac: bytes  # inputs only
    file_name: str  # teaclave-file-128 only: the name bound into the file


def _file(
    role: str,
    url: str,
    info: FileCryptoInfo,
    config: ExecutionConfig,
    *,
    cmac: bytes = b"",
    write: bool = False,
) -> _File:
    """Check a file's crypto and URL before anything is fetched or written."""
    with _about(role):
        crypto = FileCrypto.parse(info.schema, info.key, info.iv)
        if write and crypto.schema is CryptoSchema.RAW:
            raise invalid_argument("OutputFile: unsupported type")
        urls.check_url(url, config, write=write)
        protected = crypto.schema is CryptoSchema.TEACLAVE_FILE_128
        return _File(role, url, crypto, cmac, _file_name(url) if protected else "")


@contextlib.contextmanager
def _scratch(config: ExecutionConfig) -> Iterator[Path]:
    """A new private directory below ``work_dir`` (the system's default if empty), then gone."""
    try:
        if config.work_dir:
            os.makedirs(config.work_dir, mode=0o700, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="task-", dir=config.work_dir or None))
    except OSError as exc:
        raise TeaclaveError(
            Status.FAILED_PRECONDITION, f"cannot create a scratch directory: {exc.strerror}"
        ) from None
    try:
        yield path
    finally:
        # Only ciphertext is there, under keys that die with this process (or the owners').
        shutil.rmtree(path, ignore_errors=True)


def _subdirectory(scratch: Path, name: str) -> Path:
    path = scratch / name
    path.mkdir(mode=0o700)
    return path


def _stage_input(file: _File, directory: Path, config: ExecutionConfig) -> StagedFile:
    """Fetch one input into ``directory`` as a protected file and verify it completely."""
    with _about(file.role), stage("fetch_input", schema=file.crypto.schema.value):
        crypto = file.crypto
        if crypto.schema is CryptoSchema.TEACLAVE_FILE_128:
            path = directory / file.file_name
            with urls.open_download(file.url, config) as source, path.open("xb") as sink:
                shutil.copyfileobj(source, sink, config.chunk_bytes)
            staged = StagedFile(path, crypto.key, file.cmac)
            staged.verify(file.role)
            return staged
        path, key = directory / _STAGED, secrets.token_bytes(KEY_SIZE)
        with urls.open_download(file.url, config) as source, path.open("xb") as sink:
            if crypto.schema is CryptoSchema.RAW:
                cmac = encrypt_stream(key, _STAGED, source, sink, chunk=config.chunk_bytes)
            else:
                # Plaintext goes to the protected file before the tag is checked; the
                # file is only used if it is (decrypt_to raises otherwise).
                writer = ProtectedFileWriter(key, _STAGED, sink)
                aesgcm.decrypt_to(
                    crypto.key, crypto.iv, source, writer, role=file.role, cmac=file.cmac
                )
                cmac = writer.close()
        return StagedFile(path, key, cmac)


def _deliver(output: _File, staged: StagedFile, directory: Path, config: ExecutionConfig) -> bytes:
    """Convert one output to its owner's format while uploading it; returns its cmac."""
    with (
        _about(output.role),
        stage("upload_output", schema=output.crypto.schema.value),
        staged.open(output.role, config.chunk_bytes) as plaintext,
    ):
        crypto = output.crypto
        if crypto.schema is CryptoSchema.TEACLAVE_FILE_128:
            # The format needs a seekable sink: seal into the scratch directory first.
            with (directory / output.file_name).open("x+b") as sealed:
                cmac = encrypt_stream(
                    crypto.key, output.file_name, plaintext, sealed, chunk=config.chunk_bytes
                )
                sealed.seek(0)
                with urls.open_upload(output.url, config) as sink:
                    shutil.copyfileobj(sealed, sink, config.chunk_bytes)
            return cmac
        with urls.open_upload(output.url, config) as sink:
            return aesgcm.encrypt(crypto.key, crypto.iv, plaintext, sink)


def _deliver_all(
    outputs: list[tuple[str, _File, StagedFile, Path]],
    config: ExecutionConfig,
    start_upload: StartUpload,
) -> dict[str, bytes]:
    """Deliver every output, or none: on a failure, the ones already uploaded are removed.

    Nothing of an output is encrypted or sent before ``start_upload`` granted it.
    """
    tags: dict[str, bytes] = {}
    delivered: list[str] = []
    try:
        for name, output, staged, directory in outputs:
            with _about(output.role):
                start_upload(name)
            tags[name] = _deliver(output, staged, directory, config)
            delivered.append(output.url)
    except BaseException:
        for url in delivered:
            with contextlib.suppress(TeaclaveError):
                urls.discard(url, config)
        raise
    return tags


def _run(
    staged: StagedTask,
    config: ExecutionConfig,
    sandbox: SandboxedFunction | None,
    module: bytes,
    start_upload: StartUpload,
) -> TaskOutputs:
    with _function(staged, config, sandbox, module) as function:
        return _run_function(staged, function, config, start_upload)


def _run_function(
    staged: StagedTask, function: Function, config: ExecutionConfig, start_upload: StartUpload
) -> TaskOutputs:
    outputs = {
        o.name: _file(f"output {o.name!r}", o.url, o.crypto_info, config, write=True)
        for o in staged.outputs
    }
    inputs = {
        i.name: _file(f"input {i.name!r}", i.url, i.crypto_info, config, cmac=i.cmac)
        for i in staged.inputs
    }
    with _scratch(config) as scratch:
        with stage("fetch_inputs"):
            staged_inputs = {
                name: _stage_input(file, _subdirectory(scratch, f"input-{index}"), config)
                for index, (name, file) in enumerate(inputs.items())
            }
        directories = {
            name: _subdirectory(scratch, f"output-{index}") for index, name in enumerate(outputs)
        }
        paths = {name: directory / _STAGED for name, directory in directories.items()}
        log = (
            TaskLog(LogLimits(config.max_log_lines, config.max_log_bytes))
            if requested(staged.function_arguments)
            else None
        )
        with FileRuntime(staged_inputs, paths, buffer_size=config.chunk_bytes) as runtime:
            with stage("run"):
                summary = function(runtime, log)
            created = runtime.finish_outputs()
        if len(summary) > config.max_summary_bytes:
            raise invalid_argument(
                f"function summary exceeds execution.max_summary_bytes ({config.max_summary_bytes})"
            )
        for name, output in outputs.items():
            if name not in created:
                raise invalid_argument(f"{output.role}: the function did not create it")
        with stage("upload_outputs"):
            tags = _deliver_all(
                [(name, file, created[name], directories[name]) for name, file in outputs.items()],
                config,
                start_upload,
            )
    return TaskOutputs(return_value=summary, tags_map=tags, log=log.entries() if log else [])


def run_staged_task(
    staged: StagedTask,
    config: ExecutionConfig,
    sandbox: SandboxedFunction | None = None,
    *,
    module: bytes = b"",
    start_upload: StartUpload,
) -> TaskResult:
    """Run ``staged``: its outputs and summary, or the reason it failed.

    Every input is fully verified before the function starts; outputs are
    uploaded only once the function succeeded, all of them or none, each only
    once ``start_upload`` granted it (the scheduler recorded it). ``sandbox``:
    a Python or Wasm task's sandbox (:func:`fork_sandbox`), forked before the
    task and its file keys were read and ended by the caller (the worker does
    both: it ends it after the result); otherwise it is forked and ended here.
    ``module``: a Wasm task's module, compiled by the execution service;
    otherwise it is compiled here.
    """
    try:
        return TaskResult(Ok=_run(staged, config, sandbox, module, start_upload))
    except TeaclaveError as exc:
        return TaskResult(Err=TaskFailure(reason=exc.message))
    except OSError as exc:  # local scratch I/O; the path is left out
        return TaskResult(Err=TaskFailure(reason=f"I/O error: {exc.strerror or 'unknown'}"))
    except Exception as exc:  # a bug: report its kind only (details may hold task data)
        return TaskResult(Err=TaskFailure(reason=f"internal error ({type(exc).__name__})"))

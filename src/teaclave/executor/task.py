"""One staged task from inputs to outputs (reference §9.2), plaintext in memory only."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, invalid_argument
from teaclave.core.model import FileCrypto
from teaclave.crypto import files
from teaclave.crypto.aesgcm import DecryptionError
from teaclave.functions import registry
from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import MemoryRuntime
from teaclave.proto.teaclave_common_pb2 import FileCryptoInfo, TaskFailure, TaskOutputs, TaskResult
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedInput, StagedTask
from teaclave.transport import urls


@contextlib.contextmanager
def _about(role: str) -> Iterator[None]:
    """Prefix the message of any failure inside with the file's role."""
    try:
        yield
    except DecryptionError:
        raise  # its message already names the file
    except TeaclaveError as exc:
        raise TeaclaveError(exc.status, f"{role}: {exc.message}") from None


def _function(staged: StagedTask) -> Builtin[Any]:
    if (staged.executor_type, staged.executor) != ("builtin", "builtin"):
        raise TeaclaveError(
            Status.FAILED_PRECONDITION,
            f"function not available: ({staged.executor_type}, {staged.executor})",
        )
    return registry.lookup(staged.function_name)


def _crypto(info: FileCryptoInfo) -> FileCrypto:
    return FileCrypto.parse(info.schema, info.key, info.iv)


def _fetch(staged: StagedInput, config: ExecutionConfig) -> bytes:
    role = f"input {staged.name!r}"
    with _about(role):
        crypto = _crypto(staged.crypto_info)
        with urls.open_download(staged.url, config) as reader:
            return files.decrypt_input(crypto, staged.cmac, reader, role=role)


def _run(staged: StagedTask, config: ExecutionConfig) -> TaskOutputs:
    function = _function(staged)
    arguments = function.parse_arguments(staged.function_arguments)
    outputs: dict[str, tuple[str, FileCrypto]] = {}
    for output in staged.outputs:
        with _about(f"output {output.name!r}"):
            crypto = _crypto(output.crypto_info)
            files.check_output_schema(crypto)
        outputs[output.name] = (output.url, crypto)
    inputs = {staged_input.name: _fetch(staged_input, config) for staged_input in staged.inputs}
    runtime = MemoryRuntime(inputs, frozenset(outputs))
    summary = function.run(arguments, runtime).encode()
    if len(summary) > config.max_summary_bytes:
        raise invalid_argument(
            f"function summary exceeds execution.max_summary_bytes ({config.max_summary_bytes})"
        )
    sealed: dict[str, io.BytesIO] = {}
    tags: dict[str, bytes] = {}
    for name, (_, crypto) in outputs.items():
        plaintext = runtime.output(name)
        if plaintext is None:
            raise invalid_argument(f"output {name!r}: the function did not create it")
        sealed[name] = io.BytesIO()
        tags[name] = files.encrypt_output(crypto, io.BytesIO(plaintext), sealed[name])
        sealed[name].seek(0)
    _upload_all([(name, url, sealed[name]) for name, (url, _) in outputs.items()], config)
    return TaskOutputs(return_value=summary, tags_map=tags)


def _upload_all(items: list[tuple[str, str, io.BytesIO]], config: ExecutionConfig) -> None:
    """Upload every output, or none: on a failure, the ones already written are removed."""
    done: list[str] = []
    try:
        for name, url, data in items:
            with _about(f"output {name!r}"):
                urls.upload(url, data, config)
            done.append(url)
    except TeaclaveError:
        for url in done:
            urls.discard(url, config)
        raise


def run_staged_task(staged: StagedTask, config: ExecutionConfig) -> TaskResult:
    """Run ``staged``: its outputs and summary, or the reason it failed.

    Every input is fully verified before the function starts; outputs are
    uploaded only once the function succeeded and all of them are encrypted.
    """
    try:
        return TaskResult(Ok=_run(staged, config))
    except TeaclaveError as exc:
        return TaskResult(Err=TaskFailure(reason=exc.message))
    except Exception as exc:  # a bug: report its kind only (details may hold task data)
        return TaskResult(Err=TaskFailure(reason=f"internal error ({type(exc).__name__})"))

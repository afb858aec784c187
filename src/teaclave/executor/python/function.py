"""A Python function of one task: its payload runs in the sandbox as ``entrypoint(argv)``."""

from __future__ import annotations

import functools
import importlib

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.executor import sandbox
from teaclave.executor.python import guest, mesapy, payload
from teaclave.executor.sandboxed import SandboxedFunction, limits
from teaclave.proto.teaclave_scheduler_service_pb2 import StagedTask


def preload(modules: tuple[str, ...]) -> None:
    """Import the allowed modules (and the MesaPy profile's) now: the sandbox cannot load
    native libraries or read the platform's code later."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TeaclaveError(
                Status.FAILED_PRECONDITION, f"execution.python_modules: cannot import {name!r}"
            ) from exc
    mesapy.preload(modules)


def view(config: ExecutionConfig) -> sandbox.View:
    """What a Python function may read: the standard library and ``python_modules``."""
    try:
        return sandbox.task_view(config.python_modules)
    except ImportError as exc:
        raise TeaclaveError(Status.FAILED_PRECONDITION, f"execution.python_modules: {exc}") from exc


class PythonFunction(SandboxedFunction):
    """A Python payload's sandbox, forked with the allowed modules imported."""

    def __init__(self, config: ExecutionConfig, task_view: sandbox.View | None = None) -> None:
        preload(config.python_modules)
        target = functools.partial(guest.main, config.python_modules)
        super().__init__("python", config, target, task_view or view(config), limits(config))

    def load(self, staged: StagedTask) -> None:
        """The task's payload and arguments, sent to the sandbox by :meth:`run`.

        Tasks of executor ``mesapy`` get the MesaPy profile (:mod:`.mesapy`).
        """
        config = self._config
        self._go(
            payload=payload.source(staged.function_payload),
            argv=payload.flatten(staged.function_arguments),
            max_summary_bytes=config.max_summary_bytes,
            profile=mesapy.PROFILE if staged.executor == mesapy.PROFILE else "python",
        )

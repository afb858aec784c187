"""The platform's records: users' functions, files and tasks (reference §3).

Plain frozen dataclasses, stored as JSON through :mod:`teaclave.core.codec`.
Identifiers inside records are bare UUIDs; the API layer adds prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from teaclave.core.errors import invalid_argument


class ExecutorType(StrEnum):
    """What kind of payload a function carries."""

    BUILTIN = "builtin"
    PYTHON = "python"
    WAMR = "wamr"
    WASI = "wasi"


class Executor(StrEnum):
    """What a task asks to run the function with."""

    BUILTIN = "builtin"
    MESAPY = "mesapy"
    PYTHON = "python"
    WAMR = "wamr"
    WASI = "wasi"


def parse_executor_type(text: str) -> ExecutorType:
    """An :class:`ExecutorType` from its API string; INVALID_ARGUMENT otherwise."""
    try:
        return ExecutorType(text)
    except ValueError:
        raise invalid_argument(f"invalid executor type {text!r}") from None


def parse_executor(text: str) -> Executor:
    """An :class:`Executor` from its API string; INVALID_ARGUMENT otherwise."""
    try:
        return Executor(text)
    except ValueError:
        raise invalid_argument(f"invalid executor {text!r}") from None


class TaskStatus(IntEnum):
    """Task life cycle (numbers as on the wire)."""

    CREATED = 0
    DATA_ASSIGNED = 1
    APPROVED = 2
    STAGED = 3
    RUNNING = 4
    FINISHED = 10
    CANCELED = 20
    FAILED = 99

    @property
    def ended(self) -> bool:
        """True for Finished, Canceled and Failed."""
        return self in (TaskStatus.FINISHED, TaskStatus.CANCELED, TaskStatus.FAILED)


class CryptoSchema(StrEnum):
    """File encryption schemas (reference §5)."""

    AES_GCM_128 = "aes-gcm-128"
    AES_GCM_256 = "aes-gcm-256"
    TEACLAVE_FILE_128 = "teaclave-file-128"
    RAW = "raw"


_KEY_SIZES = {
    CryptoSchema.AES_GCM_128: 16,
    CryptoSchema.AES_GCM_256: 32,
    CryptoSchema.TEACLAVE_FILE_128: 16,
}
IV_SIZE = 12
CMAC_SIZE = 16


@dataclass(frozen=True)
class FileCrypto:
    """How a file is encrypted: schema, key and iv (validated on construction)."""

    schema: CryptoSchema
    key: bytes = b""
    iv: bytes = b""

    @classmethod
    def parse(cls, schema: str, key: bytes, iv: bytes) -> FileCrypto:
        """Validate an API ``FileCryptoInfo``; INVALID_ARGUMENT with the reason otherwise."""
        try:
            parsed = CryptoSchema(schema)
        except ValueError:
            raise invalid_argument(f"invalid crypto schema {schema!r}") from None
        if parsed is CryptoSchema.RAW:
            return cls(parsed)
        size = _KEY_SIZES[parsed]
        if len(key) != size:
            raise invalid_argument(f"{parsed.value} key must be {size} bytes, got {len(key)}")
        if parsed is CryptoSchema.TEACLAVE_FILE_128:
            if iv:
                raise invalid_argument("teaclave-file-128 takes no iv")
        elif len(iv) != IV_SIZE:
            raise invalid_argument(f"{parsed.value} iv must be {IV_SIZE} bytes, got {len(iv)}")
        return cls(parsed, key, iv)


@dataclass(frozen=True)
class InputFile:
    """A registered input file."""

    uuid: str
    url: str
    cmac: bytes
    crypto: FileCrypto
    owners: frozenset[str]


@dataclass(frozen=True)
class OutputFile:
    """A registered output file; ``cmac`` is set once a task has written it.

    An output is written at most once: its key and iv encrypt one plaintext
    only. ``replaced`` marks a registration that UpdateOutputFile copied (key,
    iv and all) to a new one, which alone may be written from then on.
    ``reserved_by`` names the staged or running task that holds the output
    (:func:`teaclave.core.tasks.reserve_outputs`); ``upload_started`` records
    that this task began uploading it, so the key and iv may have been used.
    """

    uuid: str
    url: str
    crypto: FileCrypto
    owners: frozenset[str]
    cmac: bytes | None = None
    replaced: bool = False
    reserved_by: str = ""
    upload_started: bool = False

    def why_not_writable(self, task_uuid: str = "") -> str:
        """Why task ``task_uuid`` ('': no task) may not write this output ('' if it may)."""
        if self.cmac is not None:
            return "was already written"
        if self.replaced:
            return "was replaced by an update"
        if self.reserved_by in ("", task_uuid):
            return ""
        if self.upload_started:
            return "was used by an upload that has not completed"
        return "is reserved by a staged or running task"


@dataclass(frozen=True)
class FunctionArgument:
    """A declared argument: default (always a string) and whether tasks may set it."""

    key: str
    default_value: str = ""
    allow_overwrite: bool = False


@dataclass(frozen=True)
class FunctionFile:
    """A declared input or output of a function."""

    name: str
    description: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Function:
    """A registered function."""

    uuid: str
    name: str
    description: str
    executor_type: ExecutorType
    public: bool
    payload: bytes
    arguments: tuple[FunctionArgument, ...]
    inputs: tuple[FunctionFile, ...]
    outputs: tuple[FunctionFile, ...]
    owner: str
    user_allowlist: tuple[str, ...] = ()
    # None = unlimited (any negative quota on the wire).
    usage_quota: int | None = None
    disabled: bool = False


@dataclass(frozen=True)
class FunctionUsage:
    """How many times a function's tasks were invoked."""

    function_uuid: str
    use_numbers: int = 0


@dataclass(frozen=True)
class UserFunctions:
    """The functions a user registered and those they are allow-listed for."""

    user_id: str
    registered: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskResult:
    """A task's outcome: not ready, outputs (``ok``) or a failure reason."""

    ready: bool = False
    ok: bool = False
    return_value: bytes = b""
    tags: dict[str, bytes] = field(default_factory=dict)
    log: tuple[str, ...] = ()
    reason: str = ""

    @classmethod
    def success(
        cls, return_value: bytes, tags: dict[str, bytes], log: tuple[str, ...] = ()
    ) -> TaskResult:
        """A finished task's outputs."""
        return cls(ready=True, ok=True, return_value=return_value, tags=tags, log=log)

    @classmethod
    def failure(cls, reason: str, log: tuple[str, ...] = ()) -> TaskResult:
        """A failed or canceled task's reason."""
        return cls(ready=True, ok=False, reason=reason, log=log)


@dataclass(frozen=True)
class Task:
    """A task and its whole state (reference §3.5)."""

    uuid: str
    creator: str
    function_id: str
    function_owner: str
    # JSON text of the merged arguments object, keys sorted.
    function_arguments: str
    executor: Executor
    inputs_ownership: dict[str, frozenset[str]]
    outputs_ownership: dict[str, frozenset[str]]
    participants: frozenset[str]
    # Read from records written before approvals named a digest (upgraded on load).
    approved_users: frozenset[str] = frozenset()
    assigned_inputs: dict[str, InputFile] = field(default_factory=dict)
    assigned_outputs: dict[str, OutputFile] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.CREATED
    result: TaskResult = field(default_factory=TaskResult)
    # What the task runs: :func:`teaclave.core.tasks.function_digest` at creation.
    function_digest: str = ""
    # Set while Running: the executor that pulled the task.
    executor_id: str = ""
    # Set by CancelTask on a Staged or Running task; the scheduler acts on it.
    cancel_requested: bool = False
    # Who approved, and the :func:`teaclave.core.tasks.task_digest` each approved.
    approvals: dict[str, str] = field(default_factory=dict)
    # The W3C traceparent of the task's creation span: every later span about the
    # task joins its trace (docs/operations.md). Not part of what approvals bind.
    trace_context: str = ""

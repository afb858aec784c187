"""Storage key namespaces, and which service may touch which.

Keys are ``<namespace>/<id>``. The storage service refuses any key outside
the namespaces granted to the calling peer service.
"""

from __future__ import annotations

USER = "user/"  # authentication: one user account per key, by user id
AUTH_SECRET = "auth/"  # noqa: S105 (authentication: token signing key)
FUNCTION = "function/"  # management: Function by uuid
USAGE = "usage/"  # management: FunctionUsage by function uuid
USER_FUNCTIONS = "userfn/"  # management: UserFunctions by user id
INPUT = "input/"  # management: InputFile by uuid
OUTPUT = "output/"  # management, scheduler: OutputFile by uuid
TASK = "task/"  # management, scheduler: Task by uuid
STAGED = "staged/"  # management, scheduler: queue of staged task uuids, in order
AUDIT = "audit/"  # management: the audit log (the three keys below)
AUDIT_LOG = "audit/log/"  # audit records by sequence number (audit_key)
AUDIT_CHECKPOINT = "audit/checkpoint/"  # signed checkpoints by sequence number (audit_key)
AUDIT_HEAD = "audit/head"  # the chain's head: sequence number, hash, last checkpoint

GRANTS: dict[str, tuple[str, ...]] = {
    "authentication": (USER, AUTH_SECRET),
    "management": (FUNCTION, USAGE, USER_FUNCTIONS, INPUT, OUTPUT, TASK, STAGED, AUDIT),
    "scheduler": (OUTPUT, TASK, STAGED),
}
"""Namespaces each peer service may read and write."""


def allowed(service: str, key: str) -> bool:
    """Whether ``service`` may touch ``key``."""
    return any(key.startswith(ns) for ns in GRANTS.get(service, ()))


def staged_key(sequence: int, task_uuid: str) -> str:
    """Queue key for a staged task; keys sort in staging order."""
    return f"{STAGED}{sequence:020d}-{task_uuid}"


def staged_at(queue_key: str) -> int | None:
    """The sequence of a :func:`staged_key` (when the task was staged, ns), if it has one."""
    sequence = queue_key.removeprefix(STAGED).partition("-")[0]
    return int(sequence) if sequence.isdigit() else None


def audit_key(namespace: str, sequence: int) -> str:
    """Key of the audit record or checkpoint ``sequence``; keys sort in sequence order."""
    return f"{namespace}{sequence:020d}"

"""Resource limits of a task's function: platform defaults, set per function or per task.

Limits travel as reserved arguments (``teaclave.cpu_secs``, ``teaclave.wall_secs``,
``teaclave.memory_mb``), so every participant approves them with the task and the
wire API is unchanged. A function *fixes* a limit by declaring the argument with a
default; it *leaves it to each task* by declaring it overwritable; a task may also
set a limit its function does not declare. Every value must lie in (0, platform
maximum]; unset limits take the platform default. The executor removes these
arguments before the function runs: the function never sees them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from teaclave.core.errors import invalid_argument
from teaclave.core.model import ExecutorType, Function

PREFIX = "teaclave."
"""Arguments with this prefix are the platform's, never the function's."""

LIMITED = frozenset({ExecutorType.PYTHON, ExecutorType.WAMR, ExecutorType.WASI})
"""Executor types whose functions run under limits (built-ins run unsandboxed)."""


@dataclass(frozen=True)
class Limits:
    """CPU seconds, wall seconds from the function's start, and memory in MiB."""

    cpu_secs: float
    wall_secs: float
    memory_mb: int


_NAMES = {PREFIX + field.name: field.name for field in fields(Limits)}
ARGUMENTS = tuple(sorted(_NAMES))
"""The reserved argument names, one per limit."""


def is_reserved(key: str) -> bool:
    """Whether an argument name is the platform's (a limit, or reserved for one)."""
    return key.startswith(PREFIX)


def _number(key: str, raw: Any, maximum: float, whole: bool) -> float | int:
    """A limit's value: a JSON number or its decimal text, in (0, maximum]."""
    value = raw
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= maximum
        and (not whole or value == int(value))
    )
    if not valid:
        kind = "whole number of MiB" if whole else "number of seconds"
        raise invalid_argument(
            f"invalid limit: {key!r} must be a {kind} in (0, {maximum:g}], not {raw!r}"
        )
    return int(value) if whole else float(value)


def _name(key: str) -> str:
    """The limit a reserved argument sets; INVALID_ARGUMENT if it sets none."""
    name = _NAMES.get(key)
    if name is None:
        known = ", ".join(ARGUMENTS)
        raise invalid_argument(f"invalid limit: unknown platform argument {key!r} ({known})")
    return name


def override(values: Mapping[str, Any], defaults: Limits, maxima: Limits) -> Limits:
    """``defaults`` with the limits among ``values`` (reserved names); INVALID_ARGUMENT if bad."""
    chosen: dict[str, float | int] = {}
    for key in sorted(values):
        name = _name(key)
        whole = isinstance(getattr(defaults, name), int)
        chosen[name] = _number(key, values[key], getattr(maxima, name), whole)
    return Limits(**{**{f.name: getattr(defaults, f.name) for f in fields(Limits)}, **chosen})


def _check_executor(executor_type: ExecutorType, what: str) -> None:
    if executor_type not in LIMITED:
        raise invalid_argument(f"invalid {what}: {executor_type.value} functions take no limits")


def check_function(function: Function, maxima: Limits) -> None:
    """INVALID_ARGUMENT unless the limits a function declares are known and in range.

    An overwritable limit's default may be empty: each task must supply it.
    """
    reserved = [arg for arg in function.arguments if is_reserved(arg.key)]
    if reserved:
        _check_executor(function.executor_type, "function")
    for arg in reserved:
        _name(arg.key)
    fixed = {a.key: a.default_value for a in reserved if a.default_value or not a.allow_overwrite}
    override(fixed, maxima, maxima)


def split(
    arguments: str, defaults: Limits, maxima: Limits, executor_type: ExecutorType
) -> tuple[Limits, str]:
    """A task's limits, and its arguments (merged JSON, keys sorted) without them.

    INVALID_ARGUMENT if a limit is malformed, above its maximum, unknown, or set
    for an executor type that runs no limits.
    """
    merged: dict[str, Any] = json.loads(arguments or "{}")
    reserved = {key: merged.pop(key) for key in list(merged) if is_reserved(key)}
    if reserved:
        _check_executor(executor_type, "task")
    remaining = json.dumps(merged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return override(reserved, defaults, maxima), remaining

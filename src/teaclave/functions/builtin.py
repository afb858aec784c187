"""How a built-in function is declared: name, typed arguments, files and code."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.functions.runtime import Runtime

A = TypeVar("A")

LOGGER = "teaclave.functions"
"""The logger whose children built-ins log to (``logging.getLogger(__name__)``): their
records go to their task's log if it asked for one (``save_log``), else nowhere."""


class Usize(int):
    """An argument that must be a non-negative integer (Rust's ``usize``)."""

    MAX: ClassVar[int] = 2**64 - 1


class U32(Usize):
    """An argument that must be an integer from 0 to 2^32 - 1 (Rust's ``u32``)."""

    MAX = 2**32 - 1


class U8(Usize):
    """An argument that must be an integer from 0 to 255 (Rust's ``u8``)."""

    MAX = 255


_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    Usize: "a non-negative integer",
    U32: f"an integer from 0 to {U32.MAX}",
    U8: f"an integer from 0 to {U8.MAX}",
    float: "a number",
    bytes: "an array of integers from 0 to 255",
}


def _well_typed(kind: type, value: Any) -> bool:
    """Whether JSON ``value`` is a ``kind`` (true/false are never numbers, as in serde)."""
    if kind is not bool and isinstance(value, bool):
        return False
    if issubclass(kind, Usize):
        return isinstance(value, int) and 0 <= value <= kind.MAX
    if kind is float:
        return isinstance(value, int | float) and abs(value) <= sys.float_info.max  # finite
    if kind is bytes:
        return isinstance(value, list) and all(
            type(item) is int and 0 <= item < 256 for item in value
        )
    return isinstance(value, kind)


def _optional(hint: Any) -> tuple[type, bool]:
    """``(T, True)`` for a ``T | None`` hint, else ``(hint, False)``."""
    kinds = typing.get_args(hint)
    if type(None) not in kinds:
        return hint, False
    (kind,) = (k for k in kinds if k is not type(None))
    return kind, True


@dataclass(frozen=True)
class NoArguments:
    """The arguments of a function that takes none (any given are ignored)."""


FileNames = tuple[str, ...] | Callable[[A], tuple[str, ...]]
"""A built-in's input or output names: fixed, or derived from its arguments."""


def _cannot_deserialize(reason: str) -> TeaclaveError:
    return invalid_argument(f"Cannot deserialize arguments: {reason}")


@dataclass(frozen=True)
class Builtin(Generic[A]):
    """A built-in function.

    ``arguments`` is a dataclass whose fields (``str``, ``int``, :class:`Usize`,
    :class:`U32`, :class:`U8`, ``float``, ``bool``, or ``bytes`` from an array of
    integers) are the argument keys: required unless the field has a default, and
    ``T | None`` also accepts JSON null. ``inputs`` and ``outputs`` are the file names
    the function opens and creates, or functions of the arguments giving them
    (e.g. one input per party); see :meth:`file_names`.
    """

    name: str
    arguments: type[A]
    run: Callable[[A, Runtime], str]
    inputs: FileNames[A] = ()
    outputs: FileNames[A] = ()

    def file_names(self, arguments: A) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The inputs and outputs the function uses when run with ``arguments``."""
        inputs, outputs = self.inputs, self.outputs
        return (
            inputs(arguments) if callable(inputs) else inputs,
            outputs(arguments) if callable(outputs) else outputs,
        )

    def parse_arguments(self, text: str) -> A:
        """Decode the task's JSON argument object (extra keys are ignored)."""
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError:
            raise _cannot_deserialize("not valid JSON") from None
        if not isinstance(raw, dict):
            raise _cannot_deserialize("not a JSON object")
        hints = typing.get_type_hints(self.arguments)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self.arguments):  # type: ignore[arg-type]
            if field.name not in raw:
                if field.default is dataclasses.MISSING:
                    raise _cannot_deserialize(f"missing key {field.name!r}")
                continue
            value = raw[field.name]
            kind, nullable = _optional(hints[field.name])
            if value is None and nullable:
                values[field.name] = None
            elif _well_typed(kind, value):
                values[field.name] = kind(value)
            else:
                raise _cannot_deserialize(f"{field.name!r} must be {_TYPE_NAMES[kind]}")
        return self.arguments(**values)

    def invoke(self, arguments: str, runtime: Runtime) -> str:
        """Validate ``arguments``, then run the function; returns its summary."""
        return self.run(self.parse_arguments(arguments), runtime)

"""How a built-in function is declared: name, typed arguments, files and code."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.functions.runtime import Runtime

A = TypeVar("A")


class Usize(int):
    """An argument that must be a non-negative integer (Rust's ``usize``)."""


_JSON_TYPES: dict[type, tuple[type, ...]] = {
    str: (str,),
    bool: (bool,),
    int: (int,),
    Usize: (int,),
    float: (int, float),
}
_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    Usize: "a non-negative integer",
    float: "a number",
}


def _cannot_deserialize(reason: str) -> TeaclaveError:
    return invalid_argument(f"Cannot deserialize arguments: {reason}")


@dataclass(frozen=True)
class Builtin(Generic[A]):
    """A built-in function.

    ``arguments`` is a dataclass whose fields (``str``, ``int``, :class:`Usize`,
    ``float`` or ``bool``) are the required argument keys; ``inputs`` and ``outputs`` are
    the file names the function opens and creates.
    """

    name: str
    arguments: type[A]
    run: Callable[[A, Runtime], str]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

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
                raise _cannot_deserialize(f"missing key {field.name!r}")
            value, kind = raw[field.name], hints[field.name]
            # JSON true/false are never numbers (although bool is an int in Python).
            typed = (
                isinstance(value, _JSON_TYPES[kind])
                and (kind is bool or not isinstance(value, bool))
                and (kind is not Usize or (isinstance(value, int) and value >= 0))
            )
            if not typed:
                raise _cannot_deserialize(f"{field.name!r} must be {_TYPE_NAMES[kind]}")
            values[field.name] = kind(value)
        return self.arguments(**values)

    def invoke(self, arguments: str, runtime: Runtime) -> str:
        """Validate ``arguments``, then run the function; returns its summary."""
        return self.run(self.parse_arguments(arguments), runtime)

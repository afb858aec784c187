"""``builtin-echo`` (reference §7.1): returns its ``message`` argument."""

from __future__ import annotations

from dataclasses import dataclass

from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import Runtime


@dataclass(frozen=True)
class EchoArguments:
    """The message to return."""

    message: str


def echo(arguments: EchoArguments, runtime: Runtime) -> str:
    """The message, unchanged."""
    return arguments.message


BUILTIN = Builtin("builtin-echo", EchoArguments, echo)

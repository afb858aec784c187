"""``builtin-echo`` (reference §7.1): returns its ``message`` argument, and logs it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoArguments:
    """The message to return."""

    message: str


def echo(arguments: EchoArguments, runtime: Runtime) -> str:
    """The message, unchanged (and logged, as Teaclave's test builds do)."""
    log.info("%s", arguments.message)
    return arguments.message


BUILTIN = Builtin("builtin-echo", EchoArguments, echo)

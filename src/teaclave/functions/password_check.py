"""``builtin-password-check`` (reference §7.13): is a password in a list of exposed ones?

Input ``password``: its first line, trimmed, is the password (it must not be
empty). Input ``exposed_passwords``: one password per line, trimmed, read line
by line. Returns "true" or "false". No arguments (any are ignored), no outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import Runtime
from teaclave.functions.streams import decoded_blocks, text_lines

PASSWORD, EXPOSED = "password", "exposed_passwords"


@dataclass(frozen=True)
class PasswordCheckArguments:
    """None."""


def password_check(arguments: PasswordCheckArguments, runtime: Runtime) -> str:
    """ "true" if the password is listed, else "false"."""
    lines = text_lines(decoded_blocks(runtime.open_input(PASSWORD), PASSWORD))
    password = next(lines, "").strip()
    if not password:
        raise invalid_argument(f"{PASSWORD} is empty")
    exposed = text_lines(decoded_blocks(runtime.open_input(EXPOSED), EXPOSED))
    return "true" if any(line.strip() == password for line in exposed) else "false"


BUILTIN = Builtin(
    "builtin-password-check",
    PasswordCheckArguments,
    password_check,
    inputs=(PASSWORD, EXPOSED),
)

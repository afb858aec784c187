"""Every built-in function by name. Adding one: write its module, add it to the tuple."""

from __future__ import annotations

from typing import Any

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions import echo, ordered_set_intersect, ordered_set_join
from teaclave.functions.builtin import Builtin

BUILTINS: dict[str, Builtin[Any]] = {
    builtin.name: builtin
    for builtin in (echo.BUILTIN, ordered_set_intersect.BUILTIN, ordered_set_join.BUILTIN)
}


def lookup(name: str) -> Builtin[Any]:
    """The built-in function called ``name`` ("Function not found." otherwise)."""
    try:
        return BUILTINS[name]
    except KeyError:
        raise TeaclaveError(Status.NOT_FOUND, "Function not found.") from None

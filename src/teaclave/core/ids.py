"""External ids (``<prefix>-<uuid>``), as the API exchanges them (reference §3.1)."""

from __future__ import annotations

import uuid
from enum import StrEnum

from teaclave.core.errors import invalid_argument


class Kind(StrEnum):
    """Object kinds; the value is the external-id prefix."""

    INPUT = "input"
    OUTPUT = "output"
    FUNCTION = "function"
    TASK = "task"


_INVALID_MESSAGE = {
    Kind.INPUT: "invalid data id",
    Kind.OUTPUT: "invalid data id",
    Kind.FUNCTION: "invalid function id",
    Kind.TASK: "invalid task id",
}


def new_uuid() -> str:
    """A fresh random (v4) UUID, lowercase and hyphenated."""
    return str(uuid.uuid4())


def external_id(kind: Kind, object_uuid: str) -> str:
    """``<prefix>-<uuid>``."""
    return f"{kind.value}-{object_uuid}"


def parse_external_id(kind: Kind, text: str) -> str:
    """The UUID inside an external id of ``kind``; INVALID_ARGUMENT otherwise."""
    prefix, sep, rest = text.partition("-")
    if not sep or prefix != kind.value:
        raise invalid_argument(_INVALID_MESSAGE[kind])
    try:
        parsed = uuid.UUID(rest)
    except ValueError:
        raise invalid_argument(_INVALID_MESSAGE[kind]) from None
    if str(parsed) != rest.lower():
        raise invalid_argument(_INVALID_MESSAGE[kind])
    return str(parsed)

"""The platform's one exception type and its status codes.

Every failure that reaches a caller is a :class:`TeaclaveError` with a
:class:`Status` (numerically equal to the canonical gRPC codes) and a public
message. The RPC layer translates it to a gRPC status in one place; anything
else escaping a handler becomes INTERNAL "service internal error".
"""

from enum import IntEnum


class Status(IntEnum):
    """Canonical status codes (the same numbers as gRPC's)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class TeaclaveError(Exception):
    """A failure with a status code and a message safe to show the caller."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"TeaclaveError({self.status.name}, {self.message!r})"


def invalid_argument(message: str) -> TeaclaveError:
    """A malformed or out-of-range request field."""
    return TeaclaveError(Status.INVALID_ARGUMENT, message)


def permission_denied(message: str = "permission denied") -> TeaclaveError:
    """The caller may not do this (or the object is not theirs to see)."""
    return TeaclaveError(Status.PERMISSION_DENIED, message)


def unauthenticated(message: str = "authentication failed") -> TeaclaveError:
    """Missing, wrong or expired credentials."""
    return TeaclaveError(Status.UNAUTHENTICATED, message)

"""User roles (reference §2.1): ``PlatformAdmin``, ``FunctionOwner``,
``DataOwnerManager-<attr>``, ``DataOwner-<attr>``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from teaclave.core.errors import Status, TeaclaveError


class RoleKind(StrEnum):
    """The four roles (and ``Invalid`` for anything else)."""

    PLATFORM_ADMIN = "PlatformAdmin"
    FUNCTION_OWNER = "FunctionOwner"
    DATA_OWNER_MANAGER = "DataOwnerManager"
    DATA_OWNER = "DataOwner"
    INVALID = "Invalid"


_WITH_ATTRIBUTE = (RoleKind.DATA_OWNER_MANAGER, RoleKind.DATA_OWNER)


@dataclass(frozen=True)
class Role:
    """A role with its attribute (empty for PlatformAdmin and FunctionOwner)."""

    kind: RoleKind
    attribute: str = ""

    @classmethod
    def from_parts(cls, role: str, attribute: str) -> Role:
        """From the separate ``role``/``attribute`` registration fields.

        UNAUTHENTICATED "invalid role" for an unknown role, as Teaclave does.
        """
        try:
            kind = RoleKind(role)
        except ValueError:
            raise TeaclaveError(Status.UNAUTHENTICATED, "invalid role") from None
        if kind is RoleKind.INVALID:
            raise TeaclaveError(Status.UNAUTHENTICATED, "invalid role")
        return cls(kind, attribute if kind in _WITH_ATTRIBUTE else "")

    @classmethod
    def parse(cls, text: str) -> Role:
        """From the role string in tokens and metadata; unknown text gives ``Invalid``."""
        head, _, attribute = text.partition("-")
        try:
            kind = RoleKind(head)
        except ValueError:
            return cls(RoleKind.INVALID)
        if kind in _WITH_ATTRIBUTE:
            return cls(kind, attribute)
        if attribute or kind is RoleKind.INVALID:
            return cls(RoleKind.INVALID)
        return cls(kind)

    def __str__(self) -> str:
        if self.kind in _WITH_ATTRIBUTE:
            return f"{self.kind.value}-{self.attribute}"
        return self.kind.value

    @property
    def is_admin(self) -> bool:
        """PlatformAdmin."""
        return self.kind is RoleKind.PLATFORM_ADMIN

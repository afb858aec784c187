"""The authentication service's rules (reference §2.2), over the account table.

All refusals are UNAUTHENTICATED, with Teaclave's messages (reference §2.4).
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable

from teaclave.core.errors import Status, TeaclaveError, unauthenticated
from teaclave.core.roles import Role, RoleKind
from teaclave.services.authentication.throttle import LoginThrottle
from teaclave.services.authentication.tokens import Claims, TokenSigner
from teaclave.services.authentication.users import RetiredId, User, Users

THROTTLED = "authentication failed: too many failed attempts, try again later"
"""Refusal of a login while its account or source address is locked out."""


def refused(message: str) -> TeaclaveError:
    """This service's error: always UNAUTHENTICATED, the message tells why."""
    return TeaclaveError(Status.UNAUTHENTICATED, message)


def may_register(caller: Role, new: Role) -> bool:
    """PlatformAdmin: any role; DataOwnerManager(a): DataOwner(a).

    Teaclave also lets a FunctionOwner create a DataOwnerManager of any
    attribute, who may then reset the password of every DataOwner of that
    attribute: an account takeover (§11.2). Here only PlatformAdmin can.
    """
    if caller.kind is RoleKind.DATA_OWNER_MANAGER:
        return new == Role(RoleKind.DATA_OWNER, caller.attribute)
    return caller.is_admin


def may_manage(caller: Role, target: Role) -> bool:
    """PlatformAdmin: anyone; DataOwnerManager(a): users that are DataOwner(a)."""
    if caller.kind is RoleKind.DATA_OWNER_MANAGER:
        return target == Role(RoleKind.DATA_OWNER, caller.attribute)
    return caller.is_admin


def may_update(caller: Role, target: Role, new: Role) -> bool:
    """PlatformAdmin: anything; DataOwnerManager(a): DataOwner(a) stays DataOwner(a).

    Teaclave checks only the new role, letting a manager take over any account
    (reference §11.2); here the target must already be one of the manager's.
    """
    return may_manage(caller, target) and (caller.is_admin or new == target)


class Bootstrap(enum.Enum):
    """What :meth:`Accounts.ensure_user` found."""

    CREATED = "created"
    EXISTS = "exists"
    DELETED = "deleted"


def _role_of(user: User) -> Role:
    return Role.parse(user.role)


class Accounts:
    """User management, login and token checks."""

    def __init__(
        self,
        users: Users,
        signer: TokenSigner,
        throttle: LoginThrottle,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._users = users
        self._signer = signer
        self._throttle = throttle
        self._clock = clock

    def login(self, user_id: str, password: str, address: str) -> str:
        """A fresh token for a login from ``address`` (a throttle key).

        UNAUTHENTICATED "authentication failed" for any mismatch, and
        :data:`THROTTLED` while the account or the address is locked out
        (alike for unknown ids, so it reveals nothing about existence).
        """
        if not user_id or not password:
            raise unauthenticated()
        attempt = self._throttle.reserve(user_id, address)
        if attempt is None:
            raise refused(THROTTLED)
        with attempt:
            user = self._users.get(user_id)
            if not self._users.check_password(user, password) or user is None:
                attempt.failed()
                raise unauthenticated()
            attempt.succeeded()
        return self._signer.issue(user, self._clock())

    def password_is(self, user_id: str, password: str) -> bool:
        """Whether the account ``user_id`` exists and ``password`` is its password (unthrottled)."""
        user = self._users.get(user_id)
        return user is not None and self._users.check_password(user, password)

    def authenticate(self, user_id: str, token: str) -> tuple[User, Claims]:
        """The caller's account and token claims, if the token is current."""
        claims = self._signer.verify(token, user_id)
        user = self._users.get(user_id)
        if user is None or (user.generation, user.role) != (claims.gen, claims.role):
            raise unauthenticated()
        return user, claims

    def register(self, caller: User, user_id: str, password: str, role: Role) -> None:
        """Create an account."""
        if not user_id:
            raise refused("invalid user id")
        if not may_register(_role_of(caller), role):
            raise refused("permission denied")
        if not password:
            raise refused("invalid password")

        def create(current: User | None) -> User:
            if current is not None:
                raise refused("user id exist")
            return self._users.new_user(user_id, password, role)

        self._users.change(user_id, create)

    def update(self, caller: User, user_id: str, password: str, role: Role) -> None:
        """Replace an account's password and role."""
        if not user_id:
            raise refused("invalid user id")
        if not password:
            raise refused("invalid password")

        def update(current: User | None) -> User:
            if current is None:
                raise refused("invalid user id")
            if not may_update(_role_of(caller), _role_of(current), role):
                raise refused("permission denied")
            return current.with_credentials(self._users.hash_password(password), str(role))

        self._users.change(user_id, update)

    def change_password(self, caller: User, password: str) -> None:
        """Set the caller's own password."""
        if not password:
            raise unauthenticated()

        def update(current: User | None) -> User:
            if current is None:
                raise unauthenticated()
            return current.with_credentials(self._users.hash_password(password), current.role)

        self._users.change(caller.id, update)

    def reset_password(self, caller: User, user_id: str) -> str:
        """Give an account a new random password (32 lowercase hex digits) and return it."""
        password = uuid.uuid4().hex

        def reset(current: User) -> User:
            return current.with_credentials(self._users.hash_password(password), current.role)

        self._manage(caller, user_id, reset)
        return password

    def delete(self, caller: User, user_id: str) -> None:
        """Delete an account."""
        self._manage(caller, user_id, lambda _: None)

    def list_users(self, caller: User, attribute: str) -> list[str]:
        """PlatformAdmin: every id; DataOwnerManager(a) asking for a: the DataOwner(a) ids."""
        if not attribute:
            raise refused("invalid user id")
        role = _role_of(caller)
        if role.is_admin:
            return [user.id for user in self._users.all()]
        if role.kind is not RoleKind.DATA_OWNER_MANAGER or role.attribute != attribute:
            raise refused("permission denied")
        wanted = str(Role(RoleKind.DATA_OWNER, attribute))
        return [user.id for user in self._users.all() if user.role == wanted]

    def ensure_user(self, user_id: str, password: str, role: Role) -> Bootstrap:
        """Create the account unless it exists or was deleted; which of the three it was."""
        outcome = Bootstrap.EXISTS

        def create(current: User | None) -> User:
            nonlocal outcome
            outcome = Bootstrap.EXISTS if current else Bootstrap.CREATED
            return current or self._users.new_user(user_id, password, role)

        try:
            self._users.change(user_id, create)
        except RetiredId:
            return Bootstrap.DELETED
        return outcome

    def _manage(self, caller: User, user_id: str, change: Callable[[User], User | None]) -> None:
        if not user_id:
            raise refused("invalid user id")

        def checked(current: User | None) -> User | None:
            if current is None or not may_manage(_role_of(caller), _role_of(current)):
                raise refused("permission denied")
            return change(current)

        self._users.change(user_id, checked)

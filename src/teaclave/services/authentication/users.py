"""User accounts in the store: argon2id password hashes and token generations.

Every account carries a token generation. Tokens name the generation they were
issued for; any change of credentials (password, role) moves it on, so older
tokens stop working. A new account starts at a random generation.

A deleted account leaves a tombstone: its id is never given to anyone else,
who would otherwise inherit the files, tasks and functions recorded under it.

Accounts read for a login or a token check come from a
:class:`~teaclave.storage.cache.RecordCache` when it has them; changes of an
account always read it from storage, and put what they commit into the cache.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from teaclave.config import AuthConfig
from teaclave.core import codec
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.roles import Role
from teaclave.storage import keys
from teaclave.storage.api import Conflict, Store, Write
from teaclave.storage.cache import RecordCache

MAX_CACHED_USERS = 10_000
"""Accounts the cache keeps at most (well under 1 KB each)."""


@dataclass(frozen=True)
class User:
    """A stored account."""

    id: str
    role: str
    password_hash: str
    generation: int
    deleted: bool = False

    def with_credentials(self, password_hash: str, role: str) -> User:
        """This account with a new password hash and role (older tokens revoked)."""
        return replace(self, password_hash=password_hash, role=role, generation=self.generation + 1)


def _tombstone(user: User | None) -> User:
    """What a deleted account leaves: no password, older tokens revoked, id kept."""
    if user is None:
        raise ValueError("only an existing account can be deleted")
    return replace(user, password_hash="", deleted=True, generation=user.generation + 1)


class RetiredId(TeaclaveError):
    """The id belonged to a deleted account: it is never given out again."""

    def __init__(self) -> None:
        super().__init__(Status.UNAUTHENTICATED, "user id exist")


Change = Callable[[User | None], User | None]
"""Given the current account (None: absent), the account to store (None: delete)."""


class Users:
    """The account table, over a :class:`Store` with optimistic concurrency."""

    def __init__(
        self,
        store: Store,
        config: AuthConfig,
        hasher: type[PasswordHasher] = PasswordHasher,
        cache: RecordCache[User] | None = None,
    ) -> None:
        """``hasher``: the argon2id hasher class, given ``config``'s cost (tests count
        calls); ``cache``: of the accounts by key, kept exact by this object's commits and
        by a watch of ``user/`` (:meth:`RecordCache.changed`) (default: a new one)."""
        self._store = store
        self._cache = cache if cache is not None else RecordCache[User](MAX_CACHED_USERS)
        self._hasher = hasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
            type=Type.ID,
        )
        # Verified for unknown ids, so a login's timing does not reveal whether an id exists.
        self._decoy_hash = self._hasher.hash(secrets.token_hex(16))

    def hash_password(self, password: str) -> str:
        """An argon2id hash of ``password`` with a fresh salt."""
        return self._hasher.hash(password)

    def new_user(self, user_id: str, password: str, role: Role) -> User:
        """A new account record (not yet stored)."""
        return User(user_id, str(role), self.hash_password(password), secrets.randbits(62))

    def check_password(self, user: User | None, password: str) -> bool:
        """Whether ``password`` is ``user``'s (always False, in the same time, for None)."""
        try:
            self._hasher.verify(user.password_hash if user else self._decoy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return user is not None

    def get(self, user_id: str) -> User | None:
        """The account ``user_id``, if any (from the cache when it has it)."""
        key = keys.USER + user_id
        user = self._cache.get(key)
        if user is None:
            epoch = self._cache.epoch()
            user = self._read(user_id)[0]
            if user is not None:
                self._cache.fill(key, user, epoch)
        return None if user is None or user.deleted else user

    def all(self) -> list[User]:
        """Every account, in id order."""
        users = (codec.decode(User, r.value) for r in self._store.scan(keys.USER))
        return [user for user in users if not user.deleted]

    def change(self, user_id: str, change: Change) -> User | None:
        """Apply ``change`` to the current account atomically and return the result.

        ``change`` may raise to refuse; it is re-run on the fresh account whenever
        a concurrent writer got in first. Nothing is written when it returns the
        account unchanged.
        """
        key = keys.USER + user_id
        while True:
            stored, version = self._read(user_id)
            current = None if stored is None or stored.deleted else stored
            updated = change(current)
            if updated == current:
                return current
            if stored is not None and stored.deleted:
                raise RetiredId
            record = updated or _tombstone(stored)
            epoch = self._cache.epoch()
            try:
                self._store.commit([(key, version)], [Write(key, codec.encode(record))])
            except Conflict:
                continue
            except BaseException:
                self._cache.forget([key])  # committed or not: unknown
                raise
            self._cache.put(key, record, epoch)
            return updated

    def _read(self, user_id: str) -> tuple[User | None, int]:
        record = self._store.get([keys.USER + user_id])[0]
        if not record.exists:
            return None, 0
        return codec.decode(User, record.value), record.version

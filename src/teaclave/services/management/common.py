"""What every management operation shares: the caller, and transactions over the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from teaclave.core.access import Subject
from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.storage.api import Conflict, Store, Write

T = TypeVar("T")
R = TypeVar("R")

COMMIT_ATTEMPTS = 16


Caller = Subject
"""The authenticated user of a call, as the frontend names them."""


class Txn:
    """Reads (remembering each key's version) and buffered writes for one commit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._versions: dict[str, int] = {}
        self._reads: dict[str, bytes | None] = {}
        self._writes: dict[str, bytes | None] = {}

    def find(self, cls: type[T], key: str) -> T | None:
        """The record at ``key`` (None if absent), seeing this transaction's own writes.

        The version read becomes a check of the commit; a key is read once.
        """
        if key in self._writes:
            value = self._writes[key]
        else:
            self.prefetch([key])
            value = self._reads[key]
        return None if value is None else decode(cls, value)

    def version(self, key: str) -> int:
        """The version ``key`` was read at (0: absent); KeyError if it was not read."""
        return self._versions[key]

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read those of ``keys`` not read yet, in one round trip (for :meth:`find` to see)."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._reads and k not in self._writes]
        for record in self.store.get(missing) if missing else ():
            self._versions[record.key] = record.version
            self._reads[record.key] = record.value if record.exists else None

    def load(self, cls: type[T], key: str, missing: TeaclaveError) -> T:
        """The record at ``key``; raises ``missing`` if absent."""
        found = self.find(cls, key)
        if found is None:
            raise missing
        return found

    def put(self, key: str, record: Any) -> None:
        """Write a core record at ``key``."""
        self._writes[key] = encode(record)

    def put_bytes(self, key: str, value: bytes) -> None:
        """Write raw bytes at ``key``."""
        self._writes[key] = value

    def delete(self, key: str) -> None:
        """Delete ``key``."""
        self._writes[key] = None

    def commit(self) -> None:
        """Commit the writes if nothing read has changed (:class:`Conflict` otherwise)."""
        if self._writes:
            self.store.commit(
                list(self._versions.items()),
                [Write(key, value) for key, value in self._writes.items()],
            )


def transact(store: Store, body: Callable[[Txn], R]) -> R:
    """Run ``body`` in a fresh :class:`Txn` and commit, re-running it on conflicts."""
    for _ in range(COMMIT_ATTEMPTS):
        txn = Txn(store)
        result = body(txn)
        try:
            txn.commit()
        except Conflict:
            continue
        return result
    raise TeaclaveError(Status.ABORTED, "too many concurrent updates, try again")

"""What every management operation shares: the caller, and transactions over the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from teaclave.core.access import Subject
from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.lru import Lru
from teaclave.storage import keys
from teaclave.storage.api import Changes, Conflict, Store, Write

T = TypeVar("T")
R = TypeVar("R")

COMMIT_ATTEMPTS = 16
MAX_REMEMBERED = 4096
"""Most records a management service remembers (:class:`Remembered`)."""
REMEMBERED = (keys.TASK, keys.FUNCTION, keys.USAGE)
"""What it remembers: the records a task's way from creation to result reads."""


Caller = Subject
"""The authenticated user of a call, as the frontend names them."""


class Remembered:
    """Records of tasks, functions and their usage (:data:`REMEMBERED`) as this service
    last saw them: read or written by its own transactions, or brought by its watch of
    :data:`~teaclave.storage.keys.TASK` (``changed``).

    A transaction may take its first reads from here instead of storage
    (:func:`transact` with ``optimistic``): its commit checks each version read, and a
    failure it decides on them is decided again on storage, so a record out of date
    costs a second attempt, never a wrong answer.
    """

    def __init__(
        self,
        size: int = MAX_REMEMBERED,
        *,
        on_commit: Callable[[int, Mapping[str, bytes | None]], None] = lambda *_: None,
    ) -> None:
        """``on_commit``: told of each commit of this service's transactions (its version,
        its writes), after they are remembered."""
        self._lock = threading.Lock()
        self._records = Lru[str, tuple[bytes | None, int]](size)
        self._on_commit = on_commit

    def get(self, key: str) -> tuple[bytes | None, int] | None:
        """The value (None: absent) and version last seen of ``key``, if remembered."""
        with self._lock:
            return self._records.get(key)

    def saw(self, records: Mapping[str, bytes | None], version: int) -> None:
        """``records`` were at ``version`` (None: deleted, forgotten; only those
        :data:`REMEMBERED` are kept)."""
        with self._lock:
            for key, value in records.items():
                known = self._records.get(key)
                if value is None:  # storage reads an absent key at version 0: not worth it
                    self._records.pop(key)
                elif key.startswith(REMEMBERED) and (known is None or known[1] <= version):
                    self._records.put(key, (value, version))

    def committed(self, writes: Mapping[str, bytes | None], version: int) -> None:
        """This service committed ``writes`` at ``version``."""
        self.saw(writes, version)
        self._on_commit(version, writes)

    def changed(self, changes: Changes) -> None:
        """A batch of the watch (with values): its records as they were sent."""
        if changes.lost:
            with self._lock:
                self._records.clear()
            return
        for record in changes.records:
            self.saw({record.key: record.value if record.exists else None}, record.version)


class Txn:
    """Reads (remembering each key's version) and buffered writes for one commit.

    ``remembered``: records this commit leaves are remembered there; ``optimistic``:
    reads take what it remembers first.
    """

    def __init__(
        self, store: Store, remembered: Remembered | None = None, *, optimistic: bool = False
    ) -> None:
        self.store = store
        self._remembered = remembered
        self._optimistic = optimistic and remembered is not None
        self.read_remembered = False
        """Whether a read took a remembered record."""
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
        if self._optimistic and self._remembered is not None:
            for key in list(missing):
                if (found := self._remembered.get(key)) is not None:
                    self._reads[key], self._versions[key] = found
                    self.read_remembered = True
                    missing.remove(key)
        for record in self.store.get(missing) if missing else ():
            self._versions[record.key] = record.version
            self._reads[record.key] = record.value if record.exists else None
            if self._remembered is not None and record.exists:
                self._remembered.saw({record.key: record.value}, record.version)

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
            version = self.store.commit(
                list(self._versions.items()),
                [Write(key, value) for key, value in self._writes.items()],
            )
            if self._remembered is not None:
                self._remembered.committed(self._writes, version)


def transact(
    store: Store,
    body: Callable[[Txn], R],
    remembered: Remembered | None = None,
    *,
    optimistic: bool = False,
) -> R:
    """Run ``body`` in a fresh :class:`Txn` and commit, re-running it on conflicts.

    ``optimistic``: the first attempt reads what ``remembered`` holds; if ``body`` fails
    on what it read there, it runs again on storage.
    """
    for attempt in range(COMMIT_ATTEMPTS):
        txn = Txn(store, remembered, optimistic=optimistic and attempt == 0)
        try:
            result = body(txn)
        except TeaclaveError:
            if txn.read_remembered:
                continue
            raise
        try:
            txn.commit()
        except Conflict:
            continue
        return result
    raise TeaclaveError(Status.ABORTED, "too many concurrent updates, try again")

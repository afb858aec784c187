"""Records a service read or wrote, kept in memory by key: exact, and bounded.

For a service that is the main writer of a namespace (authentication: ``user/``).
It stays exact by three rules. (1) The service's own commits update their keys
here before the call that made them returns (:meth:`RecordCache.put`). (2) Commits
of other writers are learnt from a :class:`~teaclave.storage.watch.Watcher` of the
namespace: their keys are forgotten, and every key is when the watch lost changes
(:meth:`RecordCache.changed`). (3) A read from storage is kept only if nothing was
committed or forgotten here since it began (:meth:`RecordCache.epoch`, taken
before it), so that it never replaces newer news. Beyond ``max_entries`` the least
recently used are forgotten.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

from teaclave.core.lru import Lru
from teaclave.storage.api import Changes

V = TypeVar("V")


class RecordCache(Generic[V]):
    """Decoded records by key, at most ``max_entries``."""

    def __init__(self, max_entries: int) -> None:
        self._entries = Lru[str, V](max_entries)
        self._epoch = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        """The record at ``key`` if it is kept here."""
        with self._lock:
            return self._entries.get(key)

    def epoch(self) -> int:
        """Taken before reading a record from storage or committing one; for
        :meth:`fill` or :meth:`put`."""
        with self._lock:
            return self._epoch

    def fill(self, key: str, value: V, epoch: int) -> None:
        """Keep ``value``, read from storage since ``epoch``, unless anything changed here
        since."""
        with self._lock:
            if epoch == self._epoch:
                self._entries.put(key, value)

    def put(self, key: str, value: V, epoch: int) -> None:
        """Keep ``value``, just committed at ``key`` by this service (the commit began at
        ``epoch``); if anything changed here meanwhile (a concurrent commit of the key
        may have come after this one), forget the key instead."""
        with self._lock:
            if epoch == self._epoch:
                self._entries.put(key, value)
            else:
                self._entries.pop(key)
            self._epoch += 1

    def forget(self, keys: Iterable[str]) -> None:
        """Forget these keys (they changed, or may have)."""
        with self._lock:
            for key in keys:
                self._entries.pop(key)
            self._epoch += 1

    def changed(self, changes: Changes) -> None:
        """A watch saw ``changes``: forget their keys (every key when changes were lost)."""
        if not changes.lost:
            self.forget(changes.keys)
            return
        with self._lock:
            self._entries.clear()
            self._epoch += 1

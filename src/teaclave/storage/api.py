"""The storage interface every backend and the remote client implement.

A versioned key/value store with atomic conditional commits (optimistic
concurrency): read records with their versions, then commit writes on the
condition that those versions are unchanged. Version 0 means "absent".

Key layout (one namespace per record kind; see :mod:`teaclave.storage.keys`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from teaclave.core.errors import Status, TeaclaveError


@dataclass(frozen=True)
class Record:
    """A key's value and version (version 0 and empty value: absent)."""

    key: str
    value: bytes
    version: int

    @property
    def exists(self) -> bool:
        """Whether the key is present."""
        return self.version != 0


@dataclass(frozen=True)
class Write:
    """Put ``value`` at ``key``, or delete the key when ``value`` is None."""

    key: str
    value: bytes | None


class Conflict(TeaclaveError):
    """A commit's check failed: someone else wrote first. Re-read and retry."""

    def __init__(self, key: str) -> None:
        super().__init__(Status.ABORTED, f"concurrent update of {key}")
        self.key = key


class Store(Protocol):
    """A versioned key/value store."""

    def get(self, keys: Sequence[str]) -> list[Record]:
        """One record per key, in order (absent keys have version 0)."""
        ...

    def scan(self, prefix: str, *, start_after: str = "", limit: int = 0) -> list[Record]:
        """Records whose key starts with ``prefix``, in key order (``limit`` 0: all)."""
        ...

    def commit(self, checks: Sequence[tuple[str, int]], writes: Sequence[Write]) -> int:
        """Apply ``writes`` atomically if every ``(key, version)`` check holds.

        Returns the new version given to the written keys; raises
        :class:`Conflict` (nothing written) when a check fails.
        """
        ...


@dataclass(frozen=True)
class Changes:
    """What a watch saw: the keys under its prefixes that commits after ``since`` touched."""

    version: int
    """The version to watch from next."""
    keys: tuple[str, ...] = ()
    lost: bool = False
    """Not every commit after ``since`` is known: anything watched may have changed."""
    records: tuple[Record, ...] = ()
    """Asked for: the record of each key, as of when the changes were sent (at that
    key's version or later)."""

    @property
    def any(self) -> bool:
        """Whether anything watched (may have) changed."""
        return self.lost or bool(self.keys)


class ChangeStream(Protocol):
    """A watch of some key prefixes: the changes after a version, as they are made."""

    def __iter__(self) -> Iterator[Changes]:
        """The changes after the watch's ``since`` at once (perhaps none), then each
        batch as it comes, until the watch's lifetime ends (with the changes then,
        perhaps none) or it is cancelled, or fails."""
        ...

    def cancel(self) -> None:
        """End the watch (from any thread)."""
        ...


class Watchable(Protocol):
    """Commits, watched by key prefix (a stream)."""

    def watch(
        self,
        prefixes: Sequence[str],
        since: int,
        lifetime: float,
        *,
        with_values: bool = False,
        unless_writer: str = "",
    ) -> ChangeStream:
        """The changes under ``prefixes`` after version ``since``, followed for about
        ``lifetime`` seconds (``with_values``: with their keys' records), leaving out the
        commits of ``unless_writer`` (a watcher's own, which it knows already)."""
        ...

"""Recent commits in memory, so that a watcher learns of one the moment it is made.

The store that owns the database publishes each commit (its version and the keys
it wrote or deleted) in version order. :meth:`ChangeLog.watch` answers with the
keys under the watched prefixes that commits after ``since`` touched, waiting for
such a commit if there is none yet. Only the newest commits are kept: a watcher
further behind, or one whose ``since`` comes from before this process started, is
told that its changes were ``lost`` and re-reads what it watches.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from teaclave.storage.api import Changes

MAX_KEYS = 65536
"""Keys remembered over all the commits kept (the oldest commits are forgotten first)."""
MAX_REPORTED = 1000
"""Most keys one answer names; a watcher with more changes is told they were lost."""


class ChangeLog:
    """The commits after ``version`` (the store's version when it opened), newest kept."""

    def __init__(self, version: int, *, max_keys: int = MAX_KEYS) -> None:
        self._floor = version  # commits up to this version are not known
        self._version = version  # the newest commit published
        self._entries: deque[tuple[int, tuple[str, ...]]] = deque()
        self._kept = 0
        self._max_keys = max_keys
        self._closed = False
        self._changed = threading.Condition()

    def publish(self, version: int, keys: Sequence[str]) -> None:
        """Record that commit ``version`` wrote or deleted ``keys``; wake the watchers."""
        with self._changed:
            self._entries.append((version, tuple(keys)))
            self._version = version
            self._kept += len(keys)
            while self._kept > self._max_keys and len(self._entries) > 1:
                forgotten, old = self._entries.popleft()
                self._kept -= len(old)
                self._floor = forgotten
            self._changed.notify_all()

    def _after(self, prefixes: tuple[str, ...], since: int) -> Changes:
        if not self._floor <= since <= self._version:
            return Changes(self._version, lost=True)
        found: dict[str, None] = {}
        for version, keys in reversed(self._entries):
            if version <= since:
                break
            found.update(dict.fromkeys(k for k in keys if k.startswith(prefixes)))
        if len(found) > MAX_REPORTED:
            return Changes(self._version, lost=True)
        return Changes(self._version, tuple(sorted(found)))

    def watch(
        self,
        prefixes: Sequence[str],
        since: int,
        timeout: float,
        *,
        active: Callable[[], bool] = lambda: True,
    ) -> Changes:
        """The changes under ``prefixes`` after ``since``, once there are any, or none
        after ``timeout`` seconds, when ``active()`` turns false (checked whenever
        :meth:`interrupt` is called) or once the log is closed."""
        wanted = tuple(prefixes)
        with self._changed:
            self._changed.wait_for(
                lambda: self._closed or not active() or self._after(wanted, since).any, timeout
            )
            return self._after(wanted, since)

    def interrupt(self) -> None:
        """Have every waiting watcher check whether it is still ``active``."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """Answer every watcher now, and every later one at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

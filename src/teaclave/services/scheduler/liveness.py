"""Executor liveness, in memory: last heartbeat per executor and the tasks it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection


class Liveness:
    """Which executors were seen lately, and which tasks each of them holds."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._last_seen: dict[str, float] = {}
        self._tasks: dict[str, set[str]] = {}

    def seen(self, executor_id: str) -> None:
        """Record a sign of life from ``executor_id`` now."""
        with self._lock:
            self._last_seen[executor_id] = self._clock()

    def assign(self, executor_id: str, task_uuid: str, *, since: float | None = None) -> None:
        """``executor_id`` holds ``task_uuid``.

        ``since``: when an executor not yet seen counts as last seen (default: now).
        """
        with self._lock:
            self._last_seen.setdefault(executor_id, self._clock() if since is None else since)
            self._tasks.setdefault(executor_id, set()).add(task_uuid)

    def release(self, executor_id: str, task_uuid: str) -> None:
        """``executor_id`` no longer holds ``task_uuid``."""
        with self._lock:
            self._tasks.get(executor_id, set()).discard(task_uuid)

    def take_missing(self, executor_id: str, running: Collection[str]) -> list[str]:
        """Release and return the tasks ``executor_id`` holds that are not ``running``."""
        with self._lock:
            held = self._tasks.get(executor_id, set())
            missing = held - set(running)
            held -= missing
            return sorted(missing)

    def now(self) -> float:
        """The clock's current reading."""
        return self._clock()

    def expire(self) -> list[tuple[str, str]]:
        """Forget executors silent longer than the timeout; their ``(executor, task)`` pairs."""
        with self._lock:
            deadline = self._clock() - self._timeout
            lost = [e for e, seen in self._last_seen.items() if seen < deadline]
            orphans: list[tuple[str, str]] = []
            for executor_id in lost:
                del self._last_seen[executor_id]
                orphans.extend((executor_id, t) for t in sorted(self._tasks.pop(executor_id, ())))
            return orphans

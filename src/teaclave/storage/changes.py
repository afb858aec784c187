"""Recent commits in memory, so that a watcher learns of one the moment it is made.

The store that owns the database publishes each commit (its version, the keys
it wrote or deleted, and who made it) in version order. :meth:`ChangeLog.wait`
answers with the keys under the watched prefixes that commits after ``since``
touched (leaving out those of one writer, if asked: a watcher's own), waiting for
such a commit if there is none yet; :meth:`ChangeLog.watch` follows them as a
stream of such answers. Only the newest commits are kept: a watcher further
behind, or one whose ``since`` comes from before this process started, is told
that its changes were ``lost`` and re-reads what it watches.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from teaclave.storage.api import Changes

MAX_KEYS = 65536
"""Keys remembered over all the commits kept (the oldest commits are forgotten first)."""
MAX_REPORTED = 1000
"""Most keys one answer names; a watcher with more changes is told they were lost."""


def _left_out(writer: str, unless_writer: str) -> bool:
    """Whether a commit of ``writer`` is left out of a watch ``unless_writer``."""
    return bool(unless_writer) and writer == unless_writer


class ChangeLog:
    """The commits after ``version`` (the store's version when it opened), newest kept."""

    def __init__(
        self,
        version: int,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: what the lifetime of a watch is measured by, in seconds."""
        self._clock = clock
        self._floor = version  # commits up to this version are not known
        self._version = version  # the newest commit published
        self._entries: deque[tuple[int, tuple[str, ...], str]] = deque()  # version, keys, writer
        self._kept = 0
        self._max_keys = max_keys
        self._closed = False
        self._changed = threading.Condition()

    def publish(self, version: int, keys: Sequence[str], writer: str = "") -> None:
        """Record that commit ``version`` of ``writer`` ("": unnamed) wrote or deleted
        ``keys``; wake the watchers."""
        with self._changed:
            self._entries.append((version, tuple(keys), writer))
            self._version = version
            self._kept += len(keys)
            while self._kept > self._max_keys and len(self._entries) > 1:
                forgotten, old, _ = self._entries.popleft()
                self._kept -= len(old)
                self._floor = forgotten
            self._changed.notify_all()

    def _after(self, prefixes: tuple[str, ...], since: int, unless_writer: str) -> Changes:
        if not self._floor <= since <= self._version:
            return Changes(self._version, lost=True)
        found: dict[str, None] = {}
        for version, keys, writer in reversed(self._entries):
            if version <= since:
                break
            if not _left_out(writer, unless_writer):
                found.update(dict.fromkeys(k for k in keys if k.startswith(prefixes)))
        if len(found) > MAX_REPORTED:
            return Changes(self._version, lost=True)
        return Changes(self._version, tuple(sorted(found)))

    def wait(
        self,
        prefixes: Sequence[str],
        since: int,
        timeout: float,
        *,
        active: Callable[[], bool] = lambda: True,
        unless_writer: str = "",
    ) -> Changes:
        """The changes under ``prefixes`` after ``since`` (but those of ``unless_writer``),
        once there are any, or none after ``timeout`` seconds, when ``active()`` turns
        false (checked whenever :meth:`interrupt` is called) or once the log is closed."""
        wanted = tuple(prefixes)
        checked = since  # commits up to here touched nothing watched

        def answer_now() -> bool:
            nonlocal checked
            if self._closed or not active() or not self._floor <= since <= self._version:
                return True
            for version, keys, writer in reversed(self._entries):  # the commits not checked yet
                if version <= checked:
                    break
                if not _left_out(writer, unless_writer) and any(
                    key.startswith(wanted) for key in keys
                ):
                    return True
            checked = self._version
            return False

        with self._changed:
            self._changed.wait_for(answer_now, timeout)
            return self._after(wanted, since, unless_writer)

    def watch(
        self,
        prefixes: Sequence[str],
        since: int,
        lifetime: float,
        *,
        with_values: bool = False,
        unless_writer: str = "",
    ) -> Following:
        """The changes under ``prefixes`` after ``since`` (but those of ``unless_writer``),
        followed for ``lifetime`` seconds (a log holds no values: ``with_values`` is the
        storage service's to serve)."""
        if with_values:
            raise ValueError("a change log holds no values")
        return Following(
            self, tuple(prefixes), since, lifetime, self._clock, unless_writer=unless_writer
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def interrupt(self) -> None:
        """Have every waiting watcher check whether it is still ``active``."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """Answer every watcher now, and every later one at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class Following:
    """A stream of the changes under some prefixes (a
    :class:`~teaclave.storage.api.ChangeStream`). Iterating it yields the changes
    after ``since`` at once (perhaps none), then each batch of changes as it comes
    (what piled up while the consumer was busy with the previous one: one batch),
    and, once ``lifetime`` seconds (by ``clock``) have passed since it was made,
    the changes then (perhaps none), and ends. It ends early, with nothing more, on
    :meth:`cancel` or once the log closes. Iterate it once.
    """

    def __init__(
        self,
        log: ChangeLog,
        prefixes: tuple[str, ...],
        since: int,
        lifetime: float,
        clock: Callable[[], float],
        *,
        unless_writer: str = "",
    ) -> None:
        self._log = log
        self._prefixes = prefixes
        self._unless_writer = unless_writer
        self._since = since
        self._clock = clock
        self._deadline = clock() + lifetime
        self._cancelled = threading.Event()

    def _active(self) -> bool:
        return not self._cancelled.is_set()

    def __iter__(self) -> Iterator[Changes]:
        since, remaining, first = self._since, 0.0, True  # the first answer at once
        while True:
            changes = self._log.wait(
                self._prefixes,
                since,
                remaining,
                active=self._active,
                unless_writer=self._unless_writer,
            )
            if self._log.closed or not self._active():
                return
            remaining = max(self._deadline - self._clock(), 0.0)
            if first or changes.any or not remaining:
                yield changes
            if not remaining:
                return
            since, first = changes.version, False

    def cancel(self) -> None:
        """End the stream (a consumer waiting for the next batch gets none)."""
        self._cancelled.set()
        self._log.interrupt()

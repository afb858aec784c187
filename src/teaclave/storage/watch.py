"""Following a store's commits from one thread, for many local waiters (long-polls).

A :class:`Watcher` keeps one watch stream of its prefixes open against a
:class:`~teaclave.storage.api.Watchable` (the storage service), re-opened from
the last version it saw when it ends or fails, and wakes each waiter whose key
prefix a commit touched (every waiter when changes were lost, e.g. across a
restart of the storage service). A waiter registers *before* it reads what it
waits for, so no commit after that read goes unnoticed. At most ``max_waiters``
wait at once (each holds a server thread of its service); one more gets its
answer at once if it is ready, else RESOURCE_EXHAUSTED. A waiter whose caller is
gone stops at once, without reading again. ``on_changes`` is told of every change
first (a cache invalidates what it holds). A watcher may leave its owner's own
commits out of its watch: the owner then tells it of each (:meth:`Watcher.committed`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.waiting import Backoff
from teaclave.storage.api import Changes, ChangeStream, Record, Watchable

log = logging.getLogger(__name__)

T = TypeVar("T")

WATCH_SECS = 60.0
"""How long one watch stream of the store lasts (then it is renewed)."""
FIRST_RETRY_SECS = 0.05
MAX_RETRY_SECS = 2.0
HISTORY = 1024
"""Batches of changes remembered (for values read before their waiter registered)."""


class _Waiter:
    """One waiting call: set when something under ``prefix`` (may have) changed, or
    its caller is gone."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.changed = threading.Event()
        self.gone = threading.Event()
        self.record: Record | None = None  # the key's record, if the last change brought it

    def leave(self) -> None:
        """The caller is gone: stop waiting."""
        self.gone.set()
        self.changed.set()


class Watcher:
    """Watches ``prefixes`` of ``source`` for up to ``max_waiters`` local waiters."""

    def __init__(
        self,
        source: Watchable,
        prefixes: Sequence[str],
        *,
        max_waiters: int,
        on_changes: Callable[[Changes], None] = lambda _: None,
        with_values: bool = False,
        unless_writer: str = "",
    ) -> None:
        """``with_values``: the store sends the records of the keys that changed, so a
        waiter on one key (:meth:`follow` with ``from_record``) need not read it again;
        ``unless_writer``: the commits of that writer, its owner's, are left out of the
        watch: the owner tells of them itself (:meth:`committed`), if any waiter may wait
        for them."""
        self._source = source
        self._with_values = with_values
        self._unless_writer = unless_writer
        self._prefixes = tuple(prefixes)
        self._max_waiters = max_waiters
        self._on_changes = on_changes
        self._waiters: set[_Waiter] = set()
        self._stream: ChangeStream | None = None
        self._since = 0  # everything the store still knows of (or: lost, if it forgot some)
        # The last batches delivered: (from version, to version, keys; None: lost).
        self._history: deque[tuple[int, int, tuple[str, ...] | None]] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="storage-watch", daemon=True)

    def start(self) -> None:
        """Start following the store."""
        self._thread.start()

    def close(self) -> None:
        """Stop (cancelling the watch stream), and wake every waiter (each answers with
        what it reads then)."""
        self._stop.set()
        with self._lock:
            stream = self._stream
            for waiter in self._waiters:
                waiter.changed.set()
        if stream is not None:
            stream.cancel()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the following thread to end (after :meth:`close`)."""
        self._thread.join(timeout)

    def follow(
        self,
        prefix: str,
        read: Callable[[], T],
        done: Callable[[T], bool],
        timeout: float,
        *,
        on_gone: Callable[[Callable[[], None]], object] | None = None,
        first: tuple[T, int] | None = None,
        from_record: Callable[[Record], T] | None = None,
    ) -> T:
        """``read()`` again each time something under ``prefix`` changes, until ``done``
        of its value or ``timeout`` seconds passed (or the watcher closed); its last value.

        Errors of ``read`` propagate. If ``max_waiters`` already wait, the first value
        is returned if ``done``, else RESOURCE_EXHAUSTED. ``on_gone``: registers a
        callback to run once the caller is gone (e.g. a gRPC context's ``add_callback``);
        the wait then ends with the last value, not reading again (a read may act on
        the caller's behalf, e.g. claim a task for it). ``first``: a value the caller
        read already and the store's version it read it at: it stands for the first
        read unless a change under ``prefix`` after that version may have come.
        ``from_record``: the value of the record of the key ``prefix`` when a change
        brought it (the watcher is ``with_values``), instead of reading again.
        """
        deadline = time.monotonic() + timeout
        with self._slot(prefix, first[1] if first else None) as waiter:
            if waiter is not None and on_gone is not None:
                on_gone(waiter.leave)
            stale = first is None or (waiter is not None and waiter.changed.is_set())
            value = read() if stale or first is None else first[0]
            while True:
                if done(value):
                    return value
                if waiter is None:
                    raise TeaclaveError(
                        Status.RESOURCE_EXHAUSTED, "too many calls waiting; try again later"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return value
                waiter.changed.wait(remaining)
                if waiter.gone.is_set():
                    return value
                waiter.changed.clear()  # before reading again: a later change sets it anew
                with self._lock:
                    record, waiter.record = waiter.record, None
                if from_record is not None and record is not None and record.exists:
                    value = from_record(record)
                else:
                    value = read()

    @contextmanager
    def _slot(self, prefix: str, seen: int | None = None) -> Iterator[_Waiter | None]:
        """A registered waiter for ``prefix``, or None when ``max_waiters`` wait already;
        already set if something under it may have changed after version ``seen``."""
        waiter = _Waiter(prefix)
        with self._lock:
            full = len(self._waiters) >= self._max_waiters
            if not full:
                self._waiters.add(waiter)
                if seen is not None and self._changed_after(prefix, seen):
                    waiter.changed.set()
        if full:
            yield None
            return
        try:
            yield waiter
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def _changed_after(self, prefix: str, seen: int) -> bool:
        """Whether a delivered change under ``prefix`` may be later than version ``seen``
        (those not delivered yet will wake the waiters then). Under the lock."""
        delivered = self._history[-1][1] if self._history else 0
        if seen >= delivered:
            return False
        if not self._history or self._history[0][0] > seen:
            return True  # not remembered that far back
        for _, version, keys in reversed(self._history):  # newest first: stop at ``seen``
            if version <= seen:
                return False
            if keys is None or any(key.startswith(prefix) for key in keys):
                return True
        return False

    def committed(self, version: int, written: Mapping[str, bytes | None]) -> None:
        """The owner committed ``written`` (None: deleted) at ``version``, which the watch
        leaves out (``unless_writer``): wake the waiters it concerns, as the watch would."""
        records = tuple(
            Record(key, value or b"", 0 if value is None else version)
            for key, value in written.items()
            if key.startswith(self._prefixes)
        )
        if records:
            changes = Changes(version, tuple(r.key for r in records), records=records)
            self._deliver(version - 1, changes)

    def _wake(self, since: int, changes: Changes) -> None:
        if changes.any:
            self._on_changes(changes)
        self._deliver(since, changes)

    def _deliver(self, since: int, changes: Changes) -> None:
        """Remember the batch of commits after ``since`` (in version order: the owner's
        own may come before the watch's of earlier versions) and wake its waiters."""
        with self._lock:
            if len(self._history) == self._history.maxlen:
                self._history.popleft()
            at = len(self._history)
            while at and self._history[at - 1][1] > changes.version:
                at -= 1
            self._history.insert(
                at, (since, changes.version, None if changes.lost else changes.keys)
            )
            records = {record.key: record for record in changes.records}
            for waiter in self._waiters:
                if changes.lost or any(key.startswith(waiter.prefix) for key in changes.keys):
                    waiter.record = None if changes.lost else records.get(waiter.prefix)
                    waiter.changed.set()

    def _open(self) -> ChangeStream | None:
        """A watch stream from the last version seen, unless the watcher stopped."""
        stream = self._source.watch(
            self._prefixes,
            self._since,
            WATCH_SECS,
            with_values=self._with_values,
            unless_writer=self._unless_writer,
        )
        with self._lock:
            stopped = self._stop.is_set()
            self._stream = None if stopped else stream
        if stopped:
            stream.cancel()
            return None
        return stream

    def _run(self) -> None:
        retry = Backoff(FIRST_RETRY_SECS, MAX_RETRY_SECS)
        while not self._stop.is_set():
            received = failed = False
            try:
                for changes in self._open() or ():
                    received = True
                    since, self._since = self._since, changes.version
                    self._wake(since, changes)
            except Exception as exc:  # the store is unreachable: nothing is committed either
                if self._stop.is_set():
                    break
                log.warning("cannot watch the store (retrying): %s", exc)
                failed = True
            if received:
                retry.reset()
            if failed or not received:  # a stream that ends at once is retried after a pause
                self._stop.wait(retry.pause())

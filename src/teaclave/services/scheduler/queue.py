"""The staged queue as the scheduler follows it, so finding its oldest entry needs no
read of storage.

A :class:`StagedQueue` keeps the entries under :data:`~teaclave.storage.keys.STAGED`:
read once, then kept current by the changes its watcher brings with their records
(the same watcher wakes the executors waiting for a task). It is trusted only
while that watch delivers: before its first batch, after a batch that lost changes,
or once :meth:`StagedQueue.forget` was called, the next :meth:`StagedQueue.head`
reads the queue again. What it holds may lag behind storage, never more than the
watch does: every claim is a commit that checks the entry's version, and the
scheduler forgets what it holds when one conflicts. An entry handed out before its
claim was committed is held out of the queue meanwhile (:meth:`StagedQueue.hold`),
and an entry this scheduler's commit removed stays out, even of a read of the queue
that began before that commit.
"""

from __future__ import annotations

import heapq
import threading

from teaclave.core.lru import Lru
from teaclave.storage import keys
from teaclave.storage.api import Changes, Record, Store, Watchable
from teaclave.storage.watch import Watcher

MAX_TAKEN = 4096
"""Most removed entries remembered (each is out of storage by the time a read ends)."""


class StagedQueue:
    """The queue's entries, read from ``store`` and followed by a watch of ``source``
    (:attr:`watcher`, for up to ``max_waiters`` waiting executors; to start and close)
    that leaves out the commits of ``writer``: the scheduler's own, which only remove
    entries, and tell the queue so themselves (:meth:`taken`)."""

    def __init__(
        self, store: Store, source: Watchable, *, max_waiters: int, writer: str = ""
    ) -> None:
        self._store = store
        self.watcher = Watcher(
            source,
            [keys.STAGED],
            max_waiters=max_waiters,
            on_changes=self.changed,
            with_values=True,
            unless_writer=writer,
        )
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one read of the whole queue at a time
        self._entries: dict[str, Record] = {}
        self._order: list[str] = []  # a heap of the keys (some maybe gone already)
        self._following = False  # a watch batch came: the changes from now on come too
        self._known = False  # the entries are storage's, as far as the watch brought
        self._during: list[Changes] | None = None  # the batches that came during a read
        self._forgotten = 0  # calls of forget(): one during a read leaves the read unknown
        self._held: set[str] = set()  # handed out, their claims not committed yet
        self._released: set[str] = set()  # held, then given back: their tasks changed
        self._taken = Lru[str, bool](MAX_TAKEN)  # removed by this scheduler's commits

    def changed(self, changes: Changes) -> None:
        """Apply a batch of the watch."""
        with self._lock:
            self._following = True
            if self._during is not None:
                self._during.append(changes)
            self._apply(changes)

    def _apply(self, changes: Changes) -> None:
        """Under the lock: a batch lacking a record of a key it names loses what is known."""
        records = {record.key: record for record in changes.records}
        if changes.lost or not records.keys() >= set(changes.keys):
            self._known = False
            return
        for key in changes.keys:
            self._put(records[key])

    def _put(self, record: Record) -> None:
        if not record.exists:
            self._entries.pop(record.key, None)
            self._released.discard(record.key)
            return
        if record.key in self._held or self._taken.get(record.key):
            return
        if record.key not in self._entries:
            heapq.heappush(self._order, record.key)
        self._entries[record.key] = record

    def head(self) -> Record | None:
        """The oldest entry (None: the queue is empty)."""
        with self._lock:
            known = self._known
        if not known:
            self._read()
        with self._lock:
            while self._order and self._order[0] not in self._entries:
                heapq.heappop(self._order)
            return self._entries[self._order[0]] if self._order else None

    def taken(self, key: str) -> None:
        """A commit of this scheduler removed the entry ``key``."""
        with self._lock:
            self._held.discard(key)
            self._released.discard(key)
            self._taken.put(key, True)
            self._entries.pop(key, None)

    def hold(self, key: str) -> None:
        """Keep the entry ``key`` out of the queue until it is :meth:`taken` or
        :meth:`released <release>`: it was handed out, its claim not committed yet."""
        with self._lock:
            self._held.add(key)
            self._entries.pop(key, None)

    def release(self, key: str) -> None:
        """The held entry ``key`` was not claimed after all (its task changed): the
        queue is read again, with it if it is still there (:meth:`released`)."""
        with self._lock:
            self._held.discard(key)
            self._released.add(key)
        self.forget()

    def released(self, key: str) -> bool:
        """Whether the entry ``key`` was held and given back (until it leaves the queue)."""
        with self._lock:
            return key in self._released

    def forget(self) -> None:
        """What is kept may be out of date: the next :meth:`head` reads the queue."""
        with self._lock:
            self._known = False
            self._forgotten += 1

    def _read(self) -> None:
        """Read the whole queue; batches that came meanwhile are applied again after it,
        in the same step that takes the read in (so none is lost between the two)."""
        with self._reading:
            with self._lock:
                if self._known:
                    return
                self._during, following, forgotten = [], self._following, self._forgotten
            try:
                records = self._store.scan(keys.STAGED)
            except BaseException:
                with self._lock:
                    self._during = None
                raise
            with self._lock:
                during, self._during = self._during or [], None
                self._entries, self._order = {}, []
                self._released.intersection_update(record.key for record in records)
                for record in records:
                    self._put(record)
                self._known = following and forgotten == self._forgotten  # none forgot since
                for changes in during:
                    self._apply(changes)

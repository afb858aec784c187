"""The staged queue as the scheduler follows it: read once, then kept from the watch.

The watch's batches are handed to the queue here directly (as its watcher does), so
each test says exactly which changes the queue has seen.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from teaclave.services.scheduler.queue import StagedQueue
from teaclave.storage.api import Changes, Record, Write
from teaclave.storage.sqlite import SqliteStore

KEY = bytes(range(32))


class Reads:
    """The store, counting the reads of the whole queue; ``during`` runs inside each."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.count = 0
        self.during = lambda: None

    def scan(self, prefix: str, *, start_after: str = "", limit: int = 0) -> list[Record]:
        self.count += 1
        found = self.store.scan(prefix, start_after=start_after, limit=limit)
        self.during()
        return found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db", KEY)
    yield s
    s.close()


@pytest.fixture
def reads(store: SqliteStore) -> Reads:
    return Reads(store)


@pytest.fixture
def queue(reads: Reads, store: SqliteStore) -> StagedQueue:
    return StagedQueue(reads, store, max_waiters=1)  # type: ignore[arg-type]


def put(store: SqliteStore, key: str, value: bytes | None = b"entry") -> Changes:
    """Commit ``key`` (None: delete it); the batch a watch with values brings of it."""
    version = store.commit([], [Write(key, value)])
    return Changes(version, (key,), records=tuple(store.get([key])))


def head(queue: StagedQueue) -> str | None:
    entry = queue.head()
    return entry.key if entry else None


def test_the_queue_is_read_once_then_kept_from_the_changes(
    queue: StagedQueue, reads: Reads, store: SqliteStore
) -> None:
    put(store, "staged/2")
    assert head(queue) == "staged/2"
    assert head(queue) == "staged/2"
    assert reads.count == 2  # no batch came yet: not following, it reads each time
    queue.changed(Changes(1, lost=True))  # a new watch's first batch
    assert head(queue) == "staged/2"
    assert reads.count == 3
    older = put(store, "staged/1")
    assert head(queue) == "staged/2"  # not read: known from the changes only
    queue.changed(older)
    assert head(queue) == "staged/1"
    queue.changed(put(store, "staged/1", None))
    queue.changed(put(store, "staged/2", None))
    assert head(queue) is None
    assert reads.count == 3


@pytest.mark.parametrize(
    "unsure",
    [
        lambda queue, store: queue.changed(Changes(9, lost=True)),
        lambda queue, store: queue.changed(Changes(9, ("staged/3",))),  # without its record
        lambda queue, store: queue.forget(),  # a claim conflicted
    ],
    ids=["lost changes", "a change without its record", "forgotten"],
)
def test_the_queue_is_read_again_once_what_it_holds_may_be_wrong(
    queue: StagedQueue, reads: Reads, store: SqliteStore, unsure
) -> None:
    queue.changed(Changes(1, lost=True))
    assert head(queue) is None
    put(store, "staged/3")
    unsure(queue, store)
    assert [head(queue), head(queue)] == ["staged/3", "staged/3"]
    assert reads.count == 2


def test_a_claim_taken_here_leaves_the_queue_at_once(
    queue: StagedQueue, reads: Reads, store: SqliteStore
) -> None:
    queue.changed(Changes(1, lost=True))
    put(store, "staged/1")
    put(store, "staged/2")
    assert head(queue) == "staged/1"
    store.commit([], [Write("staged/1", None)])
    queue.taken("staged/1")  # before its deletion comes back from the watch
    assert head(queue) == "staged/2"
    assert reads.count == 1


def test_changes_that_come_during_a_read_are_applied_after_it(
    queue: StagedQueue, reads: Reads, store: SqliteStore
) -> None:
    put(store, "staged/1")
    queue.changed(Changes(1, lost=True))

    def meanwhile() -> None:  # after the read: staged/1 taken, staged/2 staged
        reads.during = lambda: None
        queue.changed(put(store, "staged/1", None))
        queue.changed(put(store, "staged/2"))

    reads.during = meanwhile
    assert head(queue) == "staged/2"
    assert reads.count == 1


def test_a_forget_during_a_read_leaves_the_queue_to_be_read_again(
    queue: StagedQueue, reads: Reads, store: SqliteStore
) -> None:
    queue.changed(Changes(1, lost=True))

    def meanwhile() -> None:  # e.g. a PullTask: it must find what was staged before it
        reads.during = lambda: None
        put(store, "staged/1")
        queue.forget()

    reads.during = meanwhile
    assert head(queue) is None  # read before staged/1 was
    assert head(queue) == "staged/1"
    assert reads.count == 2


def test_an_entry_held_stays_out_until_given_back(
    queue: StagedQueue, reads: Reads, store: SqliteStore
) -> None:
    """Handed out before its claim was committed: not in the queue, even when it is
    read again; given back (its task changed), it is in it again, marked released."""
    queue.changed(Changes(1, lost=True))
    put(store, "staged/1")
    put(store, "staged/2")
    assert head(queue) == "staged/1"
    queue.hold("staged/1")
    assert head(queue) == "staged/2"
    queue.forget()
    assert head(queue) == "staged/2"  # read again: still held
    assert not queue.released("staged/1")
    queue.release("staged/1")
    assert head(queue) == "staged/1"
    assert queue.released("staged/1")
    queue.changed(put(store, "staged/1", None))  # it left the queue
    assert not queue.released("staged/1")
    assert reads.count == 3


def test_an_entry_taken_here_stays_out_of_a_read_that_began_before_its_removal(
    queue: StagedQueue, reads: Reads, store: SqliteStore
) -> None:
    queue.changed(Changes(1, lost=True))
    put(store, "staged/1")
    put(store, "staged/2")

    def meanwhile() -> None:  # the read found staged/1; then this scheduler's commit took it
        reads.during = lambda: None
        store.commit([], [Write("staged/1", None)])
        queue.taken("staged/1")

    reads.during = meanwhile
    assert head(queue) == "staged/2"
    assert reads.count == 1

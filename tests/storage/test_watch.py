"""Watching commits: the change log of a store, and the watcher that waits on it."""

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from teaclave.core.errors import Status, TeaclaveError
from teaclave.storage.api import Changes, Write
from teaclave.storage.changes import ChangeLog
from teaclave.storage.sqlite import SqliteStore
from teaclave.storage.watch import Watcher

KEY = bytes(range(32))
LONG = 60.0
"""A wait that only an event ends (the tests never let it run out)."""


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "db", KEY)
    yield s
    s.close()


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a thread; a function that joins it and returns its result."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)))
    thread.start()

    def join() -> object:
        thread.join(LONG)
        assert result, "the call did not return"
        return result[0]

    return join


# --- the change log ------------------------------------------------------------


def test_commits_are_reported_by_prefix(store: SqliteStore) -> None:
    start = store.changes.watch(["task/"], 0, 0)
    assert start == Changes(0)  # a new database: nothing happened yet
    v1 = store.commit([], [Write("task/1", b"a"), Write("staged/1", b"q")])
    v2 = store.commit([], [Write("staged/1", None)])  # deletes are changes too
    assert store.changes.watch(["task/"], 0, LONG) == Changes(v2, ("task/1",))
    assert store.changes.watch(["staged/"], v1, LONG) == Changes(v2, ("staged/1",))
    assert store.changes.watch(["task/", "staged/"], 0, LONG) == Changes(v2, ("staged/1", "task/1"))
    assert store.changes.watch(["task/"], v1, 0) == Changes(v2)  # none since v1: waits


def test_a_watch_waits_for_a_commit_under_its_prefix(store: SqliteStore) -> None:
    since = store.commit([], [Write("task/0", b"")])
    watching = threading.Event()

    def active() -> bool:
        watching.set()  # read as the watch starts waiting (and on each wake-up)
        return True

    join = in_thread(lambda: store.changes.watch(["task/1"], since, LONG, active=active))
    assert watching.wait(LONG)
    store.commit([], [Write("task/2", b"")])  # another key: no answer yet
    version = store.commit([], [Write("task/1", b"")])
    assert join() == Changes(version, ("task/1",))


def test_a_watch_ends_when_its_caller_is_gone_or_the_log_closes(store: SqliteStore) -> None:
    gone = threading.Event()
    join = in_thread(
        lambda: store.changes.watch(["task/"], 0, LONG, active=lambda: not gone.is_set())
    )
    gone.set()
    store.changes.interrupt()
    assert join() == Changes(0)
    join = in_thread(lambda: store.changes.watch(["task/"], 0, LONG))
    store.changes.close()
    assert join() == Changes(0)
    assert store.changes.watch(["task/"], 0, LONG) == Changes(0)  # at once, once closed


def test_changes_before_the_log_are_lost(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "db", KEY)
    version = first.commit([], [Write("task/1", b"")])
    first.close()
    reopened = SqliteStore(tmp_path / "db", KEY)  # as after a restart of the storage service
    assert reopened.changes.watch(["task/"], 0, LONG) == Changes(version, lost=True)
    assert reopened.changes.watch(["task/"], version, 0) == Changes(version)
    assert reopened.changes.watch(["task/"], version + 5, LONG).lost  # from elsewhere
    reopened.close()


def test_only_the_newest_commits_are_kept() -> None:
    log = ChangeLog(10, max_keys=4)
    for version in range(11, 16):
        log.publish(version, [f"task/{version}"])
    assert log.watch(["task/"], 11, LONG) == Changes(
        15, ("task/12", "task/13", "task/14", "task/15")
    )
    assert log.watch(["task/"], 10, LONG) == Changes(15, lost=True)  # task/11 forgotten


def test_too_many_changes_are_reported_as_lost() -> None:
    log = ChangeLog(0)
    log.publish(1, [f"task/{i:04d}" for i in range(1001)])
    assert log.watch(["task/"], 0, LONG) == Changes(1, lost=True)


# --- the watcher ----------------------------------------------------------------


class Source:
    """A store's change log, failing the first ``failures`` watches (as if unreachable)."""

    def __init__(self, log: ChangeLog, failures: int = 0) -> None:
        self.log = log
        self.failures = failures
        self.calls = 0

    def watch(self, prefixes: Sequence[str], since: int, timeout: float) -> Changes:
        self.calls += 1
        if self.calls <= self.failures:
            raise TeaclaveError(Status.UNAVAILABLE, "storage unreachable")
        return self.log.watch(prefixes, since, timeout)


@pytest.fixture
def watched(store: SqliteStore):
    """A watcher of ``task/`` over the store (its source fails twice first)."""
    watcher = Watcher(Source(store.changes, failures=2), ["task/"], max_waiters=2)
    watcher.start()
    yield store, watcher
    watcher.close()
    store.changes.close()
    watcher.join(LONG)


def value(store: SqliteStore, key: str) -> bytes:
    return store.get([key])[0].value


def test_follow_reads_again_on_each_change_until_done(watched) -> None:
    store, watcher = watched
    store.commit([], [Write("task/1", b"0")])
    reads: list[bytes] = []
    first_read = threading.Event()

    def read() -> bytes:
        reads.append(value(store, "task/1"))
        first_read.set()
        return reads[-1]

    join = in_thread(lambda: watcher.follow("task/1", read, lambda v: v == b"2", LONG))
    assert first_read.wait(LONG)
    store.commit([], [Write("task/1", b"1")])
    store.commit([], [Write("task/1", b"2")])
    assert join() == b"2"
    assert reads[0] == b"0"
    assert set(reads) <= {b"0", b"1", b"2"}


def test_follow_returns_what_it_read_when_the_wait_runs_out(watched) -> None:
    store, watcher = watched
    store.commit([], [Write("task/1", b"running")])
    assert (
        watcher.follow("task/1", lambda: value(store, "task/1"), lambda v: False, 0) == b"running"
    )


def test_follow_with_every_slot_taken(watched) -> None:
    store, watcher = watched
    reads = threading.Semaphore(0)

    def read() -> bytes:
        reads.release()  # a waiter reads once it is registered
        return value(store, "task/1")

    joins = [
        in_thread(lambda: watcher.follow("task/1", read, lambda v: v == b"done", LONG))
        for _ in range(2)
    ]
    assert reads.acquire(timeout=LONG)
    assert reads.acquire(timeout=LONG)
    with pytest.raises(TeaclaveError) as caught:
        watcher.follow("task/2", lambda: b"", lambda v: False, LONG)
    assert (caught.value.status, caught.value.message) == (
        Status.RESOURCE_EXHAUSTED,
        "too many calls waiting; try again later",
    )
    assert watcher.follow("task/2", lambda: b"done", lambda v: v == b"done", LONG) == b"done"
    store.commit([], [Write("task/1", b"done")])
    assert [join() for join in joins] == [b"done", b"done"]


def test_close_answers_the_waiters(watched) -> None:
    _, watcher = watched
    first_read = threading.Event()

    def read() -> bytes:
        first_read.set()
        return b"running"

    join = in_thread(lambda: watcher.follow("task/1", read, lambda v: False, LONG))
    assert first_read.wait(LONG)
    watcher.close()
    assert join() == b"running"


def test_follow_ends_without_reading_again_once_its_caller_is_gone(watched) -> None:
    store, watcher = watched
    reads: list[bytes] = []
    first_read = threading.Event()
    callbacks: list[Callable[[], None]] = []

    def read() -> bytes:
        reads.append(value(store, "task/1"))
        first_read.set()
        return reads[-1]

    join = in_thread(
        lambda: watcher.follow("task/1", read, lambda v: False, LONG, on_gone=callbacks.append)
    )
    assert first_read.wait(LONG)
    [caller_gone] = callbacks  # registered as the wait began
    caller_gone()
    assert join() == b""
    store.commit([], [Write("task/1", b"changed")])
    assert reads == [b""]

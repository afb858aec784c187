"""Watching commits: the change log of a store, and the watcher that waits on it."""

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from at_once import in_thread

from teaclave.core.errors import Status, TeaclaveError
from teaclave.storage.api import Changes, Write
from teaclave.storage.changes import ChangeLog, Following
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


# --- the change log: one answer (wait) -------------------------------------------


def test_commits_are_reported_by_prefix(store: SqliteStore) -> None:
    start = store.changes.wait(["task/"], 0, 0)
    assert start == Changes(0)  # a new database: nothing happened yet
    v1 = store.commit([], [Write("task/1", b"a"), Write("staged/1", b"q")])
    v2 = store.commit([], [Write("staged/1", None)])  # deletes are changes too
    assert store.changes.wait(["task/"], 0, LONG) == Changes(v2, ("task/1",))
    assert store.changes.wait(["staged/"], v1, LONG) == Changes(v2, ("staged/1",))
    assert store.changes.wait(["task/", "staged/"], 0, LONG) == Changes(v2, ("staged/1", "task/1"))
    assert store.changes.wait(["task/"], v1, 0) == Changes(v2)  # none since v1: waits


def test_a_wait_ends_at_a_commit_under_its_prefix(store: SqliteStore) -> None:
    since = store.commit([], [Write("task/0", b"")])
    watching = threading.Event()

    def active() -> bool:
        watching.set()  # read as the wait starts (and on each wake-up)
        return True

    join = in_thread(lambda: store.changes.wait(["task/1"], since, LONG, active=active))
    assert watching.wait(LONG)
    store.commit([], [Write("task/2", b"")])  # another key: no answer yet
    version = store.commit([], [Write("task/1", b"")])
    assert join() == Changes(version, ("task/1",))


def test_a_wait_ends_when_its_caller_is_gone_or_the_log_closes(store: SqliteStore) -> None:
    gone = threading.Event()
    join = in_thread(
        lambda: store.changes.wait(["task/"], 0, LONG, active=lambda: not gone.is_set())
    )
    gone.set()
    store.changes.interrupt()
    assert join() == Changes(0)
    join = in_thread(lambda: store.changes.wait(["task/"], 0, LONG))
    store.changes.close()
    assert join() == Changes(0)
    assert store.changes.wait(["task/"], 0, LONG) == Changes(0)  # at once, once closed


def test_changes_before_the_log_are_lost(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "db", KEY)
    version = first.commit([], [Write("task/1", b"")])
    first.close()
    reopened = SqliteStore(tmp_path / "db", KEY)  # as after a restart of the storage service
    assert reopened.changes.wait(["task/"], 0, LONG) == Changes(version, lost=True)
    assert reopened.changes.wait(["task/"], version, 0) == Changes(version)
    assert reopened.changes.wait(["task/"], version + 5, LONG).lost  # from elsewhere
    reopened.close()


def test_only_the_newest_commits_are_kept() -> None:
    log = ChangeLog(10, max_keys=4)
    for version in range(11, 16):
        log.publish(version, [f"task/{version}"])
    assert log.wait(["task/"], 11, LONG) == Changes(
        15, ("task/12", "task/13", "task/14", "task/15")
    )
    assert log.wait(["task/"], 10, LONG) == Changes(15, lost=True)  # task/11 forgotten


def test_too_many_changes_are_reported_as_lost() -> None:
    log = ChangeLog(0)
    log.publish(1, [f"task/{i:04d}" for i in range(1001)])
    assert log.wait(["task/"], 0, LONG) == Changes(1, lost=True)


# --- the change log: a stream (watch) ----------------------------------------------


class Clock:
    """A clock that stands still until moved on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_answers_at_once_then_with_each_batch() -> None:
    """The first message comes at once (changes after ``since``, or none); commits made
    while the consumer is busy come as one batch; other prefixes are not reported."""
    log = ChangeLog(0)
    log.publish(1, ["task/1"])
    stream = iter(log.watch(["task/"], 0, LONG))
    assert next(stream) == Changes(1, ("task/1",))
    log.publish(2, ["task/2"])
    log.publish(3, ["staged/3"])
    log.publish(4, ["task/4", "task/2"])
    assert next(stream) == Changes(4, ("task/2", "task/4"))
    join = in_thread(next, stream)
    log.publish(5, ["staged/5"])
    log.publish(6, ["task/6"])
    assert join() == Changes(6, ("task/6",))
    assert next(iter(log.watch(["task/"], 6, LONG))) == Changes(6)  # none since: at once


def test_a_stream_leaves_out_the_commits_of_the_writer_it_names() -> None:
    """Its own commits, which a watcher knows already: as if they touched nothing
    watched; another writer's keys, in the same batch or not, still come."""
    log = ChangeLog(0)
    stream = iter(log.watch(["task/"], 0, LONG, unless_writer="me"))
    assert next(stream) == Changes(0)
    log.publish(1, ["task/1"], "me")
    log.publish(2, ["task/2"], "other")
    log.publish(3, ["task/1", "task/3"], "me")
    assert next(stream) == Changes(3, ("task/2",))
    join = in_thread(next, stream)
    log.publish(4, ["task/4"], "me")  # no answer for this one: the stream waits on
    log.publish(5, ["task/5"])
    assert join() == Changes(5, ("task/5",))
    everything = log.watch(["task/"], 0, LONG)  # a watch naming no writer sees all
    assert next(iter(everything)) == Changes(5, tuple(f"task/{i}" for i in range(1, 6)))


def test_a_stream_ends_with_its_lifetime_saying_the_version_then() -> None:
    clock = Clock()
    log = ChangeLog(0, clock=clock)
    assert list(log.watch(["task/"], 0, 0)) == [Changes(0)]  # a lifetime of 0: one answer
    stream = iter(log.watch(["task/"], 0, 0.01))
    assert next(stream) == Changes(0)
    log.publish(1, ["staged/1"])  # not watched
    clock.now = 1.0  # the lifetime is over once the wait in progress ends
    assert list(stream) == [Changes(1)]


def test_a_stream_ends_on_cancel_or_when_the_log_closes() -> None:
    log = ChangeLog(0)
    watch = log.watch(["task/"], 0, LONG)
    stream = iter(watch)
    assert next(stream) == Changes(0)
    rest = in_thread(list, stream)
    watch.cancel()
    assert rest() == []
    assert list(watch) == []  # cancelled before it began: nothing at all
    stream = iter(log.watch(["task/"], 0, LONG))
    assert next(stream) == Changes(0)
    rest = in_thread(list, stream)
    log.close()
    assert rest() == []


def test_a_stream_reports_lost_changes_then_follows_on(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "db", KEY)
    version = first.commit([], [Write("task/1", b"")])
    first.close()
    reopened = SqliteStore(tmp_path / "db", KEY)
    stream = iter(reopened.changes.watch(["task/"], version - 1, LONG))
    assert next(stream) == Changes(version, lost=True)
    later = reopened.commit([], [Write("task/2", b"")])
    assert next(stream) == Changes(later, ("task/2",))
    reopened.close()


# --- the watcher ----------------------------------------------------------------


class Stream:
    """A stream of a change log that ``fail()`` breaks (as a lost connection does)."""

    def __init__(self, following: Following) -> None:
        self.following = following
        self.broken = False
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[Changes]:
        yield from self.following
        if self.broken:
            raise TeaclaveError(Status.UNAVAILABLE, "connection lost")

    def fail(self) -> None:
        self.broken = True
        self.following.cancel()

    def cancel(self) -> None:
        self.cancelled.set()
        self.following.cancel()


class Source:
    """A store's change log, failing the first ``failures`` watches (as if unreachable);
    each watch's ``since`` is in ``opened``."""

    def __init__(self, log: ChangeLog, failures: int = 0) -> None:
        self.log = log
        self.failures = failures
        self.opened: list[int] = []
        self.streams: list[Stream] = []
        self.stream_opened = threading.Semaphore(0)

    def watch(
        self,
        prefixes: Sequence[str],
        since: int,
        lifetime: float,
        *,
        with_values: bool = False,
        unless_writer: str = "",
    ) -> Stream:
        assert not with_values  # a change log alone has no records
        if len(self.opened) < self.failures:
            self.opened.append(-1)
            raise TeaclaveError(Status.UNAVAILABLE, "storage unreachable")
        self.opened.append(since)
        stream = Stream(self.log.watch(prefixes, since, lifetime, unless_writer=unless_writer))
        self.streams.append(stream)
        self.stream_opened.release()
        return stream


@pytest.fixture
def watched(store: SqliteStore):
    """A watcher of ``task/`` over the store (its source fails twice first)."""
    watcher = Watcher(Source(store.changes, failures=2), ["task/"], max_waiters=2)
    with following(watcher, store):
        yield store, watcher


def value(store: SqliteStore, key: str) -> bytes:
    return store.get([key])[0].value


class Reads:
    """Reads of ``task/1`` in ``store`` for :meth:`Watcher.follow`: each value it read in
    ``values``; ``first`` is set once it read."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.values: list[bytes] = []
        self.first = threading.Event()

    def __call__(self) -> bytes:
        self.values.append(value(self.store, "task/1"))
        self.first.set()
        return self.values[-1]


@contextmanager
def following(watcher: Watcher, store: SqliteStore) -> Iterator[Watcher]:
    """``watcher`` started for the block; then closed, with the store's change log."""
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.close()
        store.changes.close()
        watcher.join(LONG)


def test_follow_reads_again_on_each_change_until_done(watched) -> None:
    store, watcher = watched
    store.commit([], [Write("task/1", b"0")])
    reads = Reads(store)
    join = in_thread(lambda: watcher.follow("task/1", reads, lambda v: v == b"2", LONG))
    assert reads.first.wait(LONG)
    store.commit([], [Write("task/1", b"1")])
    store.commit([], [Write("task/1", b"2")])
    assert join() == b"2"
    assert reads.values[0] == b"0"
    assert set(reads.values) <= {b"0", b"1", b"2"}


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
    reads = Reads(store)
    callbacks: list[Callable[[], None]] = []
    join = in_thread(
        lambda: watcher.follow("task/1", reads, lambda v: False, LONG, on_gone=callbacks.append)
    )
    assert reads.first.wait(LONG)
    [caller_gone] = callbacks  # registered as the wait began
    caller_gone()
    assert join() == b""
    store.commit([], [Write("task/1", b"changed")])
    assert reads.values == [b""]


def test_close_cancels_the_stream_and_the_watcher_ends() -> None:
    source = Source(ChangeLog(0))
    watcher = Watcher(source, ["task/"], max_waiters=1)
    watcher.start()
    assert source.stream_opened.acquire(timeout=LONG)
    watcher.close()
    watcher.join(LONG)
    assert source.streams[0].cancelled.is_set()
    assert not source.log.closed  # it ended by the cancel alone
    assert len(source.opened) == 1


def test_a_broken_stream_is_reopened_from_the_last_version_seen() -> None:
    """Commits made while no stream was open are reported by the next one."""
    log = ChangeLog(0)
    seen: list[Changes] = []
    batch = threading.Semaphore(0)

    def on_changes(changes: Changes) -> None:
        seen.append(changes)
        batch.release()

    source = Source(log)
    watcher = Watcher(source, ["task/"], max_waiters=1, on_changes=on_changes)
    watcher.start()
    try:
        assert source.stream_opened.acquire(timeout=LONG)
        log.publish(1, ["task/1"])
        assert batch.acquire(timeout=LONG)
        source.streams[0].fail()
        log.publish(2, ["task/2"])
        assert source.stream_opened.acquire(timeout=LONG)
        assert batch.acquire(timeout=LONG)
        assert source.opened == [0, 1]
        assert seen == [Changes(1, ("task/1",)), Changes(2, ("task/2",))]
    finally:
        watcher.close()
        watcher.join(LONG)


def test_a_restarted_store_wakes_every_waiter() -> None:
    """The store restarted, and commits were made meanwhile that no log reports: the
    watcher, back, is told they were lost and wakes its waiters, who read again."""
    source = Source(ChangeLog(5))
    batches = threading.Semaphore(0)
    watcher = Watcher(source, ["task/"], max_waiters=1, on_changes=lambda _: batches.release())
    watcher.start()
    state = {"task/1": b"running"}
    first_read = threading.Event()

    def read() -> bytes:
        first_read.set()
        return state["task/1"]

    try:
        assert batches.acquire(timeout=LONG)  # since 0: lost (the store began at 5)
        join = in_thread(lambda: watcher.follow("task/1", read, lambda v: v == b"done", LONG))
        assert first_read.wait(LONG)
        state["task/1"] = b"done"  # committed while the store was down: never published
        source.log = ChangeLog(7)  # the store, restarted, knows of nothing before 7
        source.streams[0].fail()
        assert join() == b"done"
        assert source.opened[-1] == 5
    finally:
        watcher.close()
        watcher.join(LONG)


class Delivered:
    """A watcher of ``task/`` over ``store`` that tells when it delivered a version."""

    def __init__(self, store: SqliteStore, unless_writer: str = "") -> None:
        self.version = 0
        self._changed = threading.Condition()
        self.watcher = Watcher(
            Source(store.changes),
            ["task/"],
            max_waiters=2,
            on_changes=self._seen,
            unless_writer=unless_writer,
        )

    def _seen(self, changes: Changes) -> None:
        with self._changed:
            self.version = changes.version
            self._changed.notify_all()

    def through(self, version: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.version >= version, LONG)


@pytest.fixture
def delivered(store: SqliteStore):
    watching = Delivered(store)
    with following(watching.watcher, store):
        yield watching


def test_a_value_read_before_the_wait_stands_until_its_key_changes(
    store: SqliteStore, delivered: Delivered
) -> None:
    watcher = delivered.watcher
    seen = store.commit([], [Write("task/1", b"0")])
    delivered.through(store.commit([], [Write("task/2", b"other")]))  # another key
    reads = Reads(store)
    assert watcher.follow("task/1", reads, lambda v: False, 0, first=(b"0", seen)) == b"0"
    assert reads.values == []  # what the caller read stands: nothing under task/1 changed
    delivered.through(store.commit([], [Write("task/1", b"1")]))
    assert watcher.follow("task/1", reads, lambda v: False, 0, first=(b"0", seen)) == b"1"
    assert reads.values == [b"1"]


def test_a_value_older_than_what_the_watcher_remembers_is_read_again(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("teaclave.storage.watch.HISTORY", 2)
    seen = store.commit([], [Write("task/1", b"0")])
    watching = Delivered(store)
    with following(watching.watcher, store) as watcher:
        for n in range(3):  # batches about other keys push ``seen`` out of the history
            watching.through(store.commit([], [Write(f"task/other{n}", b"")]))
        reads = Reads(store)
        assert watcher.follow("task/1", reads, lambda v: False, 0, first=(b"0", seen)) == b"0"
        assert reads.values == [b"0"]  # read again, to be sure


class Valued:
    """The store's changes with the records of their keys, as the storage service sends
    them to a watch ``with_values`` (served here from the store in this process)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def watch(
        self,
        prefixes: Sequence[str],
        since: int,
        lifetime: float,
        *,
        with_values: bool = False,
        unless_writer: str = "",
    ) -> "ValuedStream":
        following = self.store.changes.watch(prefixes, since, lifetime, unless_writer=unless_writer)
        return ValuedStream(self.store, following)


class ValuedStream:
    def __init__(self, store: SqliteStore, following: Following) -> None:
        self.store, self.following = store, following

    def __iter__(self) -> Iterator[Changes]:
        for changes in self.following:
            yield replace(changes, records=tuple(self.store.get(changes.keys)))

    def cancel(self) -> None:
        self.following.cancel()


def test_a_waiter_on_a_key_takes_its_value_from_the_change(store: SqliteStore) -> None:
    valued = Watcher(Valued(store), ["task/"], max_waiters=1, with_values=True)
    with following(valued, store) as watcher:
        store.commit([], [Write("task/1", b"0")])
        reads = Reads(store)
        join = in_thread(
            lambda: watcher.follow(
                "task/1", reads, lambda v: v == b"2", LONG, from_record=lambda r: r.value
            )
        )
        assert reads.first.wait(LONG)
        store.commit([], [Write("task/1", b"1")])
        store.commit([], [Write("task/2", b"other")])
        store.commit([], [Write("task/1", b"2")])
        assert join() == b"2"
        assert reads.values == [b"0"]  # each later value came with its change


def test_the_owners_own_commits_wake_its_waiters_though_its_watch_leaves_them_out(
    store: SqliteStore,
) -> None:
    """Told of by the owner (:meth:`Watcher.committed`), in whatever order against the
    watch's batches: a waiter wakes with the value committed, and a value read before
    a commit of its key, own or not, does not stand."""
    watching = Delivered(store, unless_writer="me")
    with following(watching.watcher, store) as watcher:
        seen = store.commit([], [Write("task/1", b"0")])
        watching.through(seen)
        reads = Reads(store)
        join = in_thread(
            lambda: watcher.follow(
                "task/1", reads, lambda v: v == b"1", LONG, from_record=lambda r: r.value
            )
        )
        assert reads.first.wait(LONG)
        own = store.commit([], [Write("task/1", b"1")], writer="me")  # not in the watch
        watcher.committed(own, {"task/1": b"1", "staged/1": b""})
        assert join() == b"1"
        assert reads.values == [b"0"]  # the value came with the owner's word
        assert watcher.follow("task/1", reads, lambda v: False, 0, first=(b"0", seen)) == b"1"
        own = store.commit([], [Write("task/2", b"own")], writer="me")
        watching.through(store.commit([], [Write("task/1", b"2")]))  # a later version, first
        watcher.committed(own, {"task/2": b"own"})
        assert watcher.follow("task/1", reads, lambda v: False, 0, first=(b"1", own)) == b"2"
        assert reads.values == [b"0", b"1", b"2"]

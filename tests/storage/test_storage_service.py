"""The storage service over real gRPC with mutual RA-TLS: round trips and namespaces."""

import queue
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from threading import Event

import pytest
from waiting import wait_until

from teaclave.config import Config, Endpoints, StorageConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.observability import metrics
from teaclave.services import storage
from teaclave.services.base import ServiceEnv
from teaclave.storage.api import Changes, Conflict, Record, Write
from teaclave.storage.remote import SCAN_PAGE, RemoteStore
from teaclave.storage.watch import Watcher

Runner = Callable[..., AbstractContextManager[Event]]


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    # Small messages, so that scans of large values come back in several short pages.
    return Config(data_dir=str(tmp_path), endpoints=loopback_endpoints, max_message_bytes=256 << 10)


@pytest.fixture
def clients(config: Config, service_runner: Runner) -> Iterator[Callable[[str], RemoteStore]]:
    """Storage running; a factory of stores dialed as a given peer service."""
    with ExitStack() as stack:
        stack.enter_context(
            service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",))
        )

        def client(service: str) -> RemoteStore:
            peer = ServiceEnv.create(config, service).peer("storage")
            stack.callback(peer.close)
            return RemoteStore(peer)

        yield client


def answer(store: RemoteStore, prefixes: list[str], since: int) -> Changes:
    """The one answer of a watch with no lifetime: the changes after ``since`` now."""
    [changes] = list(store.watch(prefixes, since, 0))
    return changes


def _refused(call: Callable[[], object], status: Status) -> str:
    with pytest.raises(TeaclaveError) as caught:
        call()
    assert caught.value.status is status
    return caught.value.message


def test_round_trip(clients: Callable[[str], RemoteStore]) -> None:
    store = clients("management")
    v1 = store.commit([("task/1", 0)], [Write("task/1", b"one"), Write("staged/1", b"q")])
    assert [(r.value, r.version) for r in store.get(["task/1", "task/2"])] == [
        (b"one", v1),
        (b"", 0),
    ]
    with pytest.raises(Conflict) as caught:
        store.commit([("task/1", 0)], [Write("task/1", b"again")])
    assert caught.value.key == "task/1"
    v2 = store.commit([("task/1", v1)], [Write("task/1", None)])
    assert v2 > v1
    assert not store.get(["task/1"])[0].exists
    assert [r.key for r in store.scan("staged/")] == ["staged/1"]


def gets_served() -> float:
    """Get calls the storage service answered so far."""
    labels = {"service": "storage", "method": "TeaclaveStorage/Get", "code": "OK"}
    return metrics.REGISTRY.get_sample_value("teaclave_rpc_server_handled_total", labels) or 0.0


def test_a_get_of_no_keys_makes_no_call(clients: Callable[[str], RemoteStore]) -> None:
    store = clients("scheduler")
    before = gets_served()
    assert store.get([]) == []
    assert gets_served() == before
    assert not store.get(["task/1"])[0].exists  # one key: one call
    assert gets_served() == before + 1


def test_scan_pages_through_everything(clients: Callable[[str], RemoteStore]) -> None:
    store = clients("management")
    count = SCAN_PAGE * 2 + 10
    names = [f"audit/{i:05d}" for i in range(count)]
    store.commit([], [Write(k, k.encode()) for k in names])
    store.commit([], [Write("task/1", b"outside")])
    records = store.scan("audit/")
    assert [r.key for r in records] == names
    assert [r.value for r in records] == [k.encode() for k in names]
    assert [r.key for r in store.scan("audit/", limit=3, start_after=names[5])] == names[6:9]


def test_scan_of_large_values_is_cut_into_short_pages(
    clients: Callable[[str], RemoteStore],
) -> None:
    store = clients("management")
    big = {f"input/{i}": bytes([i]) * (40 << 10) for i in range(8)}
    items = list(big.items())
    for chunk in (items[:4], items[4:]):
        store.commit([], [Write(k, v) for k, v in chunk])
    assert {r.key: r.value for r in store.scan("input/")} == big


def test_namespaces_are_enforced(clients: Callable[[str], RemoteStore]) -> None:
    auth = clients("authentication")
    auth.commit([], [Write("user/alice", b"account")])
    assert auth.get(["user/alice"])[0].value == b"account"
    message = _refused(lambda: auth.commit([], [Write("task/x", b"x")]), Status.PERMISSION_DENIED)
    assert "task/x" in message
    _refused(lambda: auth.get(["user/alice", "function/f"]), Status.PERMISSION_DENIED)
    _refused(lambda: auth.scan("task/"), Status.PERMISSION_DENIED)
    _refused(lambda: auth.scan("tas"), Status.PERMISSION_DENIED)
    _refused(lambda: auth.commit([("task/x", 0)], []), Status.PERMISSION_DENIED)
    scheduler = clients("scheduler")
    _refused(lambda: scheduler.get(["user/alice"]), Status.PERMISSION_DENIED)
    assert not scheduler.get(["task/x"])[0].exists
    _refused(lambda: answer(scheduler, ["staged/", "user/"], 0), Status.PERMISSION_DENIED)


def test_peer_outside_topology_is_refused(clients: Callable[[str], RemoteStore]) -> None:
    execution = clients("execution")
    _refused(lambda: execution.get(["task/x"]), Status.PERMISSION_DENIED)
    _refused(lambda: answer(execution, ["task/"], 0), Status.PERMISSION_DENIED)


def test_invalid_requests(clients: Callable[[str], RemoteStore]) -> None:
    store = clients("management")
    assert _refused(lambda: store.get([""]), Status.INVALID_ARGUMENT) == "empty key"
    assert _refused(lambda: store.scan(""), Status.INVALID_ARGUMENT) == "empty prefix"
    _refused(lambda: store.commit([], [Write("", b"x")]), Status.INVALID_ARGUMENT)
    _refused(lambda: store.get(["task/x"] * 1001), Status.INVALID_ARGUMENT)
    too_many = [Write(f"task/{i}", b"") for i in range(1001)]
    _refused(lambda: store.commit([], too_many), Status.INVALID_ARGUMENT)
    _refused(lambda: store.get(["task/" + "x" * 2000]), Status.INVALID_ARGUMENT)
    assert _refused(lambda: answer(store, [], 0), Status.INVALID_ARGUMENT) == "no prefix to watch"
    _refused(lambda: answer(store, ["task/"] * 1001, 0), Status.INVALID_ARGUMENT)
    too_long = "writer longer than 128 characters"
    long_writer = "w" * 129
    watch = lambda: list(store.watch(["task/"], 0, 0, unless_writer=long_writer))  # noqa: E731
    assert _refused(watch, Status.INVALID_ARGUMENT) == too_long
    store.writer = long_writer
    commit = lambda: store.commit([], [Write("task/1", b"")])  # noqa: E731
    assert _refused(commit, Status.INVALID_ARGUMENT) == too_long


def test_watch_streams_commits_as_they_are_made(clients: Callable[[str], RemoteStore]) -> None:
    """A watch answers at once with earlier commits, then with each commit under its
    prefixes; a scheduler watching the queue learns of a task staged by management."""
    management, scheduler = clients("management"), clients("scheduler")
    first = management.commit([], [Write("task/1", b""), Write("staged/1-a", b"")])
    assert answer(scheduler, ["staged/"], first) == Changes(first)  # none since: at once
    watch = scheduler.watch(["staged/"], 0, 60)
    stream = iter(watch)
    assert next(stream) == Changes(first, ("staged/1-a",))
    management.commit([], [Write("task/2", b"")])  # not watched
    second = management.commit([], [Write("staged/2-b", b"")])
    assert next(stream) == Changes(second, ("staged/2-b",))
    watch.cancel()
    with pytest.raises(TeaclaveError) as caught:
        next(stream)
    assert caught.value.status is Status.CANCELLED


def test_a_watch_may_leave_out_its_own_clients_commits(
    clients: Callable[[str], RemoteStore],
) -> None:
    """A client's watch ``unless_writer`` its own :attr:`RemoteStore.writer` misses its
    own commits only: another client's of the same service, or another service's
    commits naming the same writer, still come."""
    scheduler, other, management = clients("scheduler"), clients("scheduler"), clients("management")
    watch = scheduler.watch(["staged/"], 0, 60, unless_writer=scheduler.writer)
    stream = iter(watch)
    assert next(stream) == Changes(0)
    scheduler.commit([], [Write("staged/1", b"")])
    management.writer = scheduler.writer  # a peer cannot hide its commits from another's watch
    foreign = management.commit([], [Write("staged/2", b"")])
    assert next(stream) == Changes(foreign, ("staged/2",))
    scheduler.commit([], [Write("staged/1", None)])
    ours = other.commit([], [Write("staged/3", b"")])
    assert next(stream) == Changes(ours, ("staged/3",))
    watch.cancel()


def test_a_watch_with_values_brings_the_records_of_its_keys(
    clients: Callable[[str], RemoteStore],
) -> None:
    """Each message carries its keys' records as they are when it is sent (absent: version
    0), so a watcher on a key need not read it again; without ``with_values``, none."""
    management = clients("management")
    first = management.commit([], [Write("task/1", b"one"), Write("task/2", b"two")])
    watch = management.watch(["task/"], 0, 60, with_values=True)
    stream = iter(watch)
    one, two = Record("task/1", b"one", first), Record("task/2", b"two", first)
    assert next(stream).records == (one, two)
    second = management.commit([], [Write("task/1", None)])
    assert next(stream) == Changes(second, ("task/1",), records=(Record("task/1", b"", 0),))
    watch.cancel()
    plain = iter(management.watch(["task/"], 0, 60))
    assert next(plain) == Changes(second, ("task/1", "task/2"))


def test_watch_across_a_restart_loses_nothing(config: Config, service_runner: Runner) -> None:
    """A watcher that saw version v, asking a restarted storage service, learns that
    commits may have been made meanwhile (lost) if any were, and is told of later ones."""
    with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
        peer = ServiceEnv.create(config, "scheduler").peer("storage")
        store = RemoteStore(peer)
        seen = store.commit([], [Write("staged/1", b"")])
        assert answer(store, ["staged/"], seen) == Changes(seen)
        peer.close()
    with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
        peer = ServiceEnv.create(config, "scheduler").peer("storage")
        store = RemoteStore(peer)
        assert answer(store, ["staged/"], seen) == Changes(seen)  # nothing committed since
        later = store.commit([], [Write("staged/2", b"")])
        assert answer(store, ["staged/"], seen) == Changes(later, ("staged/2",))
        assert answer(store, ["staged/"], seen - 1) == Changes(later, lost=True)
        peer.close()


def test_a_watcher_follows_the_service_across_its_restart(
    config: Config, service_runner: Runner
) -> None:
    """The watcher's stream breaks when the storage service stops; it reconnects to the
    restarted service and is told that changes were lost (it had not seen the last
    commit, to another prefix), then of each later commit."""
    peer = ServiceEnv.create(config, "scheduler").peer("storage")
    store = RemoteStore(peer)
    seen: queue.Queue[Changes] = queue.Queue()
    watcher = Watcher(store, ["staged/"], max_waiters=1, on_changes=seen.put)
    try:
        with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
            staged = store.commit([], [Write("staged/1", b"")])
            watcher.start()
            assert seen.get(timeout=60) == Changes(staged, ("staged/1",))
            store.commit([], [Write("task/1", b"")])  # not watched: the watcher stays at v1
        with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
            after_restart = seen.get(timeout=60)
            assert after_restart.lost
            later = store.commit([], [Write("staged/2", b"")])
            assert seen.get(timeout=60) == Changes(later, ("staged/2",))
    finally:
        watcher.close()
        watcher.join(60)
        peer.close()


def cancelled_watches() -> float:
    labels = {"service": "storage", "method": "TeaclaveStorage/Watch", "code": "CANCELLED"}
    return metrics.REGISTRY.get_sample_value("teaclave_rpc_server_handled_total", labels) or 0.0


def test_a_closed_watcher_cancels_its_stream(clients: Callable[[str], RemoteStore]) -> None:
    """Closing a watcher ends its stream at the service (cancelled, not run out)."""
    store = clients("scheduler")
    staged = store.commit([], [Write("staged/1", b"")])
    seen: queue.Queue[Changes] = queue.Queue()
    watcher = Watcher(store, ["staged/"], max_waiters=1, on_changes=seen.put)
    cancelled = cancelled_watches()
    watcher.start()
    assert seen.get(timeout=60) == Changes(staged, ("staged/1",))
    watcher.close()
    watcher.join(60)
    wait_until(lambda: cancelled_watches() == cancelled + 1, "the stream to end as cancelled")


@pytest.fixture
def few_watches(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    return Config(
        data_dir=str(tmp_path),
        endpoints=loopback_endpoints,
        storage=StorageConfig(max_watch_streams=2),
    )


def test_open_watches_are_bounded(few_watches: Config, service_runner: Runner) -> None:
    """Beyond ``storage.max_watch_streams`` a watch is refused RESOURCE_EXHAUSTED; one
    that ends (here: cancelled by its watcher) frees its place; other calls still run."""
    with (
        service_runner(storage.main, ServiceEnv.create(few_watches, "storage"), ("storage",)),
        ExitStack() as stack,
    ):
        peer = ServiceEnv.create(few_watches, "scheduler").peer("storage")
        stack.callback(peer.close)
        store = RemoteStore(peer)
        watches = [store.watch(["staged/"], 0, 60) for _ in range(2)]
        streams = [iter(w) for w in watches]
        for stream in streams:
            assert next(stream) == Changes(0)  # open
        assert _refused(lambda: answer(store, ["task/"], 0), Status.RESOURCE_EXHAUSTED) == (
            "too many watches open (at most 2); try again later"
        )
        assert not store.get(["task/1"])[0].exists
        watches[0].cancel()
        wait_until(lambda: opens(store), "a watch to open once one was cancelled")
        version = store.commit([], [Write("staged/1", b"")])
        assert next(streams[1]) == Changes(version, ("staged/1",))


def opens(store: RemoteStore) -> bool:
    """Whether a watch opens now (False: RESOURCE_EXHAUSTED)."""
    try:
        answer(store, ["task/"], 0)
    except TeaclaveError as exc:
        if exc.status is not Status.RESOURCE_EXHAUSTED:
            raise
        return False
    return True


def test_data_survives_restart(config: Config, service_runner: Runner) -> None:
    for expected in (b"", b"kept"):
        with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
            peer = ServiceEnv.create(config, "management").peer("storage")
            store = RemoteStore(peer)
            assert store.get(["task/1"])[0].value == expected
            store.commit([], [Write("task/1", b"kept")])
            peer.close()
    assert (config.data_path / "teaclave.db").exists()

"""The storage service over real gRPC with mutual RA-TLS: round trips and namespaces."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from threading import Event

import pytest

from teaclave.config import Config, Endpoints
from teaclave.core.errors import Status, TeaclaveError
from teaclave.services import storage
from teaclave.services.base import ServiceEnv
from teaclave.storage.api import Conflict, Write
from teaclave.storage.remote import SCAN_PAGE, RemoteStore

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


def test_peer_outside_topology_is_refused(clients: Callable[[str], RemoteStore]) -> None:
    execution = clients("execution")
    _refused(lambda: execution.get(["task/x"]), Status.PERMISSION_DENIED)


def test_invalid_requests(clients: Callable[[str], RemoteStore]) -> None:
    store = clients("management")
    assert _refused(lambda: store.get([""]), Status.INVALID_ARGUMENT) == "empty key"
    assert _refused(lambda: store.scan(""), Status.INVALID_ARGUMENT) == "empty prefix"
    _refused(lambda: store.commit([], [Write("", b"x")]), Status.INVALID_ARGUMENT)
    _refused(lambda: store.get(["task/x"] * 1001), Status.INVALID_ARGUMENT)
    too_many = [Write(f"task/{i}", b"") for i in range(1001)]
    _refused(lambda: store.commit([], too_many), Status.INVALID_ARGUMENT)
    _refused(lambda: store.get(["task/" + "x" * 2000]), Status.INVALID_ARGUMENT)


def test_data_survives_restart(config: Config, service_runner: Runner) -> None:
    for expected in (b"", b"kept"):
        with service_runner(storage.main, ServiceEnv.create(config, "storage"), ("storage",)):
            peer = ServiceEnv.create(config, "management").peer("storage")
            store = RemoteStore(peer)
            assert store.get(["task/1"])[0].value == expected
            store.commit([], [Write("task/1", b"kept")])
            peer.close()
    assert (config.data_path / "teaclave.db").exists()

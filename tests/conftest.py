"""Shared fixtures: free loopback ports, services running in threads, a loopback-only guard."""

import contextlib
import dataclasses
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from teaclave.config import Endpoints
from teaclave.executor.zygote import ENVIRONMENT
from teaclave.services.base import ServiceEnv, ServiceMain

# As in a task process: numerical libraries start no thread pool when imported, so tests may
# fork sandboxes from this process (spawn refuses a caller with any other thread).
os.environ.update(ENVIRONMENT)


def pick_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return pick_free_port()


@pytest.fixture
def loopback_endpoints() -> Endpoints:
    """Every endpoint on its own free 127.0.0.1 port."""
    names = [f.name for f in dataclasses.fields(Endpoints)]
    ports: set[int] = set()
    while len(ports) < len(names):
        ports.add(pick_free_port())
    return Endpoints(**{n: f"127.0.0.1:{p}" for n, p in zip(names, sorted(ports), strict=True)})


def wait_for_port(address: str, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts TCP connections."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def run_service(
    main: ServiceMain, env: ServiceEnv, wait_for: tuple[str, ...] = ()
) -> Iterator[threading.Event]:
    """Run a service's ``main`` in a thread until the block ends (then stop it).

    ``wait_for``: endpoint names (e.g. ``"storage"``) to wait for before yielding.
    """
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            main(env, stop)
        except BaseException as exc:  # reported at exit
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"service-{env.service}", daemon=True)
    thread.start()
    try:
        for endpoint in wait_for:
            wait_for_port(getattr(env.config.endpoints, endpoint))
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), f"{env.service} did not stop"
    if errors:
        raise errors[0]


@pytest.fixture
def service_runner() -> Callable[..., contextlib.AbstractContextManager[threading.Event]]:
    """:func:`run_service` for test packages (their modules cannot import this conftest)."""
    return run_service


# Socket guard: tests talk to loopback only. Every connect() of a Python socket is
# recorded; one to a non-loopback address is refused and fails the test.

_CONNECTIONS: list[object] = []
_OUTSIDE: list[object] = []


class OutsideConnection(AssertionError):
    """A test tried to connect to a non-loopback address."""


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _checked(connect: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _CONNECTIONS.append(address)
            if not _loopback(address[0]):
                _OUTSIDE.append(address)
                raise OutsideConnection(f"test tried to connect to {address!r}")
        return connect(sock, address)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def _socket_guard() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("connect", "connect_ex"):
            patch.setattr(socket.socket, name, _checked(getattr(socket.socket, name)))
        yield


@pytest.fixture(autouse=True)
def _loopback_only(_socket_guard: None) -> Iterator[None]:
    _CONNECTIONS.clear()
    _OUTSIDE.clear()
    yield
    if _OUTSIDE:
        pytest.fail(f"connections to non-loopback addresses: {_OUTSIDE!r}")


@pytest.fixture
def socket_connections() -> list[object]:
    """The addresses Python sockets tried to connect to during this test (kept up to date)."""
    return _CONNECTIONS

"""Shared fixtures: free loopback ports and services running in threads."""

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from teaclave.config import Endpoints
from teaclave.services.base import ServiceEnv, ServiceMain


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

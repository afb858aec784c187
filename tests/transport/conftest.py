"""Transport fixtures: a stub resolver (no DNS), loopback HTTP servers, a moto S3 server."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import s3fs  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer
from transport_helpers import serve_in_thread

from teaclave.transport import policy
from teaclave.transport.file_server import FileServer


@pytest.fixture(autouse=True)
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host names the URL policy can resolve (tests add theirs); numeric hosts work too.

    Nothing reaches a real DNS server.
    """
    table: dict[str, list[str]] = {"localhost": ["127.0.0.1", "::1"]}

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        infos = socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
        return [str(info[4][0]) for info in infos]

    monkeypatch.setattr(policy, "resolve_host", resolve)
    return table


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The directory the file server serves."""
    path = tmp_path / "served"
    path.mkdir()
    return path


@pytest.fixture
def file_server(served: Path) -> Iterator[FileServer]:
    """``teaclave file serve`` on a free 127.0.0.1 port."""
    with serve_in_thread(FileServer(served)) as server:
        yield server


@pytest.fixture
def start_server() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], str]]:
    """Start a loopback server with a test's own handler; its base URL (stopped after the test)."""
    with contextlib.ExitStack() as stack:

        def start(handler: type[BaseHTTPRequestHandler]) -> str:
            server = stack.enter_context(
                serve_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), handler))
            )
            return f"http://127.0.0.1:{server.server_address[1]}"

        yield start


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port (one for the session)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for moto in the environment (and no AWS files or instance metadata)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(moto_endpoint: str, bucket_env: None) -> Iterator[s3fs.S3FileSystem]:
    """A fresh bucket ``fs.bucket`` on the moto server, and a client for checking it."""
    fs = s3fs.S3FileSystem(
        endpoint_url=moto_endpoint, skip_instance_cache=True, use_listings_cache=False
    )
    fs.bucket = f"bucket-{uuid.uuid4().hex[:12]}"
    fs.mkdir(fs.bucket)
    yield fs
    fs.rm(fs.bucket, recursive=True)

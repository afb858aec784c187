"""http:// against `teaclave file serve` and scripted servers, all on 127.0.0.1."""

from __future__ import annotations

import http.client
import io
import logging
import subprocess
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from transport_helpers import failure

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status
from teaclave.transport import urls
from teaclave.transport.file_server import FileServer

Start = Callable[[type[BaseHTTPRequestHandler]], str]


def trusting(url: str, **settings: object) -> ExecutionConfig:
    """A config whose private_hosts lists the loopback server of ``url``."""
    host_port = url.split("/")[2]
    return ExecutionConfig(private_hosts=(host_port,), **settings)  # type: ignore[arg-type]


def fetch(url: str, config: ExecutionConfig) -> bytes:
    with urls.open_download(url, config) as reader:
        return b"".join(iter(lambda: reader.read(65536), b""))


class Recorder(BaseHTTPRequestHandler):
    """Answers PUT with ``put_status`` and GET with a body of unknown length; records requests."""

    put_status: ClassVar[int] = 200
    requests: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append(("PUT", dict(self.headers), body))
        self.send_response(self.put_status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.requests.append(("GET", dict(self.headers), b""))
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(4):
            self.wfile.write(b"x" * 1000)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> type[Recorder]:
    Recorder.requests = []
    Recorder.put_status = 200
    return Recorder


def test_download_streams(file_server: FileServer, served: Path) -> None:
    data = bytes(range(256)) * 12_000
    (served / "in.bin").write_bytes(data)
    config = trusting(file_server.url)
    with urls.open_download(f"{file_server.url}/in.bin", config) as reader:
        first = reader.read(1000)
        assert len(first) <= 1000
        rest = b"".join(iter(lambda: reader.read(65536), b""))
    assert first + rest == data


def test_upload_then_download(file_server: FileServer, served: Path) -> None:
    config = trusting(file_server.url, chunk_bytes=4096)
    data = b"ciphertext" * 100_000
    urls.upload(f"{file_server.url}/out.bin", io.BytesIO(data), config)
    assert (served / "out.bin").read_bytes() == data
    assert fetch(f"{file_server.url}/out.bin", config) == data


def test_upload_is_one_put_with_type_and_length(
    start_server: Start, recorder: type[Recorder]
) -> None:
    base = start_server(recorder)
    urls.upload(f"{base}/out", io.BytesIO(b"payload"), trusting(base, chunk_bytes=3))
    [(method, headers, body)] = recorder.requests
    assert (method, body) == ("PUT", b"payload")
    assert headers["Content-Type"] == "application/x-binary"
    assert headers["Content-Length"] == "7"
    assert "Transfer-Encoding" not in headers


@pytest.mark.parametrize("status", [201, 204, 500])
def test_only_200_is_a_successful_put(
    start_server: Start, recorder: type[Recorder], status: int
) -> None:
    recorder.put_status = status
    base = start_server(recorder)
    error = failure(urls.upload, f"{base}/out", io.BytesIO(b"x"), trusting(base))
    assert error.message.startswith(f"PUT http://{base[7:]}: HTTP {status}")


def test_upload_never_overwrites(file_server: FileServer, served: Path) -> None:
    (served / "out").write_bytes(b"keep")
    config = trusting(file_server.url)
    error = failure(urls.upload, f"{file_server.url}/out", io.BytesIO(b"new" * 100_000), config)
    assert error.status is Status.ALREADY_EXISTS
    assert "HTTP 409" in error.message
    assert (served / "out").read_bytes() == b"keep"


def test_missing_file(file_server: FileServer) -> None:
    error = failure(fetch, f"{file_server.url}/missing", trusting(file_server.url))
    assert error.status is Status.NOT_FOUND
    assert error.message == f"GET {file_server.url}: HTTP 404 Not Found"


def test_a_failed_block_sends_nothing(start_server: Start, recorder: type[Recorder]) -> None:
    base = start_server(recorder)
    with (  # noqa: PT012
        pytest.raises(ValueError, match="function failed"),
        urls.open_upload(f"{base}/out", trusting(base)) as writer,
    ):
        writer.write(b"partial")
        raise ValueError("function failed")
    assert recorder.requests == []


def test_size_limits(
    file_server: FileServer, served: Path, start_server: Start, recorder: type[Recorder]
) -> None:
    (served / "big").write_bytes(b"x" * 1001)
    config = trusting(file_server.url, max_file_bytes=1000)
    error = failure(fetch, f"{file_server.url}/big", config)
    assert error.status is Status.RESOURCE_EXHAUSTED
    # Without a Content-Length the limit applies to the bytes as they come.
    base = start_server(recorder)
    assert failure(fetch, base, trusting(base, max_file_bytes=3999)).status is (
        Status.RESOURCE_EXHAUSTED
    )
    assert len(fetch(base, trusting(base, max_file_bytes=4000))) == 4000
    error = failure(
        urls.upload, f"{base}/out", io.BytesIO(b"x" * 4001), trusting(base, max_file_bytes=4000)
    )
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert [method for method, _, _ in recorder.requests] == ["GET", "GET"]


def test_redirects_are_not_followed(start_server: Start, socket_connections: list[object]) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.1/x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    base = start_server(Redirect)
    error = failure(fetch, f"{base}/x", trusting(base))
    assert error.status is Status.PERMISSION_DENIED
    assert "HTTP 302 redirect to 10.0.0.1 refused" in error.message
    port = int(base.rsplit(":", 1)[1])
    assert socket_connections
    assert all(address[:2] == ("127.0.0.1", port) for address in socket_connections)  # type: ignore[index]


def test_http_outputs_are_not_discarded(
    file_server: FileServer, served: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = trusting(file_server.url)
    urls.upload(f"{file_server.url}/out", io.BytesIO(b"x"), config)
    with caplog.at_level(logging.WARNING, logger="teaclave.transport.urls"):
        urls.discard(f"{file_server.url}/out", config)
    assert (served / "out").exists()
    assert f"at http://{file_server.url[7:]}: HTTP outputs are not deleted" in caplog.text


def _raw(server: FileServer, method: str, path: str, body: bytes | None = None) -> int:
    """The status of a request sent as is (no client-side path normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        connection.request(method, path, body=body)
        return connection.getresponse().status
    finally:
        connection.close()


def test_server_refuses_escapes_listings_and_hidden_names(
    file_server: FileServer, served: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_bytes(b"secret")
    (served / "link").symlink_to(tmp_path / "secret")
    (served / "dirlink").symlink_to(tmp_path)
    (served / "sub").mkdir()
    (served / ".hidden").write_bytes(b"h")
    for path in (
        "/",
        "/sub",
        "/sub/",
        "/link",
        "/dirlink/secret",
        "/../secret",
        "/%2e%2e/secret",
        "/sub/%2F..%2F..%2Fsecret",
        "/.hidden",
        "//etc/passwd",
        "/a//b",
    ):
        assert _raw(file_server, "GET", path) == 404, path
    for path in ("/dirlink/new", "/../new", "/%2e%2e/new", "/nodir/new", "/.new", "/sub/"):
        assert _raw(file_server, "PUT", path, b"x") == 404, path
    assert _raw(file_server, "PUT", "/sub/new", b"x") == 200
    assert _raw(file_server, "PUT", "/sub/new", b"y") == 409
    assert (served / "sub" / "new").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret", "served"]
    assert sorted(p.name for p in served.iterdir()) == [".hidden", "dirlink", "link", "sub"]
    assert [p.name for p in (served / "sub").iterdir()] == ["new"]


def test_server_put_needs_a_length(file_server: FileServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", file_server.server_address[1], timeout=10)
    try:
        connection.putrequest("PUT", "/out")
        connection.endheaders()
        assert connection.getresponse().status == 411
    finally:
        connection.close()


def test_server_logs_one_line_per_request(
    file_server: FileServer, served: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (served / "f").write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="teaclave.transport.file_server"):
        assert _raw(file_server, "GET", "/f") == 200
        assert _raw(file_server, "GET", "/missing") == 404
    assert [record.getMessage().split('"')[1:] for record in caplog.records] == [
        ["GET /f HTTP/1.1", " 200 -"],
        ["GET /missing HTTP/1.1", " 404 -"],
    ]


def test_teaclave_file_serve_command(served: Path, free_port: int) -> None:
    (served / "f").write_bytes(b"served")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "teaclave.cli.main",
            "file",
            "serve",
            str(served),
            "--port",
            str(free_port),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert f"at http://127.0.0.1:{free_port}/" in process.stderr.readline()
        base = f"http://127.0.0.1:{free_port}"
        config = trusting(base)
        assert fetch(f"{base}/f", config) == b"served"
        urls.upload(f"{base}/g", io.BytesIO(b"put"), config)
        assert (served / "g").read_bytes() == b"put"
    finally:
        process.terminate()
        _, log = process.communicate(timeout=30)
    assert '"GET /f HTTP/1.1" 200' in log
    assert '"PUT /g HTTP/1.1" 200' in log

"""The URL policy: every refusal happens before any connection is attempted."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from transport_helpers import failure

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status
from teaclave.transport import policy, urls
from teaclave.transport.file_server import FileServer


@pytest.fixture
def config(tmp_path: Path) -> ExecutionConfig:
    return ExecutionConfig(file_roots=(str(tmp_path),), fusion_dir=str(tmp_path / "fusion"))


def _refused_everywhere(url: str, config: ExecutionConfig) -> list[str]:
    """The messages of check_url, open_download and open_upload refusing ``url``."""

    def download() -> None:
        with urls.open_download(url, config):
            pass

    calls = (
        lambda: urls.check_url(url, config),
        lambda: urls.check_url(url, config, write=True),
        download,
        lambda: urls.upload(url, io.BytesIO(b"x"), config),
    )
    return [failure(call).message for call in calls]


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("http://127.0.0.1/x", Status.PERMISSION_DENIED, "non-public address 127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", Status.PERMISSION_DENIED, "169.254.169.254"),
        ("http://10.0.0.1/x", Status.PERMISSION_DENIED, "http://10.0.0.1:80 resolves to"),
        ("https://192.168.1.1/x", Status.PERMISSION_DENIED, "https://192.168.1.1:443"),
        ("http://172.16.0.1/x", Status.PERMISSION_DENIED, "172.16.0.1"),
        ("http://100.64.0.1/x", Status.PERMISSION_DENIED, "100.64.0.1"),
        ("http://0.0.0.0/x", Status.PERMISSION_DENIED, "0.0.0.0"),
        ("http://224.0.0.1/x", Status.PERMISSION_DENIED, "224.0.0.1"),
        ("http://240.0.0.1/x", Status.PERMISSION_DENIED, "240.0.0.1"),
        ("http://2130706433/x", Status.PERMISSION_DENIED, "127.0.0.1"),
        ("http://[::1]/x", Status.PERMISSION_DENIED, "http://[::1]:80"),
        ("http://[::]/x", Status.PERMISSION_DENIED, "address ::"),
        ("http://[::ffff:10.0.0.1]/x", Status.PERMISSION_DENIED, "::ffff:10.0.0.1"),
        ("http://[::ffff:127.0.0.1]/x", Status.PERMISSION_DENIED, "::ffff:127.0.0.1"),
        ("http://[fe80::1]/x", Status.PERMISSION_DENIED, "fe80::1"),
        ("http://[fd00::1]/x", Status.PERMISSION_DENIED, "fd00::1"),
        ("http://[ff02::1]/x", Status.PERMISSION_DENIED, "ff02::1"),
        ("http://[64:ff9b::a9fe:a9fe]/x", Status.PERMISSION_DENIED, "64:ff9b::a9fe:a9fe"),
        ("http://[2002:a00:1::1]/x", Status.PERMISSION_DENIED, "2002:a00:1::1"),
        ("http://localhost:8080/x", Status.PERMISSION_DENIED, "http://localhost:8080"),
        ("http://internal.test/x", Status.PERMISSION_DENIED, "address 10.1.2.3"),
        ("http://split.test/x", Status.PERMISSION_DENIED, "address 192.168.0.9"),
        ("file:///etc/passwd", Status.PERMISSION_DENIED, "outside execution.file_roots"),
        ("gopher://x/", Status.INVALID_ARGUMENT, "unsupported URL scheme 'gopher'"),
        ("ftp://example.test/x", Status.INVALID_ARGUMENT, "unsupported URL scheme 'ftp'"),
        ("http://user:pw@public.test/x", Status.INVALID_ARGUMENT, "must not carry credentials"),
        ("http://user@public.test/x", Status.INVALID_ARGUMENT, "must not carry credentials"),
        ("http:///x", Status.INVALID_ARGUMENT, "without a host"),
        ("http://public.test:99999/x", Status.INVALID_ARGUMENT, "invalid port"),
        ("http://[::1/x", Status.INVALID_ARGUMENT, "malformed URL"),
        ("s3:///key", Status.INVALID_ARGUMENT, "must name a bucket"),
        ("s3://bucket/", Status.INVALID_ARGUMENT, "names no object key"),
        ("s3://bucket/key?versionId=1", Status.INVALID_ARGUMENT, "no query or fragment"),
        ("http://unknown.test/x", Status.UNAVAILABLE, "cannot resolve host 'unknown.test'"),
    ],
)
def test_refusals(
    url: str,
    status: Status,
    message: str,
    config: ExecutionConfig,
    names: dict[str, list[str]],
    socket_connections: list[object],
) -> None:
    names["internal.test"] = ["10.1.2.3"]
    names["split.test"] = ["93.184.216.34", "192.168.0.9"]
    names["public.test"] = ["93.184.216.34"]
    assert failure(urls.check_url, url, config).status is status
    for text in _refused_everywhere(url, config):
        assert message in text
    assert socket_connections == []


def test_host_list(config: ExecutionConfig, names: dict[str, list[str]]) -> None:
    names["files.test"] = ["93.184.216.34"]
    names["other.test"] = ["93.184.216.35"]
    listed = ExecutionConfig(url_hosts=("files.test", "other.test:8443"))
    urls.check_url("https://files.test/x", listed)
    urls.check_url("http://FILES.test:81/x", listed)
    urls.check_url("https://other.test:8443/x", listed, write=True)
    for url in ("https://other.test/x", "https://elsewhere.test/x"):
        error = failure(urls.check_url, url, listed)
        assert error.status is Status.PERMISSION_DENIED
        assert "host not in execution.url_hosts" in error.message
    # Without a list, any host with public addresses is fine.
    urls.check_url("https://other.test/x", config)


def test_private_hosts_allow_non_public_addresses(names: dict[str, list[str]]) -> None:
    names["internal.test"] = ["10.1.2.3"]
    config = ExecutionConfig(private_hosts=("internal.test", "127.0.0.1:8080", "[::1]"))
    urls.check_url("http://internal.test/x", config)
    urls.check_url("http://127.0.0.1:8080/x", config)
    urls.check_url("http://[::1]:1234/x", config)
    error = failure(urls.check_url, "http://127.0.0.1:8081/x", config)
    assert error.message == (
        "http://127.0.0.1:8081 resolves to the non-public address 127.0.0.1, "
        "which is not allowed (see execution.private_hosts)"
    )


def test_a_private_hosts_clearance_covers_only_its_addresses(names: dict[str, list[str]]) -> None:
    """What the connect-time gate allows for a trusted private host."""
    names["internal.test"] = ["10.1.2.3", "fd00::5"]
    config = ExecutionConfig(private_hosts=("internal.test",))
    clearance = policy.check_endpoint(policy.endpoint("http://internal.test/x", config), config)
    for allowed in ("10.1.2.3", "fd00::5", "fd00:0::5", "93.184.216.34"):
        assert clearance.refusal(allowed) is None, allowed
    for refused in ("10.0.0.1", "127.0.0.1", "169.254.169.254", "::1", "not-an-address"):
        assert "internal.test:80 resolves to the non-public address" in str(
            clearance.refusal(refused)
        )


def test_schemes_outside_the_configured_list(tmp_path: Path) -> None:
    config = ExecutionConfig(file_roots=(str(tmp_path),), url_schemes=("file",))
    urls.check_url(f"file://{tmp_path}/x", config)
    for url in ("data:,x", "https://public.test/x", "fusion:///TEACLAVE_FUSION_BASE/a"):
        error = failure(urls.check_url, url, config)
        assert error.status is Status.PERMISSION_DENIED
        assert "is not in execution.url_schemes" in error.message


def test_data_urls_are_read_only(config: ExecutionConfig) -> None:
    urls.check_url("data:,x", config)
    assert failure(urls.check_url, "data:,x", config, write=True).message == (
        "data: URLs are read-only"
    )


def test_s3_urls_are_checked_against_their_endpoint(names: dict[str, list[str]]) -> None:
    names["s3.amazonaws.com"] = ["52.216.0.1"]
    urls.check_url("s3://bucket/key", ExecutionConfig())
    local = ExecutionConfig(s3_endpoint_url="http://127.0.0.1:9000")
    error = failure(urls.check_url, "s3://bucket/key", local)
    assert error.message.startswith("s3://127.0.0.1:9000 resolves to the non-public address")
    trusted = ExecutionConfig(s3_endpoint_url="http://127.0.0.1:9000", private_hosts=("127.0.0.1",))
    urls.check_url("s3://bucket/key", trusted)
    listed = ExecutionConfig(url_hosts=("s3.amazonaws.com",))
    urls.check_url("s3://bucket/key", listed)
    elsewhere = ExecutionConfig(url_hosts=("files.test",))
    assert "url_hosts" in failure(urls.check_url, "s3://bucket/key", elsewhere).message


def test_dns_rebinding_is_caught_at_connect_time(
    file_server: FileServer, names: dict[str, list[str]], socket_connections: list[object]
) -> None:
    """The policy saw a public address; the connection would go to loopback: refused."""
    names["localhost"] = ["93.184.216.34"]
    port = file_server.server_address[1]
    (Path(file_server.root) / "x").write_bytes(b"secret")
    url = f"http://localhost:{port}/x"
    urls.check_url(url, ExecutionConfig())

    def download() -> None:
        with urls.open_download(url, ExecutionConfig()):
            pass

    error = failure(download)
    assert error.status is Status.PERMISSION_DENIED
    assert error.message.startswith(f"http://localhost:{port} resolves to the non-public address")
    assert socket_connections == []

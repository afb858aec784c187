"""s3:// against a moto S3 server on 127.0.0.1 (credentials from the environment)."""

from __future__ import annotations

import io

import pytest
import s3fs  # type: ignore[import-untyped]
from transport_helpers import failure

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status
from teaclave.transport import urls


@pytest.fixture
def config(moto_endpoint: str) -> ExecutionConfig:
    return ExecutionConfig(
        s3_endpoint_url=moto_endpoint,
        private_hosts=(moto_endpoint.removeprefix("http://"),),
        max_file_bytes=8 << 20,
        chunk_bytes=1 << 20,
    )


def fetch(url: str, config: ExecutionConfig) -> bytes:
    with urls.open_download(url, config) as reader:
        return b"".join(iter(lambda: reader.read(65536), b""))


def pending_uploads(bucket: s3fs.S3FileSystem) -> list[object]:
    return list(bucket.list_multipart_uploads(bucket.bucket))


@pytest.mark.parametrize("size", [0, 10, 6 << 20])
def test_round_trip(bucket: s3fs.S3FileSystem, config: ExecutionConfig, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    url = f"s3://{bucket.bucket}/dir/out.bin"
    urls.upload(url, io.BytesIO(data), config)
    assert bucket.cat_file(url) == data
    assert fetch(url, config) == data
    assert pending_uploads(bucket) == []


def test_upload_never_overwrites(bucket: s3fs.S3FileSystem, config: ExecutionConfig) -> None:
    url = f"s3://{bucket.bucket}/out"
    bucket.pipe_file(url, b"keep")
    error = failure(urls.upload, url, io.BytesIO(b"new"), config)
    assert error.status is Status.ALREADY_EXISTS
    assert bucket.cat_file(url) == b"keep"
    assert pending_uploads(bucket) == []


def test_a_failed_block_leaves_nothing(bucket: s3fs.S3FileSystem, config: ExecutionConfig) -> None:
    url = f"s3://{bucket.bucket}/out"
    with (  # noqa: PT012
        pytest.raises(ValueError, match="function failed"),
        urls.open_upload(url, config) as writer,
    ):
        writer.write(b"x" * (6 << 20))
        raise ValueError("function failed")
    assert not bucket.exists(url)
    assert pending_uploads(bucket) == []


def test_size_limits(bucket: s3fs.S3FileSystem, config: ExecutionConfig) -> None:
    url = f"s3://{bucket.bucket}/big"
    bucket.pipe_file(url, b"x" * ((8 << 20) + 1))
    assert failure(fetch, url, config).status is Status.RESOURCE_EXHAUSTED
    out = f"s3://{bucket.bucket}/out"
    error = failure(urls.upload, out, io.BytesIO(b"x" * ((8 << 20) + 1)), config)
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert not bucket.exists(out)
    assert pending_uploads(bucket) == []


def test_missing_object_and_bucket(bucket: s3fs.S3FileSystem, config: ExecutionConfig) -> None:
    assert failure(fetch, f"s3://{bucket.bucket}/missing", config).status is Status.NOT_FOUND
    assert failure(fetch, "s3://no-such-bucket/x", config).status is Status.NOT_FOUND


def test_discard(bucket: s3fs.S3FileSystem, config: ExecutionConfig) -> None:
    url = f"s3://{bucket.bucket}/out"
    urls.upload(url, io.BytesIO(b"x"), config)
    urls.discard(url, config)
    assert not bucket.exists(url)
    urls.discard(url, config)  # gone already is fine


def test_the_endpoint_is_subject_to_the_policy(
    moto_endpoint: str, socket_connections: list[object]
) -> None:
    config = ExecutionConfig(s3_endpoint_url=moto_endpoint)
    error = failure(fetch, "s3://bucket/key", config)
    assert error.status is Status.PERMISSION_DENIED
    assert error.message.startswith(f"s3://{moto_endpoint[7:]} resolves to the non-public")
    assert socket_connections == []


def test_dns_rebinding_of_the_endpoint_is_caught_at_connect_time(
    moto_endpoint: str,
    bucket: s3fs.S3FileSystem,
    names: dict[str, list[str]],
    socket_connections: list[object],
) -> None:
    names["localhost"] = ["93.184.216.34"]
    config = ExecutionConfig(s3_endpoint_url=moto_endpoint.replace("127.0.0.1", "localhost"))
    url = f"s3://{bucket.bucket}/x"
    urls.check_url(url, config)
    socket_connections.clear()
    error = failure(fetch, url, config)
    assert error.status is Status.PERMISSION_DENIED
    assert "resolves to the non-public address" in error.message
    assert socket_connections == []

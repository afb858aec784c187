"""file:// confinement below the file roots, data: URLs, size limits, refused schemes."""

import io
import os
from pathlib import Path

import pytest

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError
from teaclave.transport import urls


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def config(root: Path) -> ExecutionConfig:
    return ExecutionConfig(file_roots=(str(root),), max_file_bytes=1000)


def fetch(url: str, config: ExecutionConfig) -> bytes:
    with urls.open_download(url, config) as reader:
        return reader.read()


def failure(call: object, *args: object) -> TeaclaveError:
    assert callable(call)
    with pytest.raises(TeaclaveError) as info:
        call(*args)
    return info.value


def test_file_round_trip(root: Path, config: ExecutionConfig) -> None:
    urls.upload(f"file://{root}/out.bin", io.BytesIO(b"payload"), config)
    assert (root / "out.bin").read_bytes() == b"payload"
    assert fetch(f"file://{root}/out.bin", config) == b"payload"
    (root / "a b.txt").write_bytes(b"spaced")
    assert fetch(f"file://localhost{root}/a%20b.txt", config) == b"spaced"


def test_upload_never_overwrites(root: Path, config: ExecutionConfig) -> None:
    (root / "out").write_bytes(b"keep")
    error = failure(urls.upload, f"file://{root}/out", io.BytesIO(b"new"), config)
    assert error.status is Status.ALREADY_EXISTS
    assert (root / "out").read_bytes() == b"keep"


def test_escapes_are_refused(tmp_path: Path, root: Path, config: ExecutionConfig) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    (root / "link").symlink_to(secret)
    (root / "dirlink").symlink_to(tmp_path)
    for url in (
        f"file://{secret}",
        f"file://{root}/../secret",
        f"file://{root}/link",
        f"file://{root}/dirlink/secret",
    ):
        error = failure(fetch, url, config)
        assert error.status is Status.PERMISSION_DENIED, url
        assert "outside execution.file_roots" in error.message
    for url in (f"file://{root}/../new", f"file://{root}/dirlink/new"):
        error = failure(urls.upload, url, io.BytesIO(b"x"), config)
        assert error.status is Status.PERMISSION_DENIED, url
    assert not (tmp_path / "new").exists()


def test_upload_does_not_follow_a_dangling_symlink(
    tmp_path: Path, root: Path, config: ExecutionConfig
) -> None:
    (root / "dangling").symlink_to(tmp_path / "target")
    error = failure(urls.upload, f"file://{root}/dangling", io.BytesIO(b"x"), config)
    assert error.status is Status.ALREADY_EXISTS
    assert not (tmp_path / "target").exists()


def test_symlinks_inside_the_root_are_fine(root: Path, config: ExecutionConfig) -> None:
    (root / "real").write_bytes(b"data")
    (root / "alias").symlink_to(root / "real")
    assert fetch(f"file://{root}/alias", config) == b"data"


def test_without_roots_file_urls_are_disabled(root: Path) -> None:
    (root / "f").write_bytes(b"data")
    error = failure(fetch, f"file://{root}/f", ExecutionConfig())
    assert "file_roots is empty" in error.message


def test_missing_files_and_non_regular_files(root: Path, config: ExecutionConfig) -> None:
    assert failure(fetch, f"file://{root}/missing", config).status is Status.NOT_FOUND
    os.mkfifo(root / "fifo")
    assert "not a regular file" in failure(fetch, f"file://{root}/fifo", config).message
    missing_dir = f"file://{root}/nodir/out"
    assert failure(urls.upload, missing_dir, io.BytesIO(b""), config).status is Status.NOT_FOUND


def test_size_limit(root: Path, config: ExecutionConfig) -> None:
    (root / "big").write_bytes(b"x" * 1001)
    assert failure(fetch, f"file://{root}/big", config).status is Status.RESOURCE_EXHAUSTED
    error = failure(urls.upload, f"file://{root}/out", io.BytesIO(b"x" * 1001), config)
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert not (root / "out").exists()  # a partial upload is removed
    assert failure(fetch, "data:," + "x" * 1001, config).status is Status.RESOURCE_EXHAUSTED


def test_data_urls(config: ExecutionConfig) -> None:
    assert fetch("data:text/plain;base64,aGVsbG8=", config) == b"hello"
    assert fetch("data:,hello%20world", config) == b"hello world"
    assert "invalid base64" in failure(fetch, "data:text/plain;base64,a$b=", config).message
    assert "no comma" in failure(fetch, "data:text/plain", config).message
    error = failure(urls.upload, "data:,x", io.BytesIO(b"x"), config)
    assert error.message == "data: URLs are read-only"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gopher://127.0.0.1/x", "unsupported URL scheme 'gopher'"),
        ("/no/scheme", "unsupported URL scheme ''"),
        ("file://host/x", "no host"),
        ("file:relative", "absolute path"),
        ("file:///x?q=1", "no query"),
    ],
)
def test_bad_urls(url: str, message: str, config: ExecutionConfig) -> None:
    assert message in failure(fetch, url, config).message
    assert message in failure(urls.upload, url, io.BytesIO(b""), config).message


def test_existence_outside_the_roots_is_not_revealed(
    tmp_path: Path, config: ExecutionConfig
) -> None:
    for url in (f"file://{tmp_path}/missing", f"file://{tmp_path}/nodir/x"):
        assert failure(fetch, url, config).status is Status.PERMISSION_DENIED
    error = failure(urls.upload, f"file://{tmp_path}/nodir/x", io.BytesIO(b""), config)
    assert error.status is Status.PERMISSION_DENIED

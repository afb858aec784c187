"""fusion:///TEACLAVE_FUSION_BASE/<name>: files in the platform's fusion directory."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from transport_helpers import failure

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status
from teaclave.transport import urls

URL = "fusion:///TEACLAVE_FUSION_BASE/0f5a2c1e-1b7e-4c8e-9a51-3f2b8e0d6a11.fusion"


@pytest.fixture
def fusion_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "fusion"


@pytest.fixture
def config(fusion_dir: Path) -> ExecutionConfig:
    return ExecutionConfig(fusion_dir=str(fusion_dir), max_file_bytes=1000)


def fetch(url: str, config: ExecutionConfig) -> bytes:
    with urls.open_download(url, config) as reader:
        return reader.read()


def test_round_trip(fusion_dir: Path, config: ExecutionConfig) -> None:
    urls.upload(URL, io.BytesIO(b"sealed"), config)
    stored = fusion_dir / URL.rsplit("/", 1)[1]
    assert stored.read_bytes() == b"sealed"
    assert stat.S_IMODE(fusion_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert fetch(URL, config) == b"sealed"
    urls.discard(URL, config)
    assert not stored.exists()
    urls.discard(URL, config)  # gone already is fine
    assert failure(fetch, URL, config).status is Status.NOT_FOUND


def test_never_overwrites(fusion_dir: Path, config: ExecutionConfig) -> None:
    urls.upload(URL, io.BytesIO(b"first"), config)
    error = failure(urls.upload, URL, io.BytesIO(b"second"), config)
    assert error.status is Status.ALREADY_EXISTS
    assert fetch(URL, config) == b"first"


def test_links_are_not_followed(tmp_path: Path, fusion_dir: Path, config: ExecutionConfig) -> None:
    fusion_dir.mkdir(parents=True)
    (tmp_path / "secret").write_bytes(b"secret")
    (fusion_dir / "link.fusion").symlink_to(tmp_path / "secret")
    (fusion_dir / "dangling.fusion").symlink_to(tmp_path / "new")
    link = "fusion:///TEACLAVE_FUSION_BASE/link.fusion"
    assert failure(fetch, link, config).status is Status.FAILED_PRECONDITION
    dangling = "fusion:///TEACLAVE_FUSION_BASE/dangling.fusion"
    assert failure(urls.upload, dangling, io.BytesIO(b"x"), config).status is (
        Status.ALREADY_EXISTS
    )
    assert not (tmp_path / "new").exists()


def test_size_limit_and_failed_blocks(fusion_dir: Path, config: ExecutionConfig) -> None:
    error = failure(urls.upload, URL, io.BytesIO(b"x" * 1001), config)
    assert error.status is Status.RESOURCE_EXHAUSTED
    with pytest.raises(ValueError, match="failed"), urls.open_upload(URL, config) as writer:  # noqa: PT012
        writer.write(b"partial")
        raise ValueError("failed")
    assert list(fusion_dir.iterdir()) == []
    (fusion_dir / "big.fusion").write_bytes(b"x" * 1001)
    big = "fusion:///TEACLAVE_FUSION_BASE/big.fusion"
    assert failure(fetch, big, config).status is Status.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("fusion:///TEACLAVE_FUSION_BASE/", "must name one file"),
        ("fusion:///TEACLAVE_FUSION_BASE/..", "must name one file"),
        ("fusion:///TEACLAVE_FUSION_BASE/.hidden", "must name one file"),
        ("fusion:///TEACLAVE_FUSION_BASE/a/b.fusion", "must name one file"),
        ("fusion:///TEACLAVE_FUSION_BASE/../x.fusion", "must name one file"),
        ("fusion:///TEACLAVE_FUSION_BASE/%2e%2e", "must name one file"),
        ("fusion:///TEACLAVE_FUSION_BASE/a%2Fb", "must name one file"),
        ("fusion:///OTHER_BASE/x.fusion", "fusion:///TEACLAVE_FUSION_BASE/<name>"),
        ("fusion://host/TEACLAVE_FUSION_BASE/x.fusion", "fusion:///TEACLAVE_FUSION_BASE/<name>"),
        ("fusion:///TEACLAVE_FUSION_BASE/x.fusion?q", "fusion:///TEACLAVE_FUSION_BASE/<name>"),
    ],
)
def test_bad_names(url: str, message: str, fusion_dir: Path, config: ExecutionConfig) -> None:
    for call, args in ((fetch, ()), (urls.upload, (io.BytesIO(b"x"),)), (urls.discard, ())):
        error = failure(call, url, *args, config)
        assert error.status is Status.INVALID_ARGUMENT
        assert message in error.message
    assert not fusion_dir.exists()


def test_without_a_fusion_dir() -> None:
    error = failure(urls.check_url, URL, ExecutionConfig())
    assert (error.status, error.message) == (
        Status.FAILED_PRECONDITION,
        "execution.fusion_dir is not set",
    )

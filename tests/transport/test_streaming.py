"""64 MiB through each streaming scheme while Python's heap peak stays far below that."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import s3fs  # type: ignore[import-untyped]

from teaclave.config import ExecutionConfig
from teaclave.transport import urls
from teaclave.transport.file_server import FileServer

SIZE = 64 << 20
PEAK = 16 << 20
_BLOCK = bytes(range(256)) * 4096  # 1 MiB


class Pattern:
    """A reader of ``size`` bytes of a repeating pattern, generated as it is read."""

    def __init__(self, size: int = SIZE) -> None:
        self.left = size

    def read(self, size: int = -1, /) -> bytes:
        size = min(self.left, len(_BLOCK) if size < 0 else size, len(_BLOCK))
        self.left -= size
        return _BLOCK[:size]


def _drain(url: str, config: ExecutionConfig) -> int:
    """Read ``url`` to the end, checking the pattern; the byte count."""
    total = 0
    with urls.open_download(url, config) as reader:
        while chunk := reader.read(1 << 20):
            offset = total % len(_BLOCK)
            assert chunk == (_BLOCK[offset:] + _BLOCK)[: len(chunk)]
            total += len(chunk)
    return total


@pytest.fixture
def peak() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _round_trip(url: str, config: ExecutionConfig, size: int = SIZE) -> None:
    urls.upload(url, Pattern(size), config)
    assert _drain(url, config) == size


def test_file(tmp_path: Path, peak: Callable[[], int]) -> None:
    config = ExecutionConfig(file_roots=(str(tmp_path),), max_file_bytes=SIZE)
    _round_trip(f"file://{tmp_path}/big", config)
    assert peak() < PEAK, f"heap peak {peak() >> 20} MiB"


def test_fusion(tmp_path: Path, peak: Callable[[], int]) -> None:
    config = ExecutionConfig(fusion_dir=str(tmp_path), max_file_bytes=SIZE)
    _round_trip("fusion:///TEACLAVE_FUSION_BASE/big.fusion", config)
    assert peak() < PEAK, f"heap peak {peak() >> 20} MiB"


def test_http(file_server: FileServer, tmp_path: Path, peak: Callable[[], int]) -> None:
    config = ExecutionConfig(
        private_hosts=(file_server.url[7:],), max_file_bytes=SIZE, work_dir=str(tmp_path / "work")
    )
    _round_trip(f"{file_server.url}/big", config)
    assert peak() < PEAK, f"heap peak {peak() >> 20} MiB"


@pytest.fixture
def moto_process(free_port: int) -> Iterator[str]:
    """A moto S3 server in its own process (its memory is not this test's heap)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(free_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", free_port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{free_port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_s3(moto_process: str, bucket_env: None, peak: Callable[[], int]) -> None:
    """A new botocore client and 5 MiB parts cost a fixed ~30 MiB; 4x the data adds nothing."""
    config = ExecutionConfig(
        s3_endpoint_url=moto_process, private_hosts=(moto_process[7:],), max_file_bytes=SIZE
    )
    s3fs.S3FileSystem(endpoint_url=moto_process, skip_instance_cache=True).mkdir("streaming")

    def growth(size: int) -> int:
        """How far the heap rose during a round trip of ``size`` bytes."""
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        _round_trip(f"s3://streaming/{size}", config, size)
        return peak() - start

    quarter, full = growth(SIZE // 4), growth(SIZE)
    assert full < quarter + (4 << 20), f"{full >> 20} MiB for 64 MiB, {quarter >> 20} for 16"

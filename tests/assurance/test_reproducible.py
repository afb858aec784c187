"""Reproducibility: the wheel built twice from the same source is byte-identical, and its
code measurement equals the installed package's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from teaclave.attestation.measure import package_digest, source_digest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the project's packaged files (the tree may change while we build)."""
    copy = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "io-manifest.toml"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _build(source: Path, out: Path) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "UV_PYTHON_DOWNLOADS": "never"}
    # The backend is the hash-locked hatchling of this environment: nothing is downloaded.
    result = subprocess.run(
        [
            UV,
            "build",
            "--wheel",
            "--offline",
            "--no-build-isolation",
            "--python",
            sys.executable,
            "--out-dir",
            str(out),
        ],
        check=False,
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = out.glob("*.whl")
    return wheel


def test_wheel_is_reproducible_and_measures_like_the_installed_package(
    source: Path, tmp_path: Path
) -> None:
    first = _build(source, tmp_path / "one")
    second = _build(source, tmp_path / "two")
    assert first.read_bytes() == second.read_bytes()
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(first) as wheel:
        wheel.extractall(unpacked)
    # Services enforce the runtime manifest: it must ship inside the package.
    assert (unpacked / "teaclave" / "assurance" / "io-manifest.toml").read_bytes() == (
        ROOT / "io-manifest.toml"
    ).read_bytes()
    assert source_digest(unpacked / "teaclave") == source_digest(source / "src" / "teaclave")
    installed = Path(sys.modules["teaclave"].__file__ or "").parent
    if source_digest(installed) == source_digest(source / "src" / "teaclave"):
        assert source_digest(unpacked / "teaclave") == package_digest()

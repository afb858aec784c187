"""Building the wheel offline from a frozen copy of the project (reproducibility and
installed-wheel tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
PACKAGED = ("pyproject.toml", "README.md", "io-manifest.toml", "native-manifest.toml", "uv.lock")
"""The root files the build (and the lock export) reads."""


def uv(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    """Run ``uv`` offline (never a download: the build backend and every wheel come from
    this environment and uv's cache, which ``make`` filled); its stdout."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [UV, *args, "--offline"],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"uv {' '.join(map(str, args))}: {result.stderr}"
    return result.stdout


def frozen_source(copy: Path) -> Path:
    """A copy of the project's packaged files in ``copy`` (the tree may change while we
    build)."""
    copy.mkdir(parents=True, exist_ok=True)
    for name in PACKAGED:
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel of ``source``, built in ``out`` with the hash-locked hatchling of this
    environment (no build isolation: nothing is downloaded)."""
    uv(
        "build",
        "--wheel",
        "--no-build-isolation",
        "--python",
        sys.executable,
        "--out-dir",
        out,
        cwd=source,
    )
    [wheel] = out.glob("*.whl")
    return wheel

"""Reproducibility: the wheel built twice from the same source is byte-identical, and its
code measurement equals the installed package's."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from wheel_helpers import ROOT, build_wheel, frozen_source

from teaclave.attestation.measure import package_digest, source_digest


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the project's packaged files (the tree may change while we build)."""
    return frozen_source(tmp_path_factory.mktemp("source"))


def test_wheel_is_reproducible_and_measures_like_the_installed_package(
    source: Path, tmp_path: Path
) -> None:
    first = build_wheel(source, tmp_path / "one")
    second = build_wheel(source, tmp_path / "two")
    assert first.read_bytes() == second.read_bytes()
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(first) as wheel:
        wheel.extractall(unpacked)
    # Services enforce the runtime manifest, `teaclave tcb` checks the native-code one:
    # both ship inside the package.
    for manifest in ("io-manifest.toml", "native-manifest.toml"):
        shipped = unpacked / "teaclave" / "assurance" / manifest
        assert shipped.read_bytes() == (ROOT / manifest).read_bytes()
    assert source_digest(unpacked / "teaclave") == source_digest(source / "src" / "teaclave")
    installed = Path(sys.modules["teaclave"].__file__ or "").parent
    if source_digest(installed) == source_digest(source / "src" / "teaclave"):
        assert source_digest(unpacked / "teaclave") == package_digest()

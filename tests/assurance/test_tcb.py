"""``teaclave tcb``: each service's loaded code, and the native-code manifest check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from teaclave.assurance import tcb
from teaclave.config import SERVICES

MANIFEST = Path(__file__).resolve().parents[2] / tcb.MANIFEST


@pytest.fixture(scope="module")
def reports() -> dict[str, tcb.Inventory]:
    return {r.service: r for r in tcb.inventories()}


def test_manifest_covers_every_service() -> None:
    assert set(tcb.load_manifest(MANIFEST)) == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_service_loads_only_listed_native_code(
    reports: dict[str, tcb.Inventory], service: str
) -> None:
    report = reports[service]
    assert not report.failed
    unlisted = tcb.unlisted_native(report, tcb.load_manifest(MANIFEST))
    assert not unlisted, f"{service} loads native code of {unlisted}: not in {MANIFEST.name}"


def test_inventory_contents(reports: dict[str, tcb.Inventory]) -> None:
    storage = reports["storage"]
    assert storage.teaclave["teaclave.services.storage"] > 0
    assert "grpcio" in storage.third_party
    native = {n.owner.name: n for n in storage.native if n.owner.kind == "distribution"}
    assert native["grpcio"].extension_module
    assert len(native["grpcio"].sha256) == 64
    assert any(n.owner.kind == "system" for n in storage.native)  # e.g. libc, from the maps
    totals = storage.totals()
    assert totals["native_bytes"] == sum(n.size for n in storage.native)
    # Deferred imports are followed: the executor's Wasm runtime and the functions' OpenCV.
    assert {"wasmtime", "opencv-python-headless"} <= reports["execution"].native_distributions()


def test_extra_native_component_is_caught() -> None:
    report = tcb.inventory("storage", extra_imports=["yaml"])  # PyYAML's libyaml extension
    assert tcb.unlisted_native(report, tcb.load_manifest(MANIFEST)) == ["pyyaml"]


def test_deferred_imports_found_in_function_bodies() -> None:
    source = """
import top
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from hidden import Thing
def f():
    import lazy.mod
    from . import sibling
    if TYPE_CHECKING:
        import typing_only
"""
    found = list(tcb._deferred_imports(ast.parse(source), "pkg.sub.mod", False))
    assert found == ["lazy.mod", "pkg.sub/sibling"]

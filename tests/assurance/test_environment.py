"""The installed dependency world (no lock): edges, extras, hashes, and which lock is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from teaclave.assurance import environment
from teaclave.assurance.lock import LockError, project_lock
from teaclave.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_this_environment_as_an_installed_lock() -> None:
    lock = environment.installed_lock()
    assert (lock.kind, lock.root.name) == ("installed", "teaclave")
    packages = {p.name: p for p in lock.packages}
    assert {e.name for e in lock.root.dependencies} >= {"grpcio", "cryptography", "numpy"}
    assert all(e.group is None for e in lock.root.dependencies)
    assert all(len(p.record_sha256 or "") == 64 for p in packages.values())
    assert packages["pytest"].source == "installed"
    assert lock.digest == environment.installed_lock().digest  # the same set, the same digest


def test_dev_tools_are_installed_but_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deps", "map", "--installed", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("dependencies: the installed distributions of ")
    reach = {p["name"]: p["reach"] for p in json.loads(captured.out)}
    assert (reach["grpcio"], reach["cffi"], reach["pytest"]) == (
        "direct",
        "transitive",
        "unreachable",
    )


def test_extras_apply_only_when_requested() -> None:
    requirements = [
        Requirement("a>=1"),
        Requirement("b; extra == 'fast'"),
        Requirement("c; sys_platform == 'no-such-platform'"),
    ]
    assert [(str(r), g) for r, g in environment._applicable(requirements, [])] == [("a>=1", None)]
    held = environment._applicable(requirements, ["fast"])
    assert [(r.name, g) for r, g in held] == [("a", None), ("b", "extra:fast")]


def test_a_missing_requirement_is_named() -> None:
    requirements = {"teaclave": [Requirement("absent[x]>=2")]}
    with pytest.raises(LockError) as info:
        environment._requested_extras({"teaclave": None}, requirements)  # type: ignore[dict-item]
    assert str(info.value) == (
        "the environment is incomplete: teaclave requires absent[x]>=2, which is not installed"
    )


WHEEL = "file:///w/t-1-py3-none-any.whl"


class _Dist:
    def __init__(self, direct_url: object) -> None:
        self.text = None if direct_url is None else json.dumps(direct_url)

    def read_text(self, name: str) -> str | None:
        return self.text if name == "direct_url.json" else None


@pytest.mark.parametrize(
    ("direct_url", "sha256"),
    [
        ({"url": WHEEL, "archive_info": {"hashes": {"sha256": "ab"}}}, "ab"),  # pip
        ({"url": "https://h/t-1.tar.gz", "archive_info": {"hash": "sha256=cd"}}, "cd"),
        ({"url": WHEEL, "archive_info": {}}, None),  # uv: no hash
        ({"url": "file:///w/src", "dir_info": {"editable": True}}, None),
        (None, None),  # from an index: no direct_url.json
    ],
)  # fmt: skip
def test_archive_hash_only_where_direct_url_records_it(
    direct_url: object, sha256: str | None
) -> None:
    archive = environment._archive(_Dist(direct_url))  # type: ignore[arg-type]
    assert (archive and archive.sha256) == sha256


def test_a_lock_of_another_project_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "uv.lock").write_text(
        'version = 1\n[[package]]\nname = "other"\nversion = "1"\nsource = { editable = "." }\n'
    )
    monkeypatch.chdir(tmp_path)
    lock = project_lock()  # this checkout's, found next to the package's source tree
    assert lock is not None
    assert lock.origin == f"lock file {ROOT / 'uv.lock'}"

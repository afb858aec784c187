"""``scripts/check_standalone.py``: references to the data directory beside a checkout fail lint."""

import shutil
from pathlib import Path

import pytest

from scripts.check_standalone import NAME, SCOPE, main, problems, references

ROOT = Path(__file__).resolve().parents[1]

# NAME is spelled once, in the checker, so this file refers to nothing itself.
REFERRING = {
    "src/a.py": f'SNAPSHOT = ROOT.parent / "{NAME}" / "advisories"',
    "tests/b.py": f"DATA = os.path.join(root, '{NAME}')",
    "tests/data/c.md": f"described in {NAME}/reference/teaclave-reference.md",
    "bench/d.py": f'FIXTURES = f"{{root}}/../{NAME}"',
    "scripts/e.sh": f"cp -r ..\\{NAME}\\vectors .",
    "Makefile": f"DATA := $(CURDIR)/../{NAME}/fixtures",
}
PROSE = [
    f"the {NAME} libraries a function loads, in {NAME} memory",
    f'NATIVE_FLAGS = ("-{NAME}", "-fPIC")',
    f"config.{NAME}_memory = False",
    f'facts = {{"{NAME}": True}}; task.{NAME} = True',
    f'PRIVATE = "permission denied: function is private and not {NAME} with you"',
    f"objects += _{NAME}_objects(directory) + ['lib/lib{NAME}.so', 'un{NAME}/x']",
]


def plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# line one\n{text}\n")


def test_every_reference_is_named_and_prose_is_not(tmp_path: Path) -> None:
    plant(tmp_path, REFERRING)
    plant(tmp_path, {f"src/prose{i}.py": line for i, line in enumerate(PROSE)})
    plant(tmp_path, {"docs/outside.md": REFERRING["tests/data/c.md"]})  # not in the scope
    (tmp_path / "tests" / "data" / "blob.bin").write_bytes(f"\0{NAME}/x".encode())  # binary
    assert references(tmp_path) == {name: [f"2: {text}"] for name, text in REFERRING.items()}


def test_exit_status_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plant(tmp_path, {"src/clean.py": PROSE[0]})
    assert main([str(tmp_path)]) == 0
    plant(tmp_path, {"src/a.py": REFERRING["src/a.py"]})
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"src/a.py:2: {REFERRING['src/a.py']}  <- refers to the {NAME} directory beside the "
        "checkout\n"
    )


def test_repository_copy_passes_until_a_reference_is_planted(tmp_path: Path) -> None:
    for name in SCOPE:
        source = ROOT / name
        if source.is_file():
            shutil.copy2(source, tmp_path / name)
        else:
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    assert problems(tmp_path) == []
    helper = tmp_path / "tests" / "teaclave_fixtures.py"
    helper.write_text(helper.read_text() + f'OLD = DATA.parents[2] / "{NAME}"\n')
    [error] = problems(tmp_path)
    assert error.startswith(f"tests/teaclave_fixtures.py:{len(helper.read_text().splitlines())}: ")

"""The repository stands on its own: ``python scripts/check_standalone.py [ROOT]``.

A fresh clone has only what the repository carries (the tests read ``tests/data``), so
nothing in ``src/``, ``tests/``, ``bench/``, ``scripts/`` or the ``Makefile`` may refer to
the directory of data kept beside our checkouts (its name is ``NAME`` below): a path
with that name as a component, or that name as a string joined into a path. Prose such
as "shared library" or "shared memory" is not a path. Each reference is printed as
``file:line``; the exit status is 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ("src", "tests", "bench", "scripts", "Makefile")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
NAME = "".join(("sha", "red"))  # in pieces: this file names the directory, never refers to it
_SEP = r"[/\\]"
REFERENCE = re.compile(
    rf"(?<![\w.-]){NAME}(?={_SEP})"  # NAME/…, ../NAME/…
    rf"|(?<={_SEP}){NAME}(?![\w.-])"  # …/NAME
    rf"|[/(,]\s*[\"']{NAME}[\"']"  # path / "NAME", join(path, "NAME")
    rf"|[\"']{NAME}[\"']\s*[/,)]"  # "NAME" / path
)


def _files(root: Path) -> Iterator[Path]:
    for name in SCOPE:
        top = root / name
        if top.is_file():
            yield top
            continue
        for path in sorted(top.rglob("*")):
            relative = path.relative_to(root).parts
            if path.is_file() and not SKIPPED_DIRS.intersection(relative):
                yield path


def references(root: Path) -> dict[str, list[str]]:
    """Per file (relative to ``root``): its lines that refer to the directory, as ``N: text``."""
    found: dict[str, list[str]] = {}
    for path in _files(root):
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary data, not a path written by us
        lines = data.decode("utf-8", errors="replace").splitlines()
        hits = [f"{n}: {line.strip()}" for n, line in enumerate(lines, 1) if REFERENCE.search(line)]
        if hits:
            found[path.relative_to(root).as_posix()] = hits
    return found


def problems(root: Path) -> list[str]:
    """What makes the check fail: each reference."""
    return [
        f"{name}:{hit}  <- refers to the {NAME} directory beside the checkout"
        for name, hits in references(root).items()
        for hit in hits
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    errors = problems(Path(args[0]) if args else ROOT)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

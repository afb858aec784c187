"""The locked dependency world: ``uv.lock`` read into packages and edges (the installed
one, without a lock, is :mod:`teaclave.assurance.environment`)."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

import teaclave

PROJECT = "teaclave"
"""The project whose dependencies these are (the root package of its lock)."""


class LockError(ValueError):
    """The lock file is missing or not a uv lock file (or the environment is incomplete)."""


@dataclass(frozen=True)
class Artifact:
    """One downloadable file of a package (a wheel or the sdist) and its hash."""

    url: str
    sha256: str
    size: int | None

    @property
    def filename(self) -> str:
        """The file name at the end of the URL."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Edge:
    """A dependency of one package on another (``extra``: through that extra)."""

    name: str
    version: str | None
    marker: str | None
    group: str | None = None


@dataclass(frozen=True)
class LockedPackage:
    """A package pinned in the lock file."""

    name: str
    version: str
    source: str
    dependencies: tuple[Edge, ...]
    sdist: Artifact | None
    wheels: tuple[Artifact, ...]
    record_sha256: str | None = None  # installed only: the SHA-256 of its RECORD file

    @property
    def key(self) -> str:
        """``name==version``: unique in the lock (a name can be pinned twice, per Python)."""
        return f"{self.name}=={self.version}"

    @property
    def from_registry(self) -> bool:
        """Whether the package comes from a package index (not this project's source)."""
        return self.source.startswith("registry")


@dataclass(frozen=True)
class Lock:
    """Every pinned package; ``root`` is the project itself. The pins come from a lock file
    (``kind`` ``"locked"``) or are the distributions installed here (``"installed"``)."""

    origin: str  # where the pins come from, for reports
    digest: str  # SHA-256 identifying them: of the lock file, or of the installed set
    packages: tuple[LockedPackage, ...]
    root: LockedPackage
    kind: str = "locked"

    def resolve(self, edge: Edge) -> LockedPackage:
        """The package an edge points to."""
        for package in self.packages:
            if package.name == edge.name and edge.version in (None, package.version):
                return package
        raise LockError(f"{self.origin}: dependency {edge.name} is not {self.kind}")

    def third_party(self) -> tuple[LockedPackage, ...]:
        """Every package but the project itself."""
        return tuple(p for p in self.packages if p is not self.root)


def _artifact(entry: Any, where: str) -> Artifact:
    if not isinstance(entry, dict) or "url" not in entry or "hash" not in entry:
        raise LockError(f"{where}: an artifact needs url and hash")
    algorithm, _, digest = str(entry["hash"]).partition(":")
    if algorithm != "sha256" or not digest:
        raise LockError(f"{where}: expected a sha256 hash, got {entry['hash']!r}")
    return Artifact(str(entry["url"]), digest, entry.get("size"))


def _edges(entries: Any, group: str | None, where: str) -> list[Edge]:
    if not isinstance(entries, list):
        raise LockError(f"{where}: dependencies must be a list")
    edges = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LockError(f"{where}: a dependency needs a name")
        edges.append(
            Edge(
                canonicalize_name(entry["name"]),
                entry.get("version"),
                entry.get("marker"),
                group,
            )
        )
    return edges


def _package(entry: Any, index: int, path: Path) -> LockedPackage:
    where = f"{path}: package #{index + 1}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise LockError(f"{where}: needs a name")
    where = f"{path}: package {entry['name']}"
    source = entry.get("source", {})
    edges = _edges(entry.get("dependencies", []), None, where)
    for extra, deps in entry.get("optional-dependencies", {}).items():
        edges += _edges(deps, f"extra:{extra}", where)
    for group, deps in entry.get("dev-dependencies", {}).items():
        edges += _edges(deps, f"group:{group}", where)
    sdist = entry.get("sdist")
    return LockedPackage(
        name=canonicalize_name(entry["name"]),
        version=str(entry.get("version", "")),
        source=next(iter(source), "unknown") if isinstance(source, dict) else "unknown",
        dependencies=tuple(edges),
        sdist=None if sdist is None else _artifact(sdist, where),
        wheels=tuple(_artifact(w, where) for w in entry.get("wheels", [])),
    )


def load_lock(path: Path) -> Lock:
    """Read a ``uv.lock`` file (:class:`LockError` if it is not one)."""
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise LockError(f"{path}: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"{path}: not TOML ({exc})") from None
    entries = data.get("package")
    if not isinstance(entries, list) or not entries:
        raise LockError(f"{path}: no [[package]] entries (not a uv.lock file?)")
    packages = tuple(_package(entry, i, path) for i, entry in enumerate(entries))
    roots = [p for p in packages if p.source in ("editable", "virtual")]
    if len(roots) != 1:
        raise LockError(f"{path}: expected one editable or virtual project package")
    return Lock(f"lock file {path}", hashlib.sha256(raw).hexdigest(), packages, roots[0])


def project_lock() -> Lock | None:
    """The project's ``uv.lock``: in the working directory or a parent of it, else next to
    the source tree of the installed package (a checkout). A lock of another project
    (its root package not ``teaclave``) is passed over; ``None`` if there is none."""
    here = Path.cwd().resolve()
    source = Path(teaclave.__file__).resolve().parent
    for directory in dict.fromkeys((here, *here.parents, *source.parents)):
        path = directory / "uv.lock"
        if path.is_file():
            try:
                lock = load_lock(path)
            except LockError:
                continue
            if lock.root.name == PROJECT:
                return lock
    return None

"""The installed dependency world: the distributions of this Python environment read into
the packages and edges of :mod:`teaclave.assurance.lock`, for an installation without the
project's ``uv.lock`` (e.g. the wheel in a virtual environment).

Each distribution is found as imports find it (the first one of a name on ``sys.path``).
Edges are the ``Requires-Dist`` entries whose markers hold here, with the extras that a
dependant requests; an extra's edge is grouped as ``extra:NAME``. Unlike a lock, this
knows one platform and one Python, no dependency groups and no download hashes but the
one ``direct_url.json`` records for a package installed from a file or URL; instead each
package carries the SHA-256 of its ``RECORD`` (which lists the hash of every installed file).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import sys
from collections.abc import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from teaclave.assurance.lock import PROJECT, Artifact, Edge, Lock, LockedPackage, LockError


def _distributions() -> dict[str, md.Distribution]:
    """Every installed distribution by canonical name (the first on ``sys.path`` wins)."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def _requirements(name: str, dist: md.Distribution) -> list[Requirement]:
    requirements = []
    for text in dist.requires or []:
        try:
            requirements.append(Requirement(text))
        except InvalidRequirement as exc:
            raise LockError(f"installed {name}: invalid requirement {text!r} ({exc})") from None
    return requirements


def _applicable(
    requirements: Iterable[Requirement], extras: Iterable[str]
) -> list[tuple[Requirement, str | None]]:
    """The requirements that hold here, with the extra that brings each (``None``: none)."""
    held: list[tuple[Requirement, str | None]] = []
    for requirement in requirements:
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": ""}):
            held.append((requirement, None))
            continue
        extra = next((e for e in sorted(extras) if marker.evaluate({"extra": e})), None)
        if extra is not None:
            held.append((requirement, f"extra:{extra}"))
    return held


def _requested_extras(
    dists: dict[str, md.Distribution], requirements: dict[str, list[Requirement]]
) -> dict[str, set[str]]:
    """The extras requested of each package reached from the project (to a fixpoint);
    :class:`LockError` if a requirement on that path is not installed."""
    requested: dict[str, set[str]] = {PROJECT: set()}
    todo = [PROJECT]
    while todo:
        name = todo.pop()
        for requirement, _ in _applicable(requirements[name], requested[name]):
            dependency = canonicalize_name(requirement.name)
            if dependency not in dists:
                raise LockError(
                    f"the environment is incomplete: {name} requires {requirement}, "
                    "which is not installed"
                )
            known = requested.get(dependency)
            if known is None or not set(requirement.extras) <= known:
                requested[dependency] = (known or set()) | set(requirement.extras)
                todo.append(dependency)
    return requested


def _archive(dist: md.Distribution) -> Artifact | None:
    """The file the distribution was installed from, if ``direct_url.json`` gives its hash."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        return None
    archive = direct.get("archive_info") if isinstance(direct, dict) else None
    if not isinstance(archive, dict):
        return None
    hashes = archive.get("hashes")
    algorithm, _, digest = str(archive.get("hash", "")).partition("=")
    sha256 = (hashes.get("sha256") if isinstance(hashes, dict) else None) or (
        digest if algorithm == "sha256" else ""
    )
    return Artifact(str(direct.get("url", "")), str(sha256), None) if sha256 else None


def _record_sha256(dist: md.Distribution) -> str | None:
    record = dist.read_text("RECORD")
    return None if record is None else hashlib.sha256(record.encode("utf-8")).hexdigest()


def installed_lock() -> Lock:
    """This environment's distributions as a :class:`Lock` of kind ``"installed"``, rooted
    at the installed ``teaclave`` (:class:`LockError` if it is not installed)."""
    dists = _distributions()
    if PROJECT not in dists:
        raise LockError(f"{PROJECT} is not installed as a distribution in {sys.prefix}")
    requirements = {name: _requirements(name, dist) for name, dist in dists.items()}
    requested = _requested_extras(dists, requirements)
    packages = []
    for name, dist in sorted(dists.items()):
        edges = tuple(
            Edge(canonicalize_name(r.name), None, str(r.marker) if r.marker else None, group)
            for r, group in _applicable(requirements[name], requested.get(name, set()))
            if canonicalize_name(r.name) in dists
        )
        archive = _archive(dist)
        is_wheel = archive is not None and archive.filename.endswith(".whl")
        packages.append(
            LockedPackage(
                name=name,
                version=dist.version,
                source="installed",
                dependencies=edges,
                sdist=None if is_wheel else archive,
                wheels=(archive,) if is_wheel and archive is not None else (),
                record_sha256=_record_sha256(dist),
            )
        )
    identity = "\n".join(f"{p.key} {p.record_sha256}" for p in packages)
    root = next(p for p in packages if p.name == PROJECT)
    return Lock(
        f"the installed distributions of {sys.prefix}",
        hashlib.sha256(identity.encode("utf-8")).hexdigest(),
        tuple(packages),
        root,
        kind="installed",
    )

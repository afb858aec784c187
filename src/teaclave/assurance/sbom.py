"""A CycloneDX 1.6 software bill of materials from the lock file (or the installed
distributions) and installed metadata."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename

from teaclave.assurance.deps import PackageInfo, dependency_world
from teaclave.assurance.lock import Artifact, Lock, LockedPackage

SPEC_VERSION = "1.6"


def artifact_for_here(package: LockedPackage) -> Artifact | None:
    """The locked file this interpreter installs: the best-matching wheel, else the sdist."""
    rank = {tag: i for i, tag in enumerate(sys_tags())}
    best: tuple[int, Artifact] | None = None
    for wheel in package.wheels:
        tags = parse_wheel_filename(wheel.filename)[3]
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, wheel)
    return best[1] if best else package.sdist


def _licences(licence: str) -> list[dict[str, Any]]:
    if licence.startswith("unknown") or licence == "see licence text":
        return []
    if any(op in licence.split() for op in ("AND", "OR", "WITH")):
        return [{"expression": licence}]
    return [{"license": {"name": licence}}]


def _purl(package: LockedPackage) -> str:
    return f"pkg:pypi/{package.name}@{package.version}"


def _component(info: PackageInfo) -> dict[str, Any]:
    package = info.package
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": _purl(package),
        "name": package.name,
        "version": package.version,
        "purl": _purl(package),
        "scope": "required" if info.reach in ("direct", "transitive") else "optional",
        "licenses": _licences(info.licence),
        "properties": [
            {"name": "teaclave:reach", "value": info.reach},
            {"name": "teaclave:native", "value": str(info.native).lower()},
        ],
    }
    if package.record_sha256 is not None:
        component["properties"].append(
            {"name": "teaclave:record-sha256", "value": package.record_sha256}
        )
    artifact = artifact_for_here(package)
    if artifact is not None:
        component["hashes"] = [{"alg": "SHA-256", "content": artifact.sha256}]
        component["externalReferences"] = [
            {
                "type": "distribution",
                "url": artifact.url,
                "hashes": [{"alg": "SHA-256", "content": artifact.sha256}],
            }
        ]
    return component


def sbom(lock: Lock) -> dict[str, Any]:
    """The CycloneDX document: every locked (or installed) package, its hashes and the
    dependency graph.

    The serial number derives from the lock file's content (or the installed set's), and
    the timestamp is ``$SOURCE_DATE_EPOCH`` when set, so the same lock gives the same
    document.
    """
    world = dependency_world(lock)
    locked = lock.kind == "locked"
    namespace = "uv.lock:" if locked else "installed:"
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    root = lock.root
    root_ref = _purl(root)
    purls = {i.package.key: _purl(i.package) for i in world}
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, namespace + lock.digest)}",
        "version": 1,
        "metadata": {
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "teaclave deps sbom"}]},
            "component": {
                "type": "application",
                "bom-ref": root_ref,
                "name": root.name,
                "version": root.version,
                "purl": root_ref,
            },
            "properties": [
                {
                    "name": "teaclave:lock-sha256" if locked else "teaclave:environment-sha256",
                    "value": lock.digest,
                }
            ],
        },
        "components": [_component(info) for info in world],
        "dependencies": [
            {
                "ref": root_ref,
                "dependsOn": sorted({_purl(lock.resolve(e)) for e in root.dependencies}),
            },
            *(
                {"ref": purls[i.package.key], "dependsOn": [purls[k] for k in i.depends_on]}
                for i in world
            ),
        ],
    }

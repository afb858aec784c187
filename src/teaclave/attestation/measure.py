"""The code measurement: a digest of the installed ``teaclave`` package.

A service's measurement is SHA-256 over a domain tag, the package digest and
the service name, so each service has its own value and any change to any
source file changes all of them. Clients compute the same values from their
own copy of the code (or take them from ``teaclave attestation measurements``
on a machine they trust).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import teaclave

_TAG = b"teaclave-measurement-v1\x00"


def source_digest(root: Path) -> bytes:
    """SHA-256 over every ``.py`` file below ``root`` (relative path and content, sorted).

    Nothing else enters it (no timestamps, no bytecode, no absolute paths), so
    the same release gives the same digest on every machine: an auditor
    recomputes it from the release's ``teaclave`` package directory.
    """
    outer = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix().encode()
        outer.update(len(rel).to_bytes(4, "big") + rel)
        outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.digest()


@functools.cache
def package_digest() -> bytes:
    """The :func:`source_digest` of the installed ``teaclave`` package."""
    return source_digest(Path(teaclave.__file__).resolve().parent)


def service_measurement(service: str, digest: bytes | None = None) -> bytes:
    """The measurement of ``service`` running the code with ``digest``."""
    code = package_digest() if digest is None else digest
    return hashlib.sha256(_TAG + code + service.encode()).digest()


def local_measurements(services: tuple[str, ...]) -> dict[str, frozenset[bytes]]:
    """Accepted measurements per service: those of this installation's code."""
    return {name: frozenset({service_measurement(name)}) for name in services}

"""The I/O manifest (``io-manifest.toml``): the capabilities each module and service may use.

``[modules]`` maps a module or package prefix to its capabilities; the longest
matching prefix wins and a module no entry covers has none. ``[services]`` maps
each service process to the capabilities its runtime audit hook allows.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CAPABILITIES = ("fs", "net", "proc", "env", "clock", "ffi")
"""Filesystem, network, subprocesses, environment variables, clocks, native FFI."""

MANIFEST_NAME = "io-manifest.toml"
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_SECTIONS = ("modules", "services")


class ManifestError(ValueError):
    """The manifest cannot be read or is not well formed."""


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest."""

    modules: Mapping[str, frozenset[str]]
    services: Mapping[str, frozenset[str]]
    source: str = MANIFEST_NAME

    def entry(self, module: str) -> str | None:
        """The longest ``[modules]`` prefix covering ``module`` (None if none does)."""
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.modules:
                return prefix
        return None

    def allowed(self, module: str) -> frozenset[str]:
        """The capabilities of ``module`` (longest prefix wins; none if no entry covers it)."""
        entry = self.entry(module)
        return frozenset() if entry is None else self.modules[entry]

    def service(self, name: str) -> frozenset[str]:
        """The capabilities of service process ``name``; ManifestError if it is not listed."""
        try:
            return self.services[name]
        except KeyError:
            raise ManifestError(f"{self.source}: [services] has no entry for {name!r}") from None


def _capabilities(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ManifestError(f"{where}: expected a list of capability names")
    for item in value:
        if item not in CAPABILITIES:
            raise ManifestError(
                f"{where}: unknown capability {item!r} (one of {', '.join(CAPABILITIES)})"
            )
    if len(set(value)) != len(value):
        raise ManifestError(f"{where}: a capability is listed twice")
    return frozenset(value)


def _section(raw: dict[str, object], name: str, source: str) -> dict[str, frozenset[str]]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ManifestError(f"{source}: [{name}] must be a table")
    entries: dict[str, frozenset[str]] = {}
    for key, value in table.items():
        where = f'{source}: [{name}] "{key}"'
        if not _MODULE.fullmatch(key):
            raise ManifestError(f"{where}: not a dotted module name")
        entries[key] = _capabilities(value, where)
    return entries


def parse(text: str, source: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest ``text``; ManifestError names the entry at fault."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ManifestError(
            f"{source}: unknown section [{unknown[0]}] (expected modules, services)"
        )
    return Manifest(_section(raw, "modules", source), _section(raw, "services", source), source)


def shipped_file(name: str) -> Path:
    """A repository-root file the wheel ships in ``teaclave/assurance/`` (pyproject's
    force-include): that copy, else the one at the root of this checkout."""
    here = Path(__file__).resolve()
    packaged = here.with_name(name)
    return packaged if packaged.is_file() else here.parents[3] / name


def default_path() -> Path:
    """The manifest shipped with the package, else the one at the repository root."""
    return shipped_file(MANIFEST_NAME)


def load(path: Path | None = None) -> Manifest:
    """Read and parse the manifest at ``path`` (default: :func:`default_path`)."""
    path = default_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    return parse(text, str(path))

"""Vulnerability advisories (OSV format) and the audit of locked versions against them.

Two sources: an offline snapshot (a directory of OSV ``.yaml``/``.json`` files,
e.g. the PyPA advisory database) or the OSV service (``/v1/querybatch``). The
audit is strict: a package that could not be checked fails it, like an
applicable advisory does; an unreachable source is an error, never a pass.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from teaclave.assurance.lock import Lock, LockedPackage

OSV_URL = "https://api.osv.dev"
"""The OSV service (``--osv-url`` overrides it)."""

_ECOSYSTEM = "PyPI"
_SUFFIXES = (".yaml", ".yml", ".json")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: 10x faster


class AdvisoryError(ValueError):
    """An advisory file is malformed, or no advisory source could be used."""


@dataclass(frozen=True)
class Interval:
    """Affected versions ``introduced <= v < fixed`` (or ``<= last_affected``)."""

    introduced: str
    fixed: str | None = None
    last_affected: str | None = None

    def contains(self, version: Version) -> bool:
        """Whether ``version`` lies in the interval (:class:`AdvisoryError` if a bound is not
        a PEP 440 version: checked only here, for the packages actually audited)."""
        if self.introduced != "0" and version < _version(self.introduced):
            return False
        if self.fixed is not None:
            return version < _version(self.fixed)
        if self.last_affected is not None:
            return version <= _version(self.last_affected)
        return True

    def __str__(self) -> str:
        low = "" if self.introduced == "0" else f">={self.introduced}"
        high = (
            f"<{self.fixed}"
            if self.fixed
            else f"<={self.last_affected}"
            if self.last_affected
            else ""
        )
        return ", ".join(p for p in (low, high) if p) or "all versions"


@dataclass(frozen=True)
class Advisory:
    """What one OSV record says about one package."""

    id: str
    package: str
    aliases: tuple[str, ...]
    intervals: tuple[Interval, ...]
    versions: frozenset[str]
    summary: str
    modified: str

    def affects(self, version: Version) -> bool:
        """Whether ``version`` of the package is affected."""
        if any(_same_version(v, version) for v in self.versions):
            return True
        try:
            return any(i.contains(version) for i in self.intervals)
        except AdvisoryError as exc:
            raise AdvisoryError(f"advisory {self.id}: {exc}") from None

    def finding(self) -> dict[str, Any]:
        """The report entry: id, aliases, affected range, fixed versions."""
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "affected": "; ".join(str(i) for i in self.intervals) or "listed versions",
            "fixed": [i.fixed for i in self.intervals if i.fixed] or None,
            "summary": self.summary,
        }


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise AdvisoryError(f"range bound {text!r} is not a PEP 440 version") from None


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(text) == version
    except InvalidVersion:
        return False


def _require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise AdvisoryError(f"{where}: {what}")


def _intervals(ranges: Any, where: str) -> Iterator[Interval]:
    _require(isinstance(ranges, list), where, "'ranges' must be a list")
    for r, entry in enumerate(ranges):
        at = f"{where}: ranges[{r}]"
        _require(isinstance(entry, dict), at, "must be a mapping")
        if entry.get("type") != "ECOSYSTEM":
            continue  # GIT ranges name commits, not released versions
        events = entry.get("events")
        _require(isinstance(events, list) and bool(events), at, "'events' must be a list")
        start: str | None = None
        for e, event in enumerate(events):
            _require(
                isinstance(event, dict) and len(event) == 1,
                f"{at}: events[{e}]",
                "must hold exactly one of introduced/fixed/last_affected/limit",
            )
            kind, value = next(iter(event.items()))
            value = str(value)
            if kind == "introduced":
                if start is not None:
                    yield Interval(start)
                start = value
            elif kind in ("fixed", "last_affected"):
                _require(start is not None, f"{at}: events[{e}]", f"{kind} before introduced")
                assert start is not None
                yield Interval(start, **{kind: value})
                start = None
            elif kind != "limit":
                raise AdvisoryError(f"{at}: events[{e}]: unknown event {kind!r}")
        if start is not None:
            yield Interval(start)


def parse_osv(record: Any, where: str) -> list[Advisory]:
    """The PyPI advisories in one OSV record (none if withdrawn)."""
    _require(isinstance(record, dict), where, "an OSV record must be a mapping")
    _require(isinstance(record.get("id"), str), where, "missing 'id'")
    if record.get("withdrawn"):
        return []
    where = f"{where} ({record['id']})"
    affected = record.get("affected", [])
    _require(isinstance(affected, list), where, "'affected' must be a list")
    aliases = record.get("aliases") or []
    _require(isinstance(aliases, list), where, "'aliases' must be a list")
    advisories = []
    for a, entry in enumerate(affected):
        at = f"{where}: affected[{a}]"
        _require(isinstance(entry, dict), at, "must be a mapping")
        package = entry.get("package")
        _require(
            isinstance(package, dict) and isinstance(package.get("name"), str),
            at,
            "missing package name",
        )
        if package.get("ecosystem") != _ECOSYSTEM:
            continue
        versions = entry.get("versions") or []
        _require(isinstance(versions, list), at, "'versions' must be a list")
        advisories.append(
            Advisory(
                id=record["id"],
                package=canonicalize_name(package["name"]),
                aliases=tuple(str(x) for x in aliases),
                intervals=tuple(_intervals(entry.get("ranges", []), at)),
                versions=frozenset(str(v) for v in versions),
                summary=str(record.get("summary") or record.get("details") or "")
                .strip()
                .split("\n")[0][:160],
                modified=str(record.get("modified", "")),
            )
        )
    return advisories


class Source(Protocol):
    """Where advisories come from."""

    @property
    def description(self) -> str:
        """The source and its date, for the report."""

    def advisories(self, packages: Iterable[LockedPackage]) -> Mapping[str, list[Advisory]]:
        """The advisories per package key that may apply (must cover every package)."""


@dataclass
class Snapshot:
    """An offline copy of an OSV database covering the whole PyPI ecosystem."""

    root: Path
    by_package: dict[str, list[Advisory]] = field(default_factory=dict)
    files: int = 0
    newest: str = ""

    @property
    def description(self) -> str:
        """The source and its date (its newest advisory)."""
        return (
            f"offline snapshot {self.root} ({self.files} advisory files, "
            f"newest modified {self.newest[:10] or 'unknown'})"
        )

    def advisories(self, packages: Iterable[LockedPackage]) -> Mapping[str, list[Advisory]]:
        """Per package: the snapshot's advisories for its name."""
        return {p.key: self.by_package.get(p.name, []) for p in packages}


def load_snapshot(root: Path) -> Snapshot:
    """Read every OSV file below ``root`` (:class:`AdvisoryError` on a malformed one)."""
    if not root.is_dir():
        raise AdvisoryError(f"{root}: not a directory of advisories")
    snapshot = Snapshot(root)
    for path in sorted(root.rglob("*")):
        if path.suffix not in _SUFFIXES or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            record = json.loads(text) if path.suffix == ".json" else yaml.load(text, _LOADER)  # noqa: S506 (a safe loader)
        except (ValueError, yaml.YAMLError) as exc:
            raise AdvisoryError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from None
        snapshot.files += 1
        for advisory in parse_osv(record, str(path)):
            snapshot.by_package.setdefault(advisory.package, []).append(advisory)
            snapshot.newest = max(snapshot.newest, advisory.modified)
    if snapshot.files == 0:
        raise AdvisoryError(f"{root}: no OSV advisory files (*.yaml, *.yml, *.json)")
    return snapshot


class OsvService:
    """The OSV web service: ``querybatch`` for ids, then each record."""

    def __init__(self, url: str = OSV_URL, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.description = f"OSV service {self.url}, queried {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"

    def _call(self, path: str, body: Any | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (https, or a test's loopback URL)
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdvisoryError(
                f"no advisory source reachable (OSV service {self.url}: {reason}); "
                "pass --advisories DIR (an OSV snapshot)"
            ) from None

    def advisories(self, packages: Iterable[LockedPackage]) -> Mapping[str, list[Advisory]]:
        """Ask which advisories name each package version, then fetch those records."""
        listed = list(packages)
        queries = [
            {"package": {"name": p.name, "ecosystem": _ECOSYSTEM}, "version": p.version}
            for p in listed
        ]
        answer = self._call("/v1/querybatch", {"queries": queries})
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(listed):
            raise AdvisoryError(f"OSV service {self.url}: unexpected querybatch answer")
        found: dict[str, list[Advisory]] = {}
        for package, result in zip(listed, results, strict=True):
            if result.get("next_page_token"):
                raise AdvisoryError(f"OSV service: too many advisories for {package.key}")
            records = [self._call(f"/v1/vulns/{v['id']}") for v in result.get("vulns", [])]
            found[package.key] = [
                a
                for r in records
                for a in parse_osv(r, f"OSV {r.get('id')}")
                if a.package == package.name
            ]
        return found


@dataclass(frozen=True)
class Checked:
    """One locked package and the advisories that apply to its version."""

    name: str
    version: str
    findings: tuple[Advisory, ...]
    error: str | None = None


@dataclass(frozen=True)
class AuditReport:
    """Every locked package, checked against one source."""

    source: str
    lock: Lock
    packages: tuple[Checked, ...]

    @property
    def vulnerable(self) -> list[Checked]:
        """Packages with an applicable advisory."""
        return [p for p in self.packages if p.findings]

    @property
    def unchecked(self) -> list[Checked]:
        """Packages that could not be checked (a failure, like a finding)."""
        return [p for p in self.packages if p.error]

    @property
    def passed(self) -> bool:
        """Every package checked, none affected."""
        return not self.vulnerable and not self.unchecked

    def as_dict(self) -> dict[str, Any]:
        """The report, for ``--json``."""
        return {
            "source": self.source,
            "versions": self.lock.origin,
            "checked": sum(1 for p in self.packages if not p.error),
            "vulnerable": len(self.vulnerable),
            "unchecked": len(self.unchecked),
            "packages": [
                {
                    "name": p.name,
                    "version": p.version,
                    "status": "unchecked" if p.error else "vulnerable" if p.findings else "ok",
                    **({"error": p.error} if p.error else {}),
                    "advisories": [a.finding() for a in p.findings],
                }
                for p in self.packages
            ],
        }

    def text(self) -> str:
        """The report, for a person."""
        lines = [f"advisory source: {self.source}", f"versions: {self.lock.origin}", ""]
        for p in self.packages:
            status = (
                f"UNCHECKED: {p.error}"
                if p.error
                else (f"{len(p.findings)} advisories" if p.findings else "ok")
            )
            lines.append(f"  {p.name} {p.version}: {status}")
            for a in p.findings:
                f = a.finding()
                aliases = f" ({', '.join(f['aliases'])})" if f["aliases"] else ""
                fixed = ", ".join(f["fixed"]) if f["fixed"] else "no fixed version"
                lines.append(f"      {a.id}{aliases}: affected {f['affected']}; fixed: {fixed}")
                if a.summary:
                    lines.append(f"        {a.summary}")
        checked = len(self.packages) - len(self.unchecked)
        lines += [
            "",
            f"{checked} of {len(self.packages)} {self.lock.kind} packages checked; "
            f"{len(self.vulnerable)} with applicable advisories, "
            f"{len(self.unchecked)} could not be checked",
        ]
        return "\n".join(lines)


def audit(lock: Lock, source: Source) -> AuditReport:
    """Check every locked (or installed) third-party package version against ``source``."""
    packages = lock.third_party()
    found = source.advisories(packages)
    checked = []
    for p in packages:
        try:
            version = Version(p.version)
        except InvalidVersion:
            checked.append(
                Checked(p.name, p.version, (), f"{p.version!r} is not a PEP 440 version")
            )
            continue
        if p.key not in found:
            checked.append(Checked(p.name, p.version, (), "the source gave no answer"))
            continue
        try:
            hits = tuple(a for a in found[p.key] if a.affects(version))
        except AdvisoryError as exc:
            checked.append(Checked(p.name, p.version, (), str(exc)))
            continue
        checked.append(Checked(p.name, p.version, hits))
    return AuditReport(source.description, lock, tuple(checked))

"""The dependency world map: every locked (or installed) package, how it is reached, its
licence and whether it brings native code; drawn as a text tree or a self-contained HTML
page."""

from __future__ import annotations

import collections
import html
import importlib.metadata as md
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from packaging.utils import parse_wheel_filename

from teaclave.assurance.lock import Edge, Lock, LockedPackage

_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


@dataclass(frozen=True)
class PackageInfo:
    """One locked package as it sits in the dependency world."""

    package: LockedPackage
    reach: str  # "direct", "dev", "transitive", "dev-transitive" or "unreachable"
    licence: str
    native: bool
    installed: bool
    depends_on: tuple[str, ...]  # package keys

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "name": self.package.name,
            "version": self.package.version,
            "reach": self.reach,
            "licence": self.licence,
            "native": self.native,
            "installed": self.installed,
            "depends_on": list(self.depends_on),
        }


def installed(package: LockedPackage) -> md.Distribution | None:
    """The installed distribution of exactly this locked version, if any."""
    try:
        dist = md.distribution(package.name)
    except md.PackageNotFoundError:
        return None
    return dist if dist.version == package.version else None


def licence_of(dist: md.Distribution | None) -> str:
    """The licence an installed distribution declares (SPDX expression if it has one)."""
    if dist is None:
        return "unknown (not installed)"
    meta: dict[str, Any] = dist.metadata.json
    expression = meta.get("license_expression")
    if expression:
        return str(expression)
    text = str(meta.get("license") or "").strip()
    if text and "\n" not in text and len(text) <= 60:
        return text
    classifiers = [
        c.rsplit(" :: ", 1)[-1]
        for c in meta.get("classifier", [])
        if c.startswith("License :: ") and c.count("::") >= 2
    ]
    return " / ".join(classifiers) or ("see licence text" if text else "unknown")


def is_native(package: LockedPackage, dist: md.Distribution | None) -> bool:
    """Whether the package ships compiled code: from the installed files if present,
    else from its locked wheels (no pure ``none-any`` wheel)."""
    if dist is not None:
        return any(str(f).endswith(_NATIVE_SUFFIXES) or ".so." in str(f) for f in dist.files or [])
    tags = [t for w in package.wheels for t in parse_wheel_filename(w.filename)[3]]
    return bool(tags) and not any(t.abi == "none" and t.platform == "any" for t in tags)


def _reach(lock: Lock) -> dict[str, str]:
    """How each package is reached: through the runtime dependencies or only dev ones."""
    reach: dict[str, str] = {}

    def walk(start: list[Edge], first: str, then: str) -> None:
        todo = collections.deque((lock.resolve(e), first) for e in start)  # breadth first
        while todo:
            package, how = todo.popleft()
            if package.key in reach:
                continue
            reach[package.key] = how
            todo += [(lock.resolve(e), then) for e in package.dependencies]

    edges = lock.root.dependencies
    walk([e for e in edges if e.group is None], "direct", "transitive")
    walk([e for e in edges if e.group is not None], "dev", "dev-transitive")
    return reach


def dependency_world(lock: Lock) -> list[PackageInfo]:
    """Every third-party locked package with its reach, licence, nativeness and edges."""
    reach = _reach(lock)
    world = []
    for package in lock.third_party():
        dist = installed(package)
        world.append(
            PackageInfo(
                package=package,
                reach=reach.get(package.key, "unreachable"),
                licence=licence_of(dist),
                native=is_native(package, dist),
                installed=dist is not None,
                depends_on=tuple(sorted({lock.resolve(e).key for e in package.dependencies})),
            )
        )
    return world


def _label(info: PackageInfo) -> str:
    kind = "native" if info.native else "pure"
    gone = "" if info.installed else ", not installed here"
    return f"{info.package.key} [{info.reach}, {kind}, {info.licence}{gone}]"


def text_tree(lock: Lock, world: list[PackageInfo]) -> str:
    """The map as an indented tree from the project (each subtree printed once)."""
    by_key = {i.package.key: i for i in world}
    shown: set[str] = set()
    lines = [f"{lock.root.name} {lock.root.version}"]

    def draw(key: str, depth: int) -> Iterator[str]:
        info = by_key[key]
        seen = key in shown
        yield (
            "  " * depth
            + "- "
            + _label(info)
            + (" (see above)" if seen and info.depends_on else "")
        )
        if seen:
            return
        shown.add(key)
        for child in info.depends_on:
            yield from draw(child, depth + 1)

    groups = sorted({e.group or "" for e in lock.root.dependencies})
    for group in groups:
        lines.append(f"{group.replace('group:', 'dependency group ') or 'runtime'}:")
        edges = [e for e in lock.root.dependencies if (e.group or "") == group]
        for key in sorted({lock.resolve(e).key for e in edges}):
            lines += draw(key, 1)
    rest = [key for key in sorted(by_key) if key not in shown]  # e.g. installed by hand
    if rest:
        lines.append(f"not required by {lock.root.name}:")
        lines += [f"  - {_label(by_key[key])}" for key in rest]
    lines += ["", summary(lock, world)]
    return "\n".join(lines)


def summary(lock: Lock, world: list[PackageInfo]) -> str:
    """Totals: packages by reach and nativeness."""
    count = {r: sum(1 for i in world if i.reach == r) for r in sorted({i.reach for i in world})}
    native = sum(1 for i in world if i.native)
    parts = ", ".join(f"{n} {r}" for r, n in count.items())
    return f"{len(world)} {lock.kind} packages ({parts}); {native} with native code"


_STYLE = """body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
.native{background:#fde2e2}.dev,.dev-transitive{color:#777}a{color:inherit}"""


def html_page(lock: Lock, world: list[PackageInfo]) -> str:
    """The map as one self-contained HTML page (no scripts, no external assets): a table
    with every package's edges as in-page links, in both directions."""
    used_by: dict[str, list[str]] = {}
    for info in world:
        for child in info.depends_on:
            used_by.setdefault(child, []).append(info.package.key)
    for edge in lock.root.dependencies:
        used_by.setdefault(lock.resolve(edge).key, []).append(lock.root.name)

    def links(keys: list[str] | tuple[str, ...]) -> str:
        return ", ".join(
            f'<a href="#{html.escape(k)}">{html.escape(k)}</a>' for k in sorted(set(keys))
        )

    rows = []
    for info in sorted(world, key=lambda i: (i.reach, i.package.key)):
        key = html.escape(info.package.key)
        rows.append(
            f'<tr id="{key}" class="{info.reach}{" native" if info.native else ""}">'
            f"<td>{key}</td><td>{info.reach}</td>"
            f"<td>{'native' if info.native else 'pure Python'}</td>"
            f"<td>{html.escape(info.licence)}</td><td>{links(info.depends_on)}</td>"
            f"<td>{links(used_by.get(info.package.key, []))}</td></tr>"
        )
    title = html.escape(f"Dependency map of {lock.root.name} {lock.root.version}")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f"<p>{html.escape(summary(lock, world))}. Native packages are shaded; dev-only ones"
        f" grey. From {html.escape(lock.origin)}.</p><table><tr><th>package</th><th>reach</th>"
        "<th>code</th><th>licence</th><th>depends on</th><th>used by</th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )

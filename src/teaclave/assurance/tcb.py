"""The trusted-base inventory: what each service's processes load, and the native-code check.

What "loads" means here: a fresh interpreter imports what the service's process
imports at start-up (``teaclave.services.__main__`` and the service's package),
plus, for ``execution``, what its task worker can run (the worker module, every
built-in function, the default preloaded modules); then, to a fixpoint, every
import that a loaded ``teaclave`` module makes on first use (function-level
``import`` statements, found in the source). That interpreter reports its
``sys.modules`` and the files mapped in ``/proc/self/maps``. Code loaded by
name at run time (a user's Python task importing a module the configuration
allows) is outside this list unless the configuration preloads it.
"""

from __future__ import annotations

import ast
import concurrent.futures
import functools
import hashlib
import importlib.machinery
import importlib.metadata as md
import os
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import teaclave
from teaclave.assurance.capabilities import shipped_file
from teaclave.config import SERVICES, ExecutionConfig
from teaclave.functions.registry import LOCATIONS

MANIFEST = "native-manifest.toml"
"""The checked-in list of allowed native code per service (at the repository root, and
shipped in the wheel: :func:`default_manifest`)."""

_PROBE = r"""
import sys
entries, lazy_spec = sys.argv[1].split(), sys.argv[2]
lazy = {}
for item in lazy_spec.split(";"):
    if item:
        module, _, deps = item.partition("=")
        lazy[module] = deps.split()
def load(token):
    module, _, name = token.partition("/")
    try:
        __import__(module, fromlist=[name] if name else [])
    except ImportError as exc:
        sys.stdout.write("E\t" + token + "\t" + str(exc).replace("\n", " ") + "\n")
for token in entries:
    load(token)
done = set()
while True:
    pending = [m for m in list(sys.modules) if m in lazy and m not in done]
    if not pending:
        break
    for module in pending:
        done.add(module)
        for token in lazy[module]:
            load(token)
for name, module in list(sys.modules.items()):
    sys.stdout.write("M\t" + name + "\t" + str(getattr(module, "__file__", None) or "") + "\n")
with open("/proc/self/maps") as maps:
    for line in maps:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            sys.stdout.write("L\t" + parts[5].rstrip("\n") + "\n")
"""


class TcbError(RuntimeError):
    """A service's imports could not be inventoried, or the manifest is invalid."""


@dataclass(frozen=True)
class Owner:
    """Who ships a file: a distribution (name, version), ``teaclave``, the Python
    standard library, the interpreter itself, or the operating system."""

    kind: str  # "distribution", "teaclave", "stdlib", "interpreter", "system"
    name: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.version}".strip()


@dataclass(frozen=True)
class NativeFile:
    """One piece of native code mapped into a service's process."""

    path: str
    owner: Owner
    extension_module: bool
    sha256: str
    size: int


@dataclass
class Inventory:
    """What one service loads."""

    service: str
    teaclave: dict[str, int] = field(default_factory=dict)  # module -> lines
    third_party: dict[str, dict[str, Any]] = field(default_factory=dict)  # dist -> details
    stdlib: dict[str, int] = field(default_factory=dict)  # module -> lines (0: built in)
    native: list[NativeFile] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def native_distributions(self) -> set[str]:
        """The distributions whose native code the service loads."""
        return {n.owner.name for n in self.native if n.owner.kind == "distribution"}

    def totals(self) -> dict[str, int]:
        """Module, line and native-code totals."""
        third = self.third_party.values()
        return {
            "modules": len(self.teaclave) + sum(d["modules"] for d in third) + len(self.stdlib),
            "teaclave_lines": sum(self.teaclave.values()),
            "third_party_lines": sum(d["lines"] for d in third),
            "stdlib_lines": sum(self.stdlib.values()),
            "native_files": len(self.native),
            "native_bytes": sum(n.size for n in self.native),
        }

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "service": self.service,
            "teaclave_modules": self.teaclave,
            "third_party": self.third_party,
            "stdlib_modules": len(self.stdlib),
            "native": [
                {
                    "file": n.path,
                    "package": n.owner.name,
                    "version": n.owner.version,
                    "origin": n.owner.kind,
                    "kind": "extension module" if n.extension_module else "shared library",
                    "sha256": n.sha256,
                    "size": n.size,
                }
                for n in self.native
            ],
            "failed_imports": self.failed,
            "totals": self.totals(),
        }


def entry_points(service: str) -> tuple[str, ...]:
    """The modules a service's processes import to start (see the module docstring)."""
    if service not in SERVICES:
        raise TcbError(f"unknown service {service!r} (one of {', '.join(SERVICES)})")
    entries: tuple[str, ...] = ("teaclave.services.__main__", f"teaclave.services.{service}")
    if service == "execution":
        functions = sorted(
            {f"teaclave.functions.{loc.split('.')[0]}" for loc in LOCATIONS.values()}
        )
        entries += ("teaclave.executor.zygote", *functions, *ExecutionConfig().python_modules)
    return entries


def _package_dir() -> Path:
    return Path(teaclave.__file__).resolve().parent


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _deferred_imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Import tokens (``mod`` or ``mod/name``) of the imports inside function bodies."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (t for n in child.orelse for t in walk(n, in_function))
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if in_function and isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".")
                    anchor = parts[: len(parts) - child.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                yield from (f"{base}/{alias.name}" for alias in child.names)
            yield from walk(child, inside)

    yield from walk(tree, False)


@functools.cache
def deferred_imports() -> dict[str, tuple[str, ...]]:
    """Per ``teaclave`` module: the imports it makes on first use."""
    root = _package_dir()
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        tokens = tuple(
            dict.fromkeys(_deferred_imports(ast.parse(path.read_bytes()), module, is_package))
        )
        if tokens:
            found[module] = tokens
    return found


@functools.cache
def _file_owners() -> dict[str, Owner]:
    """Every installed distribution's files (real paths) and their owner."""
    owners: dict[str, Owner] = {}
    for dist in md.distributions():
        owner = Owner("distribution", dist.metadata["Name"].lower().replace("_", "-"), dist.version)
        for file in dist.files or []:
            owners[os.path.realpath(str(dist.locate_file(file)))] = owner
    return owners


def owner_of(path: str) -> Owner:
    """Who ships ``path`` (a real path)."""
    if path.startswith(str(_package_dir()) + os.sep):
        return Owner("teaclave", "teaclave", teaclave.__version__)
    owner = _file_owners().get(path)
    if owner is not None:
        return owner
    stdlib = {os.path.realpath(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib")}
    if any(path.startswith(s + os.sep) for s in stdlib):
        return Owner("stdlib", "python-stdlib", sys.version.split()[0])
    interpreter = os.path.dirname(os.path.realpath(sys.executable))
    if path == os.path.realpath(sys.executable) or (
        "libpython" in os.path.basename(path) and path.startswith(os.path.dirname(interpreter))
    ):
        return Owner("interpreter", "python", sys.version.split()[0])
    return Owner("system", "system")


@functools.cache
def _digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), os.path.getsize(path)


@functools.cache
def _lines(path: str) -> int:
    with open(path, "rb") as file:
        return sum(1 for _ in file)


def _is_native(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith(".so") or ".so." in name or path == os.path.realpath(sys.executable)


def inventory(service: str, extra_imports: Iterable[str] = ()) -> Inventory:
    """Start a fresh interpreter that loads what ``service`` loads; what it reports.

    ``extra_imports`` are imported too (tests use them to prove the check works).
    """
    entries = [*entry_points(service), *extra_imports]
    lazy = ";".join(f"{m}={' '.join(t)}" for m, t in deferred_imports().items())
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, " ".join(entries), lazy],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise TcbError(f"{service}: the inventory process failed: {tail[0]}") from None
    except subprocess.TimeoutExpired:
        raise TcbError(f"{service}: the inventory process timed out") from None
    return _parse(service, result.stdout)


def _parse(service: str, output: str) -> Inventory:
    report = Inventory(service)
    extension_files: set[str] = set()
    mapped: set[str] = set()
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for line in output.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "E":
            report.failed.append(rest.replace("\t", ": "))
        elif kind == "L" and os.path.isfile(rest):
            mapped.add(os.path.realpath(rest))
        elif kind == "M":
            name, _, file = rest.partition("\t")
            _record_module(
                report, name, os.path.realpath(file) if file else "", suffixes, extension_files
            )
    for path in sorted(mapped | extension_files):
        if _is_native(path) or path in extension_files:
            sha, size = _digest(path)
            report.native.append(
                NativeFile(path, owner_of(path), path in extension_files, sha, size)
            )
    return report


def _record_module(
    report: Inventory, name: str, file: str, suffixes: tuple[str, ...], extensions: set[str]
) -> None:
    if file.endswith(suffixes):
        extensions.add(file)
    lines = _lines(file) if file.endswith(".py") and os.path.isfile(file) else 0
    owner = owner_of(file) if file else Owner("stdlib", "python-stdlib")
    if owner.kind == "teaclave":
        report.teaclave[name] = lines
    elif owner.kind == "distribution":
        entry = report.third_party.setdefault(
            owner.name, {"version": owner.version, "modules": 0, "lines": 0}
        )
        entry["modules"] += 1
        entry["lines"] += lines
    else:
        report.stdlib[name] = lines


def inventories(services: Iterable[str] = SERVICES) -> list[Inventory]:
    """:func:`inventory` of several services, in parallel."""
    deferred_imports()  # parse once, first: CPython 3.11's ast.parse is not thread-safe
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(inventory, services))


def default_manifest() -> Path:
    """The native-code manifest shipped with the package, else the checkout's."""
    return shipped_file(MANIFEST)


def load_manifest(path: Path) -> dict[str, set[str]]:
    """The allowed native distributions per service, from ``native-manifest.toml``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TcbError(f"{path}: {exc}") from None
    services = data.get("services")
    if not isinstance(services, dict):
        raise TcbError(f"{path}: needs a [services.NAME] table per service")
    allowed: dict[str, set[str]] = {}
    for name, table in services.items():
        native = table.get("native") if isinstance(table, dict) else None
        if name not in SERVICES or not isinstance(native, list):
            raise TcbError(f"{path}: [services.{name}]: unknown service or no native = [...] list")
        allowed[name] = {str(n) for n in native}
    return allowed


def unlisted_native(report: Inventory, allowed: dict[str, set[str]]) -> list[str]:
    """Distributions whose native code ``report``'s service loads but the manifest omits."""
    return sorted(report.native_distributions() - allowed.get(report.service, set()))


def text(report: Inventory) -> str:
    """One service's inventory, for a person."""
    totals = report.totals()
    lines = [
        f"== {report.service}: {totals['modules']} modules, "
        f"{totals['native_files']} native files ({totals['native_bytes'] / 2**20:.1f} MiB)",
        f"teaclave modules ({len(report.teaclave)}, {totals['teaclave_lines']} lines):",
    ]
    lines += [f"  {name} ({n} lines)" for name, n in sorted(report.teaclave.items())]
    lines.append(f"third-party distributions ({len(report.third_party)}):")
    lines += [
        f"  {name} {d['version']}: {d['modules']} modules, {d['lines']} lines"
        for name, d in sorted(report.third_party.items())
    ]
    lines.append(
        f"standard library (and built-in/namespace modules): {len(report.stdlib)} modules, "
        f"{totals['stdlib_lines']} lines"
    )
    lines.append("native code (package version, kind, size, sha256, file):")
    lines += [
        f"  {n.owner} {'ext' if n.extension_module else 'lib'} {n.size} {n.sha256[:16]}… {n.path}"
        for n in report.native
    ]
    lines += [f"  failed import: {f}" for f in report.failed]
    return "\n".join(lines)

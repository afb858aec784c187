"""Static I/O check: every capability a module uses must be granted in ``io-manifest.toml``.

An AST pass resolves imports and dotted names (``os.environ``, ``subprocess.run``,
``datetime.now`` imported from ``datetime``...) against :data:`USES`, plus the
builtin ``open`` and, best effort, ``pathlib`` I/O methods by name. Run as
``python -m teaclave.assurance.iomanifest``: one line per violation, exit 1.
Dynamic access (``getattr(os, name)``, ``importlib.import_module``) and I/O done
inside native libraries are not seen.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from teaclave.assurance.capabilities import MANIFEST_NAME, Manifest, ManifestError, load

_FS = (
    "builtins.open io.open io.open_code io.FileIO os.open os.remove os.unlink os.rename "
    "os.renames os.replace os.mkdir os.makedirs os.rmdir os.removedirs os.listdir os.scandir "
    "os.walk os.fwalk os.stat os.lstat os.access os.chmod os.chown os.lchown os.link "
    "os.symlink os.readlink os.truncate os.utime os.chdir os.getcwd os.umask os.mkfifo "
    "os.mknod os.statvfs os.path.exists os.path.lexists os.path.isfile os.path.isdir "
    "os.path.islink os.path.ismount os.path.getsize os.path.getmtime os.path.getatime "
    "os.path.getctime os.path.realpath os.path.samefile pathlib.Path.cwd shutil tempfile glob "
    "fcntl mmap sqlite3 fsspec importlib.resources importlib.metadata logging.FileHandler"
)
_NET = (
    "socket ssl http.client http.server urllib.request socketserver ftplib smtplib poplib "
    "imaplib xmlrpc grpc aiohttp requests httpx urllib3 s3fs fsspec.implementations.http "
    "asyncio.open_connection asyncio.start_server asyncio.open_unix_connection "
    "asyncio.start_unix_server prometheus_client.start_http_server prometheus_client.exposition "
    "opentelemetry.exporter.otlp"
)
_PROC = (
    "subprocess multiprocessing pty concurrent.futures.ProcessPoolExecutor os.system os.popen "
    "os.fork os.forkpty os.exec* os.spawn* os.posix_spawn* os.kill os.killpg os.wait* "
    "signal.pthread_kill asyncio.create_subprocess_exec asyncio.create_subprocess_shell "
    "resource.setrlimit resource.prlimit"
)
_ENV = (
    "os.environ os.environb os.getenv os.getenvb os.putenv os.unsetenv os.getlogin "
    "os.path.expanduser os.path.expandvars pathlib.Path.home getpass.getuser"
)
_CLOCK = (
    "time.time time.time_ns time.monotonic time.monotonic_ns time.perf_counter "
    "time.perf_counter_ns time.process_time time.process_time_ns time.thread_time time.sleep "
    "time.localtime time.gmtime time.ctime time.asctime time.strftime datetime.datetime.now "
    "datetime.datetime.utcnow datetime.datetime.today datetime.date.today asyncio.sleep "
    "uuid.uuid1"
)
_FFI = "ctypes _ctypes cffi wasmtime"

USES: dict[str, str] = {
    name: capability
    for capability, names in (
        ("fs", _FS),
        ("net", _NET),
        ("proc", _PROC),
        ("env", _ENV),
        ("clock", _CLOCK),
        ("ffi", _FFI),
    )
    for name in names.split()
}
"""Qualified name (a module, or an attribute; ``*`` ends a prefix) -> capability."""

_EXACT = {name: cap for name, cap in USES.items() if not name.endswith("*")}
_PATTERNS = tuple((name[:-1], cap) for name, cap in USES.items() if name.endswith("*"))

_PATH_IO = (
    "read_bytes read_text write_bytes write_text mkdir unlink rmdir touch iterdir rglob is_file "
    "is_dir is_symlink symlink_to hardlink_to samefile exists"
)
PATH_METHODS = {**dict.fromkeys(_PATH_IO.split(), "fs"), "expanduser": "env"}
"""``pathlib`` methods that do I/O whatever the receiver (best effort: matched by name)."""

_PATH_ONLY_IO = "open stat lstat chmod rename replace resolve glob owner"
_PATH_LIKE_METHODS = frozenset(_PATH_ONLY_IO.split())
"""Methods that do I/O only on a path: counted when the receiver looks like one."""

_PATH_TYPES = frozenset({"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath"})
_PATH_WORDS = ("path", "dir", "directory", "root")


def capability_of(name: str) -> str | None:
    """The capability a use of qualified ``name`` needs (its longest listed prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in _EXACT:
            return _EXACT[prefix]
        for start, capability in _PATTERNS:
            if prefix.startswith(start) and prefix.count(".") == start.count("."):
                return capability
    return None


@dataclass(frozen=True, order=True)
class Use:
    """One use of a capability: its line, the capability and the name used."""

    line: int
    capability: str
    name: str


def _bindings(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """Local name -> qualified name for every absolute import; names that shadow builtins."""
    aliases: dict[str, str] = {}
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return aliases, defined | set(aliases)


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None if the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _path_like(node: ast.expr, aliases: dict[str, str]) -> bool:
    """Whether ``node`` looks like a path: ``Path(...)``, ``a / b`` or a path-ish name."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return True
    if isinstance(node, ast.Call):
        chain = _dotted(node.func)
        return chain is not None and _qualify(chain, aliases) in _PATH_TYPES
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name.lower().endswith(_PATH_WORDS)


def _qualify(chain: list[str], aliases: dict[str, str]) -> str | None:
    head = aliases.get(chain[0])
    return None if head is None else ".".join([head, *chain[1:]])


class _Finder(ast.NodeVisitor):
    def __init__(self, aliases: dict[str, str], defined: set[str]) -> None:
        self.aliases = aliases
        self.defined = defined
        self.uses: set[Use] = set()

    def _add(self, node: ast.AST, name: str, capability: str | None = None) -> None:
        capability = capability or capability_of(name)
        if capability is not None:
            self.uses.add(Use(getattr(node, "lineno", 0), capability, name))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            for alias in node.names:
                self._add(node, f"{node.module}.{alias.name}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _dotted(node)
        name = None if chain is None else _qualify(chain, self.aliases)
        if name is None:
            self.generic_visit(node)
        else:
            self._add(node, name)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.aliases:
            self._add(node, self.aliases[node.id])
        elif node.id == "open" and node.id not in self.defined:
            self._add(node, "open", "fs")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and not self._resolved(func):
            capability = PATH_METHODS.get(func.attr)
            if capability is None and func.attr in _PATH_LIKE_METHODS:
                capability = "fs" if _path_like(func.value, self.aliases) else None
            if capability is not None:
                self._add(node, f".{func.attr}()", capability)
        self.generic_visit(node)

    def _resolved(self, func: ast.Attribute) -> bool:
        """Whether ``func`` is an attribute of an imported name (checked against USES)."""
        chain = _dotted(func)
        return chain is not None and chain[0] in self.aliases


def uses(source: str, filename: str = "<source>") -> list[Use]:
    """Every capability use in Python ``source``, in line order."""
    tree = ast.parse(source, filename)
    finder = _Finder(*_bindings(tree))
    finder.visit(tree)
    return sorted(finder.uses)


@dataclass(frozen=True)
class Violation:
    """A use the manifest does not grant."""

    path: str
    module: str
    use: Use

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.use.line}: {self.module} uses {self.use.capability} "
            f"({self.use.name}) without that capability in {MANIFEST_NAME}"
        )


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of ``path`` below source root ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def check_source(source: str, module: str, manifest: Manifest, path: str) -> list[Violation]:
    """The violations of one module's ``source``."""
    allowed = manifest.allowed(module)
    return [
        Violation(path, module, use) for use in uses(source, path) if use.capability not in allowed
    ]


def _modules(root: Path, package: str) -> Iterator[tuple[Path, str]]:
    for path in sorted((root / package).rglob("*.py")):
        yield path, module_name(path, root)


def check_tree(root: Path, manifest: Manifest, package: str = "teaclave") -> list[str]:
    """Violations below ``root/package`` and grants no covered module uses, one line each."""
    problems: list[str] = []
    used: dict[str, set[str]] = {entry: set() for entry in manifest.modules}
    for path, module in _modules(root, package):
        found = uses(path.read_text(encoding="utf-8"), str(path))
        entry = manifest.entry(module)
        if entry is not None:
            used[entry].update(use.capability for use in found)
        allowed = manifest.allowed(module)
        problems += [
            str(Violation(str(path), module, u)) for u in found if u.capability not in allowed
        ]
    for entry, capabilities in manifest.modules.items():
        for capability in sorted(capabilities - used[entry]):
            problems.append(
                f'{manifest.source}: "{entry}" grants {capability}, '
                "which no module it covers uses (remove the grant)"
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Check the source tree against the manifest; print problems; exit status 1 if any."""
    parser = argparse.ArgumentParser(prog="python -m teaclave.assurance.iomanifest")
    parser.add_argument("--manifest", type=Path, default=Path(MANIFEST_NAME))
    parser.add_argument("--src", type=Path, default=Path("src"), help="the source root")
    args = parser.parse_args(argv)
    try:
        problems = check_tree(args.src, load(args.manifest))
    except ManifestError as exc:
        problems = [str(exc)]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

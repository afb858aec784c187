"""What a sandboxed task may read: the interpreter's standard library, the allowed packages and
the shared libraries they load, nothing else.

The view is computed by the spawner (before the fork) from the installation, never from the
working directory, the environment or ``sys.path``: a task sees the same files wherever the
platform was started from. Inside the sandbox it becomes a new root holding only these paths
(:func:`teaclave.executor.sandbox._kernel.enter_view`), the Landlock rules and the audit hook's
allow-list.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from teaclave.executor.sandbox import _elf

_MAX_LINKS = 40
"""Symbolic links followed for one path (the kernel's limit)."""
_HIDDEN_NAMES = ("site-packages", "dist-packages")
"""Directories below the standard library that hold other packages, not the interpreter's."""
_DLOPENED = ("libgcc_s.so.1",)
"""Libraries glibc loads on demand (thread cancellation and unwinding), named by no object."""


@dataclass(frozen=True)
class View:
    """A task's filesystem: every path is absolute and free of symbolic links.

    ``readable``: files and directories bound read-only (directories with what is below
    them); ``hidden``: directories below a readable one that are shown empty; ``links``:
    the symbolic links (path, target) met on the way to a readable path, recreated so the
    paths the interpreter knows keep working.
    """

    readable: tuple[str, ...]
    hidden: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()


def _real(path: str, links: dict[str, str], depth: int = 0) -> str:
    """The real path of absolute ``path``; each symbolic link on the way goes into ``links``."""
    if depth > _MAX_LINKS:
        raise OSError(f"too many levels of symbolic links: {path}")
    real = "/"
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            real = os.path.dirname(real)
            continue
        candidate = os.path.join(real, part)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            links[candidate] = target
            real = _real(os.path.join(real, target), links, depth + 1)
        else:
            real = candidate
    return real


def _system_directories() -> list[str]:
    """Where the dynamic linker looks for a library no object says where to find: its
    default directories (in the sandbox it has no cache and no LD_LIBRARY_PATH)."""
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    standard = [f"/lib/{arch}", f"/usr/lib/{arch}"] if arch else []
    return [*standard, "/lib64", "/usr/lib64", "/lib", "/usr/lib"]


def _dynamic(path: str) -> _elf.Dynamic:
    try:
        with open(path, "rb") as file:

            def read(offset: int, size: int) -> bytes:
                file.seek(offset)
                return file.read(size)

            return _elf.parse(read)
    except OSError:
        return _elf.Dynamic()


def _expand(directory: str, origin: str) -> str:
    return directory.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)


def _find(name: str, directories: Iterable[str]) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) else None
    for directory in directories:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _libraries(objects: Iterable[str]) -> list[str]:
    """Every shared library ``objects`` load, directly or not (as the linker names them)."""
    system = _system_directories()
    found: dict[str, None] = {}
    queue = [(path, _dynamic(path)) for path in objects]
    wanted = [(name, system) for name in _DLOPENED]
    while queue or wanted:
        if queue:
            path, dynamic = queue.pop()
            origin = os.path.dirname(os.path.realpath(path))
            own = [_expand(d, origin) for d in dynamic.runpath or dynamic.rpath]
            wanted += [(name, [*own, *system]) for name in dynamic.needed]
        while wanted:
            name, directories = wanted.pop()
            library = _find(name, directories)
            if library is not None and library not in found:
                found[library] = None
                queue.append((library, _dynamic(library)))
    return list(found)


def _shared_objects(directory: str) -> Iterator[str]:
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".so") or ".so." in name:
                yield os.path.join(root, name)


def _module_paths(name: str) -> list[str]:
    """The files of allowed module ``name``: its package directory or file (ImportError if none)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"cannot find module {name!r}")
    locations = list(spec.submodule_search_locations or [])
    return locations or ([spec.origin] if spec.origin else [])


def _outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those below another one of them."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(parent.rstrip("/") + "/") for parent in kept):
            kept.append(path)
    return kept


@functools.cache
def task_view(modules: Sequence[str] = ()) -> View:
    """The view of a task that may import the standard library and ``modules``."""
    stdlib = sysconfig.get_path("stdlib")
    dynload = sysconfig.get_config_var("DESTSHARED") or stdlib
    packages = [path for name in modules for path in _module_paths(name)]
    objects = [os.path.realpath(sys.executable)]
    for directory in (dynload, *packages):
        if os.path.isdir(directory):
            objects += _shared_objects(directory)
    links: dict[str, str] = {}
    readable = [
        _real(path, links)
        for path in (stdlib, dynload, *packages, *_libraries(objects))
        if os.path.exists(path)
    ]
    hidden = [
        _real(os.path.join(stdlib, name), links)
        for name in _HIDDEN_NAMES
        if os.path.isdir(os.path.join(stdlib, name))
    ]
    return View(tuple(_outermost(readable)), tuple(hidden), tuple(sorted(links.items())))

"""The runtime manifest: a PEP 578 audit hook holding a service process to its capabilities.

:func:`install` reads the service's ``[services]`` entry of ``io-manifest.toml`` and
refuses, with an audit log line and :class:`CapabilityRefused`, every audited
operation of a capability it lacks. Without ``fs`` a service may still read the
installed code (imports, tracebacks) and use the ``writable`` paths it was given.
Defence in depth only: the hook sees what Python audits (not I/O done inside
native code such as gRPC's core) and in-process Python code could subvert it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from teaclave.assurance.capabilities import Manifest, load

log = logging.getLogger(__name__)

_NET = (
    "socket.bind socket.connect socket.sendto socket.sendmsg socket.getaddrinfo "
    "socket.gethostbyname socket.gethostbyaddr socket.getnameinfo http.client.connect "
    "urllib.Request"
)
_PROC = (
    "subprocess.Popen os.system os.exec os.posix_spawn os.spawn os.fork os.forkpty pty.spawn "
    "os.kill os.killpg"
)
_ENV = "os.putenv os.unsetenv"
_FS = (
    "open os.listdir os.scandir os.mkdir os.remove os.rename os.rmdir os.chmod os.chown os.link "
    "os.symlink os.truncate os.utime os.chdir shutil.rmtree shutil.copyfile shutil.move "
    "tempfile.mkstemp tempfile.mkdtemp sqlite3.connect"
)
EVENTS: dict[str, str] = {
    event: capability
    for capability, events in (("net", _NET), ("proc", _PROC), ("env", _ENV), ("fs", _FS))
    for event in events.split()
}
"""Audit event -> the capability it needs (every ``ctypes.*`` event needs ``ffi``)."""

_READS = frozenset({"open", "os.listdir", "os.scandir"})
_TWO_PATHS = frozenset({"os.rename", "os.link", "shutil.copyfile", "shutil.move"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class CapabilityRefused(PermissionError):
    """The runtime manifest refused an operation."""


def _is_write(event: str, args: tuple[object, ...]) -> bool:
    if event not in _READS:
        return True
    mode = args[1] if event == "open" and len(args) > 1 else None
    flags = args[2] if event == "open" and len(args) > 2 else None
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and flags & _WRITE_FLAGS != 0


def _real(path: object) -> str | None:
    if isinstance(path, str | bytes | os.PathLike):
        return os.path.realpath(os.fsdecode(path))
    return None


def _synthetic(path: object) -> bool:
    """Whether ``path`` is the ``<name>`` of code compiled from a string, not a file path."""
    return isinstance(path, str) and path.startswith("<") and path.endswith(">") and "/" not in path


def _below(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def code_roots() -> tuple[str, ...]:
    """Where installed code lives: the interpreter prefixes and ``sys.path`` (not the cwd)."""
    cwd = os.getcwd()
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]
    roots = {os.path.realpath(p) for p in candidates if p and os.path.isdir(p)}
    return tuple(sorted(roots - {os.path.realpath(cwd), "/"}))


class _Policy:
    """The decision for one service: which events pass, which are refused."""

    def __init__(
        self,
        service: str,
        allowed: frozenset[str],
        readable: tuple[str, ...],
        writable: tuple[str, ...],
    ) -> None:
        self.service = service
        self.allowed = allowed
        self.readable = readable
        self.writable = writable
        self._busy = threading.local()

    def capability(self, event: str) -> str | None:
        """The capability ``event`` needs, or None if this hook does not watch it."""
        return "ffi" if event.startswith("ctypes.") else EVENTS.get(event)

    def permits_path(self, event: str, args: tuple[object, ...]) -> bool:
        """Whether a file event without ``fs`` stays within the code (reads) or ``writable``."""
        if not args or isinstance(args[0], int) or args[0] is None:
            return event in _READS  # an open descriptor, or the current directory
        if not _is_write(event, args) and _synthetic(args[0]):
            return True  # in-memory code ("<function>"): Python looks for its source lines
        targets = args[:2] if event in _TWO_PATHS else args[:1]
        paths = [_real(target) for target in targets]
        checked = [path for path in paths if path is not None]
        if len(checked) != len(paths):
            return False
        if all(_below(path, self.writable) for path in checked):
            return True
        return not _is_write(event, args) and all(_below(p, self.readable) for p in checked)

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        capability = self.capability(event)
        if capability is None or capability in self.allowed or getattr(self._busy, "on", False):
            return
        if capability == "fs" and self.permits_path(event, args):
            return
        self._refuse(event, capability, args)

    def _refuse(self, event: str, capability: str, args: tuple[object, ...]) -> None:
        target = repr(args[0])[:200] if args else ""
        record = {
            "service": self.service,
            "capability": capability,
            "event": event,
            "target": target,
            "decision": "refused",
        }
        self._busy.on = True
        try:
            log.error("runtime manifest: %s", json.dumps(record, sort_keys=True))
        finally:
            self._busy.on = False
        raise CapabilityRefused(
            f"runtime manifest: service {self.service} may not use {capability} ({event} {target})"
        )


def install(
    service: str, *, writable: Iterable[str | Path] = (), manifest: Manifest | None = None
) -> None:
    """Hold this process to ``service``'s capabilities from now on (irreversibly).

    Call it after start-up (imports, identity, attestation) is done. ``writable``
    paths stay usable without ``fs``; a service the manifest does not list cannot start.
    """
    manifest = load() if manifest is None else manifest
    policy = _Policy(
        service,
        manifest.service(service),
        code_roots(),
        tuple(os.path.realpath(path) for path in writable),
    )
    # Modules imported later (lazily) read cached bytecode but write none: writing it
    # would be refused without ``fs`` and logged as an error on a fresh installation.
    sys.dont_write_bytecode = True
    sys.addaudithook(policy)
    log.info(
        "runtime manifest: %s may use %s",
        service,
        ", ".join(sorted(policy.allowed)) or "no I/O capability",
    )

"""The PEP 578 audit hook: the last and weakest layer (pure Python code can be subverted)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

BLOCKED = frozenset(
    {
        # network
        "socket.__new__",
        "socket.bind",
        "socket.connect",
        "socket.sendto",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        # programs and processes
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "_posixsubprocess.fork_exec",
        "pty.spawn",
        # signals and limits
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
        # filesystem mutations (writes are checked on "open")
        "os.chmod",
        "os.chown",
        "os.link",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "os.putenv",
        # introspection
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.settrace",
        "sys.setprofile",
        "sys.addaudithook",
    }
)


_PATH_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


class SandboxViolation(PermissionError):
    """The audit hook refused an operation."""


def _is_write(args: tuple[object, ...]) -> bool:
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else None
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and flags & _WRITE_FLAGS != 0


def _within(real: str, roots: tuple[str, ...]) -> bool:
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _readable(path: object, roots: tuple[str, ...], hidden: tuple[str, ...]) -> bool:
    if isinstance(path, int) or path is None:  # a descriptor already open, or the cwd
        return True
    if not isinstance(path, str | bytes | os.PathLike):
        return False
    real = os.path.realpath(os.fsdecode(path))
    return _within(real, roots) and not _within(real, hidden)


NATIVE_CALLS = frozenset(
    {
        "ctypes.addressof",
        "ctypes.cdata",
        "ctypes.cdata/buffer",
        "ctypes.create_string_buffer",
        "ctypes.string_at",
    }
)
"""The ``ctypes`` events a target whose own, trusted code calls native code through ctypes
(wasmtime's bindings) raises: buffers and addresses, no library loading (``ctypes.dlopen``)."""


def install_audit_hook(
    readable: Sequence[str], hidden: Sequence[str] = (), *, native_calls: bool = False
) -> None:
    """Install the hook; it cannot be removed, and it refuses further hooks.

    Besides the events in :data:`BLOCKED` and every ``ctypes`` event (but those in
    :data:`NATIVE_CALLS` if ``native_calls``), it refuses opening for writing and opening
    or listing anything outside ``readable`` or inside ``hidden``.
    """
    roots = tuple(os.path.realpath(path) for path in readable)
    masked = tuple(os.path.realpath(path) for path in hidden)
    allowed = NATIVE_CALLS if native_calls else frozenset()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event in BLOCKED or (event.startswith("ctypes.") and event not in allowed):
            raise SandboxViolation(f"sandbox: {event} is not allowed")
        if event == "open" and _is_write(args):
            raise SandboxViolation("sandbox: opening files for writing is not allowed")
        if event in _PATH_EVENTS and args and not _readable(args[0], roots, masked):
            raise SandboxViolation(f"sandbox: {event} outside the readable paths")

    sys.addaudithook(hook)

"""One forked, layered sandbox per task (docs/sandbox.md).

:func:`spawn` forks an intermediate process ("keeper") that closes every descriptor but
the channel, empties the environment, sets rlimits and unshares the namespaces, then forks
the task process (PID 1 of the new pid namespace). The task process enters a new root
holding only its :class:`View`, drops to an unprivileged uid without capabilities, builds
the seccomp filter, enters Landlock, loads the filter, installs the audit hook and calls
``target(channel)``. The keeper mirrors the task process's end, so the spawner's ``wait4``
sees its status and its CPU usage.
"""

from __future__ import annotations

import math
import os
import resource
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from teaclave.executor.sandbox import _kernel
from teaclave.executor.sandbox._audit import install_audit_hook
from teaclave.executor.sandbox._kernel import SandboxError, die_with_parent
from teaclave.executor.sandbox._view import View, task_view

__all__ = [
    "EXIT_ERROR",
    "EXIT_MEMORY",
    "EXIT_SETUP",
    "Layers",
    "Limits",
    "SandboxError",
    "SandboxOutcome",
    "SandboxProcess",
    "View",
    "die_with_parent",
    "spawn",
    "task_view",
]

EXIT_ERROR = 250
"""Exit code: the target raised an exception."""
EXIT_MEMORY = 251
"""Exit code: the target ran out of memory (MemoryError under RLIMIT_AS)."""
EXIT_SETUP = 252
"""Exit code: a layer could not be entered; the target never ran."""

CHANNEL_FD = 3
"""The channel's descriptor inside the sandbox."""
UID_BASE = 200_000
"""The task process runs as ``UID_BASE + keeper pid`` (unique among live sandboxes)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox."""

    cpu_secs: float = 10.0
    wall_secs: float = 30.0
    memory_bytes: int = 512 << 20
    max_open_files: int = 64
    max_threads: int = 16
    reserved_bytes: int = 0
    """Address space a runtime reserves up front, beyond ``memory_bytes`` (wasmtime's
    linear memory reservation): it raises RLIMIT_AS, not what the task may allocate."""


@dataclass(frozen=True)
class Layers:
    """Test-only switch: each isolation layer can be turned off alone."""

    namespaces: bool = True
    landlock: bool = True
    seccomp: bool = True
    rlimits: bool = True
    audit_hook: bool = True


@dataclass(frozen=True)
class SandboxOutcome:
    """How a sandbox ended; ``limit`` names the limit that ended it, if one did."""

    exit_code: int | None
    signal: int | None
    limit: str | None


def _describe_memory(size: int) -> str:
    return f"{size >> 20} MiB" if size % (1 << 20) == 0 else f"{size} bytes"


class SandboxProcess:
    """A running sandbox (``pid``: its keeper process, a child of the spawner).

    Its wall time counts from :meth:`start_clock` (spawn calls it; a caller that
    first prepares the task's files calls it again when the target may start).
    :meth:`kill` may come from another thread than :meth:`wait`.
    """

    def __init__(self, pid: int, limits: Limits) -> None:
        self.pid = pid
        self._limits = limits
        self._deadline = math.inf
        self._pidfd = os.pidfd_open(pid)
        self._lock = threading.Lock()  # the pidfd is closed once, never signalled after
        self._reaped = False
        self._wall_expired = False
        self._outcome: SandboxOutcome | None = None

    def start_clock(self) -> None:
        """The wall time limit counts from now."""
        self._deadline = time.monotonic() + self._limits.wall_secs

    def remaining(self) -> float:
        """Seconds of wall time left (the limit counts from :meth:`start_clock`)."""
        return self._deadline - time.monotonic()

    def wait(self) -> SandboxOutcome:
        """Wait for the sandbox to end, killing it when the wall time runs out."""
        if self._outcome is not None:
            return self._outcome
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
            self._wall_expired = True
            self.kill()
        _, status, usage = os.wait4(self.pid, 0)
        with self._lock:
            self._reaped = True
            os.close(self._pidfd)
        self._outcome = self._conclude(status, usage.ru_utime + usage.ru_stime)
        return self._outcome

    def kill(self) -> None:
        """Kill the sandbox: the keeper, whose death kills the task process and its namespace."""
        with self._lock:
            if not self._reaped:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _conclude(self, status: int, cpu: float) -> SandboxOutcome:
        limits = self._limits
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            limit = None
            if self._wall_expired:
                limit = f"wall time limit ({limits.wall_secs:g} s)"
            elif sig in (signal.SIGKILL, signal.SIGXCPU) and cpu >= _cpu_rlimit(limits) - 0.05:
                limit = f"CPU time limit ({limits.cpu_secs:g} s)"
            return SandboxOutcome(None, sig, limit)
        code = os.WEXITSTATUS(status)
        memory = f"memory limit ({_describe_memory(limits.memory_bytes)})"
        return SandboxOutcome(code, None, memory if code == EXIT_MEMORY else None)


def _cpu_rlimit(limits: Limits) -> int:
    return max(1, math.ceil(limits.cpu_secs))


def spawn(
    target: Callable[[socket.socket], int],
    channel: socket.socket,
    limits: Limits,
    layers: Layers = Layers(),
    view: View | None = None,
    *,
    native_calls: bool = False,
) -> SandboxProcess:
    """Run ``target(channel)`` in a new sandbox; its return value is the exit code.

    Must be called while the caller is single-threaded (a zygote, never a gRPC server).
    Inside, descriptors 0-2 are /dev/null and the channel is descriptor 3. ``view``: what
    the task may read (default: the standard library only). ``native_calls``: the
    target's own (trusted) code calls native code through ctypes, as wasmtime's bindings
    do; the audit hook then lets ctypes calls through, still no library loading.
    """
    threads = len(os.listdir("/proc/self/task"))  # native threads too, not only Python's
    if threads != 1:
        raise SandboxError(f"spawn() needs a single-threaded caller; {threads} threads run")
    setup = _Setup(layers, view or task_view(), native_calls, os.getpid())
    pid = os.fork()
    if pid == 0:
        _keeper(target, channel, limits, setup)
    process = SandboxProcess(pid, limits)
    process.start_clock()
    return process


@dataclass(frozen=True)
class _Setup:
    """How the sandbox's processes set themselves up."""

    layers: Layers
    view: View
    native_calls: bool
    spawner: int


def _keeper(
    target: Callable[[socket.socket], int],
    channel: socket.socket,
    limits: Limits,
    setup: _Setup,
) -> NoReturn:
    """The sandbox's outer process: common setup, then fork the task process and mirror it."""
    try:
        if not _kernel.die_with_parent(setup.spawner):
            os._exit(EXIT_SETUP)
        layers = setup.layers
        _isolate_descriptors(channel)
        os.environ.clear()
        os.chdir("/")
        if layers.rlimits:
            _set_rlimits(limits)
        if layers.namespaces:
            _kernel.unshare(
                _kernel.CLONE_NEWNET
                | _kernel.CLONE_NEWPID
                | _kernel.CLONE_NEWIPC
                | _kernel.CLONE_NEWNS
                | _kernel.CLONE_NEWUTS
            )
        alive_r, alive_w = os.pipe()
        uid = UID_BASE + os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(alive_w)
            _task(target, setup, uid, alive_r)
        os.close(alive_r)
        os.close(CHANNEL_FD)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_SETUP)
    finally:
        os._exit(EXIT_SETUP)


def _isolate_descriptors(channel: socket.socket) -> None:
    """Keep only the channel (as descriptor 3) and /dev/null on 0-2."""
    fd = channel.detach()
    if fd != CHANNEL_FD:
        os.dup2(fd, CHANNEL_FD)
        os.close(fd)
    os.set_inheritable(CHANNEL_FD, False)
    null = os.open("/dev/null", os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    if null > 2:
        os.close(null)
    os.closerange(CHANNEL_FD + 1, os.sysconf("SC_OPEN_MAX"))


def _set_rlimits(limits: Limits) -> None:
    """CPU (soft == hard: SIGKILL), address space, no file writes, no core, descriptors, tasks."""
    with open("/proc/self/statm", "rb") as statm:
        baseline = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cpu = _cpu_rlimit(limits)
    for name, value in (
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, baseline + limits.memory_bytes + limits.reserved_bytes),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
        (resource.RLIMIT_NPROC, limits.max_threads),
    ):
        resource.setrlimit(name, (value, value))


def _task(target: Callable[[socket.socket], int], setup: _Setup, uid: int, alive: int) -> NoReturn:
    """The task process: enter the remaining layers in order, then run the target."""
    layers, view = setup.layers, setup.view
    try:
        if layers.namespaces:
            _kernel.enter_view(view.readable, view.hidden, view.links)
        ruleset = _kernel.landlock_ruleset(view.readable) if layers.landlock else None
        if layers.rlimits:
            _kernel.drop_to_uid(uid)  # RLIMIT_NPROC binds only without CAP_SYS_ADMIN/RESOURCE
        _kernel.set_parent_death_signal(signal.SIGKILL)  # after the uid change, which clears it
        if select.select([alive], [], [], 0)[0]:  # the keeper died before the line above
            os._exit(EXIT_SETUP)
        os.close(alive)
        _kernel.set_no_new_privs()
        program = _kernel.seccomp_program(os.getpid()) if layers.seccomp else None
        if ruleset is not None:
            _kernel.landlock_restrict(ruleset)
        if program is not None:
            _kernel.seccomp_load(program)
        channel = socket.socket(fileno=CHANNEL_FD)  # before the hook, which refuses new sockets
        if layers.audit_hook:
            install_audit_hook(view.readable, view.hidden, native_calls=setup.native_calls)
    except BaseException:
        os._exit(EXIT_SETUP)
    _run(target, channel)


def _run(target: Callable[[socket.socket], int], channel: socket.socket) -> NoReturn:
    code = EXIT_ERROR
    try:
        code = target(channel)
    except MemoryError:
        code = EXIT_MEMORY
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        code = EXIT_ERROR
    finally:
        os._exit(code & 0xFF)

"""The escape corpus: attempts run as sandbox targets, and which layers stop each one.

Each attempt returns True when it got what it was after; raising, or the sandbox ending,
means it failed. ``stopped_by`` names every layer that stops it on its own ("always":
something no switch turns off: the empty environment, descriptors 0-2 on /dev/null, the
wall-time kill, the fork itself). Exit code 42 from an exec'd program also counts as an
escape.
"""

from __future__ import annotations

import _socket
import ctypes
import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

N, L, S, R, A, ALWAYS = "namespaces", "landlock", "seccomp", "rlimits", "audit_hook", "always"
MARKER = "teaclave-sandbox-test-marker"
ESCAPED_EXIT = 42


@dataclass(frozen=True)
class Context:
    """What the attempts aim at; set up by the test before spawning."""

    spawner: int  # the test process (the platform side)
    data_dir: Path  # the platform's data directory, holding a key file
    other_task: Path  # another task's output file
    scratch: Path  # a root-owned 0700 directory an attempt may try to write into
    public_tmp: Path  # a world-writable sticky directory, like /tmp
    tcp_port: int  # a listening TCP socket on the host's 127.0.0.1
    udp_port: int  # a bound UDP socket on the host's 127.0.0.1
    abstract_unix: bytes  # a listening abstract unix socket in the host's network namespace


@dataclass(frozen=True)
class Attempt:
    name: str
    run: Callable[[Context], bool]
    stopped_by: frozenset[str]


CORPUS: list[Attempt] = []


def attempt(*layers: str) -> Callable[[Callable[[Context], bool]], Callable[[Context], bool]]:
    def register(fn: Callable[[Context], bool]) -> Callable[[Context], bool]:
        CORPUS.append(Attempt(fn.__name__, fn, frozenset(layers)))
        return fn

    return register


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _read(path: str | Path) -> str:
    with open(path, "rb") as file:
        return file.read().decode(errors="replace")


# -- reading --------------------------------------------------------------------------------


@attempt(L, A)
def read_etc_passwd(ctx: Context) -> bool:
    return "root:" in _read("/etc/passwd")


@attempt(L, A)
def listdir_root(ctx: Context) -> bool:
    return "etc" in os.listdir("/")


@attempt(N, L, A)
def list_host_processes(ctx: Context) -> bool:
    return str(ctx.spawner) in os.listdir("/proc")


@attempt(N, L, R, A)
def read_spawner_environ(ctx: Context) -> bool:
    return len(_read(f"/proc/{ctx.spawner}/environ")) > 0


@attempt(L, A)
def read_own_initial_environ(ctx: Context) -> bool:
    return len(_read("/proc/self/environ")) > 0


@attempt(N, L, R, A)
def read_spawner_memory(ctx: Context) -> bool:
    with open(f"/proc/{ctx.spawner}/mem", "rb") as mem:
        return len(mem.read(1)) == 1


@attempt(L, A)
def read_platform_key(ctx: Context) -> bool:
    return MARKER in _read(ctx.data_dir / "platform.key")


@attempt(L, A)
def read_other_task_output(ctx: Context) -> bool:
    return MARKER in _read(ctx.other_task)


@attempt(L, A)
def read_via_os_open(ctx: Context) -> bool:
    fd = os.open(ctx.data_dir / "platform.key", os.O_RDONLY)
    return MARKER.encode() in os.read(fd, 4096)


@attempt(ALWAYS)
def read_environment(ctx: Context) -> bool:
    return any(MARKER in value for value in os.environ.values())


# -- writing --------------------------------------------------------------------------------


@attempt(L, S, R, A)
def write_into_data_dir(ctx: Context) -> bool:
    with open(ctx.data_dir / "planted", "w") as file:
        file.write(MARKER)
    return True


@attempt(L, S, R, A)
def write_public_tmp(ctx: Context) -> bool:
    with open(ctx.public_tmp / "planted", "w") as file:
        file.write(MARKER)
    return True


@attempt(L, S, A)
def mkdir_public_tmp(ctx: Context) -> bool:
    os.mkdir(ctx.public_tmp / "planted-dir")
    return True


@attempt(L, S, R, A)
def write_via_os_open(ctx: Context) -> bool:
    fd = os.open(ctx.scratch / "planted", os.O_WRONLY | os.O_CREAT, 0o644)
    return os.write(fd, MARKER.encode()) > 0


@attempt(L, S, R, A)
def write_via_ctypes_libc(ctx: Context) -> bool:
    libc = _libc()
    fd = libc.open(str(ctx.scratch / "planted").encode(), os.O_WRONLY | os.O_CREAT, 0o644)
    return bool(fd >= 0 and libc.write(fd, MARKER.encode(), len(MARKER)) > 0)


# -- network --------------------------------------------------------------------------------


@attempt(N, L, S, A)
def tcp_connect_loopback(ctx: Context) -> bool:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.settimeout(1)
    sock.connect(("127.0.0.1", ctx.tcp_port))
    return True


@attempt(N, S, A)
def udp_send_loopback(ctx: Context) -> bool:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    return sock.sendto(MARKER.encode(), ("127.0.0.1", ctx.udp_port)) > 0


@attempt(N, L, S, A)
def abstract_unix_connect(ctx: Context) -> bool:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(1)
    sock.connect(ctx.abstract_unix)
    return True


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_uint16),
        ("addr", ctypes.c_uint32),
        ("zero", ctypes.c_char * 8),
    ]


def _loopback(port: int) -> _SockaddrIn:
    return _SockaddrIn(_socket.AF_INET, _socket.htons(port), _socket.htonl(0x7F000001), b"")


@attempt(N, L, S, A)
def tcp_connect_ctypes(ctx: Context) -> bool:
    libc = _libc()
    fd = libc.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket")
    address = _loopback(ctx.tcp_port)
    return bool(libc.connect(fd, ctypes.byref(address), ctypes.sizeof(address)) == 0)


@attempt(N, L, S, A)
def tcp_connect_raw_syscall(ctx: Context) -> bool:
    libc = _libc()
    sys_socket, sys_connect = (41, 42) if os.uname().machine == "x86_64" else (198, 203)
    fd = libc.syscall(sys_socket, _socket.AF_INET, _socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket")
    address = _loopback(ctx.tcp_port)
    return bool(libc.syscall(sys_connect, fd, ctypes.byref(address), ctypes.sizeof(address)) == 0)


# -- programs and processes -----------------------------------------------------------------


@attempt(L, S, A)
def subprocess_run(ctx: Context) -> bool:
    return subprocess.run(["/bin/sh", "-c", "exit 0"], check=False).returncode == 0


@attempt(L, S, A)
def os_system(ctx: Context) -> bool:
    return os.system("exit 0") == 0


@attempt(S, A)
def os_fork(ctx: Context) -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid > 0


@attempt(L, S, A)
def os_execv(ctx: Context) -> bool:
    os.execv("/bin/sh", ["sh", "-c", f"exit {ESCAPED_EXIT}"])


@attempt(L, S, A)
def posix_spawn(ctx: Context) -> bool:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], {})
    return os.waitpid(pid, 0)[1] == 0


@attempt(L, S, A)
def execve_ctypes(ctx: Context) -> bool:
    argv = (ctypes.c_char_p * 4)(b"sh", b"-c", f"exit {ESCAPED_EXIT}".encode(), None)
    envp = (ctypes.c_char_p * 1)(None)
    _libc().execve(b"/bin/sh", argv, envp)
    raise OSError(ctypes.get_errno(), "execve")


@attempt(S, A)
def unshare_user_namespace(ctx: Context) -> bool:
    clone_newuser = 0x10000000
    return bool(_libc().unshare(clone_newuser) == 0)


@attempt(S, A)
def io_uring_setup(ctx: Context) -> bool:
    params = ctypes.create_string_buffer(120)
    return bool(_libc().syscall(425, 8, params) >= 0)


# -- signals and tracing --------------------------------------------------------------------


@attempt(N, L, S, R, A)
def signal_spawner(ctx: Context) -> bool:
    os.kill(ctx.spawner, 0)  # signal 0: the permission check only
    return True


@attempt(N, L, S, R, A)
def signal_keeper(ctx: Context) -> bool:
    parent = os.getppid()
    if parent == 0:  # outside this pid namespace: no pid to aim at
        return False
    os.kill(parent, 0)
    return True


@attempt(N, L, S, R, A)
def ptrace_spawner(ctx: Context) -> bool:
    ptrace_seize, ptrace_detach = 0x4206, 17
    libc = _libc()
    if libc.ptrace(ptrace_seize, ctx.spawner, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "ptrace")
    libc.ptrace(ptrace_detach, ctx.spawner, 0, 0)
    return True


# -- introspection: the runtime's keys never are in the sandbox's memory --------------------


@attempt(A, ALWAYS)
def gc_find_key(ctx: Context) -> bool:
    return any(isinstance(o, bytes) and o.startswith(b"runtime-key:") for o in gc.get_objects())


@attempt(A, ALWAYS)
def frames_find_key(ctx: Context) -> bool:
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if "runtime_key" in frame.f_locals:
            return True
        frame = frame.f_back
    return False


@attempt(L, S, A)
def subclasses_to_os_system(ctx: Context) -> bool:
    for cls in object.__subclasses__():
        if cls.__name__ == "_wrap_close":
            system = cls.__init__.__globals__["system"]
            return bool(system("exit 0") == 0)
    return False


@attempt(A, ALWAYS)
def traceback_frames_find_key(ctx: Context) -> bool:
    try:
        raise ValueError
    except ValueError as error:
        frame = error.__traceback__.tb_frame if error.__traceback__ else None
    while frame is not None:
        if "runtime_key" in frame.f_locals:
            return True
        frame = frame.f_back
    return False


# -- resources ------------------------------------------------------------------------------


@attempt(S, R, A)
def fork_bomb(ctx: Context) -> bool:
    children = 0
    for _ in range(64):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    return children >= 64


@attempt(R)
def memory_bomb(ctx: Context) -> bool:
    return len(bytearray(2 << 30)) > 0


@attempt(R, ALWAYS)
def infinite_loop(ctx: Context) -> bool:
    while True:
        pass


@attempt(ALWAYS)
def huge_output(ctx: Context) -> bool:
    chunk = b"x" * (1 << 20)
    for _ in range(64):
        os.write(1, chunk)
        os.write(2, chunk)
    return False  # escaping means reaching the platform's logs; the test checks those


@attempt(ALWAYS)
def deep_recursion(ctx: Context) -> bool:
    sys.setrecursionlimit(10**8)

    def down(n: int) -> int:
        return down(n + 1) + 1

    return down(0) > 0


@attempt(R)
def many_threads(ctx: Context) -> bool:
    stop = threading.Event()
    started = 0
    try:
        for _ in range(64):
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    finally:
        stop.set()
    return started >= 64

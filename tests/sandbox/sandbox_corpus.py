"""The escape corpus: attempts run as sandbox targets, and which layers stop each one.

Each attempt returns True when it got what it was after: only that counts as an escape.
Raising, returning False or the sandbox ending means it failed; the positive control
(every layer off) shows that each attempt does escape when nothing stops it, so an
attempt that fails for a bug of its own fails the tests. ``stopped_by`` names every layer
that stops it on its own ("always": something no switch turns off: the empty environment,
descriptors 0-2 on /dev/null, the wall-time kill, the fork itself); ``control`` says why
an attempt cannot escape even then. Exit code 42 from an exec'd program also counts as an
escape.

The module is also a Python function's payload (standard library only, no ``from
__future__`` import): ``entrypoint(["attempt", NAME, "context", JSON])`` runs one attempt
inside the platform's own sandbox and returns "escaped" or "no effect";
``entrypoint(["probe", JSON])`` lists what the sandbox can read (:func:`probe`).
"""

import _socket
import base64
import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import socket
import subprocess
import sys
import sysconfig
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import FrameType

N, L, S, R, A, ALWAYS = "namespaces", "landlock", "seccomp", "rlimits", "audit_hook", "always"
MARKER = "teaclave-sandbox-test-marker"
ESCAPED_EXIT = 42
KEY_PREFIX = b"runtime-key:"
"""What a file key in the spawner's memory looks like to the introspection attempts."""


@dataclass(frozen=True)
class Context:
    """What the attempts aim at; set up by the test before spawning (all paths absolute)."""

    spawner: int  # a process of the platform (the pid the host sees)
    data_dir: str  # the platform's data directory
    sealing_key: str  # in it: the (simulated) sealing key
    database: str  # in it: the database (every record sealed with that key)
    other_task: str  # another task's output file
    scratch: str  # a root-owned 0700 directory an attempt may try to write into
    public_tmp: str  # a world-writable sticky directory, like /tmp
    start_dir: str  # where the platform was started from (its working directory)
    import_dirs: tuple[str, ...]  # the platform's import path beyond the standard library
    hidden_dir: str  # the interpreter's own site-packages, holding other packages
    other_package: str  # a file of an installed package functions may not import
    device: str  # a root-only device node
    tcp_port: int  # a listening TCP socket on the host's 127.0.0.1
    udp_port: int  # a bound UDP socket on the host's 127.0.0.1
    abstract_unix: str  # a listening abstract unix socket's name (without the NUL)

    def paths(self) -> list[str]:
        """Every path the attempts aim at, and two the host always has."""
        return [
            *(self.data_dir, self.sealing_key, self.database, self.start_dir, self.other_task),
            *(self.hidden_dir, self.other_package, self.device, *self.import_dirs),
            *("/etc/shadow", "/proc/1/environ"),
        ]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> "Context":
        raw = json.loads(text)
        return Context(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


@dataclass(frozen=True)
class Attempt:
    name: str
    run: Callable[[Context], bool]
    stopped_by: frozenset[str]
    control: str | None  # why it cannot escape even with every layer off (None: it must)


CORPUS: list[Attempt] = []


def attempt(
    *layers: str, control: str | None = None
) -> Callable[[Callable[[Context], bool]], Callable[[Context], bool]]:
    def register(fn: Callable[[Context], bool]) -> Callable[[Context], bool]:
        CORPUS.append(Attempt(fn.__name__, fn, frozenset(layers), control))
        return fn

    return register


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _read(path: str) -> str:
    with open(path, "rb") as file:
        return file.read().decode(errors="replace")


def _relative(path: str) -> str:
    """``path`` relative to the working directory (the way a relative open would name it)."""
    return os.path.relpath(path, os.getcwd())


# -- reading the host ------------------------------------------------------------------------


@attempt(N, L, A)
def read_etc_passwd(ctx: Context) -> bool:
    return "root:" in _read("/etc/passwd")


@attempt(N, L, R, A)
def read_etc_shadow(ctx: Context) -> bool:
    return "root:" in _read("/etc/shadow")


@attempt(N, L, A)
def walk_etc_ssl(ctx: Context) -> bool:
    return any(files or dirs for _, dirs, files in os.walk("/etc/ssl", onerror=_raise))


def _raise(error: OSError) -> None:
    raise error


@attempt(N, L, A)
def listdir_root(ctx: Context) -> bool:
    return "etc" in os.listdir("/")


@attempt(N, L, A)
def listdir_sys(ctx: Context) -> bool:
    return "kernel" in os.listdir("/sys")


@attempt(N, L, R, A)
def open_device(ctx: Context) -> bool:
    os.close(os.open(ctx.device, os.O_RDONLY))
    return True


@attempt(N, L, A)
def list_host_processes(ctx: Context) -> bool:
    return str(ctx.spawner) in os.listdir("/proc")


@attempt(N, L, R, A)
def read_init_environ(ctx: Context) -> bool:
    return len(_read("/proc/1/environ")) > 0


@attempt(N, L, R, A)
def read_spawner_environ(ctx: Context) -> bool:
    return len(_read(f"/proc/{ctx.spawner}/environ")) > 0


@attempt(N, L, A)
def read_own_initial_environ(ctx: Context) -> bool:
    return len(_read("/proc/self/environ")) > 0


@attempt(N, L, R, A)
def read_spawner_memory(ctx: Context) -> bool:
    with open(f"/proc/{ctx.spawner}/maps") as maps:
        start = next(int(line.split("-")[0], 16) for line in maps if line.split()[1][0] == "r")
    with open(f"/proc/{ctx.spawner}/mem", "rb") as mem:
        mem.seek(start)
        return len(mem.read(1)) == 1


# -- reading the platform's files ---------------------------------------------------------------


@attempt(N, L, R, A)
def read_sealing_key(ctx: Context) -> bool:
    return len(_read(ctx.sealing_key)) > 0


@attempt(N, L, R, A)
def read_sealing_key_by_relative_path(ctx: Context) -> bool:
    return len(_read(_relative(ctx.sealing_key))) > 0


@attempt(N, L, R, A)
def read_sealing_key_via_os_open(ctx: Context) -> bool:
    fd = os.open(ctx.sealing_key, os.O_RDONLY)
    try:
        return len(os.read(fd, 64)) > 0
    finally:
        os.close(fd)


@attempt(N, L, R, A)
def read_database(ctx: Context) -> bool:
    return _read(ctx.database).startswith("SQLite format 3")


@attempt(N, L, R, A)
def read_database_by_relative_path(ctx: Context) -> bool:
    return _read(_relative(ctx.database)).startswith("SQLite format 3")


@attempt(N, L, A)
def list_data_dir(ctx: Context) -> bool:
    return len(os.listdir(ctx.data_dir)) > 0


@attempt(N, L, A)
def list_start_dir(ctx: Context) -> bool:
    return len(os.listdir(ctx.start_dir)) > 0


@attempt(N, L, A)
def list_start_dir_by_relative_path(ctx: Context) -> bool:
    return len(os.listdir(_relative(ctx.start_dir))) > 0


@attempt(N, L, A)
def list_import_path(ctx: Context) -> bool:
    return all(len(os.listdir(path)) > 0 for path in ctx.import_dirs)


@attempt(N, A)
def list_interpreter_site_packages(ctx: Context) -> bool:
    return len(os.listdir(ctx.hidden_dir)) > 0


@attempt(N, L, A)
def read_other_package(ctx: Context) -> bool:
    return len(_read(ctx.other_package)) > 0


@attempt(N, L, A)
def read_other_task_output(ctx: Context) -> bool:
    return MARKER in _read(ctx.other_task)


@attempt(ALWAYS, control="the keeper empties the environment whatever the layers")
def read_environment(ctx: Context) -> bool:
    return any(MARKER in value for value in os.environ.values())


# -- writing -------------------------------------------------------------------------------


@attempt(N, L, S, R, A)
def write_into_data_dir(ctx: Context) -> bool:
    with open(os.path.join(ctx.data_dir, "planted"), "w") as file:
        file.write(MARKER)
    return True


@attempt(N, L, S, R, A)
def write_public_tmp(ctx: Context) -> bool:
    with open(os.path.join(ctx.public_tmp, "planted"), "w") as file:
        file.write(MARKER)
    return True


@attempt(N, L, S, A)
def mkdir_public_tmp(ctx: Context) -> bool:
    os.mkdir(os.path.join(ctx.public_tmp, "planted-dir"))
    return True


@attempt(N, L, S, R, A)
def write_via_os_open(ctx: Context) -> bool:
    fd = os.open(os.path.join(ctx.scratch, "planted"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        return os.write(fd, MARKER.encode()) > 0
    finally:
        os.close(fd)


@attempt(N, L, S, R, A)
def write_via_ctypes_libc(ctx: Context) -> bool:
    libc = _libc()
    path = os.path.join(ctx.scratch, "planted").encode()
    fd = libc.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    return bool(fd >= 0 and libc.write(fd, MARKER.encode(), len(MARKER)) > 0)


# -- network -------------------------------------------------------------------------------


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
    sock.connect(b"\0" + ctx.abstract_unix.encode())
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


@attempt(N, L, S, A)
def subprocess_run(ctx: Context) -> bool:
    return subprocess.run(["/bin/sh", "-c", "exit 0"], check=False).returncode == 0


@attempt(N, L, S, A)
def os_system(ctx: Context) -> bool:
    return os.system("exit 0") == 0


@attempt(S, A)
def os_fork(ctx: Context) -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0


@attempt(N, L, S, A)
def os_execv(ctx: Context) -> bool:
    os.execv("/bin/sh", ["sh", "-c", f"exit {ESCAPED_EXIT}"])


@attempt(N, L, S, A)
def posix_spawn(ctx: Context) -> bool:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], {})
    return os.waitpid(pid, 0)[1] == 0


@attempt(N, L, S, A)
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
    number = 425  # the same on x86_64 and aarch64
    return bool(_libc().syscall(number, 8, params) >= 0)


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
# (The positive control plants a key in the spawner's memory and stack, as a worker that read
# its task before forking would have; the platform forks before, so nothing is there.)


def _is_key(value: object) -> bool:
    """A key: the prefix and more (the prefix alone is this module's own constant)."""
    return isinstance(value, bytes) and value.startswith(KEY_PREFIX) and value != KEY_PREFIX


@attempt(A, ALWAYS)
def gc_find_key(ctx: Context) -> bool:
    """bytes are not tracked by gc: look inside every tracked container."""
    for container in gc.get_objects():
        if isinstance(container, dict):
            items = list(container.values())
        elif isinstance(container, list | tuple):
            items = list(container)
        else:
            continue
        if any(_is_key(item) for item in items):
            return True
    return False


@attempt(ALWAYS)  # the audit hook allows a task its own frames: only the key's absence stops it
def frames_find_key(ctx: Context) -> bool:
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if "runtime_key" in frame.f_locals:
            return True
        frame = frame.f_back
    return False


@attempt(N, L, S, A)
def subclasses_to_os_system(ctx: Context) -> bool:
    for cls in object.__subclasses__():
        if cls.__name__ == "_wrap_close":
            system = cls.__init__.__globals__["system"]
            return bool(system("exit 0") == 0)
    return False


@attempt(ALWAYS)
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
    release, hold = os.pipe()
    children = []
    try:
        for _ in range(64):
            pid = os.fork()
            if pid == 0:
                os.close(hold)
                os.read(release, 1)  # until the parent is done
                os._exit(0)
            children.append(pid)
    finally:
        os.close(hold)
        for pid in children:
            os.waitpid(pid, 0)
    return len(children) >= 64


@attempt(R)
def memory_bomb(ctx: Context) -> bool:
    return len(bytearray(1 << 30)) > 0


@attempt(R, ALWAYS, control="never returns: the wall-time kill ends it, whatever the layers")
def infinite_loop(ctx: Context) -> bool:
    while True:
        pass


@attempt(ALWAYS, control="descriptors 0-2 are /dev/null whatever the layers")
def huge_output(ctx: Context) -> bool:
    chunk = b"x" * (1 << 20)
    for _ in range(64):
        os.write(1, chunk)
        os.write(2, chunk)
    return False  # escaping means reaching the platform's logs; the test checks those


@attempt(ALWAYS, control="ends in a stack overflow: a crash of its own process, not an escape")
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


ATTEMPTS = {a.name: a for a in CORPUS}


@contextlib.contextmanager
def listeners() -> Iterator[tuple[int, int, str]]:
    """What the network attempts aim at, on the host: a listening TCP socket and a bound
    UDP socket on 127.0.0.1, a listening abstract unix socket; their ports and name."""
    with (
        socket.socket() as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_UNIX) as unix,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        abstract = f"teaclave-sandbox-{os.urandom(16).hex()}"
        unix.bind(b"\0" + abstract.encode())
        unix.listen()
        yield tcp.getsockname()[1], udp.getsockname()[1], abstract


# -- what the sandbox can read ----------------------------------------------------------------


def readable(path: str) -> bool:
    """Whether ``path`` can be listed (a directory) or read (anything else)."""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as file:
                file.read(1)
    except (OSError, ValueError):
        return False
    return True


def _library(path: str) -> bool:
    """Whether ``path`` is a shared library (an ELF file named ``*.so*``)."""
    if ".so" not in os.path.basename(path) or not os.path.isfile(path):
        return False
    with open(path, "rb") as file:
        return file.read(4) == b"\x7fELF"


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def probe(
    seeds: list[str], allowed: list[str], hidden: list[str], limit: int = 200_000
) -> dict[str, object]:
    """What can be read from ``seeds`` down, checked against ``allowed`` roots.

    Every readable path is counted; a directory that can be listed is walked. A path
    is outside unless it is below ``allowed`` (and not below ``hidden``) or a shared
    library. The answer: how many were readable, how many of them outside, and the
    first 50 of those.
    """

    seen: set[str] = set()
    outside: list[str] = []
    stack = list(seeds)
    while stack and len(seen) < limit:
        path = stack.pop()
        if path in seen or not readable(path):
            continue
        seen.add(path)
        real = os.path.realpath(path)
        if _within(real, hidden) or not (_within(real, allowed) or _library(real)):
            outside.append(path)
        if os.path.isdir(path) and not os.path.islink(path):
            stack.extend(os.path.join(path, name) for name in os.listdir(path))
    return {"readable": len(seen), "outside": len(outside), "examples": sorted(outside)[:50]}


def allowed_roots(modules: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """What a task may read, worked out independently of the sandbox's own view: the
    standard library but the site-packages in it, and the allowed packages."""
    stdlib = sysconfig.get_path("stdlib")
    packages = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        packages += spec.submodule_search_locations or []
    return [os.path.realpath(p) for p in (stdlib, *packages)], [
        os.path.realpath(os.path.join(stdlib, "site-packages"))
    ]


def host_seeds(paths: list[str]) -> list[str]:
    """Where a probe looks: the host's top two levels, ``paths`` and their ancestors, and
    everything beside the libraries this process has loaded."""
    found: set[str] = {"/"}
    for top in os.listdir("/"):
        path = os.path.join("/", top)
        found.add(path)
        if os.path.isdir(path) and not os.path.islink(path):
            found.update(os.path.join(path, name) for name in os.listdir(path))
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if ".so" in line}
    for directory in {os.path.dirname(p) for p in mapped if p.startswith("/")}:
        found.update(os.path.join(directory, name) for name in os.listdir(directory))
    for given in paths:
        path = given
        while path != "/":
            found.add(path)
            path = os.path.dirname(path)
    return sorted(found)


def pack(value: object) -> str:
    """``value`` as compressed JSON text (a task argument)."""
    return base64.b64encode(zlib.compress(json.dumps(value).encode())).decode()


def unpack(text: str) -> object:
    return json.loads(zlib.decompress(base64.b64decode(text)))


def entrypoint(argv: list[str]) -> str:
    """The payload's entry: one attempt, or the probe."""
    arguments = dict(zip(argv[::2], argv[1::2], strict=True))
    if arguments.get("probe"):
        request = unpack(arguments["probe"])
        assert isinstance(request, dict)
        return json.dumps(probe(request["seeds"], request["allowed"], request["hidden"]))
    chosen = ATTEMPTS[arguments["attempt"]]
    return "escaped" if chosen.run(Context.from_json(arguments["context"])) else "no effect"

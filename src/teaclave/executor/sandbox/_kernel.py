"""Kernel interfaces through ctypes: namespaces, capabilities, Landlock and a seccomp BPF filter."""

from __future__ import annotations

import ctypes
import os
import platform
import stat
from collections.abc import Iterable

from teaclave.executor.sandbox._syscalls import NUMBERS

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SandboxError(RuntimeError):
    """The sandbox could not be set up (the caller's state, or a kernel feature is missing)."""


def syscall_number(name: str) -> int:
    """The number of syscall ``name`` on this machine (SandboxError if it has none)."""
    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        raise SandboxError(f"no syscall table for {machine}")
    number = NUMBERS[name][0 if machine == "x86_64" else 1]
    if number is None:
        raise SandboxError(f"no syscall {name} on {machine}")
    return number


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


# -- namespaces, mounts, prctl, capabilities ----------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_KEEPCAPS, _PR_SET_NO_NEW_PRIVS = 1, 8, 38
_SIGKILL = 9
_PR_CAPBSET_DROP = 24
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_STAGING = "/proc"
"""Where the new root is assembled: a directory every Linux host has, hidden afterwards."""
_OLD_ROOT = "/.old-root"


def unshare(flags: int) -> None:
    """``unshare(2)`` (``os.unshare`` is Python 3.12+)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    encode = os.fsencode
    _check(
        _libc.mount(
            None if source is None else encode(source),
            encode(target),
            None if fstype is None else encode(fstype),
            ctypes.c_ulong(flags),
            encode(data) if data else None,
        ),
        f"mount {target}",
    )


def _bind_read_only(source: str, target: str) -> None:
    _mount(source, target, None, _MS_BIND)
    _mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _mountpoint(path: str, is_dir: bool) -> None:
    os.makedirs(path if is_dir else os.path.dirname(path), mode=0o755, exist_ok=True)
    if not is_dir:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))


def enter_view(
    readable: Iterable[str], hidden: Iterable[str], links: Iterable[tuple[str, str]]
) -> None:
    """Make a new root holding only ``readable`` (read-only), ``hidden`` empty and ``links``.

    Call in a new mount namespace, as root. Every mount becomes private first, so nothing
    here reaches the host's namespace. There is no /proc, /sys or /dev afterwards, and the
    old root is detached: no path leads back to it.
    """
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    staging = _STAGING
    _mount("tmpfs", staging, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    for path, target in links:
        os.makedirs(staging + os.path.dirname(path), mode=0o755, exist_ok=True)
        os.symlink(target, staging + path)
    for path in readable:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        _mountpoint(staging + path, is_dir)
        _bind_read_only(path, staging + path)
    for path in hidden:
        _mount(
            "tmpfs",
            staging + path,
            "tmpfs",
            _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
            "size=4k,mode=0555",
        )
    os.mkdir(staging + _OLD_ROOT)
    pivot_root = ctypes.c_long(syscall_number("pivot_root"))
    _check(
        _libc.syscall(pivot_root, os.fsencode(staging), os.fsencode(staging + _OLD_ROOT)),
        "pivot_root",
    )
    os.chdir("/")
    _check(_libc.umount2(os.fsencode(_OLD_ROOT), ctypes.c_int(_MNT_DETACH)), "umount old root")
    os.rmdir(_OLD_ROOT)
    _mount(None, "/", None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def set_parent_death_signal(signal: int) -> None:
    prctl(_PR_SET_PDEATHSIG, signal)


def die_with_parent(parent: int) -> bool:
    """Be killed (SIGKILL) when the parent dies; False if ``parent`` is gone already."""
    set_parent_death_signal(_SIGKILL)
    return os.getppid() == parent  # else it died before the signal was set


def set_no_new_privs() -> None:
    prctl(_PR_SET_NO_NEW_PRIVS, 1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_to_uid(uid: int) -> None:
    """Become ``uid``/``uid`` with no groups and no capability at all, bounding set included.

    Nothing exempts the process from permission checks or RLIMIT_NPROC (CAP_SYS_ADMIN,
    CAP_SYS_RESOURCE), or lets it signal root's processes.
    """
    cap = 0
    while _libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) == 0:
        cap += 1  # EINVAL past the kernel's last capability
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    data = (_CapData * 2)(_CapData(0, 0, 0), _CapData(0, 0, 0))
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(ctypes.byref(header), data), "capset")


# -- Landlock ------------------------------------------------------------------------------------

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 2, 1 << 3
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when Landlock is unavailable)."""
    version = _libc.syscall(
        ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )
    return max(int(version), 0)


def landlock_ruleset(paths: Iterable[str]) -> int:
    """A ruleset (a descriptor) allowing only reading and executing below ``paths``.

    Every filesystem access right the ABI knows is handled, so writing, creating, removing,
    renaming and truncating are denied everywhere; TCP bind/connect are denied (ABI ≥ 4);
    signals and abstract unix sockets cannot leave the domain (ABI ≥ 6). Built while the
    paths can still be opened (before privileges are dropped); see :func:`landlock_restrict`.
    """
    abi = landlock_abi()
    if abi < 1:
        raise SandboxError("Landlock is not available in this kernel")
    fs = _FS_ALL_BY_ABI[max(k for k in _FS_ALL_BY_ABI if k <= abi)]
    attr = _RulesetAttr(fs, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net, size = _NET_BIND_TCP | _NET_CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL, 24
    ruleset: int = _check(
        _libc.syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        ),
        "landlock_create_ruleset",
    )
    try:
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                access = _FS_EXECUTE | _FS_READ_FILE | (_FS_READ_DIR if is_dir else 0)
                rule = _PathBeneathAttr(access, fd)
                _check(
                    _libc.syscall(
                        ctypes.c_long(_SYS_LANDLOCK_ADD_RULE),
                        ctypes.c_int(ruleset),
                        ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    ),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


def landlock_restrict(ruleset: int) -> None:
    """Restrict this thread (and its future children) to ``ruleset``, then close it."""
    try:
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF),
                ctypes.c_int(ruleset),
                ctypes.c_uint32(0),
            ),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)


# -- seccomp -------------------------------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_KILL_PROCESS, _RET_ALLOW, _RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
_X32_SYSCALL_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38
_OFF_NR, _OFF_ARCH = 0, 4
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Denied outright with EPERM.
_DENIED = tuple(
    name
    for name in NUMBERS
    if name not in {"clone", "clone3", "open", "openat", "openat2", "kill", "tgkill", "prlimit64"}
)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


Insn = tuple[int, int, int, int]


def _arg_low(index: int) -> int:
    """Offset of argument ``index``'s low 32 bits in ``struct seccomp_data`` (little endian)."""
    return 16 + 8 * index


def seccomp_program(self_pid: int) -> list[Insn]:
    """The BPF program: default allow, a deny list, argument checks; wrong arch kills.

    ``self_pid``: this process's pid as it sees it; kill/tgkill may target only it.
    """
    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        raise SandboxError(f"no seccomp syscall table for {machine}")
    column = 0 if machine == "x86_64" else 1

    def nr(name: str) -> int | None:
        return NUMBERS[name][column]

    deny = _RET_ERRNO | _EPERM
    prog: list[Insn] = [
        (_LD_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 1, 0, _AUDIT_ARCH[machine]),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_ABS, 0, 0, _OFF_NR),
    ]
    if machine == "x86_64":
        prog += [(_JGE, 0, 1, _X32_SYSCALL_BIT), (_RET, 0, 0, deny)]

    def returns(name: str, action: int) -> None:
        number = nr(name)
        if number is not None:
            prog.extend([(_JEQ, 0, 1, number), (_RET, 0, 0, action)])

    def checks_arg(name: str, body: list[Insn]) -> None:
        """``body`` runs for syscall ``name``; it must end in a return on every path."""
        number = nr(name)
        if number is not None:
            prog.append((_JEQ, 0, len(body), number))
            prog.extend(body)

    for name in _DENIED:
        returns(name, deny)
    for name in ("clone3", "openat2"):  # glibc falls back to clone / openat on ENOSYS
        returns(name, _RET_ERRNO | _ENOSYS)
    # clone: threads only
    checks_arg(
        "clone",
        [
            (_LD_ABS, 0, 0, _arg_low(0)),
            (_JSET, 1, 0, CLONE_THREAD),
            (_RET, 0, 0, deny),
            (_RET, 0, 0, _RET_ALLOW),
        ],
    )
    # open/openat: read only
    for name, flags_arg in (("open", 1), ("openat", 2)):
        checks_arg(
            name,
            [
                (_LD_ABS, 0, 0, _arg_low(flags_arg)),
                (_JSET, 0, 1, _WRITE_FLAGS),
                (_RET, 0, 0, deny),
                (_RET, 0, 0, _RET_ALLOW),
            ],
        )
    # kill/tgkill: this process only (pid_t is the low 32 bits)
    for name in ("kill", "tgkill"):
        checks_arg(
            name,
            [
                (_LD_ABS, 0, 0, _arg_low(0)),
                (_JEQ, 0, 1, self_pid),
                (_RET, 0, 0, _RET_ALLOW),
                (_RET, 0, 0, deny),
            ],
        )
    # prlimit64: reading limits only (new_limit == NULL)
    checks_arg(
        "prlimit64",
        [
            (_LD_ABS, 0, 0, _arg_low(2)),
            (_JEQ, 0, 3, 0),
            (_LD_ABS, 0, 0, _arg_low(2) + 4),
            (_JEQ, 0, 1, 0),
            (_RET, 0, 0, _RET_ALLOW),
            (_RET, 0, 0, deny),
        ],
    )
    prog.append((_RET, 0, 0, _RET_ALLOW))
    return prog


def seccomp_load(prog: list[Insn]) -> None:
    """Install ``prog`` on this thread (no_new_privs must be set)."""
    filters = (_SockFilter * len(prog))(*(_SockFilter(*insn) for insn in prog))
    fprog = _SockFprog(len(prog), filters)
    _check(
        _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
        "seccomp",
    )

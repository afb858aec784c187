"""The zygote: the pre-initialised parent every task process is forked from.

``python -I -m teaclave.executor.zygote PARENT_PID [MODULE ...]`` (:func:`command`) is
started by the execution service (:mod:`teaclave.executor.launcher`) isolated: ``-I``,
working directory :data:`DIRECTORY`, environment :data:`ENVIRONMENT`, a session of
its own. It dies with its parent (PR_SET_PDEATHSIG), imports the task runtime
(:mod:`teaclave.executor.worker`, with every built-in:
:func:`~teaclave.executor.worker.prepare`), the Wasm executors (wasmtime) and each
MODULE (the allowed Python modules), checks that it is still single-threaded, reports
:data:`READY` and then serves fork requests on its stdin, a unix ``SOCK_SEQPACKET``
socket, until the service closes it.

It never reads a task and holds no secret: a request carries only the two pipe ends
that become the new task process's stdin and stdout (SCM_RIGHTS). The task process
starts a session of its own, dies with the zygote and becomes the worker
(:func:`teaclave.executor.worker.main`), which reads its envelope itself. The zygote
answers each request with the child's pid and a pidfd (to kill it without a pid-reuse
race), and reports the child's end (wait status, peak RSS) once it reaped it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import sys
import traceback
from typing import NoReturn

from teaclave.core.errors import TeaclaveError
from teaclave.executor import wasm, worker  # noqa: F401 (wasm: preloaded for every task)
from teaclave.executor.python.function import preload
from teaclave.executor.sandbox import die_with_parent

ENVIRONMENT = {
    # Numerical libraries must not start thread pools: a sandboxed function may
    # not create threads, and its memory limit counts their address space.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The zygote's whole environment, and so every task process's."""
DIRECTORY = "/"
"""The zygote's working directory, whatever directory the platform was started from."""

MESSAGE = struct.Struct(">cQiQ")
"""Every message either way: kind, request id, a value (pid, errno or wait status), peak RSS."""
FORK = b"F"
"""service → zygote, with the task process's stdin and stdout: fork one."""
READY, STARTED, FAILED, EXITED = b"R", b"S", b"E", b"X"
"""zygote → service: ready for requests; forked (the pid, with its pidfd); could not
fork (an errno); the child ended (its wait status and peak RSS in KiB)."""


def command(parent_pid: int, modules: tuple[str, ...]) -> list[str]:
    """The command line of a zygote whose parent is ``parent_pid``, preloading ``modules``.

    ``-I``: the working directory, ``PYTHON*`` variables and the user's site
    packages stay out of its import path.
    """
    return [sys.executable, "-I", "-m", __name__, str(parent_pid), *modules]


def send(
    control: socket.socket,
    kind: bytes,
    request: int = 0,
    value: int = 0,
    *,
    rss: int = 0,
    fds: tuple[int, ...] = (),
) -> None:
    """Send one message (with ``fds``, if any)."""
    socket.send_fds(control, [MESSAGE.pack(kind, request, value, rss)], list(fds))


def _task_process(
    control: socket.socket, stdin: int, stdout: int, zygote: int, inherited: list[int]
) -> NoReturn:
    """In the fork: become the worker, on ``stdin`` and ``stdout``, and never return."""
    code = 1
    try:
        os.setsid()  # its own process group: killing it touches no other task
        if die_with_parent(zygote):
            control.detach()  # descriptor 0 becomes the task's stdin just below
            os.dup2(stdin, 0)
            os.dup2(stdout, 1)
            for fd in (stdin, stdout, *inherited):  # nothing of the zygote's or other tasks'
                os.close(fd)
            worker.main()
            code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _fork(control: socket.socket, children: dict[int, tuple[int, int]]) -> int | None:
    """Serve one request: the new child's pidfd (-1 if none); None once the service
    closed the socket. ``children``: pidfd -> (request id, pid) of the unreaped children."""
    message, fds, _, _ = socket.recv_fds(control, MESSAGE.size, 2)
    if not message:
        return None
    try:
        kind, request, _, _ = MESSAGE.unpack(message)
        if kind != FORK or len(fds) != 2:
            send(control, FAILED, request, errno.EINVAL)
            return -1
        zygote = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            send(control, FAILED, request, exc.errno or errno.EAGAIN)
            return -1
        if pid == 0:
            _task_process(control, fds[0], fds[1], zygote, list(children))
        pidfd = os.pidfd_open(pid)
        children[pidfd] = (request, pid)
        send(control, STARTED, request, pid, fds=(pidfd,))
        return pidfd
    finally:
        for fd in fds:
            os.close(fd)


def serve(control: socket.socket) -> None:
    """Fork a task process per request on ``control`` and report each one's end, until
    the service closes ``control``."""
    children: dict[int, tuple[int, int]] = {}
    poller = select.poll()
    poller.register(control, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd in children:  # a child ended: reap it
                request, pid = children.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _, status, usage = os.wait4(pid, 0)
                send(control, EXITED, request, status, rss=usage.ru_maxrss)
                continue
            pidfd = _fork(control, children)
            if pidfd is None:
                return
            if pidfd >= 0:
                poller.register(pidfd, select.POLLIN)


def main(argv: list[str]) -> None:
    """Preload, then serve the execution service on stdin until it closes it."""
    if not die_with_parent(int(argv[0])):
        sys.exit(1)
    with contextlib.suppress(TeaclaveError):  # a module that does not import fails its tasks
        preload(tuple(argv[1:]))
    worker.prepare()
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        sys.exit(f"zygote: {threads} threads run after the imports; sandboxes need one")
    control = socket.socket(fileno=0)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the service is gone
        send(control, READY)
        serve(control)


if __name__ == "__main__":
    main(sys.argv[1:])

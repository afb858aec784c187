"""The execution service's side of the zygote (:mod:`teaclave.executor.zygote`).

A :class:`Launcher` keeps one zygote running. A thread of its own starts it (the
zygote's parent-death signal follows the thread that forked it, and this one lives
as long as the launcher), reads its messages and, when it dies, fails the task
processes whose end it had not reported (they died with it) and starts another.
:meth:`Launcher.start` asks it for a task process: a :class:`TaskProcess`, which a
pidfd kills without any pid-reuse race and whose :meth:`~TaskProcess.wait` gives its
end as the zygote reported it. The zygote keeps one task process forked ahead (the
spare, waiting for its envelope, untouched by any task): a task takes it and the
zygote forks the next, so starting a task costs no fork. Given the task's envelope
(:meth:`Launcher.start`), the launcher writes what of it the spare's stdin takes at
once before the zygote forks the next spare, and gives each next spare the
envelope's header ahead: it forks that header's sandbox while it waits
(:mod:`teaclave.executor.worker`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from teaclave.executor import zygote as protocol

if TYPE_CHECKING:
    from teaclave.executor.worker import Envelope

log = logging.getLogger(__name__)

_READY_TIMEOUT_SECS = 60.0
_EXIT_TIMEOUT_SECS = 5.0
"""How long a zygote whose requests were closed has to exit before it is killed."""
_RETRY_SECS = (0.5, 30.0)
"""The wait before starting again a zygote that died before it was ready: first, longest."""
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ECONNREFUSED)
MAX_AHEAD_BYTES = 1 << 20
"""The largest header sent ahead to a spare (one with a larger Wasm module stays with its
task): what a spare's stdin pipe may hold unread."""


class LauncherError(Exception):
    """A task process could not be started or was lost; the message says why."""


class _Died(LauncherError):
    """The zygote died before it answered a request: its successor may."""


@dataclass(frozen=True)
class Exit:
    """How a task process ended."""

    returncode: int
    """Its exit code, or -N if signal N killed it (as :class:`subprocess.Popen`'s)."""
    max_rss_kib: int
    """Its peak resident set size (``ru_maxrss``)."""


class TaskProcess:
    """A task process forked by the zygote: its stdin and stdout, pid, and how it ended.

    A context manager: leaving it closes the pipes and the pidfd.
    """

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, ahead: bytes = b"") -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.ahead = ahead
        """What it was given ahead on its stdin, before its envelope (b"" if nothing)."""
        self.unsent = b""
        """What of its envelope is still to be written to its stdin (:meth:`Launcher.start`)."""
        self.pid = 0
        self._pidfd = -1
        self._lock = threading.Lock()  # the pidfd is closed once, never signalled after
        self._started = threading.Event()
        self._ended = threading.Event()
        self._exit: Exit | None = None
        self._failure: LauncherError | None = None

    def kill(self) -> None:
        """SIGKILL the task process (its sandbox dies with it); nothing if it ended."""
        with self._lock:
            if self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _send(self, data: bytes) -> None:
        """Write what of ``data`` its stdin takes without waiting; keep the rest in
        :attr:`unsent`."""
        pipe = self.stdin.fileno()
        os.set_blocking(pipe, False)
        try:
            sent = os.write(pipe, data)
        except (BlockingIOError, BrokenPipeError):  # full; or it died: its end tells
            sent = 0
        finally:
            os.set_blocking(pipe, True)
        self.unsent = data[sent:]

    def ended(self, timeout: float = 0.0) -> bool:
        """Whether it ended, or could not be forked, within ``timeout`` seconds."""
        return self._ended.wait(timeout)

    def wait(self) -> Exit:
        """Its end, once the zygote reaped it (LauncherError if it was lost with the zygote)."""
        self._ended.wait()
        if self._exit is None:
            assert self._failure is not None
            raise self._failure
        return self._exit

    def reap(self, grace_secs: float) -> Exit:
        """Its end, killing it if it has not ended within ``grace_secs`` (LauncherError if
        it was lost with the zygote)."""
        if not self.ended(grace_secs):
            self.kill()
        return self.wait()

    def close(self) -> None:
        """Close the pipes and the pidfd."""
        with self._lock:
            if self._pidfd >= 0:
                os.close(self._pidfd)
                self._pidfd = -1
        self.stdin.close()
        self.stdout.close()

    def __enter__(self) -> TaskProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Called by the launcher's thread, as the zygote reports.

    def _on_started(self, pid: int, pidfd: int) -> None:
        self.pid, self._pidfd = pid, pidfd
        self._started.set()

    def _on_exit(self, ended: Exit) -> None:
        self._exit = ended
        self._ended.set()

    def _on_failure(self, failure: LauncherError) -> None:
        self._failure = failure
        self._started.set()
        self._ended.set()


def _holds(pipe: int, size: int) -> bool:
    """Whether ``pipe`` holds ``size`` bytes unread (its capacity raised if need be, up to
    :data:`MAX_AHEAD_BYTES`)."""
    if size > MAX_AHEAD_BYTES:
        return False
    try:
        if fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) >= size:
            return True
        return fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, size) >= size
    except OSError:  # above the user's limit (fs.pipe-max-size, pipe-user-pages-soft)
        return False


def _how(returncode: int) -> str:
    """How a process ended, in words."""
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class _Zygote:
    """One zygote process and its requests: forked by the thread that calls the constructor."""

    def __init__(self, command: list[str], directory: str, environment: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            try:
                self.process = subprocess.Popen(
                    command,
                    stdin=theirs.fileno(),
                    cwd=directory,
                    env=environment,
                    start_new_session=True,
                )
            except OSError:
                ours.close()
                raise
        self._control = ours
        self._pidfd = os.pidfd_open(self.process.pid)  # not reaped before end(): no reuse
        self._lock = threading.Lock()
        self._requests = 0
        self._children: dict[int, TaskProcess] = {}
        self._spare: TaskProcess | None = None  # forked ahead of the next task
        self._how = ""  # set once it is gone: how it ended
        self._gone = threading.Event()

    def fork(self, envelope: Envelope | None, ahead: bytes) -> TaskProcess:
        """A started task process: the spare forked ahead of time, unless it could not
        fork or died since; then a new one. It gets what of ``envelope`` its stdin takes
        at once; then the zygote forks the next spare, given ``ahead``, so a task waits
        for no fork (_Died if the zygote died first, LauncherError otherwise)."""
        with self._lock:
            process, self._spare = self._spare, None
        if process is None or process.ended():  # a spare may have died while it waited
            if process is not None:
                process.close()
            process = self._request()
        if process is None:
            self._gone.wait()  # it died: the reader finds out at once
            raise _Died(f"cannot start executor process: the zygote {self._how}")
        if envelope is not None:
            process._send(envelope.after(process.ahead))
        self.fork_spare(ahead)
        process._started.wait()
        if process._failure is not None:
            process.close()
            raise process._failure
        return process

    def fork_spare(self, ahead: bytes) -> None:
        """Have the zygote fork the next spare, given ``ahead`` (if it cannot, the next
        fork asks again)."""
        try:
            spare = self._request(ahead)
        except LauncherError:
            return
        with self._lock:
            if not self._how:  # else end() has failed it already
                spare, self._spare = self._spare, spare
        if spare is not None:  # raced with another fork, or the zygote's end
            spare.kill()
            spare.close()

    def _request(self, ahead: bytes = b"") -> TaskProcess | None:
        """Ask the zygote for a task process, given ``ahead`` if its stdin holds it without a
        reader, not waiting for the fork; None if the zygote is gone."""
        try:
            theirs_in, stdin = os.pipe()  # the task process reads its stdin from theirs_in
            stdout, theirs_out = os.pipe()
        except OSError as exc:
            raise LauncherError(f"cannot start executor process: {exc.strerror or exc}") from None
        ahead = ahead if _holds(stdin, len(ahead)) else b""
        process = TaskProcess(os.fdopen(stdin, "wb"), os.fdopen(stdout, "rb"), ahead)
        try:
            process.stdin.write(ahead)
            process.stdin.flush()
            if self._ask(process, theirs_in, theirs_out):
                return process
        except BaseException:
            process.close()
            raise
        finally:
            os.close(theirs_in)
            os.close(theirs_out)
        process.close()
        return None

    def _ask(self, process: TaskProcess, stdin: int, stdout: int) -> bool:
        """Ask the zygote to fork ``process`` on ``stdin`` and ``stdout``: False if it is gone."""
        with self._lock:
            if self._how:
                return False
            self._requests += 1
            request = self._requests
            try:
                protocol.send(self._control, protocol.FORK, request, fds=(stdin, stdout))
            except OSError as exc:
                if exc.errno in _GONE:
                    return False
                raise LauncherError(
                    f"cannot start executor process: {exc.strerror or exc}"
                ) from None
            self._children[request] = process
            return True

    def serve(self, on_ready: Callable[[], None]) -> bool:
        """Dispatch the zygote's messages until it ends (or closes its end, or breaks the
        protocol): whether it was ready. Its end is seen even if a child it forked holds
        its end of the socket (stopped before it closed it)."""
        poller = select.poll()
        poller.register(self._control, select.POLLIN)
        poller.register(self._pidfd, select.POLLIN)
        ready = False
        while True:
            events = dict(poller.poll())
            if self._control.fileno() not in events:
                return ready  # the zygote ended and every message it sent was read
            try:
                message, fds, _, _ = socket.recv_fds(self._control, protocol.MESSAGE.size, 1)
            except OSError:
                return ready
            if len(message) != protocol.MESSAGE.size:
                for fd in fds:
                    os.close(fd)
                return ready
            kind, request, value, rss = protocol.MESSAGE.unpack(message)
            if kind == protocol.READY and not ready:
                ready = True
                on_ready()
            elif not self._dispatch(kind, request, value, rss, fds):
                for fd in fds:
                    os.close(fd)
                return ready

    def _dispatch(self, kind: bytes, request: int, value: int, rss: int, fds: list[int]) -> bool:
        """Hand a report to its task process; False if it makes no sense (the task process
        is then left to :meth:`end`)."""
        with self._lock:
            child = self._children.get(request)
        if child is None:
            return False
        if kind == protocol.STARTED and len(fds) == 1:
            child._on_started(value, fds[0])
            return True
        if fds or kind not in (protocol.FAILED, protocol.EXITED):
            return False
        try:
            returncode = os.waitstatus_to_exitcode(value) if kind == protocol.EXITED else 0
        except ValueError:  # not a wait status
            return False
        with self._lock:
            del self._children[request]
        if kind == protocol.EXITED:
            child._on_exit(Exit(returncode, rss))
        else:
            child._on_failure(LauncherError(f"cannot start executor process: {os.strerror(value)}"))
        return True

    def shut(self) -> None:
        """Close the zygote's requests: it ends, and :meth:`serve` returns."""
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)

    def end(self) -> str:
        """Reap the zygote (killing it if it still runs) and fail what it left: how it ended."""
        self.shut()
        try:
            returncode = self.process.wait(_EXIT_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait()
        how = _how(returncode)
        with self._lock:
            self._how = how
            children, self._children = self._children, {}
            spare, self._spare = self._spare, None
        self._control.close()
        os.close(self._pidfd)
        for child in children.values():
            if child.pid:
                child._on_failure(LauncherError(f"executor process lost: the zygote {how}"))
            else:
                child._on_failure(_Died(f"cannot start executor process: the zygote {how}"))
        if spare is not None:
            spare.close()
        self._gone.set()
        return how


class Launcher:
    """Starts task processes as forks of a zygote it keeps running; :meth:`close` ends it
    (``contextlib.closing`` it).

    ``modules``: what the zygote imports beyond the task runtime (the allowed Python
    modules). ``directory`` and ``environment``: the zygote's (tests change them).
    """

    def __init__(
        self,
        modules: tuple[str, ...] = (),
        *,
        directory: str = protocol.DIRECTORY,
        environment: dict[str, str] | None = None,
    ) -> None:
        self._command = protocol.command(os.getpid(), modules)
        self._directory = directory
        self._environment = dict(protocol.ENVIRONMENT if environment is None else environment)
        self._state = threading.Condition()
        self._current: _Zygote | None = None  # started, maybe not ready yet
        self._ready: _Zygote | None = None
        self._failure = ""  # why the last zygote died before it was ready
        self._ahead = b""  # what spares are given ahead
        self._closed = False
        self._thread = threading.Thread(target=self._keep, name="zygote", daemon=True)
        self._thread.start()

    def start(self, envelope: Envelope | None = None) -> TaskProcess:
        """A new task process, forked by the zygote (LauncherError if there can be none),
        given ``envelope`` if any: what its stdin does not take at once is left in its
        :attr:`~TaskProcess.unsent` for the caller to write. The spares forked from now on
        get its header ahead (a task like this one finds its sandbox forked).

        Waits for the zygote to be ready; if it dies before it answers, asks its successor.
        """
        if envelope is not None:
            self._ahead = envelope.ahead
        try:
            return self._zygote().fork(envelope, self._ahead)
        except _Died:
            return self._zygote().fork(envelope, self._ahead)

    def _zygote(self) -> _Zygote:
        with self._state:
            self._state.wait_for(
                lambda: self._closed or self._ready is not None or bool(self._failure),
                _READY_TIMEOUT_SECS,
            )
            if self._closed:
                raise LauncherError("cannot start executor process: the executor is stopping")
            if self._ready is not None:
                return self._ready
            if self._failure:
                raise LauncherError(f"cannot start executor process: {self._failure}")
        raise LauncherError(
            f"cannot start executor process: the zygote was not ready in {_READY_TIMEOUT_SECS:g} s"
        )

    def close(self) -> None:
        """End the zygote (its task processes die with it) and the thread keeping it."""
        with self._state:
            self._closed = True
            current = self._current
            self._state.notify_all()
        if current is not None:
            current.shut()
        self._thread.join()

    def _keep(self) -> None:
        """Start a zygote, serve it until it ends, and again until the launcher is closed."""
        delay = _RETRY_SECS[0]
        while True:
            with self._state:
                if self._closed:
                    return
                try:
                    zygote = self._current = _Zygote(
                        self._command, self._directory, self._environment
                    )
                except OSError as exc:
                    zygote, self._failure = None, f"cannot start the zygote: {exc.strerror or exc}"
                    self._state.notify_all()
            if zygote is not None and self._serve(zygote):
                delay = _RETRY_SECS[0]
                continue
            if self._closed:
                return
            log.error("%s; trying again in %g s", self._failure, delay)
            with self._state:
                self._state.wait_for(lambda: self._closed, delay)
            delay = min(delay * 2, _RETRY_SECS[1])

    def _serve(self, zygote: _Zygote) -> bool:
        """Serve ``zygote`` until it ends: whether it was ready."""

        def publish() -> None:
            zygote.fork_spare(self._ahead)
            with self._state:
                self._ready, self._failure = zygote, ""
                self._state.notify_all()

        ready = zygote.serve(publish)
        with self._state:
            self._ready = self._current = None
        how = zygote.end()
        if ready:
            if not self._closed:
                log.warning("the zygote %s; starting another", how)
            return True
        with self._state:
            self._failure = f"the zygote {how} before it was ready"
            self._state.notify_all()
        return False

"""The sandboxed end of the channel: runs the payload's ``entrypoint(argv)``.

Everything here runs inside the sandbox. Before the trusted side sends the
``go`` frame (a JSON body: payload, argv, summary limit, profile), the guest
confines its imports to the allowed modules it was forked with: a sandbox
forked ahead of its task has done so by the time the task comes. The function's
files are requests over the channel. Its prints and log records go to the
task's log if the task asked for it (sent with the result), else nowhere. Tasks
of executor ``mesapy`` get the MesaPy profile (:mod:`.mesapy`).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import linecache
import logging
import socket
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.machinery import ModuleSpec
from typing import Any, BinaryIO

from teaclave.executor.channel import protocol
from teaclave.executor.channel.client import ChannelFiles, receive_task
from teaclave.executor.files import FileRefused
from teaclave.executor.python import mesapy
from teaclave.executor.python.payload import ENTRYPOINT, FILENAME
from teaclave.executor.tasklog import LineWriter, LogHandler, TaskLog

MAX_TRACEBACK = 16 << 10
"""Longest traceback reported (its end is kept)."""
MAX_ERROR = 1024
"""Longest exception line reported."""
NOT_SUPPORTED = "Teaclave Not Supported"


class _Client:
    """The function's files over the channel; a refused request raises ``RuntimeError``.

    ``byte_strings``: files are :class:`~.mesapy.ByteStringFile` (the MesaPy profile).
    """

    def __init__(self, files: ChannelFiles, *, byte_strings: bool = False) -> None:
        self._files = files
        self._byte_strings = byte_strings
        self._streams: list[BinaryIO] = []

    def open(self, name: str, mode: str = "rb") -> BinaryIO | mesapy.ByteStringFile:
        """``teaclave_open``: "rb" opens an input, "wb" creates an output (binary files)."""
        if mode not in ("rb", "wb"):
            raise RuntimeError(NOT_SUPPORTED)
        if not isinstance(name, str):
            raise TypeError(f"file name must be a str, not {type(name).__name__}")
        with _refusals():
            handle = self._files.open(name, writable=mode == "wb")
        raw = _ChannelFile(self._files, handle)
        stream: BinaryIO = (
            io.BufferedWriter(raw, protocol.CHUNK)
            if mode == "wb"
            else io.BufferedReader(raw, protocol.CHUNK)
        )
        self._streams.append(stream)
        return mesapy.ByteStringFile(stream) if self._byte_strings else stream

    def close_all(self) -> None:
        """Close (and so flush) every file the function left open."""
        for stream in self._streams:
            stream.close()


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """A refused request, as the function sees it: ``RuntimeError``."""
    try:
        yield
    except FileRefused as exc:
        raise RuntimeError(str(exc)) from None


class _ChannelFile(io.RawIOBase):
    """One open file of the trusted side, by handle."""

    def __init__(self, files: ChannelFiles, handle: int) -> None:
        super().__init__()
        self._files = files
        self._handle = handle

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        with _refusals():
            data = self._files.read(self._handle, len(view))
        view[: len(data)] = data
        return len(data)

    def write(self, data: Any, /) -> int:
        chunk = memoryview(data).cast("B")[: protocol.CHUNK]
        with _refusals():
            self._files.write(self._handle, bytes(chunk))
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            super().close()
            with _refusals():
                self._files.close(self._handle)


class _Discard(io.TextIOBase):
    """Where the function's prints go without a log: nowhere."""

    def write(self, text: str, /) -> int:
        return len(text)


class _Lines(io.TextIOBase):
    """Where the function's prints go with a log: a line each."""

    def __init__(self, log: TaskLog) -> None:
        super().__init__()
        self.lines = LineWriter(log)

    def write(self, text: str, /) -> int:
        return self.lines.write(text)


def _capture(log: TaskLog | None) -> list[_Lines]:
    """Send stdout, stderr and log records (INFO and up) to ``log``, or nowhere without one.

    The root logger loses whatever handlers the platform gave it before the fork.
    """
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    if log is None:
        sys.stdout = sys.stderr = _Discard()
        return []
    streams = [_Lines(log), _Lines(log)]
    sys.stdout, sys.stderr = streams
    root.addHandler(LogHandler(log))
    root.setLevel(logging.INFO)
    return streams


def _allowed(name: str, modules: frozenset[str]) -> bool:
    top = name.partition(".")[0]
    return top in sys.stdlib_module_names or top in modules or top == "__main__"


def _refusal(name: str) -> ImportError:
    top = name.partition(".")[0]
    return ImportError(f"module {top!r} is not allowed on this platform", name=name)


class _Refuse:
    """A meta path finder refusing every module beyond the allow-list."""

    def __init__(self, modules: frozenset[str]) -> None:
        self._modules = modules

    def find_spec(self, name: str, path: object, target: object = None) -> ModuleSpec | None:
        if not _allowed(name, self._modules):
            raise _refusal(name)
        return None


def _importer(
    modules: frozenset[str], shims: Mapping[str, types.ModuleType]
) -> Callable[..., types.ModuleType]:
    """``__import__`` for the payload: ``shims`` by name (``teaclave``: the file API), then
    the allowed modules."""
    original = builtins.__import__

    def guarded(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level == 0 and name in shims:  # "a.b" gives "a" unless names are taken from it
            return shims[name if fromlist else name.partition(".")[0]]
        if level == 0 and not _allowed(name, modules):
            raise _refusal(name)
        return original(name, globals, locals, fromlist, level)

    return guarded


def _confine_imports(modules: frozenset[str]) -> None:
    """Forget loaded modules beyond the allow-list and refuse to load any."""
    for name in [n for n in sys.modules if not _allowed(n, modules)]:
        del sys.modules[name]
    sys.meta_path.insert(0, _Refuse(modules))


def _summary(value: object, *, mesapy_profile: bool) -> bytes:
    """A return value as the summary: None is empty, bytes as they are, else its str
    (in the MesaPy profile, a str read from a file gives back its bytes)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return mesapy.raw(str(value)) if mesapy_profile else str(value).encode()


def _run(
    source: str,
    argv: list[str],
    modules: frozenset[str],
    profile: Mapping[str, types.ModuleType] | None,
    files: ChannelFiles,
) -> bytes:
    """Run the payload ``source``'s entrypoint on ``argv``: its summary. ``profile``: the
    MesaPy profile's modules, if the task has it."""
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    code = compile(source, FILENAME, "exec", dont_inherit=True)
    client = _Client(files, byte_strings=profile is not None)
    shim = types.ModuleType("teaclave", "The platform's file API for functions.")
    shim.open = client.open  # type: ignore[attr-defined]
    shims = {"teaclave": shim, **(profile or {})}
    names = dict(vars(builtins), __import__=_importer(modules, shims), teaclave_open=client.open)
    namespace: dict[str, Any] = {"__name__": "teaclave_function", "__builtins__": names}
    exec(code, namespace)  # noqa: S102 (running the function is the point, in the sandbox)
    entrypoint = namespace.get(ENTRYPOINT)
    if not callable(entrypoint):
        raise NameError(f"the function defines no callable {ENTRYPOINT!r}")
    summary = _summary(entrypoint(argv), mesapy_profile=profile is not None)
    client.close_all()
    return summary


def _traceback(exc: BaseException) -> str:
    """The traceback through the function's own frames (the platform's are left out)."""
    report = traceback.TracebackException.from_exception(exc)
    stack = list(report.stack)
    first = next((i for i, f in enumerate(stack) if f.filename == FILENAME), len(stack))
    report.stack = traceback.StackSummary.from_list(stack[first:])
    return "".join(report.format())


def _report(exc: BaseException) -> tuple[str, bytes]:
    """The exception line and the traceback (or why there is none)."""
    error = "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1]
    try:
        trace = _traceback(exc)
    except Exception as problem:  # a traceback that cannot be formatted
        trace = f"(no traceback: {problem})"
    return error[:MAX_ERROR], trace.encode()[-MAX_TRACEBACK:]


def main(modules: tuple[str, ...], channel: socket.socket) -> int:
    """The sandbox's target, allowed to import ``modules`` (beyond the standard
    library): confine imports, wait for the go frame, run the function, report."""
    sys.stdout = sys.stderr = _Discard()
    allowed = frozenset(modules)
    profile = mesapy.modules(allowed)  # built while the platform's modules still import
    _confine_imports(allowed)
    task, log = receive_task(channel)
    streams = _capture(log)
    argv: list[str] = task["argv"]
    limit: int = task["max_summary_bytes"]
    files = ChannelFiles(channel)
    try:
        mesapy_profile = profile if task["profile"] == mesapy.PROFILE else None
        summary = _run(task["payload"], argv, allowed, mesapy_profile, files)
        for stream in streams:
            stream.lines.flush()  # a last line without a newline
    except BaseException as exc:  # every failure of the function is reported
        files.fail(*_report(exc))
    else:
        files.report(summary[: limit + 1], log)  # longer is refused anyway
    return 0

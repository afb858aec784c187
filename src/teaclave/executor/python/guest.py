"""The sandboxed end of the channel: runs the payload's ``entrypoint(argv)``.

Everything here runs inside the sandbox, after the trusted side sent the
``go`` frame (a JSON body: payload, argv, allowed modules, summary limit). The
function's files are requests over the channel; its prints are discarded.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import linecache
import socket
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.machinery import ModuleSpec
from typing import Any, BinaryIO

from teaclave.executor.channel import protocol
from teaclave.executor.channel.client import ChannelFiles
from teaclave.executor.files import FileRefused
from teaclave.executor.python.payload import ENTRYPOINT, FILENAME

MAX_TRACEBACK = 16 << 10
"""Longest traceback reported (its end is kept)."""
MAX_ERROR = 1024
"""Longest exception line reported."""
NOT_SUPPORTED = "Teaclave Not Supported"


class _Client:
    """The function's files over the channel; a refused request raises ``RuntimeError``."""

    def __init__(self, files: ChannelFiles) -> None:
        self._files = files
        self._streams: list[BinaryIO] = []

    def open(self, name: str, mode: str = "rb") -> BinaryIO:
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
        return stream

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
    """Where the function's prints go: nowhere (the platform's logs must not get them)."""

    def write(self, text: str, /) -> int:
        return len(text)


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


def _importer(modules: frozenset[str], shim: types.ModuleType) -> Callable[..., types.ModuleType]:
    """``__import__`` for the payload: ``teaclave`` is the shim, the rest must be allowed."""
    original = builtins.__import__

    def guarded(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level == 0 and name == "teaclave":
            return shim
        if level == 0 and not _allowed(name, modules):
            raise _refusal(name)
        return original(name, globals, locals, fromlist, level)

    return guarded


def _confine_imports(modules: frozenset[str]) -> None:
    """Forget loaded modules beyond the allow-list and refuse to load any."""
    for name in [n for n in sys.modules if not _allowed(n, modules)]:
        del sys.modules[name]
    sys.meta_path.insert(0, _Refuse(modules))


def _summary(value: object) -> bytes:
    """A return value as the summary: None is empty, bytes as they are, else its str."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _run(client: _Client, source: str, argv: list[str], modules: frozenset[str]) -> bytes:
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    code = compile(source, FILENAME, "exec", dont_inherit=True)
    shim = types.ModuleType("teaclave", "The platform's file API for functions.")
    shim.open = client.open  # type: ignore[attr-defined]
    names = dict(vars(builtins), __import__=_importer(modules, shim), teaclave_open=client.open)
    namespace: dict[str, Any] = {"__name__": "teaclave_function", "__builtins__": names}
    _confine_imports(modules)
    exec(code, namespace)  # noqa: S102 (running the function is the point, in the sandbox)
    entrypoint = namespace.get(ENTRYPOINT)
    if not callable(entrypoint):
        raise NameError(f"the function defines no callable {ENTRYPOINT!r}")
    summary = _summary(entrypoint(argv))
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


def main(channel: socket.socket) -> int:
    """The sandbox's target: wait for the go frame, run the function, report."""
    sys.stdout = sys.stderr = _Discard()
    task = json.loads(protocol.receive(channel, protocol.MAX_TASK).body)
    argv: list[str] = task["argv"]
    modules = frozenset[str](task["modules"])
    limit: int = task["max_summary_bytes"]
    files = ChannelFiles(channel)
    try:
        summary = _run(_Client(files), task["payload"], argv, modules)
    except BaseException as exc:  # every failure of the function is reported
        files.fail(*_report(exc))
    else:
        files.report(summary[: limit + 1])  # longer is refused anyway
    return 0
